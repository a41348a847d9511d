"""Fixtures for the layer-2 tests: small topologies, real clients, announcers in namespaces."""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from metallb.allocator.interfaces import AnnouncerSettings
from metallb.announcers.layer2.announcer import Layer2Announcer
from metallb.announcers.layer2.netlink import enter_netns
from prometheus_client import CollectorRegistry

CLIENT_MAC = "02:00:00:00:00:c0"
NODE_MAC = "02:00:00:00:00:0a"
NODE_B_MAC = "02:00:00:00:00:0b"


def in_netns(ns: str, fn: Callable[[], Any]) -> Any:
    """Run *fn* in a thread inside namespace *ns* and return its result."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            enter_netns(f"/run/netns/{ns}")
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=60)
    if "error" in box:
        raise box["error"]
    return box.get("result")


def exchange(ns: str, ifname: str, frames: list[bytes], *, wait: float = 0.3) -> list[bytes]:
    """Send raw *frames* on *ifname* in *ns*; return the frames received there for *wait* seconds."""

    def run() -> list[bytes]:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)) as sock:
            sock.bind((ifname, 0x0003))
            sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
            for frame in frames:
                sock.send(frame)
            got = []
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                data, addr = sock.recvfrom(2048)
                if addr[2] != socket.PACKET_OUTGOING:
                    got.append(data)
            return got

    result: list[bytes] = in_netns(ns, run)
    return result


class L2Lab:
    """Namespaces with a client and one or two nodes, and announcers running in the nodes.

    Without a bridge: client ``c0`` <-> node ``n0``. With ``bridged=True``: a
    switch namespace holds bridge ``br0`` and the client and both nodes hang
    off it, each on its own veth (``c0``, ``n0`` in node A, ``n0`` in node B).
    """

    def __init__(self, netlab: Any, *, bridged: bool = False) -> None:
        self.netlab = netlab
        self.client = netlab.ns("client")
        self.node = netlab.ns("node")
        self.node_b = ""
        self.announcers: list[Layer2Announcer] = []
        if bridged:
            self.node_b = netlab.ns("nodeb")
            switch = netlab.ns("switch")
            netlab.run(switch, "ip link add br0 type bridge && ip link set br0 up")
            for ns, ifname, mac, port in (
                (self.client, "c0", CLIENT_MAC, "pc"),
                (self.node, "n0", NODE_MAC, "pa"),
                (self.node_b, "n0", NODE_B_MAC, "pb"),
            ):
                netlab.veth(ns, ifname, switch, port, mac_a=mac)
                netlab.run(switch, f"ip link set {port} master br0")
        else:
            netlab.veth(self.client, "c0", self.node, "n0", mac_a=CLIENT_MAC, mac_b=NODE_MAC)
        netlab.run(self.client, "ip addr add 192.0.2.1/24 dev c0 && ip addr add 2001:db8:1::1/64 dev c0 nodad")

    def exchange(self, frames: list[bytes], *, wait: float = 0.3, ifname: str = "c0") -> list[bytes]:
        """Send raw *frames* from the client; return what it received for *wait* seconds."""
        return exchange(self.client, ifname, frames, wait=wait)

    def in_client(self, fn: Callable[[], Any]) -> Any:
        """Run *fn* in a thread inside the client namespace."""
        return in_netns(self.client, fn)

    def announcer(
        self, ns: str | None = None, *, registry: CollectorRegistry | None = None, **settings: Any
    ) -> Layer2Announcer:
        """A layer-2 announcer answering inside *ns* (default: the node), closed at teardown."""
        announcer = Layer2Announcer(
            AnnouncerSettings(
                node_name="node",
                netns=f"/run/netns/{ns or self.node}",
                registry=registry or CollectorRegistry(),
                **settings,
            )
        )
        self.announcers.append(announcer)
        return announcer

    def wait_answering(self, announcer: Layer2Announcer, ifname: str, *ips: object) -> None:
        """Wait until *ifname* answers for *ips* (IPv6 needs the link-local address, which comes late)."""
        wanted = {str(ip) for ip in ips}
        deadline = time.monotonic() + 5
        while not wanted <= set(announcer.responder.answering().get(ifname, ())):
            if time.monotonic() > deadline:
                raise AssertionError(f"{ifname} never answered for {wanted}: {announcer.responder.answering()}")
            time.sleep(0.02)

    def arping(self, ip: object, *, count: int = 1, ns: str | None = None) -> list[str]:
        """MACs of the ARP replies ``arping`` got for *ip* from the client (lower case)."""
        out = self.netlab.run(ns or self.client, f"arping -c {count} -W 0.1 -w 2 -I c0 {ip}", check=False).stdout
        return re.findall(r"bytes from ([0-9a-f:]{17})", out.lower())

    def ndisc6(self, ip: object, *, ns: str | None = None) -> str | None:
        """The MAC ``ndisc6`` got for *ip* from the client, or None without an answer."""
        done = self.netlab.run(ns or self.client, f"ndisc6 -q -1 -r 2 -w 300 {ip} c0", check=False)
        return (done.stdout.strip().lower() or None) if done.returncode == 0 else None

    def neigh(self, ip: object) -> str | None:
        """The MAC the client's kernel has for *ip*, or None."""
        out = self.netlab.run(self.client, f"ip neigh show {ip} dev c0").stdout
        found = re.search(r"lladdr ([0-9a-f:]{17})", out)
        return found.group(1) if found else None

    def close(self) -> None:
        for announcer in self.announcers:
            announcer.close()


@pytest.fixture(name="l2lab")
def _l2lab(netlab: Any) -> Iterator[L2Lab]:
    """A client and a node joined by one veth pair."""
    lab = L2Lab(netlab)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(name="bridged")
def _bridged(netlab: Any) -> Iterator[L2Lab]:
    """A client and two nodes on one bridge."""
    lab = L2Lab(netlab, bridged=True)
    try:
        yield lab
    finally:
        lab.close()
