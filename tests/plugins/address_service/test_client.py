"""The pool plugin (client) against the bundled server and the DHCPManager stand-in, over real HTTP."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import attrs
import httpx
import netaddr
import pytest
from metallb.allocator import AllocationError, Port, SourceUnavailableError


def section(*entries: str) -> str:
    return "address-services:\n" + "".join(entries)


class TestAgainstBundledServer:
    """AddressServiceSource with the bundled server (memory backend)."""

    def test_allocate_and_release(self, bundled, make_allocator, helpers) -> None:
        """allocate POSTs for the service and unassign DELETEs; the server's leases follow."""
        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        a = alloc.allocate("ns/a", family=4, ports=[Port("TCP", 80)])
        b = alloc.allocate("ns/b", family=4, ports=[Port("TCP", 80)])
        assert a != b and a in netaddr.IPNetwork("192.0.2.0/24")
        assert bundled.held() == {str(a): "ns/a", str(b): "ns/b"}
        assert alloc.unassign("ns/a")
        assert bundled.held() == {str(b): "ns/b"}

    def test_describe_carries_the_lease_id(self, bundled, make_allocator, helpers) -> None:
        """The lease id (and the server's MAC when it has one) is kept for status and annotations."""
        bundled.service.derive_macs = True
        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        ip = alloc.allocate("ns/a", family=4)
        (lease,) = bundled.service.leases()
        assert alloc.describe("ns/a") == {"address-service": "as", "lease-id": lease.id, "lease-mac": lease.mac}
        assert lease.ip == str(ip)

    def test_capacity_is_unknown(self, bundled, make_allocator, helpers) -> None:
        """stats reports total None and counts addresses in use."""
        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        alloc.allocate("ns/a", family=4)
        stats = alloc.stats("as")
        assert stats.total is None and stats.in_use == 1

    def test_trailing_slash_keeps_post_a_post(self, bundled, make_allocator, helpers) -> None:
        """A configured URL ending in / still reaches POST /v1/ip (the fork's redirect-to-GET bug)."""
        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url + "//")))
        ip = alloc.allocate("ns/a", family=4)
        assert bundled.held() == {str(ip): "ns/a"}

    def test_shared_address_is_released_by_its_last_user(self, bundled, make_allocator, helpers) -> None:
        """Two services sharing an address: only the last unassign sends DELETE."""
        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        a = alloc.allocate("ns/a", family=4, ports=[Port("TCP", 80)], sharing_key="k")
        b = alloc.allocate("ns/b", family=4, ports=[Port("TCP", 443)], sharing_key="k")
        assert a == b
        alloc.unassign("ns/a")
        assert bundled.held() == {str(a): "ns/a"}
        alloc.unassign("ns/b")
        assert bundled.held() == {}

    def test_requested_address(self, bundled, make_allocator, helpers) -> None:
        """spec.loadBalancerIP inside the pool is POSTed as "ip" and leased exactly."""
        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        ip = alloc.allocate("ns/a", ip="192.0.2.77")
        assert str(ip) == "192.0.2.77" and bundled.held() == {"192.0.2.77": "ns/a"}

    def test_moving_to_a_requested_address(self, bundled, make_allocator, helpers) -> None:
        """A service asking for another address of the same pool gets it, and its old lease is released."""
        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        old = alloc.allocate("ns/a", family=4)
        new = alloc.allocate("ns/a", ip="192.0.2.77")
        assert str(new) == "192.0.2.77" and new != old
        assert bundled.held() == {"192.0.2.77": "ns/a"}

    def test_requested_address_taken_elsewhere(self, bundled, make_allocator, helpers) -> None:
        """A requested address the server has leased to someone else fails with the server's 409."""
        httpx.post(f"{bundled.url}/v1/ip", json={"service": "other/x", "ip": "192.0.2.77"})
        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        with pytest.raises(AllocationError, match=r"HTTP 409.*192\.0\.2\.77 is already leased"):
            alloc.allocate("ns/a", ip="192.0.2.77")
        assert bundled.held() == {"192.0.2.77": "other/x"}

    def test_auth_token(self, make_bundled, make_allocator, helpers) -> None:
        """The token is sent as X-Auth-Token; without it the server's 401 is reported."""
        server = make_bundled(auth_token="s3cret")
        good = make_allocator(section(helpers.pool_yaml("as", server.url, extra="auth-token: s3cret")))
        bad = make_allocator(section(helpers.pool_yaml("as", server.url)))
        assert good.allocate("ns/a", family=4)
        with pytest.raises(AllocationError, match=r"HTTP 401.*unauthorized"):
            bad.allocate("ns/b", family=4)
        assert list(server.held().values()) == ["ns/a"]

    def test_https_with_ca_file(self, make_bundled, make_allocator, helpers, tmp_path: Path) -> None:
        """An https URL is verified against ca-file; the lease is made over TLS."""
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        server = make_bundled(tls=(str(cert), str(key)))
        assert server.url.startswith("https://")
        alloc = make_allocator(section(helpers.pool_yaml("as", server.url, extra=f"ca-file: {cert}")))
        ip = alloc.allocate("ns/a", family=4)
        assert server.held() == {str(ip): "ns/a"}
        untrusted = make_allocator(section(helpers.pool_yaml("as", server.url)))
        with pytest.raises(AllocationError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.allocate("ns/b", family=4)

    def test_reconcile_releases_orphans_and_reports_losses(self, bundled, make_allocator, helpers) -> None:
        """An orphan lease is given back; a lease the server lost is reported for re-allocation."""
        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        kept = alloc.allocate("ns/kept", family=4)
        gone = alloc.allocate("ns/gone", family=4)
        orphan = httpx.post(f"{bundled.url}/v1/ip", json={"service": "ns/ghost"}).json()["ip"]
        bundled.service.release(str(gone))  # lost behind our back
        report = alloc.reconcile("as")["as"]
        assert report.supported
        assert [str(ip) for ip in report.released] == [orphan]
        assert [(o, str(ip)) for o, ip in report.lost] == [("ns/gone", str(gone))]
        assert bundled.held() == {str(kept): "ns/kept"}

    def test_reconcile_reports_a_lost_lease(self, bundled, make_allocator, helpers) -> None:
        """A lease the server marks lost (renewal failed) is reported, and re-allocation gets a new one."""
        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        ip = alloc.allocate("ns/a", family=4)
        (lease,) = bundled.service.leases()
        bundled.service._lease_changed(attrs.evolve(lease, lost=True))  # what a backend reports after a NAK
        report = alloc.reconcile("as")["as"]
        assert [(o, str(i)) for o, i in report.lost] == [("ns/a", str(ip))]
        alloc.unassign("ns/a")
        again = alloc.allocate("ns/a", family=4)
        assert bundled.held() == {str(again): "ns/a"}

    def test_slow_service_blocks_no_other_pool(self, make_bundled, make_legacy, make_allocator, helpers) -> None:
        """While one POST takes 3 s, another pool and another service of the same pool allocate at once."""
        slow = make_legacy()
        fast = make_bundled(cidrs=("198.51.100.0/24",))
        alloc = make_allocator(
            section(helpers.pool_yaml("slow", slow.url), helpers.pool_yaml("fast", fast.url, cidrs="198.51.100.0/24"))
        )
        slow.post_faults.append("slow:3")
        results: dict[str, object] = {}
        worker = threading.Thread(target=lambda: results.update(slow=alloc.allocate("ns/slow", pool="slow")))
        worker.start()
        helpers.wait_for(lambda: slow.count("POST") == 1, 2, "the slow POST")
        started = time.monotonic()
        other_pool = alloc.allocate("ns/fast", pool="fast")
        same_pool = alloc.allocate("ns/other", pool="slow")
        elapsed = time.monotonic() - started
        worker.join(timeout=10)
        assert elapsed < 1.0
        assert other_pool in netaddr.IPNetwork("198.51.100.0/24") and same_pool in netaddr.IPNetwork("192.0.2.0/24")
        assert "slow" in results and slow.held() == {str(results["slow"]): "ns/slow", str(same_pool): "ns/other"}

    def test_cidr_mismatch_is_logged(self, make_bundled, make_allocator, helpers, caplog) -> None:
        """When /v1/config lists other networks than the pool's cidrs, a warning says so."""
        server = make_bundled(cidrs=("198.51.100.0/24",))
        alloc = make_allocator(section(helpers.pool_yaml("as", server.url)))
        with pytest.raises(AllocationError, match="outside the pool"):
            alloc.allocate("ns/a", family=4)
        assert "the service hands out ['198.51.100.0/24'] but the pool's cidrs are ['192.0.2.0/24']" in caplog.text
        assert server.held() == {}


class TestRestartAndConcurrency:
    """Re-learned addresses after a controller restart, parallel callers, the backend hook."""

    def test_restart_learns_lease_ids(self, bundled, make_allocator, helpers) -> None:
        """After a restart, assign re-learns the address; reconcile learns its lease id, and DELETE sends it."""
        first = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        ip = first.allocate("ns/a", family=4)
        lease_id = first.describe("ns/a")["lease-id"]
        first.close()
        second = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        second.assign("ns/a", ip)
        assert "lease-id" not in second.describe("ns/a")
        report = second.reconcile("as")["as"]
        assert report.released == () and report.lost == ()
        assert second.describe("ns/a")["lease-id"] == lease_id
        second.unassign("ns/a")
        assert bundled.held() == {}

    def test_parallel_callers(self, bundled, make_allocator, helpers) -> None:
        """16 threads allocating at once get distinct addresses, and the server holds exactly those."""
        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        got: list[netaddr.IPAddress] = []
        lock = threading.Lock()

        def work(n: int) -> None:
            for i in range(8):
                ip = alloc.allocate(f"ns/s{n}-{i}", family=4)
                with lock:
                    got.append(ip)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(got) == len(set(got)) == 128
        assert bundled.held() == helpers.held_by(alloc, "as")

    def test_backend_hook(self) -> None:
        """metallb_make_backend builds memory and dhcp backends and leaves other kinds to other plugins."""
        from metallb.allocator import get_plugin_manager
        from metallb.plugins.address_service.api import BackendOptions

        hook = get_plugin_manager().hook.metallb_make_backend
        memory = hook(kind="memory", options=BackendOptions(cidrs=["192.0.2.0/30"]))
        dhcp = hook(kind="dhcp", options=BackendOptions(interface="eth9", renew_after=2.0))
        assert memory.kind == "memory" and list(memory.cidrs()) == ["192.0.2.0/30"]
        assert dhcp.kind == "dhcp" and dhcp.renew_after == 2.0 and dhcp.offer_timeout == 5.0
        assert hook(kind="nope", options=BackendOptions()) is None
        with pytest.raises(ValueError, match="needs --interface"):
            hook(kind="dhcp", options=BackendOptions())


class TestAgainstDHCPManager:
    """AddressServiceSource with a server that answers exactly as DHCPManager."""

    def test_allocate_and_release(self, legacy, make_allocator, helpers) -> None:
        """The fork's requests work unchanged: POST {"service"}, DELETE {"ip", ...}, no /v1/config needed."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        ip = alloc.allocate("ns/a", family=4)
        assert legacy.held() == {str(ip): "ns/a"}
        assert [json.loads(b) for b in legacy.bodies("POST")] == [{"service": "ns/a"}]
        alloc.unassign("ns/a")
        assert legacy.held() == {}
        (delete,) = [json.loads(b) for b in legacy.bodies("DELETE")]
        assert delete["ip"] == str(ip)

    def test_timeout_answer_is_an_error_without_repeat(self, legacy, make_allocator, helpers) -> None:
        """DHCPManager's 10 s "timeout" answer arrives within our 15 s and fails the allocation once."""
        from_server = legacy
        from_server.post_faults.append("timeout")
        alloc = make_allocator(section(helpers.pool_yaml("dm", from_server.url)))
        started = time.monotonic()
        with pytest.raises(SourceUnavailableError) as err:
            alloc.allocate("ns/a", pool="dm")
        elapsed = time.monotonic() - started
        assert 10.0 <= elapsed < 12.0
        assert f'({from_server.url}): POST /v1/ip for "ns/a": HTTP 200: status "timeout" instead of "success"' in str(
            err.value
        )
        assert from_server.count("POST") == 1 and from_server.held() == {}

    def test_reconcile_maps_hostnames_to_services(self, legacy, make_allocator, helpers) -> None:
        """/v1/status Hostname name.namespace is mapped back; orphans go, losses are reported."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        kept = alloc.allocate("ns/kept", family=4)
        gone = alloc.allocate("ns/gone", family=4)
        orphan = legacy.lease("ns/ghost")["ip"]
        with legacy.lock:
            legacy.allocations = {k: v for k, v in legacy.allocations.items() if v["ip"] != str(gone)}
        report = alloc.reconcile("dm")["dm"]
        assert [str(i) for i in report.released] == [orphan]
        assert [(o, str(i)) for o, i in report.lost] == [("ns/gone", str(gone))]
        assert legacy.held() == {str(kept): "ns/kept"}

    def test_reconcile_unsupported_without_status(self, legacy_no_status, make_allocator, helpers) -> None:
        """A server without /v1/status (404) is supported, and reconciliation says it cannot compare."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy_no_status.url)))
        ip = alloc.allocate("ns/a", family=4)
        assert alloc.reconcile("dm")["dm"].supported is False
        assert legacy_no_status.held() == {str(ip): "ns/a"}

    def test_requested_address_is_refused_clearly(self, legacy, make_allocator, helpers) -> None:
        """DHCPManager cannot lease a chosen address, so asking for one fails without a POST."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        with pytest.raises(AllocationError, match="does not offer requested addresses"):
            alloc.allocate("ns/a", ip="192.0.2.9")
        assert legacy.count("POST") == 0


class TestServiceUid:
    """The Service's uid travels from the controller's converge path to our server's idempotent POST."""

    def test_converge_sends_the_uid(self, bundled, make_allocator, helpers) -> None:
        """A Service's metadata.uid reaches the lease; the same name with a new uid is another lease."""
        from metallb.operator.converge import converge
        from metallb.operator.service import read_service

        alloc = make_allocator(section(helpers.pool_yaml("as", bundled.url)))
        service = {"metadata": {"name": "a", "namespace": "ns", "uid": "uid-1"},
                   "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}  # fmt: skip
        first = converge(read_service(service), alloc).ingress
        (lease,) = bundled.service.leases()
        assert (lease.uid, [lease.ip]) == ("uid-1", list(first))
        alloc.unassign("ns/a")
        alloc.source("as").flush(5)
        service["metadata"]["uid"] = "uid-2"  # deleted and created again
        converge(read_service(service), alloc)
        assert [x.uid for x in bundled.service.leases()] == ["uid-2"]

    def test_dhcpmanager_gets_the_forks_body(self, legacy, make_allocator, helpers) -> None:
        """To a server without an idempotent POST the uid is not sent: the body stays the fork's."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        alloc.allocate("ns/a", family=4, uid="uid-1")
        assert [json.loads(b) for b in legacy.bodies("POST")] == [{"service": "ns/a"}]
