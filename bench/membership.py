"""Speaker liveness, measured: gossip membership (the default) beside the Lease mode and Node conditions.

Three parts, in one run:

(a) **Failover with real speakers.** Three speaker processes, each in its own
    network namespace on a bridge, the Kubernetes API emulator
    (tests/kube_emulator.py) in another, and a client namespace that watches
    its neighbour cache for the service address. Each run waits until the
    three speakers see each other and exactly one node answers ARP, pings the
    address from the client (so its neighbour entry holds the winner's MAC),
    then either SIGKILLs the winner's speaker or takes its link down (veth
    down), and times how long the client's entry takes to move to another
    node's MAC (the new owner's gratuitous ARP). Then the speaker restarts or
    the link comes back, and the next run waits until all is settled again.
    The same runs with ``--liveness memberlist`` and ``--liveness lease``.
    Between runs, a quiet window measures what the three speakers cost the
    API server: writes per second (the emulator's request log) and watch
    events per second per speaker (their ``metallb_speaker_watch_events``).

(b) **100 and 500 members**, in the virtual-clock simulation of the same
    state machine (``metallb.operator.membership.sim``; two cores cannot run
    500 real speakers): the time until every member learns of a death (a
    member killed, then restarted, again and again), false suspicions and
    false deaths per member-hour with 5 % and 10 % of UDP packets lost, and
    bytes sent per member per second (encrypted sizes), with the protocol
    parameters.

(c) **The Lease mode at scale**, against the emulator: N Lease renewals every
    0.4 s (``LeaseLiveness.renew_lease``, as many threads as it takes) and one
    speaker's Lease informer: writes per second achieved against the N / 0.4
    wanted, watch events per second per speaker (every speaker receives every
    renewal), and how often that speaker saw a renewing node expire. The same
    for Node conditions with N simulated kubelets renewing their node Leases
    every 10 s (writes that exist anyway; the speaker adds none).

Run as root::

    python bench/membership.py            # 20 runs per failover case, the full simulations
    python bench/membership.py --quick    # 3 runs, short simulations: about a minute or two, for CI

Results are printed and written as JSON under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
from metallb.announcers.layer2.netlink import enter_netns
from metallb.operator.kube import now_rfc3339
from metallb.operator.liveness import NODE_LEASE_NAMESPACE, ApiLoad, LeaseLiveness, NodeLiveness
from metallb.operator.membership import Params, Status
from metallb.operator.membership.sim import Network, Simulation
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NS = "metallb-system"
VIP = "192.0.2.200"
NODES = ("a", "b", "c")
IPS = {"a": "192.0.2.1", "b": "192.0.2.2", "c": "192.0.2.3", "emu": "192.0.2.250", "client": "192.0.2.100"}
MACS = {"a": "02:00:00:00:02:0a", "b": "02:00:00:00:02:0b", "c": "02:00:00:00:02:0c", "emu": "02:00:00:00:02:fe",
        "client": "02:00:00:00:02:c0"}  # fmt: skip
CONFIG = "address-pools:\n- name: l2\n  protocol: layer2\n  addresses: [192.0.2.200/29]\n"
LABELS = {"app.kubernetes.io/name": "metallb", "app.kubernetes.io/component": "speaker"}
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def load_emulator() -> ModuleType:
    """tests/ is no package: import the emulator by path."""
    name = "metallb_bench_kube_emulator"
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "kube_emulator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here while the class is built
    spec.loader.exec_module(module)
    return module


STARTED = time.monotonic()


def say(text: str) -> None:
    """Print with the seconds since the benchmark started."""
    print(f"[{time.monotonic() - STARTED:6.1f} s] {text}", flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"runs": 0}
    return {
        "runs": len(values),
        "p50": statistics.median(values),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
        "values": [round(v, 3) for v in values],
    }


# -- (a) real speakers in namespaces ------------------------------------------------------------


class Lab:
    """Network namespaces named after this process, removed at the end (and on Ctrl-C)."""

    def __init__(self) -> None:
        self.prefix = f"mb{os.getpid()}"
        self.namespaces: list[str] = []

    def ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", full], check=True)
        self.namespaces.append(full)
        self.run(full, "ip link set lo up")
        return full

    def run(self, ns: str, cmd: str, *, check: bool = True) -> str:
        done = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd], capture_output=True, text=True,
                              check=False, timeout=30)  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"{ns}: {cmd}: {done.stderr.strip()}")
        return done.stdout

    def cleanup(self) -> None:
        for ns in reversed(self.namespaces):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Topology:
    """Three speakers (one liveness mode), the emulator and a client on one bridge."""

    def __init__(self, lab: Lab, kube: ModuleType, workdir: Path, mode: str) -> None:
        self.lab, self.mode, self.workdir = lab, mode, workdir
        self.ns: dict[str, str] = {}
        switch = lab.ns(f"{mode[:2]}-sw")
        lab.run(switch, "ip link add br0 type bridge && ip link set br0 up")
        for host in ("emu", "client", *NODES):
            ns = self.ns[host] = lab.ns(f"{mode[:2]}-{host}")
            subprocess.run(["ip", "link", "add", "eth0", "netns", ns, "address", MACS[host], "type", "veth",
                            "peer", "name", f"p-{host}", "netns", switch], check=True)  # fmt: skip
            lab.run(switch, f"ip link set p-{host} master br0 && ip link set p-{host} up")
            lab.run(ns, f"ip link set eth0 up && ip addr add {IPS[host]}/24 dev eth0")
        self.emu = kube.KubeEmulator(host=IPS["emu"], port=6443, bookmark_interval=0.5)
        in_emu = concurrent.futures.ThreadPoolExecutor(
            1, initializer=enter_netns, initargs=(f"/run/netns/{self.ns['emu']}",)
        )
        in_emu.submit(self.emu.start).result(10)  # its listening socket lives in the emulator's namespace
        in_emu.shutdown()
        self.client = concurrent.futures.ThreadPoolExecutor(
            1, initializer=enter_netns, initargs=(f"/run/netns/{self.ns['client']}",)
        )
        self.populate()
        self.kubeconfig = self.emu.write_kubeconfig(workdir / f"kubeconfig-{mode}")
        self.secret = workdir / "secretkey"
        self.secret.write_text(os.urandom(48).hex())
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for node in NODES:
            self.start(node)

    def populate(self) -> None:
        emu = self.emu
        emu.add_resource("metallb.io", "v1beta1", "servicel2statuses", "ServiceL2Status", status=True)  # crds.yaml
        emu.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        emu.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": NS},
                        "data": {"config": CONFIG}})  # fmt: skip
        for node in NODES:
            emu.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
                            "status": {"addresses": [{"type": "InternalIP", "address": IPS[node]}],
                                       "conditions": [{"type": "Ready", "status": "True"}]}})  # fmt: skip
            emu.put_object({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": f"speaker-{node}", "namespace": NS, "labels": LABELS},
                            "spec": {"nodeName": node, "containers": [{"name": "speaker", "image": "metallb"}]},
                            "status": {"phase": "Running", "podIP": IPS[node]}})  # fmt: skip
        emu.put_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
                        "status": {"loadBalancer": {"ingress": [{"ip": VIP}]}}})  # fmt: skip
        emu.put_object({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"name": "web-1", "namespace": "default",
                                     "labels": {"kubernetes.io/service-name": "web"}},
                        "addressType": "IPv4",
                        "endpoints": [{"addresses": [f"10.0.0.{i}"], "nodeName": n, "conditions": {"ready": True}}
                                      for i, n in enumerate(NODES, 1)],
                        "ports": [{"port": 80, "protocol": "TCP"}]})  # fmt: skip

    def start(self, node: str) -> None:
        argv = [sys.executable, "-m", "metallb.operator", "speaker", "--node-name", node,
                "--kubeconfig", str(self.kubeconfig), "--namespace", NS, "--interfaces", "eth0",
                "--metrics-port", "7472", "--liveness", self.mode]  # fmt: skip
        if self.mode == "memberlist":
            argv += ["--ml-secret-key-path", str(self.secret), "--ml-bindaddr", IPS[node],
                     "--ml-labels", "app.kubernetes.io/component=speaker"]  # fmt: skip
        log = open(self.workdir / f"{self.mode}-{node}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.procs[node] = subprocess.Popen(["ip", "netns", "exec", self.ns[node], *argv], stdout=subprocess.DEVNULL,
                                            stderr=log, cwd="/", env={**os.environ, "PYTHONSAFEPATH": "1"})  # fmt: skip

    def http(self, node: str, path: str) -> str | None:
        def fetch() -> str | None:
            try:
                with urllib.request.urlopen(f"http://{IPS[node]}:7472{path}", timeout=1) as response:
                    return response.read().decode()
            except OSError:
                return None

        return self.client.submit(fetch).result()

    def live_views(self) -> dict[str, list[str] | None]:
        views: dict[str, list[str] | None] = {}
        for node in NODES:
            text = self.http(node, "/status")
            views[node] = json.loads(text)["live_speakers"] if text else None
        return views

    def watch_events(self) -> float:
        """Objects received from lists and watches, summed over the three speakers."""
        total = 0.0
        for node in NODES:
            text = self.http(node, "/metrics") or ""
            total += sum(
                float(v) for v in re.findall(r"^metallb_speaker_watch_events_total\{[^}]*\} (\S+)$", text, re.M)
            )
        return total

    def answering(self) -> set[str]:
        out = self.lab.run(self.ns["client"], f"arping -c 3 -W 0.1 -w 1 -i eth0 {VIP}", check=False).lower()
        return {node for node in NODES if MACS[node] in out}

    def neighbour(self) -> str | None:
        out = subprocess.run(["ip", "-n", self.ns["client"], "neigh", "show", VIP, "dev", "eth0"],
                             capture_output=True, text=True).stdout  # fmt: skip
        match = re.search(r"lladdr ([0-9a-f:]{17})", out)
        return next((n for n in NODES if match and MACS[n] == match.group(1)), None)

    def settle(self, timeout: float = 60.0) -> str:
        """Wait until every speaker counts all three live and exactly one node answers; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            views = self.live_views()
            if all(v == sorted(NODES) for v in views.values()):
                time.sleep(0.5)  # let each speaker act on what it sees
                answering = self.answering()
                if len(answering) == 1:
                    (winner,) = answering
                    self.lab.run(self.ns["client"], f"ping -c 1 -W 1 {VIP}", check=False)
                    if self.neighbour() == winner:
                        return winner
            time.sleep(0.3)
        raise RuntimeError(f"{self.mode}: not settled after {timeout:.0f} s: views {self.live_views()}, "
                           f"answering {self.answering()}; logs in {self.workdir}")  # fmt: skip

    def time_to_move(self, away_from: str, limit: float = 15.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < limit:
            node = self.neighbour()
            if node is not None and node != away_from:
                return time.monotonic() - start
            time.sleep(0.01)
        return math.inf

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.client.shutdown()
        self.emu.stop()


def failover(kube: ModuleType, lab: Lab, workdir: Path, mode: str, runs: int, quiet: float) -> dict[str, Any]:
    """Failover after SIGKILL and after link down, *runs* times each, and the steady-state API load."""
    topo = Topology(lab, kube, workdir, mode)
    try:
        topo.settle(timeout=90)
        # Steady state: what three speakers cost the API server while nothing happens.
        writes0 = sum(topo.emu.request_count(m) for m in WRITES)
        events0, t0 = topo.watch_events(), time.monotonic()
        time.sleep(quiet)
        elapsed = time.monotonic() - t0
        writes = sum(topo.emu.request_count(m) for m in WRITES) - writes0
        events = topo.watch_events() - events0
        load = {"seconds": elapsed, "writes_per_second": writes / elapsed,
                "watch_events_per_second_per_speaker": events / elapsed / len(NODES)}  # fmt: skip
        times: dict[str, list[float]] = {"sigkill": [], "link_down": []}
        for i in range(runs):
            # One round: SIGKILL the winner; while it restarts, take the new winner's link down; then settle.
            first = topo.settle()
            topo.procs[first].kill()
            moved = topo.time_to_move(first)
            topo.procs[first].wait()
            topo.start(first)
            times["sigkill"].append(moved)
            second = topo.neighbour()
            assert second is not None and second != first
            topo.lab.run(topo.ns[second], "ip link set eth0 down")
            moved_again = topo.time_to_move(second)
            topo.lab.run(topo.ns[second], "ip link set eth0 up")
            times["link_down"].append(moved_again)
            say(f"  {mode:<10} round {i + 1:2d}: SIGKILL {moved:5.2f} s (from {first}), "
                  f"link down {moved_again:5.2f} s (from {second})")  # fmt: skip
        return {"steady_state": load, **{case: summary(values) for case, values in times.items()}}
    finally:
        topo.stop()


# -- (b) the simulation -------------------------------------------------------------------------


def detection(n: int, kills: int, seed: int) -> dict[str, Any]:
    """Kill a member, time until each survivor holds it dead, restart it; *kills* times."""
    sim = Simulation(n, seed=seed)
    sim.run_for(2.0)
    everyone: list[float] = []
    per_member: list[float] = []
    missed = 0
    for _ in range(kills):
        victim = sim.rng.choice(sim.live_members())
        start = sim.now
        sim.transitions.clear()
        sim.kill(victim)
        sim.run_for(5.0)
        learned: dict[str, float] = {}
        for t in sim.transitions:
            if t.member == victim and t.new == Status.DEAD and t.viewer not in sim.dead:
                learned.setdefault(t.viewer, t.time - start)
        survivors = sim.live_members()
        missed += len(set(survivors) - set(learned))
        per_member += list(learned.values())
        everyone.append(max(learned.values()) if len(learned) == len(survivors) else math.inf)
        sim.restart(victim)
        sim.run_for(1.0)
    return {"members": n, "every_member_learned": summary(everyone), "one_member_learned": summary(per_member),
            "survivors_that_never_learned": missed}  # fmt: skip


def steady(n: int, loss: float, seconds: float, seed: int) -> dict[str, Any]:
    """Nobody dies: suspicions, false deaths and bandwidth per member with *loss* of UDP packets."""
    sim = Simulation(n, seed=seed, network=Network(loss=loss))
    sim.run_for(seconds)
    hours = n * seconds / 3600
    deaths = {(t.member, sim.nodes[t.viewer].members()[t.member].incarnation) for t in sim.transitions
              if t.new in (Status.DEAD, Status.LEFT)}  # fmt: skip
    return {
        "members": n,
        "loss": loss,
        "simulated_seconds": seconds,
        "member_hours": hours,
        "suspicions_per_member_hour": sum(node.stats.suspicions for node in sim.nodes.values()) / hours,
        "refutations_per_member_hour": sum(node.stats.refutations for node in sim.nodes.values()) / hours,
        "false_deaths": len(deaths),
        "false_deaths_per_member_hour": len(deaths) / hours,
        "bytes_per_second_per_member": sum(sim.bytes_sent.values()) / n / seconds,
        "packets_per_second_per_member": sum(sim.packets_sent.values()) / n / seconds,
    }


# -- (c) Lease and Node modes at scale ----------------------------------------------------------


def renewing(count: int, period: float, renew: Callable[[int], None], stop: threading.Event) -> threading.Thread:
    """A thread that calls renew(i) for i in range(count) every *period*, spread evenly, on a pool of workers."""

    def run() -> None:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            start, i = time.monotonic(), 0
            while not stop.is_set():
                due = start + i * period / count
                delay = due - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
                pool.submit(renew, i % count)
                i += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def lease_mode(kube: ModuleType, n: int, seconds: float) -> dict[str, Any]:
    """N speakers' Lease renewals every 0.4 s and one speaker watching them all."""
    emu = kube.KubeEmulator(history=100_000).start()
    try:
        emu.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        api = emu.api_client()
        api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 16
        renewers = [LeaseLiveness(api, node_name=f"n{i:03d}", namespace=NS, wake=lambda: None,
                                  load=ApiLoad(CollectorRegistry())) for i in range(n)]  # fmt: skip
        load = ApiLoad(CollectorRegistry())
        watcher = LeaseLiveness(emu.api_client(), node_name="watcher", namespace=NS, wake=lambda: None, load=load)
        (informer,) = watcher.informers()
        stop = threading.Event()
        failures = [0]

        def renew(i: int) -> None:
            try:
                renewers[i].renew_lease()
            except Exception:  # noqa: BLE001 - counted: a failed renewal is the API not keeping up
                failures[0] += 1

        thread = renewing(n, 0.4, renew, stop)
        informer.start()
        time.sleep(2.0)  # every Lease exists, the informer listed
        puts0, events0, t0 = emu.request_count("PUT"), load.watch_events, time.monotonic()
        expiries, samples = 0, 0
        while time.monotonic() - t0 < seconds:
            expiries += n + 1 - len(watcher.live())
            samples += 1
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        puts, events = emu.request_count("PUT") - puts0, load.watch_events - events0
        stop.set()
        thread.join(10)
        informer.stop()
        return {
            "speakers": n,
            "writes_per_second_wanted": n / 0.4,
            "writes_per_second": puts / elapsed,
            "watch_events_per_second_per_speaker": events / elapsed,
            "watch_events_per_second_cluster": n * events / elapsed,
            "renewal_failures": failures[0],
            "expired_while_renewing_share": expiries / max(1, samples * n),
        }
    finally:
        emu.stop()


def node_mode(kube: ModuleType, n: int, seconds: float) -> dict[str, Any]:
    """N kubelets renewing their node Leases every 10 s, and one speaker in Node-conditions mode watching them."""
    emu = kube.KubeEmulator(history=100_000).start()
    try:
        load = ApiLoad(CollectorRegistry())
        liveness = NodeLiveness(emu.api_client(), node_name="n000", wake=lambda: None, load=load)
        names = [f"n{i:03d}" for i in range(n)]
        for name in names:
            liveness.on_node("ADDED", {"metadata": {"name": name},
                                       "status": {"conditions": [{"type": "Ready", "status": "True"}]}})  # fmt: skip

        def renew(i: int) -> None:
            emu.put_object({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": names[i], "namespace": NODE_LEASE_NAMESPACE},
                            "spec": {"holderIdentity": names[i], "leaseDurationSeconds": 40,
                                     "renewTime": now_rfc3339()}})  # fmt: skip

        for i in range(n):
            renew(i)
        stop = threading.Event()
        thread = renewing(n, 10.0, renew, stop)
        informer = liveness.node_leases
        informer.start()
        time.sleep(1.0)
        writes0, events0, t0 = sum(emu.request_count(m) for m in WRITES), load.watch_events, time.monotonic()
        dead, samples = 0, 0
        while time.monotonic() - t0 < seconds:
            dead += n - len(liveness.live())
            samples += 1
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        ours = sum(emu.request_count(m) for m in WRITES) - writes0  # the kubelets' renewals bypass HTTP
        events = load.watch_events - events0
        stop.set()
        thread.join(15)
        informer.stop()
        return {
            "nodes": n,
            "our_writes_per_second": ours / elapsed,
            "kubelet_writes_per_second": n / 10.0,
            "watch_events_per_second_per_speaker": events / elapsed,
            "watch_events_per_second_cluster": n * events / elapsed,
            "expired_while_renewing_share": dead / max(1, samples * n),
        }
    finally:
        emu.stop()


# -- report -------------------------------------------------------------------------------------


def show_failover(name: str, result: dict[str, Any]) -> None:
    load = result["steady_state"]
    say(f"{name:<11} SIGKILL   p50 {result['sigkill']['p50']:.2f} s  p95 {result['sigkill']['p95']:.2f} s  "
          f"max {result['sigkill']['max']:.2f} s ({result['sigkill']['runs']} runs)")  # fmt: skip
    say(f"{'':<11} link down p50 {result['link_down']['p50']:.2f} s  p95 {result['link_down']['p95']:.2f} s  "
          f"max {result['link_down']['max']:.2f} s")  # fmt: skip
    say(f"{'':<11} steady state: {load['writes_per_second']:.2f} writes/s (3 speakers), "
          f"{load['watch_events_per_second_per_speaker']:.2f} watch events/s per speaker")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 runs per failover case, short simulations (CI)")
    parser.add_argument("--runs", type=int, help="runs per failover case (default: 20, 3 with --quick)")
    parser.add_argument("--skip-netns", action="store_true", help="only the simulation and the API load at scale")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 20)
    if not args.skip_netns and (os.geteuid() != 0 or shutil.which("arping") is None):
        print("bench/membership.py: part (a) needs root, iproute2 and arping (or pass --skip-netns)", file=sys.stderr)
        return 1
    started = time.monotonic()
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # pool-full notices while hundreds of renewals overlap
    kube = load_emulator()
    params = Params()
    results: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "quick": args.quick,
                               "protocol_parameters": attrs.asdict(params)}  # fmt: skip

    if not args.skip_netns:
        say(f"(a) failover with three real speakers in network namespaces, {runs} runs per case")
        lab = Lab()
        try:
            with tempfile.TemporaryDirectory(prefix="metallb-membership-") as tmp:
                quiet = 2.0 if args.quick else 10.0
                for mode in ("memberlist", "lease"):
                    results[f"failover_{mode}"] = failover(kube, lab, Path(tmp), mode, runs, quiet)
        finally:
            lab.cleanup()
        for mode in ("memberlist", "lease"):
            show_failover(mode, results[f"failover_{mode}"])

    say("(b) simulation of the same state machine, virtual clock")
    kills = 1 if args.quick else 20
    for n in (100, 500):
        result = detection(n, kills, seed=n)
        results[f"detection_{n}"] = result
        every, one = result["every_member_learned"], result["one_member_learned"]
        say(f"  {n} members: every member knows of a death after p50 {every['p50']:.2f} s, "
              f"p99 {every['p99']:.2f} s ({kills} deaths); one member: p50 {one['p50']:.2f} s, "
              f"p99 {one['p99']:.2f} s")  # fmt: skip
    durations = {100: 10.0, 500: 2.0} if args.quick else {100: 300.0, 500: 60.0}
    for n, seconds in durations.items():
        for loss in (0.0, 0.05, 0.10):
            result = steady(n, loss, seconds, seed=n + int(loss * 100))
            results[f"steady_{n}_loss_{int(loss * 100)}"] = result
            say(f"  {n} members, {loss:4.0%} loss, {result['member_hours']:.1f} member-hours: "
                  f"{result['suspicions_per_member_hour']:.1f} suspicions and "
                  f"{result['false_deaths_per_member_hour']:.2f} false deaths per member-hour, "
                  f"{result['bytes_per_second_per_member']:.0f} B/s per member")  # fmt: skip
    ratio = (
        results["steady_500_loss_0"]["bytes_per_second_per_member"]
        / results["steady_100_loss_0"]["bytes_per_second_per_member"]
    )
    results["bandwidth_ratio_500_vs_100"] = ratio
    say(f"  bytes per member, 500 vs 100 members: {ratio:.2f}x")

    say("(c) API load at scale: the Lease mode and Node conditions against the emulator")
    sizes = (3, 100) if args.quick else (3, 10, 100, 500, 1000)
    seconds = 2.0 if args.quick else 10.0
    for n in sizes:
        lease = lease_mode(kube, n, seconds)
        results[f"lease_{n}"] = lease
        say(f"  lease, {n:3d} speakers: {lease['writes_per_second']:7.1f} writes/s "
              f"(wanted {lease['writes_per_second_wanted']:.0f}), "
              f"{lease['watch_events_per_second_per_speaker']:7.1f} watch events/s per speaker "
              f"({lease['watch_events_per_second_cluster']:.0f} cluster-wide), "
              f"{lease['expired_while_renewing_share']:.1%} of renewing nodes seen expired")  # fmt: skip
    for n in sizes:
        node = node_mode(kube, n, seconds)
        results[f"node_{n}"] = node
        say(f"  node,  {n:3d} nodes:    {node['our_writes_per_second']:7.1f} writes/s of ours "
              f"(kubelets {node['kubelet_writes_per_second']:.1f}), "
              f"{node['watch_events_per_second_per_speaker']:7.1f} watch events/s per speaker")  # fmt: skip
    for n in (100, 500):
        say(
            f"  memberlist, {n} members: 0 writes/s, "
            f"{results[f'steady_{n}_loss_0']['bytes_per_second_per_member']:.0f} B/s of gossip per member"
        )

    results["bench_seconds"] = time.monotonic() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("membership-quick.json" if args.quick else "membership.json")
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    say(f"wrote {out.relative_to(ROOT)} in {results['bench_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
