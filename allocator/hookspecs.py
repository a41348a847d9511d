"""Every hook metallb calls. Plugins implement them with ``@metallb.allocator.hookimpl``.

Factory hooks are ``firstresult``: the first plugin that returns something
other than None wins, so a plugin returns None for kinds that are not its own.
An implementation may accept fewer arguments than the spec, so specs can grow
new arguments without breaking plugins. ``docs/hooks.md`` documents each hook
with its exact signature; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    import netaddr
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

PROJECT = "metallb"
hookspec = pluggy.HookspecMarker(PROJECT)


# -- registration --------------------------------------------------------------------


@hookspec(historic=True)
def metallb_add_hookspecs(plugin_manager: pluggy.PluginManager) -> None:
    """Add a plugin's own hook specifications (``plugin_manager.add_hookspecs(module)``).

    Historic: a plugin registered later still receives it, so other plugins
    can implement the hooks it defines (the address-service plugin's backend
    hook is one). Called once per plugin, at registration.
    """


# -- configuration -------------------------------------------------------------------


@hookspec
def metallb_pool_sections() -> Sequence[str]:
    """Name the top-level config sections this plugin's pools live in.

    :return: section keys such as ``["address-pools"]``. A key no plugin names
        is an error in ``parse_config``.
    """


@hookspec(firstresult=True)
def metallb_parse_pool(entry: PoolEntry) -> PoolSpec | None:
    """Parse one entry of a pool section into a :class:`PoolSpec`.

    Most plugins call :func:`metallb.allocator.parse_pool_entry`, which parses
    the keys every pool shares, and add their own options.

    :param entry: the raw entry, its section and position.
    :return: the spec, or None when ``entry.section`` is not this plugin's.
    :raise ConfigError: the entry is invalid; name the field, value and rule.

    Stops at first non-None result.
    """


@hookspec
def metallb_pool_resource_kinds() -> Sequence[PoolResourceKind]:
    """Name the pool kinds this plugin's pools take in the resource format.

    The resource-kind form of ``metallb_pool_sections``: the controller lists
    and watches each kind, advertisements select its pools by name or labels,
    and ``metallb_parse_pool_resource`` parses them. A kind's ``section`` is
    the ``PoolSpec.kind`` of its pools, so ``metallb_make_source`` serves both
    formats.

    :return: for example ``[PoolResourceKind(kind="RackPool", plural="rackpools",
        section="rack-pools", group="racks.example.com")]``.
    """


@hookspec(firstresult=True)
def metallb_parse_pool_resource(resource: PoolResource) -> PoolSpec | None:
    """Parse one pool resource into a :class:`PoolSpec` (its advertisements are attached later).

    Most plugins call :func:`metallb.allocator.parse_pool_resource`, which
    parses the fields every pool kind shares (``autoAssign``,
    ``avoidBuggyIPs``, ``serviceAllocation``, the address list), and add their own.

    :param resource: the object: its kind, name, labels, ``spec`` (JSON
        types) and the Secrets it may refer to.
    :return: the spec, or None when ``resource.kind`` is not this plugin's.
    :raise ConfigError: the resource is invalid; name the field, value and
        rule. :class:`TransientConfigError` for a reference that may resolve
        later (a Secret that does not exist yet).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def metallb_render_pool_resource(spec: PoolSpec, namespace: str) -> Sequence[Mapping[str, Any]] | None:
    """Render a pool as the resource that parses back to it (and the Secrets it refers to).

    ``metallb convert-config`` calls it for every pool of a ConfigMap, and
    ``metallb check-config`` to print a resource configuration normalised.
    :func:`metallb.allocator.pool_resource` builds the shared fields.

    :param spec: a pool of a section this plugin claims (``spec.kind``).
    :param namespace: MetalLB's namespace, for ``metadata.namespace``.
    :return: the pool object first, then any Secret it refers to; None when
        ``spec.kind`` is not this plugin's.

    Stops at first non-None result.
    """


@hookspec
def metallb_unapplied_config(config: Config) -> Sequence[Unapplied]:
    """Name what of *config* this plugin's announcers accept but do not apply (yet).

    The controller reports each as a ``NotApplied`` condition on the object,
    and ``metallb check-config`` as a warning: nothing is silently ignored.

    :return: one :class:`Unapplied` per object with fields not applied.
    """


@hookspec
def metallb_announcer_protocols() -> Sequence[ProtocolInfo]:
    """Declare the announcement protocols this plugin provides, with the pool keys each owns.

    A pool's ``protocol`` must name a declared protocol; every pool section
    accepts the declared keys, and only pools of the owning protocol may set
    them. Import only metallb's base dependencies in the module defining this
    hook and the two below: a bare install must parse every protocol.

    :return: for example ``[ProtocolInfo(name="vxlan", pool_keys=("vni",))]``.
    """


@hookspec(firstresult=True)
def metallb_parse_advertisements(
    protocol: str, entry: PoolEntry, cidrs: Sequence[netaddr.IPNetwork]
) -> Sequence[Advertisement] | None:
    """Parse the keys *protocol* owns in a pool entry into its advertisements.

    Called while the pool entry is parsed, after its name, addresses and
    protocol. Read your keys from ``entry.data`` (text values, as in
    ``metallb_parse_pool``); keys of other protocols never reach a pool of yours.

    :param protocol: the pool's ``protocol`` value.
    :param entry: the raw pool entry (``entry.communities`` holds the
        ``bgp-communities`` aliases; ``entry.where()`` starts error messages).
    :param cidrs: the pool's CIDRs (ranges expanded), for checks against them.
    :return: at least one advertisement, each of *protocol*; None when
        *protocol* is not this plugin's.
    :raise ConfigError: a key is invalid; name the field, value and rule.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def metallb_dump_advertisements(protocol: str, advertisements: Sequence[Advertisement]) -> Mapping[str, Any] | None:
    """Render a pool's advertisements of *protocol* as the pool keys that parse back to them.

    ``dump_config`` (what ``metallb check-config`` prints) calls it for every
    protocol of every pool; its output must parse back to equal advertisements.

    :return: pool keys to plain YAML values (keys at their defaults may be
        left out); None when *protocol* is not this plugin's.

    Stops at first non-None result.
    """


@hookspec
def metallb_validate_config(config: Config) -> None:
    """Check a whole parsed config; raise :class:`ConfigError` to reject it.

    Runs inside ``parse_config``, after the built-in checks, so a rejected
    config never reaches the allocator or the announcers.
    """


# -- allocation ----------------------------------------------------------------------


@hookspec(firstresult=True)
def metallb_make_source(spec: PoolSpec) -> AddressSource | None:
    """Build the stateful address source for a pool.

    Called by ``Allocator.set_config`` for new or changed pools.

    :param spec: a pool of a section this plugin claims (``spec.kind``).
    :return: an object implementing :class:`AddressSource`, or None when
        ``spec.kind`` is not this plugin's.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def metallb_pool_capabilities(section: str) -> SourceCapabilities | None:
    """Declare what the operator must do for the addresses of *section*'s pools.

    Asked for every section the installed plugins name, whether or not the
    config has pools of it: the controller removes the annotations every
    installed pool kind declares from Services that no longer hold such an
    address, so removing a pool from the config leaves none behind.

    :param section: a pool section (``metallb_pool_sections``).
    :return: a :class:`SourceCapabilities`, or None when *section* is not this
        plugin's (a section no plugin answers for declares nothing).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def metallb_select_pools(request: PoolRequest, pools: Sequence[PoolSpec]) -> Sequence[PoolSpec] | None:
    """Order the pools an automatic allocation tries.

    :param request: the service, family and keys asking.
    :param pools: every pool, in configuration order.
    :return: the pools to try, in order; None to leave the choice to the next
        plugin. When every plugin returns None, the allocator tries the
        ``auto-assign`` pools that have addresses of ``request.family`` (or no
        local CIDRs at all): first those whose ``service_allocation`` selects
        the Service (``request.namespace``, ``request.labels``), by priority,
        then those without a ``service_allocation``, in configuration order.

    Stops at first non-None result.
    """


@hookspec
def metallb_address_allocated(service: str, ip: netaddr.IPAddress, pool: str) -> None:
    """Notification: *service* now holds *ip* from *pool*. Must not raise."""


@hookspec
def metallb_address_released(service: str, ip: netaddr.IPAddress, pool: str) -> None:
    """Notification: *service* no longer holds *ip*. Must not raise."""


# -- announcement --------------------------------------------------------------------


@hookspec(firstresult=True)
def metallb_make_announcer(protocol: str, settings: AnnouncerSettings) -> Announcer | None:
    """Build the announcer for a protocol (``layer2``, ``bgp`` ...) on this node.

    :param protocol: a protocol of the pools (``PoolSpec.protocols``).
    :param settings: node name and speaker options. Import the announcer's
        heavy dependencies here, not at module level: the module also parses
        configuration on bare installs.
    :return: an object implementing :class:`Announcer`, or None when the
        protocol is not this plugin's.

    Stops at first non-None result.
    """


# -- command line ---------------------------------------------------------------------


@hookspec
def metallb_add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add subcommands to the ``metallb`` command line.

    Call ``subparsers.add_parser(name, help=..., description=..., epilog=...)``,
    add the options, and ``set_defaults(run=function)``: ``metallb NAME``
    calls ``function(args)`` and exits with the integer it returns. Keep this
    hook cheap: import heavy modules (HTTP or Kubernetes clients) inside the
    run function, never at module level, so building the parser stays fast and
    ``metallb plugins`` works without your extras installed.

    :param subparsers: the ``metallb`` parser's subcommand group.
    """
