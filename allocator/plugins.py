"""The plugin host: builds the pluggy manager and loads plugins from entry points.

Built-in plugins (static pools, address services, layer 2, BGP) are entry points
in metallb's own ``setup.cfg``, loaded exactly like third-party ones.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
from collections.abc import Iterable

import attrs
import pluggy
from metallb.allocator import hookspecs

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "PluginManager",
    "default_plugin_manager",
    "get_plugin_manager",
    "hookimpl",
    "list_plugins",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT
#: Marker for hook implementations: ``@hookimpl`` or ``@hookimpl(tryfirst=True)``.
hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering plugin versions and the plugins that failed to load."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        #: entry-point name -> "ExceptionType: message" for plugins skipped at load.
        self.failures: dict[str, str] = {}
        #: plugin name -> version of the distribution that provides it.
        self.versions: dict[str, str] = {}


def _names(value: str | None) -> set[str]:
    return {n.strip() for n in (value or "").split(",") if n.strip()}


def get_plugin_manager(
    *,
    entry_points: bool = True,
    allow: Iterable[str] | None = None,
    block: Iterable[str] = (),
    plugins: Iterable[object] = (),
) -> PluginManager:
    """Return a new plugin manager with the hookspecs and the installed plugins.

    Args:
        entry_points: load the plugins in entry-point group ``metallb``.
        allow: load only these plugin names (default: ``METALLB_PLUGINS``,
            comma-separated; unset means all).
        block: never load these names (added to ``METALLB_DISABLE_PLUGINS``).
        plugins: extra plugin objects (modules or instances) to register, for
            tests and embedding.

    A plugin whose import fails is logged and skipped, never fatal. Hook
    implementations that match no spec raise at once (``check_pending``).
    """
    pm = PluginManager()
    pm.hook.metallb_add_hookspecs.call_historic(kwargs={"plugin_manager": pm})
    allowed = set(allow) if allow is not None else (_names(os.environ.get("METALLB_PLUGINS")) or None)
    for name in set(block) | _names(os.environ.get("METALLB_DISABLE_PLUGINS")):
        pm.set_blocked(name)
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
                continue
            if allowed is not None and ep.name not in allowed:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the rest
                pm.failures[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning("plugin %r (%s) failed to load and is skipped: %s", ep.name, ep.value, exc)
                continue
            pm.register(plugin, name=ep.name)
            if ep.dist is not None:
                pm.versions[ep.name] = ep.dist.version
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


@functools.cache
def default_plugin_manager() -> PluginManager:
    """The process-wide manager with every installed plugin, built on first use."""
    return get_plugin_manager()


@attrs.frozen
class PluginInfo:
    """One plugin as ``metallb plugins`` shows it."""

    name: str
    module: str
    version: str
    hooks: tuple[str, ...]
    error: str = ""


def list_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Loaded plugins with their distribution version and hooks, then failed ones."""
    versions: dict[str, str] = getattr(pm, "versions", {})
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda np: np[0]):
        if plugin is None:
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        module = getattr(plugin, "__name__", type(plugin).__module__)
        out.append(PluginInfo(name=name, module=module, version=versions.get(name, "-"), hooks=hooks))
    failures: dict[str, str] = getattr(pm, "failures", {})
    for name, err in sorted(failures.items()):
        out.append(PluginInfo(name=name, module="-", version="-", hooks=(), error=err))
    return out
