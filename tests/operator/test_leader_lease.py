"""The one leader Lease (metallb.allocator.kube) that the controller and the address service hold, against the API emulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from metallb.allocator.kube import LeaderLease, now_rfc3339
from metallb.allocator.testing import wait_for

NS = "metallb-system"


@pytest.fixture(name="api")
def _api(kube: Any) -> Iterator[client.ApiClient]:
    api = kube.api_client()
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    yield api
    api.close()


def lease(api: client.ApiClient, identity: str, **options: float) -> LeaderLease:
    """A LeaderLease named ``lease`` in NS for *identity*."""
    return LeaderLease(api, namespace=NS, name="lease", identity=identity, **options)


def spec(kube: Any) -> dict[str, Any]:
    """The stored Lease's spec."""
    return kube.get("leases", NS, "lease")["spec"]


class TestOneImplementation:
    def test_controller_and_address_service_hold_the_same_lease(self) -> None:
        """The controller's LeaderLease and the address service's LeaderElection are this one class."""
        from metallb.operator import controller
        from metallb.plugins.address_service import kube

        assert controller.LeaderLease is LeaderLease
        assert kube.LeaderElection is LeaderLease


class TestTryAcquire:
    def test_second_holder_waits_until_expiry(self, kube: Any, api: client.ApiClient) -> None:
        """A second holder is refused while the first renews, and takes over after it stops."""
        first = lease(api, "a", duration=1.0, renew=0.2)
        second = lease(api, "b", duration=1.0, renew=0.2)
        assert first.try_acquire()
        assert not second.try_acquire()
        time.sleep(0.5)
        assert first.try_acquire()
        assert not second.try_acquire()
        deadline = time.monotonic() + 5
        while not second.try_acquire():
            assert time.monotonic() < deadline, "lease never expired"
            time.sleep(0.2)
        assert spec(kube)["holderIdentity"] == "b"

    def test_expiry_is_judged_on_the_local_clock(self, kube: Any, api: client.ApiClient) -> None:
        """A holder's renewTime far in the past is no expiry: a contender still waits a whole duration from first sight."""
        kube.put_object({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lease", "namespace": NS},
            "spec": {"holderIdentity": "old", "leaseDurationSeconds": 1, "renewTime": "2001-01-01T00:00:00.000000Z",
                     "acquireTime": "2001-01-01T00:00:00.000000Z"},
        })  # fmt: skip
        contender = lease(api, "b", duration=1.0, renew=0.2)
        first_sight = time.monotonic()
        assert not contender.try_acquire()
        wait_for(contender.try_acquire, 5, "the takeover", interval=0.1)
        assert time.monotonic() - first_sight >= 1.0
        assert spec(kube)["holderIdentity"] == "b"

    def test_renewal_keeps_acquire_time(self, kube: Any, api: client.ApiClient) -> None:
        """A renewal moves renewTime and keeps the acquireTime of the first acquisition."""
        holder = lease(api, "a")
        assert holder.try_acquire()
        acquired = spec(kube)["acquireTime"]
        assert spec(kube)["renewTime"] == acquired
        wait_for(lambda: now_rfc3339() > acquired, 2, "the clock to move")
        assert holder.try_acquire()
        assert spec(kube)["acquireTime"] == acquired
        assert spec(kube)["renewTime"] > acquired

    def test_takeover_sets_a_new_acquire_time(self, kube: Any, api: client.ApiClient) -> None:
        """A holder that takes the Lease over from another writes its own acquireTime."""
        first, second = lease(api, "a", duration=0.5, renew=0.1), lease(api, "b", duration=0.5, renew=0.1)
        assert first.try_acquire()
        acquired = spec(kube)["acquireTime"]
        wait_for(second.try_acquire, 5, "the takeover", interval=0.1)
        assert spec(kube)["holderIdentity"] == "b" and spec(kube)["acquireTime"] > acquired

    @pytest.mark.parametrize(("duration", "seconds"), [(15.0, 15), (1.5, 2), (2.4, 2), (0.4, 1)])
    def test_lease_duration_seconds_is_rounded(self, kube: Any, api: client.ApiClient, duration, seconds) -> None:
        """leaseDurationSeconds is the duration rounded to whole seconds, at least 1."""
        assert lease(api, "a", duration=duration).try_acquire()
        assert spec(kube)["leaseDurationSeconds"] == seconds

    def test_conflicting_write_is_a_refusal(self, kube: Any, api: client.ApiClient) -> None:
        """A renewal answered 409 Conflict (someone wrote in between) is a failed attempt, not an error."""
        holder = lease(api, "a")
        assert holder.try_acquire()
        kube.faults.conflict_next_writes(1)
        assert not holder.try_acquire()
        assert holder.try_acquire()


class TestRun:
    def test_holds_then_gives_up_when_another_holds(self, kube: Any, api: client.ApiClient) -> None:
        """run() sets held, and sets lost and returns once another holder keeps the Lease for duration - renew."""
        holder = lease(api, "a", duration=1.0, renew=0.2)
        stop = threading.Event()
        thread = threading.Thread(target=holder.run, args=(stop,), daemon=True)

        def usurp() -> None:
            # "b" writes the Lease and keeps renewing it, so it never looks expired to "a".
            taken = {**kube.get("leases", NS, "lease"), "spec": {**spec(kube), "holderIdentity": "b"}}
            while not stop.wait(0.05):
                kube.put_object({**taken, "spec": {**taken["spec"], "renewTime": now_rfc3339()}})

        usurper = threading.Thread(target=usurp, daemon=True)
        thread.start()
        try:
            assert holder.held.wait(5)
            usurper.start()
            thread.join(10)
            assert holder.lost.is_set() and not thread.is_alive()
        finally:
            stop.set()
            thread.join(5)
            if usurper.is_alive():
                usurper.join(5)

    def test_standby_polls_more_often_than_the_holder_renews(self, api: client.ApiClient) -> None:
        """A standby tries every duration/8 by default, or every *poll* seconds, never less often than renewals."""
        assert lease(api, "a", duration=16.0, renew=5.0).poll == 2.0
        assert lease(api, "a", duration=15.0, renew=5.0, poll=2.0).poll == 2.0
        assert lease(api, "a", duration=3.0, renew=1.0, poll=2.0).poll == 1.0


class TestRelease:
    def test_release_deletes_only_our_own_lease(self, kube: Any, api: client.ApiClient) -> None:
        """release() deletes the Lease this process holds, and leaves another holder's alone."""
        first, second = lease(api, "a"), lease(api, "b")
        assert first.try_acquire()
        second.release()
        assert spec(kube)["holderIdentity"] == "a"
        first.release()
        assert kube.get("leases", NS, "lease") is None
        assert second.try_acquire()
