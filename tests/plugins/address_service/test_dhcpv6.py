"""The dhcpv6 backend against dnsmasq's DHCPv6 in network namespaces, and dual-stack address-service pools."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import netaddr
from metallb.plugins.address_service.dhcpv6 import (
    OPT_CLIENTID,
    OPT_IA_NA,
    REPLY,
    Message,
    decode,
    duid_for,
    encode,
)

SCOPE6 = netaddr.IPRange("2001:db8:1::100", "2001:db8:1::1ff")
SCOPE4 = netaddr.IPRange("192.0.2.50", "192.0.2.59")


def server_args(lab, tmp_path, *extra: str) -> tuple[str, ...]:
    return (
        "--backend", "dhcpv6", "--interface", "c0", "--netns", lab.client_ns, "--cidr", "2001:db8:1::/64",
        "--derive-macs", "--state-file", str(tmp_path / "state.json"), *extra,
    )  # fmt: skip


def post(url: str, service: str, family: int = 6) -> httpx.Response:
    body: dict = {"service": service}
    if family != 4:
        body["family"] = family
    return httpx.post(f"{url}/v1/ip", json=body, timeout=15)


def v6_leases(lab) -> dict:
    return {ip: v for ip, v in lab.leases().items() if ":" in ip}


class TestMessages:
    """The struct codec of DHCPv6 messages."""

    def test_round_trip(self) -> None:
        """A message encodes to RFC 8415's layout (type, 24-bit xid, TLV options) and decodes back equal."""
        message = Message(type=REPLY, xid=0xABCDEF, options=((OPT_CLIENTID, duid_for("02:00:00:00:00:01")),))
        wire = encode(message)
        assert wire[:4] == bytes([REPLY, 0xAB, 0xCD, 0xEF])
        assert wire[4:8] == b"\x00\x01\x00\x0a" and wire[8:12] == b"\x00\x03\x00\x01"
        assert decode(wire) == message

    def test_truncated_option_is_refused(self) -> None:
        """An option that runs past the datagram is a ValueError, not a crash."""
        wire = encode(Message(type=REPLY, xid=1, options=((OPT_IA_NA, b"x" * 12),)))
        try:
            decode(wire[:-3])
        except ValueError:
            return
        raise AssertionError("a truncated option must be refused")


class TestDhcpv6Leases:
    """IA_NA leases from dnsmasq: obtained, renewed, released, resumed after SIGKILL."""

    def test_obtain_and_release(self, dhcp_lab, start_server, tmp_path, helpers) -> None:
        """Two services get distinct addresses from the range, listed by dnsmasq with their DUID; DELETE releases."""
        server = start_server(*server_args(dhcp_lab, tmp_path))
        a, b = post(server.url, "ns/a").json(), post(server.url, "ns/b").json()
        assert a["status"] == b["status"] == "success" and a["ip"] != b["ip"]
        assert {netaddr.IPAddress(a["ip"]), netaddr.IPAddress(b["ip"])} <= set(SCOPE6)
        leases = dhcp_lab.holding(a["ip"], b["ip"])
        assert leases[a["ip"]][2] == "a-ns" and leases[a["ip"]][3] == ":".join(f"{x:02x}" for x in duid_for(a["mac"]))
        again = post(server.url, "ns/a")
        assert again.status_code == 200 and again.json()["ip"] == a["ip"]  # idempotent, per family
        resp = httpx.request("DELETE", f"{server.url}/v1/ip", json={"ip": a["ip"], "service": "ns/a"})
        assert resp.status_code == 200
        helpers.wait_for(lambda: list(v6_leases(dhcp_lab)) == [b["ip"]], 5, "dnsmasq to drop the released lease")

    def test_renewed(self, dhcp_lab, start_server, tmp_path, helpers) -> None:
        """RENEW moves dnsmasq's expiry forward; the address stays."""
        server = start_server(*server_args(dhcp_lab, tmp_path, "--renew-after", "2"))
        ip = post(server.url, "ns/a").json()["ip"]
        first = dhcp_lab.holding(ip)[ip][0]
        helpers.wait_for(lambda: dhcp_lab.expiry(ip) > first, 10, "dnsmasq's expiry to move forward")
        status = httpx.get(f"{server.url}/v1/status").json()["Allocations"]
        assert [(a["Lease"]["FixedAddress"], a["Lost"]) for a in status] == [(ip, False)]

    def test_resumed_after_sigkill(self, dhcp_lab, start_server, tmp_path, helpers) -> None:
        """After SIGKILL the next start renews every lease from the state file, with the same DUID and address."""
        args = server_args(dhcp_lab, tmp_path, "--renew-after", "60")
        first = start_server(*args)
        ips = [post(first.url, f"ns/{n}").json()["ip"] for n in ("a", "b")]
        before = {ip: lease[0] for ip, lease in dhcp_lab.holding(*ips).items()}
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=5)
        time.sleep(1.1)  # expiry has one-second resolution
        second = start_server(*args)
        helpers.wait_for(lambda: all(dhcp_lab.expiry(ip) > before[ip] for ip in ips), 10, "renewals after the restart")
        assert sorted(v6_leases(dhcp_lab)) == sorted(ips)
        assert post(second.url, "ns/a").json()["ip"] == ips[0]

    def test_link_without_ipv6_yet_delays_the_lease(self, dhcp_lab, start_server, tmp_path, helpers) -> None:
        """A SOLICIT the kernel cannot send yet (no link-local address) is sent again, not answered with a 500."""
        dhcp_lab.lab.run(dhcp_lab.client_ns, "sysctl -qw net.ipv6.conf.c0.disable_ipv6=1")
        server = start_server(*server_args(dhcp_lab, tmp_path))
        answers: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: answers.append(post(server.url, "ns/a")))
        thread.start()
        time.sleep(0.5)  # the first SOLICIT fails with ENETUNREACH
        dhcp_lab.lab.run(dhcp_lab.client_ns, "sysctl -qw net.ipv6.conf.c0.disable_ipv6=0")
        thread.join(timeout=20)
        (answer,) = answers
        assert answer.status_code == 201 and answer.json()["ip"] in dhcp_lab.holding(answer.json()["ip"])


class TestDualStack:
    """One server with a DHCPv4 and a DHCPv6 backend, and a pool with cidrs of both families."""

    def test_dual_stack_service_gets_one_address_per_family(
        self, dhcp_lab, start_server, tmp_path, make_allocator, helpers
    ) -> None:
        """allocate_dual gets an IPv4 and an IPv6 lease from the one pool; unassign releases both at dnsmasq."""
        server = start_server(
            "--backend", "dhcp", "--backend", "dhcpv6", "--interface", "c0", "--netns", dhcp_lab.client_ns,
            "--cidr", "192.0.2.0/24", "--cidr", "2001:db8:1::/64", "--derive-macs",
        )  # fmt: skip
        config = httpx.get(f"{server.url}/v1/config").json()
        assert "family" in config["extensions"] and config["backend"] == "dhcp+dhcpv6"
        pool = helpers.pool_yaml("dual", server.url, cidrs="192.0.2.0/24, 2001:db8:1::/64")
        alloc = make_allocator("address-services:\n" + pool)
        v4, v6 = alloc.allocate_dual("ns/a", families=(4, 6), uid="0b7b3f4e-1d2c-4e5f-8a9b-0c1d2e3f4a5b")
        assert v4 in SCOPE4 and v6 in SCOPE6
        assert sorted(dhcp_lab.holding(str(v4), str(v6))) == sorted([str(v4), str(v6)])
        status = httpx.get(f"{server.url}/v1/status").json()["Allocations"]
        assert {(a["Service"], a["UID"]) for a in status} == {("ns/a", "0b7b3f4e-1d2c-4e5f-8a9b-0c1d2e3f4a5b")}
        alloc.unassign("ns/a")
        helpers.wait_for(lambda: not dhcp_lab.leases(), 5, "both leases released")

    def test_ipv6_against_an_ipv4_only_server(self, legacy, make_allocator, helpers) -> None:
        """DHCPManager has no "family" extension: an IPv6 allocation fails without a POST, naming why."""
        alloc = make_allocator("address-services:\n" + helpers.pool_yaml("dm", legacy.url, cidrs="2001:db8:1::/64"))
        try:
            alloc.allocate("ns/a", family=6, pool="dm")
        except Exception as exc:  # noqa: BLE001 - checked below
            assert "hands out IPv4 addresses only" in str(exc)
        else:
            raise AssertionError("an IPv6 allocation must fail")
        assert legacy.count("POST") == 0

    def test_memory_backend_dual_stack(self, make_bundled, make_allocator, helpers) -> None:
        """The memory backend with IPv4 and IPv6 cidrs gives a dual-stack Service one address per family."""
        server = make_bundled(cidrs=("192.0.2.0/24", "2001:db8:5::/120"))
        pool = helpers.pool_yaml("mem", server.url, cidrs="192.0.2.0/24, 2001:db8:5::/120")
        alloc = make_allocator("address-services:\n" + pool)
        v4, v6 = alloc.allocate_dual("ns/a", families=(4, 6))
        assert (v4.version, v6.version) == (4, 6) and str(v6) == "2001:db8:5::1"
        assert server.held() == {str(v4): "ns/a", str(v6): "ns/a"}
        alloc.unassign("ns/a")
        assert server.held() == {}
