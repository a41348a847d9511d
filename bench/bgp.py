"""BGP speaker throughput: our announcer against ExaBGP, both feeding the same GoBGP.

Two network namespaces joined by a veth pair. GoBGP (passive, AS 64513) runs in
the router namespace with two neighbours: our speaker at 192.0.2.2 (AS 64512)
and ExaBGP at 192.0.2.3 (AS 64514), both in the node namespace. For each size,
each speaker in turn is started as a fresh process that announces N IPv4 /32
routes (one service per route for ours; ExaBGP's bulk ``announce attributes
... nlri`` API in lines of 1000 prefixes), and we time, from process start,
until GoBGP has accepted all N from that neighbour; then the time until a
withdrawal of all of them has emptied GoBGP's table. GoBGP's count of
KEEPALIVEs received from the speaker during the transfer (the first one is
the OPEN exchange's) shows whether the session kept breathing.

The route prefixes (10.0.0.0/8) are only data in GoBGP's table: GoBGP runs
without zebra, so nothing is installed in a kernel and no packet is sent to them.

Run as root::

    /opt/venv/bin/python bench/bgp.py            # 10 000 and 100 000 routes
    /opt/venv/bin/python bench/bgp.py --quick    # 5 000 routes, for CI (about 15 s)

Results are printed and written as JSON under ``bench/results/``. For
debugging: ``BENCH_TIMEOUT`` (seconds per wait, default 300), ``BENCH_KEEP=1``
(keep the work directory with the daemons' logs), ``BENCH_DEBUG=1`` (our
speaker logs with timestamps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

RTR, OURS, EXA = "192.0.2.1", "192.0.2.2", "192.0.2.3"
RTR_ASN, OUR_ASN, EXA_ASN = 64513, 64512, 64514
# Hold times: ours 3 s (the minimum: a KEEPALIVE every second, so even a short load shows them
# flowing, and a stalled loop would drop the session); ExaBGP 6 s, so its long single-threaded
# bulk phases cannot cost it the session. GoBGP offers 15 s; the lower value wins.
HOLD_OURS, HOLD_EXA = 3, 6
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "300"))


def sh(cmd: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True)


def prefixes(n: int) -> list[str]:
    return [f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}/32" for i in range(1, n + 1)]


# -- child: our speaker -----------------------------------------------------------------------


def speaker(n: int) -> None:
    """Run our announcer (already inside the node namespace): announce, withdraw on a line, close on EOF."""
    import logging

    import netaddr

    if os.environ.get("BENCH_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, format="%(created).3f %(threadName)s %(message)s")
        logging.info("imports start")

    from metallb.allocator.interfaces import AnnouncerSettings
    from metallb.allocator.model import BgpAdvertisement, Config, NodeInfo, PeerSpec, PoolSpec, ServiceView
    from metallb.announcers.bgp.announcer import BgpAnnouncer

    peer = PeerSpec(
        my_asn=OUR_ASN,
        peer_asn=RTR_ASN,
        peer_address=netaddr.IPAddress(RTR),
        source_address=netaddr.IPAddress(OURS),
        hold_time=HOLD_OURS,
    )
    pool = PoolSpec(
        name="bench",
        kind="address-pools",
        cidrs=(netaddr.IPNetwork("10.0.0.0/8"),),
        advertisements=(BgpAdvertisement(),),
    )
    announcer = BgpAnnouncer(AnnouncerSettings(node_name="bench"))
    announcer.set_config(Config(pools={"bench": pool}, peers=(peer,)), NodeInfo(name="bench"))
    keys = []
    for i, prefix in enumerate(prefixes(n)):
        key = f"bench/s{i}"
        keys.append(key)
        announcer.announce(ServiceView(key=key, ips=(netaddr.IPAddress(prefix[:-3]),), pool=pool))
    logging.info("announced %d", n)
    if sys.stdin.readline():
        for key in keys:
            announcer.withdraw(key)
    sys.stdin.readline()
    announcer.close()


# -- child: ExaBGP's API feeder ------------------------------------------------------------------


FEEDER = """\
import os, sys
n = int(sys.argv[1])
ps = [f"10.{{i >> 16}}.{{(i >> 8) & 255}}.{{i & 255}}/32" for i in range(1, n + 1)]
for verb in ("announce", "withdraw"):
    for i in range(0, n, 1000):
        sys.stdout.write(f"{{verb}} attributes next-hop {exa} nlri " + " ".join(ps[i:i + 1000]) + "\\n")
    sys.stdout.flush()
    while not os.path.exists(sys.argv[2]):
        __import__("time").sleep(0.01)
    os.unlink(sys.argv[2])
"""


# -- the harness -------------------------------------------------------------------------------------


class Bench:
    """Namespaces, GoBGP, and the two speakers."""

    def __init__(self, workdir: str) -> None:
        self.w = workdir
        self.rtr = f"bench{os.getpid()}-rtr"
        self.node = f"bench{os.getpid()}-node"
        self.gobgpd: subprocess.Popen[bytes] | None = None

    def up(self) -> None:
        for ns in (self.rtr, self.node):
            sh(f"ip netns add {ns} && ip -n {ns} link set lo up")
        sh(f"ip link add r0 netns {self.rtr} type veth peer name n0 netns {self.node}")
        sh(f"ip -n {self.rtr} addr add {RTR}/24 dev r0 && ip -n {self.rtr} link set r0 up")
        sh(f"ip -n {self.node} addr add {OURS}/24 dev n0 && ip -n {self.node} addr add {EXA}/24 dev n0")
        sh(f"ip -n {self.node} link set n0 up")
        conf = Path(self.w, "gobgpd.toml")
        conf.write_text(
            textwrap.dedent(f"""\
            [global.config]
              as = {RTR_ASN}
              router-id = "{RTR}"
              local-address-list = ["{RTR}"]
            """)
            + "".join(
                textwrap.dedent(f"""\
                [[neighbors]]
                  [neighbors.config]
                    neighbor-address = "{addr}"
                    peer-as = {asn}
                  [neighbors.timers.config]
                    hold-time = 15
                    idle-hold-time-after-reset = 1
                  [neighbors.transport.config]
                    passive-mode = true
                  [[neighbors.afi-safis]]
                    [neighbors.afi-safis.config]
                      afi-safi-name = "ipv4-unicast"
                """)
                for addr, asn in ((OURS, OUR_ASN), (EXA, EXA_ASN))
            )
        )
        argv = ["gobgpd", "-f", str(conf), "-p", "-l", "warn", "--api-hosts", "127.0.0.1:50051", "--pprof-disable"]
        with open(Path(self.w, "gobgpd.log"), "wb") as log:
            self.gobgpd = subprocess.Popen(
                ["ip", "netns", "exec", self.rtr, *argv], stdout=subprocess.DEVNULL, stderr=log
            )
        self.wait(lambda: self.gobgp("global", check=False).returncode == 0, "gobgpd")

    def down(self) -> None:
        if self.gobgpd is not None:
            self.gobgpd.kill()
            self.gobgpd.wait()
        for ns in (self.rtr, self.node):
            for pid in sh(f"ip netns pids {ns}", check=False).stdout.split():
                sh(f"kill -9 {pid}", check=False)
            sh(f"ip netns del {ns}", check=False)

    def gobgp(self, args: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(f"ip netns exec {self.rtr} gobgp -u 127.0.0.1 -p 50051 {args}", check=check)

    def neighbor(self, addr: str) -> dict[str, int]:
        """Session state and accepted prefixes of *addr*, from GoBGP's neighbour summary.

        The summary costs GoBGP about 10 ms; ``gobgp neighbor ADDR -j`` walks the
        whole table (0.2 s at 100 000 routes) and, polled, slows GoBGP itself.
        """
        for line in self.gobgp("neighbor").stdout.splitlines():
            fields = line.split()
            if fields and fields[0] == addr:
                # Peer AS Up/Down State |#Received Accepted
                return {"established": int(fields[3].startswith("Establ")), "active": int(fields[3] == "Active"),
                        "accepted": int(fields[-1])}  # fmt: skip
        raise RuntimeError(f"GoBGP does not list neighbour {addr}")

    def keepalives(self, addr: str) -> int:
        """KEEPALIVEs GoBGP received from *addr* (the expensive query; never polled)."""
        data = json.loads(self.gobgp(f"neighbor {addr} -j").stdout)
        return int(data["state"].get("messages", {}).get("received", {}).get("keepalive", 0))

    @staticmethod
    def wait(predicate: Callable[[], object], what: str, *, timeout: float = TIMEOUT, step: float = 0.02) -> float:
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(step)
        return time.monotonic()

    def run(self, who: str, n: int) -> dict[str, float | int]:
        """Start one speaker process; time N routes in, then N routes out."""
        addr = OURS if who == "ours" else EXA
        # One trigger file per run: a feeder left over from an earlier run must not take it.
        trigger = Path(self.w, f"withdraw-{who}-{n}")
        if who == "ours":
            argv = [sys.executable, __file__, "--speaker", str(n)]
            env = dict(os.environ)
        else:
            feeder = Path(self.w, "feeder.py")
            feeder.write_text(FEEDER.format(exa=EXA))
            conf = Path(self.w, "exabgp.conf")
            conf.write_text(
                textwrap.dedent(f"""\
                process feeder {{
                  run {sys.executable} {feeder} {n} {trigger};
                  encoder text;
                }}
                neighbor {RTR} {{
                  router-id {EXA}; local-address {EXA}; local-as {EXA_ASN}; peer-as {RTR_ASN};
                  hold-time {HOLD_EXA};
                  family {{ ipv4 unicast; }}
                  api {{ processes [ feeder ]; }}
                }}
                """)
            )
            argv = [str(Path(sys.executable).parent / "exabgp"), "server", str(conf)]
            env = dict(os.environ, exabgp_api_ack="false", exabgp_log_enable="false", exabgp_log_level="CRITICAL", exabgp_daemon_user="root",
                       exabgp_daemon_drop="false", exabgp_api_cli="false", exabgp_tcp_port="179")  # fmt: skip
        # GoBGP accepts a neighbour's connection only once it is back in Active.
        self.wait(lambda: self.neighbor(addr)["active"], f"{who}: GoBGP ready", timeout=60)
        before = self.keepalives(addr)
        started = time.monotonic()
        with open(Path(self.w, f"{who}.log"), "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.node, *argv],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True,
            )  # fmt: skip
        try:
            flaps = 0
            seen_up = False

            def all_in() -> bool:
                nonlocal flaps, seen_up
                state = self.neighbor(addr)
                if seen_up and not state["established"]:
                    flaps += 1
                seen_up = bool(state["established"])
                return state["accepted"] >= n

            loaded = self.wait(all_in, f"{who}: {n} routes")
            keepalives = self.keepalives(addr) - before
            start_out = time.monotonic()
            if who == "ours":
                assert proc.stdin is not None
                proc.stdin.write(b"withdraw\n")
                proc.stdin.flush()
            else:
                trigger.touch()
            gone = self.wait(lambda: self.neighbor(addr)["accepted"] == 0, f"{who}: withdrawal of {n}")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the speaker and, for ExaBGP, its feeder process
            proc.wait()
        self.wait(lambda: not self.neighbor(addr)["established"], f"{who}: session down", timeout=30)
        return {
            "routes": n,
            "load_s": round(loaded - started, 3),
            "withdraw_s": round(gone - start_out, 3),
            "keepalives_during_load": keepalives,
            "session_flaps": flaps,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 000 routes only, for CI")
    parser.add_argument("--sizes", type=int, nargs="+", help="route counts (default 10000 100000)")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/bgp[-quick].json)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless ours is at least 4x faster everywhere")
    parser.add_argument("--speaker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speaker is not None:
        speaker(args.speaker)
        return
    if os.geteuid() != 0:
        sys.exit("bench/bgp.py needs root (network namespaces)")
    if not (Path(sys.executable).parent / "exabgp").exists() or shutil.which("gobgpd") is None:
        sys.exit("bench/bgp.py needs gobgpd (apt gobgpd) and ExaBGP in this venv (pip install exabgp==5.0.15)")
    sizes = args.sizes or ([5000] if args.quick else [10_000, 100_000])
    out = args.out or Path(__file__).parent / "results" / ("bgp-quick.json" if args.quick else "bgp.json")
    workdir = tempfile.mkdtemp(prefix="bench-bgp-")
    bench = Bench(workdir)
    results: dict[str, object] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "gobgp": sh("gobgpd --version").stdout.strip(),
        "runs": [],
    }
    ok = True
    try:
        bench.up()
        for n in sizes:
            ours = bench.run("ours", n)
            exa = bench.run("exabgp", n)
            ratio = round(exa["load_s"] / ours["load_s"], 1)
            ratio_out = round(exa["withdraw_s"] / ours["withdraw_s"], 1)
            results["runs"].append(
                {"routes": n, "ours": ours, "exabgp": exa, "load_ratio": ratio, "withdraw_ratio": ratio_out}
            )  # type: ignore[attr-defined]
            print(
                f"{n:>7} routes: ours {ours['load_s']:.2f} s (withdraw {ours['withdraw_s']:.2f} s, "
                f"{ours['keepalives_during_load']} keepalives, {ours['session_flaps']} flaps) | "
                f"ExaBGP {exa['load_s']:.2f} s (withdraw {exa['withdraw_s']:.2f} s) | "
                f"{ratio}x faster, withdraw {ratio_out}x",
                flush=True,
            )
            ok = ok and ratio >= 4 and ours["session_flaps"] == 0
    finally:
        bench.down()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")
    if args.check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
