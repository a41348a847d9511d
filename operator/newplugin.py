"""``metallb new-plugin NAME``: write a working pool plugin from the templates shipped with metallb.

The skeleton is the first plugin of ``docs/writing-plugins.md`` with NAME in
place of ``file-pools``: its packaging, the hooks and the address source, a
test using the contract checker, and a README. A test installs one with pip
and runs its tests.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import attrs
from metallb.allocator.yamlload import shown
from metallb.operator.cmd_config import reason, shown_path

__all__ = ["TEMPLATES", "Skeleton", "render", "run", "skeleton"]

#: The template folder, shipped as package data.
TEMPLATES = Path(__file__).resolve().parent / "templates" / "plugin"
#: Plugin names: a config section key, such as ``file-pools``.
NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@attrs.frozen(kw_only=True)
class Skeleton:
    """The names a plugin skeleton uses, all derived from its NAME.

    Attributes:
        name: the plugin, its entry point and its config section (``file-pools``).
        dist: the distribution and its folder (``metallb-file-pools``).
        module: the Python module (``metallb_file_pools``).
        cls: the address source class (``FilePoolsSource``).
    """

    name: str
    dist: str
    module: str
    cls: str

    def files(self) -> dict[str, str]:
        """File name (in the plugin folder) to template name."""
        return {
            "pyproject.toml": "pyproject.toml.tmpl",
            "setup.cfg": "setup.cfg.tmpl",
            f"{self.module}.py": "module.py.tmpl",
            f"test_{self.module}.py": "test_module.py.tmpl",
            "README.md": "README.md.tmpl",
        }


def skeleton(name: str) -> Skeleton:
    """The names for plugin *name*; ValueError naming the rule when it is not a valid section key."""
    if not NAME.fullmatch(name) or len(name) > 40:
        raise ValueError(
            f'plugin name "{shown(name)}": must be lower-case letters and digits in words joined by "-", starting '
            'with a letter, at most 40 characters (it becomes the config section), like "file-pools"'
        )
    return Skeleton(
        name=name,
        dist=f"metallb-{name}",
        module=f"metallb_{name.replace('-', '_')}",
        cls="".join(part.capitalize() for part in name.split("-")) + "Source",
    )


def render(template: str, names: Skeleton) -> str:
    """*template* with ``{{name}}``, ``{{dist}}``, ``{{module}}`` and ``{{class}}`` filled in."""
    values = {"name": names.name, "dist": names.dist, "module": names.module, "class": names.cls}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _taken_sections() -> set[str]:
    """Config sections that already exist: metallb's own and those of the installed plugins."""
    from metallb.allocator import Hooks, default_plugin_manager
    from metallb.allocator.config import CORE_SECTIONS

    return {*CORE_SECTIONS, *Hooks(default_plugin_manager()).pool_sections()}


def run(args: argparse.Namespace) -> int:
    """Write the skeleton; one line on stderr and status 1 for a bad name or an occupied folder."""
    try:
        names = skeleton(args.name)
    except ValueError as exc:
        print(f"metallb new-plugin: {exc}", file=sys.stderr)
        return 1
    if names.name in _taken_sections():
        print(
            f'metallb new-plugin: plugin name "{names.name}": the config section "{names.name}" already exists '
            "(metallb's own, or an installed plugin's); choose another name",
            file=sys.stderr,
        )
        return 1
    folder = Path(args.directory or names.dist)
    try:
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            print(
                f'metallb new-plugin: "{shown_path(str(folder))}" exists and is not empty; choose another --directory',
                file=sys.stderr,
            )
            return 1
        folder.mkdir(parents=True, exist_ok=True)
        for target, template in names.files().items():
            (folder / target).write_text(render((TEMPLATES / template).read_text(), names))
    except OSError as exc:
        print(f'metallb new-plugin: "{shown_path(str(folder))}": cannot write: {reason(exc)}', file=sys.stderr)
        return 1
    print(f"wrote {folder}/: {', '.join(names.files())}")
    print("next, in the environment where metallb is installed:")
    # pip takes a folder for a path only when it looks like one: "./name", not "name".
    where = str(folder) if folder.is_absolute() or str(folder).startswith(".") else f"./{folder}"
    print(f"  pip install {where}")
    print(f"  metallb plugins                       # lists {names.name}")
    print(f"  pip install pytest && python -m pytest {folder}")
    return 0
