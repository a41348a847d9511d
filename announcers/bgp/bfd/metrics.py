"""Prometheus metrics of BFD sessions, with the names MetalLB's FRR mode exposes, labelled by ``peer``.

MetalLB labels BFD series with the peer's address alone (``192.0.2.1``), not
``address:port`` as its BGP series; so do we.
"""

from __future__ import annotations

from metallb.announcers.metrics import PerRegistry
from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["BfdMetrics", "metrics_for"]

class BfdMetrics:
    """The BFD series of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._up = Gauge(
            "metallb_bfd_session_up", "BFD session state (1 is up, 0 is down)", ["peer"], registry=registry
        )
        self._rx = Counter(
            "metallb_bfd_control_packet_input", "Number of received BFD control packets", ["peer"], registry=registry
        )
        self._tx = Counter(
            "metallb_bfd_control_packet_output", "Number of sent BFD control packets", ["peer"], registry=registry
        )
        self._ups = Counter(
            "metallb_bfd_session_up_events", "Number of BFD session up events", ["peer"], registry=registry
        )
        self._downs = Counter(
            "metallb_bfd_session_down_events", "Number of BFD session down events", ["peer"], registry=registry
        )
        self._send_errors = Counter(
            "metallb_bfd_control_packet_send_errors", "BFD control packets the kernel refused to send (ENOBUFS ...)",
            ["peer"], registry=registry,
        )  # fmt: skip
        self._discarded = Counter(
            "metallb_bfd_control_packet_discarded", "Received BFD control packets discarded (RFC 5880 6.8.6, TTL)",
            ["peer"], registry=registry,
        )  # fmt: skip

    def _all(self) -> tuple[Gauge | Counter, ...]:
        return (self._up, self._rx, self._tx, self._ups, self._downs, self._send_errors, self._discarded)

    def start(self, peer: str) -> None:
        """Create *peer*'s series at zero, so dashboards see a session that never came up."""
        self._up.labels(peer).set(0)
        for counter in (self._rx, self._tx, self._ups, self._downs, self._send_errors, self._discarded):
            counter.labels(peer)

    def session_up(self, peer: str, up: bool) -> None:
        """Record a change of the session to *peer*: the gauge and the up or down event."""
        self._up.labels(peer).set(1 if up else 0)
        (self._ups if up else self._downs).labels(peer).inc()

    def received(self, peer: str, count: int = 1) -> None:
        """*count* control packets accepted from *peer*."""
        self._rx.labels(peer).inc(count)

    def sent(self, peer: str, count: int = 1) -> None:
        """*count* control packets sent to *peer*."""
        self._tx.labels(peer).inc(count)

    def send_error(self, peer: str, count: int = 1) -> None:
        """The kernel refused *count* packets to *peer*."""
        self._send_errors.labels(peer).inc(count)

    def discarded(self, peer: str, count: int = 1) -> None:
        """*count* packets from *peer* were discarded."""
        self._discarded.labels(peer).inc(count)

    def forget(self, peer: str) -> None:
        """Drop *peer*'s series (its session was removed)."""
        for metric in self._all():
            try:
                metric.remove(peer)
            except KeyError:
                pass


@PerRegistry
def metrics_for(registry: CollectorRegistry) -> BfdMetrics:
    """The BFD metrics of *registry* (default: the global one), created once per registry."""
    return BfdMetrics(registry)
