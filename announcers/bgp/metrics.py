"""Prometheus metrics of the BGP speaker, with MetalLB's names, labelled by ``peer``."""

from __future__ import annotations

from metallb.announcers.metrics import PerRegistry
from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["BgpMetrics", "metrics_for"]

class BgpMetrics:
    """The BGP series of one registry: MetalLB's four, and ours (state changes, refused, malformed, damped)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._up = Gauge(
            "metallb_bgp_session_up", "BGP session state (1 is up, 0 is down)", ["peer"], registry=registry
        )
        self._updates = Counter(
            "metallb_bgp_updates_total", "Number of BGP UPDATE messages sent", ["peer"], registry=registry
        )
        self._announced = Gauge(
            "metallb_bgp_announced_prefixes_total", "Number of prefixes currently being advertised on the BGP session",
            ["peer"], registry=registry,
        )  # fmt: skip
        self._state: dict[str, bool] = {}  # the last state of each peer's session
        self._changes = Counter(
            "metallb_bgp_session_state_changes_total", "Times the BGP session went up or down",
            ["peer", "state"], registry=registry,
        )  # fmt: skip
        self._pending = Gauge(
            "metallb_bgp_pending_prefixes_total", "Number of prefixes that should be advertised on the BGP session",
            ["peer"], registry=registry,
        )  # fmt: skip
        self._refused = Gauge(
            "metallb_bgp_refused_prefixes",
            "Prefixes that should be advertised on the BGP session but cannot be sent to the peer "
            "(an UPDATE would exceed the message size the peer accepts)",
            ["peer"], registry=registry,
        )  # fmt: skip
        self._malformed = Counter(
            "metallb_bgp_malformed_updates_total",
            "Malformed UPDATE messages received and handled without a session reset (RFC 7606), by approach",
            ["peer", "action"], registry=registry,
        )  # fmt: skip
        self._damped = Gauge(
            "metallb_bgp_damped_prefixes",
            "Prefixes held back by flap damping: withdrawn and wanted again within the damping interval",
            registry=registry,
        )

    def session_up(self, peer: str, up: bool) -> None:
        """Record whether the session to *peer* is established (a change of state is counted)."""
        if self._state.get(peer, False) != up:  # a new session that is still down is no change
            self._changes.labels(peer, "up" if up else "down").inc()
        self._state[peer] = up
        self._up.labels(peer).set(1 if up else 0)

    def update_sent(self, peer: str) -> None:
        """Count one UPDATE sent to *peer*."""
        self._updates.labels(peer).inc()

    def announced(self, peer: str, count: int) -> None:
        """Prefixes *peer* has from us."""
        self._announced.labels(peer).set(count)

    def pending(self, peer: str, count: int) -> None:
        """Prefixes still to send to or withdraw from *peer*."""
        self._pending.labels(peer).set(count)

    def refused(self, peer: str, count: int) -> None:
        """Prefixes *peer* should have but cannot be sent."""
        self._refused.labels(peer).set(count)

    def update_error(self, peer: str, action: str) -> None:
        """Count one malformed UPDATE from *peer* handled by *action* (``treat-as-withdraw``, ``attribute-discard``)."""
        self._malformed.labels(peer, action).inc()

    def damped(self, count: int) -> None:
        """Prefixes currently held back by flap damping."""
        self._damped.set(count)

    def forget(self, peer: str) -> None:
        """Drop *peer*'s series (the peer left the configuration)."""
        self._state.pop(peer, None)
        series: list[tuple[Gauge | Counter, tuple[str, ...]]] = [
            (m, (peer,)) for m in (self._up, self._updates, self._announced, self._pending, self._refused)
        ]
        series += [(self._changes, (peer, state)) for state in ("up", "down")]
        for metric, labels in series:
            try:
                metric.remove(*labels)
            except KeyError:
                pass
        for action in ("treat-as-withdraw", "attribute-discard"):
            try:
                self._malformed.remove(peer, action)
            except KeyError:
                pass


@PerRegistry
def metrics_for(registry: CollectorRegistry) -> BgpMetrics:
    """The metrics of *registry* (default: the global one), created once per registry."""
    return BgpMetrics(registry)
