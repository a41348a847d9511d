"""`metallb speaker` end to end: two nodes on a bridge, the API emulator in a third namespace.

Speakers run as real processes inside node namespaces and reach the emulator
over the bridge; a client namespace on the same bridge watches which MAC
answers for the service address.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import pytest
from metallb.announcers.layer2.netlink import enter_netns

NS = "metallb-system"
VIP = "192.0.2.200"
MACS = {"a": "02:00:00:00:01:0a", "b": "02:00:00:00:01:0b"}
CONFIG = "address-pools:\n- name: l2\n  protocol: layer2\n  addresses: [192.0.2.200/29]\n"


def start_in_netns(ns: str, emulator) -> None:
    """Start the emulator so that its listening socket lives in namespace *ns*."""
    box: dict[str, BaseException] = {}

    def target() -> None:
        try:
            enter_netns(f"/run/netns/{ns}")
            emulator.start()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    if "error" in box:
        raise box["error"]


@pytest.fixture(name="cluster")
def _cluster(netlab, tmp_path):
    emu_module = sys.modules["metallb_tests_kube_emulator"]
    switch = netlab.ns("sw")
    netlab.run(switch, "ip link add br0 type bridge && ip link set br0 up")
    hosts = {"emu": ("192.0.2.250", "02:00:00:00:01:fe"), "client": ("192.0.2.100", "02:00:00:00:01:c0")}
    hosts |= {n: (f"192.0.2.{i}", MACS[n]) for i, n in enumerate(("a", "b"), 1)}
    names = {}
    for host, (ip, mac) in hosts.items():
        ns = netlab.ns(host)
        names[host] = ns
        netlab.veth(ns, "eth0", switch, f"p-{host}", mac_a=mac)
        netlab.run(switch, f"ip link set p-{host} master br0")
        netlab.run(ns, f"ip addr add {ip}/24 dev eth0")
    emu = emu_module.KubeEmulator(host=hosts["emu"][0], port=6443, bookmark_interval=0.5)
    start_in_netns(names["emu"], emu)
    kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
    emu.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    emu.put_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "config", "namespace": NS},
            "data": {"config": CONFIG},
        }
    )
    for node in ("a", "b"):
        emu.put_object(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}}
        )
    emu.put_object(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "web"}},
            "status": {"loadBalancer": {"ingress": [{"ip": VIP}]}},
        }
    )
    emu.put_object(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [f"10.0.0.{i}"], "nodeName": n, "conditions": {"ready": True}}
                for i, n in enumerate("ab", 1)
            ],
            "ports": [{"port": 80, "protocol": "TCP"}],
        }
    )
    procs = {}
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    for node in ("a", "b"):
        procs[node] = netlab.popen(
            names[node],
            [
                sys.executable,
                "-m",
                "metallb.operator",
                "speaker",
                "--node-name",
                node,
                "--kubeconfig",
                str(kubeconfig),
                "--namespace",
                NS,
                "--interfaces",
                "eth0",
                "--metrics-port",
                "0",  # Lease renewal and duration: the defaults, which the 2 s target is about
            ],
            env=env,
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / f"speaker-{node}.log", "wb"),
        )
    try:
        yield {"netlab": netlab, "ns": names, "emu": emu, "procs": procs, "logs": tmp_path}
    finally:
        emu.stop()


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
            logs = "".join((cluster["logs"] / f"speaker-{n}.log").read_text() for n in "ab")
            raise AssertionError(f"speakers never renewed their leases\n{logs[-3000:]}")
        time.sleep(0.1)
    time.sleep(1.0)  # one sync after each sees the other's Lease
    mac = None
    while time.monotonic() < deadline and mac is None:
        mac = answering_mac(netlab, ns["client"])
    assert mac in MACS.values(), f"nobody answered ARP for {VIP}"
    return next(n for n, m in MACS.items() if m == mac)


class TestTwoSpeakers:
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
