"""Prometheus metrics with MetalLB's names, and the small HTTP server that serves them.

Each component gets its own ``CollectorRegistry`` so tests and several
components in one process never collide.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from metallb.allocator import Allocator, UnknownPoolError
from metallb.operator.exposition import CONTENT_TYPE, RUNTIME, render
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily

__all__ = ["ControllerMetrics", "MetricsServer", "PoolCollector", "SpeakerMetrics", "config_gauges"]


class PoolCollector:
    """The allocator's per-pool gauges, read from it at scrape time (a prometheus ``Collector``).

    Nothing to keep in step: a pool removed from the config is gone from the next scrape.
    """

    def __init__(self, allocator: Allocator) -> None:
        self._allocator = allocator

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "metallb_allocator_addresses_total", "Number of usable IP addresses, per pool", labels=["pool"]
            ),
            GaugeMetricFamily(
                "metallb_allocator_addresses_in_use_total", "Number of IP addresses in use, per pool", labels=["pool"]
            ),
            GaugeMetricFamily(
                "metallb_allocator_services_allocated_total",
                "Number of services with addresses, per pool",
                labels=["pool"],
            ),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without samples, so the registry knows their names without scraping."""
        return iter(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per pool of the allocator's current config (no capacity sample while it is unknown)."""
        total, in_use, services = self._families()
        allocator = self._allocator
        per_pool: dict[str, int] = {}
        for allocation in allocator.allocations():
            per_pool[allocation.pool] = per_pool.get(allocation.pool, 0) + 1
        for pool in allocator.config.pools:
            try:
                stats = allocator.stats(pool)
            except UnknownPoolError:  # the config changed since we read it: the next scrape has it
                continue
            if stats.total is not None:
                total.add_metric([pool], float(stats.total))
            in_use.add_metric([pool], float(stats.in_use))
            services.add_metric([pool], float(per_pool.get(pool, 0)))
        return iter((total, in_use, services))


class ControllerMetrics:
    """The allocator and Kubernetes-client metrics of MetalLB's controller."""

    def __init__(self, registry: CollectorRegistry, allocator: Allocator) -> None:
        self.registry = registry
        registry.register(PoolCollector(allocator))
        self.updates = Counter("metallb_k8s_client_updates", "Number of work items processed", registry=registry)
        self.update_errors = Counter(
            "metallb_k8s_client_update_errors", "Number of work items that failed and were retried", registry=registry
        )
        self.config_loaded, self.config_stale = config_gauges(registry)
        self.allocation_failures = Counter(
            "metallb_allocator_allocation_failures",
            "Allocations that failed, per pool (empty: every auto-assign pool was tried) and reason",
            ["pool", "reason"],
            registry=registry,
        )

    def allocation_failed(self, *, pool: str, reason: str) -> None:
        """Count one failed allocation (``Outcome.failure``)."""
        self.allocation_failures.labels(pool, reason).inc()


def config_gauges(registry: CollectorRegistry) -> tuple[Gauge, Gauge]:
    """``metallb_k8s_client_config_loaded_bool`` and ``..._stale_bool``: the controller's, and the speaker's."""
    loaded = Gauge("metallb_k8s_client_config_loaded_bool", "1 once a configuration was loaded", registry=registry)
    stale = Gauge(
        "metallb_k8s_client_config_stale_bool",
        "1 while running on an old configuration because the newest one failed",
        registry=registry,
    )
    return loaded, stale


class SpeakerMetrics:
    """The speaker's own metric; announcers register theirs on the same registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.announced = Gauge(
            "metallb_speaker_announced",
            "1 while this speaker announces the service",
            ["service", "protocol", "node", "ip"],
            registry=registry,
        )
        # Fed by the liveness in use (operator/liveness.py): memberlist's alive -> suspect, a stale Node or Lease.
        self.membership_suspicions = Counter(
            "metallb_speaker_membership_suspicions",
            "Times another node's speaker was suspected dead (its heartbeat stopped), per node",
            ["node"],
            registry=registry,
        )

    def suspect(self, node: str) -> None:
        """Count one suspicion of *node*'s speaker."""
        self.membership_suspicions.labels(node).inc()


class MetricsServer:
    """``/metrics``, ``/healthz``, ``/readyz`` and ``/status`` on one port (loopback by default).

    ``/metrics`` is *registry* then the process-wide ``process_*`` and ``python_*`` metrics, written
    with MetalLB's exact names (:mod:`metallb.operator.exposition`).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 7472,
        status: Callable[[], object] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, render((registry, RUNTIME)), CONTENT_TYPE)
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain")
                elif path == "/readyz":
                    ok = outer.ready() if outer.ready else True
                    self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n", "text/plain")
                elif path == "/status" and outer.status is not None:
                    self._send(200, json.dumps(outer.status(), indent=2).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.status = status
        self.ready = ready
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
