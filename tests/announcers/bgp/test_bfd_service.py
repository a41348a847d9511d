"""The BFD service's sockets and timers against a scripted peer in the router namespace.

What no real router will do on request: wrong TTLs, silence at a chosen
moment, Polls, a port already taken. The scripted peer is a UDP socket on
192.0.2.1:3784 that reads the TTL and TOS of what we send.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time

import attrs
import netaddr
import pytest
from metallb.allocator.model import BfdProfile
from metallb.announcers.bgp.bfd.machine import Transition
from metallb.announcers.bgp.bfd.metrics import BfdMetrics
from metallb.announcers.bgp.bfd.packet import ControlPacket, State, decode, encode
from metallb.announcers.bgp.bfd.process import BfdProcess
from metallb.announcers.bgp.bfd.service import BfdService, SessionSpec
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.netns

RTR4, NODE4 = "192.0.2.1", "192.0.2.2"
FAST = BfdProfile(receive_interval=100, transmit_interval=100, detect_multiplier=3)
PEER_DISCR = 0x0BADCAFE
_IP_RECVTTL, _IP_RECVTOS, _SO_TIMESTAMPNS = 12, 13, 35


class ScriptedPeer:
    """A hand-driven BFD peer on 192.0.2.1: receives on 3784 with TTL and TOS, sends with the TTL asked for."""

    def __init__(self, lab, bgp, port: int = 3784) -> None:
        with bgp.in_netns(lab.rtr):
            self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.rx.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
            self.rx.setsockopt(socket.IPPROTO_IP, _IP_RECVTOS, 1)
            self.rx.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)  # when the kernel got it, whatever our load
            self.rx.bind(("0.0.0.0", port))
            self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.tx.bind((RTR4, 49999))
        self.port = port
        self.their_discr = 0
        self.stamp = 0.0  # kernel receive time of the last packet

    def recv(self, timeout: float = 3.0) -> tuple[ControlPacket, int, int, tuple[str, int]]:
        """The next packet from us: (packet, TTL, TOS, source address)."""
        self.rx.settimeout(timeout)
        data, anc, _, addr = self.rx.recvmsg(512, 256)
        ttl = tos = -1
        for level, kind, value in anc:
            if (level, kind) == (socket.IPPROTO_IP, socket.IP_TTL):
                ttl = int.from_bytes(value[:4], sys.byteorder)
            elif (level, kind) == (socket.IPPROTO_IP, socket.IP_TOS):
                tos = value[0]
            elif (level, kind) == (socket.SOL_SOCKET, _SO_TIMESTAMPNS):
                sec, nsec = struct.unpack("=qq", value[:16])
                self.stamp = sec + nsec * 1e-9
        pkt = decode(data)
        self.their_discr = pkt.my_discr
        return pkt, ttl, tos, addr

    def send(self, state: State, *, ttl: int = 255, **fields) -> None:
        """Send a packet to our node at 100 ms x 3 (unless *fields* say otherwise)."""
        values = {"detect_mult": 3, "my_discr": PEER_DISCR, "your_discr": self.their_discr}
        values.update(desired_min_tx=100_000, required_min_rx=100_000)
        values.update(fields)
        self.tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        self.tx.sendto(encode(ControlPacket(state=state, **values)), (NODE4, self.port))

    def close(self) -> None:
        self.rx.close()
        self.tx.close()


@attrs.define
class Harness:
    """A service in the node namespace with a private registry, recording state changes."""

    service: BfdService
    registry: CollectorRegistry
    changes: list[Transition]

    def metric(self, name: str) -> float:
        return self.registry.get_sample_value(name, {"peer": RTR4}) or 0.0

    def state(self) -> str:
        sessions = self.service.sessions()
        return sessions[0].state if sessions else "absent"


@pytest.fixture(name="harness")
def _harness(lab, bgp):
    made: list[BfdService] = []

    def make() -> Harness:
        registry = CollectorRegistry()
        changes: list[Transition] = []
        with bgp.in_netns(lab.node):
            svc = BfdService(metrics=BfdMetrics(registry), listener=lambda spec, t: changes.append(t))
        made.append(svc)
        return Harness(svc, registry, changes)

    yield make
    for svc in made:
        svc.close()


@pytest.fixture(name="scripted")
def _scripted(lab, bgp):
    made: list[ScriptedPeer] = []

    def make(port: int = 3784) -> ScriptedPeer:
        made.append(ScriptedPeer(lab, bgp, port))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


def spec(**kwargs) -> SessionSpec:
    return SessionSpec(peer=netaddr.IPAddress(RTR4), profile=kwargs.pop("profile", FAST), **kwargs)


def bring_up(h: Harness, peer: ScriptedPeer) -> None:
    """Three-way handshake by hand: our Down, their Down, our Init, their Up."""
    peer.recv()
    peer.send(State.DOWN, your_discr=0)
    while peer.recv()[0].state != State.INIT:
        pass
    peer.send(State.UP)
    while peer.recv()[0].state != State.UP:
        pass


class TestWhatWeSend:
    """RFC 5881 4 and 5: ports, TTL 255, one source port per session."""

    def test_ttl_tos_and_source_port(self, harness, scripted):
        """Packets go to 3784 with TTL 255 and TOS CS6, from one port in 49152-65535, at 1 s while Down."""
        peer = scripted()
        h = harness()
        h.service.configure([spec()])
        first, ttl, tos, (source, port) = peer.recv()
        assert (ttl, tos, source) == (255, 0xC0, NODE4)
        assert 49152 <= port <= 65535
        assert (first.state, first.your_discr, first.desired_min_tx, first.required_min_rx) == (
            State.DOWN, 0, 1_000_000, 100_000,
        )  # fmt: skip
        assert first.required_min_echo_rx == 0 and not first.cpi
        second, _, _, (_, port2) = peer.recv()
        assert port2 == port and second.my_discr == first.my_discr

    def test_sessions_have_distinct_ports_and_discriminators(self, harness, scripted, lab):
        """Two sessions (two peers) use different source ports and discriminators."""
        lab.run(lab.rtr, "ip addr add 192.0.2.3/24 dev r0")
        peer = scripted()
        h = harness()
        h.service.configure([spec(), attrs.evolve(spec(), peer=netaddr.IPAddress("192.0.2.3"))])
        ports: dict[int, int] = {}
        while len(ports) < 2:
            pkt, _, _, (_, port) = peer.recv()
            ports[pkt.my_discr] = port
        assert len(set(ports.values())) == 2
        assert {s.local_discr for s in h.service.sessions()} == set(ports)


class TestReceiveChecks:
    """TTL checks (RFC 5881 5, RFC 5883 minimum TTL) and the handshake."""

    def test_single_hop_needs_ttl_255(self, harness, scripted):
        """A Down packet with TTL 254 is discarded and counted; with TTL 255 it moves us to Init."""
        peer = scripted()
        h = harness()
        h.service.configure([spec()])
        peer.recv()
        peer.send(State.DOWN, your_discr=0, ttl=254)
        h_wait(lambda: h.metric("metallb_bfd_control_packet_discarded_total") == 1)
        assert h.state() == "Down" and h.metric("metallb_bfd_control_packet_input_total") == 0
        peer.send(State.DOWN, your_discr=0)
        h_wait(lambda: h.state() == "Init")
        assert h.metric("metallb_bfd_control_packet_input_total") == 1

    def test_multihop_minimum_ttl(self, harness, scripted):
        """On 4784 a TTL below the profile's minimum is discarded; at the minimum it is accepted."""
        peer = scripted(port=4784)
        h = harness()
        h.service.configure([spec(multihop=True, profile=attrs.evolve(FAST, minimum_ttl=250))])
        peer.recv()
        peer.send(State.DOWN, your_discr=0, ttl=249)
        h_wait(lambda: h.metric("metallb_bfd_control_packet_discarded_total") == 1)
        peer.send(State.DOWN, your_discr=0, ttl=250)
        h_wait(lambda: h.state() == "Init")

    def test_malformed_packet_is_counted_not_fatal(self, harness, scripted):
        """Garbage from the peer's address is discarded and counted; the session goes on."""
        peer = scripted()
        h = harness()
        h.service.configure([spec()])
        peer.recv()
        peer.tx.sendto(b"\x20\x40garbage", (NODE4, 3784))
        h_wait(lambda: h.metric("metallb_bfd_control_packet_discarded_total") == 1)
        bring_up(h, peer)
        h_wait(lambda: h.state() == "Up")


class TestTimers:
    """Detection, the fast interval after Up, Poll/Final, profile changes."""

    def test_detection_after_silence(self, harness, scripted):
        """Up at 100 ms x 3, then silence: Down with "detection time expired" 0.3 s after the last packet."""
        peer = scripted()
        h = harness()
        h.service.configure([spec()])
        bring_up(h, peer)
        h_wait(lambda: h.state() == "Up")
        peer.send(State.UP, final=True)
        last = time.monotonic()
        h_wait(lambda: h.state() == "Down", timeout=2)
        took = time.monotonic() - last
        assert 0.29 <= took < 0.6, took
        failed = [t for t in h.changes if t.failed]
        assert len(failed) == 1 and failed[0].diag == 1
        assert h.service.sessions()[0].diag == "detection time expired"
        assert h.metric("metallb_bfd_session_down_events_total") == 1 and h.metric("metallb_bfd_session_up") == 0

    def test_up_sends_fast_with_poll_until_final(self, harness, scripted):
        """After Up we send every 75-100 ms with Poll set, until the peer's Final; then without Poll."""
        peer = scripted()
        h = harness()
        h.service.configure([spec()])
        bring_up(h, peer)
        stamps, polls = [], []
        for _ in range(9):
            pkt = peer.recv()[0]
            stamps.append(peer.stamp)
            polls.append(pkt.poll)
            peer.send(State.UP)
        assert all(polls) and pkt.desired_min_tx == 100_000
        gaps = sorted(b - a for a, b in itertools.pairwise(stamps))
        assert 0.07 <= gaps[len(gaps) // 2] <= 0.1 and gaps[-1] < 0.25, gaps  # 75-100 ms, with room for a busy CI
        peer.send(State.UP, final=True)
        while peer.recv()[0].poll:
            peer.send(State.UP)
        assert not peer.recv()[0].poll

    def test_poll_from_the_peer_gets_a_final_at_once(self, harness, scripted):
        """A Poll is answered by a Final within milliseconds, outside the periodic schedule."""
        peer = scripted()
        h = harness()
        h.service.configure([spec()])
        bring_up(h, peer)
        sent = time.time()
        peer.send(State.UP, poll=True, final=False)
        while not (pkt := peer.recv()[0]).final:
            pass
        assert peer.stamp - sent < 0.1 and not pkt.poll  # kernel time of arrival; periodic ones come 75-100 ms apart

    def test_profile_change_polls_without_restart(self, harness, scripted):
        """A new transmit interval goes out with Poll on the same discriminator; the session stays Up."""
        peer = scripted()
        h = harness()
        h.service.configure([spec()])
        bring_up(h, peer)
        peer.send(State.UP, final=True)
        discr = h.service.sessions()[0].local_discr
        h.service.configure([spec(profile=attrs.evolve(FAST, transmit_interval=200))])
        while not (pkt := peer.recv()[0]).poll or pkt.desired_min_tx != 200_000:
            peer.send(State.UP)
        assert pkt.my_discr == discr and pkt.state == State.UP
        peer.send(State.UP, final=True)
        h_wait(lambda: h.service.sessions()[0].tx_interval == 200)
        assert h.state() == "Up"


class TestFailuresOnOurSide:
    """What the kernel refuses never stops the service."""

    def test_enobufs_is_counted_and_logged_once_per_streak(self, harness, scripted, lab, caplog):
        """With a pfifo limit 0 qdisc every send fails with ENOBUFS: counted, one warning, recovered after."""
        caplog.set_level(logging.WARNING, logger="metallb.announcers.bgp.bfd")
        peer = scripted()
        h = harness()
        h.service.configure([spec()])
        bring_up(h, peer)
        stop = threading.Event()

        def keep_up() -> None:  # the peer keeps our session Up while we cannot send
            while not stop.wait(0.05):
                peer.send(State.UP, final=True)

        feeder = threading.Thread(target=keep_up)
        feeder.start()
        try:
            lab.run(lab.node, "tc qdisc replace dev n0 root pfifo limit 0")
            h_wait(lambda: h.metric("metallb_bfd_control_packet_send_errors_total") >= 3)
            assert caplog.text.count("the kernel refused a packet (No buffer space available)") == 1
            lab.run(lab.node, "tc qdisc del dev n0 root")
            h_wait(lambda: "sending again after" in caplog.text)
        finally:
            stop.set()
            feeder.join()
        refused = int(h.metric("metallb_bfd_control_packet_send_errors_total"))
        assert f"sending again after {refused} refused packets" in caplog.text
        assert h.state() == "Up" and not [t for t in h.changes if t.failed]

    def test_port_in_use_is_reported_and_retried(self, harness, scripted, lab, bgp, caplog):
        """Another socket on 3784: the status says why; once it is gone the service binds and comes up."""
        caplog.set_level(logging.ERROR, logger="metallb.announcers.bgp.bfd")
        with bgp.in_netns(lab.node):
            squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            squatter.bind(("0.0.0.0", 3784))
        peer = scripted()
        h = harness()
        h.service.configure([spec()])
        h_wait(lambda: "another BFD daemon" in h.service.sessions()[0].last_error)
        assert "cannot receive on UDP port 3784 (IPv4): Address already in use" in caplog.text
        squatter.close()
        peer.recv()
        deadline = time.monotonic() + 8  # retried every 5 s
        while h.state() != "Init":
            assert time.monotonic() < deadline, "never bound the port"
            peer.send(State.DOWN, your_discr=0)
            time.sleep(0.2)
        assert h.service.sessions()[0].last_error == ""

    def test_echo_mode_is_refused_with_a_clear_error(self, harness, caplog):
        """A profile with echo mode is not run; the log says echo is not supported."""
        h = harness()
        h.service.configure([spec(profile=attrs.evolve(FAST, echo_mode=True))])
        assert h.service.sessions() == []
        assert "echo mode is not supported" in caplog.text


@pytest.fixture(name="process")
def _process(lab, bgp):
    """A BfdProcess whose child runs in the node namespace, with a private registry; closed at teardown."""
    made: list[BfdProcess] = []

    def make() -> Harness:
        registry = CollectorRegistry()
        changes: list[Transition] = []
        with bgp.in_netns(lab.node):
            proc = BfdProcess(metrics=BfdMetrics(registry), listener=lambda spec, t: changes.append(t))
        made.append(proc)
        return Harness(proc, registry, changes)  # type: ignore[arg-type]

    yield make
    for proc in made:
        proc.close()


class TestProcess:
    """BFD in a child process: the same behaviour, reported back to the parent; a dead child is replaced."""

    def test_state_metrics_logs_and_listener_reach_the_parent(self, process, scripted, caplog):
        """The handshake runs in the child; the parent sees the status, the counters, the log lines, the change."""
        caplog.set_level(logging.INFO, logger="metallb.announcers.bgp.bfd")
        peer = scripted()
        h = process()
        h.service.configure([spec()])
        bring_up(h, peer)
        h_wait(lambda: h.state() == "Up")
        h_wait(lambda: h.metric("metallb_bfd_control_packet_output_total") >= 3)  # counters come every 100 ms
        assert h.metric("metallb_bfd_session_up") == 1 and h.metric("metallb_bfd_session_up_events_total") == 1
        assert h.metric("metallb_bfd_control_packet_input_total") >= 2
        assert [(t.old, t.new) for t in h.changes][-1] == (State.INIT, State.UP)
        assert "BFD session to 192.0.2.1: Init -> Up" in caplog.text
        assert any(r.name == "metallb.announcers.bgp.bfd.service" for r in caplog.records)

    def test_a_killed_child_is_replaced_and_reconfigured(self, process, scripted, caplog):
        """SIGKILL to the child: the parent logs it, starts another, and the session runs again."""
        peer = scripted()
        h = process()
        h.service.configure([spec()])
        first = peer.recv()[0].my_discr
        old_pid = h.service.pid
        os.kill(old_pid, signal.SIGKILL)
        h_wait(lambda: "exited with status -9; starting another" in caplog.text)
        deadline = time.monotonic() + 5
        while (pkt := peer.recv()[0]).my_discr == first:
            assert time.monotonic() < deadline
        assert h.service.pid != old_pid and pkt.state == State.DOWN
        assert h.state() == "Down"

    def test_close_says_admin_down_and_ends_the_child(self, process, scripted):
        """On close the peer gets AdminDown and the child process is gone."""
        peer = scripted()
        h = process()
        h.service.configure([spec()])
        bring_up(h, peer)
        pid = h.service.pid
        h.service.close()
        while (pkt := peer.recv()[0]).state != State.ADMIN_DOWN:
            pass
        assert pkt.diag == 7
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert h.service.sessions() == []


def h_wait(predicate, *, timeout: float = 3.0) -> None:
    """Poll *predicate* every 10 ms until true or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.01)
