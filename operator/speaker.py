"""``metallb speaker``: announces service addresses from one node.

It watches Services, EndpointSlices, the configuration (MetalLB's resources
with the Secrets, Nodes and Namespaces they refer to, or the legacy ConfigMap:
:class:`~metallb.operator.config_watch.ConfigWatch`) and the speakers' Leases,
and decides per Service, for every protocol of its pool, through the announcer
plugins' ``should_announce``, whether this node announces it (honouring the
advertisements' node selectors, interfaces and peers), then announces or
withdraws. It writes nothing on the configuration: the controller reports on it.

Liveness for the layer-2 election: every speaker renews a
``coordination.k8s.io/v1`` Lease named after its node. A speaker is dead when
its Lease has not changed for a lease duration, measured on *this* process's
monotonic clock from the moment the change was observed, so no two machines'
clocks are ever compared. One renewal per speaker per interval, never per
Service: API writes per second = nodes / renew interval. A cleanly stopped
speaker deletes its Lease, so the others take over at once.
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
from metallb.operator.announcing import Announcers, ServiceAnnouncements, parse_interfaces
from metallb.operator.cmd_config import one_line
from metallb.operator.config_watch import NONE, ConfigState, ConfigWatch
from metallb.operator.informer import Informer
from metallb.operator.kube import api_client, event_body, now_rfc3339
from metallb.operator.metrics import MetricsServer, SpeakerMetrics, config_gauges
from metallb.operator.service import read_service
from prometheus_client import CollectorRegistry

__all__ = ["Speaker", "run"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
LEASE_PREFIX = "metallb-speaker-"
LEASE_LABELS = {"app.kubernetes.io/name": "metallb", "app.kubernetes.io/component": "speaker"}


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
        lease_renew: float = 0.4,
        lease_duration: float = 1.2,
        registry: CollectorRegistry | None = None,
        watch_timeout: int = 60,
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.coord = client.CoordinationV1Api(api)
        self.node_name, self.namespace, self.config_name = node_name, namespace, config_name
        self.interfaces, self.ignore_exclude_lb = interfaces, ignore_exclude_lb
        self.lease_renew, self.lease_duration = lease_renew, lease_duration
        self.registry = registry or CollectorRegistry()
        self.metrics = SpeakerMetrics(self.registry)
        self.config_loaded, self.config_stale = config_gauges(self.registry)
        self.pm = default_plugin_manager()
        self.config: Config | None = None
        announcers = Announcers(
            self.pm,
            AnnouncerSettings(
                node_name=node_name,
                interfaces=interfaces,
                ignore_exclude_lb=ignore_exclude_lb,
                registry=self.registry,
            ),
        )
        self.announcements = ServiceAnnouncements(announcers, self.metrics, node_name=node_name)
        self._seen: dict[str, tuple[str, float]] = {}  # node -> (lease renewTime, monotonic time seen)
        self._live: frozenset[str] = frozenset()  # live_speakers() at the last sync (suspicions)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        kw = {"watch_timeout": watch_timeout}
        self.services = Informer("services", self.core.list_service_for_all_namespaces, self._changed, **kw)  # type: ignore[arg-type]
        self.slices = Informer(
            "endpointslices",
            client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces,
            self._changed,
            **kw,  # type: ignore[arg-type]
        )
        self.config_watch = ConfigWatch(
            api,
            namespace=namespace,
            config_name=config_name,
            plugin_manager=self.pm,
            on_change=self._on_config,
            on_node=self._changed,
            watch_timeout=watch_timeout,
        )
        self.nodes = self.config_watch.nodes
        self.leases = Informer(
            "leases",
            self.coord.list_namespaced_lease,
            self._on_lease,
            list_kwargs={"namespace": namespace, "label_selector": "app.kubernetes.io/component=speaker"},
            **kw,  # type: ignore[arg-type]
        )

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

    def _on_lease(self, kind: str, obj: Obj | None) -> None:
        if obj is None:
            self._wake.set()
            return
        node = ((obj.get("spec") or {}).get("holderIdentity")) or ""
        was_live = node in self.live_speakers()
        seen = dict(self._seen)  # copy-on-write: the sync thread reads _seen without a lock
        if kind == "DELETED":
            seen.pop(node, None)
        else:
            renew = str((obj.get("spec") or {}).get("renewTime") or "")
            if seen.get(node, ("", 0.0))[0] != renew:
                seen[node] = (renew, time.monotonic())
        self._seen = seen
        # A renewal of a live speaker changes nothing; expiries are timed by _next_expiry.
        if was_live != (node in self.live_speakers()):
            self._wake.set()

    def live_speakers(self) -> frozenset[str]:
        """Nodes whose speaker Lease changed within the lease duration (this node always)."""
        now = time.monotonic()
        live = {n for n, (_, seen) in self._seen.items() if now - seen <= self.lease_duration}
        return frozenset(live | {self.node_name})

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
        return ClusterView(
            node=node, nodes=nodes, live_speakers=self.live_speakers(), ignore_exclude_lb=self.ignore_exclude_lb
        )

    def _candidates(self, config: Config) -> tuple[dict[str, ServiceView], dict[str, str]]:
        """Services with an address of a pool and endpoints: key -> view, and why the others are not."""
        endpoints = self._endpoints()
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
            view = ServiceView(
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
        if config is None:
            return
        live = self.live_speakers()
        for node in self._live - live:
            if node in self._seen:  # its Lease stopped changing; a deleted Lease is a clean leave
                self.metrics.suspect(node)
        self._live = live
        candidates, reasons = self._candidates(config)
        for key in self.announcements.update(candidates, self._cluster(), config, reasons=reasons):
            self._event(self.services.cache.get(key) or {}, f'announcing from node "{self.node_name}"')

    def _event(self, obj: Obj, message: str) -> None:
        meta = obj.get("metadata") or {}
        if not meta:
            return
        body = event_body(
            obj,
            reason="nodeAssigned",
            message=message,
            type_="Normal",
            component="metallb-speaker",
            host=self.node_name,
        )
        try:
            self.core.create_namespaced_event(meta.get("namespace"), body, _request_timeout=(3, 10))
        except ApiException as exc:
            log.debug("event not recorded: %s", exc.reason)

    # -- the Lease -------------------------------------------------------------------

    @property
    def lease_name(self) -> str:
        """This speaker's Lease."""
        return LEASE_PREFIX + self.node_name

    def renew_lease(self) -> None:
        """Create or renew this node's Lease (one write)."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.lease_name, "namespace": self.namespace, "labels": LEASE_LABELS},
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": max(1, round(self.lease_duration)),
                "renewTime": now_rfc3339(),
            },
        }
        try:
            self.coord.replace_namespaced_lease(self.lease_name, self.namespace, body, _request_timeout=(2, 5))
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.coord.create_namespaced_lease(self.namespace, body, _request_timeout=(2, 5))

    def _lease_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.renew_lease()
            except Exception as exc:  # noqa: BLE001 - keep renewing; others will see us as dead meanwhile
                log.warning("renewing lease %s failed: %s", self.lease_name, exc)
            self._stop.wait(self.lease_renew)

    def _next_expiry(self) -> float:
        """Seconds until the next live speaker's Lease would expire (at most one renew interval)."""
        now = time.monotonic()
        waits = [seen + self.lease_duration - now for n, (_, seen) in self._seen.items() if n != self.node_name]
        return max(0.005, min([w for w in waits if w > 0] + [self.lease_renew]))

    def _sync_loop(self) -> None:
        # Wake on any change, and exactly when a Lease expires, so failover waits no longer than it must.
        while not self._stop.is_set():
            try:
                self._wake.wait(self._next_expiry() + 0.005)
                self._wake.clear()
                if self._stop.is_set():
                    return
                self.sync()
            except Exception:
                log.exception("sync failed")
                self._stop.wait(0.1)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the Lease, the informers and the decision loop."""
        self._threads = [
            threading.Thread(target=self._lease_loop, name="lease", daemon=True),
            threading.Thread(target=self._sync_loop, name="sync", daemon=True),
        ]
        self.config_watch.start()
        for informer in (self.leases, self.slices, self.services):
            informer.start()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Withdraw everything, close announcers, and delete this node's Lease."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.announcements.close()
        self.config_watch.stop()
        for informer in (self.leases, self.slices, self.services):
            informer.stop()
        try:
            self.coord.delete_namespaced_lease(self.lease_name, self.namespace, _request_timeout=(2, 5))
        except Exception as exc:  # noqa: BLE001 - best effort: the lease expires anyway
            log.debug("deleting lease: %s", exc)

    def ready(self) -> bool:
        """Ready once every informer has listed (readiness probe).

        Not tied to the config: with none yet, a DaemonSet rollout would stall on the first node.
        """
        informers = (self.leases, self.slices, self.services)
        return self.config_watch.synced() and all(i.synced.is_set() for i in informers)

    def status(self) -> dict[str, Any]:
        """What this speaker announces and why it does not announce the rest."""
        return {
            "node": self.node_name,
            "announced": {
                k: {"protocol": ",".join(p), "ips": [str(i) for i in v.ips]} for k, (p, v) in self.announced.items()
            },
            "not_announced": dict(self.reasons),
            "live_speakers": sorted(self.live_speakers()),
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
        lease_renew=args.lease_renew,
        lease_duration=args.lease_duration,
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
    log.info("speaker for node %s started", args.node_name)
    stop.wait()
    speaker.stop()
    if server is not None:
        server.stop()
    log.info("stopped; every announcement withdrawn")
    return 0
