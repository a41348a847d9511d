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

import netaddr
from metallb.allocator.interfaces import AnnouncerBase, AnnouncerSettings
from metallb.allocator.model import ClusterView, Config, NodeInfo, PoolSpec, ServiceView
from metallb.announcers.election import reason_not_to_announce
from metallb.announcers.layer2.responder import Responder, metrics_for
from prometheus_client import CollectorRegistry

__all__ = ["RESCAN_INTERVAL", "Layer2Announcer", "pool_interfaces"]

log = logging.getLogger(__name__)

#: Seconds between periodic interface rescans, unless the settings say otherwise.
RESCAN_INTERVAL = 10.0


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
    answered until the last service using it is withdrawn.
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
        )
        self._node: NodeInfo | None = None  # from set_config: advertisements may select nodes
        self._services: dict[str, ServiceView] = {}
        self._users: dict[netaddr.IPAddress, set[str]] = {}
        self._interfaces: dict[netaddr.IPAddress, tuple[str, ...]] = {}
        self._closed = False
        self._responder.start()

    def __repr__(self) -> str:
        return f"<Layer2Announcer(node={self._settings.node_name!r}, addresses={len(self._users)})>"

    @property
    def responder(self) -> Responder:
        """The responder answering for this announcer (for status and tests)."""
        return self._responder

    def set_config(self, config: Config, node: NodeInfo) -> None:
        """Follow changes of the pools' interfaces (and of this node's labels) for the addresses already announced."""
        self._node = node
        changes: dict[netaddr.IPAddress, tuple[str, ...] | None] = {}
        for address, current in self._interfaces.items():
            pool = config.pool_for(address)
            if pool is not None and pool_interfaces(pool, node) != current:
                changes[address] = pool_interfaces(pool, node)
        if changes:
            self._interfaces.update({a: p for a, p in changes.items() if p is not None})
            self._responder.apply(changes)

    def should_announce(self, service: ServiceView, cluster: ClusterView) -> str | None:
        """None when this node wins the election for *service*, else the reason it does not."""
        return reason_not_to_announce(service, cluster, ignore_exclude_lb=self._settings.ignore_exclude_lb)

    def announce(self, service: ServiceView) -> None:
        """Answer for *service*'s addresses and (re)start their gratuitous announcements."""
        if self._closed:
            raise RuntimeError("layer2 announcer is closed")
        old = self._services.get(service.key)
        self._services[service.key] = service
        changes: dict[netaddr.IPAddress, tuple[str, ...] | None] = {}
        if old is not None:
            for address in set(old.ips) - set(service.ips):
                if self._drop_user(address, service.key):
                    changes[address] = None
        interfaces = pool_interfaces(service.pool, self._node)
        for address in service.ips:
            if address not in self._users:
                self._metrics.takeovers.labels(ip=str(address)).inc()
            self._users.setdefault(address, set()).add(service.key)
            if self._interfaces.get(address) != interfaces:
                self._interfaces[address] = interfaces
                changes[address] = interfaces
        self._responder.apply(changes, announce=service.ips)

    def withdraw(self, key: str) -> None:
        """Stop answering for *key*'s addresses unless another service still uses them."""
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
