"""The client against DHCPManager as it really behaves: an IP index that lags, one binding at a time, late leases.

The stand-in (``metallb.plugins.address_service.standin``) runs with the
original's timing scaled down (``time_scale``): its 3 s bind takes 30 ms, its
10 s POST wait 100 ms. After every scenario the stand-in's table and the
client's agree exactly: nothing leaks.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import netaddr
import pytest
from metallb.allocator import AllocationError
from metallb.operator.standalone import Standalone


def section(*entries: str) -> str:
    return "address-services:\n" + "".join(entries)


def post(url: str, service: str) -> dict:
    return httpx.post(f"{url}/v1/ip", json={"service": service}, timeout=15).json()


def delete(url: str, ip: object) -> dict:
    return httpx.request("DELETE", f"{url}/v1/ip", json={"ip": ip}).json()


class TestStandIn:
    """The stand-in answers with the original's timing and quirks."""

    def test_index_lags_the_answer(self, make_legacy) -> None:
        """A DELETE right after the POST's answer gets "error" with no id and releases nothing; later it works."""
        server = make_legacy(timing="original", time_scale=0.01, index_delay=0.2)
        with httpx.Client(base_url=server.url) as http:
            lease = http.post("/v1/ip", json={"service": "ns/a"}).json()
            assert lease["status"] == "success"
            early = http.request("DELETE", "/v1/ip", json={"ip": lease["ip"]}).json()
            assert early == {"ip": lease["ip"], "id": "", "status": "error"}
            assert server.held() == {lease["ip"]: "ns/a"}
            time.sleep(0.25)
            late = http.request("DELETE", "/v1/ip", json={"ip": lease["ip"]}).json()
        assert late == {"ip": lease["ip"], "id": lease["id"], "status": "success"}
        assert server.held() == {}

    def test_one_binding_at_a_time(self, make_legacy, helpers) -> None:
        """Of 5 concurrent POSTs 3 are bound within the wait; 2 answer "timeout" with an id and are bound later."""
        server = make_legacy(timing="original", time_scale=0.1)  # 300 ms binds, 1 s wait
        answers: list[dict] = []
        lock = threading.Lock()

        def one(n: int) -> None:
            answer = post(server.url, f"ns/s{n}")
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = [a for a in answers if a["status"] == "success"]
        late = [a for a in answers if a["status"] == "timeout"]
        assert len(ok) == 3 and len(late) == 2
        assert all(a["ip"] == "" and len(a["id"]) == 36 for a in late)
        helpers.wait_for(server.idle, 5, "the binder to finish")
        status = httpx.get(f"{server.url}/v1/status").json()
        assert {a["ID"] for a in status["Allocations"]} == {a["id"] for a in answers}
        assert server.late_bindings == 2

    def test_in_flight_status_and_shapes(self, make_legacy, helpers) -> None:
        """In flight: State 0 and a null Lease; bound: 14 lease fields with Expire; empty lists are []; id order."""
        server = make_legacy(timing="original", time_scale=0.2)  # 600 ms binds
        http = httpx.Client(base_url=server.url)
        assert http.get("/v1/status").json()["Allocations"] == []
        worker = threading.Thread(target=post, args=(server.url, "ns/a"))
        worker.start()
        helpers.wait_for(lambda: http.get("/v1/status").json()["Allocations"], 2, "the allocation")
        (flight,) = http.get("/v1/status").json()["Allocations"]
        assert flight["State"] == 0 and flight["Lease"] is None and flight["Hostname"] == "a.ns"
        worker.join()
        post(server.url, "ns/b")
        allocations = http.get("/v1/status").json()["Allocations"]
        http.close()
        assert [a["ID"] for a in allocations] == sorted(a["ID"] for a in allocations)
        assert [a["State"] for a in allocations] == [1, 1]
        lease = allocations[0]["Lease"]
        assert len(lease) == 14 and {"FixedAddress", "Netmask", "Bound", "Renew", "Rebind", "Expire"} <= set(lease)

    def test_allocation_disappears_at_expiry(self, make_legacy, helpers) -> None:
        """When renewals stop, the allocation vanishes from /v1/status at its lease's expiry (etcd's TTL)."""
        server = make_legacy(timing="original", time_scale=0.01, lease_time=20.0)  # 200 ms leases
        post(server.url, "ns/a")
        server.stop_renewals()
        helpers.wait_for(lambda: not httpx.get(f"{server.url}/v1/status").json()["Allocations"], 2, "expiry")

    def test_released_address_comes_back(self, make_legacy) -> None:
        """dnsmasq remembers the MAC, which goes back to the pool first: the next caller gets the same address, fast."""
        server = make_legacy(timing="original", time_scale=0.1)  # a new MAC binds in 300 ms, a known one in 2 ms
        with httpx.Client(base_url=server.url) as http:
            first = http.post("/v1/ip", json={"service": "ns/a"}).json()
            time.sleep(0.05)
            assert http.request("DELETE", "/v1/ip", json={"ip": first["ip"]}).json()["status"] == "success"
            started = time.monotonic()
            second = http.post("/v1/ip", json={"service": "ns/b"}).json()
            elapsed = time.monotonic() - started
        assert second["ip"] == first["ip"] and elapsed < 0.2

    def test_router_quirks(self, original) -> None:
        """405 has an empty body and no Content-Type; query strings are ignored; {"ip": 5} is "invalid"."""
        wrong = httpx.get(f"{original.url}/v1/ip")
        assert wrong.status_code == 405 and wrong.content == b"" and "content-type" not in wrong.headers
        assert httpx.get(f"{original.url}/v1/status?verbose=1").json()["Allocations"] == []
        assert delete(original.url, 5) == {"ip": "invalid", "id": "", "status": "error"}
        assert httpx.get(f"{original.url}/v1/config").status_code == 404


class TestNoLeaks:
    """Allocate and release back to back, answers outside cidrs, and timeouts: nothing stays leased."""

    @pytest.mark.parametrize("index_delay", [0.03, 0.1])
    def test_release_right_after_allocation(self, make_legacy, make_allocator, helpers, index_delay) -> None:
        """40 allocate/release cycles with no pause leave nothing leased (the fork leaked 8 of 40; 13-18 of 20 at 0.1 s)."""
        server = make_legacy(timing="original", time_scale=0.01, index_delay=index_delay)
        alloc = make_allocator(section(helpers.pool_yaml("dm", server.url)))
        for n in range(40):
            alloc.allocate(f"ns/s{n}", pool="dm")
            alloc.unassign(f"ns/s{n}")
        assert alloc.source("dm").flush(timeout=10)
        assert server.held() == {}
        assert server.count("GET", "/v1/status") >= 1  # the "error" answers were checked

    def test_answers_outside_cidrs_are_released(self, make_legacy, make_allocator, helpers) -> None:
        """10 leases outside the pool, each given back at once (as the index lags): none stays leased."""
        server = make_legacy(timing="original", time_scale=0.01)
        server.post_faults += ["outside", "outside", ""] * 5  # "": an ordinary answer
        alloc = make_allocator(section(helpers.pool_yaml("dm", server.url)))
        for n in range(5):
            alloc.allocate(f"ns/s{n}", pool="dm")  # 2 outside answers, then a good one
        assert alloc.source("dm").flush(timeout=10)
        assert server.held() == helpers.held_by(alloc, "dm")
        assert all(netaddr.IPAddress(ip) in netaddr.IPNetwork("192.0.2.0/24") for ip in server.held())

    def test_reconcile_releases_given_back_leases(self, make_legacy, make_allocator, helpers) -> None:
        """A lease outside cidrs whose DELETE keeps failing is released by the next reconciliation, not skipped."""
        server = make_legacy(timing="original", time_scale=0.01)
        server.post_faults.append("outside")
        server.delete_faults += ["500"] * 3
        alloc = make_allocator(section(helpers.pool_yaml("dm", server.url)), backoff=1.0)
        ip = alloc.allocate("ns/a", pool="dm")
        outside = [a for a in server.held() if a != str(ip)]
        assert len(outside) == 1 and list(alloc.source("dm").pending_releases()) == [netaddr.IPAddress(outside[0])]
        report = alloc.reconcile("dm")["dm"]
        assert [str(i) for i in report.released] == outside
        assert server.held() == {str(ip): "ns/a"}

    def test_late_bindings_are_released(self, make_legacy, make_allocator, helpers) -> None:
        """POSTs answered "timeout" are bound later; the client finds them by id and releases them."""
        server = make_legacy(timing="original", time_scale=0.1)
        alloc = make_allocator(
            section(helpers.pool_yaml("dm", server.url)), **{"late-lease-wait": 5.0, "late-lease-poll": 0.05}
        )
        failed: list[str] = []

        def one(n: int) -> None:
            try:
                alloc.allocate(f"ns/s{n}", pool="dm")
            except AllocationError:
                failed.append(f"ns/s{n}")

        threads = [threading.Thread(target=one, args=(n,)) for n in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(failed) == 2
        source = alloc.source("dm")
        assert source.flush_late(timeout=10) and source.flush(timeout=10)
        helpers.wait_for(server.idle, 5, "the binder to finish")
        assert server.late_bindings == 2
        assert server.held() == helpers.held_by(alloc, "dm") and len(server.held()) == 3


class TestStandaloneRestart:
    """``metallb standalone`` restarted with a service dropped from its file, against the original."""

    def test_shared_address_stays_leased(self, original, tmp_path: Path) -> None:
        """Two services share an address; one is dropped between runs: no DELETE, the other keeps it."""
        config = tmp_path / "config.yaml"
        config.write_text(section(f"- name: dm\n  url: {original.url}\n  protocol: layer2\n  cidrs: [192.0.2.0/24]\n"))
        services = tmp_path / "services.yaml"

        def manifest(name: str, port: int) -> str:
            return (
                f"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n"
                f"  annotations: {{metallb.universe.tf/allow-shared-ip: k}}\n"
                f"spec:\n  type: LoadBalancer\n  ports: [{{port: {port}}}]\n"
            )

        def run() -> dict[str, tuple[str, ...]]:
            app = Standalone(
                config_path=str(config),
                services_path=str(services),
                node="n1",
                state_path=str(tmp_path / "state.json"),
                announce=False,
            )
            app.restore_state()
            try:
                return {row.service: row.addresses for row in app.sync()}
            finally:
                app.allocator.source("dm").flush(timeout=10)
                app.close()

        services.write_text(manifest("a", 80) + manifest("b", 443))
        first = run()
        assert first["default/a"] == first["default/b"] and len(first["default/a"]) == 1
        (ip,) = first["default/a"]
        services.write_text(manifest("b", 443))
        time.sleep(0.05)
        assert run() == {"default/b": (ip,)}
        assert original.count("DELETE") == 0 and original.held() == {ip: "default/a"}
        services.write_text("")
        assert run() == {}
        assert original.held() == {}
        assert json.loads((tmp_path / "state.json").read_text())["services"] == {}
