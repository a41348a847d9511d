"""Faults between the client and an address service: nothing leaks, nothing hangs, errors say what happened.

After each fault the server's own table is compared with what the client holds.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from metallb.allocator import AllocationError, SourceUnavailableError


def section(*entries: str) -> str:
    return "address-services:\n" + "".join(entries)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class TestPostFaults:
    """POST /v1/ip answers that are not a usable lease."""

    def test_server_down(self, make_allocator, helpers) -> None:
        """A server that refuses connections fails the allocation quickly, saying it cannot connect."""
        url = closed_port_url()
        alloc = make_allocator(section(helpers.pool_yaml("dm", url)))
        started = time.monotonic()
        with pytest.raises(SourceUnavailableError) as err:
            alloc.allocate("ns/a", pool="dm")
        assert time.monotonic() - started < 3.0
        assert f'address service "dm" ({url}): POST /v1/ip for "ns/a": cannot connect' in str(err.value)
        assert "3 problems" in str(err.value)
        assert alloc.ips("ns/a") == ()

    def test_500s_then_success(self, legacy, make_allocator, helpers) -> None:
        """Two 500 answers are retried with backoff and the third POST's lease is used."""
        legacy.post_faults += ["500", "500"]
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        ip = alloc.allocate("ns/a", pool="dm")
        assert legacy.count("POST") == 3
        assert helpers.server_held(legacy.url) == helpers.held_by(alloc, "dm") == {str(ip): "ns/a"}

    def test_500s_exhaust_the_attempts(self, legacy, make_allocator, helpers) -> None:
        """Three 500s end the allocation after exactly 3 POSTs, naming the status and the body."""
        legacy.post_faults += ["500"] * 3
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        with pytest.raises(SourceUnavailableError) as err:
            alloc.allocate("ns/a", pool="dm")
        message = str(err.value)
        assert f'({legacy.url}): POST /v1/ip for "ns/a": HTTP 500' in message
        assert 'body "<html><body><h1>500 Internal Server Error</h1></body></html>"' in message
        assert legacy.count("POST") == 3
        assert helpers.server_held(legacy.url) == helpers.held_by(alloc, "dm") == {}

    @pytest.mark.parametrize(
        ("fault", "says"),
        [
            (
                "garbage",
                'HTTP 200: the answer is not a JSON object; body "<html><body>upstream says hello</body></html>"',
            ),
            (
                "wrong-json",
                'HTTP 200: no "status" instead of "success"; body "{"address": "192.0.2.77", "result": "ok"}"',
            ),
            ("empty-ip", "HTTP 200: \"ip\" '' is not an IPv4 address"),
        ],
    )
    def test_bad_answers(self, legacy, make_allocator, helpers, fault: str, says: str) -> None:
        """Garbage, wrong JSON and an empty ip fail the allocation with the answer quoted."""
        legacy.post_faults += [fault] * 3
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        with pytest.raises(AllocationError) as err:
            alloc.allocate("ns/a", pool="dm")
        assert says in str(err.value)
        assert legacy.count("POST") == 3
        assert helpers.server_held(legacy.url) == helpers.held_by(alloc, "dm") == {}

    def test_address_outside_cidrs_is_given_back(self, legacy, make_allocator, helpers) -> None:
        """An address outside the pool is DELETEd at once and the next POST's lease is used."""
        legacy.post_faults.append("outside")
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        ip = alloc.allocate("ns/a", pool="dm")
        (returned,) = [json.loads(b)["ip"] for b in legacy.bodies("DELETE")]
        assert returned.startswith("198.51.100.")
        assert helpers.server_held(legacy.url) == helpers.held_by(alloc, "dm") == {str(ip): "ns/a"}

    def test_outside_every_time_stops_after_three(self, legacy, make_allocator, helpers) -> None:
        """A server that only hands out foreign addresses gets 3 POSTs, each lease given back, no recursion."""
        legacy.post_faults += ["outside"] * 5
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        with pytest.raises(
            AllocationError, match=r"is outside the pool \(cidrs 192\.0\.2\.0/24\); gave 198\.51\.100\.\d+ back"
        ):
            alloc.allocate("ns/a", pool="dm")
        assert legacy.count("POST") == 3 and legacy.count("DELETE") == 3
        assert helpers.server_held(legacy.url) == helpers.held_by(alloc, "dm") == {}

    def test_buggy_address_is_given_back(self, make_legacy, make_allocator, helpers) -> None:
        """With avoid-buggy-ips, a .0 address inside cidrs is rejected and returned."""
        legacy = make_legacy(cidr="192.0.2.0/23")
        legacy.free = ["192.0.3.0", "192.0.3.1"]
        alloc = make_allocator(
            section(helpers.pool_yaml("dm", legacy.url, cidrs="192.0.2.0/23", extra="avoid-buggy-ips: true"))
        )
        ip = alloc.allocate("ns/a", pool="dm")
        assert str(ip) == "192.0.3.1"
        assert [json.loads(b)["ip"] for b in legacy.bodies("DELETE")] == ["192.0.3.0"]
        assert helpers.server_held(legacy.url) == helpers.held_by(alloc, "dm") == {"192.0.3.1": "ns/a"}

    def test_address_leased_twice_is_not_given_back(self, legacy, make_allocator, helpers) -> None:
        """An address the server hands out again while another service holds it is refused but not DELETEd."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        first = alloc.allocate("ns/a", pool="dm")
        legacy.post_faults.append("twice")
        second = alloc.allocate("ns/b", pool="dm")
        assert second != first and legacy.count("POST") == 3 and legacy.count("DELETE") == 0
        assert alloc.ips("ns/a") == (first,)
        assert alloc.describe("ns/a")["lease-id"] == next(iter(legacy.allocations.values()))["id"]

    def test_answer_after_20_seconds(self, legacy, make_allocator, helpers) -> None:
        """A server answering after 20 s is cut at the 15 s total timeout; the lease it made is found and used."""
        legacy.post_faults.append("slow:20")
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        started = time.monotonic()
        ip = alloc.allocate("ns/a", pool="dm")
        elapsed = time.monotonic() - started
        assert 15.0 <= elapsed < 17.0
        assert legacy.count("POST") == 1 and legacy.count("GET", "/v1/status") == 1  # the check, before ours below
        assert helpers.server_held(legacy.url) == helpers.held_by(alloc, "dm") == {str(ip): "ns/a"}

    def test_lost_answer_is_found_in_status(self, legacy, make_allocator, helpers) -> None:
        """A POST whose answer is lost is not repeated: the lease it made is found in /v1/status and used."""
        legacy.post_faults.append("lost")
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        ip = alloc.allocate("ns/a", pool="dm")
        assert legacy.count("POST") == 1
        assert helpers.server_held(legacy.url) == helpers.held_by(alloc, "dm") == {str(ip): "ns/a"}

    def test_timeout_without_status_says_so(self, make_legacy, make_allocator, helpers) -> None:
        """A timed-out POST to a server without /v1/status fails once, naming the wait and why it is not repeated."""
        slow = make_legacy(has_status=False)
        slow.post_faults.append("slow:3")
        alloc = make_allocator(section(helpers.pool_yaml("dm", slow.url)), timeout=1.0)
        started = time.monotonic()
        with pytest.raises(AllocationError) as err:
            alloc.allocate("ns/a", pool="dm")
        assert time.monotonic() - started < 2.5
        assert f'({slow.url}): POST /v1/ip for "ns/a": no answer within 1 s (ReadTimeout)' in str(err.value)
        assert "the POST is not repeated (it could leak a lease)" in str(err.value)
        assert slow.count("POST") == 1

    def test_lost_answer_without_status_is_not_repeated(self, legacy_no_status, make_allocator, helpers) -> None:
        """Without /v1/status nothing can prove no lease was made, so the POST is not repeated and the error says so."""
        legacy_no_status.post_faults.append("lost")
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy_no_status.url)))
        with pytest.raises(
            AllocationError, match="has no /v1/status to check for a lease already made, so the POST is not repeated"
        ):
            alloc.allocate("ns/a", pool="dm")
        assert legacy_no_status.count("POST") == 1

    def test_lost_answer_uses_idempotent_post(self, bundled, make_proxy, make_allocator, helpers) -> None:
        """Against our server the POST is simply repeated: the idempotent answer returns the same lease."""
        proxy = make_proxy(bundled.url)
        alloc = make_allocator(section(helpers.pool_yaml("as", proxy.url)))
        alloc.allocate("ns/warm", pool="as")  # fetches /v1/config first
        proxy.drop_next.set()
        ip = alloc.allocate("ns/a", pool="as")
        assert (
            helpers.server_held(bundled.url)
            == helpers.held_by(alloc, "as")
            == {str(ip): "ns/a", str(alloc.ips("ns/warm")[0]): "ns/warm"}
        )

        def posts(code: str) -> float | None:
            labels = {"method": "POST", "path": "/v1/ip", "code": code}
            return bundled.registry.get_sample_value("metallb_address_service_requests_total", labels)

        # The server counts a request after answering it: wait for the last count.
        helpers.wait_for(lambda: posts("200") == 1, 5, "the replay to be counted")
        assert posts("201") == 2  # ns/warm, and ns/a's lost answer


class TestDeleteFaults:
    """DELETE /v1/ip that fails: retried until the server confirms, never forgotten."""

    def test_delete_fails_twice(self, legacy, make_allocator, helpers) -> None:
        """Two failed DELETEs are retried inline; the third releases the lease."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        source = alloc.source("dm")
        alloc.allocate("ns/a", pool="dm")
        legacy.delete_faults += ["500", "500"]
        alloc.unassign("ns/a")
        assert legacy.count("DELETE") == 3
        assert source.pending_releases() == {}
        assert helpers.server_held(legacy.url) == helpers.held_by(alloc, "dm") == {}

    def test_delete_retried_in_background(self, legacy, make_allocator, helpers) -> None:
        """A DELETE failing longer goes to the background worker, which keeps trying until it succeeds."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        source = alloc.source("dm")
        ip = alloc.allocate("ns/a", pool="dm")
        legacy.delete_faults += ["500"] * 5
        alloc.unassign("ns/a")
        pending = source.pending_releases()
        assert list(pending) == [ip] and "HTTP 500" in pending[ip]
        assert source.flush(timeout=10)
        assert legacy.count("DELETE") == 6
        assert helpers.server_held(legacy.url) == helpers.held_by(alloc, "dm") == {}

    def test_unknown_address_counts_as_released(self, legacy, make_allocator, helpers) -> None:
        """DHCPManager's "error" with an empty id means the address is unknown: done, not retried."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        alloc.allocate("ns/a", pool="dm")
        with legacy.lock:
            legacy.allocations.clear()
        alloc.unassign("ns/a")
        assert legacy.count("DELETE") == 1
        assert alloc.source("dm").pending_releases() == {}

    def test_pending_delete_blocks_a_new_post_for_that_service(self, legacy, make_allocator, helpers) -> None:
        """While its old address is not returned, the service gets no new one (an idempotent server would hand the old back)."""
        alloc = make_allocator(section(helpers.pool_yaml("dm", legacy.url)))
        source = alloc.source("dm")
        ip = alloc.allocate("ns/a", pool="dm")
        legacy.delete_faults += ["500"] * 4
        alloc.unassign("ns/a")
        assert list(source.pending_releases()) == [ip]
        with pytest.raises(SourceUnavailableError, match=f"the previous address {ip} of ns/a is not returned yet"):
            alloc.allocate("ns/a", pool="dm")
        assert legacy.count("POST") == 1
        assert legacy.held() == {str(ip): "ns/a"}  # still leased: the DELETE is pending, not forgotten
        assert source.flush(timeout=10) and legacy.held() == {}

    def test_delete_while_server_down(self, make_legacy, make_allocator, helpers) -> None:
        """A DELETE sent while the server is down is kept and delivered once it is back on the same port."""
        first = make_legacy()
        alloc = make_allocator(section(helpers.pool_yaml("dm", first.url)))
        source = alloc.source("dm")
        ip = alloc.allocate("ns/a", pool="dm")
        table, port = dict(first.allocations), first.port
        first.close()
        alloc.unassign("ns/a")
        assert "ConnectError" in source.pending_releases()[ip]
        second = make_legacy(port=port)
        second.allocations = table  # the same server, restarted with its state
        assert source.flush(timeout=15)
        assert second.count("DELETE") >= 1
        assert helpers.server_held(second.url) == helpers.held_by(alloc, "dm") == {}
