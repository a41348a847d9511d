"""``metallb controller``: allocates addresses for LoadBalancer Services in a cluster.

Design (MetalLB's, made concurrent):

- Informers watch Services (all namespaces) and the configuration: MetalLB's
  resources (with the Secrets, Nodes and Namespaces they refer to) or the
  legacy ConfigMap (:class:`~metallb.operator.config_watch.ConfigWatch`).
- A work queue hands Service keys to worker threads; one worker per key at a
  time, so a slow address service delays only the Services waiting on it.
- Sync barrier: until the first full Service list has been seen and every
  address already in a Service's status re-assigned, nothing new is allocated.
- Each key is converged (:func:`~metallb.operator.converge.converge`) and the
  Service is written only where it changed: status through the status
  subresource, annotations and finalizer through a merge patch.
- Failures are never silent: a Warning Event and a retry with backoff.
- Exactly one active controller: a ``coordination.k8s.io`` Lease is held
  before anything is allocated.
- Only the controller reports on configuration resources: each gets
  ``status.conditions`` and Events (:mod:`~metallb.operator.config_status`);
  an invalid set never replaces the last good configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

import attrs
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from metallb.allocator import Allocator, Config, Hooks, MetalLBError, default_plugin_manager
from metallb.allocator.kube import LeaderLease
from metallb.operator.cmd_config import one_line
from metallb.operator.config_status import ConfigStatusWriter
from metallb.operator.config_watch import NONE, ConfigState, ConfigWatch
from metallb.operator.converge import Event, Outcome, converge
from metallb.operator.informer import Informer, WorkQueue, obj_key
from metallb.operator.kube import api_client, event_body
from metallb.operator.metrics import ControllerMetrics, MetricsServer
from metallb.operator.service import FINALIZER, read_service
from prometheus_client import CollectorRegistry

__all__ = ["Controller", "LeaderLease", "run"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def _drain(response: Any) -> None:
    """Read and release a raw response: the watch brings us the object, so the model is not built."""
    response.read()
    response.release_conn()

class Controller:
    """Allocates addresses for Services; see the module docstring."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str = "metallb-system",
        config_name: str = "config",
        lb_class: str | None = None,
        workers: int = 4,
        registry: CollectorRegistry | None = None,
        reconcile_interval: float = 300.0,
        watch_timeout: int = 60,
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.namespace, self.config_name, self.lb_class = namespace, config_name, lb_class
        self.registry = registry or CollectorRegistry()
        self.allocator = Allocator(plugin_manager=default_plugin_manager())
        self.metrics = ControllerMetrics(self.registry, self.allocator)
        self.queue = WorkQueue()
        self.workers = workers
        self.reconcile_interval = reconcile_interval
        self.config: Config | None = None
        self.state: ConfigState | None = None  # the last configuration load, good or not
        self.synced = False
        self._stop = threading.Event()
        self._status_dirty = threading.Event()
        self._last_events: dict[str, tuple[str, str]] = {}
        self._lost: set[str] = set()  # keys whose address the address service no longer holds
        self._threads: list[threading.Thread] = []
        self.services = Informer(
            "services", self.core.list_service_for_all_namespaces, self._on_service, watch_timeout=watch_timeout
        )
        self.config_watch = ConfigWatch(
            api,
            namespace=namespace,
            config_name=config_name,
            plugin_manager=self.allocator.plugin_manager,
            on_change=self._on_config,
            watch_timeout=watch_timeout,
        )
        self.status_writer = ConfigStatusWriter(api, namespace=namespace, kinds=self.config_watch.kinds)

    # -- events from the informers ---------------------------------------------------

    def _on_config(self, state: ConfigState) -> None:
        """A new load of the configuration: apply it, or keep the last good one."""
        self.state = state
        self._status_dirty.set()
        config = state.config
        if config is None:
            if state.source == NONE:
                log.error(
                    "no configuration: neither MetalLB's resources nor configmap %s/%s; waiting for one",
                    self.namespace,
                    self.config_name,
                )
                if self.config is not None:
                    self.metrics.config_stale.set(1)
                return
            log.error("config not applied, keeping the last good one: %s", state.error)
            self.metrics.config_stale.set(1)
            return
        try:
            self.allocator.set_config(config)
        except Exception as exc:  # any bad config keeps the last good one
            unexpected = "" if isinstance(exc, MetalLBError) else f"{type(exc).__name__}: "
            log.error("config not applied, keeping the last good one: %s%s", unexpected, exc)
            log.debug("config not applied", exc_info=True)
            self.metrics.config_stale.set(1)
            return
        first = self.config is None
        self.config = config
        self.metrics.config_loaded.set(1)
        self.metrics.config_stale.set(0)
        log.info("config loaded from %s: %d pools, %d peers", state.source, len(config.pools), len(config.peers))
        for warning in config.warnings:
            log.warning("config: %s", warning)
        if first:
            self._barrier()
        self._requeue_all()

    def write_config_status(self) -> int:
        """Conditions, Events and pool counters on the configuration resources; returns the objects written."""
        state = self.state
        if state is None:
            return 0
        hooks = Hooks(self.allocator.plugin_manager)
        described = state.config if state.config is not None else self.config
        unapplied = hooks.unapplied(described) if described is not None else []
        return self.status_writer.write(state, self.config_watch.objects(), unapplied, self.config, self.allocator)

    def _on_service(self, kind: str, obj: Obj | None) -> None:
        if kind == "SYNCED":
            self._barrier()
            return
        if obj is None:
            return
        key = obj_key(obj)
        if kind == "DELETED":
            self._last_events.pop(key, None)
        # Releasing may talk to an address service: a worker does it, never this watch thread.
        self.queue.add(key)

    def _barrier(self) -> None:
        """MetalLB's sync barrier: re-assign every address in status before allocating anything."""
        if self.synced or self.config is None or not self.services.synced.is_set():
            return
        kept = 0
        for obj in list(self.services.cache.values()):
            intent = read_service(obj)
            if intent.current and intent.lb_class == self.lb_class:
                converge(intent, self.allocator, synced=False, lb_class=self.lb_class)
                kept += 1
        self.synced = True
        log.info("synced: %d services kept their addresses; allocating for the rest", kept)
        self._requeue_all()

    def _requeue_all(self) -> None:
        for key in list(self.services.cache):
            self.queue.add(key)

    # -- one Service -----------------------------------------------------------------

    def reconcile(self, key: str) -> bool:
        """Converge one Service and write what changed; False means retry later."""
        obj = self.services.cache.get(key)
        if obj is None:
            if self.allocator.unassign(key):
                log.info("%s deleted; its addresses are free", key)
                self._requeue_all()  # a freed address may unblock a pending Service
            return True
        if self.config is None:
            return True  # nothing to do until a config exists; config load requeues everything
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            self.allocator.unassign(key)
            if FINALIZER in (meta.get("finalizers") or ()):
                self._patch_meta(obj, annotations={}, finalizer=False)
            return True
        intent = read_service(obj)
        if key in self._lost:
            self._lost.discard(key)
            self.allocator.unassign(key)
            intent = attrs.evolve(intent, current=())  # its status address is gone at the source
        outcome = converge(intent, self.allocator, synced=self.synced, lb_class=self.lb_class)
        if not outcome.ours:
            return True
        if outcome.failure is not None:
            self.metrics.allocation_failed(pool=outcome.failure[0], reason=outcome.failure[1])
        for event in outcome.events:
            self._event(obj, event)
        self._apply(obj, outcome)
        self._status_dirty.set()  # pool counters may have changed
        return not outcome.retry

    def _apply(self, obj: Obj, outcome: Outcome) -> None:
        meta = obj.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        changes = {k: v for k, v in outcome.annotations.items() if annotations.get(k) != v}
        has_finalizer = FINALIZER in (meta.get("finalizers") or ())
        if changes or has_finalizer != outcome.finalizer:
            self._patch_meta(obj, annotations=changes, finalizer=outcome.finalizer)
        current = [i.get("ip") for i in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()]
        if current != list(outcome.ingress):
            body = {"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in outcome.ingress]}}}
            _drain(
                self.core.patch_namespaced_service_status(
                    meta["name"], meta["namespace"], body, _request_timeout=(3, 15), _preload_content=False
                )
            )

    def _patch_meta(self, obj: Obj, *, annotations: dict[str, str | None], finalizer: bool) -> None:
        """JSON-patch metallb's annotations and finalizer, guarded by the resourceVersion we read."""
        meta = obj.get("metadata") or {}
        current = meta.get("annotations") or {}
        ops: list[Obj] = [{"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")}]
        if not current and any(v is not None for v in annotations.values()):
            ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
        for name, value in annotations.items():
            path = "/metadata/annotations/" + name.replace("~", "~0").replace("/", "~1")
            if value is None:
                if name in current:
                    ops.append({"op": "remove", "path": path})
            else:
                ops.append({"op": "add", "path": path, "value": value})
        finalizers = [f for f in meta.get("finalizers") or () if f != FINALIZER] + ([FINALIZER] if finalizer else [])
        if finalizers != list(meta.get("finalizers") or ()):
            ops.append({"op": "add", "path": "/metadata/finalizers", "value": finalizers})
        if len(ops) > 1:
            # A list body makes the client send application/json-patch+json.
            _drain(
                self.core.patch_namespaced_service(
                    meta["name"], meta["namespace"], ops, _request_timeout=(3, 15), _preload_content=False
                )
            )

    def _event(self, obj: Obj, event: Event) -> None:
        meta = obj.get("metadata") or {}
        key = obj_key(obj)
        if self._last_events.get(key) == (event.reason, event.message):
            return  # the same event again on a retry: don't flood
        self._last_events[key] = (event.reason, event.message)
        body = event_body(
            obj, reason=event.reason, message=event.message, type_=event.type, component="metallb-controller"
        )
        try:
            _drain(
                self.core.create_namespaced_event(
                    meta.get("namespace"), body, _request_timeout=(2, 3), _preload_content=False
                )
            )
        except ApiException as exc:
            log.warning("could not record event %s on %s: %s", event.reason, key, exc.reason)
        level = logging.INFO if event.type == "Normal" else logging.WARNING
        log.log(level, "%s: %s: %s", key, event.reason, event.message)

    # -- workers and loops -----------------------------------------------------------

    def _worker(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                ok = self.reconcile(key)
            except ApiException as exc:
                # 409 conflict, 429 and 5xx are transient; 404 means the Service is gone.
                ok = exc.status == 404
                if not ok:
                    log.info("%s: API answered %s %s; retrying", key, exc.status, exc.reason)
            except Exception:
                log.exception("%s: reconcile failed", key)
                ok = False
            finally:
                self.queue.done(key)
            self.metrics.updates.inc()
            if ok:
                self.queue.forget(key)
            else:
                self.metrics.update_errors.inc()
                self.queue.retry(key)

    def _housekeeping(self) -> None:
        """Reconcile with address services every ``reconcile_interval`` seconds."""
        last_reconcile = time.monotonic()
        while not self._stop.wait(1.0):
            if self.synced and time.monotonic() - last_reconcile >= self.reconcile_interval:
                last_reconcile = time.monotonic()
                self.reconcile_sources()

    def _status_loop(self) -> None:
        """Write the configuration resources' status when a load or an allocation changed it (at most every 0.2 s)."""
        while not self._stop.is_set():
            if not self._status_dirty.wait(1.0):
                continue
            self._status_dirty.clear()
            try:
                self.write_config_status()
            except Exception:
                log.exception("writing the configuration's status failed")
            self._stop.wait(0.2)

    def reconcile_sources(self) -> None:
        """Ask address services what they hold: orphans are released, lost leases re-allocated."""
        for pool, report in self.allocator.reconcile().items():
            if report.released:
                log.info("pool %s: released %d orphaned addresses", pool, len(report.released))
            for owner, ip in report.lost:
                log.warning("pool %s: %s lost %s at the address service; allocating again", pool, owner, ip)
                # The worker for this key drops the lost address (never this thread: a worker
                # converging the same key could re-record it).
                self._lost.add(owner)
                self.queue.add(owner)

    def ready(self) -> bool:
        """Ready once synced (readiness probe)."""
        return self.synced

    def start(self) -> None:
        """Start informers, workers and housekeeping threads."""
        self.config_watch.start()
        self.services.start()
        for i in range(self.workers):
            self._threads.append(threading.Thread(target=self._worker, name=f"worker-{i}", daemon=True))
        self._threads.append(threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True))
        self._threads.append(threading.Thread(target=self._status_loop, name="config-status", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop everything (addresses stay allocated: they live in Service status)."""
        self._stop.set()
        self.queue.close()
        self.services.stop()
        self.config_watch.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self.allocator.close()


def run(args: argparse.Namespace) -> int:
    """Take the leader Lease, then run until SIGTERM."""
    try:
        api = api_client(args.kubeconfig, context=args.context)
    except Exception as exc:  # noqa: BLE001 - any way of not finding the API reads the same to the user
        log.error("%s", one_line(exc))  # a bad kubeconfig's YAML error spans lines
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    controller = Controller(
        api,
        namespace=args.namespace,
        config_name=args.config,
        lb_class=args.lb_class,
        workers=args.workers,
        reconcile_interval=args.reconcile_interval,
    )
    server = MetricsServer(
        controller.registry, host=args.metrics_host, port=args.metrics_port, ready=controller.ready
    ).start()
    identity = f"{socket.gethostname()}-{os.getpid()}"
    lease = LeaderLease(
        api,
        namespace=args.namespace,
        name=args.lease_name,
        identity=identity,
        duration=args.lease_duration,
        renew=max(1.0, args.lease_duration / 3),
        poll=2.0,
    )
    lease_thread = threading.Thread(target=lease.run, args=(stop,), name="lease", daemon=True)
    lease_thread.start()
    log.info("waiting for lease %s/%s", args.namespace, args.lease_name)
    while not stop.is_set() and not lease.held.wait(0.5):
        pass
    if not stop.is_set():
        controller.start()
        while not stop.wait(0.5):
            if lease.lost.is_set():
                break
    controller.stop()
    server.stop()
    lost = lease.lost.is_set()
    if not lost:
        lease.release()
    return 1 if lost else 0
