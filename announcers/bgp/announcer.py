"""The BGP announcer: MetalLB's native speaker, with IPv6, hold timers and NOTIFICATIONs.

Built by :func:`metallb.announcers.bgp.plugin.metallb_make_announcer` for
protocol ``bgp``. One asyncio loop in a background thread runs one
:class:`Session` per peer that selects this node. The synchronous
:class:`Announcer` methods hand work to that loop. The desired set is
declarative: the union of the routes of every announced service, one route per
prefix, pushed to every session. Of the :class:`~metallb.allocator.AnnouncerSettings`,
it reads ``ignore_exclude_lb``, ``registry``, ``connect_timeout`` and ``backoff_cap``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import netaddr
from metallb.allocator.interfaces import AnnouncerBase, AnnouncerSettings
from metallb.allocator.model import ClusterView, Config, NodeInfo, PeerSpec, ServiceView
from metallb.announcers.bgp.metrics import metrics_for
from metallb.announcers.bgp.plugin import starts_session
from metallb.announcers.bgp.policy import DesiredSet, PrefixKey, Route, advertise_reason, routes_for
from metallb.announcers.bgp.session import BACKOFF_CAP, CONNECT_TIMEOUT, Session, SessionStatus
from prometheus_client import CollectorRegistry

__all__ = ["BgpAnnouncer", "SessionStatus"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_FLUSH_DELAY = 0.01  # seconds


class BgpAnnouncer(AnnouncerBase):
    """Announces service prefixes to the BGP peers that select this node."""

    protocol = "bgp"

    def __init__(self, settings: AnnouncerSettings) -> None:
        self._settings = settings
        registry = settings.registry
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise TypeError(f"AnnouncerSettings.registry must be a CollectorRegistry, not {type(registry).__name__}")
        self._metrics = metrics_for(registry)
        self._connect_timeout = CONNECT_TIMEOUT if settings.connect_timeout is None else settings.connect_timeout
        self._backoff_cap = BACKOFF_CAP if settings.backoff_cap is None else settings.backoff_cap
        self._peers: tuple[PeerSpec, ...] = ()
        self._node: NodeInfo | None = None  # from set_config: advertisements may select nodes
        self._lock = threading.Lock()  # guards _set, _changes and _flush_pending
        self._set = DesiredSet()
        self._changes: set[PrefixKey] = set()
        self._flush_pending = False
        # What sessions see, per peer name (advertisements may name peers; "" for unnamed
        # ConfigMap peers): routes and their count per IP version. Changed only on the loop.
        self._views: dict[str, tuple[dict[PrefixKey, Route], dict[int, int]]] = {}
        self._sessions: dict[PeerSpec, Session] = {}  # touched only on the loop
        self._closed = False
        self._loop = asyncio.new_event_loop()
        # The loop thread inherits the creating thread's network namespace, as do its sockets.
        self._thread = threading.Thread(target=self._loop.run_forever, name="metallb-bgp", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<BgpAnnouncer(node={self._settings.node_name!r}, peers={len(self._peers)}, prefixes={len(self._set)})>"

    # -- Announcer -----------------------------------------------------------------------

    def set_config(self, config: Config, node: NodeInfo) -> None:
        """Start sessions to new peers selecting *node*, stop removed ones, keep unchanged ones.

        A peer the speaker cannot serve as configured (``starts_session``:
        BGP unnumbered, a VRF, a dynamic ASN) gets no session; the controller
        reports it as not applied.
        """
        self._peers = config.peers
        self._node = node
        wanted = []
        for peer in config.peers:
            if not peer.selects(node.labels):
                continue
            if not starts_session(peer):
                log.warning("BGP peer %s is not started: it needs what the speaker does not do yet", peer_name(peer))
                continue
            wanted.append(peer)
        self._call(self._apply_peers(wanted))

    def should_announce(self, service: ServiceView, cluster: ClusterView) -> str | None:
        """None when this node advertises *service*, else MetalLB's reason (``noLocalEndpoints`` ...)."""
        return advertise_reason(
            service=service,
            node_name=cluster.node.name,
            labels=cluster.node.labels,
            peers=self._peers,
            ignore_exclude_lb=cluster.ignore_exclude_lb or self._settings.ignore_exclude_lb,
        )

    def announce(self, service: ServiceView) -> None:
        """Add *service*'s prefixes (of the advertisements selecting this node) to the desired set. Idempotent."""
        self._update(service.key, routes_for(service, self._node))

    def withdraw(self, key: str) -> None:
        """Remove *key*'s prefixes from the desired set (kept while another service needs them)."""
        self._update(key, ())

    def close(self) -> None:
        """Withdraw every route, send NOTIFICATION Cease to every peer and stop the loop."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._shutdown(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():  # closing a running loop would raise and hide the real error
                self._loop.close()

    # -- extras --------------------------------------------------------------------------

    def sessions(self) -> list[SessionStatus]:
        """The state of every session, in configuration order."""
        if self._closed:
            return []
        return self._call(self._statuses())

    def desired(self, peer: str | None = None) -> Mapping[netaddr.IPNetwork, Route]:
        """The routes a peer should have from this node (a copy): the peer named *peer*, or one no route names."""
        with self._lock:
            if peer is None:
                return self._set.by_prefix()
            found = (self._set.route_for(p, peer) for p in self._set.prefixes())
            return {r.prefix: r for r in found if r is not None}

    # -- loop side -----------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, _T], *, timeout: float = 30) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _update(self, key: str, routes: tuple[Route, ...]) -> None:
        with self._lock:
            self._changes |= self._set.set(key, routes)
            if not self._changes or self._flush_pending or self._closed:
                return
            self._flush_pending = True
        # Bursts of announce() calls coalesce into one change set; waking the loop per call costs more than the work.
        self._loop.call_soon_threadsafe(self._loop.call_later, _FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        with self._lock:
            changes, self._changes = self._changes, set()
            updates = {name: {p: self._set.route_for(p, name) for p in changes} for name in self._views}
            self._flush_pending = False
        for name, routes in updates.items():
            _apply(self._views[name], routes)
        for session in self._sessions.values():
            session.mark_changed(changes)

    def _view(self, name: str) -> tuple[dict[PrefixKey, Route], dict[int, int]]:
        """The routes the peers named *name* see, made from the desired set on first use (on the loop)."""
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = ({}, {4: 0, 6: 0})
            with self._lock:
                routes = {p: self._set.route_for(p, name) for p in self._set.prefixes()}
            _apply(view, routes)
        return view

    async def _apply_peers(self, wanted: list[PeerSpec]) -> None:
        removed = [self._sessions.pop(p) for p in list(self._sessions) if p not in wanted]
        for session in removed:
            log.info(
                "stopping BGP session to %s: peer removed or no longer selects this node", session.peer.peer_address
            )
        # Stopped together: each may wait up to its drain timeout for a slow peer.
        await asyncio.gather(*(s.stop(subcode=3) for s in removed))  # Cease / Peer De-configured
        for session in removed:
            self._metrics.forget(session.label)
        for peer in wanted:
            if peer not in self._sessions:
                live, counts = self._view(peer.name)
                session = Session(
                    peer,
                    node_name=self._settings.node_name,
                    desired=live,
                    desired_counts=counts,
                    metrics=self._metrics,
                    connect_timeout=self._connect_timeout,
                    backoff_cap=self._backoff_cap,
                )
                self._sessions[peer] = session
                session.start()
        for name in set(self._views) - {p.name for p in self._sessions}:
            del self._views[name]

    async def _shutdown(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.stop(subcode=2, withdraw=True) for s in sessions), return_exceptions=True)

    async def _statuses(self) -> list[SessionStatus]:
        return [s.status() for s in self._sessions.values()]


def _apply(view: tuple[dict[PrefixKey, Route], dict[int, int]], routes: Mapping[PrefixKey, Route | None]) -> None:
    """Write *routes* (None: withdrawn) into a view, keeping its per-family counts."""
    live, counts = view
    for prefix, route in routes.items():
        if route is None:
            if live.pop(prefix, None) is not None:
                counts[prefix[0]] -= 1
        else:
            if prefix not in live:
                counts[prefix[0]] += 1
            live[prefix] = route


def peer_name(peer: PeerSpec) -> str:
    """How logs name a peer: its name, or its address."""
    return peer.name or str(peer.peer_address or peer.interface)
