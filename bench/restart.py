"""Graceful restart: what a client loses while ``metallb standalone`` restarts, with and without RFC 4724.

Three network namespaces: a client (203.0.113.2) pings a service address
(198.51.100.10, on the node's loopback as kube-proxy would answer for it)
through a router (BIRD 2 with its kernel protocol, or FRR with zebra and
bgpd) that installs the BGP route it learns from our speaker (the node,
192.0.2.2) in its kernel. The client pings every 10 ms. Each run restarts the
speaker (SIGTERM, as in a rolling upgrade, or SIGKILL), waits ``--down``
seconds (an image pull, 1 s), starts it again, and waits until it is settled
(the route installed again and, with graceful restart, the router out of its
restart state, after our End-of-RIB). Measured: pings lost and the longest
gap between two replies, and the time from the new process's start until it
is settled. Each case runs with ``graceful-restart: true`` and, as the
baseline in the same run, without it. ``--runs`` runs per case (5;
``--quick``: BIRD and SIGTERM only, 1 run per mode).

Run as root::

    .venv/bin/python bench/restart.py            # BIRD and FRR, SIGTERM and SIGKILL (about 4 minutes)
    .venv/bin/python bench/restart.py --quick    # for CI (about 30 s)

Results are printed and written as JSON under ``bench/results/``.
``BENCH_KEEP=1`` keeps the work directory with the daemons' and speaker's logs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RTR, NODE, CLIENT, SERVICE_IP = "192.0.2.1", "192.0.2.2", "203.0.113.2", "198.51.100.10"
CONFIG = """
peers:
- peer-address: 192.0.2.1
  peer-asn: 64513
  my-asn: 64512
  hold-time: 9s
  graceful-restart: {gr}
address-pools:
- name: routed
  protocol: bgp
  addresses: [198.51.100.10/32]
"""
SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  loadBalancerIP: 198.51.100.10
  ports: [{port: 80}]
"""


def sh(cmd: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True)


def wait(predicate: Callable[[], object], what: str, *, timeout: float = 60, step: float = 0.02) -> float:
    """Poll *predicate*; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(step)
    return time.monotonic()


class Lab:
    """The namespaces, one router, and our speaker as ``metallb standalone``."""

    def __init__(self, workdir: Path, kind: str) -> None:
        self.w, self.kind = workdir, kind
        tag = f"gr{os.getpid()}"
        self.rtr, self.node, self.cli = f"{tag}-rtr", f"{tag}-node", f"{tag}-cli"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.speaker: subprocess.Popen[bytes] | None = None

    def popen(self, ns: str, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.w / log, "ab") as fh:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.DEVNULL, stderr=fh, cwd="/")
        self.procs.append(proc)
        return proc

    def up(self) -> None:
        for ns in (self.rtr, self.node, self.cli):
            sh(f"ip netns add {ns} && ip -n {ns} link set lo up")
        sh(f"ip link add r0 netns {self.rtr} type veth peer name n0 netns {self.node}")
        sh(f"ip link add r1 netns {self.rtr} type veth peer name c0 netns {self.cli}")
        sh(f"ip -n {self.rtr} addr add {RTR}/24 dev r0 && ip -n {self.rtr} addr add 203.0.113.1/24 dev r1")
        sh(f"ip -n {self.node} addr add {NODE}/24 dev n0 && ip -n {self.node} addr add {SERVICE_IP}/32 dev lo")
        sh(f"ip -n {self.cli} addr add {CLIENT}/24 dev c0")
        for ns, ifs in ((self.rtr, ("r0", "r1")), (self.node, ("n0",)), (self.cli, ("c0",))):
            for ifname in ifs:
                sh(f"ip -n {ns} link set {ifname} up")
        sh(f"ip -n {self.node} route add default via {RTR} && ip -n {self.cli} route add default via 203.0.113.1")
        sh(f"ip netns exec {self.rtr} sysctl -qw net.ipv4.ip_forward=1")
        (self.bird if self.kind == "bird" else self.frr)()
        (self.w / "services.yaml").write_text(SERVICE)

    def bird(self) -> None:
        (self.w / "bird.conf").write_text(f"""
router id {RTR};
protocol device {{ }}
protocol kernel {{ ipv4 {{ export all; }}; }}
protocol bgp speaker {{
  local {RTR} as 64513; neighbor {NODE} as 64512; passive on; direct; hold time 9;
  error wait time 1, 5; graceful restart on;
  ipv4 {{ import all; export none; gateway direct; }};
}}
""")
        ctl = self.w / "bird.ctl"
        self.popen(self.rtr, ["bird", "-f", "-c", str(self.w / "bird.conf"), "-s", str(ctl)], "bird.log")
        wait(lambda: sh(f"ip netns exec {self.rtr} birdc -s {ctl} show status", check=False).returncode == 0, "BIRD")

    def frr(self) -> None:
        vty = self.w / "vty"
        vty.mkdir()
        os.chmod(vty, 0o777)
        os.chmod(self.w, 0o777)
        zserv = str(vty / "zserv.api")
        common = ["-z", zserv, "--vty_socket", str(vty), "-P", "0"]
        (self.w / "bgpd.conf").write_text(
            f"frr defaults traditional\nrouter bgp 64513\n bgp router-id {RTR}\n no bgp ebgp-requires-policy\n"
            f" bgp graceful-restart\n neighbor {NODE} remote-as 64512\n neighbor {NODE} passive\n"
            f" neighbor {NODE} timers 3 9\n address-family ipv4 unicast\n  neighbor {NODE} activate\n"
            " exit-address-family\n"
        )
        self.popen(self.rtr, ["/usr/lib/frr/zebra", "-u", "frr", "-g", "frr", *common, "-f", "/dev/null"], "zebra.log")
        wait(lambda: os.path.exists(zserv), "zebra")
        self.popen(self.rtr, ["/usr/lib/frr/bgpd", "-S", *common, "-f", str(self.w / "bgpd.conf")], "bgpd.log")
        wait(lambda: NODE in self.vtysh("show bgp neighbors json"), "bgpd with its neighbour")

    def vtysh(self, cmd: str) -> str:
        return sh(f"ip netns exec {self.rtr} vtysh --vty_socket {self.w / 'vty'} -c '{cmd}'", check=False).stdout

    def down(self) -> None:
        for proc in [*self.procs, *([self.speaker] if self.speaker else [])]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for ns in (self.cli, self.node, self.rtr):
            for pid in sh(f"ip netns pids {ns}", check=False).stdout.split():
                sh(f"kill -9 {pid}", check=False)
            sh(f"ip netns del {ns}", check=False)

    # -- the speaker and what the router shows -------------------------------------------

    def start_speaker(self, gr: bool) -> float:
        (self.w / "config.yaml").write_text(CONFIG.format(gr=str(gr).lower()))
        argv = [sys.executable, "-m", "metallb.operator", "standalone", "--node", "n1",
                "--config", str(self.w / "config.yaml"), "--services", str(self.w / "services.yaml"),
                "--state", str(self.w / "state.json"), "--metrics-port", "0"]  # fmt: skip
        started = time.monotonic()
        self.speaker = self.popen(self.node, argv, "standalone.log")
        return started

    def routed(self) -> bool:
        out = sh(f"ip -n {self.rtr} route show {SERVICE_IP}").stdout
        return re.search(rf"^{re.escape(SERVICE_IP)} (nhid \d+ )?via {re.escape(NODE)} ", out, re.M) is not None

    def in_restart(self) -> bool:
        """Whether the router holds our route as stale (BIRD says so per protocol, FRR per path)."""
        if self.kind == "bird":
            out = sh(f"ip netns exec {self.rtr} birdc -s {self.w / 'bird.ctl'} show protocols all speaker").stdout
            return "Neighbor graceful restart active" in out
        detail = json.loads(self.vtysh(f"show bgp ipv4 unicast {SERVICE_IP}/32 json") or "{}")
        return any(p.get("stale") for p in detail.get("paths", []))

    def settled(self) -> bool:
        """The route installed and the router out of any restart state: the new speaker's session is up.

        Without graceful restart too: after a restart with it (the switch between modes), the
        router keeps the stale route until the new session comes up, without the capability.
        """
        return self.routed() and not self.in_restart()

    def restart(self, how: str, gr: bool, down: float) -> dict[str, float | int]:
        """One restart while the client pings; the speaker runs again afterwards."""
        assert self.speaker is not None
        ping = subprocess.Popen(
            ["ip", "netns", "exec", self.cli, "ping", "-n", "-D", "-i", "0.01", SERVICE_IP],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        time.sleep(0.5)
        self.speaker.send_signal(getattr(signal, how))
        self.speaker.wait(30)
        time.sleep(down)
        started = self.start_speaker(gr)
        settled = wait(self.settled, "the restarted speaker to settle")
        time.sleep(0.5)
        ping.send_signal(signal.SIGINT)
        out = ping.communicate(timeout=10)[0]
        sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())  # type: ignore[union-attr]
        stamps = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]
        gap = max((b - a for a, b in itertools.pairwise(stamps)), default=float("nan"))
        return {"sent": sent, "lost": sent - received, "max_gap_s": round(gap, 3),
                "settled_s": round(settled - started, 3)}  # fmt: skip


def summary(runs: list[dict[str, float | int]]) -> dict[str, object]:
    lost = [int(r["lost"]) for r in runs]
    gaps = sorted(float(r["max_gap_s"]) for r in runs)
    settle = sorted(float(r["settled_s"]) for r in runs)
    return {
        "runs": runs,
        "lost_total": sum(lost),
        "lost_max": max(lost),
        "max_gap_p50_s": round(statistics.median(gaps), 3),
        "max_gap_max_s": gaps[-1],
        "settled_p50_s": round(statistics.median(settle), 3),
        "settled_max_s": settle[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="BIRD, SIGTERM, one run per mode: for CI")
    parser.add_argument("--runs", type=int, default=5, help="restarts per router, signal and mode")
    parser.add_argument("--down", type=float, default=1.0, help="seconds the speaker stays down")
    parser.add_argument("--routers", nargs="+", default=["bird", "frr"], choices=["bird", "frr"])
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/restart[-quick].json)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/restart.py needs root (network namespaces)")
    routers, signals, runs = (
        (["bird"], ["SIGTERM"], 1) if args.quick else (args.routers, ["SIGTERM", "SIGKILL"], args.runs)
    )
    out = args.out or Path(__file__).parent / "results" / f"restart{'-quick' if args.quick else ''}.json"
    results: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "kernel": platform.release(),
        "cpus": os.cpu_count(), "down_s": args.down, "cases": [],
    }  # fmt: skip
    for kind in routers:
        workdir = Path(tempfile.mkdtemp(prefix="bench-restart-"))
        lab = Lab(workdir, kind)
        try:
            lab.up()
            gr_now = True
            lab.start_speaker(gr_now)
            wait(lab.routed, "the route in the router's kernel")
            for gr in (True, False):
                if gr != gr_now:  # switch modes with an unmeasured restart: the old process's mode decides
                    lab.restart("SIGTERM", gr, 0.0)
                    gr_now = gr
                for how in signals:
                    case = summary([lab.restart(how, gr, args.down) for _ in range(runs)])
                    case.update(router=kind, signal=how, graceful_restart=gr)
                    results["cases"].append(case)  # type: ignore[attr-defined]
                    print(
                        f"{kind:5} {how:7} graceful restart {'on ' if gr else 'off'}: lost {case['lost_total']} pings "
                        f"in {runs} restarts (at most {case['lost_max']} in one), longest gap p50 "
                        f"{case['max_gap_p50_s']:.3f} s max {case['max_gap_max_s']:.3f} s, settled "
                        f"{case['settled_p50_s']:.2f} s after start (max {case['settled_max_s']:.2f} s)",
                        flush=True,
                    )
        finally:
            lab.down()
            if os.environ.get("BENCH_KEEP"):
                print(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
