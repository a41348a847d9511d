"""`metallb speaker` by BGP end to end: ServiceBGPStatus and the make-before-break drain, against real BIRDs.

Two nodes (gossiping speakers), two routers each running BIRD 2 and the API
emulator share a bridge; the configuration is MetalLB's resources (two
``BGPPeer`` objects, ``tor-1`` and ``tor-2``). Every node serves the Service
address on ``lo`` (as kube-proxy would), so a ping from a router reaches
whichever node its BGP route points to.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.netns

NS = "metallb-system"
CRDS = Path(__file__).resolve().parents[2] / "operator" / "deploy" / "crds"
IPS = {"a": "192.0.2.1", "b": "192.0.2.2"}
MACS = {"a": "02:00:00:00:02:0a", "b": "02:00:00:00:02:0b"}
ROUTERS = {"tor-1": "192.0.2.11", "tor-2": "192.0.2.12"}
VIP = "198.51.100.5"
NODE_ASN, ROUTER_ASN = 64512, 64513
POD_LABELS = {"app.kubernetes.io/name": "metallb", "app.kubernetes.io/component": "speaker"}
WRITES = ("POST", "PUT", "PATCH", "DELETE")
BIRD = """
log "{log}" all;
timeformat log "%T.%6f";
router id {ip};
protocol device {{ }}
protocol kernel {{ ipv4 {{ export all; }}; }}
protocol bgp nodes {{
  local {ip} as {router_asn};
  neighbor range 192.0.2.0/24 as {node_asn};
  passive on;
  direct;
  hold time 9;
  error wait time 1, 5;
  debug {{ routes }};
  ipv4 {{ import all; export none; }};
}}
"""


def res(kind: str, name: str, spec: dict) -> dict:
    version = "v1beta2" if kind == "BGPPeer" else "v1beta1"
    return {"apiVersion": f"metallb.io/{version}", "kind": kind, "metadata": {"name": name, "namespace": NS},
            "spec": spec}  # fmt: skip


def populate(emu) -> None:
    """metallb's CRDs, the BGP configuration as resources, the Nodes and one speaker Pod per node."""
    for path in sorted(CRDS.glob("metallb.io_*.yaml")):
        emu.put_object(yaml.safe_load(path.read_text()))
    emu.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    emu.put_object(res("IPAddressPool", "routed", {"addresses": ["198.51.100.0/28"]}))
    emu.put_object(res("BGPAdvertisement", "routed", {"ipAddressPools": ["routed"]}))
    for name, ip in ROUTERS.items():
        spec = {"myASN": NODE_ASN, "peerASN": ROUTER_ASN, "peerAddress": ip, "holdTime": "9s"}
        emu.put_object(res("BGPPeer", name, spec))
    for node, ip in IPS.items():
        emu.put_object(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": ip}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
        emu.put_object(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"speaker-{node}", "namespace": NS, "labels": POD_LABELS},
                "spec": {"nodeName": node, "hostNetwork": True, "containers": [{"name": "speaker", "image": "x"}]},
                "status": {"phase": "Running", "podIP": ip, "hostIP": ip},
            }
        )


def put_service(emu, name: str, ip: str, nodes: tuple[str, ...], *, local: bool = False) -> None:
    """A LoadBalancer Service *name* on *ip* with a ready endpoint on each of *nodes*."""
    spec = {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": name}}
    if local:
        spec["externalTrafficPolicy"] = "Local"
    emu.put_object(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
        }
    )
    put_endpoints(emu, name, nodes)


def put_endpoints(emu, name: str, nodes: tuple[str, ...]) -> None:
    """Service *name*'s EndpointSlice: one ready endpoint on each of *nodes* (a pod rescheduled: another node)."""
    emu.put_object(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [f"10.0.0.{ord(n)}"], "nodeName": n, "conditions": {"ready": True}} for n in nodes
            ],
            "ports": [{"port": 80, "protocol": "TCP"}],
        }
    )


class Lab:
    """The bridge, the emulator, two BIRDs and two speakers; see the module docstring."""

    def __init__(self, netlab, tmp_path: Path) -> None:
        self.netlab, self.tmp = netlab, tmp_path
        emu_module = sys.modules["metallb_tests_kube_emulator"]
        switch = netlab.ns("sw")
        netlab.run(switch, "ip link add br0 type bridge && ip link set br0 up")
        hosts = {"emu": "192.0.2.250", **IPS, **ROUTERS}
        self.ns: dict[str, str] = {}
        for i, (host, ip) in enumerate(hosts.items()):
            ns = self.ns[host] = netlab.ns(host)
            mac = MACS.get(host, f"02:00:00:00:03:{i:02x}")
            netlab.veth(ns, "eth0", switch, f"p-{host}", mac_a=mac)
            netlab.run(switch, f"ip link set p-{host} master br0")
            netlab.run(ns, f"ip addr add {ip}/24 dev eth0")
        for node in IPS:  # the node serves the address (kube-proxy's job) and leaves routing to BGP
            netlab.run(self.ns[node], f"ip addr add {VIP}/32 dev lo")
        self.emu = emu_module.KubeEmulator(host=hosts["emu"], port=6443, bookmark_interval=0.5)
        self.emu.start_in_netns(self.ns["emu"])
        populate(self.emu)
        self.kubeconfig = self.emu.write_kubeconfig(tmp_path / "kubeconfig")
        self.secret = tmp_path / "memberlist"
        self.secret.mkdir()
        (self.secret / "secretkey").write_text("c2VjcmV0IGtleSBmb3IgdGhlIG5hbWVzcGFjZSB0ZXN0cw==\n")
        self.birds: dict[str, subprocess.Popen[bytes]] = {}
        for name in ROUTERS:
            self.start_bird(name)
        self.procs = {node: self.start_speaker(node) for node in IPS}

    def start_bird(self, name: str) -> None:
        conf = self.tmp / f"{name}.conf"
        log = self.tmp / f"{name}.routes.log"
        conf.write_text(BIRD.format(ip=ROUTERS[name], router_asn=ROUTER_ASN, node_asn=NODE_ASN, log=log))
        argv = ["bird", "-f", "-c", str(conf), "-s", str(self.tmp / f"{name}.ctl"), "-P", str(self.tmp / f"{name}.pid")]
        self.birds[name] = self.netlab.popen(
            self.ns[name], argv, stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"{name}.log", "ab")
        )
        self.wait(f"{name}'s BIRD to answer", lambda: self.birdc(name, "show status").returncode == 0)

    def start_speaker(self, node: str) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable, "-m", "metallb.operator", "speaker", "--node-name", node,
            "--kubeconfig", str(self.kubeconfig), "--namespace", NS, "--ml-secret-key-path", str(self.secret),
            "--ml-bindaddr", IPS[node], "--ml-labels", "app.kubernetes.io/component=speaker", "--metrics-port", "7472",
        ]  # fmt: skip
        return self.netlab.popen(
            self.ns[node], argv, env={**os.environ, "PYTHONSAFEPATH": "1"}, cwd="/",
            stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"speaker-{node}.log", "ab"),
        )  # fmt: skip

    def birdc(self, router: str, command: str) -> subprocess.CompletedProcess[str]:
        return self.netlab.run(self.ns[router], f"birdc -s {self.tmp / f'{router}.ctl'} {command}", check=False)

    def next_hops(self, router: str = "tor-1") -> frozenset[str]:
        """The next hops of the routes *router* holds for the Service address (one per advertising node)."""
        out = self.birdc(router, f"show route for {VIP}/32 all").stdout
        return frozenset(re.findall(r"BGP\.next_hop: (\S+)", out))

    def route_log(self, router: str = "tor-1") -> list[tuple[float, str, str]]:
        """(seconds of the day, node address, ``added`` or ``removed``) for the Service address, from *router*'s
        BIRD route log (microsecond timestamps), in order."""
        neighbours = {}
        for block in re.split(r"\n(?=\S)", self.birdc(router, "show protocols all").stdout):
            found = re.search(r"Neighbor address:\s+(\S+)", block)
            if found:
                neighbours[block.split()[0]] = found.group(1)
        out = []
        for line in (self.tmp / f"{router}.routes.log").read_text().splitlines():
            found = re.match(
                rf"(\d+):(\d+):([\d.]+) <TRACE> (\S+)\.ipv4 > (added|removed)\b.* {re.escape(VIP)}/32 ", line
            )
            if found:
                h, m, sec, proto, what = found.groups()
                out.append((int(h) * 3600 + int(m) * 60 + float(sec), neighbours.get(proto, proto), what))
        return out

    def statuses(self, service: str = "web") -> dict[str, list[str]]:
        """Node -> peers, from the ServiceBGPStatus objects of default/*service*."""
        return {
            o["status"]["node"]: o["status"].get("peers", [])
            for o in self.emu.objects("servicebgpstatuses", NS)
            if o["metadata"]["labels"]["metallb.io/service-name"] == service and o.get("status")
        }

    def metallb(self, command: str) -> subprocess.CompletedProcess[str]:
        argv = f"{sys.executable} -m metallb.operator {command} --kubeconfig {self.kubeconfig}"
        return self.netlab.run(self.ns["emu"], f"cd / && PYTHONSAFEPATH=1 {argv}", check=False)

    def logs(self) -> str:
        return "".join((self.tmp / f"speaker-{n}.log").read_text()[-2500:] for n in IPS)

    def wait(self, what: str, check, limit: float = 20.0):
        """Poll *check* until it returns something true; that value."""
        deadline = time.monotonic() + limit
        while not (value := check()):
            if time.monotonic() > deadline:
                logs = self.logs() if hasattr(self, "procs") else ""
                raise AssertionError(f"{what}: not within {limit} s\n{logs}")
            time.sleep(0.05)
        return value


@pytest.fixture(name="lab")
def _lab(netlab, tmp_path):
    lab = Lab(netlab, tmp_path)
    try:
        yield lab
    finally:
        lab.emu.stop()


class Recorder:
    """Polls a router's routes to the Service address and the emulator's ServiceBGPStatus objects, every ~15 ms."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.samples: list[tuple[float, frozenset[str], frozenset[str]]] = []  # (time, next hops, nodes by status)
        self.drained: float | None = None  # when node a's drain annotation was first seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            hops = self.lab.next_hops()
            nodes = frozenset(n for n, peers in self.lab.statuses().items() if peers)
            now = time.monotonic()
            self.samples.append((now, hops, nodes))
            annotations = (self.lab.emu.get("nodes", None, "a") or {}).get("metadata", {}).get("annotations") or {}
            if self.drained is None and "metallb.io/drain" in annotations:
                self.drained = now
            self._stop.wait(0.01)

    def first(self, predicate, after: float = 0.0) -> float | None:
        """The time of the first sample after *after* for which predicate(next hops, status nodes) holds."""
        return next((t for t, hops, nodes in self.samples if t >= after and predicate(hops, nodes)), None)


def ping_result(out: str) -> tuple[int, int]:
    sent, received = re.search(r"(\d+) packets transmitted, (\d+) received", out).groups()
    return int(sent), int(received)


class TestServiceBgpStatus:
    """One ServiceBGPStatus per advertising node, naming the BGPPeers that hold the routes."""

    def test_status_names_peers_follows_a_peer_and_goes_with_the_service(self, lab):
        """Both nodes report tor-1 and tor-2; a dead router leaves the lists, a dead node's object goes, and a
        deleted Service deletes the rest."""
        emu = lab.emu
        put_service(emu, "web", VIP, ("a", "b"))
        both = {"a": ["tor-1", "tor-2"], "b": ["tor-1", "tor-2"]}
        lab.wait("both nodes advertising to both peers", lambda: lab.statuses() == both)
        for router in ROUTERS:
            lab.wait(f"{router}'s routes via a and b", lambda r=router: lab.next_hops(r) == frozenset(IPS.values()))
        (obj,) = [o for o in emu.objects("servicebgpstatuses", NS) if o["status"]["node"] == "a"]
        assert obj["apiVersion"] == "metallb.io/v1beta1" and obj["kind"] == "ServiceBGPStatus"
        assert obj["metadata"]["labels"] == {"metallb.io/node": "a", "metallb.io/service-name": "web",
                                             "metallb.io/service-namespace": "default"}  # fmt: skip
        assert obj["status"] == {"node": "a", "serviceName": "web", "serviceNamespace": "default",
                                 "peers": ["tor-1", "tor-2"]}  # fmt: skip
        status = json.loads(lab.metallb("status --json").stdout)
        assert status["default/web"]["announced"] == "a, b"
        # Settled: no writes at all, keepalives included.
        time.sleep(0.5)
        before = sum(emu.request_count(m) for m in WRITES)
        time.sleep(3.0)
        assert sum(emu.request_count(m) for m in WRITES) == before, [
            r for r in list(emu.requests)[-20:] if r.method in WRITES
        ]
        lab.birds["tor-2"].kill()
        lab.birds["tor-2"].wait(5)
        lab.wait("tor-2 gone from both", lambda: lab.statuses() == {"a": ["tor-1"], "b": ["tor-1"]})
        lab.procs["b"].kill()  # a dead node's objects: deleted by the first live node (a writes nothing itself)
        lab.wait("b's object deleted", lambda: lab.statuses() == {"a": ["tor-1"]})
        assert json.loads(lab.metallb("status --json").stdout)["default/web"]["announced"] == "a"
        emu.delete_object("services", "default", "web")
        lab.wait("the objects deleted with the Service", lambda: not emu.objects("servicebgpstatuses", NS))
        lab.wait("the route withdrawn", lambda: not lab.next_hops("tor-1"))


class TestBgpDrain:
    """`metallb drain` on BGP: the draining node withdraws once another node's status shows the Service."""

    def settle_on_a(self, lab: Lab) -> None:
        """Service web, externalTrafficPolicy Local, its one endpoint on node a: only a advertises."""
        put_service(lab.emu, "web", VIP, ("a",), local=True)
        lab.wait("a advertising alone", lambda: lab.statuses() == {"a": ["tor-1", "tor-2"]})
        lab.wait("tor-1's route via a", lambda: lab.next_hops() == {IPS["a"]})
        lab.wait("tor-1's kernel route", lambda: lab.netlab.run(lab.ns["tor-1"], f"ping -c 1 -W 0.5 {VIP}",
                                                                check=False).returncode == 0)  # fmt: skip

    def test_drain_withdraws_after_the_other_node_advertises(self, lab):
        """Drained, then its pod rescheduled on b: a advertises until b's status shows the Service, then withdraws;
        tor-1 holds a route at every moment and a 10 ms ping from it, along its BGP route, loses nothing."""
        self.settle_on_a(lab)
        ping = lab.netlab.popen(
            lab.ns["tor-1"], ["ping", "-i", "0.01", "-c", "800", "-W", "1", VIP], stdout=subprocess.PIPE
        )
        with Recorder(lab) as rec:
            time.sleep(0.3)
            drain = lab.metallb("drain a")
            assert drain.returncode == 0, drain.stderr
            drained = lab.wait("the drain annotation seen", lambda: rec.drained)
            time.sleep(0.5)  # the pod moves: the node's drain evicts it, the new one is ready a moment later
            moved = time.monotonic()
            put_endpoints(lab.emu, "web", ("b",))
            lab.wait("a withdrawn, b alone", lambda: lab.statuses() == {"b": ["tor-1", "tor-2"]}, limit=10)
            lab.wait("tor-1's route via b alone", lambda: lab.next_hops() == {IPS["b"]}, limit=10)
            time.sleep(0.2)
        out = ping.communicate(timeout=30)[0].decode()
        sent, received = ping_result(out)
        b_status = rec.first(lambda hops, nodes: "b" in nodes)
        b_route = rec.first(lambda hops, nodes: IPS["b"] in hops)
        a_gone = rec.first(lambda hops, nodes: IPS["a"] not in hops, after=drained)
        gaps = [t for t, hops, _ in rec.samples if t >= drained and not hops]
        assert None not in (b_status, b_route, a_gone), rec.samples[-5:]
        intervals = sorted(b - a for (a, *_), (b, *_) in zip(rec.samples, rec.samples[1:], strict=False))
        median = intervals[len(intervals) // 2] * 1000
        print(
            f"BGP drain: {len(rec.samples)} samples of tor-1 (median interval {median:.0f} ms); "
            f"a withdrew {a_gone - drained:.2f} s after the drain, {a_gone - moved:.2f} s after the pod moved; "
            f"b's route {b_route - moved:.3f} s after the move, b's status {b_status - moved:.3f} s; "
            f"a's withdrawal {a_gone - b_status:.3f} s after b's status, {a_gone - b_route:.3f} s after b's route; "
            f"ping {received}/{sent}"
        )
        assert not gaps, f"tor-1 had no route at {len(gaps)} samples"
        assert a_gone >= b_route
        # Make before break, as the router logged it (microseconds): b's route added, then a's removed.
        events = [(t, hop, what) for t, hop, what in lab.route_log() if hop in IPS.values()]
        added_b = next(t for t, hop, what in events if hop == IPS["b"] and what == "added")
        removed_a = next(t for t, hop, what in events if hop == IPS["a"] and what == "removed")
        print(
            f"BGP drain at tor-1 (BIRD's log): a's route removed {(removed_a - added_b) * 1000:.1f} ms after b's added"
        )
        assert added_b < removed_a, events
        assert a_gone - b_status < 1.0 and a_gone - drained < 4.5  # b's status released it, not the 5 s bound
        assert sent == 800 and received == sent, out

    def test_drain_without_a_taker_withdraws_after_5_s(self, lab):
        """No other node can advertise the Service (no endpoint there): the draining node withdraws after 5 s."""
        self.settle_on_a(lab)
        with Recorder(lab) as rec:
            assert lab.metallb("drain a").returncode == 0
            drained = lab.wait("the drain annotation seen", lambda: rec.drained)
            lab.wait("a withdrawn", lambda: not lab.statuses(), limit=15)
            lab.wait("the route withdrawn", lambda: not lab.next_hops(), limit=5)
        a_gone = rec.first(lambda hops, nodes: not hops, after=drained)
        print(f"BGP drain without a taker: a withdrew {a_gone - drained:.2f} s after the drain")
        assert 4.5 < a_gone - drained < 6.5
