"""`metallb speaker` end to end: nodes on a bridge, the API emulator in a namespace of its own.

Speakers run as real processes inside node namespaces and reach the emulator
over the bridge; a client namespace on the same bridge watches which MAC
answers for the service address. Two speakers with ``--liveness lease``, three
with ``--liveness memberlist`` (the default: gossip on port 7946).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import netaddr
import pytest
from metallb.announcers.layer2.netlink import enter_netns
from metallb.announcers.layer2.packets import ArpAnswer, NdpAnswer, mac_bytes

NS = "metallb-system"
VIP = "192.0.2.200"
MACS = {"a": "02:00:00:00:01:0a", "b": "02:00:00:00:01:0b", "c": "02:00:00:00:01:0c"}
IPS = {"a": "192.0.2.1", "b": "192.0.2.2", "c": "192.0.2.3"}
CONFIG = "address-pools:\n- name: l2\n  protocol: layer2\n  addresses: [192.0.2.200/29]\n"
POD_LABELS = {"app.kubernetes.io/name": "metallb", "app.kubernetes.io/component": "speaker"}
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def populate(emu, nodes: tuple[str, ...]) -> None:
    """The config, the Nodes (Ready, with their InternalIP), one speaker Pod per node, and a Service on all."""
    emu.add_resource("metallb.io", "v1beta1", "servicel2statuses", "ServiceL2Status", status=True)
    emu.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    emu.put_object(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": NS},
         "data": {"config": CONFIG}}
    )  # fmt: skip
    for node in nodes:
        emu.put_object(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": IPS[node]}],
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
                "status": {"phase": "Running", "podIP": IPS[node], "hostIP": IPS[node]},
            }
        )
    add_service(emu, "web", VIP, nodes)


def add_service(emu, name: str, ip: str, nodes: tuple[str, ...]) -> None:
    """A LoadBalancer Service *name* on *ip* with a ready endpoint on every node."""
    emu.put_object(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": name}},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
        }
    )
    emu.put_object(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [f"10.0.0.{i}"], "nodeName": n, "conditions": {"ready": True}}
                for i, n in enumerate(nodes, 1)
            ],
            "ports": [{"port": 80, "protocol": "TCP"}],
        }
    )


def build(netlab, tmp_path, *, nodes: tuple[str, ...], liveness: str) -> dict:
    """The topology with one speaker per node in *liveness* mode; the caller stops the emulator."""
    emu_module = sys.modules["metallb_tests_kube_emulator"]
    switch = netlab.ns("sw")
    netlab.run(switch, "ip link add br0 type bridge && ip link set br0 up")
    hosts = {"emu": ("192.0.2.250", "02:00:00:00:01:fe"), "client": ("192.0.2.100", "02:00:00:00:01:c0")}
    hosts |= {n: (IPS[n], MACS[n]) for n in nodes}
    names = {}
    for host, (ip, mac) in hosts.items():
        ns = netlab.ns(host)
        names[host] = ns
        netlab.veth(ns, "eth0", switch, f"p-{host}", mac_a=mac)
        netlab.run(switch, f"ip link set p-{host} master br0")
        netlab.run(ns, f"ip addr add {ip}/24 dev eth0")
    emu = emu_module.KubeEmulator(host=hosts["emu"][0], port=6443, bookmark_interval=0.5)
    emu.start_in_netns(names["emu"])
    populate(emu, nodes)
    secret = tmp_path / "memberlist"
    secret.mkdir()
    (secret / "secretkey").write_text("c2VjcmV0IGtleSBmb3IgdGhlIG5hbWVzcGFjZSB0ZXN0cw==\n")  # a mounted Secret
    cluster = {
        "netlab": netlab, "ns": names, "emu": emu, "procs": {}, "logs": tmp_path, "nodes": nodes,
        "liveness": liveness, "kubeconfig": emu.write_kubeconfig(tmp_path / "kubeconfig"), "secret": secret,
    }  # fmt: skip
    for node in nodes:
        start_speaker(cluster, node)
    return cluster


def start_speaker(cluster: dict, node: str) -> None:
    """Start (or restart) the speaker of *node*."""
    argv = [
        sys.executable, "-m", "metallb.operator", "speaker", "--node-name", node,
        "--kubeconfig", str(cluster["kubeconfig"]), "--namespace", NS, "--interfaces", "eth0",
        "--liveness", cluster["liveness"],
    ]  # fmt: skip
    if cluster["liveness"] == "memberlist":
        argv += ["--ml-secret-key-path", str(cluster["secret"]), "--ml-bindaddr", IPS[node]]
        argv += ["--ml-labels", "app.kubernetes.io/component=speaker", "--metrics-port", "7472"]
    else:
        argv += ["--metrics-port", "0"]  # Lease renewal and duration: the defaults, which the 2 s target is about
    cluster["procs"][node] = cluster["netlab"].popen(
        cluster["ns"][node],
        argv,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=open(cluster["logs"] / f"speaker-{node}.log", "ab"),
    )


def log_marks(cluster: dict) -> dict[str, int]:
    """How long each speaker's log is now."""
    return {n: (cluster["logs"] / f"speaker-{n}.log").stat().st_size for n in cluster["nodes"]}


def log_since(cluster: dict, node: str, marks: dict[str, int]) -> str:
    """What *node*'s speaker logged since *marks*."""
    return (cluster["logs"] / f"speaker-{node}.log").read_bytes()[marks[node] :].decode()


def logs(cluster: dict) -> str:
    return "".join((cluster["logs"] / f"speaker-{n}.log").read_text() for n in cluster["nodes"])


@pytest.fixture(name="cluster")
def _cluster(netlab, tmp_path):
    cluster = build(netlab, tmp_path, nodes=("a", "b"), liveness="lease")
    try:
        yield cluster
    finally:
        cluster["emu"].stop()


@pytest.fixture(name="gossip")
def _gossip(netlab, tmp_path):
    cluster = build(netlab, tmp_path, nodes=("a", "b", "c"), liveness="memberlist")
    with concurrent.futures.ThreadPoolExecutor(
        1, initializer=enter_netns, initargs=(f"/run/netns/{cluster['ns']['client']}",)
    ) as pool:
        cluster["client"] = pool  # runs HTTP requests from the client namespace
        try:
            yield cluster
        finally:
            cluster["emu"].stop()


def answering_mac(netlab, client_ns: str) -> str | None:
    out = netlab.run(client_ns, f"arping -c 1 -w 1 -i eth0 {VIP}", check=False).stdout
    match = re.search(r"from ([0-9a-f:]{17})", out, re.I)
    return match.group(1).lower() if match else None


def neighbour_mac(netlab, client_ns: str) -> str | None:
    out = netlab.run(client_ns, f"ip neigh show {VIP} dev eth0", check=False).stdout
    match = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return match.group(1) if match else None


def settled_winner(cluster) -> str:
    """Wait until both speakers renew their Leases and the answers agree; return the answering node."""
    netlab, ns, emu = cluster["netlab"], cluster["ns"], cluster["emu"]
    deadline = time.monotonic() + 30
    while not all(emu.get("leases", NS, f"metallb-speaker-{n}") for n in "ab"):
        if time.monotonic() > deadline:
            raise AssertionError(f"speakers never renewed their leases\n{logs(cluster)[-3000:]}")
        time.sleep(0.1)
    time.sleep(1.0)  # one sync after each sees the other's Lease
    mac = None
    while time.monotonic() < deadline and mac is None:
        mac = answering_mac(netlab, ns["client"])
    assert mac in MACS.values(), f"nobody answered ARP for {VIP}"
    return next(n for n, m in MACS.items() if m == mac)


def speaker_status(cluster: dict, node: str) -> dict | None:
    """The speaker's /status, fetched from the client namespace (None while it does not answer)."""

    def fetch() -> dict | None:
        try:
            with urllib.request.urlopen(f"http://{IPS[node]}:7472/status", timeout=1) as response:
                return json.load(response)
        except OSError:
            return None

    return cluster["client"].submit(fetch).result()


def gossip_winner(cluster: dict, *, nodes: tuple[str, ...] | None = None) -> str:
    """Wait until every speaker of *nodes* counts all of them live and one MAC answers; return that node."""
    nodes = nodes or cluster["nodes"]
    netlab, ns = cluster["netlab"], cluster["ns"]
    deadline = time.monotonic() + 30
    while True:
        views = {n: speaker_status(cluster, n) for n in nodes}
        if all(v and v["live_speakers"] == sorted(nodes) for v in views.values()):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"speakers never saw each other: {views}\n{logs(cluster)[-4000:]}")
        time.sleep(0.3)
    time.sleep(0.5)  # the speakers act on what they see
    mac = None
    while time.monotonic() < deadline and mac is None:
        mac = answering_mac(netlab, ns["client"])
    assert mac in MACS.values(), f"nobody answered ARP for {VIP}"
    replies = netlab.run(ns["client"], f"arping -c 2 -i eth0 {VIP}", check=False).stdout.lower()
    assert {m for m in MACS.values() if m in replies} == {mac}, f"more than one node answers: {replies}"
    return next(n for n, m in MACS.items() if m == mac)


def time_until_moved(cluster: dict, away_from: str, limit: float = 10.0) -> tuple[float, str]:
    """Seconds until the client's neighbour entry for the VIP holds another node's MAC, and that node."""
    netlab, client = cluster["netlab"], cluster["ns"]["client"]
    start = time.monotonic()
    while time.monotonic() - start < limit:
        mac = neighbour_mac(netlab, client)
        if mac in MACS.values() and mac != MACS[away_from]:
            return time.monotonic() - start, next(n for n, m in MACS.items() if m == mac)
        time.sleep(0.02)
    raise AssertionError(f"the client's neighbour cache never moved away from {away_from}\n{logs(cluster)[-3000:]}")


class TestTwoSpeakersLease:
    def test_one_winner_then_failover_within_2s_after_sigkill(self, cluster):
        """Exactly one node answers; after its speaker is SIGKILLed the client's traffic moves within 2 s."""
        netlab, ns, procs = cluster["netlab"], cluster["ns"], cluster["procs"]
        winner = settled_winner(cluster)
        loser = "b" if winner == "a" else "a"
        # Both speakers agree: several more asks get the same single MAC.
        replies = netlab.run(ns["client"], f"arping -c 3 -i eth0 {VIP}", check=False).stdout.lower()
        assert MACS[winner] in replies and MACS[loser] not in replies
        # The client sends traffic (ping), so its neighbour cache holds the winner's MAC.
        netlab.run(ns["client"], f"ping -c 1 -W 0.2 {VIP}", check=False)
        assert neighbour_mac(netlab, ns["client"]) == MACS[winner]
        killed = time.monotonic()
        procs[winner].kill()
        moved = None
        while time.monotonic() - killed < 10:
            if neighbour_mac(netlab, ns["client"]) == MACS[loser]:
                moved = time.monotonic() - killed
                break
            time.sleep(0.02)
        assert moved is not None, "the client's neighbour cache never moved to the surviving node"
        print(f"failover after SIGKILL: {moved:.2f} s")
        assert moved < 2.0, f"failover took {moved:.2f} s"
        assert answering_mac(netlab, ns["client"]) == MACS[loser]

    def test_sigterm_withdraws_and_deletes_its_lease(self, cluster):
        """A speaker stopped with SIGTERM exits 0, deletes its Lease, and the other node takes over at once."""
        netlab, ns, procs, emu = cluster["netlab"], cluster["ns"], cluster["procs"], cluster["emu"]
        winner = settled_winner(cluster)
        loser = "b" if winner == "a" else "a"
        procs[winner].terminate()
        assert procs[winner].wait(10) == 0
        assert emu.get("leases", NS, f"metallb-speaker-{winner}") is None
        deadline = time.monotonic() + 5
        while answering_mac(netlab, ns["client"]) != MACS[loser]:
            assert time.monotonic() < deadline, "the other node did not take over"


class TestThreeSpeakersMemberlist:
    def test_failover_within_2s_after_sigkill(self, gossip):
        """One of three answers; after its speaker is SIGKILLed, gossip moves the client's traffic within 2 s."""
        netlab, ns, procs = gossip["netlab"], gossip["ns"], gossip["procs"]
        winner = gossip_winner(gossip)
        netlab.run(ns["client"], f"ping -c 1 -W 0.2 {VIP}", check=False)
        assert neighbour_mac(netlab, ns["client"]) == MACS[winner]
        marks = log_marks(gossip)
        procs[winner].kill()
        moved, successor = time_until_moved(gossip, winner)
        print(f"memberlist failover after SIGKILL: {moved:.2f} s")
        assert moved < 2.0, f"failover took {moved:.2f} s"
        # A takeover is a move between our own nodes: never delayed by a conflict probe.
        assert "probing" not in log_since(gossip, successor, marks)
        assert "probing" in (gossip["logs"] / f"speaker-{winner}.log").read_text()  # the first announcement was
        assert answering_mac(netlab, ns["client"]) == MACS[successor]

    def test_failover_after_link_down_and_rejoin(self, gossip):
        """The winner's link goes down: another node takes over; back up, it rejoins without flapping."""
        netlab, ns = gossip["netlab"], gossip["ns"]
        winner = gossip_winner(gossip)
        netlab.run(ns["client"], f"ping -c 1 -W 0.2 {VIP}", check=False)
        assert neighbour_mac(netlab, ns["client"]) == MACS[winner]
        netlab.run(ns[winner], "ip link set eth0 down")
        moved, successor = time_until_moved(gossip, winner)
        print(f"memberlist failover after link down: {moved:.2f} s")
        assert moved < 2.0, f"failover took {moved:.2f} s"
        others = tuple(n for n in gossip["nodes"] if n != winner)
        assert all(winner not in speaker_status(gossip, n)["live_speakers"] for n in others)
        netlab.run(ns[winner], "ip link set eth0 up")
        # Held down: for the hold-down the others keep the address where it moved.
        time.sleep(2.0)
        assert all(winner not in speaker_status(gossip, n)["live_speakers"] for n in others)
        assert answering_mac(netlab, ns["client"]) == MACS[successor]
        assert gossip_winner(gossip) == winner  # after the hold-down: back, and one node answers

    def test_steady_state_makes_no_api_writes(self, gossip):
        """Settled, three speakers write nothing at all; the only Event is the winner's one nodeAssigned."""
        emu = gossip["emu"]
        winner = gossip_winner(gossip)
        before = sum(emu.request_count(m) for m in WRITES)
        time.sleep(3.0)
        writes = sum(emu.request_count(m) for m in WRITES) - before
        assert writes == 0, [r for r in list(emu.requests)[-50:] if r.method in WRITES]
        events = [e for e in emu.objects("events", "default") if e["reason"] == "nodeAssigned"]
        assert [e["source"]["host"] for e in events] == [winner]
        for node in gossip["nodes"]:
            status = speaker_status(gossip, node)
            assert status["liveness"]["mode"] == "memberlist"
            assert status["liveness"]["members"] == {n: "alive" for n in gossip["nodes"] if n != node}

    def test_sigterm_says_goodbye_and_another_takes_over_at_once(self, gossip):
        """A speaker stopped with SIGTERM exits 0; its goodbye makes another node take over well under a second."""
        netlab, ns, procs = gossip["netlab"], gossip["ns"], gossip["procs"]
        winner = gossip_winner(gossip)
        netlab.run(ns["client"], f"ping -c 1 -W 0.2 {VIP}", check=False)
        procs[winner].terminate()
        moved, _ = time_until_moved(gossip, winner)
        assert procs[winner].wait(10) == 0
        assert moved < 1.0, f"takeover after a goodbye took {moved:.2f} s"


def l2_statuses(emu, service: str = "web") -> list[dict]:
    """The ServiceL2Status objects of Service default/*service*."""
    return [
        o for o in emu.objects("servicel2statuses", NS) if o["metadata"]["labels"]["metallb.io/service-name"] == service
    ]


VIP6 = "2001:db8:1::200"
CONFIG6 = (
    "address-pools:\n- name: l2\n  protocol: layer2\n  addresses: [192.0.2.200/29]\n"
    "- name: l2v6\n  protocol: layer2\n  addresses: [2001:db8:1::200/125]\n"
)


def send_frames(ns: str, frames: list[bytes]) -> None:
    """Send raw Ethernet *frames* on eth0 of namespace *ns* (a raw-socket sender, as any host could)."""

    def run() -> None:
        enter_netns(f"/run/netns/{ns}")
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
            sock.bind(("eth0", 0))
            for frame in frames:
                sock.send(frame)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)


def claims(mac: str, ip: str) -> list[bytes]:
    """The frames a host with *mac* sends to claim *ip*: a gratuitous ARP pair, or an unsolicited NA (O=1)."""
    address = netaddr.IPAddress(ip)
    if address.version == 4:
        return list(ArpAnswer(mac=mac_bytes(mac), address=bytes(address.packed)).gratuitous())
    return [NdpAnswer(mac=mac_bytes(mac), address=bytes(address.packed)).gratuitous()]


def speaker_metrics(cluster: dict, node: str) -> str:
    """The speaker's /metrics text, fetched from the client namespace."""

    def fetch() -> str:
        with urllib.request.urlopen(f"http://{IPS[node]}:7472/metrics", timeout=2) as response:
            return response.read().decode()

    return cluster["client"].submit(fetch).result()


def metallb(cluster: dict, command: str) -> subprocess.CompletedProcess[str]:
    """`metallb COMMAND --kubeconfig ...` against the emulator, run from the client namespace."""
    argv = f"{sys.executable} -m metallb.operator {command} --kubeconfig {cluster['kubeconfig']}"
    return cluster["netlab"].run(cluster["ns"]["client"], f"cd / && PYTHONSAFEPATH=1 {argv}", check=False)


def metallb_status(cluster: dict) -> dict:
    """`metallb status --json` against the emulator, run from the client namespace."""
    return json.loads(metallb(cluster, "status --json").stdout)


def wait_for(what: str, check, cluster: dict, limit: float = 10.0):
    """Poll *check* until it returns something true; that value."""
    deadline = time.monotonic() + limit
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {limit} s\n{logs(cluster)[-3000:]}")
        time.sleep(0.1)
    return value


class TestLayer2Safety:
    """Announcement status and conflict probing with three gossiping speakers."""

    def test_announcement_status_names_the_owner_and_follows_a_failover(self, gossip):
        """One ServiceL2Status (MetalLB's labels and fields) names the announcing node; after a failover, the new one."""
        emu, procs = gossip["emu"], gossip["procs"]
        winner = gossip_winner(gossip)
        found = wait_for("one status", lambda: [o for o in l2_statuses(emu) if o.get("status")], gossip)
        assert len(found) == 1
        status, labels = found[0]["status"], found[0]["metadata"]["labels"]
        assert status == {"node": winner, "serviceName": "web", "serviceNamespace": "default",
                          "interfaces": [{"name": "eth0"}]}  # fmt: skip
        assert labels == {"metallb.io/node": winner, "metallb.io/service-name": "web",
                          "metallb.io/service-namespace": "default"}  # fmt: skip
        gossip["netlab"].run(gossip["ns"]["client"], f"ping -c 1 -W 0.2 {VIP}", check=False)
        procs[winner].kill()
        _, successor = time_until_moved(gossip, winner)
        nodes = wait_for(
            "the status to move",
            lambda: (n := sorted(o["status"]["node"] for o in l2_statuses(emu))) == [successor] and n,
            gossip,
        )
        assert nodes == [successor]  # the dead owner's status is gone too
        assert metallb_status(gossip)["default/web"]["announced"] == successor  # who announces now, not ever

    def test_taken_address_is_not_announced_and_raises_an_event(self, gossip):
        """A Service on an address the client already uses: nobody announces it, a Warning Event names the MAC."""
        emu, netlab, ns = gossip["emu"], gossip["netlab"], gossip["ns"]
        gossip_winner(gossip)
        taken = "192.0.2.201"
        netlab.run(ns["client"], f"ip addr add {taken}/24 dev eth0")
        add_service(emu, "squat", taken, gossip["nodes"])
        events = wait_for(
            "an AddressConflict event",
            lambda: [e for e in emu.objects("events", "default") if e["reason"] == "AddressConflict"],
            gossip,
        )
        assert events[0]["type"] == "Warning" and events[0]["involvedObject"]["name"] == "squat"
        assert "02:00:00:00:01:c0" in events[0]["message"] and taken in events[0]["message"]
        time.sleep(0.5)
        assert l2_statuses(emu, "squat") == []
        reasons = [speaker_status(gossip, n)["not_announced"].get("default/squat", "") for n in gossip["nodes"]]
        assert any(r.startswith("AddressConflict") for r in reasons), reasons
        assert not any(speaker_status(gossip, n)["announced"].get("default/squat") for n in gossip["nodes"])
        squat = metallb_status(gossip)["default/squat"]
        assert squat["announced"] == "" and squat["pending"].startswith("AddressConflict"), squat
        # The Service already announced was not disturbed.
        assert l2_statuses(emu) and len(l2_statuses(emu)) == 1

    def test_drain_moves_the_address_make_before_break(self, gossip):
        """`metallb drain`: the next node announces, the old one withdraws after, and a 10 ms ping loses nothing."""
        emu, netlab, ns = gossip["emu"], gossip["netlab"], gossip["ns"]
        for node in gossip["nodes"]:  # each node serves the VIP (as kube-proxy would) but leaves ARP to the speaker
            netlab.run(ns[node], "sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2")
            netlab.run(ns[node], f"ip addr add {VIP}/32 dev lo")
        winner = gossip_winner(gossip)
        wait_for("the winner's status", lambda: [o for o in l2_statuses(emu) if o.get("status")], gossip)
        netlab.run(ns["client"], f"ping -c 1 -W 0.5 {VIP}", check=False)
        assert neighbour_mac(netlab, ns["client"]) == MACS[winner]
        ping = netlab.popen(ns["client"], ["ping", "-i", "0.01", "-c", "400", "-W", "1", VIP], stdout=subprocess.PIPE)
        time.sleep(0.5)
        marks = log_marks(gossip)
        drained = time.monotonic()
        drain = metallb(gossip, f"drain {winner}")
        assert drain.returncode == 0, drain.stderr
        assert emu.get("nodes", None, winner)["metadata"]["annotations"]["metallb.io/drain"] == "true"
        moved, successor = time_until_moved(gossip, winner)
        assert "probing" not in log_since(gossip, successor, marks)  # a move: not probed
        nodes = wait_for(
            "the old owner to withdraw", lambda: [o["status"]["node"] for o in l2_statuses(emu)] == [successor], gossip
        )
        withdrawn = time.monotonic() - drained
        out = ping.communicate(timeout=30)[0].decode()
        sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
        print(f"drain: moved after {moved:.2f} s, old owner withdrew after {withdrawn:.2f} s; ping {received}/{sent}")
        assert nodes and sent == 400 and received == sent, out
        assert withdrawn < 4.5  # the new owner's status released it, not the 5 s timeout
        assert not speaker_status(gossip, winner)["announced"]
        assert metallb(gossip, f"drain {winner} --undo").returncode == 0
        assert "metallb.io/drain" not in (emu.get("nodes", None, winner)["metadata"].get("annotations") or {})
        wait_for(
            "the address back on the undrained node",
            lambda: answering_mac(netlab, ns["client"]) == MACS[winner],
            gossip,
        )

    def test_claims_while_announcing_ipv6_are_reported_for_strangers_only(self, gossip):
        """While a node announces an IPv6 address, another speaker's unsolicited NA and gratuitous ARP (its MACs
        known through gossip) are no conflict; a stranger's unsolicited NA is: Event, metric and status name it."""
        emu, nodes = gossip["emu"], gossip["nodes"]
        gossip_winner(gossip)
        config = emu.get("configmaps", NS, "config")
        emu.put_object({**config, "data": {"config": CONFIG6}})
        add_service(emu, "web6", VIP6, nodes)
        (owner,) = wait_for(  # its announcement status: probed clean, answered
            "the IPv6 Service answered",
            lambda: [o["status"]["node"] for o in l2_statuses(emu, "web6") if o.get("status")],
            gossip,
        )
        others = [n for n in nodes if n != owner]
        wait_for(  # every speaker knows the others' MACs through the gossip's member meta
            "the speakers' MACs known everywhere",
            lambda: all(
                set(speaker_status(gossip, n)["speaker_macs"]) == {MACS[o] for o in nodes if o != n} for n in nodes
            ),
            gossip,
        )
        v4_owner = next(n for n in nodes if "default/web" in speaker_status(gossip, n)["announced"])
        for friend in others:  # as in a failover back: another of our speakers claims the addresses
            send_frames(gossip["ns"][friend], claims(MACS[friend], VIP6))
            if friend != v4_owner:
                send_frames(gossip["ns"][friend], claims(MACS[friend], VIP))
        stranger = "02:00:00:00:01:c0"
        sent = time.monotonic()
        send_frames(gossip["ns"]["client"], claims(stranger, VIP6))
        events = wait_for(
            "an AddressConflict event for the IPv6 Service",
            lambda: [e for e in emu.objects("events", "default") if e["reason"] == "AddressConflict"],
            gossip,
        )
        took = time.monotonic() - sent
        print(f"a stranger's unsolicited NA: Event recorded after {took:.2f} s")
        assert [e["involvedObject"]["name"] for e in events] == ["web6"], events
        assert stranger in events[0]["message"] and VIP6 in events[0]["message"]
        assert events[0]["source"]["host"] == owner
        problems = speaker_status(gossip, owner)["problems"]
        assert set(problems) == {"default/web6"} and stranger in problems["default/web6"]
        text = speaker_metrics(gossip, owner)
        assert f'metallb_layer2_address_conflicts_total{{ip="{VIP6}",mac="{stranger}"}} 1.0' in text
        for node in nodes:  # no speaker counted another speaker's frames
            metrics = speaker_metrics(gossip, node) if node != owner else text
            assert not [m for m in MACS.values() if f'mac="{m}"' in metrics], node
        web6 = metallb_status(gossip)["default/web6"]
        assert web6["announced"] == owner and web6["pending"].startswith("AddressConflict"), web6
        assert stranger in web6["pending"]
