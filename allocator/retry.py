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
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Protocol, TypeAlias

import attrs
import stamina

__all__ = ["Attempt", "Backoff", "Retryable", "retrying", "set_testing"]

#: What :func:`retrying` retries on: exception types, or a predicate on the exception.
Retryable: TypeAlias = "type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]"


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


class Attempt(Protocol):
    """One try of the block: ``with attempt:`` around it; ``num`` counts from 1."""

    @property
    def num(self) -> int:
        """Which try this is (1 for the first)."""
        ...

    def __enter__(self) -> None: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> bool | None: ...


class _FirstAttempt:
    """The first try, run without stamina: it only notes a failure worth retrying (and swallows it)."""

    __slots__ = ("_retryable", "failure")
    num = 1

    def __init__(self, retryable: Callable[[Exception], bool]) -> None:
        self._retryable = retryable
        self.failure: Exception | None = None

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> bool:
        if isinstance(exc, Exception) and self._retryable(exc):
            self.failure = exc
            return True  # retrying() raises it again inside stamina, as stamina's first attempt
        return False


def _predicate(on: Retryable) -> Callable[[Exception], bool]:
    if isinstance(on, type | tuple):
        types = on
        return lambda exc: isinstance(exc, types)
    return lambda exc: bool(on(exc))


def retrying(
    *,
    on: Retryable,
    attempts: int = 3,
    timeout: float = 45.0,
    wait_initial: float = 0.25,
    wait_max: float = 30.0,
) -> Iterator[Attempt]:
    """Retry a block a bounded number of times, with exponential backoff and jitter.

    Usage::

        for attempt in retrying(on=httpx.TransportError):
            with attempt:
                response = client.post(...)

    The first try runs outside stamina, so a block that succeeds at once costs
    next to nothing (setting stamina up costs about 50 us); after a failure
    worth retrying, stamina takes over with that failure as its first attempt,
    so the bounds hold exactly as if stamina had run every try.

    Args:
        on: the exceptions (or a predicate on the exception) worth retrying;
            anything else propagates at once.
        attempts: at most this many tries in all.
        timeout: after a failure, give up once this many seconds have passed
            since the first try started (a running try is not interrupted).
        wait_initial: the first pause; each later pause doubles, up to *wait_max*,
            plus a random jitter of up to *wait_initial*.
        wait_max: the longest pause.
    """
    if attempts < 1 or timeout <= 0 or wait_initial < 0 or wait_max < 0:
        raise ValueError("retrying() needs attempts >= 1, timeout > 0, wait_initial >= 0 and wait_max >= 0")
    return _attempts(on, attempts, timeout, wait_initial, wait_max)


def _attempts(on: Retryable, attempts: int, timeout: float, wait_initial: float, wait_max: float) -> Iterator[Attempt]:
    started = time.monotonic()
    first = _FirstAttempt(_predicate(on))
    yield first
    failure, first.failure = first.failure, None
    if failure is None:
        return  # done at the first try
    left = timeout - (time.monotonic() - started)
    if left <= 0:
        raise failure  # the first try alone used the whole time
    for attempt in stamina.retry_context(
        on=on,
        attempts=attempts,
        timeout=left,
        wait_initial=wait_initial,
        wait_max=wait_max,
        wait_jitter=wait_initial,
    ):
        if failure is None:
            yield attempt
            continue
        with attempt:
            again, failure = failure, None
            raise again  # stamina's attempt 1: it waits (or gives up, raising it) as after any failure


def set_testing(testing: bool, *, attempts: int = 1) -> None:
    """Make :func:`retrying` retry without pausing (tests), or restore normal behaviour."""
    stamina.set_testing(testing, attempts=attempts)
