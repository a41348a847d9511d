"""Releases an address service has not confirmed yet, and leases it may still bind after a timeout.

The client sends each DELETE itself first (a few quick tries); what still
fails lands in a :class:`ReleaseQueue`, whose thread retries every address on
its own :class:`~metallb.allocator.retry.Backoff` schedule. A release is
dropped, never sent, once the address is held here again: the service handed
it out anew, so the earlier release evidently happened.

A POST that DHCPManager answered ``timeout`` is not "no lease": its
controller binds allocations one at a time and often binds that one later.
:class:`LateLeases` looks for such allocation ids in the service's status for
a bounded time and hands each one it finds back to the client to release.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Generic, Protocol, TypeVar

import attrs
import netaddr
from metallb.allocator.retry import Backoff

__all__ = ["LateLeases", "ReleaseError", "ReleaseQueue"]

log = logging.getLogger(__name__)


class ReleaseError(Exception):
    """A release the service did not confirm; the message says what went wrong."""


class _Release(Protocol):
    """What the queue needs of a release: the address and the service it was made for."""

    @property
    def ip(self) -> netaddr.IPAddress: ...

    @property
    def service(self) -> str: ...


R = TypeVar("R", bound=_Release)


@attrs.define(kw_only=True)
class _Pending(Generic[R]):
    record: R
    backoff: Backoff
    due: float
    attempts: int
    last_error: str


class ReleaseQueue(Generic[R]):
    """Releases retried by one background thread until *send* succeeds, each with its own backoff.

    Args:
        send: one try; raises :class:`ReleaseError` when the service did not confirm.
        held: whether an address is in use here again (its release is then dropped).
        label: what log lines start with (the pool and its URL).
        first_delay: the wait before the first background try; it doubles per failure ...
        max_delay: ... up to this.
        thread_name: the worker thread's name, started at the first :meth:`add`.
    """

    def __init__(
        self,
        *,
        send: Callable[[R], None],
        held: Callable[[netaddr.IPAddress], bool],
        label: str,
        first_delay: float,
        max_delay: float,
        thread_name: str,
    ) -> None:
        self._send = send
        self._held = held
        self._label = label
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._thread_name = thread_name
        self._changed = threading.Condition()
        self._pending: dict[netaddr.IPAddress, _Pending[R]] = {}
        self._stopping = False
        self._worker: threading.Thread | None = None

    def __len__(self) -> int:
        with self._changed:
            return len(self._pending)

    def add(self, record: R, *, error: str, attempts: int) -> None:
        """Queue *record*, which failed *attempts* times already (the last time with *error*)."""
        backoff = Backoff(initial=self._first_delay, cap=self._max_delay)
        with self._changed:
            self._pending[record.ip] = _Pending(
                record=record,
                backoff=backoff,
                due=time.monotonic() + backoff.next(),
                attempts=attempts,
                last_error=error,
            )
            if self._worker is None and not self._stopping:
                self._worker = threading.Thread(target=self._work, name=self._thread_name, daemon=True)
                self._worker.start()
            self._changed.notify_all()

    def discard(self, ip: netaddr.IPAddress) -> None:
        """Forget the release of *ip* (confirmed some other way, or *ip* is handed out again)."""
        with self._changed:
            if self._pending.pop(ip, None) is not None:
                self._changed.notify_all()

    def records_of(self, service: str) -> list[R]:
        """The queued releases made for *service*."""
        with self._changed:
            return [p.record for p in self._pending.values() if p.record.service == service]

    def pending(self) -> dict[netaddr.IPAddress, str]:
        """Queued addresses with the last error of each."""
        with self._changed:
            return {ip: p.last_error for ip, p in self._pending.items()}

    def flush(self, timeout: float) -> bool:
        """Wait until the queue is empty (tests, shutdown); True if it is."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float = 5.0) -> list[netaddr.IPAddress]:
        """Stop the thread (waiting up to *timeout* for a try in progress); returns what is left unconfirmed."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join(timeout=timeout)
        with self._changed:
            return list(self._pending)

    # -- the thread ----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._changed:
                if self._stopping:
                    return
                now = time.monotonic()
                due = [p for p in self._pending.values() if p.due <= now]
                if not due:
                    upcoming = min((p.due for p in self._pending.values()), default=now + 60.0)
                    self._changed.wait(upcoming - now)
                    continue
            for entry in due:
                with self._changed:
                    if self._stopping:
                        return
                self._try(entry)

    def _current(self, entry: _Pending[R]) -> bool:
        with self._changed:
            return self._pending.get(entry.record.ip) is entry

    def _forget(self, entry: _Pending[R]) -> None:
        with self._changed:
            if self._pending.get(entry.record.ip) is entry:
                del self._pending[entry.record.ip]
                self._changed.notify_all()

    def _try(self, entry: _Pending[R]) -> None:
        ip = entry.record.ip
        if not self._current(entry):
            return  # discarded, or replaced by a newer release of the same address
        if self._held(ip):
            self._forget(entry)  # held again: releasing now would take it from its new owner
            return
        try:
            self._send(entry.record)
        except ReleaseError as exc:
            with self._changed:
                entry.attempts += 1
                entry.last_error = str(exc)
                entry.due = time.monotonic() + entry.backoff.next()
            if entry.attempts % 10 == 0:
                log.warning("%s: DELETE of %s: %d tries so far: %s", self._label, ip, entry.attempts, exc)
            return
        self._forget(entry)
        log.info("%s: DELETE of %s succeeded after %d tries", self._label, ip, entry.attempts + 1)


@attrs.define(kw_only=True)
class _Watch:
    service: str
    until: float


class LateLeases(Generic[R]):
    """Allocation ids answered "timeout", looked for until bound or until their wait is over.

    One thread reads the service's bound allocations (*find*) every
    *interval* seconds while anything is watched, and passes each watched id
    it finds to *give_back*.

    Args:
        find: bound allocations by id; None when the service cannot list them
            (every watch is then dropped). May raise: tried again next time.
        give_back: release one late lease (called from the thread).
        interval: seconds between two reads.
        label: what log lines start with.
        thread_name: the thread's name, started at the first :meth:`watch`.
    """

    def __init__(
        self,
        *,
        find: Callable[[], Mapping[str, R] | None],
        give_back: Callable[[R], None],
        interval: float,
        label: str,
        thread_name: str,
    ) -> None:
        self._find = find
        self._give_back = give_back
        self._interval = interval
        self._label = label
        self._thread_name = thread_name
        self._changed = threading.Condition()
        self._watched: dict[str, _Watch] = {}
        self._giving = 0  # found, being given back
        self._stopping = False
        self._worker: threading.Thread | None = None

    def watch(self, lease_id: str, service: str, *, wait: float) -> None:
        """Look for *lease_id* (made for *service*) for *wait* seconds."""
        if wait <= 0:
            return
        with self._changed:
            self._watched[lease_id] = _Watch(service=service, until=time.monotonic() + wait)
            if self._worker is None and not self._stopping:
                self._worker = threading.Thread(target=self._work, name=self._thread_name, daemon=True)
                self._worker.start()
            self._changed.notify_all()

    def pending(self) -> list[str]:
        """The ids still looked for."""
        with self._changed:
            return list(self._watched)

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is watched (tests); True if nothing is."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._watched and not self._giving, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread; ids still watched are logged and forgotten (reconciliation finds their leases)."""
        with self._changed:
            self._stopping = True
            left = list(self._watched)
            self._changed.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join(timeout=timeout)
        if left:
            log.info("%s: no longer looking for late leases %s", self._label, ", ".join(left))

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._stopping or bool(self._watched))
                if self._stopping:
                    return
                self._changed.wait(self._interval)  # a poll interval, not a retry: the service binds in its time
                if self._stopping:
                    return
            try:
                bound = self._find()
            except Exception as exc:  # noqa: BLE001 - the service is down: look again next time
                log.debug("%s: looking for late leases: %s", self._label, exc)
                bound = {}
            self._settle(bound)

    def _settle(self, bound: Mapping[str, R] | None) -> None:
        now = time.monotonic()
        found: list[R] = []
        with self._changed:
            for lease_id, watch in list(self._watched.items()):
                if bound is None:
                    del self._watched[lease_id]  # no status to look in
                elif lease_id in bound:
                    found.append(bound[lease_id])
                    del self._watched[lease_id]
                elif now >= watch.until:
                    del self._watched[lease_id]
                    log.info(
                        "%s: allocation %s (%s) was not bound after its timeout", self._label, lease_id, watch.service
                    )
            self._giving = len(found)
            self._changed.notify_all()
        for record in found:
            try:
                self._give_back(record)
            finally:
                with self._changed:
                    self._giving -= 1
                    self._changed.notify_all()
