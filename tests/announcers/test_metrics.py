"""PerRegistry: the one way the announcers keep a set of metrics per Prometheus registry."""

from __future__ import annotations

import gc
import threading

from metallb.announcers.bgp import metrics as bgp_metrics
from metallb.announcers.bgp.bfd import metrics as bfd_metrics
from metallb.announcers.layer2 import responder
from metallb.announcers.metrics import PerRegistry
from prometheus_client import REGISTRY, CollectorRegistry, Counter


def counting() -> tuple[PerRegistry[Counter], list[CollectorRegistry]]:
    """A PerRegistry of one counter, and the registries it was made for."""
    made: list[CollectorRegistry] = []

    @PerRegistry
    def series(registry: CollectorRegistry) -> Counter:
        """One counter in *registry*."""
        made.append(registry)
        return Counter("metallb_test_things", "Things", registry=registry)

    return series, made


class TestPerRegistry:
    def test_made_once_per_registry(self) -> None:
        """Each registry gets its own object, made once; later calls return it."""
        series, made = counting()
        first, second = CollectorRegistry(), CollectorRegistry()
        assert series(first) is series(first)
        assert series(second) is not series(first)
        assert made == [first, second]

    def test_none_is_the_global_registry(self) -> None:
        """Called with None (or nothing), it serves the global registry."""
        made: list[CollectorRegistry] = []
        series = PerRegistry(lambda registry: made.append(registry) or len(made))
        assert series() == series(None) == series(REGISTRY) == 1
        assert made == [REGISTRY]

    def test_concurrent_first_calls_make_one(self) -> None:
        """Threads asking for the same new registry at once all get one object (its series registered once)."""
        series, made = counting()
        registry = CollectorRegistry()
        start = threading.Barrier(8)
        got: list[Counter] = []

        def ask() -> None:
            start.wait()
            got.append(series(registry))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(got) == 8 and all(g is got[0] for g in got) and made == [registry]

    def test_registries_are_held_weakly(self) -> None:
        """A registry nobody else holds is dropped with its object."""
        series = PerRegistry(lambda registry: Counter("metallb_test_things", "Things", registry=registry))
        registry = CollectorRegistry()
        series(registry)
        del registry
        gc.collect()
        assert len(series._made) == 0

    def test_every_announcer_uses_it(self) -> None:
        """The BGP, BFD and layer-2 metrics_for are PerRegistry, with their docstrings kept."""
        for module in (bgp_metrics, bfd_metrics, responder):
            assert isinstance(module.metrics_for, PerRegistry)
            assert module.metrics_for.__doc__ and "registry" in module.metrics_for.__doc__
        registry = CollectorRegistry()
        assert bgp_metrics.metrics_for(registry) is bgp_metrics.metrics_for(registry)
        assert isinstance(bfd_metrics.metrics_for(registry), bfd_metrics.BfdMetrics)
        assert responder.metrics_for(registry).takeovers is responder.metrics_for(registry).takeovers
