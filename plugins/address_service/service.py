"""The lease table of the bundled address service, without HTTP.

:class:`AddressService` turns "a lease for this service" into a backend call
and remembers the answer: idempotent obtain per service (and uid),
owner-checked release, the MAC pool, and a :class:`~.store.LeaseStore` that
keeps all of it across restarts. ``wire`` turns its answers and errors into
the protocol's bodies.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence

import attrs
from metallb.plugins.address_service.api import (
    AddressTakenError,
    Backend,
    Lease,
    LeaseListener,
    LeaseRequest,
    NoAddressError,
    derive_mac,
    normalise_mac,
    rfc3339,
)
from metallb.plugins.address_service.store import LeaseStore, State

__all__ = ["AddressService", "NotOwnerError", "UnknownLeaseError"]

log = logging.getLogger(__name__)


class UnknownLeaseError(LookupError):
    """No lease holds the address (HTTP 404)."""


class NotOwnerError(Exception):
    """The lease belongs to another service or lease id than the release named (HTTP 409)."""


@attrs.define
class _Serial:
    """One lock per service name, dropped when nobody waits for it."""

    lock: threading.Lock = attrs.field(factory=threading.Lock)
    users: int = 0


class AddressService:
    """The allocation table over a backend: idempotent obtain, owner-checked release, MACs, state.

    Args:
        backend: where addresses come from.
        store: where leases and MACs survive a restart (read at :meth:`start`,
            written after every change); None keeps them in memory only.
        macs: MACs put in the pool at start (kept with those in the store).
        derive_macs: when the pool is empty, derive a locally administered MAC
            from the service name (and uid).
        request_timeout: how long an obtain waits for the backend (DHCPManager: 10 s).
        require_owner: a release must name the lease's service or id
            (``--require-owner``); by default, as in DHCPManager, the address
            alone releases it.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        store: LeaseStore | None = None,
        macs: Sequence[str] = (),
        derive_macs: bool = False,
        request_timeout: float = 10.0,
        require_owner: bool = False,
    ) -> None:
        self.backend = backend
        self.require_owner = require_owner
        self.store = store
        self.derive_macs = derive_macs
        self.request_timeout = request_timeout
        self.started = False
        # Set while a replica waits to lead (--kube-leases): until start() its empty table is no answer.
        self.deferred_start = False
        self._lock = threading.RLock()
        self._serials: dict[str, _Serial] = {}
        self._leases: dict[str, Lease] = {}
        self._by_ip: dict[str, str] = {}
        self._by_service: dict[str, list[str]] = {}
        self._macs: set[str] = {normalise_mac(m) for m in macs}
        self._retired: set[str] = set()
        self._reserved: set[str] = set()  # pool MACs taken by an obtain still in progress
        self._listeners: list[LeaseListener] = []

    def __repr__(self) -> str:
        return f"<AddressService(backend={self.backend.kind!r}, leases={len(self._leases)})>"

    @property
    def serving(self) -> bool:
        """Whether ``/v1/*`` may be answered: started, or never meant to wait for a start."""
        return self.started or not self.deferred_start

    @property
    def blocking(self) -> bool:
        """Whether a call may wait: a backend that does I/O (``blocking`` absent or True), or a state file.

        The HTTP server answers a non-blocking service on its event loop and
        hands requests to worker threads otherwise.
        """
        return self.store is not None or bool(getattr(self.backend, "blocking", True))

    def add_listener(self, listener: LeaseListener) -> None:
        """Call *listener* after a lease renewed or was lost (metrics); it must not raise."""
        self._listeners.append(listener)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Load the store, start the backend, and resume every live lease."""
        if self.store is not None:
            state = self.store.load()
            self._macs |= state.macs
            self._retired = set(state.retired)
            for lease in state.leases:
                self._index(lease)
            log.info("%r: %d leases to resume", self.store, len(self._leases))
        self._macs -= {lease.mac for lease in self._leases.values()}
        self.backend.start(self._lease_changed)
        for lease in list(self._leases.values()):
            if not lease.lost:
                self.backend.resume(lease)
        self._save()
        self.started = True

    def close(self) -> None:
        """Stop the backend and save the state. Leases stay (they resume at the next start)."""
        self.backend.close()
        with self._lock:
            self._save()

    # -- bookkeeping (lock held) -----------------------------------------------------------

    def _index(self, lease: Lease) -> None:
        old = self._leases.get(lease.id)
        if old is not None and self._by_ip.get(old.ip) == old.id:
            del self._by_ip[old.ip]
        self._leases[lease.id] = lease
        self._by_ip[lease.ip] = lease.id
        ids = self._by_service.setdefault(lease.service, [])
        if lease.id not in ids:
            ids.append(lease.id)

    def _unindex(self, lease: Lease) -> None:
        self._leases.pop(lease.id, None)
        if self._by_ip.get(lease.ip) == lease.id:
            del self._by_ip[lease.ip]
        ids = self._by_service.get(lease.service, [])
        if lease.id in ids:
            ids.remove(lease.id)
        if not ids:
            self._by_service.pop(lease.service, None)
        if lease.mac_from_pool:
            if lease.mac in self._retired:
                self._retired.discard(lease.mac)
            else:
                self._macs.add(lease.mac)

    def _save(self) -> None:
        if self.store is None:
            return
        self.store.save(
            State(
                leases=tuple(self._leases.values()),
                macs=frozenset(self._macs | self._reserved),
                retired=frozenset(self._retired),
            )
        )

    def _lease_changed(self, lease: Lease) -> None:
        """Backend callback: a renewal or a loss."""
        with self._lock:
            old = self._leases.get(lease.id)
            if old is None:
                return  # released meanwhile
            lease = attrs.evolve(lease, mac_from_pool=old.mac_from_pool)  # the backend does not track it
            self._index(lease)
            self._save()
        for listener in self._listeners:
            listener(lease)
        if lease.lost:
            log.warning(
                "lease %s (%s for %s) is lost; the client must allocate again", lease.id, lease.ip, lease.service
            )
        else:
            log.info("lease %s (%s for %s) renewed until %s", lease.id, lease.ip, lease.service, rfc3339(lease.expires))

    @contextlib.contextmanager
    def _serial(self, service: str) -> Iterator[None]:
        """One obtain or release per service at a time; other services never wait."""
        with self._lock:
            entry = self._serials.setdefault(service, _Serial())
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._lock:
                entry.users -= 1
                if not entry.users:
                    del self._serials[service]

    def _take_mac(self, service: str, uid: str) -> tuple[str, bool]:
        """A MAC for a new lease of *service*, and whether it came from the pool."""
        if self.backend.needs_mac and self._macs:
            mac = min(self._macs)  # DHCPManager's order: lexicographically first
            self._macs.discard(mac)
            return mac, True
        if self.derive_macs:
            used = {lease.mac for lease in self._leases.values()}
            salt = 0
            while (mac := derive_mac(service, uid, salt)) in used or mac in self._macs:
                salt += 1
            return mac, False
        if self.backend.needs_mac:
            raise NoAddressError(
                "no MAC available for a new lease: register some with POST /v1/mac, "
                "or start the server with --derive-macs"
            )
        return "", False

    def _held(self, service: str, uid: str, wanted: str, family: int) -> tuple[Lease | None, list[Lease]]:
        """The live lease of *family* *service* already holds for this request, and its lost leases."""
        stale: list[Lease] = []
        for lease_id in self._by_service.get(service, ()):
            lease = self._leases[lease_id]
            if (6 if ":" in lease.ip else 4) != family:
                continue  # a dual-stack Service holds one lease per family
            if uid and lease.uid and lease.uid != uid:
                continue  # an older Service of the same name; reconciliation frees it
            if lease.lost:
                stale.append(lease)
                continue
            if wanted and wanted != lease.ip:
                continue  # moving to another address: the old one is released after the move
            return lease, stale
        return None, stale

    def _backend_release(self, lease: Lease) -> None:
        try:
            self.backend.release(lease)
        except Exception:
            log.exception("backend failed to release %s", lease.ip)

    # -- the API ------------------------------------------------------------------------

    def count(self, *, lost: bool) -> int:
        """Leases held, bound or lost."""
        with self._lock:
            return sum(1 for lease in self._leases.values() if lease.lost == lost)

    def available_macs(self) -> list[str]:
        """Free MACs of the pool, sorted."""
        with self._lock:
            return sorted(self._macs)

    def leases(self) -> list[Lease]:
        """Every lease, oldest first."""
        with self._lock:
            return list(self._leases.values())

    def snapshot(self) -> tuple[list[Lease], list[str]]:
        """Every lease and the free MACs, read at one moment (``GET /v1/status``)."""
        with self._lock:
            return list(self._leases.values()), sorted(self._macs)

    def obtain(self, service: str, *, uid: str = "", wanted: str = "", family: int = 4) -> tuple[Lease, bool]:
        """The lease of *family* of *service* (and *uid*), or a new one; returns ``(lease, created)``.

        Raises :class:`AddressTakenError` when *wanted* is leased already, and
        the backend's :class:`~.api.BackendError` when it cannot lease.
        """
        with self._serial(service):
            with self._lock:
                held, stale = self._held(service, uid, wanted, family)
                if held is not None:
                    return held, False
                for lease in stale:
                    self._unindex(lease)
                if wanted and wanted in self._by_ip:
                    raise AddressTakenError(f"{wanted} is already leased")
                mac, from_pool = self._take_mac(service, uid)
                if from_pool:
                    self._reserved.add(mac)  # still saved as free: a crash now must not lose it
                self._save()
            for lease in stale:
                self._backend_release(lease)
            request = LeaseRequest(
                id=str(uuid.uuid4()), service=service, uid=uid, mac=mac, wanted=wanted, family=family
            )
            lease = self._lease_from_backend(request, from_pool=from_pool)
            log.info("leased %s to %s (id %s, mac %s)", lease.ip, service, lease.id, lease.mac or "-")
            return lease, True

    def _lease_from_backend(self, request: LeaseRequest, *, from_pool: bool) -> Lease:
        """Ask the backend and record its lease; the MAC goes back to the pool on failure."""
        mac = request.mac
        try:
            lease = self.backend.obtain(request, timeout=self.request_timeout)
        except BaseException:
            with self._lock:
                self._reserved.discard(mac)
                if from_pool:
                    self._macs.add(mac)
            raise
        lease = attrs.evolve(lease, mac_from_pool=from_pool)
        with self._lock:
            self._reserved.discard(mac)
            clash_id = self._by_ip.get(lease.ip)
            if clash_id is None:
                self._index(lease)
                try:
                    self._save()
                except Exception as exc:  # noqa: BLE001 - the store is down: a lease nobody records must not stay
                    self._unindex(lease)
                    problem = f"cannot record the lease of {lease.ip}: {exc}"
                else:
                    return lease
            else:
                problem = f"the backend handed out {lease.ip}, which {self._leases[clash_id].service} already holds"
        self._backend_release(lease)
        if from_pool:
            with self._lock:
                self._macs.add(mac)
        raise NoAddressError(problem)

    def release(self, ip: str, *, service: str = "", lease_id: str = "") -> Lease:
        """Release the lease holding *ip*, if it is *service*'s and *lease_id*'s (when given).

        Raises :class:`UnknownLeaseError` or :class:`NotOwnerError` (also
        when :attr:`require_owner` is set and neither *service* nor
        *lease_id* is given, whether or not *ip* is leased).
        """
        if self.require_owner and not service and not lease_id:
            raise NotOwnerError(
                f'{ip}: this server releases an address only to its owner: name its "service" or lease "id"'
            )
        with self._lock:
            found = self._by_ip.get(ip)
            lease = self._leases.get(found) if found else None
        if lease is None:
            raise UnknownLeaseError(f"{ip} is not leased (already released?)")
        with self._serial(lease.service):
            with self._lock:
                current = self._leases.get(lease.id)
                if current is None or self._by_ip.get(ip) != lease.id:
                    raise UnknownLeaseError(f"{ip} is not leased (already released?)")
                if service and current.service != service:
                    raise NotOwnerError(f"{ip} is held by another service, not {service}")
                if lease_id and current.id != lease_id:
                    raise NotOwnerError(f"{ip} is held under another lease id, not {lease_id}")
                self._unindex(current)
                self._save()
            self._backend_release(current)
        log.info("released %s of %s (id %s)", ip, current.service, current.id)
        return current

    def add_macs(self, entries: Sequence[object]) -> tuple[list[str], dict[str, str]]:
        """Add MACs to the pool; returns (added, rejected entry -> reason)."""
        added: list[str] = []
        rejected: dict[str, str] = {}
        with self._lock:
            in_use = {lease.mac for lease in self._leases.values()}
            for entry in entries:
                text = str(entry)
                try:
                    mac = normalise_mac(text)
                except ValueError as exc:
                    rejected[text] = str(exc)
                    continue
                if mac in in_use:
                    rejected[text] = "in use by a lease"
                    continue
                self._macs.add(mac)
                self._retired.discard(mac)
                added.append(mac)
            self._save()
        return added, rejected

    def remove_macs(self, entries: Sequence[object]) -> dict[str, str]:
        """Remove MACs from the pool; in-use ones retire when their lease ends. Returns unprocessed."""
        unprocessed: dict[str, str] = {}
        with self._lock:
            in_use = {lease.mac for lease in self._leases.values() if lease.mac_from_pool}
            for entry in entries:
                text = str(entry)
                try:
                    mac = normalise_mac(text)
                except ValueError as exc:
                    unprocessed[text] = str(exc)
                    continue
                if mac in in_use:
                    self._retired.add(mac)
                    unprocessed[text] = "in use: removed from the pool when its lease ends"
                self._macs.discard(mac)
            self._save()
        return unprocessed
