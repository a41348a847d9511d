"""What every announcer's metrics share: one set of series per Prometheus registry, made on first use."""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry

__all__ = ["PerRegistry"]

M = TypeVar("M")


class PerRegistry(Generic[M]):
    """``make(registry)`` called once per registry; every later call for that registry gets the same object.

    Decorate the factory: ``@PerRegistry def metrics_for(registry) -> ...``; it
    is then called with a registry, or None for the global one. Registries are
    held weakly (a test's registry goes away with its series), and making is
    under a lock (two announcers starting at once register each series once).
    """

    def __init__(self, make: Callable[[CollectorRegistry], M]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._made: weakref.WeakKeyDictionary[CollectorRegistry, M] = weakref.WeakKeyDictionary()
        functools.update_wrapper(self, make)

    def __call__(self, registry: CollectorRegistry | None = None) -> M:
        """The object made for *registry* (default: the global one), made now if this is the first call."""
        reg = registry if registry is not None else REGISTRY
        with self._lock:
            found = self._made.get(reg)
            if found is None:
                found = self._made[reg] = self._make(reg)
            return found
