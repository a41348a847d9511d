"""The lease table without HTTP (``service``) and the state file it survives restarts in (``store``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import attrs
import pytest
from metallb.plugins.address_service.api import Lease, LeaseListener, LeaseRequest
from metallb.plugins.address_service.memory import MemoryBackend
from metallb.plugins.address_service.service import AddressService, NotOwnerError, UnknownLeaseError
from metallb.plugins.address_service.store import State, StateFile


class Reporting(MemoryBackend):
    """The memory backend that keeps the listener (to report renewals and losses) and counts resumed leases."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.report: LeaseListener = lambda lease: None
        self.resumed: list[str] = []

    def start(self, listener: LeaseListener) -> None:
        self.report = listener

    def resume(self, lease: Lease) -> None:
        super().resume(lease)
        self.resumed.append(lease.ip)


class Blocking(MemoryBackend):
    """The memory backend whose obtain waits for ``go`` (an allocation in progress), needing a MAC per lease."""

    needs_mac = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entered = threading.Event()
        self.go = threading.Event()

    def obtain(self, request: LeaseRequest, *, timeout: float) -> Lease:
        self.entered.set()
        self.go.wait(10)
        return super().obtain(request, timeout=timeout)


def started(backend: MemoryBackend, **options) -> AddressService:
    service = AddressService(backend=backend, **options)
    service.start()
    return service


class TestStateFile:
    """The JSON state file: its format, and atomic replacement."""

    def test_round_trip_and_format(self, tmp_path: Path) -> None:
        """What is saved loads back equal; the file keeps version 1's keys with sorted MAC lists."""
        lease = Lease(
            id="1", service="ns/a", ip="192.0.2.1", mac="02:00:00:00:00:01", mac_from_pool=True, routers=["x"]
        )
        state = State(leases=(lease,), macs=frozenset({"02:00:00:00:00:03", "02:00:00:00:00:02"}), retired=frozenset())
        store = StateFile(str(tmp_path / "state.json"))
        store.save(state)
        assert store.load() == state
        data = json.loads((tmp_path / "state.json").read_text())
        assert list(data) == ["version", "leases", "macs", "retired"] and data["version"] == 1
        assert data["macs"] == ["02:00:00:00:00:02", "02:00:00:00:00:03"] and data["leases"][0]["routers"] == ["x"]

    def test_absent_file_is_empty(self, tmp_path: Path) -> None:
        """A state file that does not exist yet is an empty state."""
        assert StateFile(str(tmp_path / "none.json")).load() == State()

    def test_replaced_atomically(self, tmp_path: Path) -> None:
        """Each save renames a new file over the old one (a new inode) and leaves no temporary file behind."""
        path = tmp_path / "state.json"
        store = StateFile(str(path))
        store.save(State())
        first = path.stat().st_ino
        store.save(State(macs=frozenset({"02:00:00:00:00:01"})))
        assert path.stat().st_ino != first
        assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


class TestAddressService:
    """Obtain, release, restart, lease changes and the MAC pool."""

    def test_restart_resumes_from_the_store(self, tmp_path: Path) -> None:
        """A new service on the same state file has the old leases, resumes them, and leases around them."""
        store = StateFile(str(tmp_path / "state.json"))
        first = started(MemoryBackend(cidrs=["192.0.2.0/30"]), store=store)
        lease, created = first.obtain("ns/a")
        first.close()
        backend = Reporting(cidrs=["192.0.2.0/30"])
        second = started(backend, store=store)
        assert second.leases() == [lease] and backend.resumed == [lease.ip] and created
        again, created = second.obtain("ns/a")
        other, _ = second.obtain("ns/b")
        assert again == lease and not created and other.ip != lease.ip

    def test_release_checks_the_owner(self) -> None:
        """Releasing names the holder's service and lease id or fails without releasing; an unknown address fails."""
        service = started(MemoryBackend(cidrs=["192.0.2.0/30"]))
        lease, _ = service.obtain("ns/a")
        with pytest.raises(NotOwnerError, match=f"{lease.ip} is held by another service, not ns/b"):
            service.release(lease.ip, service="ns/b")
        with pytest.raises(NotOwnerError, match="held under another lease id, not old"):
            service.release(lease.ip, lease_id="old")
        assert service.release(lease.ip, service="ns/a", lease_id=lease.id) == lease
        with pytest.raises(UnknownLeaseError, match=r"is not leased \(already released\?\)"):
            service.release(lease.ip)

    def test_lost_lease_is_replaced(self) -> None:
        """A lease the backend reports lost stays listed as lost (listeners hear it); the next obtain gets a new one."""
        backend = Reporting(cidrs=["192.0.2.0/29"])
        service = started(backend)
        heard: list[Lease] = []
        service.add_listener(heard.append)
        lease, _ = service.obtain("ns/a")
        backend.report(attrs.evolve(lease, lost=True))
        assert heard == [attrs.evolve(lease, lost=True)] and service.count(lost=True) == 1
        new, created = service.obtain("ns/a")
        assert created and new.id != lease.id and service.leases() == [new]

    def test_pool_mac_is_saved_while_in_flight(self, tmp_path: Path) -> None:
        """While an obtain waits for the backend its pool MAC stays in the saved pool; it is bound afterwards."""
        backend = Blocking(cidrs=["192.0.2.0/30"])
        path = tmp_path / "state.json"
        service = started(backend, store=StateFile(str(path)), macs=["02:00:00:00:00:01"])
        worker = threading.Thread(target=service.obtain, args=("ns/a",))
        worker.start()
        assert backend.entered.wait(5)
        assert json.loads(path.read_text())["macs"] == ["02:00:00:00:00:01"]  # a crash now loses no MAC
        assert service.available_macs() == []
        backend.go.set()
        worker.join(5)
        data = json.loads(path.read_text())
        assert data["macs"] == [] and data["leases"][0]["mac"] == "02:00:00:00:00:01"
        service.release(data["leases"][0]["ip"])
        assert service.available_macs() == ["02:00:00:00:00:01"]
