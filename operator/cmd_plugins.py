"""List the loaded plugins, their versions and the hooks each implements.

Plugins come from the ``metallb`` entry-point group; the built-in ones are
registered there too. ``METALLB_PLUGINS=a,b`` loads only the named plugins,
``METALLB_DISABLE_PLUGINS=c`` blocks some. Plugins that failed to import are
listed with the error.
"""

from __future__ import annotations

import argparse
import json

from metallb.allocator import get_plugin_manager, list_plugins
from metallb.operator.table import render_table


def run(args: argparse.Namespace) -> int:
    """Print the plugin table; exit 1 if any plugin failed to load."""
    infos = list_plugins(get_plugin_manager())
    if args.json:
        print(
            json.dumps(
                [
                    {"name": i.name, "module": i.module, "version": i.version, "hooks": list(i.hooks), "error": i.error}
                    for i in infos
                ],
                indent=2,
            )
        )
    else:
        rows = [
            (
                i.name,
                i.version,
                i.module,
                ", ".join(h.removeprefix("metallb_") for h in i.hooks) or f"FAILED: {i.error}",
            )
            for i in infos
        ]
        print(render_table(("PLUGIN", "VERSION", "MODULE", "HOOKS"), rows))
    return 1 if any(i.error for i in infos) else 0
