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
    "BfdProfile",
    "BgpAdvertisement",
    "ClusterView",
    "Community",
    "Config",
    "L2Advertisement",
    "LabelExpression",
    "LabelSelector",
    "LargeCommunity",
    "NodeInfo",
    "NodeSelector",
    "PeerSpec",
    "PoolEntry",
    "PoolResourceKind",
    "PoolRequest",
    "PoolResource",
    "PoolSpec",
    "PoolStats",
    "Port",
    "ProtocolInfo",
    "ServiceAllocation",
    "ServiceView",
    "Unapplied",
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


#: A Kubernetes label selector for any kind of object (pools, Services, Namespaces):
#: the same type as :class:`NodeSelector`, named for what it selects.
LabelSelector = NodeSelector


def _frozen_names(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _names(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


def _selects_node(
    nodes: frozenset[str] | None, selectors: tuple[NodeSelector, ...], name: str, labels: Mapping[str, str]
) -> bool:
    """An advertisement's node rule: the resolved names when known, else the selectors on *labels*."""
    if nodes is not None:
        return name in nodes
    return NodeSelector.any_match(selectors, labels)


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
            The ConfigMap format has no such key, so its pools leave it empty.
        nodes: the names of the nodes ``node_selectors`` selected among the
            Node objects the configuration was parsed with (MetalLB resolves
            them when it loads); None when it was parsed without Node objects,
            and the selectors are then matched against each node's labels.
    """

    protocol: ClassVar[str] = "layer2"

    interfaces: tuple[str, ...] = ()
    node_selectors: tuple[NodeSelector, ...] = ()
    nodes: frozenset[str] | None = attrs.field(default=None, converter=_names)

    def selects(self, name: str, labels: Mapping[str, str]) -> bool:
        """Whether the node *name* (with *labels*) announces through this advertisement."""
        return _selects_node(self.nodes, self.node_selectors, name, labels)


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
        nodes: the node names ``node_selectors`` resolved to, or None (as
            :attr:`L2Advertisement.nodes`).
        peers: names of the peers to advertise to (empty: every peer).
            The ConfigMap format can set neither selectors nor peers, so its
            pools leave them empty.
    """

    protocol: ClassVar[str] = "bgp"

    aggregation_length: int = 32
    aggregation_length_v6: int = 128
    localpref: int = 0
    communities: tuple[Community | LargeCommunity, ...] = ()
    node_selectors: tuple[NodeSelector, ...] = ()
    peers: tuple[str, ...] = ()
    nodes: frozenset[str] | None = attrs.field(default=None, converter=_names)

    def selects(self, name: str, labels: Mapping[str, str]) -> bool:
        """Whether the node *name* (with *labels*) advertises through this advertisement."""
        return _selects_node(self.nodes, self.node_selectors, name, labels)

    def reaches(self, peer: str) -> bool:
        """Whether routes of this advertisement go to the peer named *peer*."""
        return not self.peers or peer in self.peers

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


@attrs.frozen(kw_only=True)
class ServiceAllocation:
    """Which Services a pool serves when they name no pool (MetalLB's ``serviceAllocation``).

    Attributes:
        priority: lower is tried first; 0 means "no priority" (after every
            pool with one). Negative priorities sort before positive ones.
        namespaces: Service namespaces, as written.
        namespace_selectors: selectors of Service namespaces, as written.
        service_selectors: selectors of the Service's own labels (ORed).
        selected_namespaces: the namespaces ``namespace_selectors`` selected
            among the Namespace objects the configuration was parsed with
            (MetalLB resolves them when it loads).

    With no namespaces and no selectors at all (only a priority, or
    nothing), the pool serves every Service (MetalLB v0.15).
    """

    priority: int = 0
    namespaces: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    namespace_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()
    selected_namespaces: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen_names)

    @property
    def every_service(self) -> bool:
        """True for an allocation with neither namespaces nor selectors: it serves every Service."""
        return not (self.namespaces or self.namespace_selectors or self.service_selectors)

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether a Service in *namespace* with *labels* may get this pool's addresses unasked.

        MetalLB's rule: the pool is indexed for the Service (its namespace is
        one of the pool's, or the pool has service selectors), and compatible
        with it (namespaces, when there are any, include the Service's; service
        selectors, when there are any, match its labels). A pool whose
        namespace selectors matched no Namespace, and that has no service
        selectors, serves no Service unasked.
        """
        names = set(self.namespaces) | self.selected_namespaces
        selectors = self.service_selectors or ((LabelSelector(),) if self.every_service else ())
        if namespace not in names and not selectors:
            return False
        if names and namespace not in names:
            return False
        return not selectors or any(s.matches(labels) for s in selectors)


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
        service_allocation: which Services get the pool's addresses when they
            name no pool; None: any Service, after the pools that have one.
        labels: the pool resource's labels (advertisements select pools by
            them); empty for ConfigMap pools.

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
    service_allocation: ServiceAllocation | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_mapping, hash=False)  # type: ignore[arg-type]

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


def buggy_count(cidr: netaddr.IPNetwork) -> int:
    """How many addresses of *cidr* end in .0 or .255 (IPv4 only)."""
    if cidr.version != 4:
        return 0
    if cidr.prefixlen <= 24:
        return 2 * (1 << (24 - int(cidr.prefixlen)))
    # A block inside one /24: only its first address can end in .0, only its last in .255.
    if cidr.first == cidr.last:
        return int(cidr.first & 0xFF in (0, 0xFF))
    return int(cidr.first & 0xFF == 0) + int(cidr.last & 0xFF == 0xFF)


@attrs.frozen(kw_only=True)
class BfdProfile:
    """A BFD profile (MetalLB's ``BFDProfile``, the ConfigMap's ``bfd-profiles``); times in milliseconds.

    Absent fields take MetalLB's defaults, so a profile means the same whichever format it came from.

    Attributes:
        name: the profile's name (peers refer to it by ``bfd_profile``).
        receive_interval: the shortest interval between the peer's packets we accept (10-60000).
        transmit_interval: how often we want to send (10-60000).
        detect_multiplier: how many intervals without a packet fail the session (2-255).
        echo_interval: the echo function's interval (10-60000); unused while echo is off.
        echo_mode: use the echo function (metallb's BFD has none: the ConfigMap parser rejects
            true; a ``BFDProfile`` resource with it is reported as not applied).
        passive_mode: wait for the peer's first packet before sending.
        minimum_ttl: the lowest TTL accepted from a multi-hop peer (1-254).
    """

    name: str = ""
    receive_interval: int = 300
    transmit_interval: int = 300
    detect_multiplier: int = 3
    echo_interval: int = 50
    echo_mode: bool = False
    passive_mode: bool = False
    minimum_ttl: int = 254


@attrs.frozen(kw_only=True)
class PeerSpec:
    """One BGP peer: a ``peers`` entry of the ConfigMap, or a ``BGPPeer`` resource.

    Attributes:
        my_asn: this cluster's AS number.
        peer_asn: the router's AS number (0 with ``dynamic_asn``).
        peer_address: the router's address; None for a peer reached by
            ``interface`` (BGP unnumbered). A link-local IPv6 address
            (fe80::/10) needs ``interface``, the scope of that address.
        peer_port: TCP port (179).
        hold_time: proposed hold time, whole seconds (90).
        router_id: the BGP identifier to send, or None to derive one.
        source_address: the local address to connect from, or None.
        password: the TCP-MD5 key: ``password``, or the value of the
            ``passwordSecret`` resolved when the configuration was parsed.
        node_selectors: nodes that peer with this router (ORed; empty: all).
        name: the ``BGPPeer``'s name (BGP advertisements name peers by it);
            "" for ConfigMap peers.
        interface: with ``peer_address``: the node's interface a link-local
            ``peer_address`` is scoped to; without: the interface of an
            unnumbered session; or "".
        keepalive_time: seconds between keepalives as configured, or None
            (derived: a third of the hold time); never slower than a third of
            the negotiated hold time.
        connect_time: seconds between connection attempts as configured (a
            fixed pause), or None (MetalLB's backoff: 0, 1, 2, 4 ... seconds).
        ebgp_multihop: the peer may be more than one hop away (eBGP): the
            session's packets leave with TTL 255 and its BFD session is
            multihop (RFC 5883).
        bfd_profile: the name of a profile of :attr:`Config.bfd_profiles`, or "" (no BFD).
        enable_graceful_restart: announce graceful restart (RFC 4724).
        dynamic_asn: ``internal`` or ``external`` instead of a peer ASN
            (``peer_asn`` 0: any peer AS of that kind, read from its OPEN), or "".
        disable_mp: only the session's own address family over it (MetalLB's
            ``disableMP``): IPv4 routes to an IPv4 peer, IPv6 routes to an IPv6 peer.
        dual_stack_address_family: both address families over one session.
        vrf: the VRF of the session, or "" for the default one.

    Which of these the BGP speaker applies is for its plugin to say
    (``metallb_unapplied_config``); what it does not apply is reported, never
    silently dropped.
    """

    my_asn: int
    peer_asn: int
    peer_address: netaddr.IPAddress | None = None
    peer_port: int = 179
    hold_time: int = 90
    router_id: netaddr.IPAddress | None = None
    source_address: netaddr.IPAddress | None = None
    password: str = attrs.field(default="", repr=False)
    node_selectors: tuple[NodeSelector, ...] = ()
    name: str = ""
    interface: str = ""
    keepalive_time: float | None = None
    connect_time: float | None = None
    ebgp_multihop: bool = False
    bfd_profile: str = ""
    enable_graceful_restart: bool = False
    dynamic_asn: str = ""
    disable_mp: bool = False
    dual_stack_address_family: bool = False
    vrf: str = ""

    def where(self, index: int) -> str:
        """How messages name this peer: ``BGPPeer "name"``, or ``peer #index`` for a ConfigMap peer."""
        return f'BGPPeer "{shown(self.name)}"' if self.name else f"peer #{index}"

    def external(self) -> bool:
        """Whether the session is eBGP: by ``dynamic_asn`` when set, else by the two ASNs."""
        return self.dynamic_asn == "external" if self.dynamic_asn else self.my_asn != self.peer_asn

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether a node with *labels* peers with this router."""
        return NodeSelector.any_match(self.node_selectors, labels)


@attrs.frozen(eq=False, kw_only=True)
class Config:
    """A parsed, validated configuration. Immutable.

    The same model whichever format it came from (the ConfigMap or resources).

    Attributes:
        pools: every pool of every section or kind, by name, in configuration
            order (file order; resource name order for resources), which is
            also the auto-assign order among pools of equal priority.
        peers: BGP peers in configuration order.
        communities: the ``bgp-communities`` aliases (``Community`` resources).
        sections: the pool sections present in the file, in file order
            (empty for resources).
        bfd_profiles: BFD profiles by name (``BFDProfile`` resources).
        warnings: one line per surprising value the configuration is valid with
            (a hold time under a second rounds to 0, which turns off the hold
            timer; a field accepted but not applied yet); not part of equality:
            two configurations meaning the same are equal.
    """

    pools: Mapping[str, PoolSpec] = attrs.field(factory=frozen_mapping, converter=frozen_mapping)
    peers: tuple[PeerSpec, ...] = ()
    communities: Mapping[str, Community | LargeCommunity] = attrs.field(
        factory=frozen_mapping, converter=frozen_mapping
    )
    sections: tuple[str, ...] = ()
    bfd_profiles: Mapping[str, BfdProfile] = attrs.field(factory=frozen_mapping, converter=frozen_mapping)
    warnings: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return (
            list(self.pools.items()) == list(other.pools.items())
            and self.peers == other.peers
            and dict(self.communities) == dict(other.communities)
            and self.sections == other.sections
            and dict(self.bfd_profiles) == dict(other.bfd_profiles)
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
        labels: the Service's labels (pools' ``service_allocation`` selects by them).
    """

    service: str = attrs.field(validator=lambda _s, _a, v: service_key(v, "PoolRequest"))
    family: int | None = attrs.field(validator=lambda _s, _a, v: family(v, "PoolRequest", optional=True))
    sharing_key: str = ""
    backend_key: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_mapping, hash=False)  # type: ignore[arg-type]

    @property
    def namespace(self) -> str:
        """The Service's namespace (the part of ``service`` before the slash)."""
        return self.service.partition("/")[0] if "/" in self.service else ""


@attrs.frozen(kw_only=True)
class PoolResourceKind:
    """A pool kind a plugin contributes to the resource format (``metallb_pool_resource_kinds``).

    Attributes:
        kind: the resource kind (``IPAddressPool``, ``AddressService`` ...).
        plural: its plural resource name (``ipaddresspools``), for the API and RBAC.
        section: the ``PoolSpec.kind`` its pools get: the ConfigMap section of
            the same pools, so one ``metallb_make_source`` serves both formats.
        group: the API group.
        versions: the API versions served, the storage (and watched) one first.
    """

    kind: str
    plural: str
    section: str
    group: str = "metallb.io"
    versions: tuple[str, ...] = attrs.field(default=("v1alpha1",), converter=_strings)

    @property
    def api_versions(self) -> tuple[str, ...]:
        """``group/version`` for each version."""
        return tuple(f"{self.group}/{v}" for v in self.versions)


@attrs.frozen(kw_only=True)
class PoolResource:
    """One pool resource, handed to ``metallb_parse_pool_resource``.

    Attributes:
        kind: its :class:`PoolResourceKind`.
        api_version: ``group/version`` as written.
        name: ``metadata.name``.
        labels: ``metadata.labels``.
        spec: ``spec`` as the API returns it (JSON types: numbers, booleans,
            strings, lists, mappings).
        secrets: the Secrets of MetalLB's namespace by name, each as
            ``{"type": ..., "data": {key: bytes}}``, to resolve references.
        namespaces: the cluster's Namespaces (name to labels), to resolve
            ``serviceAllocation.namespaceSelectors``.
        hooks: the plugins parsing this configuration; None means the installed ones.
    """

    kind: PoolResourceKind
    api_version: str
    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_mapping, eq=False, hash=False)  # type: ignore[arg-type]
    spec: Mapping[str, object] = attrs.field(factory=frozen_mapping, converter=frozen_mapping, eq=False, hash=False)
    secrets: Mapping[str, object] = attrs.field(
        factory=frozen_mapping, converter=frozen_mapping, eq=False, hash=False, repr=False
    )
    namespaces: Mapping[str, object] = attrs.field(
        factory=frozen_mapping, converter=frozen_mapping, eq=False, hash=False, repr=False
    )
    hooks: Hooks | None = attrs.field(default=None, eq=False, hash=False, repr=False)

    def where(self) -> str:
        """``AddressService "dhcp"``: how errors name this resource."""
        return f'{self.kind.kind} "{shown(self.name)}"'


@attrs.frozen(kw_only=True)
class Unapplied:
    """Configuration an announcer accepts but does not apply (yet): ``metallb_unapplied_config``.

    Attributes:
        kind: ``BGPPeer`` or ``BFDProfile`` (or a plugin's own).
        name: the object's name ("" for a ConfigMap peer: see *index*).
        index: 1-based position in ``Config.peers`` for peers, else 0.
        fields: the model fields not applied (``vrf`` ...).
        effect: what happens instead, one sentence ("the session runs without them").
    """

    kind: str
    name: str
    fields: tuple[str, ...]
    effect: str
    index: int = 0
