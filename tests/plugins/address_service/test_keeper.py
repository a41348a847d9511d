"""LeaseKeeper, the renewal machinery both DHCP backends share, driven by a scripted backend without a network."""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from metallb.allocator.testing import wait_for
from metallb.plugins.address_service.api import Lease
from metallb.plugins.address_service.keeper import LeaseKeeper, in_netns


class Scripted(LeaseKeeper):
    """A backend whose server answers each renewal with the next scripted answer (a callable of the lease)."""

    kind = "scripted"
    protocol = "SCRIPTED"
    _scheduler_name = "scripted-schedule"

    def __init__(self, **options: Any) -> None:
        super().__init__(interface="if0", **options)
        self.answers: queue.Queue[Any] = queue.Queue()
        self.asked: list[tuple[str, bool]] = []
        self.received: list[bytes] = []
        self.peer: socket.socket | None = None

    def start(self, listener: Any) -> None:
        self._listener = listener
        self._sock, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._start_threads()

    def close(self) -> None:
        super().close()
        if self.peer is not None:
            self.peer.close()

    def _handle(self, data: bytes, address: Any) -> None:
        self.received.append(data)

    def _ask(self, lease: Lease, *, rebinding: bool) -> Lease | str | None:
        self.asked.append((lease.id, rebinding))
        answer = self.answers.get(timeout=10)
        return answer(lease)  # type: ignore[no-any-return]


def granted(seconds: float) -> Any:
    """An answer granting the lease again, renewal due in *seconds*."""

    def answer(lease: Lease) -> Lease:
        now = time.time()
        return attrs.evolve(lease, bound=now, renew=now + seconds, rebind=now + 2 * seconds, expires=now + 3 * seconds)

    return answer


def lease(**fields: Any) -> Lease:
    now = time.time()
    values = {"id": "l1", "service": "ns/a", "ip": "192.0.2.5", "renew": now + 60, "rebind": now + 90,
              "expires": now + 120, **fields}  # fmt: skip
    return Lease(**values)


@pytest.fixture(name="keeper")
def _keeper() -> Iterator[tuple[Scripted, list[Lease]]]:
    keeper, heard = Scripted(), []
    keeper.start(heard.append)
    yield keeper, heard
    keeper.close()


class TestRenewals:
    def test_resumed_lease_is_renewed_at_once_and_planned_again(self, keeper) -> None:
        """A resumed lease is asked for at once; the renewed lease is reported and its next renewal planned."""
        backend, heard = keeper
        backend.answers.put(granted(60))
        backend.resume(lease())
        wait_for(lambda: heard, 5, "the renewal")
        assert backend.asked == [("l1", False)]
        assert not heard[0].lost and backend._due["l1"] == heard[0].renew

    def test_past_t2_asks_any_server(self, keeper) -> None:
        """After T2 the renewal is a rebinding (from any server)."""
        backend, heard = keeper
        backend.answers.put(granted(60))
        backend.resume(lease(rebind=time.time() - 1))
        wait_for(lambda: heard, 5, "the rebinding")
        assert backend.asked == [("l1", True)]

    def test_refusal_loses_the_lease(self, keeper, caplog) -> None:
        """A refusal marks the lease lost, drops its plan and logs why."""
        backend, heard = keeper
        caplog.set_level(logging.INFO, logger="metallb.plugins.address_service.keeper")
        backend.answers.put(lambda _: "DHCPNAK")
        backend.resume(lease())
        wait_for(lambda: heard, 5, "the loss")
        assert heard[0].lost and "l1" not in backend._due
        assert "lease 192.0.2.5 for ns/a lost (DHCPNAK)" in caplog.text

    def test_silence_after_expiry_loses_the_lease(self, keeper) -> None:
        """No answer for an expired lease is a loss."""
        backend, heard = keeper
        past = time.time() - 1
        backend.answers.put(lambda _: None)
        backend.resume(lease(renew=past, rebind=past, expires=past))
        wait_for(lambda: heard, 5, "the loss")
        assert heard[0].lost

    def test_silence_asks_again_after_half_the_time_left(self, keeper) -> None:
        """No answer before T2 plans the next try halfway to T2 (at least 1 s), and nothing is reported."""
        backend, heard = keeper
        rebind = time.time() + 40
        backend.answers.put(lambda _: None)
        backend.resume(lease(rebind=rebind))
        wait_for(lambda: backend.asked and "l1" in backend._due, 5, "the next try to be planned")
        assert abs(backend._due["l1"] - (time.time() + 20)) < 2 and heard == []

    def test_failed_renewal_is_tried_again_in_5_s(self, keeper) -> None:
        """A renewal that raises is planned again 5 s later."""
        backend, heard = keeper

        def boom(_: Lease) -> Lease:
            raise RuntimeError("boom")

        backend.answers.put(boom)
        before = time.time()
        backend.resume(lease())
        wait_for(lambda: backend.asked and "l1" in backend._due and not backend._renewing, 5, "the retry's plan")
        assert before + 5 <= backend._due["l1"] <= time.time() + 5 and heard == []

    def test_plan_made_while_renewing_is_kept(self, keeper) -> None:
        """A lease planned again while its renewal runs is renewed again after that one ends, not forgotten."""
        backend, heard = keeper
        backend.resume(lease())
        wait_for(lambda: backend.asked, 5, "the first renewal to start")
        backend.resume(lease())  # due at once, while the first renewal waits for its answer
        backend.answers.put(granted(60))
        backend.answers.put(granted(60))
        wait_for(lambda: heard, 5, "the second renewal")
        assert len(backend.asked) == 2 and len(heard) == 1  # the first found its lease replaced: not reported

    def test_released_lease_is_forgotten(self, keeper) -> None:
        """A lease released while its renewal waits is neither reported nor planned again."""
        backend, heard = keeper
        backend.resume(lease())
        wait_for(lambda: backend.asked, 5, "the renewal to start")
        assert backend._forget(lease()).id == "l1"
        backend.answers.put(granted(60))
        wait_for(lambda: not backend._renewing, 5, "the renewal to end")
        assert heard == [] and backend._due == {}


class TestThreads:
    def test_receiver_hands_datagrams_on_and_close_stops_every_thread(self) -> None:
        """What arrives on the socket reaches _handle; close() ends the receiver and the scheduler."""
        backend = Scripted()
        backend.start(lambda lease: None)
        try:
            assert backend.peer is not None
            backend.peer.send(b"reply")
            wait_for(lambda: backend.received == [b"reply"], 5, "the datagram")
            assert {t.name for t in backend._threads} == {"scripted-receive", "scripted-schedule"}
        finally:
            backend.close()
        assert not any(t.is_alive() for t in backend._threads)

    def test_in_netns_runs_on_a_helper_thread_and_raises_there_errors_here(self) -> None:
        """in_netns returns what the callable made on its own thread, and raises what it raised."""
        assert in_netns("", lambda: threading.current_thread().name, name="helper") == "helper"

        def fail() -> None:
            raise OSError(19, "no such device")

        with pytest.raises(OSError, match="no such device"):
            in_netns("", fail, name="helper")
