"""The dhcp backend against a real dnsmasq in network namespaces (192.0.2.0/24 only).

The server process runs in the root namespace (HTTP on 127.0.0.1) and opens
its DHCP socket on c0 inside the client namespace (``--netns``).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import attrs
import httpx
import netaddr
from metallb.plugins.address_service.api import LeaseRequest, client_id_for, derive_mac
from metallb.plugins.address_service.dhcp import DhcpBackend

SCOPE = netaddr.IPRange("192.0.2.50", "192.0.2.59")


def dhcp_args(lab, tmp_path, *extra: str) -> tuple[str, ...]:
    return (
        "--backend", "dhcp", "--interface", "c0", "--netns", lab.client_ns, "--cidr", "192.0.2.0/24",
        "--state-file", str(tmp_path / "state.json"), *extra,
    )  # fmt: skip


def post(url: str, service: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/ip", json={"service": service}, timeout=15)


class TestDhcpLeases:
    """Leases from dnsmasq: obtained, distinct, visible, renewed, released."""

    def test_leases_are_real_and_distinct(self, dhcp_lab, start_server, tmp_path) -> None:
        """Each service gets its own address and MAC; dnsmasq lists them with a dotless hostname and a client id."""
        server = start_server(*dhcp_args(dhcp_lab, tmp_path, "--derive-macs"))
        answers = {name: post(server.url, f"ns/{name}").json() for name in ("a", "b", "c")}
        ips = {a["ip"] for a in answers.values()}
        assert len(ips) == 3 and all(netaddr.IPAddress(ip) in SCOPE for ip in ips)
        leases = dhcp_lab.holding(*ips)
        for name, answer in answers.items():
            expiry, mac, hostname, client_id = leases[answer["ip"]]
            assert mac == answer["mac"] and int(mac[:2], 16) & 0x03 == 0x02
            assert hostname == f"{name}-ns"
            assert bytes.fromhex(client_id.replace(":", "")) == b"\x00metallb/ns/" + name.encode()
            assert answer["expires"].startswith(time.strftime("%Y-", time.gmtime(expiry)))
        status = httpx.get(f"{server.url}/v1/status").json()
        assert sorted(a["Hostname"] for a in status["Allocations"]) == ["a.ns", "b.ns", "c.ns"]
        assert {a["Lease"]["Netmask"] for a in status["Allocations"]} == {"////AA=="}

    def test_renewed_before_expiry(self, dhcp_lab, start_server, tmp_path, helpers) -> None:
        """A real renewal (broadcast REQUEST, ciaddr 0) moves dnsmasq's expiry forward; the clock is not faked."""
        server = start_server(*dhcp_args(dhcp_lab, tmp_path, "--derive-macs", "--renew-after", "2"))
        ip = post(server.url, "ns/a").json()["ip"]
        first = dhcp_lab.holding(ip)[ip][0]
        helpers.wait_for(lambda: dhcp_lab.expiry(ip) > first, 10, "dnsmasq's expiry to move forward")
        log = (dhcp_lab.workdir / "dnsmasq.log").read_text()
        assert log.count(f"DHCPACK(n0) {ip}") >= 2
        assert "DHCPNAK" not in log

    def test_delete_sends_dhcprelease(self, dhcp_lab, start_server, tmp_path, helpers) -> None:
        """DELETE releases the lease at dnsmasq, which drops it from its lease file."""
        server = start_server(*dhcp_args(dhcp_lab, tmp_path, "--derive-macs"))
        ip = post(server.url, "ns/a").json()["ip"]
        dhcp_lab.holding(ip)
        resp = httpx.request("DELETE", f"{server.url}/v1/ip", json={"ip": ip, "service": "ns/a"})
        assert resp.status_code == 200
        helpers.wait_for(lambda: ip not in dhcp_lab.leases(), 5, "dnsmasq to drop the released lease")
        assert httpx.get(f"{server.url}/v1/status").json()["Allocations"] is None

    def test_resumed_after_sigkill(self, dhcp_lab, start_server, tmp_path, helpers) -> None:
        """After SIGKILL and a restart every lease is renewed again from the state file, and none leaks."""
        args = dhcp_args(dhcp_lab, tmp_path, "--derive-macs", "--renew-after", "60")
        first = start_server(*args)
        ips = [post(first.url, f"ns/{n}").json()["ip"] for n in ("a", "b")]
        before = {ip: lease[0] for ip, lease in dhcp_lab.holding(*ips).items()}
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=5)
        time.sleep(1.1)  # expiry has one-second resolution
        second = start_server(*args)
        helpers.wait_for(lambda: all(dhcp_lab.expiry(ip) > before[ip] for ip in ips), 10, "renewals after the restart")
        status = httpx.get(f"{second.url}/v1/status").json()
        assert sorted(a["Lease"]["FixedAddress"] for a in status["Allocations"]) == sorted(ips)
        assert sorted(dhcp_lab.leases()) == sorted(ips)
        again = post(second.url, "ns/a")
        assert again.status_code == 200 and again.json()["ip"] == ips[0]
        for ip in ips:
            assert httpx.request("DELETE", f"{second.url}/v1/ip", json={"ip": ip}).status_code == 200
        helpers.wait_for(lambda: not dhcp_lab.leases(), 5, "every lease released")


class TestDhcpMacsAndFailures:
    """MAC pool use, exhaustion, and lost leases."""

    def test_mac_pool(self, dhcp_lab, start_server, tmp_path) -> None:
        """Without a MAC the answer is 503; a registered MAC is used for the lease and comes back after DELETE."""
        server = start_server(*dhcp_args(dhcp_lab, tmp_path))
        refused = post(server.url, "ns/a")
        assert refused.status_code == 503 and "no MAC available" in refused.json()["message"]
        httpx.post(f"{server.url}/v1/mac", json={"macs": ["02:00:5e:10:00:01"]})
        answer = post(server.url, "ns/a").json()
        assert (
            answer["mac"] == "02:00:5e:10:00:01"
            and dhcp_lab.holding(answer["ip"])[answer["ip"]][1] == "02:00:5e:10:00:01"
        )
        assert httpx.get(f"{server.url}/v1/status").json()["AvailableMACs"] is None
        httpx.request("DELETE", f"{server.url}/v1/ip", json={"ip": answer["ip"]})
        assert httpx.get(f"{server.url}/v1/status").json()["AvailableMACs"] == ["02:00:5e:10:00:01"]

    def test_exhausted_scope_times_out(self, dhcp_lab, start_server, tmp_path) -> None:
        """When dnsmasq has no address left it stays silent; the answer is 504 "timeout" and nothing is kept."""
        dhcp_lab.stop_dnsmasq()
        dhcp_lab.start_dnsmasq("192.0.2.50", "192.0.2.50")
        server = start_server(
            *dhcp_args(dhcp_lab, tmp_path, "--derive-macs", "--request-timeout", "2", "--offer-timeout", "1")
        )
        assert post(server.url, "ns/a").status_code == 201
        started = time.monotonic()
        resp = post(server.url, "ns/b")
        assert resp.status_code == 504 and resp.json()["status"] == "timeout" and resp.json()["ip"] == ""
        assert 2.0 <= time.monotonic() - started < 4.0
        assert [a["Service"] for a in httpx.get(f"{server.url}/v1/status").json()["Allocations"]] == ["ns/a"]

    def test_lost_lease_is_reallocated(self, dhcp_lab, start_server, tmp_path, make_allocator, helpers) -> None:
        """A lease dnsmasq refuses to renew is reported lost; the client reconciles and gets a new address."""
        server = start_server(*dhcp_args(dhcp_lab, tmp_path, "--derive-macs", "--renew-after", "1"))
        alloc = make_allocator("address-services:\n" + helpers.pool_yaml("dhcp", server.url))
        old = alloc.allocate("ns/a", pool="dhcp")
        dhcp_lab.holding(str(old))
        dhcp_lab.stop_dnsmasq()
        dhcp_lab.leasefile.unlink()
        dhcp_lab.start_dnsmasq("192.0.2.60", "192.0.2.69")  # the old address is no longer in the scope
        helpers.wait_for(
            lambda: httpx.get(f"{server.url}/v1/status").json()["Allocations"][0]["Lost"],
            10,
            "the lease to be reported lost",
        )
        report = alloc.reconcile("dhcp")["dhcp"]
        assert [(o, str(ip)) for o, ip in report.lost] == [("ns/a", str(old))]
        alloc.unassign("ns/a")
        new = alloc.allocate("ns/a", pool="dhcp")
        assert new in netaddr.IPRange("192.0.2.60", "192.0.2.69")
        assert list(dhcp_lab.holding(str(new))) == [str(new)]
        status = httpx.get(f"{server.url}/v1/status").json()["Allocations"]
        assert [(a["Service"], a["Lease"]["FixedAddress"], a["Lost"]) for a in status] == [("ns/a", str(new), False)]


class TestRenewalMethod:
    """Why renewal is a broadcast REQUEST with ciaddr 0, shown against dnsmasq."""

    def test_unicast_renewing_ack_never_arrives(self, dhcp_lab, helpers) -> None:
        """dnsmasq ACKs an RFC 2131 RENEWING request (ciaddr set) to the leased address, which nobody owns; ours arrives."""
        backend = DhcpBackend(interface="c0", netns=dhcp_lab.client_ns, offer_timeout=2.0)
        backend.start(lambda lease: None)
        try:
            mac = derive_mac("ns/a")
            lease = backend.obtain(LeaseRequest(id="1", service="ns/a", mac=mac), timeout=5)
            common = [("client_id", client_id_for("ns/a")), ("hostname", b"a-ns")]
            renewing = [("message-type", "request"), *common]  # RFC 2131 RENEWING: ciaddr, no options 50/54
            ours = [("message-type", "request"), ("requested_addr", lease.ip), ("server_id", lease.server_id), *common]
            # The private helpers send exactly one frame and wait for its answer.
            rfc = backend._exchange(backend._frame(xid=101, mac=mac, options=renewing, ciaddr=lease.ip), 101, {"ack", "nak"},
                                    timeout=2.0, every=2.0)  # fmt: skip
            broadcast = backend._exchange(
                backend._frame(xid=102, mac=mac, options=ours), 102, {"ack", "nak"}, timeout=2.0, every=2.0
            )
        finally:
            backend.close()
        log = (dhcp_lab.workdir / "dnsmasq.log").read_text()
        assert f"101 DHCPACK(n0) {lease.ip}" in log  # dnsmasq answered the RENEWING request ...
        assert rfc is None  # ... to the leased address, which no host answers ARP for
        assert broadcast is not None and broadcast.kind == "ack"

    def test_rebinding_after_t2(self, dhcp_lab, helpers, caplog) -> None:
        """Past T2 the REQUEST leaves out the server identifier (any server may answer) and dnsmasq extends the lease."""
        events = []
        backend = DhcpBackend(interface="c0", netns=dhcp_lab.client_ns)
        backend.start(events.append)
        try:
            lease = backend.obtain(LeaseRequest(id="1", service="ns/a", mac=derive_mac("ns/a")), timeout=5)
            caplog.set_level("INFO", logger="metallb.plugins.address_service.dhcp")
            backend.resume(attrs.evolve(lease, rebind=lease.bound - 1))  # as if T2 had passed unanswered
            renewed = helpers.wait_for(lambda: events, 5, "the rebinding ACK")[0]
        finally:
            backend.close()
        assert renewed.ip == lease.ip and renewed.expires > lease.expires and not renewed.lost
        assert f"lease {lease.ip} for ns/a rebound (any server)" in caplog.text


class TestLeaseFileReads:
    """The tests' reader of dnsmasq's lease file, against a writer that rewrites it the way dnsmasq does."""

    def test_never_sees_half_a_rewrite(self, tmp_path, helpers) -> None:
        """While the file is truncated and rewritten in place over and over, every read returns a whole lease table."""
        path = tmp_path / "leases"
        tables = [
            "".join(f"{1700000000 + n} 02:00:00:00:00:{i:02x} 192.0.2.{50 + i} s{i}-ns 00:6d:65\n" for i in range(n))
            for n in (2, 3)
        ]
        path.write_text(tables[0])
        stop = threading.Event()

        def dnsmasq() -> None:
            # lease.c, lease_update_file(): rewind, ftruncate, write every lease, fflush, fsync.
            with open(path, "r+") as fh:
                while not stop.is_set():
                    fh.seek(0)
                    fh.truncate()
                    time.sleep(random.uniform(0, 0.005))  # a busy machine may pause it right here
                    fh.write(random.choice(tables))
                    fh.flush()
                    os.fsync(fh.fileno())
                    time.sleep(random.uniform(0, 0.002))

        writer = threading.Thread(target=dnsmasq)
        writer.start()
        try:
            sizes = [len(helpers.read_leases(path)) for _ in range(300)]
        finally:
            stop.set()
            writer.join()
        assert set(sizes) <= {2, 3}


class _SlowAckServer:
    """A DHCP server on n0 (UDP port 67) that offers at once but ACKs only after *ack_delay*; it counts RELEASEs."""

    def __init__(self, netns: str, *, address: str, ack_delay: float) -> None:
        import ctypes
        import socket

        self.address, self.ack_delay = address, ack_delay
        self.releases: list[str] = []
        self.acked = threading.Event()
        self._stop = threading.Event()
        opened: dict = {}

        def open_in_netns() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            libc.setns(fd, 0x40000000)
            os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"n0")
            sock.bind(("0.0.0.0", 67))
            opened["sock"] = sock

        thread = threading.Thread(target=open_in_netns)
        thread.start()
        thread.join()
        self.sock = opened["sock"]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _reply(self, request, kind: str) -> None:
        from scapy.layers.dhcp import BOOTP, DHCP

        reply = BOOTP(op=2, xid=request.xid, flags=0x8000, yiaddr=self.address, siaddr="192.0.2.2",
                      chaddr=request.chaddr) / DHCP(options=[("message-type", kind), ("server_id", "192.0.2.2"),
                      ("lease_time", 120), ("subnet_mask", "255.255.255.0"), "end"])  # fmt: skip
        self.sock.sendto(bytes(reply), ("255.255.255.255", 68))

    def _serve(self) -> None:
        import select

        from scapy.layers.dhcp import BOOTP, DHCP

        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            data, _ = self.sock.recvfrom(4096)
            request = BOOTP(data)
            kind = dict(o for o in request[DHCP].options if isinstance(o, tuple) and len(o) == 2).get("message-type")
            if kind == 1:
                self._reply(request, "offer")
            elif kind == 3 and not self.acked.is_set():
                self.acked.set()
                time.sleep(self.ack_delay)
                self._reply(request, "ack")
            elif kind == 7:
                self.releases.append(str(request.ciaddr))

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


class TestRenewalsAndLateAnswers:
    """Renewals run concurrently; an ACK that comes after the request gave up is released."""

    def test_dead_server_delays_no_lease_by_the_others(self, dhcp_lab, helpers) -> None:
        """With dnsmasq gone, 6 expired leases are all reported lost within about one ACK wait, not six."""
        events: list = []
        backend = DhcpBackend(interface="c0", netns=dhcp_lab.client_ns, ack_timeout=1.0)
        backend.start(events.append)
        try:
            leases = [
                backend.obtain(LeaseRequest(id=str(n), service=f"ns/s{n}", mac=derive_mac(f"ns/s{n}")), timeout=5)
                for n in range(6)
            ]
            dhcp_lab.stop_dnsmasq()
            started = time.monotonic()
            for lease in leases:
                backend.resume(attrs.evolve(lease, expires=time.time() - 1))
            helpers.wait_for(lambda: len(events) == 6, 10, "every lease to be reported lost")
            elapsed = time.monotonic() - started
        finally:
            backend.close()
        assert all(e.lost for e in events) and elapsed < 2.5  # one after the other: 6 s

    def test_late_ack_is_released(self, netlab, helpers) -> None:
        """No ACK within the request's time: the offer is released, and so is the ACK that comes later."""
        server_ns, client_ns = netlab.ns("srv"), netlab.ns("cli")
        netlab.veth(client_ns, "c0", server_ns, "n0", mac_a="02:00:00:00:00:c0", mac_b="02:00:00:00:00:02")
        netlab.run(server_ns, "ip addr add 192.0.2.2/24 dev n0")
        server = _SlowAckServer(server_ns, address="192.0.2.77", ack_delay=1.5)
        backend = DhcpBackend(interface="c0", netns=client_ns, offer_timeout=1.0, ack_timeout=5.0)
        backend.start(lambda lease: None)
        try:
            request = LeaseRequest(id="1", service="ns/a", mac=derive_mac("ns/a"))
            try:
                backend.obtain(request, timeout=1.0)
            except Exception as exc:  # noqa: BLE001 - the 504 is what this test expects
                assert "no DHCPACK" in str(exc)
            else:
                raise AssertionError("the obtain should have timed out")
            helpers.wait_for(lambda: backend.late_acks_released == 1, 5, "the late ACK to be released")
            helpers.wait_for(lambda: len(server.releases) == 2, 5, "both RELEASEs at the server")
        finally:
            backend.close()
            server.close()
        assert server.releases == ["192.0.2.77", "192.0.2.77"]
