"""``metallb speaker``: announces service addresses from one node.

It watches Services, EndpointSlices, the configuration (MetalLB's resources
with the Secrets, Nodes and Namespaces they refer to, or the legacy ConfigMap:
:class:`~metallb.operator.config_watch.ConfigWatch`) and the announcement
statuses, and decides per Service, for every protocol of its pool, through the
announcer plugins' ``should_announce``, whether this node announces it
(honouring the advertisements' node selectors, interfaces and peers), then
announces or withdraws. It writes nothing on the configuration: the controller
reports on it.

Which speakers are alive comes from a :class:`~metallb.operator.liveness.Liveness`:
gossip between the speakers by default (no API writes at all), the Nodes'
conditions, or a Lease per speaker (``--liveness``). In steady state the
speaker writes nothing: a ``nodeAssigned`` Event only when this node starts
announcing a Service. :class:`~metallb.operator.liveness.ApiLoad` counts the
writes and the watch events.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from typing import Any

import netaddr
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from metallb.allocator import (
    AnnouncerSettings,
    ClusterView,
    Config,
    NodeInfo,
    ServiceView,
    default_plugin_manager,
)
from metallb.operator.announce_status import BGP, L2, AnnouncementStatus, StatusKind
from metallb.operator.announcing import Announcers, ServiceAnnouncements, parse_interfaces
from metallb.operator.cmd_config import one_line
from metallb.operator.cmd_drain import DRAIN_ANNOTATION
from metallb.operator.config_watch import NONE, ConfigState, ConfigWatch
from metallb.operator.informer import Informer
from metallb.operator.kube import api_client, event_body
from metallb.operator.liveness import ApiLoad, MemberlistOptions, make_liveness
from metallb.operator.metrics import MetricsServer, SpeakerMetrics, config_gauges
from metallb.operator.service import read_service
from prometheus_client import CollectorRegistry

__all__ = ["Speaker", "run"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
#: Seconds a draining node keeps announcing at most, waiting for another node's announcement status.
DRAIN_GRACE = 5.0
#: Seconds a draining node still advertises by BGP after another node's ServiceBGPStatus shows the Service:
#: that status says the UPDATE was sent, and BGP has no acknowledgement; the router needs a moment to take it
#: in (BIRD under load was seen to handle our withdrawal before the other node's UPDATE, queued together).
DRAIN_SETTLE = {"bgp": 0.2}


class Speaker:
    """One node's speaker; see the module docstring."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        node_name: str,
        namespace: str = "metallb-system",
        config_name: str = "config",
        interfaces: tuple[str, ...] = (),
        ignore_exclude_lb: bool = False,
        liveness: str = "memberlist",
        memberlist: MemberlistOptions | None = None,
        lease_renew: float = 0.4,
        lease_duration: float = 1.2,
        conflict_probe: bool = True,
        registry: CollectorRegistry | None = None,
        watch_timeout: int = 60,
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.node_name, self.namespace, self.config_name = node_name, namespace, config_name
        self.interfaces, self.ignore_exclude_lb = interfaces, ignore_exclude_lb
        self.registry = registry or CollectorRegistry()
        self.metrics = SpeakerMetrics(self.registry)
        self.load = ApiLoad(self.registry)
        self.config_loaded, self.config_stale = config_gauges(self.registry)
        self.pm = default_plugin_manager()
        self.config: Config | None = None
        self._wake = threading.Event()
        announcers = Announcers(
            self.pm,
            AnnouncerSettings(
                node_name=node_name,
                interfaces=interfaces,
                ignore_exclude_lb=ignore_exclude_lb,
                registry=self.registry,
                conflict_probe=conflict_probe,
                notify=self._notify,
                peer_macs=lambda: self.liveness.peer_macs(),
            ),
        )
        self.announcements = ServiceAnnouncements(announcers, self.metrics, node_name=node_name)
        self._stop = threading.Event()
        self._reported: set[tuple[str, str]] = set()  # (service, problem) already raised as an Event
        self._unannounced: set[str] = set()  # announced here, its nodeAssigned Event not yet recorded
        self._drain_started: float | None = None  # monotonic time this node's drain was first seen
        self._holding: set[tuple[str, str]] = set()  # (Service, protocol) kept announced by the drain
        self._taken_at: dict[tuple[str, str], float] = {}  # (Service, protocol) -> when another node's status showed it
        # Services another node of ours announced (its status) or won (our election), ever: taking them is a move.
        self._elsewhere: set[str] = set()
        self._macs_seen: frozenset[str] = frozenset()  # of our layer-2 interfaces, published to the others
        self._threads: list[threading.Thread] = []
        self.liveness = make_liveness(
            liveness,
            api,
            node_name=node_name,
            namespace=namespace,
            wake=self._wake.set,
            suspect=self.metrics.suspect,
            load=self.load,
            registry=self.registry,
            memberlist=memberlist,
            lease_renew=lease_renew,
            lease_duration=lease_duration,
            watch_timeout=watch_timeout,
        )
        kw = {"watch_timeout": watch_timeout}
        counted = self.load.counted

        def announcement_status(kind: StatusKind, *, optional: bool) -> AnnouncementStatus:
            return AnnouncementStatus(
                api,
                namespace=namespace,
                node_name=node_name,
                on_change=counted(kind.plural, lambda _kind, _obj: self._wake.set()),
                wrote=self.load.wrote,
                watch_timeout=watch_timeout,
                kind=kind,
                optional=optional,
            )

        self.statuses = announcement_status(L2, optional=False)
        # ServiceBGPStatus: optional, so an install with only the ServiceL2Status CRD still runs.
        self.bgp_statuses = announcement_status(BGP, optional=True)
        self.services = Informer(
            "services",
            self.core.list_service_for_all_namespaces,
            counted("services", self._changed),
            **kw,  # type: ignore[arg-type]
        )
        self.slices = Informer(
            "endpointslices",
            client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces,
            counted("endpointslices", self._changed),
            **kw,  # type: ignore[arg-type]
        )
        self.config_watch = ConfigWatch(
            api,
            namespace=namespace,
            config_name=config_name,
            plugin_manager=self.pm,
            on_change=self._on_config,
            on_node=self._on_node,
            on_object=self.load.received,
            watch_timeout=watch_timeout,
        )
        self.nodes = self.config_watch.nodes

    # -- inputs ----------------------------------------------------------------------

    def _changed(self, kind: str, obj: Obj | None) -> None:
        self._wake.set()

    def _on_config(self, state: ConfigState) -> None:
        config = state.config
        if config is None:
            if state.source == NONE:
                log.error("no configuration yet; keeping the last good one, if any")
                if self.config is not None:
                    self.config_stale.set(1)
            else:
                log.error("config not applied, keeping the last good one: %s", state.error)
                self.config_stale.set(1)
            return
        # MetalLB's speaker rule: a config that orphans an address we announce is stale.
        for key, (_, view) in list(self.announced.items()):
            orphan = next((ip for ip in view.ips if config.pool_for(ip) is None), None)
            if orphan is not None:
                log.error(
                    "config not applied, keeping the last good one: %s announces %s, in no pool of it", key, orphan
                )
                self.config_stale.set(1)
                return
        # The sync thread hands it to the announcers: they are called from one thread only.
        if self.config is None or config != self.config or config.warnings != self.config.warnings:
            for warning in config.warnings:
                log.warning("config: %s", warning)
        self.config = config
        self.config_loaded.set(1)
        self.config_stale.set(0)
        log.info("config loaded from %s: %d pools, %d peers", state.source, len(config.pools), len(config.peers))
        self._wake.set()

    def _on_node(self, kind: str, obj: Obj | None) -> None:
        self.liveness.on_node(kind, obj)
        self._wake.set()

    def live_speakers(self) -> frozenset[str]:
        """Nodes whose speaker is alive, as the liveness mode sees it (this node too, unless it holds itself down)."""
        return self.liveness.live()

    def _node(self) -> NodeInfo:
        obj = self.nodes.cache.get(self.node_name) or {}
        return NodeInfo(name=self.node_name, labels=(obj.get("metadata") or {}).get("labels") or {})

    # -- the decision ----------------------------------------------------------------

    def _endpoints(self) -> dict[str, tuple[frozenset[str], bool]]:
        """Service key -> (nodes with a ready endpoint, any ready endpoint)."""
        out: dict[str, tuple[set[str], bool]] = {}
        for sl in self.slices.cache.values():
            meta = sl.get("metadata") or {}
            name = (meta.get("labels") or {}).get("kubernetes.io/service-name")
            if not name:
                continue
            nodes, ready = out.setdefault(f"{meta.get('namespace')}/{name}", (set(), False))
            for ep in sl.get("endpoints") or ():
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                ready = True
                if ep.get("nodeName"):
                    nodes.add(ep["nodeName"])
            out[f"{meta.get('namespace')}/{name}"] = (nodes, ready)
        return {k: (frozenset(n), r) for k, (n, r) in out.items()}

    @property
    def announced(self) -> dict[str, tuple[tuple[str, ...], ServiceView]]:
        """Service key -> (protocols, view) this speaker announces."""
        return self.announcements.announced

    @property
    def reasons(self) -> dict[str, str]:
        """Service key -> why this speaker does not announce it."""
        return self.announcements.reasons

    def _cluster(self) -> ClusterView:
        node = self._node()
        nodes = {
            name: NodeInfo(name=name, labels=(o.get("metadata") or {}).get("labels") or {})
            for name, o in self.nodes.cache.items()
        }
        nodes.setdefault(self.node_name, node)
        live = self.live_speakers()
        # Draining nodes are not candidates, unless that would leave no one at all.
        undrained = live - self.draining()
        return ClusterView(
            node=node, nodes=nodes, live_speakers=undrained or live, ignore_exclude_lb=self.ignore_exclude_lb
        )

    def draining(self) -> frozenset[str]:
        """Nodes annotated ``metallb.io/drain`` (any value but "false")."""
        out = set()
        for name, obj in list(self.nodes.cache.items()):
            value = ((obj.get("metadata") or {}).get("annotations") or {}).get(DRAIN_ANNOTATION)
            if value is not None and value.lower() != "false":
                out.add(name)
        return frozenset(out)

    def _hold(self, cluster: ClusterView) -> frozenset[tuple[str, str]]:
        """While this node drains: the (Service, protocol) pairs it keeps announcing until another node's
        status shows it announcing them (``ServiceL2Status`` with an interface, ``ServiceBGPStatus`` with a
        peer, then :data:`DRAIN_SETTLE` more), at most :data:`DRAIN_GRACE` seconds."""
        if self.node_name not in self.draining() or self.node_name in cluster.live_speakers:
            self._drain_started = None
            self._holding = set()
            self._taken_at = {}
            return frozenset()
        now = time.monotonic()
        if self._drain_started is None:
            self._drain_started = now
            log.info("node %s drains: its addresses move to the next nodes", self.node_name)
            timer = threading.Timer(DRAIN_GRACE + 0.01, self._wake.set)
            timer.daemon = True
            timer.start()
        if now - self._drain_started >= DRAIN_GRACE:
            if self._holding:
                log.info("drain: no other node took %d announcements within %g s; withdrawing them anyway",
                         len(self._holding), DRAIN_GRACE)  # fmt: skip
                self._holding = set()
            return frozenset()
        # Who announces each Service now, by the status of each protocol the drain waits for.
        taken = {"layer2": self.statuses.announcers(), "bgp": self.bgp_statuses.announcers()}
        held = set()
        for key, (protocols, _) in self.announced.items():
            for protocol in protocols:
                pair = (key, protocol)
                others = taken.get(protocol, {}).get(key, frozenset()) - {self.node_name}
                if not others:
                    self._taken_at.pop(pair, None)
                else:
                    settle = DRAIN_SETTLE.get(protocol, 0.0)
                    if pair not in self._taken_at:
                        self._taken_at[pair] = now
                        if settle:
                            timer = threading.Timer(settle + 0.005, self._wake.set)
                            timer.daemon = True
                            timer.start()
                    if now - self._taken_at[pair] >= settle:
                        if pair in self._holding:
                            log.info("%s: %s announces it by %s now; withdrawing", key, ",".join(sorted(others)),
                                     protocol)  # fmt: skip
                        continue
                held.add(pair)
        self._holding = held
        return frozenset(held)

    def _candidates(self, config: Config) -> tuple[dict[str, ServiceView], dict[str, str]]:
        """Services with an address of a pool and endpoints: key -> view, and why the others are not."""
        endpoints = self._endpoints()
        announcers = self.statuses.announcers()
        candidates: dict[str, ServiceView] = {}
        reasons: dict[str, str] = {}
        for key, obj in list(self.services.cache.items()):
            intent = read_service(obj)
            if not intent.is_load_balancer:
                continue
            if not intent.current:
                reasons[key] = "noIPAllocated"
                continue
            try:
                ips = tuple(netaddr.IPAddress(ip) for ip in intent.current)
            except (netaddr.AddrFormatError, ValueError):
                reasons[key] = "invalidIP"
                continue
            pool = config.pool_for(ips[0])
            if pool is None:
                reasons[key] = "ipNotAllowed"
                continue
            if key not in endpoints:
                reasons[key] = "noEndpoints"
                continue
            ready_nodes, any_ready = endpoints[key]
            if announcers.get(key, frozenset()) - {self.node_name}:
                self._elsewhere.add(key)
            view = ServiceView(
                announced_elsewhere=key in self._elsewhere,
                key=key,
                ips=ips,
                pool=pool,
                local_traffic=intent.local_traffic,
                ready_nodes=ready_nodes,
                has_ready_endpoints=any_ready,
            )
            candidates[key] = view
        return candidates, reasons

    def sync(self) -> None:
        """Decide every Service and apply the difference."""
        config = self.config
        if config is None or not self.liveness.ready():  # announcing before knowing who is alive takes too much
            return
        candidates, reasons = self._candidates(config)
        cluster = self._cluster()
        refuse: dict[str, str] = {}
        if self.node_name not in cluster.live_speakers and self.node_name in self.draining():
            refuse["bgp"] = "nodeDraining"  # BGP ignores liveness: a draining node stops advertising here
        hold = self._hold(cluster)
        self._advertise_macs()  # before announcing: our gratuitous frames must not look like a conflict
        self._unannounced.update(
            self.announcements.update(candidates, cluster, config, reasons=reasons, hold=hold, refuse=refuse)
        )
        # A Service this speaker saw another node win is a move when it comes here: no conflict probe.
        self._elsewhere.update(k for k, r in self.reasons.items() if r == "notOwner")
        layer2 = self._advertise_macs()  # a layer-2 announcer built just now: its MACs too
        status_of = getattr(layer2, "status_of", None)
        answering = status_of() if status_of is not None else {}
        live = self.live_speakers()
        self.statuses.publish(answering, live=live)
        bgp_status_of = getattr(self.announcements.announcers.known("bgp"), "status_of", None)
        self.bgp_statuses.publish(bgp_status_of() if bgp_status_of is not None else {}, live=live)
        # nodeAssigned once really announced: a layer-2 Service waits for its conflict probe, and may never be.
        for key in list(self._unannounced):
            announced = self.announced.get(key)
            if announced is None:
                self._unannounced.discard(key)
            elif set(announced[0]) - {"layer2"} or key in answering:
                self._unannounced.discard(key)
                self._event(self.services.cache.get(key) or {}, f'announcing from node "{self.node_name}"')
        self._report(self.problems())

    def _advertise_macs(self) -> object:
        """Tell the other speakers our layer-2 announcer's MACs (the liveness writes only on a change); the
        announcer, if any."""
        layer2 = self.announcements.announcers.known("layer2")
        local_macs = getattr(layer2, "local_macs", None)
        if local_macs is not None:
            # Every MAC this process answered on: a link going down and up again changes nothing (in memberlist
            # mode a change is a new incarnation, which must not look like a refutation while cut off).
            self._macs_seen |= frozenset(local_macs())
            self.liveness.advertise_macs(self._macs_seen)
        return layer2

    def problems(self) -> dict[str, str]:
        """Service key -> a problem of its announcement here (``AddressConflict: ...``)."""
        out = {k: r for k, r in self.reasons.items() if r.startswith("AddressConflict")}
        for protocol in ("layer2", "bgp"):
            problems = getattr(self.announcements.announcers.known(protocol), "problems", None)
            if problems is not None:
                out.update(problems())
        return out

    def _report(self, problems: dict[str, str]) -> None:
        """One Warning Event per new problem (its reason is the text before the colon)."""
        # Each distinct problem once per process: a conflict is probed again every few seconds.
        for key, text in set(problems.items()) - self._reported:
            reason, _, message = text.partition(": ")
            self._event(self.services.cache.get(key) or {}, message, reason=reason, type_="Warning")
            self._reported.add((key, text))

    def _notify(self) -> None:
        """An announcer's answers changed on their own (a conflict probe ended): decide again."""
        self._wake.set()

    def _event(self, obj: Obj, message: str, *, reason: str = "nodeAssigned", type_: str = "Normal") -> None:
        meta = obj.get("metadata") or {}
        if not meta:
            return
        body = event_body(
            obj,
            reason=reason,
            message=message,
            type_=type_,
            component="metallb-speaker",
            host=self.node_name,
        )
        try:
            self.load.wrote("events", "create")
            self.core.create_namespaced_event(meta.get("namespace"), body, _request_timeout=(3, 10))
        except ApiException as exc:
            log.debug("event not recorded: %s", exc.reason)

    def _sync_loop(self) -> None:
        # Wake on any change, and exactly when a liveness expiry is due, so failover waits no longer than it must.
        while not self._stop.is_set():
            try:
                self._wake.wait(self.liveness.next_check() + 0.005)
                self._wake.clear()
                if self._stop.is_set():
                    return
                self.sync()
            except Exception:
                log.exception("sync failed")
                self._stop.wait(0.1)

    # -- lifecycle -------------------------------------------------------------------

    def _informers(self) -> tuple[Informer, ...]:
        """The speaker's own informers (the config watch runs its own)."""
        return (
            *self.liveness.informers(),
            self.statuses.informer,
            self.bgp_statuses.informer,
            self.slices,
            self.services,
        )

    def start(self) -> None:
        """Start the informers, the liveness and the decision loop."""
        self._threads = [threading.Thread(target=self._sync_loop, name="sync", daemon=True)]
        self.config_watch.start()
        for informer in self._informers():
            informer.start()
        self.liveness.start()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Withdraw everything, close announcers, and tell the others (a goodbye, or deleting the Lease)."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.announcements.close()
        self.statuses.withdraw_all()
        self.bgp_statuses.withdraw_all()
        self.config_watch.stop()
        for informer in self._informers():
            informer.stop()
        self.liveness.stop()

    def ready(self) -> bool:
        """Ready once every informer has listed (readiness probe).

        Not tied to the config: with none yet, a DaemonSet rollout would stall on the first node.
        """
        return self.config_watch.synced() and all(i.synced.is_set() for i in self._informers())

    def status(self) -> dict[str, Any]:
        """What this speaker announces and why it does not announce the rest."""
        return {
            "node": self.node_name,
            "announced": {
                k: {"protocol": ",".join(p), "ips": [str(i) for i in v.ips]} for k, (p, v) in self.announced.items()
            },
            "not_announced": dict(self.reasons),
            "problems": self.problems(),
            "live_speakers": sorted(self.live_speakers()),
            "speaker_macs": sorted(self.liveness.peer_macs()),
            "liveness": self.liveness.status(),
            "api": self.load.rates(),
        }


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM, then withdraw everything."""
    if not args.node_name:
        log.error("no node name: pass --node-name or set METALLB_NODE_NAME")
        return 2
    try:
        api = api_client(args.kubeconfig, context=args.context)
    except Exception as exc:  # noqa: BLE001 - any way of not finding the API reads the same to the user
        log.error("%s", one_line(exc))  # a bad kubeconfig's YAML error spans lines
        return 1
    speaker = Speaker(
        api,
        node_name=args.node_name,
        namespace=args.namespace,
        config_name=args.config,
        interfaces=parse_interfaces(args.interfaces),
        ignore_exclude_lb=args.ignore_exclude_lb,
        liveness=args.liveness,
        memberlist=MemberlistOptions(
            bind_addr=args.ml_bindaddr,
            bind_port=args.ml_bindport,
            labels=args.ml_labels,
            namespace=args.ml_namespace or args.namespace,
            secret_key_path=args.ml_secret_key_path,
        ),
        lease_renew=args.lease_renew,
        lease_duration=args.lease_duration,
        conflict_probe=not args.no_conflict_probe,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = None
    if args.metrics_port:
        server = MetricsServer(
            speaker.registry, host=args.metrics_host, port=args.metrics_port, status=speaker.status, ready=speaker.ready
        ).start()
    speaker.start()
    log.info("speaker for node %s started (liveness: %s)", args.node_name, speaker.liveness.mode)
    stop.wait()
    speaker.stop()
    if server is not None:
        server.stop()
    log.info("stopped; every announcement withdrawn")
    return 0
