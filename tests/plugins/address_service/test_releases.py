"""Retries of the client: the background release queue (its own backoff per address) and the quick retries (stamina)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import attrs
import netaddr
import pytest
from metallb.allocator import AllocationError, retry
from metallb.plugins.address_service.client import ATTEMPTS
from metallb.plugins.address_service.releases import ReleaseError, ReleaseQueue


@attrs.frozen
class Record:
    ip: netaddr.IPAddress
    service: str = "ns/a"


class FlakyService:
    """The far side of a release: refuses the first *failures* tries of each address, then confirms."""

    def __init__(self, failures: int = 0, *, forever: frozenset[str] = frozenset()) -> None:
        self.failures = failures
        self.forever = forever
        self.tries: dict[str, list[float]] = {}
        self.confirmed: list[str] = []
        self.lock = threading.Lock()

    def send(self, record: Record) -> None:
        ip = str(record.ip)
        with self.lock:
            tries = self.tries.setdefault(ip, [])
            tries.append(time.monotonic())
            if ip in self.forever or len(tries) <= self.failures:
                raise ReleaseError(f"HTTP 500 (try {len(tries)})")
            self.confirmed.append(ip)


@pytest.fixture
def make_queue() -> Iterator:
    """Factory: ``make_queue(service, held=..., first_delay=...)``; closed at teardown."""
    made: list[ReleaseQueue[Record]] = []

    def make(service: FlakyService, *, held=lambda ip: False, first_delay: float = 0.02) -> ReleaseQueue[Record]:
        queue: ReleaseQueue[Record] = ReleaseQueue(
            send=service.send,
            held=held,
            label="test",
            first_delay=first_delay,
            max_delay=1.0,
            thread_name="test-release",
        )
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.close()


def ip(text: str) -> netaddr.IPAddress:
    return netaddr.IPAddress(text)


class TestReleaseQueue:
    """Queued releases: retried until confirmed, each on its own schedule, dropped once held again."""

    def test_retried_until_confirmed(self, make_queue) -> None:
        """A release refused twice in the background is sent a third time and leaves the queue."""
        service = FlakyService(failures=2)
        queue = make_queue(service)
        queue.add(Record(ip("192.0.2.1")), error="HTTP 500", attempts=3)
        assert queue.pending() == {ip("192.0.2.1"): "HTTP 500"}
        assert queue.flush(timeout=5)
        assert len(service.tries["192.0.2.1"]) == 3 and service.confirmed == ["192.0.2.1"]
        assert queue.pending() == {} and len(queue) == 0

    def test_the_wait_doubles(self, make_queue) -> None:
        """Each refusal doubles the wait before the next try: 0.05, 0.1, 0.2, 0.4 s (Backoff, at most 20 % less)."""
        service = FlakyService(failures=4)
        queue = make_queue(service, first_delay=0.05)
        added = time.monotonic()
        queue.add(Record(ip("192.0.2.1")), error="HTTP 500", attempts=3)
        assert queue.flush(timeout=5)
        tries = service.tries["192.0.2.1"]
        gaps = [later - earlier for earlier, later in itertools.pairwise([added, *tries])]
        assert len(gaps) == 5
        for n, gap in enumerate(gaps):
            assert gap >= 0.05 * 2**n * 0.8 - 0.005, (n, gaps)  # a busy machine only makes gaps longer

    def test_last_error_is_kept(self, make_queue, helpers) -> None:
        """While an address keeps failing, pending() shows the latest error."""
        service = FlakyService(forever=frozenset({"192.0.2.1"}))
        queue = make_queue(service)
        queue.add(Record(ip("192.0.2.1")), error="HTTP 502", attempts=3)
        helpers.wait_for(lambda: len(service.tries.get("192.0.2.1", ())) >= 2, 5, "two background tries")
        assert queue.pending()[ip("192.0.2.1")].startswith("HTTP 500 (try ")

    def test_one_failing_address_delays_no_other(self, make_queue) -> None:
        """An address that never succeeds keeps its own backoff; another one is confirmed at its first retry."""
        service = FlakyService(forever=frozenset({"192.0.2.1"}))
        queue = make_queue(service)
        queue.add(Record(ip("192.0.2.1")), error="HTTP 500", attempts=3)
        queue.add(Record(ip("192.0.2.2")), error="HTTP 500", attempts=3)
        deadline = time.monotonic() + 5
        while "192.0.2.2" not in service.confirmed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.confirmed == ["192.0.2.2"] and len(service.tries["192.0.2.2"]) == 1
        assert list(queue.pending()) == [ip("192.0.2.1")]

    def test_held_again_is_dropped_unsent(self, make_queue) -> None:
        """An address held here again is never released from the queue: that would take it from its new owner."""
        service = FlakyService()
        queue = make_queue(service, held=lambda address: address == ip("192.0.2.1"))
        queue.add(Record(ip("192.0.2.1")), error="HTTP 500", attempts=3)
        assert queue.flush(timeout=5)
        assert service.tries == {}

    def test_discard_and_records_of(self, make_queue) -> None:
        """records_of lists a service's queued releases; discard forgets one without sending it."""
        service = FlakyService()
        queue = make_queue(service, first_delay=60)
        queue.add(Record(ip("192.0.2.1"), "ns/a"), error="e", attempts=3)
        queue.add(Record(ip("192.0.2.2"), "ns/b"), error="e", attempts=3)
        assert queue.records_of("ns/a") == [Record(ip("192.0.2.1"), "ns/a")]
        queue.discard(ip("192.0.2.1"))
        queue.discard(ip("192.0.2.9"))  # unknown: nothing happens
        assert list(queue.pending()) == [ip("192.0.2.2")] and service.tries == {}

    def test_thread_only_while_needed(self, make_queue) -> None:
        """No thread runs until the first release is queued; close() stops it and returns what is left."""
        service = FlakyService(forever=frozenset({"192.0.2.1"}))
        queue = make_queue(service)
        assert "test-release" not in {t.name for t in threading.enumerate()}
        queue.add(Record(ip("192.0.2.1")), error="HTTP 500", attempts=3)
        assert "test-release" in {t.name for t in threading.enumerate()}
        assert queue.close() == [ip("192.0.2.1")]
        assert "test-release" not in {t.name for t in threading.enumerate()}


@pytest.fixture
def instant_retries() -> Iterator[None]:
    """stamina's testing mode: quick retries keep their number of attempts but never wait."""
    retry.set_testing(True, attempts=ATTEMPTS)
    yield
    retry.set_testing(False)


def section(entry: str) -> str:
    return "address-services:\n" + entry


class TestQuickRetries:
    """The client's bounded retries (metallb.allocator.retry over stamina): how many, and of what."""

    def test_post_5xx_tried_three_times(self, legacy, make_allocator, helpers, instant_retries) -> None:
        """Three 500 answers make exactly three POSTs (with a lease check after each), then fail; no waiting."""
        legacy.post_faults += ["500"] * 3
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)), backoff=30.0)
        started = time.monotonic()
        with pytest.raises(AllocationError, match="3 problems"):
            alloc.allocate("ns/a", pool="dm")
        assert time.monotonic() - started < 5.0
        assert legacy.count("POST") == 3 and legacy.count("GET", "/v1/status") == 3

    def test_timeout_answer_not_repeated(self, make_legacy, make_allocator, helpers, instant_retries) -> None:
        """DHCPManager's "timeout" answer is final: one POST, no second one."""
        legacy = make_legacy(request_timeout=0.1)
        legacy.post_faults.append("timeout")
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)), backoff=30.0)
        with pytest.raises(AllocationError, match='status "timeout"'):
            alloc.allocate("ns/a", pool="dm")
        assert legacy.count("POST") == 1

    def test_4xx_not_retried(self, make_bundled, make_allocator, helpers, instant_retries) -> None:
        """A 401 (wrong token) is answered once: repeating a refused request cannot help."""
        server = make_bundled(auth_token="s3cret")
        alloc = make_allocator(section(helpers.pool_yaml("as", server.url)), backoff=30.0)
        with pytest.raises(AllocationError, match="HTTP 401"):
            alloc.allocate("ns/a", pool="as")
        labels = {"method": "POST", "path": "/v1/ip", "code": "401"}
        count = lambda: server.registry.get_sample_value("metallb_address_service_requests_total", labels)  # noqa: E731
        helpers.wait_for(count, 5, "the 401 to be counted (after it is answered)")
        time.sleep(0.2)  # a repeat would come at once (testing mode)
        assert count() == 1

    def test_delete_retried_inline_then_queued(self, legacy, make_allocator, helpers, instant_retries) -> None:
        """A DELETE refused three times is queued after exactly three quick tries; the queue then delivers it."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        source = alloc.source("dm")
        address = alloc.allocate("ns/a", pool="dm")
        legacy.delete_faults += ["500"] * 3
        alloc.unassign("ns/a")
        assert legacy.count("DELETE") == 3 and list(source.pending_releases()) == [address]
        assert source.flush(timeout=5) and legacy.count("DELETE") == 4
        assert legacy.held() == {}

    def test_delete_retried_inline(self, legacy, make_allocator, helpers, instant_retries) -> None:
        """Two refused DELETEs are repeated at once; the third confirms and nothing is queued."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)), backoff=30.0)
        alloc.allocate("ns/a", pool="dm")
        legacy.delete_faults += ["500", "500"]
        started = time.monotonic()
        alloc.unassign("ns/a")
        assert time.monotonic() - started < 5.0
        assert legacy.count("DELETE") == 3 and alloc.source("dm").pending_releases() == {}

    def test_waits_grow_between_tries(self, legacy, make_allocator, helpers) -> None:
        """Without testing mode the retries wait: at least backoff before the second POST, twice that before the third."""
        legacy.post_faults += ["500", "500"]
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)), backoff=0.2)
        started = time.monotonic()
        alloc.allocate("ns/a", pool="dm")
        assert 0.6 <= time.monotonic() - started < 5.0
        assert legacy.count("POST") == 3
