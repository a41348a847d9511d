"""The objects plugins return from the factory hooks: address sources and announcers.

Both are small typed Protocols. Plugin authors may subclass :class:`SourceBase`
or :class:`AnnouncerBase` to inherit the optional methods' defaults.

Thread-safety contract: the :class:`~metallb.allocator.Allocator` calls a
source from many threads, never while holding its own lock, and never twice at
once for the same owner. A source protects its own state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, runtime_checkable

import attrs
import netaddr
from metallb.allocator.model import ClusterView, Config, NodeInfo, PoolSpec, ServiceView

__all__ = [
    "AddressSource",
    "Announcer",
    "AnnouncerBase",
    "AnnouncerSettings",
    "ReconcileReport",
    "SourceBase",
    "SourceCapabilities",
]


@attrs.frozen
class ReconcileReport:  # positional, as documented in docs/api.md
    """What a source's reconciliation found and did.

    Attributes:
        released: orphans (held by the source's backend, by nobody here) that
            were given back.
        lost: ``(owner, address)`` pairs we hold that the backend no longer
            holds; the operator should allocate these services again.
        supported: False when the backend cannot be asked (for example an
            address service without ``/v1/status``).
    """

    released: tuple[netaddr.IPAddress, ...] = ()
    lost: tuple[tuple[str, netaddr.IPAddress], ...] = ()
    supported: bool = True


def _pairs(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((str(k), str(v)) for k, v in items)


@attrs.frozen(kw_only=True)
class SourceCapabilities:
    """What the pools of one kind (section) need from the operator, so it needs no knowledge of them.

    A plugin declares it per section (``metallb_pool_capabilities``), without
    any config; :meth:`Allocator.capabilities <metallb.allocator.Allocator.capabilities>`
    gives a pool's.

    Attributes:
        remote_release: releases reach a backend outside metallb (a lease
            server, an IPAM). A Service holding such an address carries
            metallb's finalizer, so deleting it while the controller is down
            still gives the address back.
        annotations: ``(describe key, Service annotation)`` pairs (a mapping
            is accepted): the controller copies ``describe(ip)[key]`` to the
            annotation, and removes the annotation when the key is absent.
    """

    remote_release: bool = False
    annotations: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)


@runtime_checkable
class AddressSource(Protocol):
    """Hands out the addresses of one pool. Returned by ``metallb_make_source``.

    Owners are service keys (``namespace/name``). A source counts owners per
    address: an address shared by two services is released to its backend only
    when the last owner releases it.

    What the operator must do for its addresses (a finalizer, annotations)
    is declared for the pool's kind by ``metallb_pool_capabilities``.
    """

    spec: PoolSpec

    def owns(self, ip: netaddr.IPAddress) -> bool:
        """Whether *ip* belongs to this pool. Pure and local: never does I/O."""
        ...

    def acquire(
        self, owner: str, *, family: int, wanted: netaddr.IPAddress | None = None, uid: str | None = None
    ) -> netaddr.IPAddress:
        """Take a free address of *family* (4 or 6) for *owner*, or exactly *wanted*.

        *uid* is the Service's ``metadata.uid`` when the caller knows it (None
        otherwise): a source whose backend keys leases on it (an address
        service's idempotent POST) tells a recreated Service from the old one;
        others ignore it. The allocator passes it only when it has one.

        May do I/O. Raises :class:`~metallb.allocator.PoolExhaustedError` when
        nothing is free, :class:`~metallb.allocator.AddressInUseError` when
        *wanted* is taken, :class:`~metallb.allocator.SourceUnavailableError`
        when a backend fails. A failed call holds nothing.
        """
        ...

    def claim(self, owner: str, ip: netaddr.IPAddress) -> None:
        """Record that *owner* already holds *ip* (the restart path). Never does I/O."""
        ...

    def release(self, owner: str, ip: netaddr.IPAddress) -> None:
        """*owner* gives *ip* back. Idempotent. May do I/O; must not lose the release."""
        ...

    def capacity(self) -> int | None:
        """Exact number of addresses the pool can hand out, or None if unknown."""
        ...

    def rank(self, ip: netaddr.IPAddress) -> int | None:
        """Position of *ip* in first-fit order, or None if the source has no order."""
        ...

    def peek(self, family: int) -> netaddr.IPAddress | None:
        """The address ``acquire`` would return next, without taking it.

        Local sources only; None when unknown or exhausted. Never does I/O.
        """
        ...

    def describe(self, ip: netaddr.IPAddress) -> Mapping[str, str]:
        """Extra facts about a held address, for status and annotations (lease id ...)."""
        ...

    def reconcile(self, held: Mapping[netaddr.IPAddress, tuple[str, ...]]) -> ReconcileReport:
        """Compare *held* (address to owners) with the backend; fix what can be fixed."""
        ...

    def close(self) -> None:
        """Stop background work and close connections. Releases nothing."""
        ...


class SourceBase:
    """Defaults for the optional parts of :class:`AddressSource`.

    A subclass implements ``acquire``, ``claim`` and ``release``, and may
    override the rest. Its ``__init__`` is its own (metallb builds sources only
    through the plugin's ``metallb_make_source``); it calls
    ``super().__init__(spec)``, or sets ``self.spec`` itself.
    """

    spec: PoolSpec

    def __init__(self, spec: PoolSpec) -> None:
        """Keep *spec*, the pool this source serves, as ``self.spec``."""
        self.spec = spec

    def owns(self, ip: netaddr.IPAddress) -> bool:
        """MetalLB's rule: in one of the pool's CIDRs, minus avoided buggy addresses."""
        return self.spec.contains(ip)

    def capacity(self) -> int | None:
        """Unknown by default."""
        return None

    def rank(self, ip: netaddr.IPAddress) -> int | None:
        """No first-fit order by default."""
        return None

    def peek(self, family: int) -> netaddr.IPAddress | None:
        """Unknown by default."""
        return None

    def describe(self, ip: netaddr.IPAddress) -> Mapping[str, str]:
        """Nothing to add by default."""
        return {}

    def reconcile(self, held: Mapping[netaddr.IPAddress, tuple[str, ...]]) -> ReconcileReport:
        """Nothing to compare with by default."""
        return ReconcileReport(supported=False)

    def close(self) -> None:
        """Nothing to close by default."""

    def problems(self) -> Mapping[str, str]:
        """Service key -> a problem the speaker reports as a Warning Event, its reason first
        (``AddressConflict: ...``); optional, read with ``getattr``. None by default."""
        return {}


@attrs.frozen(kw_only=True)
class AnnouncerSettings:
    """What the speaker tells an announcer factory. Protocol-specific fields
    are ignored by the other protocols; None means that protocol's default.

    Attributes:
        node_name: the node this speaker runs on.
        interfaces: interfaces (names or shell patterns) to restrict layer 2 to,
            on top of each pool's advertisements; empty means no restriction.
        ignore_exclude_lb: announce even from nodes labelled
            ``node.kubernetes.io/exclude-from-external-load-balancers``.
        registry: the ``prometheus_client.CollectorRegistry`` for the
            announcers' metrics (typed ``object``: this layer does not import
            prometheus_client); None: the global registry.
        netns: layer 2: path of a network namespace to answer in (tests,
            benchmarks); "" means the speaker's own.
        rescan_interval: layer 2: seconds between periodic interface rescans
            (default 10).
        connect_timeout: BGP: seconds for the TCP connect plus the OPEN
            exchange (default 10).
        backoff_cap: BGP: the longest pause between connection attempts, in
            seconds (default 120).
        conflict_probe: layer 2: probe (ARP / DAD) before first answering for
            an address and report other hosts claiming it (the speaker turns
            it on unless ``--no-conflict-probe``).
        notify: called from any thread when an announcer's answers to
            ``should_announce``, ``problems`` or ``status_of`` may have changed
            on their own (a probe ended, a BGP session went up or down); the
            speaker re-runs its decisions and publishes its status.
        peer_macs: layer 2: called from any thread, the MACs (``aa:bb:...``)
            of the other speakers' announcing interfaces, which are never a
            conflict (their gratuitous ARPs and NAs, their probe answers);
            None: only this host's own MACs.
    """

    node_name: str
    interfaces: tuple[str, ...] = ()
    ignore_exclude_lb: bool = False
    registry: object | None = attrs.field(default=None, eq=False, hash=False)
    netns: str = ""
    rescan_interval: float | None = None
    connect_timeout: float | None = None
    backoff_cap: float | None = None
    conflict_probe: bool = False
    notify: Callable[[], None] | None = attrs.field(default=None, eq=False, hash=False)
    peer_macs: Callable[[], frozenset[str]] | None = attrs.field(default=None, eq=False, hash=False)


@runtime_checkable
class Announcer(Protocol):
    """Announces service addresses by one protocol. Returned by ``metallb_make_announcer``.

    The speaker calls it from one thread at a time. Announcers may run their
    own threads or asyncio loop behind these synchronous methods.
    """

    protocol: str

    def set_config(self, config: Config, node: NodeInfo) -> None:
        """A new configuration or new node labels (BGP sessions follow peers and labels)."""
        ...

    def should_announce(self, service: ServiceView, cluster: ClusterView) -> str | None:
        """None to announce from this node, else the reason not to (``notOwner`` ...)."""
        ...

    def announce(self, service: ServiceView) -> None:
        """Start (or keep) announcing *service*'s addresses. Idempotent."""
        ...

    def withdraw(self, key: str) -> None:
        """Stop announcing the service *key*. Idempotent."""
        ...

    def close(self) -> None:
        """Withdraw everything and stop."""
        ...


class AnnouncerBase:
    """Defaults for :class:`Announcer`: no config handling, nothing to close."""

    protocol: str = ""

    def set_config(self, config: Config, node: NodeInfo) -> None:
        """Ignore configuration by default."""

    def close(self) -> None:
        """Nothing to close by default."""

    def problems(self) -> Mapping[str, str]:
        """Service key -> a problem the speaker reports as a Warning Event, its reason first
        (``AddressConflict: ...``); optional, read with ``getattr``. None by default."""
        return {}
