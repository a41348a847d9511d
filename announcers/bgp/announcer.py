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

Flap damping: a prefix withdrawn and wanted again is advertised again no sooner
than ``flap_interval`` seconds after its previous advertisement (withdrawals
are never delayed), so a Service whose endpoints flap does not make every
router on the path recompute at the same rate.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import attrs
import netaddr
from metallb.allocator.interfaces import AnnouncerBase, AnnouncerSettings
from metallb.allocator.model import BfdProfile, ClusterView, Config, NodeInfo, PeerSpec, ServiceView
from metallb.announcers.bgp import net as bgp_net
from metallb.announcers.bgp.bfd import metrics as bfd_metrics
from metallb.announcers.bgp.bfd.machine import Transition
from metallb.announcers.bgp.bfd.packet import Diag
from metallb.announcers.bgp.bfd.process import BfdProcess
from metallb.announcers.bgp.bfd.service import BfdStatus, SessionKey, SessionSpec
from metallb.announcers.bgp.metrics import metrics_for
from metallb.announcers.bgp.net import InterfaceAddress
from metallb.announcers.bgp.plugin import starts_session
from metallb.announcers.bgp.policy import DesiredSet, PrefixKey, Route, advertise_reason, routes_for
from metallb.announcers.bgp.session import (
    BACKOFF_CAP,
    CONNECT_TIMEOUT,
    END_OF_RIB_DELAY,
    RESTART_TIME,
    Session,
    SessionStatus,
)
from prometheus_client import CollectorRegistry

__all__ = ["FLAP_INTERVAL", "BfdStatus", "BgpAnnouncer", "SessionStatus"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_FLUSH_DELAY = 0.01  # seconds
#: Flap damping: the shortest time between two advertisements of one prefix (seconds).
FLAP_INTERVAL = 5.0


class BgpAnnouncer(AnnouncerBase):
    """Announces service prefixes to the BGP peers that select this node.

    Keyword options (the plugin passes none, so these are the defaults a
    speaker runs with): *flap_interval* (seconds, 0 turns damping off);
    *restart_time*, the graceful restart time advertised to peers with
    ``enable_graceful_restart``; *extended_messages*, advertise RFC 8654;
    *end_of_rib_delay*, how long the desired set must stay unchanged before
    End-of-RIB; *interface_addresses*, the rtnetlink dump (a seam for tests);
    *forwarding_preserved*, force the graceful-restart F bit (None: derived).
    """

    protocol = "bgp"

    def __init__(
        self,
        settings: AnnouncerSettings,
        *,
        flap_interval: float = FLAP_INTERVAL,
        restart_time: int = RESTART_TIME,
        extended_messages: bool = True,
        end_of_rib_delay: float = END_OF_RIB_DELAY,
        interface_addresses: Callable[[], Sequence[InterfaceAddress]] = bgp_net.interface_addresses,
        forwarding_preserved: bool | None = None,
    ) -> None:
        self._settings = settings
        registry = settings.registry
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise TypeError(f"AnnouncerSettings.registry must be a CollectorRegistry, not {type(registry).__name__}")
        if flap_interval < 0:
            raise ValueError(f"flap_interval {flap_interval} must be 0 (off) or more seconds")
        self._metrics = metrics_for(registry)
        self._connect_timeout = CONNECT_TIMEOUT if settings.connect_timeout is None else settings.connect_timeout
        self._backoff_cap = BACKOFF_CAP if settings.backoff_cap is None else settings.backoff_cap
        self._flap_interval = flap_interval
        self._session_options: dict[str, Any] = {
            "restart_time": restart_time,
            "extended_messages": extended_messages,
            "end_of_rib_delay": end_of_rib_delay,
            "interface_addresses": interface_addresses,
            "forwarding_preserved": forwarding_preserved,
        }
        # rtnetlink dumps run here, off the loop; threads start from the loop thread, in its netns.
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="metallb-bgp-net")
        self._peers: tuple[PeerSpec, ...] = ()
        self._peer_names: dict[PeerSpec, str] = {}  # as status objects name peers: see status_name()
        self._node: NodeInfo | None = None  # from set_config: advertisements may select nodes
        self._lock = threading.Lock()  # guards _set, _changes and _flush_pending
        self._set = DesiredSet()
        self._changes: set[PrefixKey] = set()
        self._flush_pending = False
        # What sessions see, per peer name (advertisements may name peers; "" for unnamed
        # ConfigMap peers): routes and their count per IP version. Changed only on the loop.
        self._views: dict[str, tuple[dict[PrefixKey, Route], dict[int, int]]] = {}
        # Flap damping, on the loop: the prefixes the views show (past damping), when each was
        # last advertised, and those held back.
        self._live: set[PrefixKey] = set()
        self._advertised_at: dict[PrefixKey, float] = {}
        self._held: dict[PrefixKey, float] = {}  # prefix -> loop time it may be advertised again
        self._held_queue: list[tuple[float, PrefixKey]] = []
        self._release_timer: asyncio.TimerHandle | None = None
        self._sessions: dict[PeerSpec, Session] = {}  # touched only on the loop
        self._closed = False
        self._bfd: BfdProcess | None = None  # started from the loop with the first peer that has a profile
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
        self._peer_names = {peer: status_name(peer, i) for i, peer in enumerate(config.peers, 1)}
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
        """Add *service*'s prefixes (of the advertisements selecting this node) to the desired set. Idempotent."""
        self._update(service.key, routes_for(service, self._node))

    def withdraw(self, key: str) -> None:
        """Remove *key*'s prefixes from the desired set (kept while another service needs them)."""
        self._update(key, ())

    def close(self) -> None:
        """Withdraw every route, send NOTIFICATION Cease to every peer and stop the loop.

        A peer that negotiated graceful restart instead sees the connection
        close without a NOTIFICATION and keeps our routes for the restart time,
        so a speaker restarted within it drops no traffic (RFC 4724).
        """
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
            self._executor.shutdown(wait=False, cancel_futures=True)

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

    def desired(self, peer: str | None = None) -> Mapping[netaddr.IPNetwork, Route]:
        """The routes a peer should have from this node (a copy): the peer named *peer*, or one no route names."""
        with self._lock:
            if peer is None:
                return self._set.by_prefix()
            found = (self._set.route_for(p, peer) for p in self._set.prefixes())
            return {r.prefix: r for r in found if r is not None}

    def refusals(self) -> dict[str, str]:
        """Services with a route some peer cannot be sent, and why: ``{service key: reason}``.

        For example a route with 2 000 communities to a peer without extended
        messages (RFC 8654). The route still goes to the peers that can take it.
        """
        if self._closed:
            return {}
        refused = self._call(self._refused())
        out: dict[str, str] = {}
        with self._lock:
            for (prefix, peer, name), why in sorted(refused.items()):
                route = self._set.route_for(prefix, name)  # the route that peer would get
                if route is None:
                    continue
                for key in self._set.owners(prefix):
                    out.setdefault(key, f"route {route.prefix} not sent to {peer}: {why}")
        return out

    def status_of(self) -> Mapping[str, tuple[str, ...]]:
        """Service key -> the peers its routes are advertised to now (:func:`status_name`), for ``ServiceBGPStatus``.

        A peer counts once its established session has been sent one of the
        service's prefixes; services advertised to no peer are left out. The
        ``notify`` callback of the settings is called when this may have changed
        (a session went up or down, routes were sent or withdrawn).
        """
        if self._closed:
            return {}
        held = self._call(self._advertised())
        out: dict[str, set[str]] = {}
        with self._lock:
            for name, prefixes in held:
                for prefix in prefixes:
                    for key in self._set.owners(prefix):
                        out.setdefault(key, set()).add(name)
        return {key: tuple(sorted(names)) for key, names in out.items()}

    def fail_session(self, peer_address: netaddr.IPAddress, reason: str) -> None:
        """Bring the sessions to *peer_address* down at once (BFD saw the path fail); thread-safe.

        They reconnect with the usual backoff. See :meth:`Session.fail`.
        """
        if self._closed:
            return

        def fail() -> None:
            for session in self._sessions.values():
                if session.peer.peer_address == peer_address:
                    session.fail(reason)

        self._loop.call_soon_threadsafe(fail)

    def session_for(self, peer: PeerSpec) -> Session | None:
        """The session to *peer*; only for code running on this announcer's loop (BFD)."""
        return self._sessions.get(peer)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the sessions run on (a BFD implementation may run beside them)."""
        return self._loop

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
            self._flush_pending = False
            wanted = {p for p in changes if self._set.owners(p)}
        self._apply(changes, wanted)

    def _apply(self, changes: Iterable[PrefixKey], wanted: set[PrefixKey]) -> None:
        """Make *changes* live in every view (withdrawals at once, re-advertisements damped); tell the sessions.

        *wanted*: those of *changes* the desired set still has.
        """
        now = self._loop.time()
        changed: list[PrefixKey] = []
        held = 0
        for prefix in changes:
            if prefix not in wanted:
                self._held.pop(prefix, None)
                if prefix in self._live:
                    self._live.discard(prefix)
                    changed.append(prefix)
                continue
            if prefix not in self._live:  # an advertisement, not an attribute change
                last = self._advertised_at.get(prefix)
                if last is not None and now - last < self._flap_interval - 0.001:
                    self._hold(prefix, last + self._flap_interval)
                    held += 1
                    continue
                self._advertised_at[prefix] = now
                self._live.add(prefix)
            changed.append(prefix)
        if held:
            log.info(
                "flap damping: %d prefixes withdrawn and wanted again within %g s; advertised again later",
                held, self._flap_interval,
            )  # fmt: skip
        self._metrics.damped(len(self._held))
        if len(self._advertised_at) > 2 * len(self._live) + 1024:  # forget what can no longer hold anything back
            self._advertised_at = {p: t for p, t in self._advertised_at.items() if now - t < self._flap_interval}
        if not changed:
            return
        with self._lock:
            updates = {
                name: {p: self._set.route_for(p, name) if p in self._live else None for p in changed}
                for name in self._views
            }
        for name, routes in updates.items():
            _write_view(self._views[name], routes)
        for session in self._sessions.values():
            session.mark_changed(changed)

    def _hold(self, prefix: PrefixKey, until: float) -> None:
        if prefix in self._held:
            return
        self._held[prefix] = until
        heapq.heappush(self._held_queue, (until, prefix))
        if self._release_timer is None or self._release_timer.when() > until:
            if self._release_timer is not None:
                self._release_timer.cancel()
            self._release_timer = self._loop.call_at(until, self._release)

    def _release(self) -> None:
        """Advertise the held prefixes whose damping interval is over, if they are still wanted."""
        self._release_timer = None
        now = self._loop.time()
        due: list[PrefixKey] = []
        while self._held_queue and self._held_queue[0][0] <= now:
            _, prefix = heapq.heappop(self._held_queue)
            if self._held.pop(prefix, None) is not None:
                due.append(prefix)
        if due:
            with self._lock:
                wanted = {p for p in due if self._set.owners(p)}
            self._apply(due, wanted)
        while self._held_queue and self._held_queue[0][1] not in self._held:
            heapq.heappop(self._held_queue)  # withdrawn while held
        if self._held_queue:
            self._release_timer = self._loop.call_at(self._held_queue[0][0], self._release)
        self._metrics.damped(len(self._held))

    def _view(self, name: str) -> tuple[dict[PrefixKey, Route], dict[int, int]]:
        """The routes the peers named *name* see, made from the desired set on first use (on the loop)."""
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = ({}, {4: 0, 6: 0})
            with self._lock:
                routes = {p: self._set.route_for(p, name) for p in self._live}
            _write_view(view, routes)
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
                    executor=self._executor,
                    on_advertised=self._settings.notify,
                    **self._session_options,
                )
                self._sessions[peer] = session
                session.start()
        for name in set(self._views) - {p.name for p in self._sessions}:
            del self._views[name]

    async def _apply_bfd(self, wanted: list[PeerSpec], profiles: Mapping[str, BfdProfile]) -> None:
        specs: dict[SessionKey, SessionSpec] = {}
        for peer in wanted:
            if not peer.bfd_profile or peer.interface or peer.peer_address is None:
                # No BFD to link-local peers (the ConfigMap refuses it) nor unnumbered ones (not started).
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
            multihop = peer.ebgp_multihop and peer.external()
            spec = SessionSpec(peer=peer.peer_address, local=peer.source_address, multihop=multihop, profile=profile)
            specs[spec.key] = spec
        if specs and self._bfd is None:
            # Started from this thread, so the BFD process and its sockets share its network namespace.
            registry = self._settings.registry if isinstance(self._settings.registry, CollectorRegistry) else None
            self._bfd = BfdProcess(metrics=bfd_metrics.metrics_for(registry), listener=self._bfd_changed)
        if self._bfd is not None:
            self._bfd.configure(specs.values())

    def _bfd_changed(self, spec: SessionSpec, transition: Transition) -> None:
        """On a BFD thread: a session that was Up failed, so its peer's BGP session closes now."""
        if transition.failed:
            self.fail_session(spec.peer, f"BFD session to {spec.peer} went down ({Diag.text(transition.diag)})")

    async def _shutdown(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        if self._release_timer is not None:
            self._release_timer.cancel()
        await asyncio.gather(
            *(s.stop(subcode=2, withdraw=True, graceful=True) for s in sessions), return_exceptions=True
        )

    async def _statuses(self) -> list[SessionStatus]:
        return [s.status() for s in self._sessions.values()]

    async def _advertised(self) -> list[tuple[str, frozenset[PrefixKey]]]:
        return [(self._peer_names.get(s.peer, status_name(s.peer, 0)), s.advertised()) for s in self._sessions.values()]

    async def _refused(self) -> dict[tuple[PrefixKey, str, str], str]:
        return {
            (prefix, s.label, s.peer.name): why for s in self._sessions.values() for prefix, why in s.refused().items()
        }


def _write_view(view: tuple[dict[PrefixKey, Route], dict[int, int]], routes: Mapping[PrefixKey, Route | None]) -> None:
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


def status_name(peer: PeerSpec, index: int) -> str:
    """How ``ServiceBGPStatus`` names a peer: its ``BGPPeer`` name, or ``peer<index>`` (from 1) for a ConfigMap
    peer, the name ``metallb config convert`` gives it."""
    return peer.name or f"peer{index}"


def peer_name(peer: PeerSpec) -> str:
    """How logs name a peer: its name, or its address."""
    return peer.name or str(peer.peer_address or peer.interface)
