"""What the DHCP backends share: keeping leases renewed. The packets stay with each family.

:class:`LeaseKeeper` holds the leases, the plan of their next renewals, the
receiver and scheduler threads and the pool of renewal threads, so one silent
server delays no other lease. A backend (``dhcp``, ``dhcpv6``) opens its socket,
parses what arrives (:meth:`LeaseKeeper._handle`) and asks its server for one
renewal (:meth:`LeaseKeeper._ask`); the keeper decides what the answer means
for the lease: renewed, lost, or asked again after half the time left.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import attrs
from metallb.plugins.address_service.api import Lease, LeaseListener

__all__ = ["RENEW_WORKERS", "LeaseKeeper", "in_netns"]

T = TypeVar("T")

#: Renewals in flight at once, at most.
RENEW_WORKERS = 32
_CLONE_NEWNET = 0x40000000
#: A renewal that raised is tried again this many seconds later.
RETRY_FAILED_RENEWAL = 5.0


def in_netns(netns: str, make: Callable[[], T], *, name: str) -> T:
    """*make()* run inside the named network namespace *netns* ("" = ours), on a helper thread (setns is per thread).

    Whatever *make* raises (or the setns) is raised here.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            if netns:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
                try:
                    if libc.setns(fd, _CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns into network namespace {netns!r}: {os.strerror(err)}")
                finally:
                    os.close(fd)
            result["value"] = make()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=name)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]  # type: ignore[no-any-return]


class LeaseKeeper:
    """Leases, their renewal plan, a receiver, a scheduler and a pool of renewal threads.

    Subclasses set :attr:`kind`, :attr:`protocol`, :attr:`_log` and
    :attr:`_what`, open :attr:`_sock` in :meth:`start` and then call
    :meth:`_start_threads`, and implement :meth:`_handle` and :meth:`_ask`.

    Args:
        interface: where the backend speaks DHCP.
        netns: the named network namespace of its socket ("" = the process's own).
        cidrs: what the servers hand out, reported by ``/v1/config``.
        renew_after: renew this many seconds after each grant instead of at T1 (tests).
    """

    kind = ""
    #: The protocol's name in log lines ("DHCP", "DHCPv6").
    protocol = ""
    #: A lease's name in log lines of renewals ("lease", "DHCPv6 lease").
    _what = "lease"
    #: The backend module's logger.
    _log = logging.getLogger(__name__)
    #: The receiver reads at most this many bytes a datagram or frame.
    _bufsize = 65535
    #: The scheduler thread's name.
    _scheduler_name = ""

    def __init__(
        self,
        *,
        interface: str,
        netns: str = "",
        cidrs: Sequence[str] = (),
        renew_after: float | None = None,
    ) -> None:
        self.interface = interface
        self.netns = netns
        self._cidrs = tuple(cidrs)
        self.renew_after = renew_after
        self._sock: socket.socket | None = None
        self._listener: LeaseListener = lambda lease: None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._leases: dict[str, Lease] = {}
        self._due: dict[str, float] = {}  # lease id -> when (time.time()) to renew it next
        self._renewing: set[str] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool = ThreadPoolExecutor(max_workers=RENEW_WORKERS, thread_name_prefix=f"{self.kind}-renew")

    def __repr__(self) -> str:
        where = f"{self.netns}:{self.interface}" if self.netns else self.interface
        return f"<{type(self).__name__}({where!r}, leases={len(self._leases)})>"

    # -- lifecycle ------------------------------------------------------------------------

    def cidrs(self) -> Sequence[str]:
        """The scope's networks as configured (DHCP cannot tell us)."""
        return self._cidrs

    def _start_threads(self) -> None:
        """Start the receiver and the renewal scheduler (the socket is open)."""
        for name, target in ((f"{self.kind}-receive", self._receive), (self._scheduler_name, self._schedule_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Stop the threads and close the socket; leases stay with the server."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._sock is not None:
            self._sock.close()

    # -- packets ----------------------------------------------------------------------------

    def _receive(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._sock], [], [], 0.25)
                if not ready:
                    continue
                data, address = self._sock.recvfrom(self._bufsize)
            except OSError:
                if self._stop.is_set():
                    return
                self._log.exception("receiving %s replies on %s failed; trying again", self.protocol, self.interface)
                self._stop.wait(1.0)
                continue
            self._handle(data, address)

    def _handle(self, data: bytes, address: Any) -> None:
        """One datagram or frame from *address* (as ``recvfrom`` gives it): hand a reply to its waiter."""
        raise NotImplementedError

    # -- the plan -----------------------------------------------------------------------------

    def _deadlines(self, now: float, valid: float, t1: float, t2: float) -> tuple[float, float, float]:
        """(renew, rebind, expires) of a lease granted at *now* for *valid* seconds with T1 *t1* and T2 *t2*."""
        renew = now + (self.renew_after if self.renew_after is not None else t1)
        return renew, now + t2, now + valid

    def _keep(self, lease: Lease) -> None:
        """Hold a newly granted *lease* and plan its renewal."""
        with self._lock:
            self._leases[lease.id] = lease
            self._plan(lease)

    def _forget(self, lease: Lease) -> Lease:
        """Drop *lease* and its plan; the lease as it was held (or *lease*)."""
        with self._lock:
            current = self._leases.pop(lease.id, lease)
            self._due.pop(lease.id, None)
        return current

    def _plan(self, lease: Lease, at: float | None = None) -> None:
        """Schedule the next renewal of *lease* (lock held)."""
        when = at if at is not None else lease.renew
        if when is None:
            self._due.pop(lease.id, None)
            return
        self._due[lease.id] = when
        self._wake.notify_all()

    def resume(self, lease: Lease) -> None:
        """A lease from the store: renew it at once, whatever its T1."""
        with self._lock:
            self._leases[lease.id] = lease
            self._plan(lease, at=time.time())

    def _schedule_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                now = time.time()
                # A lease being renewed keeps its plan until that renewal ends.
                due = [lid for lid, when in self._due.items() if when <= now and lid not in self._renewing]
                if not due:
                    soonest = min(self._due.values(), default=now + 1.0)
                    self._wake.wait(timeout=min(1.0, max(0.01, soonest - now)))
                    continue
                for lid in due:
                    del self._due[lid]
                self._renewing.update(due)
            for lid in due:
                if self._stop.is_set():
                    return
                try:
                    self._pool.submit(self._renew_one, lid)
                except RuntimeError:  # shut down meanwhile
                    return

    # -- renewals -----------------------------------------------------------------------------

    def _renew_one(self, lease_id: str) -> None:
        """One renewal, on a pool thread; a failure is tried again in 5 s."""
        try:
            self._renew(lease_id)
        except Exception:  # noqa: BLE001 - logged with its traceback, and tried again
            self._log.exception("renewing %s %s failed", self._what, lease_id)
            with self._lock:
                lease = self._leases.get(lease_id)
                if lease is not None:
                    self._plan(lease, at=time.time() + RETRY_FAILED_RENEWAL)
        finally:
            with self._lock:
                self._renewing.discard(lease_id)

    def _ask(self, lease: Lease, *, rebinding: bool) -> Lease | str | None:
        """Ask for *lease* again (from any server when *rebinding*).

        Returns the lease as granted anew, why the server refused it, or None
        when no answer came.
        """
        raise NotImplementedError

    def _renew(self, lease_id: str) -> None:
        with self._lock:
            lease = self._leases.get(lease_id)
        if lease is None or lease.lost:
            return
        now = time.time()
        expired = lease.expires is not None and now >= lease.expires
        rebinding = expired or (lease.rebind is not None and now >= lease.rebind)
        answer = self._ask(lease, rebinding=rebinding)
        with self._lock:
            if self._leases.get(lease_id) is not lease:
                return  # released (or replaced) while we asked
            if isinstance(answer, Lease):
                updated = answer
                self._leases[lease_id] = updated
                self._plan(updated)
                result = "rebound (any server)" if rebinding else "renewed"
            elif answer is not None or expired:
                updated = attrs.evolve(lease, lost=True)
                self._leases[lease_id] = updated
                self._due.pop(lease_id, None)
                result = f"lost ({answer if answer is not None else 'expired'})"
            else:
                # Silence: try again after half the time left to the next deadline, RFC 2131 style.
                target = lease.rebind if not rebinding and lease.rebind is not None else lease.expires or now + 60
                self._plan(lease, at=time.time() + max(1.0, min(60.0, (target - time.time()) / 2)))
                self._log.warning("no answer renewing %s for %s; trying again", lease.ip, lease.service)
                return
        self._log.info("%s %s for %s %s", self._what, lease.ip, lease.service, result)
        self._listener(updated)
