# mypy: disable-error-code="empty-body"
"""The hook the address-service plugin adds: backends of the bundled server.

The plugin registers this module through ``metallb_add_hookspecs`` (a
historic hook), so any plugin may implement it, loaded before or after this
one. ``docs/address-services.md`` documents it for backend authors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy
from metallb.allocator.hookspecs import PROJECT

if TYPE_CHECKING:
    from metallb.plugins.address_service.api import Backend, BackendOptions

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec(firstresult=True)
def metallb_make_backend(kind: str, options: BackendOptions) -> Backend | None:
    """Build a backend of the bundled address service (``memory``, ``dhcp`` ...).

    Import the backend's own dependencies here, not at module level, and
    raise :class:`~metallb.allocator.PluginError` naming the package to
    install when one is missing.

    :param kind: the name given to ``metallb address-service --backend``.
    :param options: the command line's backend options.
    :return: an object implementing :class:`~metallb.plugins.address_service.api.Backend`,
        or None when *kind* is not this plugin's.
    :raise ValueError: the options do not suit this backend (the message names the option).

    Stops at first non-None result.
    """
