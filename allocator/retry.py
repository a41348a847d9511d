"""The one retry policy of metallb.

Two shapes, one module:

- **Bounded quick retries** of one call (an HTTP request, say): :func:`retrying`,
  a thin layer over `stamina <https://stamina.hynek.me>`_ that always bounds both
  the attempts and the total time and makes the caller name what to retry on.
- **Long-running loops** that keep trying for ever (a watch, a BGP session, a
  queued release): a :class:`Backoff` object per loop, asked for the next delay
  after each failure and reset after a success.

Tests make quick retries instant with :func:`set_testing`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import attrs
import stamina

__all__ = ["Backoff", "retrying", "set_testing"]


@attrs.define(kw_only=True)
class Backoff:
    """Exponential backoff for a loop that retries until it succeeds.

    Delays after 1, 2, 3 ... consecutive failures are ``initial``,
    ``initial * factor``, ... up to ``cap``, each scaled by a random factor in
    ``[1 - jitter, 1 + jitter]``. With ``immediate=True`` the first retry
    comes at once (0 s), then ``initial`` ... (MetalLB's BGP reconnect
    schedule: 0, 1, 2, 4 ... 120 s).

    Attributes:
        failures: consecutive failures counted so far.
    """

    initial: float = 0.5
    cap: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2
    immediate: bool = False
    failures: int = 0

    def __attrs_post_init__(self) -> None:
        if self.initial < 0 or self.cap < 0 or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("Backoff needs initial >= 0, cap >= 0, factor >= 1 and 0 <= jitter < 1")

    def peek(self) -> float:
        """The delay :meth:`next` would return, without jitter and without counting a failure."""
        steps = self.failures - 1 if self.immediate else self.failures
        if steps < 0:
            return 0.0
        # min() before the power would overflow: factor ** steps grows without bound.
        return min(self.cap, self.initial * self.factor ** min(steps, 64))

    def next(self) -> float:
        """Count one more failure and return how long to wait before the next attempt."""
        delay = self.peek()
        self.failures += 1
        if self.jitter and delay:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return float(min(delay, self.cap * (1 + self.jitter)))

    def reset(self) -> None:
        """A success: the next failure starts from the first delay again."""
        self.failures = 0


def retrying(
    *,
    on: type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool],
    attempts: int = 3,
    timeout: float = 45.0,
    wait_initial: float = 0.25,
    wait_max: float = 30.0,
) -> Iterable[stamina.Attempt]:
    """Retry a block a bounded number of times, with exponential backoff and jitter.

    Usage::

        for attempt in retrying(on=httpx.TransportError):
            with attempt:
                response = client.post(...)

    Args:
        on: the exceptions (or a predicate on the exception) worth retrying;
            anything else propagates at once.
        attempts: at most this many tries in all.
        timeout: give up when this much time has passed since the first try.
        wait_initial: the first pause; each later pause doubles, up to *wait_max*.
        wait_max: the longest pause.
    """
    return stamina.retry_context(
        on=on,
        attempts=attempts,
        timeout=timeout,
        wait_initial=wait_initial,
        wait_max=wait_max,
        wait_jitter=wait_initial,
    )


def set_testing(testing: bool, *, attempts: int = 1) -> None:
    """Make :func:`retrying` retry without pausing (tests), or restore normal behaviour."""
    stamina.set_testing(testing, attempts=attempts)
