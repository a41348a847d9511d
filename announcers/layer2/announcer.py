"""The layer-2 announcer: answers ARP and NDP for the service addresses this node wins.

Built by :func:`metallb.announcers.layer2.plugin.metallb_make_announcer` for
protocol ``layer2``. Who announces is decided by
:mod:`metallb.announcers.election`; the frames are answered by
:class:`~metallb.announcers.layer2.responder.Responder`. Of the
:class:`~metallb.allocator.AnnouncerSettings`, it reads ``interfaces``,
``ignore_exclude_lb``, ``registry``, ``netns`` and ``rescan_interval``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

import netaddr
from metallb.allocator.interfaces import AnnouncerBase, AnnouncerSettings
from metallb.allocator.model import ClusterView, Config, NodeInfo, PoolSpec, ServiceView
from metallb.announcers.election import reason_not_to_announce
from metallb.announcers.layer2.netlink import enter_netns
from metallb.announcers.layer2.packets import mac_bytes
from metallb.announcers.layer2.probe import Conflict, probe
from metallb.announcers.layer2.responder import Responder, metrics_for
from prometheus_client import CollectorRegistry

__all__ = ["CONFLICT_HOLD", "FRIENDS_TTL", "RESCAN_INTERVAL", "Layer2Announcer", "pool_interfaces"]

log = logging.getLogger(__name__)

#: Seconds between periodic interface rescans, unless the settings say otherwise.
RESCAN_INTERVAL = 10.0
#: Seconds a conflict found by a probe (or a claim seen while announcing) is remembered; then a new probe runs.
#: Short: the host that answered may be one of our own speakers about to withdraw (a restart's race).
CONFLICT_HOLD = 5.0
#: Seconds the other speakers' MACs are reused before asking the speaker again.
FRIENDS_TTL = 0.5


def pool_interfaces(pool: PoolSpec, node: NodeInfo | None = None) -> tuple[str, ...]:
    """The interfaces *pool*'s layer-2 advertisements answer on from *node*; empty means every eligible one.

    Only the advertisements selecting *node* count (all of them without a
    node). They add up, as in MetalLB: one without ``interfaces`` opens every
    interface.
    """
    ads = pool.l2_advertisements
    if node is not None:
        ads = tuple(a for a in ads if a.selects(node.name, node.labels))
    if not ads or any(not a.interfaces for a in ads):
        return ()
    return tuple(dict.fromkeys(i for a in ads for i in a.interfaces))


class Layer2Announcer(AnnouncerBase):
    """Announces layer-2 service addresses from this node.

    Services sharing an address are counted per address: the address is
    answered until the last service using it is withdrawn. With
    ``conflict_probe``, an address new to this node that no other node of
    ours announced is answered only once a probe found nobody else using it
    (:mod:`~metallb.announcers.layer2.probe`, under a second, in a thread of
    its own so no other decision waits); a conflict makes
    :meth:`should_announce` refuse the service for :data:`CONFLICT_HOLD`.
    """

    protocol = "layer2"

    def __init__(self, settings: AnnouncerSettings) -> None:
        self._settings = settings
        registry = settings.registry
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise TypeError(f"AnnouncerSettings.registry must be a CollectorRegistry, not {type(registry).__name__}")
        self._metrics = metrics_for(registry)
        interval = settings.rescan_interval
        self._responder = Responder(
            restrict=settings.interfaces,
            netns=settings.netns or None,
            registry=registry,
            rescan_interval=RESCAN_INTERVAL if interval is None else interval,
            on_conflict=self._claimed,
            friends=self._friends,
        )
        self._lock = threading.Lock()  # probe threads and the responder's loop meet the speaker's thread here
        self._probing: set[netaddr.IPAddress] = set()
        self._conflicts: dict[netaddr.IPAddress, tuple[Conflict, float]] = {}  # found by a probe: not answered
        self._claims: dict[netaddr.IPAddress, tuple[Conflict, float]] = {}  # seen while answering
        self._node: NodeInfo | None = None  # from set_config: advertisements may select nodes
        self._services: dict[str, ServiceView] = {}
        self._users: dict[netaddr.IPAddress, set[str]] = {}
        self._interfaces: dict[netaddr.IPAddress, tuple[str, ...]] = {}
        self._closed = False
        self._friends_cache: tuple[float, frozenset[bytes]] | None = None
        self._responder.start()

    def __repr__(self) -> str:
        return f"<Layer2Announcer(node={self._settings.node_name!r}, addresses={len(self._users)})>"

    @property
    def responder(self) -> Responder:
        """The responder answering for this announcer (for status and tests)."""
        return self._responder

    def local_macs(self) -> frozenset[str]:
        """The MACs of the interfaces this node answers on: the speaker tells the others, so they never take
        this node's gratuitous ARPs, unsolicited NAs or probe answers for a conflict. Read with ``getattr``."""
        return self._responder.macs()

    def _friends(self) -> frozenset[bytes]:
        """The other speakers' MACs (from the speaker's ``peer_macs``), as bytes; asked again at most every
        :data:`FRIENDS_TTL` seconds, so a flood of forged claims costs one set lookup each."""
        peer_macs = self._settings.peer_macs
        if peer_macs is None:
            return frozenset()
        now = time.monotonic()
        cached = self._friends_cache
        if cached is not None and now - cached[0] < FRIENDS_TTL:
            return cached[1]
        out = set()
        for mac in peer_macs():
            try:
                raw = mac_bytes(mac)
            except ValueError:
                continue  # not a MAC: never a friend
            if len(raw) == 6:
                out.add(raw)
        friends = frozenset(out)
        self._friends_cache = (now, friends)
        return friends

    def set_config(self, config: Config, node: NodeInfo) -> None:
        """Follow changes of the pools' interfaces (and of this node's labels) for the addresses already announced."""
        changes: dict[netaddr.IPAddress, tuple[str, ...] | None] = {}
        with self._lock:
            self._node = node
            for address, current in self._interfaces.items():
                pool = config.pool_for(address)
                if pool is not None and pool_interfaces(pool, node) != current:
                    changes[address] = pool_interfaces(pool, node)
            self._interfaces.update({a: p for a, p in changes.items() if p is not None})
            # an address being probed is answered (on its new interfaces) only once its probe is clean
            changes = {a: p for a, p in changes.items() if a not in self._probing}
        if changes:
            self._responder.apply(changes)

    def should_announce(self, service: ServiceView, cluster: ClusterView) -> str | None:
        """None when this node wins the election for *service* and no other host uses its addresses."""
        reason = reason_not_to_announce(service, cluster, ignore_exclude_lb=self._settings.ignore_exclude_lb)
        if reason is not None:
            return reason
        now = time.monotonic()
        with self._lock:
            for address in service.ips:
                found = self._conflicts.get(address)
                if found is not None and now - found[1] < CONFLICT_HOLD:
                    return str(found[0])
        return None

    def problems(self) -> Mapping[str, str]:
        """Services whose addresses another host answers for (probe) or claims (gratuitous ARP) lately."""
        now = time.monotonic()
        with self._lock:
            recent = {
                a: c
                for table in (self._conflicts, self._claims)
                for a, (c, at) in table.items()
                if now - at < CONFLICT_HOLD
            }
            users = {a: set(keys) for a, keys in self._users.items()}
            services = dict(self._services)
        out = {key: str(recent[a]) for a, keys in users.items() if a in recent for key in keys}
        for key, view in services.items():
            for address in view.ips:
                if address in recent:
                    out.setdefault(key, str(recent[address]))
        return out

    def status_of(self) -> Mapping[str, tuple[str, ...]]:
        """Service key -> the interfaces answering for its addresses now (services being probed have none yet)."""
        answering = self._responder.answering()
        with self._lock:
            services = dict(self._services)
        out: dict[str, tuple[str, ...]] = {}
        for key, view in services.items():
            ips = {str(a) for a in view.ips}
            names = tuple(sorted(name for name, addresses in answering.items() if ips.intersection(addresses)))
            if names:
                out[key] = names
        return out

    @property
    def probing(self) -> frozenset[netaddr.IPAddress]:
        """Addresses whose conflict probe is running (not answered yet)."""
        with self._lock:
            return frozenset(self._probing)

    def announce(self, service: ServiceView) -> None:
        """Answer for *service*'s addresses and (re)start their gratuitous announcements."""
        if self._closed:
            raise RuntimeError("layer2 announcer is closed")
        changes: dict[netaddr.IPAddress, tuple[str, ...] | None] = {}
        interfaces = pool_interfaces(service.pool, self._node)
        probes: list[netaddr.IPAddress] = []
        with self._lock:
            old = self._services.get(service.key)
            self._services[service.key] = service
            if old is not None:
                for address in set(old.ips) - set(service.ips):
                    if self._drop_user(address, service.key):
                        changes[address] = None
            for address in service.ips:
                new = address not in self._users and address not in self._probing
                self._users.setdefault(address, set()).add(service.key)
                if new and self._settings.conflict_probe and not service.announced_elsewhere:
                    self._conflicts.pop(address, None)
                    self._probing.add(address)
                    self._interfaces[address] = interfaces
                    probes.append(address)
                elif address in self._probing:
                    self._interfaces[address] = interfaces  # answered once its probe is clean
                else:
                    if new:
                        self._metrics.takeovers.labels(ip=str(address)).inc()
                    if self._interfaces.get(address) != interfaces:
                        self._interfaces[address] = interfaces
                        changes[address] = interfaces
            spam = tuple(a for a in service.ips if a not in self._probing)
        self._responder.apply(changes, announce=spam)
        for address in probes:
            log.info("%s: probing for another host using %s before answering", service.key, address)
            threading.Thread(
                target=self._probe, args=(address, interfaces), name=f"metallb-probe-{address}", daemon=True
            ).start()

    def _probe(self, address: netaddr.IPAddress, interfaces: tuple[str, ...]) -> None:
        """In its own thread: probe, then answer for *address* if it is clean and still wanted."""
        conflict: Conflict | None = None
        try:
            if self._settings.netns:
                enter_netns(self._settings.netns)
            conflict = probe(address, patterns=interfaces, restrict=self._settings.interfaces, own_macs=self._friends())
        except OSError as exc:  # cannot probe: announce anyway, as without probing
            log.warning("conflict probe for %s failed: %s; announcing without it", address, exc)
        with self._lock:
            self._probing.discard(address)
            wanted = address in self._users and not self._closed
            current = self._interfaces.get(address, interfaces)
            if conflict is not None:
                self._conflicts[address] = (conflict, time.monotonic())
        if conflict is not None:
            self._metrics.conflicts.labels(ip=str(address), mac=conflict.mac).inc()
            log.warning("%s: not announced", conflict)
            if self._settings.notify is not None:  # decide (and so probe) again once the hold ends
                timer = threading.Timer(CONFLICT_HOLD + 0.05, self._settings.notify)
                timer.daemon = True
                timer.start()
        elif wanted:
            self._metrics.takeovers.labels(ip=str(address)).inc()
            try:
                self._responder.apply({address: current}, announce=(address,))
            except RuntimeError as exc:  # closed meanwhile
                log.debug("answering for %s after its probe: %s", address, exc)
        if self._settings.notify is not None:
            self._settings.notify()

    def _claimed(self, address: netaddr.IPAddress, mac: str, interface: str) -> None:
        """From the responder's loop: another host (not one of our speakers) claimed an address we answer for,
        by ARP or by a Neighbor Advertisement."""
        with self._lock:
            self._claims[address] = (Conflict(address=address, mac=mac, interface=interface), time.monotonic())
        self._metrics.conflicts.labels(ip=str(address), mac=mac).inc()
        if self._settings.notify is not None:
            self._settings.notify()

    def withdraw(self, key: str) -> None:
        """Stop answering for *key*'s addresses unless another service still uses them."""
        with self._lock:
            old = self._services.pop(key, None)
            if old is None or self._closed:
                return
            changes: dict[netaddr.IPAddress, tuple[str, ...] | None] = {
                address: None for address in old.ips if self._drop_user(address, key)
            }
        if changes:
            self._responder.apply(changes)

    def close(self) -> None:
        """Withdraw everything and stop the responder."""
        if self._closed:
            return
        self._closed = True
        self._services.clear()
        self._users.clear()
        self._interfaces.clear()
        self._responder.close()

    def _drop_user(self, address: netaddr.IPAddress, key: str) -> bool:
        """Remove *key* from *address*'s users; True if it was the last one."""
        users = self._users.get(address)
        if users is None:
            return False
        users.discard(key)
        if users:
            return False
        del self._users[address]
        self._interfaces.pop(address, None)
        return True
