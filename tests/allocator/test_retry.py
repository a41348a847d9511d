"""metallb.allocator.retry: bounded quick retries over stamina, and the Backoff of long-running loops."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import stamina
from metallb.allocator import retry
from metallb.allocator.retry import Backoff, retrying


class Flaky:
    """A call failing with the given exceptions in turn, then returning the number of calls."""

    def __init__(self, *failures: BaseException, pause: float = 0.0) -> None:
        self.failures = list(failures)
        self.pause = pause
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.pause:
            time.sleep(self.pause)
        if self.failures:
            raise self.failures.pop(0)
        return self.calls


def run(call: Callable[[], int], **options: object) -> tuple[int, list[int]]:
    """*call* under retrying(**options): its result and the number of each attempt."""
    nums = []
    for attempt in retrying(**options):  # type: ignore[arg-type]
        nums.append(attempt.num)
        with attempt:
            result = call()
    return result, nums


@pytest.fixture(name="stamina_entered")
def _stamina_entered(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times retrying() set stamina up (stamina's own retry_context, counted)."""
    entered: list[int] = []
    real = stamina.retry_context

    def counted(*args: object, **kwargs: object) -> object:
        entered.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stamina, "retry_context", counted)
    return entered


@pytest.fixture(name="testing_mode")
def _testing_mode() -> Iterator[Callable[[int], None]]:
    """Turn stamina's testing mode on with a number of attempts; always off again afterwards."""
    yield lambda attempts: retry.set_testing(True, attempts=attempts)
    retry.set_testing(False)


class TestRetrying:
    def test_success_at_once_never_sets_stamina_up(self, stamina_entered):
        """A block that succeeds at its first try runs once, as attempt 1, without stamina."""
        assert run(Flaky(), on=OSError) == (1, [1])
        assert stamina_entered == []

    def test_success_after_failures(self, stamina_entered):
        """Failures worth retrying are retried, attempts numbered 1, 2, 3, stamina set up once."""
        result, nums = run(Flaky(OSError("a"), OSError("b")), on=OSError, wait_initial=0.001)
        assert (result, nums) == (3, [1, 2, 3])
        assert stamina_entered == [1]

    def test_attempts_are_exact(self):
        """A call that always fails runs exactly *attempts* times; the last failure is raised."""
        call = Flaky(*(OSError(f"try {n}") for n in range(1, 10)))
        with pytest.raises(OSError, match="try 4"):
            run(call, on=OSError, attempts=4, wait_initial=0.001)
        assert call.calls == 4

    def test_one_attempt_means_no_retry(self):
        """attempts=1 tries once and raises the first failure."""
        call = Flaky(OSError("once"), OSError("twice"))
        with pytest.raises(OSError, match="once"):
            run(call, on=OSError, attempts=1)
        assert call.calls == 1

    def test_other_exceptions_propagate_at_once(self):
        """An exception that is not retryable propagates from whichever try raised it."""
        first = Flaky(ValueError("bad"))
        with pytest.raises(ValueError, match="bad"):
            run(first, on=OSError)
        assert first.calls == 1
        second = Flaky(OSError("flaky"), ValueError("bad"))
        with pytest.raises(ValueError, match="bad"):
            run(second, on=OSError, wait_initial=0.001)
        assert second.calls == 2

    def test_base_exceptions_are_never_retried(self):
        """KeyboardInterrupt and the like pass through even when every Exception is retryable."""
        call = Flaky(KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            run(call, on=Exception)
        assert call.calls == 1

    @pytest.mark.parametrize(
        "on",
        [(KeyError, OSError), lambda exc: "again" in str(exc)],
        ids=["tuple of types", "predicate"],
    )
    def test_tuples_and_predicates(self, on):
        """A tuple of types, or a predicate on the exception, decides what is retried, first try included."""
        assert run(Flaky(OSError("again"), KeyError("again")), on=on, wait_initial=0.001)[0] == 3
        refused = Flaky(RuntimeError("give up"))
        with pytest.raises(RuntimeError):
            run(refused, on=on)
        assert refused.calls == 1

    def test_timeout_counts_from_the_first_try(self, stamina_entered):
        """A first try that outlasts the timeout is not retried (stamina's clock would only start then)."""
        call = Flaky(OSError("slow"), pause=0.05)
        with pytest.raises(OSError, match="slow"):
            run(call, on=OSError, attempts=5, timeout=0.02, wait_initial=0.001)
        assert call.calls == 1
        assert stamina_entered == []

    def test_timeout_bounds_later_tries(self):
        """After a failure, no new try starts once the timeout has passed since the first try."""
        call = Flaky(OSError("1"), OSError("2"), OSError("3"), OSError("4"))

        def block() -> int:
            if call.calls:  # every try but the first outlasts the timeout
                time.sleep(0.05)
            return call()

        with pytest.raises(OSError, match="2"):
            run(block, on=OSError, attempts=5, timeout=0.03, wait_initial=0.001)
        assert call.calls == 2

    def test_waits_grow_from_wait_initial(self):
        """The pauses are at least wait_initial, then twice that (jitter only adds)."""
        call = Flaky(OSError(), OSError())
        start = time.monotonic()
        run(call, on=OSError, wait_initial=0.05, wait_max=1.0)
        assert time.monotonic() - start >= 0.05 + 0.1

    def test_testing_mode_keeps_attempts_and_never_waits(self, testing_mode):
        """set_testing: the given number of attempts (first try included), no pause however long the backoff."""
        testing_mode(2)
        call = Flaky(OSError("1"), OSError("2"), OSError("3"))
        start = time.monotonic()
        with pytest.raises(OSError, match="2"):
            run(call, on=OSError, attempts=5, wait_initial=10.0)
        assert call.calls == 2 and time.monotonic() - start < 5.0

    @pytest.mark.parametrize(
        "options",
        [{"attempts": 0}, {"timeout": 0}, {"wait_initial": -1.0}, {"wait_max": -1.0}],
        ids=["attempts", "timeout", "wait_initial", "wait_max"],
    )
    def test_bounds_are_checked(self, options):
        """Nonsense bounds are refused when retrying() is called, before any try."""
        with pytest.raises(ValueError, match="retrying\\(\\) needs"):
            retrying(on=OSError, **options)


class TestBackoff:
    def test_schedule_doubles_up_to_the_cap(self):
        """Without jitter the delays are initial, initial*factor ... then the cap; reset starts over."""
        backoff = Backoff(initial=1.0, cap=5.0, jitter=0.0)
        assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
        assert backoff.failures == 5
        backoff.reset()
        assert (backoff.failures, backoff.next()) == (0, 1.0)

    def test_immediate_first_retry(self):
        """immediate=True: the first retry comes at once, then initial, doubling (MetalLB's BGP schedule)."""
        backoff = Backoff(initial=1.0, cap=120.0, jitter=0.0, immediate=True)
        assert [backoff.next() for _ in range(9)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 120.0]

    def test_factor(self):
        """Each delay is the previous one times factor."""
        backoff = Backoff(initial=0.5, cap=100.0, factor=3.0, jitter=0.0)
        assert [backoff.next() for _ in range(4)] == [0.5, 1.5, 4.5, 13.5]

    def test_peek_counts_nothing(self):
        """peek() is the next delay without jitter and without counting a failure."""
        backoff = Backoff(initial=2.0, cap=60.0)
        assert backoff.peek() == 2.0 and backoff.failures == 0
        backoff.next()
        assert backoff.peek() == 4.0 and backoff.failures == 1

    def test_jitter_stays_in_its_band(self):
        """Each delay lies within jitter of the schedule, the capped ones too."""
        first = [Backoff(initial=1.0, cap=10.0, jitter=0.2).next() for _ in range(200)]
        assert all(0.8 <= d <= 1.2 for d in first) and len(set(first)) > 1
        capped = Backoff(initial=1.0, cap=10.0, jitter=0.2, failures=50)
        assert all(8.0 <= capped.next() <= 12.0 for _ in range(200))

    def test_long_outages_do_not_overflow(self):
        """After very many failures the delay is simply the cap."""
        assert Backoff(initial=1.0, cap=30.0, jitter=0.0, failures=100_000).next() == 30.0

    @pytest.mark.parametrize(
        "options",
        [{"initial": -1.0}, {"cap": -1.0}, {"factor": 0.5}, {"jitter": 1.0}, {"jitter": -0.1}],
        ids=["initial", "cap", "factor", "jitter 1", "jitter negative"],
    )
    def test_nonsense_is_refused(self, options):
        """Negative delays, a shrinking factor or a jitter outside [0, 1) raise ValueError."""
        with pytest.raises(ValueError, match="Backoff needs"):
            Backoff(**options)
