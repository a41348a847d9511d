"""The gossip runtime on real sockets: members on 127.0.0.x, encrypted UDP and TCP, strangers dropped."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest
from metallb.allocator.testing import wait_for
from metallb.operator.membership import Kind, Packet, Status
from metallb.operator.membership.crypto import Keyring
from metallb.operator.membership.messages import decode, encode
from metallb.operator.membership.node import GossipNode

KEY = Keyring([b"the shared key of the loopback tests"])


def free_port() -> int:
    """A port free for UDP and TCP on every address right now."""
    while True:
        udp, tcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket()
        try:
            udp.bind(("0.0.0.0", 0))
            port = udp.getsockname()[1]
            tcp.bind(("0.0.0.0", port))
            return port
        except OSError:
            continue
        finally:
            udp.close()
            tcp.close()


@pytest.fixture(name="start")
def _start() -> Iterator[Callable[..., dict[str, GossipNode]]]:
    """Start members named n0, n1... on 127.0.0.1, .2...; every member is stopped after the test."""
    started: list[GossipNode] = []

    def start(count: int, *, keys: dict[str, Keyring] | None = None, extra: dict[str, str] | None = None):
        port = free_port()
        members = {f"n{i}": f"127.0.0.{i + 1}" for i in range(count)} | (extra or {})
        nodes = {}
        for name, address in members.items():
            if extra and name in extra:
                continue
            ring = (keys or {}).get(name, KEY)
            nodes[name] = GossipNode(name, keyring=ring, bind=(address, port), members=members).start()
            started.append(nodes[name])
        return nodes

    yield start
    for node in started:
        node.stop(leave=False)


def all_live(nodes: dict[str, GossipNode], expected: set[str]) -> bool:
    return all(node.live() == expected for node in nodes.values())


class TestLoopbackGroup:
    def test_members_see_each_other_then_a_death_then_a_goodbye(self, start):
        """Four members count each other live; one killed is dead for all within 2 s; one that leaves, at once."""
        nodes = start(4)
        wait_for(lambda: all_live(nodes, set(nodes)), timeout=5, what="everyone live everywhere")
        assert all(node.ready() for node in nodes.values())
        killed = time.monotonic()
        nodes.pop("n3").stop(leave=False)
        wait_for(lambda: all_live(nodes, {"n0", "n1", "n2"}), timeout=5, what="n3 dead everywhere")
        assert time.monotonic() - killed < 2.0
        assert all(node.swim.status_of("n3") == Status.DEAD for node in nodes.values())
        left = time.monotonic()
        nodes.pop("n2").stop(leave=True)
        wait_for(lambda: all_live(nodes, {"n0", "n1"}), timeout=5, what="n2 gone everywhere")
        assert time.monotonic() - left < 0.5
        assert all(node.swim.status_of("n2") == Status.LEFT for node in nodes.values())
        assert all(sum(node.dropped.values()) == 0 and node.bytes_sent > 0 for node in nodes.values())

    def test_a_member_with_another_key_is_never_live(self, start):
        """Packets under a wrong key are dropped before the protocol sees them; that member stays out."""
        nodes = start(4, keys={"n3": Keyring([b"some other key, long enough"])})
        wait_for(lambda: all(nodes[n].dropped["decrypt"] > 0 for n in ("n0", "n1", "n2")), timeout=5)
        time.sleep(1.0)
        assert all(nodes[n].live() == {"n0", "n1", "n2"} for n in ("n0", "n1", "n2"))
        assert nodes["n3"].live() == {"n3"}

    def test_a_stranger_with_the_key_is_dropped(self, start):
        """An address no member has is dropped unread, even with the right key; so is a name from another's address."""
        nodes = start(3, extra={"x": "127.0.0.9"})
        stranger = GossipNode("x", keyring=KEY, bind=("127.0.0.9", nodes["n0"].port), members={
            **{n: f"127.0.0.{i + 1}" for i, n in enumerate(nodes)}, "x": "127.0.0.9"}).start()  # fmt: skip
        try:
            # Kubernetes names x as a member for the stranger only: the group's own lists do not have it.
            for node in nodes.values():
                node.set_members({n: f"127.0.0.{i + 1}" for i, n in enumerate(nodes)})
            wait_for(lambda: all(node.dropped["stranger"] > 0 for node in nodes.values()), timeout=5)
        finally:
            stranger.stop(leave=False)
        assert all(node.live() == set(nodes) for node in nodes.values())
        spoof = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        spoof.bind(("127.0.0.2", 0))  # n1's address, claiming to be n2
        before = nodes["n0"].dropped["stranger"]
        packet = Packet(kind=Kind.GOSSIP, sender="n2", incarnation=1)
        spoof.sendto(KEY.encrypt(encode(packet)), ("127.0.0.1", nodes["n0"].port))
        spoof.close()
        wait_for(lambda: nodes["n0"].dropped["stranger"] > before, timeout=2)

    def test_a_tcp_ping_is_answered_on_its_connection(self, start):
        """The probes' TCP fallback: a framed ping over TCP gets its ack back on the same connection."""
        nodes = start(2)
        conn = socket.create_connection(("127.0.0.1", nodes["n0"].port), timeout=2, source_address=("127.0.0.2", 0))
        try:
            data = KEY.encrypt(encode(Packet(kind=Kind.PING, sender="n1", incarnation=1, seq=4242, target="n0")))
            conn.sendall(struct.pack("!I", len(data)) + data)
            (size,) = struct.unpack("!I", conn.recv(4))
            reply = b""
            while len(reply) < size:
                reply += conn.recv(size - len(reply))
        finally:
            conn.close()
        ack = decode(KEY.decrypt(reply))
        assert (ack.kind, ack.sender, ack.seq) == (Kind.ACK, "n0", 4242)

    def test_a_taken_port_fails_at_once(self, start):
        """Building a member on a port in use raises, so the speaker can fall back before starting anything."""
        nodes = start(1)
        with pytest.raises(OSError):
            GossipNode("again", keyring=KEY, bind=("127.0.0.1", nodes["n0"].port))


class TestSuspicionReports:
    def test_a_member_that_stops_answering_is_reported_suspect_a_goodbye_is_not(self):
        """on_suspect hears of a killed member turning from alive to suspect; a member that left is no suspicion."""
        port = free_port()
        members = {"n0": "127.0.0.1", "n1": "127.0.0.2", "n2": "127.0.0.3"}
        seen: list[str] = []
        nodes = {
            name: GossipNode(
                name,
                keyring=KEY,
                bind=(address, port),
                members=members,
                on_suspect=seen.append if name == "n0" else None,
            ).start()
            for name, address in members.items()
        }
        try:
            wait_for(lambda: all_live(nodes, set(nodes)), timeout=5, what="everyone live everywhere")
            before = len(seen)
            nodes["n2"].stop(leave=True)
            wait_for(lambda: nodes["n0"].live() == {"n0", "n1"}, timeout=5, what="n2 gone")
            assert "n2" not in seen[before:]
            nodes["n1"].stop(leave=False)
            wait_for(lambda: nodes["n0"].live() == {"n0"}, timeout=5, what="n1 dead")
            assert "n1" in seen
        finally:
            for node in nodes.values():
                node.stop(leave=False)


def test_meta_reaches_the_other_members_over_the_wire(start):
    """A member's meta (its MACs), set while running, reaches every other member over encrypted UDP."""
    nodes = start(3)
    wait_for(lambda: all_live(nodes, {"n0", "n1", "n2"}), timeout=10, what="all live")
    began = time.monotonic()
    nodes["n1"].set_meta(b"\x01\x02\x00\x00\x00\x01\x0b")
    wait_for(lambda: all(nodes[n].metas().get("n1") == b"\x01\x02\x00\x00\x00\x01\x0b" for n in ("n0", "n2")),
             timeout=5, what="n1's meta everywhere")  # fmt: skip
    took = time.monotonic() - began
    print(f"meta known to every member after {took * 1000:.0f} ms")
    assert nodes["n0"].metas().keys() == {"n1"}
