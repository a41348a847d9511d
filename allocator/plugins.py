"""The plugin host: builds the pluggy manager, loads plugins from entry points, and calls hooks.

Built-in plugins (static pools, address services, layer 2, BGP) are entry points
in metallb's own ``setup.cfg``, loaded exactly like third-party ones.
:class:`Hooks` is the typed way to call them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import netaddr
import pluggy
from metallb.allocator import hookspecs
from metallb.allocator.errors import PluginError
from metallb.allocator.interfaces import AddressSource, Announcer, AnnouncerSettings, SourceCapabilities
from metallb.allocator.model import (
    Advertisement,
    Config,
    PoolEntry,
    PoolRequest,
    PoolResource,
    PoolResourceKind,
    PoolSpec,
    ProtocolInfo,
    Unapplied,
)

if TYPE_CHECKING:
    import argparse

__all__ = [
    "ENTRY_POINT_GROUP",
    "Hooks",
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


@attrs.frozen(kw_only=True)
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


# -- the typed facade over pm.hook ------------------------------------------------------


_NO_CAPABILITIES = SourceCapabilities()


def _sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


class Hooks:
    """One typed method per hook, with every result checked (tox's ``Plugin`` pattern).

    Callers never touch ``pm.hook`` and never re-check what plugins return: a
    firstresult factory that no plugin answers, or an answer of the wrong type,
    raises :class:`PluginError` naming the hook and what was asked. Cheap to
    build; it holds nothing but the manager::

        hooks = Hooks(plugin_manager)
        source = hooks.make_source(spec)

    Args:
        plugin_manager: the manager whose plugins are called.
    """

    def __init__(self, plugin_manager: pluggy.PluginManager) -> None:
        self._pm = plugin_manager

    def __repr__(self) -> str:
        return f"<Hooks(plugins={len(self._pm.get_plugins())})>"

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The manager whose plugins are called."""
        return self._pm

    # -- configuration -----------------------------------------------------------------

    def pool_sections(self) -> tuple[str, ...]:
        """Every section a plugin claims (``metallb_pool_sections``), each once."""
        out: dict[str, None] = {}
        for sections in self._pm.hook.metallb_pool_sections():
            if not _sequence(sections) or not all(isinstance(s, str) and s for s in sections):
                raise PluginError(f"metallb_pool_sections returned {sections!r}, not a list of section names")
            out.update(dict.fromkeys(sections))
        return tuple(out)

    def parse_pool(self, entry: PoolEntry) -> PoolSpec:
        """The :class:`PoolSpec` of *entry* (``metallb_parse_pool``); ConfigError from the plugin passes through."""
        spec = self._pm.hook.metallb_parse_pool(entry=entry)
        if spec is None:
            raise PluginError(
                f'no plugin parsed {entry.where()} of section "{entry.section}"; the plugin claiming it is broken'
            )
        if not isinstance(spec, PoolSpec):
            raise PluginError(
                f"the plugin for section {entry.section!r} returned {type(spec).__name__}, not a PoolSpec"
            )
        return spec

    def pool_resource_kinds(self) -> dict[str, PoolResourceKind]:
        """Every pool kind declared (``metallb_pool_resource_kinds``), by kind name.

        Raises :class:`PluginError` when two plugins declare one kind or one
        section, or a kind collides with one of MetalLB's own.
        """
        found: dict[str, PoolResourceKind] = {}
        sections: dict[str, str] = {}
        for kinds in self._pm.hook.metallb_pool_resource_kinds():
            if not _sequence(kinds) or not all(isinstance(k, PoolResourceKind) for k in kinds):
                raise PluginError(f"metallb_pool_resource_kinds returned {kinds!r}, not a list of PoolResourceKind")
            for kind in kinds:
                if kind.kind in found:
                    raise PluginError(f'two plugins declare the pool kind "{kind.kind}"')
                if kind.section in sections:
                    raise PluginError(
                        f'pool kinds "{sections[kind.section]}" and "{kind.kind}" both make pools of "{kind.section}"'
                    )
                if not kind.versions:
                    raise PluginError(f'pool kind "{kind.kind}" declares no API version')
                found[kind.kind] = kind
                sections[kind.section] = kind.kind
        return dict(sorted(found.items()))

    def parse_pool_resource(self, resource: PoolResource) -> PoolSpec:
        """The :class:`PoolSpec` of a pool resource (``metallb_parse_pool_resource``)."""
        spec = self._pm.hook.metallb_parse_pool_resource(resource=resource)
        if spec is None:
            raise PluginError(f"no plugin parsed {resource.where()}; the plugin declaring the kind is broken")
        if not isinstance(spec, PoolSpec):
            kind = resource.kind.kind
            raise PluginError(f"the plugin for kind {kind!r} returned {type(spec).__name__}, not a PoolSpec")
        if spec.kind != resource.kind.section or spec.name != resource.name:
            raise PluginError(
                f"the plugin for kind {resource.kind.kind!r} returned pool {spec.name!r} of {spec.kind!r}, "
                f"not {resource.name!r} of {resource.kind.section!r}"
            )
        return spec

    def render_pool_resource(self, spec: PoolSpec, namespace: str) -> list[dict[str, Any]]:
        """The objects rendering *spec* as a resource (``metallb_render_pool_resource``): the pool first."""
        hook = "metallb_render_pool_resource"
        found = self._pm.hook.metallb_render_pool_resource(spec=spec, namespace=namespace)
        if found is None:
            raise PluginError(f'pool "{spec.name}": no plugin renders pools of "{spec.kind}" as resources ({hook})')
        if not _sequence(found) or not found or not all(isinstance(o, Mapping) for o in found):
            raise PluginError(f'{hook} for pool "{spec.name}" returned {found!r}, not a list of objects')
        return [dict(o) for o in found]

    def unapplied(self, config: Config) -> list[Unapplied]:
        """What of *config* the announcers do not apply (``metallb_unapplied_config``), from every plugin."""
        out: list[Unapplied] = []
        for found in self._pm.hook.metallb_unapplied_config(config=config):
            if not _sequence(found) or not all(isinstance(u, Unapplied) for u in found):
                raise PluginError(f"metallb_unapplied_config returned {found!r}, not a list of Unapplied")
            out.extend(found)
        return out

    def protocols(self) -> dict[str, ProtocolInfo]:
        """Every announcement protocol declared (``metallb_announcer_protocols``), by name, sorted.

        Raises :class:`PluginError` when two plugins declare one protocol, or
        two protocols claim one pool key.
        """
        found: dict[str, ProtocolInfo] = {}
        owners: dict[str, str] = {}
        for infos in self._pm.hook.metallb_announcer_protocols():
            if not _sequence(infos) or not all(isinstance(i, ProtocolInfo) for i in infos):
                raise PluginError(f"metallb_announcer_protocols returned {infos!r}, not a list of ProtocolInfo")
            for info in infos:
                if info.name in found:
                    raise PluginError(f'two plugins declare the announcement protocol "{info.name}"')
                for key in info.pool_keys:
                    if key in owners:
                        first, second = sorted((owners[key], info.name))
                        raise PluginError(f'protocols "{first}" and "{second}" both claim the pool key "{key}"')
                    owners[key] = info.name
                found[info.name] = info
        return dict(sorted(found.items()))

    def parse_advertisements(
        self, protocol: str, entry: PoolEntry, cidrs: Sequence[netaddr.IPNetwork]
    ) -> tuple[Advertisement, ...]:
        """*protocol*'s advertisements of a pool entry (``metallb_parse_advertisements``): at least one."""
        hook = "metallb_parse_advertisements"
        found = self._pm.hook.metallb_parse_advertisements(protocol=protocol, entry=entry, cidrs=tuple(cidrs))
        if found is None:
            raise PluginError(f'protocol "{protocol}" is declared, but no plugin answers {hook} for it')
        if not _sequence(found) or not found:
            raise PluginError(f'{hook} for "{protocol}" returned {found!r}, not a non-empty list of advertisements')
        for adv in found:
            # What isinstance(adv, Advertisement) checks, without its cost: the runtime protocol check
            # walks the class's attributes on every call (a third of parsing a 10 000-pool BGP config).
            if getattr(adv, "protocol", None) != protocol:
                raise PluginError(f'{hook} for "{protocol}" returned {adv!r}, not an advertisement of "{protocol}"')
            try:
                hash(adv)
            except TypeError:
                raise PluginError(
                    f"{hook} returned {adv!r}, which is unhashable: make it a frozen attrs class"
                ) from None
        return tuple(found)

    def dump_advertisements(self, protocol: str, advertisements: Sequence[Advertisement]) -> dict[str, Any]:
        """The pool keys rendering *advertisements* of *protocol* (``metallb_dump_advertisements``)."""
        hook = "metallb_dump_advertisements"
        keys = self._pm.hook.metallb_dump_advertisements(protocol=protocol, advertisements=tuple(advertisements))
        if keys is None:
            raise PluginError(f'no plugin answers {hook} for protocol "{protocol}"; is its plugin loaded?')
        if not isinstance(keys, Mapping):
            raise PluginError(f'{hook} for "{protocol}" returned {keys!r}, not a mapping of pool keys')
        info = self.protocols().get(protocol)
        foreign = [k for k in keys if info is None or k not in info.pool_keys]
        if foreign:
            raise PluginError(f'{hook} for "{protocol}" returned keys the protocol does not own: {", ".join(foreign)}')
        return dict(keys)

    def validate_config(self, config: Config) -> None:
        """Let every plugin reject *config* (``metallb_validate_config``) with ConfigError."""
        self._pm.hook.metallb_validate_config(config=config)

    # -- allocation --------------------------------------------------------------------

    def make_source(self, spec: PoolSpec) -> AddressSource:
        """The address source of *spec* (``metallb_make_source``)."""
        source = self._pm.hook.metallb_make_source(spec=spec)
        if source is None:
            raise PluginError(
                f'pool "{spec.name}": no installed plugin builds pools of section "{spec.kind}"; '
                f"run `metallb plugins` to see what is loaded"
            )
        if not isinstance(source, AddressSource):
            raise PluginError(
                f'pool "{spec.name}": metallb_make_source returned {type(source).__name__}, '
                "which lacks members of AddressSource"
            )
        return source

    def pool_capabilities(self, section: str) -> SourceCapabilities:
        """What pools of *section* declare (``metallb_pool_capabilities``); the defaults when no plugin answers."""
        found = self._pm.hook.metallb_pool_capabilities(section=section)
        if found is None:
            return _NO_CAPABILITIES
        if not isinstance(found, SourceCapabilities):
            raise PluginError(
                f'metallb_pool_capabilities for section "{section}" returned {found!r}, not a SourceCapabilities'
            )
        return found

    def select_pools(self, request: PoolRequest, pools: Sequence[PoolSpec]) -> tuple[PoolSpec, ...] | None:
        """The pools to try, in order (``metallb_select_pools``), or None when no plugin chose.

        Every pool returned must be one of *pools*.
        """
        chosen = self._pm.hook.metallb_select_pools(request=request, pools=list(pools))
        if chosen is None:
            return None
        names = {p.name for p in pools}
        if not _sequence(chosen):
            raise PluginError(f"metallb_select_pools returned {chosen!r}, not a list of pools")
        for pool in chosen:
            if not isinstance(pool, PoolSpec) or pool.name not in names:
                raise PluginError(f"metallb_select_pools returned {pool!r}, which is not a configured pool")
        return tuple(chosen)

    def address_allocated(self, service: str, ip: netaddr.IPAddress, pool: str) -> None:
        """Notify ``metallb_address_allocated``; a plugin raising is logged, never propagated."""
        self._notify(self._pm.hook.metallb_address_allocated, service, ip, pool)

    def address_released(self, service: str, ip: netaddr.IPAddress, pool: str) -> None:
        """Notify ``metallb_address_released``; a plugin raising is logged, never propagated."""
        self._notify(self._pm.hook.metallb_address_released, service, ip, pool)

    @staticmethod
    def _notify(hook: pluggy.HookCaller, service: str, ip: netaddr.IPAddress, pool: str) -> None:
        try:
            hook(service=service, ip=ip, pool=pool)
        except Exception:
            log.exception("a plugin's %s hook raised", hook.name)

    # -- announcement and commands -----------------------------------------------------

    def make_announcer(self, protocol: str, settings: AnnouncerSettings) -> Announcer:
        """The announcer of *protocol* on this node (``metallb_make_announcer``)."""
        announcer = self._pm.hook.metallb_make_announcer(protocol=protocol, settings=settings)
        if announcer is None:
            raise PluginError(f'no plugin announces protocol "{protocol}"; run `metallb plugins` to see what is loaded')
        if not isinstance(announcer, Announcer):
            raise PluginError(
                f'metallb_make_announcer for "{protocol}" returned {type(announcer).__name__}, '
                "which lacks members of Announcer"
            )
        return announcer

    def add_commands(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> dict[str, str]:
        """Let every plugin add its subcommands (``metallb_add_commands``), each on its own.

        A plugin that raises costs only its own commands: the failures are
        returned (plugin name to ``"ExceptionType: message"``) for the caller
        to report.
        """
        failures: dict[str, str] = {}
        for impl in self._pm.hook.metallb_add_commands.get_hookimpls():
            try:
                impl.function(**{name: subparsers for name in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not take the command line down
                failures[impl.plugin_name] = f"{type(exc).__name__}: {exc}"
        return failures
