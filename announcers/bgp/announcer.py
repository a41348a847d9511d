"""The BGP announcer: MetalLB's native speaker, with IPv6, hold timers and NOTIFICATIONs.

Built by :func:`metallb.announcers.bgp.plugin.metallb_make_announcer` for
protocol ``bgp``. One asyncio loop in a background thread runs one
:class:`Session` per peer that selects this node. The synchronous
:class:`Announcer` methods hand work to that loop. The desired set is
declarative: the union of the routes of every announced service, one route per
prefix, pushed to every session. Of the :class:`~metallb.allocator.AnnouncerSettings`,
it reads ``ignore_exclude_lb``, ``registry``, ``connect_timeout`` and ``backoff_cap``.

A peer with a ``bfd-profile`` also gets a BFD session (:mod:`.bfd`, in a
process of its own, started with the first such peer). BGP never waits for BFD: a router
without BFD still gets our routes. When a BFD session that was Up goes Down, the
peer's BGP session closes at once instead of at the end of its hold time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import attrs
import netaddr
from metallb.allocator.interfaces import AnnouncerBase, AnnouncerSettings
from metallb.allocator.model import BfdProfile, ClusterView, Config, NodeInfo, PeerSpec, ServiceView
from metallb.announcers.bgp.bfd import metrics as bfd_metrics
from metallb.announcers.bgp.bfd.machine import Transition
from metallb.announcers.bgp.bfd.packet import Diag
from metallb.announcers.bgp.bfd.process import BfdProcess
from metallb.announcers.bgp.bfd.service import BfdStatus, SessionKey, SessionSpec
from metallb.announcers.bgp.metrics import metrics_for
from metallb.announcers.bgp.policy import DesiredSet, PrefixKey, Route, advertise_reason, routes_for
from metallb.announcers.bgp.session import BACKOFF_CAP, CONNECT_TIMEOUT, Session, SessionStatus
from prometheus_client import CollectorRegistry

__all__ = ["BfdStatus", "BgpAnnouncer", "SessionStatus"]

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
        self._lock = threading.Lock()  # guards _set, _changes and _flush_pending
        self._set = DesiredSet()
        self._changes: set[PrefixKey] = set()
        self._flush_pending = False
        self._live: dict[PrefixKey, Route] = {}  # what sessions see; changed only on the loop
        self._live_counts = {4: 0, 6: 0}  # prefixes of _live per IP version
        self._sessions: dict[PeerSpec, Session] = {}  # touched only on the loop
        self._closed = False
        self._bfd: BfdProcess | None = None  # started from the loop with the first peer that has a profile
        self._bfd_peers: dict[SessionKey, list[PeerSpec]] = {}  # touched only on the loop
        self._loop = asyncio.new_event_loop()
        # The loop thread inherits the creating thread's network namespace, as do its sockets.
        self._thread = threading.Thread(target=self._loop.run_forever, name="metallb-bgp", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<BgpAnnouncer(node={self._settings.node_name!r}, peers={len(self._peers)}, prefixes={len(self._set)})>"

    # -- Announcer -----------------------------------------------------------------------

    def set_config(self, config: Config, node: NodeInfo) -> None:
        """Start sessions to new peers selecting *node*, stop removed ones, keep unchanged ones."""
        self._peers = config.peers
        wanted = [p for p in config.peers if p.selects(node.labels)]
        self._call(self._apply_peers(wanted))
        self._call(self._apply_bfd(wanted, config.bfd_profiles))

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
        """Add *service*'s prefixes to the desired set. Idempotent."""
        self._update(service.key, routes_for(service))

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
            if self._bfd is not None:  # after the Cease: the peers see AdminDown, not a failure
                self._bfd.close()
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

    def bfd_sessions(self) -> list[BfdStatus]:
        """The state of every BFD session (peers with a ``bfd-profile``)."""
        bfd = self._bfd
        return [] if bfd is None or self._closed else bfd.sessions()

    def desired(self) -> Mapping[netaddr.IPNetwork, Route]:
        """The routes every peer should have from this node (a copy)."""
        with self._lock:
            return self._set.by_prefix()

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
            updates = {p: self._set.routes.get(p) for p in changes}
            self._flush_pending = False
        for prefix, route in updates.items():
            if route is None:
                if self._live.pop(prefix, None) is not None:
                    self._live_counts[prefix[0]] -= 1
            else:
                if prefix not in self._live:
                    self._live_counts[prefix[0]] += 1
                self._live[prefix] = route
        for session in self._sessions.values():
            session.mark_changed(changes)

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
                session = Session(
                    peer,
                    node_name=self._settings.node_name,
                    desired=self._live,
                    desired_counts=self._live_counts,
                    metrics=self._metrics,
                    connect_timeout=self._connect_timeout,
                    backoff_cap=self._backoff_cap,
                )
                self._sessions[peer] = session
                session.start()

    async def _apply_bfd(self, wanted: list[PeerSpec], profiles: Mapping[str, BfdProfile]) -> None:
        specs: dict[SessionKey, SessionSpec] = {}
        self._bfd_peers = {}
        for peer in wanted:
            if not peer.bfd_profile:
                continue
            profile = profiles.get(peer.bfd_profile)
            if profile is None:  # the parser refuses this; a hand-built Config may not
                log.error(
                    "peer %s: bfd-profile %r is not defined; BGP runs without BFD", peer.peer_address, peer.bfd_profile
                )
                continue
            if profile.echo_mode:
                log.warning("peer %s: BFD echo mode is not supported; asynchronous mode only", peer.peer_address)
                profile = attrs.evolve(profile, echo_mode=False)
            # Multihop BFD (RFC 5883) goes with eBGP multihop, as in MetalLB's FRR mode.
            multihop = bool(getattr(peer, "ebgp_multihop", False))
            spec = SessionSpec(peer=peer.peer_address, local=peer.source_address, multihop=multihop, profile=profile)
            specs[spec.key] = spec
            self._bfd_peers.setdefault(spec.key, []).append(peer)
        if specs and self._bfd is None:
            # Started from this thread, so the BFD process and its sockets share its network namespace.
            registry = self._settings.registry if isinstance(self._settings.registry, CollectorRegistry) else None
            self._bfd = BfdProcess(metrics=bfd_metrics.metrics_for(registry), listener=self._bfd_changed)
        if self._bfd is not None:
            self._bfd.configure(specs.values())

    def _bfd_changed(self, spec: SessionSpec, transition: Transition) -> None:
        """On a BFD thread: hand a failure to the BGP loop."""
        if transition.failed:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(self._bfd_failed, spec, transition)

    def _bfd_failed(self, spec: SessionSpec, transition: Transition) -> None:
        reason = f"BFD session to {spec.peer} went down ({Diag.text(transition.diag)})"
        for peer in self._bfd_peers.get(spec.key, ()):
            session = self._sessions.get(peer)
            if session is not None:
                session.fail(reason)

    async def _shutdown(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.stop(subcode=2, withdraw=True) for s in sessions), return_exceptions=True)

    async def _statuses(self) -> list[SessionStatus]:
        return [s.status() for s in self._sessions.values()]
