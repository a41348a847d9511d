"""Prometheus metrics of the bundled address service (``docs/metrics.md`` lists them)."""

from __future__ import annotations

from metallb.plugins.address_service.api import Lease
from metallb.plugins.address_service.service import AddressService
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["Metrics"]

PREFIX = "metallb_address_service"


class Metrics:
    """Requests, their latency and connections (fed by the HTTP server), lease changes and gauges (read from *service*).

    Args:
        service: the service whose leases and MACs the gauges read.
        registry: where the metrics live; a new registry by default, so
            several services in one process (tests) never collide.
    """

    def __init__(self, service: AddressService, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests answered", ["method", "path", "code"], registry=self.registry
        )
        self.latency = Histogram(
            f"{PREFIX}_request_seconds",
            "HTTP request latency",
            ["method", "path"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 15),
            registry=self.registry,
        )
        self.connections = Gauge(f"{PREFIX}_connections", "Open HTTP connections", registry=self.registry)
        self.connections_closed = Counter(
            f"{PREFIX}_connections_closed",
            "HTTP connections the server closed or refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.lease_events = Counter(f"{PREFIX}_lease_events", "Lease changes", ["event"], registry=self.registry)
        leases = Gauge(f"{PREFIX}_leases", "Leases held", ["state"], registry=self.registry)
        leases.labels("bound").set_function(lambda: service.count(lost=False))
        leases.labels("lost").set_function(lambda: service.count(lost=True))
        macs = Gauge(f"{PREFIX}_available_macs", "MACs in the pool, free", registry=self.registry)
        macs.set_function(lambda: len(service.available_macs()))
        service.add_listener(self._lease_changed)

    def _lease_changed(self, lease: Lease) -> None:
        self.lease_events.labels("lost" if lease.lost else "renewed").inc()

    def observe(self, *, method: str, path: str, code: int, seconds: float) -> None:
        """Count one answered request; *path* is a bounded label (``wire.path_label``)."""
        self.requests.labels(method, path, str(code)).inc()
        self.latency.labels(method, path).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The ``/metrics`` body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
