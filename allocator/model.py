"""Value types: the parsed configuration and the objects hooks exchange.

All of them are frozen attrs classes, so a ``Config`` can be shared between
threads and compared to decide what changed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

import attrs
import netaddr
from metallb.allocator.values import Port, family, pool_name, service_key
from metallb.allocator.yamlload import shown

if TYPE_CHECKING:
    from metallb.allocator.plugins import Hooks

__all__ = [
    "Advertisement",
    "BgpAdvertisement",
    "ClusterView",
    "Community",
    "Config",
    "L2Advertisement",
    "LabelExpression",
    "LargeCommunity",
    "NodeInfo",
    "NodeSelector",
    "PeerSpec",
    "PoolEntry",
    "PoolRequest",
    "PoolSpec",
    "PoolStats",
    "Port",
    "ProtocolInfo",
    "ServiceView",
    "frozen_mapping",
]


def frozen_mapping(value: Mapping[str, object] | None = None) -> Mapping[str, object]:
    """Return a read-only copy of *value* that keeps insertion order."""
    return MappingProxyType(dict(value or {}))


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _advertisements(value: Iterable[Advertisement]) -> tuple[Advertisement, ...]:
    return tuple(value)


@attrs.frozen(order=True)
class Community:
    """A standard BGP community (RFC 1997), ``high:low``."""

    value: int

    def __str__(self) -> str:
        return f"{self.value >> 16}:{self.value & 0xFFFF}"


@attrs.frozen(order=True, kw_only=True)
class LargeCommunity:
    """A large BGP community (RFC 8092), written ``large:A:B:C`` in the config."""

    global_admin: int
    local1: int
    local2: int

    def __str__(self) -> str:
        return f"large:{self.global_admin}:{self.local1}:{self.local2}"


@attrs.frozen(kw_only=True)
class LabelExpression:
    """One ``match-expressions`` item of a node selector."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return whether *labels* satisfy this expression."""
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@attrs.frozen
class NodeSelector:
    """A Kubernetes-style label selector; everything inside one selector is ANDed."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[LabelExpression, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return whether a node with *labels* is selected."""
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            e.matches(labels) for e in self.match_expressions
        )

    @staticmethod
    def any_match(selectors: tuple[NodeSelector, ...], labels: Mapping[str, str]) -> bool:
        """Selectors in a list are ORed; an empty list selects every node."""
        return not selectors or any(s.matches(labels) for s in selectors)


@runtime_checkable
class Advertisement(Protocol):
    """One rule of how an announcement protocol announces a pool's addresses.

    The core types are :class:`L2Advertisement` and :class:`BgpAdvertisement`. A
    third-party protocol brings its own: a frozen attrs class (hashable, compared
    by value) with a class attribute ``protocol`` naming the protocol, returned by
    its ``metallb_parse_advertisements`` hook.
    """

    @property
    def protocol(self) -> str:
        """The protocol announcing through this advertisement (``layer2``, ``bgp`` ...)."""
        ...


@attrs.frozen(kw_only=True)
class L2Advertisement:
    """How a pool's addresses are answered for on layer 2 (MetalLB's ``L2Advertisement``).

    Attributes:
        interfaces: interface names or shell patterns to answer on; empty
            means every eligible interface.
        node_selectors: nodes that may announce through this advertisement
            (ORed; empty: every node), on top of the pool's ``node_selectors``.
            The ConfigMap format has no such key, so its pools leave it empty;
            the announcers do not read it yet.
    """

    protocol: ClassVar[str] = "layer2"

    interfaces: tuple[str, ...] = ()
    node_selectors: tuple[NodeSelector, ...] = ()


@attrs.frozen(kw_only=True)
class BgpAdvertisement:
    """How a pool's addresses are advertised over BGP (MetalLB's ``BGPAdvertisement``).

    Attributes:
        aggregation_length: IPv4 prefix length the address is masked to.
        aggregation_length_v6: the same for IPv6.
        localpref: LOCAL_PREF, sent to iBGP peers only.
        communities: standard and large communities, sorted, no duplicates.
        node_selectors: nodes that may advertise through this advertisement
            (ORed; empty: every node), on top of the pool's ``node_selectors``.
        peers: names of the peers to advertise to (empty: every peer).
            The ConfigMap format can set neither of the last two, so its pools
            leave them empty; the announcers do not read them yet.
    """

    protocol: ClassVar[str] = "bgp"

    aggregation_length: int = 32
    aggregation_length_v6: int = 128
    localpref: int = 0
    communities: tuple[Community | LargeCommunity, ...] = ()
    node_selectors: tuple[NodeSelector, ...] = ()
    peers: tuple[str, ...] = ()

    def prefix(self, ip: netaddr.IPAddress) -> netaddr.IPNetwork:
        """Return *ip* masked to the aggregation length of its family."""
        length = self.aggregation_length if ip.version == 4 else self.aggregation_length_v6
        return netaddr.IPNetwork(f"{ip}/{length}").cidr


@attrs.frozen(kw_only=True)
class ProtocolInfo:
    """An announcement protocol, as a plugin declares it in ``metallb_announcer_protocols``.

    Attributes:
        name: the value of a pool's ``protocol`` key (``layer2``, ``bgp`` ...).
        pool_keys: the pool-entry keys the protocol owns (``interfaces``,
            ``bgp-advertisements`` ...). Every pool section accepts them; a pool
            of another protocol may leave them empty but not set them.
    """

    name: str
    pool_keys: tuple[str, ...] = attrs.field(default=(), converter=_strings)


# Not slotted, so the derived views below can be cached on the instance.
@attrs.frozen(kw_only=True, slots=False)
class PoolSpec:
    """One pool from any pool section, as parsed; the allocator's unit of policy.

    Attributes:
        name: unique across all sections.
        kind: the config section the pool came from (``address-pools``,
            ``address-services``, or a plugin's own section).
        cidrs: the addresses the pool may hand out, in file order (ranges are
            expanded to CIDRs).
        auto_assign: whether services without a request may get its addresses.
        avoid_buggy_ips: skip IPv4 addresses ending in ``.0`` and ``.255``.
        advertisements: how the pool is announced: :class:`L2Advertisement`,
            :class:`BgpAdvertisement` and third-party protocols' own, in
            configuration order. Empty: the pool is allocated from but not announced.
        node_selectors: which nodes may announce the pool (ORed; empty = all).
        options: the section's own options (for example ``url``), parsed.
        cidrs_key: the entry key ``cidrs`` was read from, which
            ``dump_config`` writes them back under: ``parse_pool_entry``'s
            *cidrs_key*, None when the section has none (a plugin that fills
            ``cidrs`` itself, from a file or a backend). Default: ``addresses``
            for ``address-pools``, else ``cidrs``.

    Derived from ``advertisements``: ``protocols``, ``protocol``,
    ``l2_advertisements``, ``bgp_advertisements``.
    """

    name: str = attrs.field(validator=lambda _s, _a, v: pool_name(v, "PoolSpec", argument="name"))
    kind: str
    cidrs: tuple[netaddr.IPNetwork, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    advertisements: tuple[Advertisement, ...] = attrs.field(default=(), converter=_advertisements)
    node_selectors: tuple[NodeSelector, ...] = ()
    options: Mapping[str, object] = attrs.field(factory=frozen_mapping, converter=frozen_mapping, hash=False)
    cidrs_key: str | None = attrs.field(
        default=attrs.Factory(lambda spec: _default_cidrs_key(spec.kind), takes_self=True)
    )

    # Derived views, computed once: the speaker and the BGP policy read them per service.
    @functools.cached_property
    def protocols(self) -> tuple[str, ...]:
        """The protocols of ``advertisements``, each once, in order."""
        return tuple(dict.fromkeys(a.protocol for a in self.advertisements))

    @functools.cached_property
    def l2_advertisements(self) -> tuple[L2Advertisement, ...]:
        """The layer-2 ``advertisements``."""
        return tuple(a for a in self.advertisements if isinstance(a, L2Advertisement))

    @functools.cached_property
    def bgp_advertisements(self) -> tuple[BgpAdvertisement, ...]:
        """The BGP ``advertisements``."""
        return tuple(a for a in self.advertisements if isinstance(a, BgpAdvertisement))

    @property
    def protocol(self) -> str:
        """The first of ``protocols``, "" when none: the ConfigMap's ``protocol`` key.

        A ConfigMap pool has exactly one protocol; code that announces should
        iterate ``protocols``, since a pool may be announced by several.
        """
        return self.protocols[0] if self.protocols else ""

    def advertisements_of(self, protocol: str) -> tuple[Advertisement, ...]:
        """The advertisements of *protocol*, in order."""
        return tuple(a for a in self.advertisements if a.protocol == protocol)

    def families(self) -> frozenset[int]:
        """The IP versions this pool has addresses of."""
        return frozenset(c.version for c in self.cidrs)

    def contains(self, ip: netaddr.IPAddress) -> bool:
        """MetalLB's pool membership: in a CIDR, and not a buggy address when avoided."""
        if self.avoid_buggy_ips and is_buggy(ip):
            return False
        return any(ip in c for c in self.cidrs if c.version == ip.version)


def _default_cidrs_key(kind: str) -> str:
    return "addresses" if kind == "address-pools" else "cidrs"


def is_buggy(ip: netaddr.IPAddress) -> bool:
    """IPv4 addresses ending in .0 or .255, which some old clients mishandle."""
    return ip.version == 4 and int(ip) & 0xFF in (0, 255)


@attrs.frozen(kw_only=True)
class PeerSpec:
    """One BGP peer, as in MetalLB's ``peers`` section."""

    my_asn: int
    peer_asn: int
    peer_address: netaddr.IPAddress
    peer_port: int = 179
    hold_time: int = 90
    router_id: netaddr.IPAddress | None = None
    source_address: netaddr.IPAddress | None = None
    password: str = ""
    node_selectors: tuple[NodeSelector, ...] = ()

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether a node with *labels* peers with this router."""
        return NodeSelector.any_match(self.node_selectors, labels)


@attrs.frozen(eq=False, kw_only=True)
class Config:
    """A parsed, validated configuration. Immutable.

    Attributes:
        pools: every pool of every section, by name, in file order (which is
            also the auto-assign order).
        peers: BGP peers in file order.
        communities: the ``bgp-communities`` aliases.
        sections: the pool sections present in the file, in file order.
        warnings: one line per surprising value the file is valid with (a hold
            time under a second rounds to 0, which turns off the hold timer);
            not part of equality: two files meaning the same are equal.
    """

    pools: Mapping[str, PoolSpec] = attrs.field(factory=frozen_mapping, converter=frozen_mapping)
    peers: tuple[PeerSpec, ...] = ()
    communities: Mapping[str, Community | LargeCommunity] = attrs.field(
        factory=frozen_mapping, converter=frozen_mapping
    )
    sections: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return (
            list(self.pools.items()) == list(other.pools.items())
            and self.peers == other.peers
            and dict(self.communities) == dict(other.communities)
            and self.sections == other.sections
        )

    __hash__ = None  # type: ignore[assignment]

    def pool_for(self, ip: netaddr.IPAddress) -> PoolSpec | None:
        """The pool whose CIDRs hold *ip* (pools never overlap), or None."""
        for pool in self.pools.values():
            if pool.contains(ip):
                return pool
        return None

    def __iter__(self) -> Iterator[PoolSpec]:
        return iter(self.pools.values())


@attrs.frozen
class PoolStats:
    """Capacity and use of one pool.

    Attributes:
        total: how many addresses the pool can hand out, exactly, or ``None``
            when the source cannot know (an address service).
        in_use: distinct addresses held (a shared address counts once).
    """

    total: int | None
    in_use: int

    @property
    def available(self) -> int | None:
        """Free addresses, or None when the total is unknown."""
        return None if self.total is None else self.total - self.in_use


@attrs.frozen
class NodeInfo:
    """A node as announcers see it: name and labels."""

    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_mapping, eq=False, hash=False)  # type: ignore[arg-type]


EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


@attrs.frozen(kw_only=True)
class ClusterView:
    """What a speaker knows of the cluster when it decides whether to announce.

    Attributes:
        node: this speaker's node.
        nodes: every known node by name (for labels).
        live_speakers: nodes whose speaker is alive (its Lease is fresh).
        ignore_exclude_lb: do not honour the exclusion label (``--ignore-exclude-lb``).
    """

    node: NodeInfo
    nodes: Mapping[str, NodeInfo] = attrs.field(factory=dict, converter=frozen_mapping, eq=False, hash=False)  # type: ignore[arg-type]
    live_speakers: frozenset[str] = frozenset()
    ignore_exclude_lb: bool = False


@attrs.frozen(kw_only=True)
class ServiceView:
    """One service as the speaker hands it to announcers.

    Attributes:
        key: ``namespace/name``.
        ips: the service's load-balancer addresses (one per family).
        pool: the pool the addresses come from.
        local_traffic: ``externalTrafficPolicy: Local``.
        ready_nodes: nodes hosting at least one ready endpoint.
        has_ready_endpoints: whether any ready endpoint exists anywhere (an
            endpoint may have no node name).
        announced_elsewhere: another of our nodes announces it, or did (its
            announcement status exists): taking it over is a move, not a new
            assignment, so the layer-2 announcer does not probe for conflicts.
            Not part of equality: it never makes an announcement differ.
    """

    key: str
    ips: tuple[netaddr.IPAddress, ...]
    pool: PoolSpec
    local_traffic: bool = False
    ready_nodes: frozenset[str] = frozenset()
    has_ready_endpoints: bool = True
    announced_elsewhere: bool = attrs.field(default=False, eq=False)


@attrs.frozen(kw_only=True)
class PoolEntry:
    """One entry of a pool section, handed to ``metallb_parse_pool``.

    Attributes:
        section: the top-level key (``address-pools``, ``address-services`` ...).
        index: 1-based position in the section, for error messages.
        data: the entry as YAML text values (scalars are strings, never
            numbers or booleans: convert them by field type).
        communities: the ``bgp-communities`` aliases, for advertisements.
        hooks: the plugins parsing this config (the announcer protocols come
            from them); None means the installed ones.
    """

    section: str
    index: int
    data: Mapping[str, object] = attrs.field(converter=frozen_mapping, eq=False, hash=False)
    communities: Mapping[str, Community | LargeCommunity] = attrs.field(
        factory=frozen_mapping, converter=frozen_mapping, eq=False, hash=False
    )
    hooks: Hooks | None = attrs.field(default=None, eq=False, hash=False, repr=False)

    def where(self) -> str:
        """``address pool #2 "edge"``: how errors name this entry."""
        noun = self.section.rstrip("s").replace("-", " ")
        name = self.data.get("name")
        return f"{noun} #{self.index}" + (f' "{shown(name)}"' if isinstance(name, str) and name else "")


@attrs.frozen(kw_only=True)
class PoolRequest:
    """What ``metallb_select_pools`` gets to decide which pools to try.

    Attributes:
        service: ``namespace/name``.
        family: 4 or 6; None when the service takes an address of any family
            (``Allocator.allocate``'s default): it gets one from the first pool
            chosen that has a free address, IPv4 first in a dual-stack pool.
        sharing_key: the ``allow-shared-ip`` value, or empty.
        backend_key: the backend key (empty for ``Cluster`` traffic policy).
    """

    service: str = attrs.field(validator=lambda _s, _a, v: service_key(v, "PoolRequest"))
    family: int | None = attrs.field(validator=lambda _s, _a, v: family(v, "PoolRequest", optional=True))
    sharing_key: str = ""
    backend_key: str = ""
