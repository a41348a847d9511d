"""Prometheus metrics of the BGP speaker, with MetalLB's names, labelled by ``peer``."""

from __future__ import annotations

import threading
import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

__all__ = ["BgpMetrics", "metrics_for"]

_lock = threading.Lock()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, BgpMetrics] = weakref.WeakKeyDictionary()


class BgpMetrics:
    """MetalLB's four BGP series of one registry, and our session state changes."""

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

    def forget(self, peer: str) -> None:
        """Drop *peer*'s series (the peer left the configuration)."""
        self._state.pop(peer, None)
        series: list[tuple[Gauge | Counter, tuple[str, ...]]] = [
            (m, (peer,)) for m in (self._up, self._updates, self._announced, self._pending)
        ]
        series += [(self._changes, (peer, state)) for state in ("up", "down")]
        for metric, labels in series:
            try:
                metric.remove(*labels)
            except KeyError:
                pass


def metrics_for(registry: CollectorRegistry | None = None) -> BgpMetrics:
    """The metrics of *registry* (default: the global one), created once per registry."""
    reg = registry if registry is not None else REGISTRY
    with _lock:
        found = _by_registry.get(reg)
        if found is None:
            found = _by_registry[reg] = BgpMetrics(reg)
        return found
