"""Layer-2 responder latency and throughput, against the kernel's own ARP and NDP replies.

Two network namespaces joined by a veth pair. In the node namespace a speaker
process runs the real :class:`~metallb.announcers.layer2.Layer2Announcer` for
a service address, while the node's kernel owns an ordinary address on the
same interface. From the client namespace this process sends ARP requests and
Neighbor Solicitations on a raw socket, interleaving the kernel's address
and ours, and reads the replies' receive times from the kernel
(``SO_TIMESTAMPNS``). Each request carries a sequence number in its source
MAC, which every reply echoes as its destination MAC.

Run as root::

    /opt/venv/bin/python bench/layer2.py            # full run
    /opt/venv/bin/python bench/layer2.py --quick    # a few seconds, for CI

Results are printed and written as JSON under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import netaddr

CLIENT_MAC = "02:00:00:00:00:c0"
NODE_MAC = "02:00:00:00:00:02"
CLIENT4, NODE4, VIP4 = "192.0.2.1", "192.0.2.2", "192.0.2.100"
CLIENT6, NODE6, VIP6 = "2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::100"
SEQ_PREFIX = b"\x02\xb0"  # locally administered unicast; the other 4 bytes are the sequence
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
TIMEOUT = 0.1


def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout


def enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


def checksum(data: bytes) -> int:
    return 0xFFFF - int.from_bytes(data, "big") % 0xFFFF


def arp_request(seq: int, target: bytes) -> bytes:
    mac = SEQ_PREFIX + seq.to_bytes(4, "big")
    src = netaddr.IPAddress(CLIENT4).packed
    return b"\xff" * 6 + mac + b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01" + mac + src + bytes(6) + target


def solicitation(seq: int, target: bytes) -> bytes:
    mac = SEQ_PREFIX + seq.to_bytes(4, "big")
    src = bytes(netaddr.IPAddress(CLIENT6).packed)
    group = bytes(netaddr.IPAddress("ff02::1:ff00:0").packed)[:13] + target[13:]
    body = b"\x87\x00\x00\x00\x00\x00\x00\x00" + target + b"\x01\x01" + mac
    csum = checksum(src + group + struct.pack("!IxxxB", len(body), 58) + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    ip6 = b"\x60\x00\x00\x00" + struct.pack("!HBB", len(body), 58, 255) + src + group
    return b"\x33\x33\xff" + target[13:] + mac + b"\x86\xdd" + ip6 + body


def reply_filter() -> bytes:
    """Keep received ARP replies and Neighbor Advertisements only."""

    def ins(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    prog = [
        ins(0x20, 0, 0, 0xFFFFF004),  # 0 packet type
        ins(0x15, 9, 0, 4),  # 1 outgoing -> drop
        ins(0x28, 0, 0, 12),  # 2 ethertype
        ins(0x15, 0, 2, 0x0806),  # 3 ARP -> 4 | 6
        ins(0x28, 0, 0, 20),  # 4 opcode
        ins(0x15, 4, 5, 2),  # 5 reply -> accept | drop
        ins(0x15, 0, 4, 0x86DD),  # 6 IPv6 -> 7 | drop
        ins(0x30, 0, 0, 54),  # 7 ICMPv6 type (assumes no extension headers)
        ins(0x15, 1, 2, 136),  # 8 NA -> accept | drop
        ins(0x06, 0, 0, 0),  # 9 (unused)
        ins(0x06, 0, 0, 256),  # 10 accept
        ins(0x06, 0, 0, 0),  # 11 drop
    ]
    return b"".join(prog)


class Client:
    """A raw socket in the client namespace that sends requests and matches replies by sequence."""

    def __init__(self, ifname: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        prog = reply_filter()
        buf = ctypes.create_string_buffer(prog, len(prog))
        self.sock.setsockopt(
            socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(prog) // 8, ctypes.addressof(buf))
        )
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((ifname, ETH_P_ALL))
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN)
        self.seq = 0
        self.ours_seen = {4: 0, 6: 0}
        self.vip4 = bytes(netaddr.IPAddress(VIP4).packed)
        self.vip6 = bytes(netaddr.IPAddress(VIP6).packed)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def receive(self, timeout: float) -> tuple[int, int] | None:
        """One reply (sequence, receive time in ns), or None when nothing came in *timeout*."""
        if not self.poller.poll(timeout * 1000):
            return None
        frame, anc, _flags, _addr = self.sock.recvmsg(512, 64)
        stamp = 0
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", data[:16])
                stamp = sec * 1_000_000_000 + nsec
        if frame[0:2] != SEQ_PREFIX:
            return (-1, stamp)  # gratuitous traffic or a stranger
        if frame[12:14] == b"\x08\x06" and frame[28:32] == self.vip4:
            self.ours_seen[4] += 1
        elif frame[12:14] == b"\x86\xdd" and frame[62:78] == self.vip6:
            self.ours_seen[6] += 1
        return (int.from_bytes(frame[2:6], "big"), stamp)

    def ask(self, frame_for: object, target: bytes) -> float | None:
        """Send one request and wait for its reply; latency in microseconds, or None if lost."""
        seq = self.next_seq()
        frame = frame_for(seq, target)  # type: ignore[operator]
        t0 = time.time_ns()
        self.sock.send(frame)
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            got = self.receive(left)
            if got is None:
                return None
            if got[0] == seq:
                return (got[1] - t0) / 1000

    def burst(self, frame_for: object, target: bytes, count: int) -> dict[str, float]:
        """Send *count* requests back to back, then collect replies until quiet."""
        first = self.seq + 1
        frames = [frame_for(self.next_seq(), target) for _ in range(count)]  # type: ignore[operator]
        t0 = time.time_ns()
        for frame in frames:
            self.sock.send(frame)
        seen: set[int] = set()
        last = t0
        while len(seen) < count:
            got = self.receive(0.5)
            if got is None:
                break
            if first <= got[0] < first + count:
                seen.add(got[0])
                last = max(last, got[1])
        elapsed = (last - t0) / 1e9
        return {
            "sent": count,
            "answered": len(seen),
            "lost": count - len(seen),
            "seconds": round(elapsed, 6),
            "replies_per_second": round(len(seen) / elapsed) if elapsed > 0 else 0,
        }

    def drain(self, quiet: float = 0.2) -> None:
        while self.receive(quiet) is not None:
            pass


def summary(samples: list[float], lost: int) -> dict[str, float]:
    if not samples:
        return {"n": 0, "lost": lost}
    ordered = sorted(samples)
    return {
        "n": len(samples),
        "lost": lost,
        "p50_us": round(statistics.median(ordered), 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "max_us": round(ordered[-1], 1),
    }


def serve(args: argparse.Namespace) -> None:
    """The speaker side, run inside the node namespace: announce the VIPs, report counters."""
    from metallb.allocator.interfaces import AnnouncerSettings
    from metallb.allocator.model import L2Advertisement, PoolSpec, ServiceView
    from metallb.announcers.layer2.plugin import metallb_make_announcer
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    announcer = metallb_make_announcer("layer2", AnnouncerSettings(node_name="node", registry=registry))
    assert announcer is not None
    pool = PoolSpec(
        name="bench",
        kind="address-pools",
        cidrs=(netaddr.IPNetwork("192.0.2.96/28"),),
        advertisements=(L2Advertisement(),),
    )
    ips = (netaddr.IPAddress(VIP4), netaddr.IPAddress(VIP6))
    announcer.announce(ServiceView(key="bench/svc", ips=ips, pool=pool))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and VIP6 not in announcer.responder.answering().get("n0", ()):
        time.sleep(0.02)  # the link-local address, and with it NDP, may come a moment later
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            out = {
                name: {
                    ip: registry.get_sample_value(f"metallb_layer2_{name}_total", {"ip": ip}) or 0
                    for ip in (VIP4, VIP6)
                }
                for name in ("requests_received", "responses_sent", "gratuitous_sent")
            }
            print(json.dumps(out), flush=True)
        else:
            break
    announcer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI (a few seconds)")
    parser.add_argument("--rounds", type=int, help="sequential rounds (4 requests each)")
    parser.add_argument("--burst", type=int, default=1000, help="back-to-back requests per burst")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/layer2[-quick].json)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every target is met")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return 0
    rounds = args.rounds or (300 if args.quick else 5000)
    out = args.out or Path(__file__).parent / "results" / ("layer2-quick.json" if args.quick else "layer2.json")
    prefix = f"b{os.getpid()}"
    client_ns, node_ns = f"{prefix}-client", f"{prefix}-node"
    created: list[str] = []
    speaker: subprocess.Popen[str] | None = None
    try:
        for ns in (client_ns, node_ns):
            sh(f"ip netns add {ns}")
            created.append(ns)
            sh(f"ip -n {ns} link set lo up")
            sh(f"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0")
        sh(
            f"ip link add c0 netns {client_ns} address {CLIENT_MAC} type veth "
            f"peer name n0 netns {node_ns} address {NODE_MAC}"
        )
        sh(f"ip -n {client_ns} addr add {CLIENT4}/24 dev c0 && ip -n {client_ns} addr add {CLIENT6}/64 dev c0 nodad")
        sh(f"ip -n {node_ns} addr add {NODE4}/24 dev n0 && ip -n {node_ns} addr add {NODE6}/64 dev n0 nodad")
        sh(f"ip -n {client_ns} link set c0 up && ip -n {node_ns} link set n0 up")
        speaker = subprocess.Popen(
            ["ip", "netns", "exec", node_ns, sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert speaker.stdout is not None and speaker.stdin is not None
        if speaker.stdout.readline().strip() != "READY":
            raise RuntimeError("speaker did not start")
        enter_netns(client_ns)
        client = Client("c0")
        time.sleep(0.05)
        kernel4, ours4 = bytes(netaddr.IPAddress(NODE4).packed), bytes(netaddr.IPAddress(VIP4).packed)
        kernel6, ours6 = bytes(netaddr.IPAddress(NODE6).packed), bytes(netaddr.IPAddress(VIP6).packed)
        cases = {
            "kernel_arp": (arp_request, kernel4),
            "ours_arp": (arp_request, ours4),
            "kernel_ndp": (solicitation, kernel6),
            "ours_ndp": (solicitation, ours6),
        }
        names = list(cases)
        samples: dict[str, list[float]] = {n: [] for n in names}
        lost = dict.fromkeys(names, 0)
        warmup = min(50, rounds // 10)
        for i in range(rounds + warmup):
            order = names[i % 4 :] + names[: i % 4]  # rotate so no case always goes first
            for name in order:
                latency = client.ask(*cases[name])
                if i < warmup:
                    continue
                if latency is None:
                    lost[name] += 1
                else:
                    samples[name].append(latency)
        client.drain()
        bursts = {}
        for name in names:
            bursts[name] = client.burst(*cases[name], args.burst)
            client.drain()
        speaker.stdin.write("stats\n")
        speaker.stdin.flush()
        counters = json.loads(speaker.stdout.readline())
        addr_text = sh(f"ip -n {node_ns} addr show") + sh(f"ip -n {node_ns} -4 neigh show proxy")
        addr_text += sh(f"ip -n {node_ns} -6 neigh show proxy")
        leaked = [vip for vip in (VIP4, VIP6) if vip in addr_text]
        latency = {name: summary(samples[name], lost[name]) for name in names}
        ratio = {
            fam: round(latency[f"ours_{fam}"]["p50_us"] / latency[f"kernel_{fam}"]["p50_us"], 2)
            for fam in ("arp", "ndp")
            if "p50_us" in latency[f"ours_{fam}"] and "p50_us" in latency[f"kernel_{fam}"]
        }
        sent = {VIP4: counters["responses_sent"][VIP4], VIP6: counters["responses_sent"][VIP6]}
        seen = {VIP4: client.ours_seen[4], VIP6: client.ours_seen[6]}
        checks = {
            "p50_within_3x_kernel": bool(ratio) and all(r <= 3 for r in ratio.values()),
            "no_burst_loss": all(bursts[n]["lost"] == 0 for n in ("ours_arp", "ours_ndp")),
            "at_least_10k_replies_per_second": all(
                bursts[n]["replies_per_second"] >= 10_000 for n in ("ours_arp", "ours_ndp")
            ),
            "vip_never_in_kernel": not leaked,
            "responses_sent_equals_replies_seen": {k: int(v) for k, v in sent.items()} == seen,
        }
        result = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "kernel": os.uname().release,
            "cpus": os.cpu_count(),
            "rounds": rounds,
            "latency": latency,
            "p50_ratio_ours_to_kernel": ratio,
            "burst": bursts,
            "counters": counters,
            "client_saw_ours": seen,
            "checks": checks,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{'case':<12}{'p50 us':>10}{'p99 us':>10}{'max us':>10}{'lost':>6}   burst: answered/sent   replies/s")
        for name in names:
            lat, b = latency[name], bursts[name]
            print(
                f"{name:<12}{lat.get('p50_us', '-'):>10}{lat.get('p99_us', '-'):>10}{lat.get('max_us', '-'):>10}"
                f"{lat['lost']:>6}   {b['answered']:>6}/{b['sent']:<6}        {b['replies_per_second']:>8}"
            )
        print(f"p50 ratio ours/kernel: {ratio}")
        print(f"responses_sent {sent} vs replies seen {seen}")
        for check, ok in checks.items():
            print(f"{'PASS' if ok else 'FAIL'}  {check}")
        print(f"written to {out}")
        return 0 if all(checks.values()) or not args.check else 1
    finally:
        if speaker is not None:
            if speaker.stdin is not None:
                try:
                    speaker.stdin.close()
                except OSError:
                    pass
            try:
                speaker.wait(timeout=5)
            except subprocess.TimeoutExpired:
                speaker.kill()
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
