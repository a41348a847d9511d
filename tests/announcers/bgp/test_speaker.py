"""The speaker against a scripted peer: timers, protocol errors, route refresh, config changes, close.

The scripted peer listens in the router namespace; our messages are decoded with scapy.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

import netaddr
import pytest
from metallb.allocator.model import BgpAdvertisement, Community, NodeSelector
from metallb.announcers.bgp import net as bgp_net
from scapy.config import conf
from scapy.contrib import bgp as sb

sb.bgp_module_conf.use_2_bytes_asn = False
conf.max_list_count = 10_000  # scapy stops decoding a list of withdrawn routes at 100 by default
pytestmark = pytest.mark.netns

UPDATE, NOTIFICATION, KEEPALIVE, OPEN = 2, 3, 4, 1


def notification(body: bytes) -> tuple[int, int]:
    return body[0], body[1]


def announced(body: bytes) -> dict[str, str]:
    """Prefixes of one UPDATE body mapped to their next hop, decoded by scapy."""
    upd = sb.BGPUpdate(body)
    out: dict[str, str] = {}
    attrs = {a.type_code: a.attribute for a in upd.path_attr}
    for n in upd.nlri:
        out[str(n.prefix)] = attrs[3].next_hop
    if 14 in attrs:
        for n in attrs[14].nlri:
            out[str(n.prefix)] = attrs[14].nh_v6_addr
    return out


def collect_updates(conn, count: int) -> dict[str, str]:
    """Read UPDATEs until *count* prefixes were announced."""
    got: dict[str, str] = {}
    while len(got) < count:
        got.update(announced(conn.recv_type(UPDATE)))
    return got


@pytest.fixture(name="one_service")
def _one_service(bgp):
    pool = bgp.bgp_pool("198.51.100.0/24", "2001:db8:ff::/64")
    return pool, bgp.service("ns/a", "198.51.100.10", "2001:db8:ff::10", pool=pool)


class TestHandshake:
    """OPEN exchange and the peer's mistakes during it."""

    def test_open_carries_configured_values(self, fake_peer, make_speaker, bgp):
        """Our OPEN has version 4, AS_TRANS for a 4-octet ASN, the hold time and the configured router ID."""
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(4200000001, 64513, hold_time=30, router_id=netaddr.IPAddress("203.0.113.7")))
        conn = fp.accept()
        op = sb.BGPOpen(conn.recv_type(OPEN))
        assert (op.version, op.my_as, op.hold_time, op.bgp_id) == (4, 23456, 30, "203.0.113.7")

    def test_router_id_defaults_to_session_address(self, fake_peer, make_speaker, bgp):
        """Without router-id, the local IPv4 address of the session is the router ID."""
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513))
        assert sb.BGPOpen(fp.accept().recv_type(OPEN)).bgp_id == bgp.NODE4

    def test_unacceptable_hold_time_gets_notification(self, fake_peer, make_speaker, bgp, caplog):
        """A peer hold time of 2 s is refused with NOTIFICATION 2/6."""
        caplog.set_level(logging.WARNING)
        fp = fake_peer()
        make_speaker().configure(bgp.peer(64512, 64513))
        conn = fp.accept()
        conn.recv_type(OPEN)
        conn.send(bgp.peer_open(64513, hold=2))
        assert notification(conn.recv_type(NOTIFICATION)) == (2, 6)
        bgp.wait_for(lambda: "unacceptable hold time 2 s" in caplog.text, what="the log line")

    def test_silent_peer_times_out_and_is_retried(self, fake_peer, make_speaker, bgp, caplog):
        """A peer that accepts TCP but never answers the OPEN is given up on, logged, and dialled again."""
        caplog.set_level(logging.WARNING)
        fp = fake_peer()
        speaker = make_speaker(connect_timeout=0.5)
        speaker.configure(bgp.peer(64512, 64513))
        first = fp.accept()
        assert first.recv()[0] == OPEN
        assert first.recv(timeout=3) is None  # we hang up after the deadline
        bgp.wait_for(lambda: "no OPEN/KEEPALIVE from the peer within 0.5 s (state OpenSent)" in caplog.text, what="log")
        fp.accept(timeout=5)  # and try again
        started = time.monotonic()
        speaker.announcer.close()
        assert time.monotonic() - started < 3

    def test_connect_time_spaces_the_attempts(self, fake_peer, make_speaker, bgp):
        """With connect-time 1s a peer that hangs up at once is dialled every second, not after 1, 2, 4 s."""
        fp = fake_peer()
        make_speaker(backoff_cap=30).configure(bgp.peer(64512, 64513, connect_time=1))
        stamps = []
        for _ in range(4):
            conn = fp.accept(timeout=3)
            stamps.append(time.monotonic())
            conn.close()
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert all(0.7 < g < 1.6 for g in gaps[1:]), gaps  # the first pause may be 0 or 1 s

    def test_peer_notification_in_open_is_logged(self, fake_peer, make_speaker, bgp, caplog):
        """A NOTIFICATION instead of an OPEN is logged with its name."""
        caplog.set_level(logging.WARNING)
        fp = fake_peer()
        make_speaker().configure(bgp.peer(64512, 64513))
        conn = fp.accept()
        conn.recv_type(OPEN)
        conn.send(b"\xff" * 16 + b"\x00\x15\x03\x06\x05")
        bgp.wait_for(lambda: "6/5 Cease: Connection Rejected" in caplog.text, what="the log line")


MARKER = b"\xff" * 16
KEEPALIVE_MSG = MARKER + b"\x00\x13\x04"


def msg(mtype: int, body_hex: str) -> bytes:
    """A message with a correct header around *body_hex*."""
    body = bytes.fromhex(body_hex.replace(" ", ""))
    return MARKER + (19 + len(body)).to_bytes(2, "big") + bytes([mtype]) + body


def attr(flags: int, code: int, value: str) -> str:
    """A path attribute as hex."""
    return f"{flags:02x} {code:02x} {len(bytes.fromhex(value.replace(' ', ''))):02x} {value}"


def upd(*attributes: str, nlri: str = "18 c63364", withdrawn: str = "") -> bytes:
    """An UPDATE from hex parts."""
    wd = bytes.fromhex(withdrawn.replace(" ", ""))
    at = bytes.fromhex(" ".join(attributes).replace(" ", ""))
    body = len(wd).to_bytes(2, "big") + wd + len(at).to_bytes(2, "big") + at + bytes.fromhex(nlri.replace(" ", ""))
    return MARKER + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body


ORIGIN = attr(0x40, 1, "00")
PATH = attr(0x40, 2, "02 01 0000fc01")
NEXT_HOP = attr(0x40, 3, "c0000201")

# Messages that end the session: (what, bytes, NOTIFICATION code/subcode).
SESSION_RESETS = [
    ("bad marker", b"\x00" * 16 + b"\x00\x13\x04", (1, 1)),
    ("length below 19", MARKER + b"\x00\x05\x04", (1, 2)),
    ("unknown type", MARKER + b"\x00\x13\x07", (1, 3)),
    ("KEEPALIVE with a body", MARKER + b"\x00\x14\x04\x00", (1, 2)),
    ("5000-byte UPDATE without extended messages", MARKER + (5000).to_bytes(2, "big") + b"\x02", (1, 2)),
    ("OPEN again", msg(1, "04fc01000ac0000201 00"), (5, 3)),
    ("NLRI prefix length 33", upd(ORIGIN, PATH, NEXT_HOP, nlri="21 c633640a"), (3, 10)),
    ("withdrawn prefix length 33", upd(nlri="", withdrawn="21 c633640a"), (3, 1)),
    ("attribute length past the message", msg(2, "0000 0010 40 01 01 02"), (3, 1)),
    ("unrecognized well-known attribute", upd(ORIGIN, PATH, NEXT_HOP, attr(0x40, 99, "00")), (3, 2)),
    ("MP_REACH next hop of 5 bytes", upd(ORIGIN, PATH, attr(0x80, 14, "0002 01 05 0102030405 00"), nlri=""), (3, 9)),
    ("MP_UNREACH twice", upd(attr(0x80, 15, "0002 01"), attr(0x80, 15, "0002 01"), nlri=""), (3, 1)),
    ("ROUTE-REFRESH of 5 bytes", msg(5, "0001 00 01 00"), (7, 1)),
]

# UPDATEs handled without a session reset: (what, bytes, approach).
WEAKER = [
    ("NEXT_HOP missing", upd(ORIGIN, PATH), "treat-as-withdraw"),
    ("undefined ORIGIN", upd(attr(0x40, 1, "05"), PATH, NEXT_HOP), "treat-as-withdraw"),
    ("attribute runs past the attribute list", msg(2, "0000 0004 40 01 05 02"), "treat-as-withdraw"),
    ("AS_PATH segment type 9", upd(ORIGIN, attr(0x40, 2, "09 01 0000fc01"), NEXT_HOP), "treat-as-withdraw"),
    ("COMMUNITIES of 3 bytes", upd(ORIGIN, PATH, NEXT_HOP, attr(0xC0, 8, "fde800")), "treat-as-withdraw"),
    ("ORIGIN flagged optional", upd(attr(0xC0, 1, "00"), PATH, NEXT_HOP), "treat-as-withdraw"),
    ("LOCAL_PREF from an eBGP peer", upd(ORIGIN, PATH, NEXT_HOP, attr(0x40, 5, "00000064")), "attribute-discard"),
    ("ATOMIC_AGGREGATE with a value", upd(ORIGIN, PATH, NEXT_HOP, attr(0x40, 6, "01")), "attribute-discard"),
]

# Broken OPENs from the peer: (what, bytes, NOTIFICATION code/subcode).
OPEN_ERRORS = [
    ("version 3", msg(1, "03 fc01 0009 c0000201 00"), (2, 1)),
    ("hold time 1", msg(1, "04 fc01 0001 c0000201 00"), (2, 6)),
    ("router ID 0", msg(1, "04 fc01 0009 00000000 00"), (2, 3)),
    ("optional parameter type 1", msg(1, "04 fc01 0009 c0000201 04 01 02 0000"), (2, 4)),
    ("multiprotocol capability of 2 bytes", msg(1, "04 fc01 0009 c0000201 04 02 02 0102"), (2, 0)),
    ("graceful restart capability of 3 bytes", msg(1, "04 fc01 0009 c0000201 05 02 03 40 01 00"), (2, 0)),
    ("KEEPALIVE instead of OPEN", KEEPALIVE_MSG, (5, 1)),
    ("OPEN longer than 4096 bytes", MARKER + (4097).to_bytes(2, "big") + b"\x01", (1, 2)),
]


class TestMalformedInput:
    """Broken input never hangs or crashes the speaker: RFC 4271 and RFC 7606 decide the answer."""

    @pytest.mark.parametrize(("what", "data", "code"), SESSION_RESETS, ids=[c[0] for c in SESSION_RESETS])
    def test_session_reset_with_the_right_notification(self, fake_peer, make_speaker, bgp, what, data, code):
        """Malformed messages get the RFC's NOTIFICATION, the connection closes, and the session comes back."""
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513))
        conn = fp.accept()
        conn.handshake(64513)
        conn.send(data)
        assert notification(conn.recv_type(NOTIFICATION)) == code
        assert conn.recv() is None
        fp.accept().handshake(64513)
        speaker.wait_established()

    @pytest.mark.parametrize(("what", "data", "action"), WEAKER, ids=[c[0] for c in WEAKER])
    def test_weaker_approaches_keep_the_session(self, fake_peer, make_speaker, bgp, one_service, caplog, what, data,
                                                action):  # fmt: skip
        """Treat-as-withdraw and attribute-discard errors are logged and counted; the session stays up."""
        caplog.set_level(logging.WARNING)
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        conn.handshake(64513)
        collect_updates(conn, 2)
        conn.send(data)
        conn.send(b"\xff" * 16 + b"\x00\x17\x05\x00\x01\x00\x01")  # ROUTE-REFRESH: still answered
        assert collect_updates(conn, 1) == {"198.51.100.10/32": bgp.NODE4}
        assert speaker.metric_labels("metallb_bgp_malformed_updates_total", action=action) == 1
        assert f"malformed UPDATE handled by {action} (RFC 7606)" in caplog.text
        assert speaker.state() == "Established"

    @pytest.mark.parametrize(("what", "data", "code"), OPEN_ERRORS, ids=[c[0] for c in OPEN_ERRORS])
    def test_broken_open(self, fake_peer, make_speaker, bgp, what, data, code):
        """A broken OPEN (or a message instead of it) gets the matching NOTIFICATION and is logged."""
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513))
        conn = fp.accept()
        conn.recv_type(OPEN)
        conn.send(data)
        body = conn.recv_type(NOTIFICATION)
        assert notification(body) == code
        if code == (2, 1):
            assert body[2:] == b"\x00\x04"  # the version we support (RFC 4271 6.2)
        bgp.wait_for(lambda: "sent NOTIFICATION" in speaker.announcer.sessions()[0].last_error, what="last_error")

    def test_ibgp_peer_with_our_router_id(self, fake_peer, make_speaker, bgp):
        """An iBGP peer claiming our router ID is refused with 2/3 (RFC 6286)."""
        fp = fake_peer()
        make_speaker().configure(bgp.peer(64512, 64512))
        conn = fp.accept()
        conn.recv_type(OPEN)
        conn.send(bgp.peer_open(64512, router_id=bgp.NODE4))
        assert notification(conn.recv_type(NOTIFICATION)) == (2, 3)

    def test_update_in_open_confirm(self, fake_peer, make_speaker, bgp):
        """An UPDATE before the peer's KEEPALIVE is a Finite State Machine Error in OpenConfirm (5/2)."""
        fp = fake_peer()
        make_speaker().configure(bgp.peer(64512, 64513))
        conn = fp.accept()
        conn.recv_type(OPEN)
        conn.send(bgp.peer_open(64513) + msg(2, "0000 0000"))
        assert notification(conn.recv_type(NOTIFICATION)) == (5, 2)

    def test_truncated_message_then_close(self, fake_peer, make_speaker, bgp, caplog):
        """Half a message followed by a close is logged as the peer closing, and the speaker reconnects."""
        caplog.set_level(logging.WARNING)
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513))
        conn = fp.accept()
        conn.handshake(64513)
        conn.send(b"\xff" * 16 + b"\x00\x40\x02\x00\x00")
        conn.close()
        fp.accept().handshake(64513)
        speaker.wait_established()
        assert "connection closed by the peer" in caplog.text

    def test_log_lines_are_bounded(self, fake_peer, make_speaker, bgp, caplog):
        """A peer sending thousands of malformed UPDATEs gets 10 log lines; the metric counts all."""
        caplog.set_level(logging.WARNING)
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513))
        conn = fp.accept()
        conn.handshake(64513)
        conn.send(upd(ORIGIN, PATH) * 3000)
        bgp.wait_for(
            lambda: speaker.metric_labels("metallb_bgp_malformed_updates_total", action="treat-as-withdraw") == 3000,
            what="3000 counted",
        )
        assert caplog.text.count("malformed UPDATE handled by") == 10
        assert "further ones are only counted" in caplog.text


class TestIsolation:
    """One peer's misbehaviour, or a slow kernel, never delays another session."""

    @staticmethod
    def keepalive_gaps(conn, seconds: float) -> list[float]:
        """Gaps between KEEPALIVEs from the speaker during *seconds*, answering each."""
        stamps = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            conn.recv_type(KEEPALIVE, timeout=3)
            stamps.append(time.monotonic())
            conn.send(KEEPALIVE_MSG)
        return [b - a for a, b in itertools.pairwise(stamps)]

    @staticmethod
    def answer_keepalives(conn, done: threading.Event) -> None:
        """Answer the speaker's KEEPALIVEs until *done* is set."""
        while not done.is_set():
            try:
                conn.recv_type(KEEPALIVE, timeout=2)  # one comes every second
            except TimeoutError:
                continue
            conn.send(KEEPALIVE_MSG)

    def test_flood_and_garbage_from_one_peer(self, fake_peer, make_speaker, bgp):
        """While one peer floods UPDATEs and then sends garbage, the other keeps its session and keepalive rhythm."""
        good, bad = fake_peer(bgp.RTR6), fake_peer()
        speaker = make_speaker()
        speaker.configure(
            bgp.peer(64512, 64513, hold_time=3, peer_address=netaddr.IPAddress(bgp.RTR6)), bgp.peer(64512, 64513)
        )
        conn = good.accept()
        conn.handshake(64513, hold=3)
        flooder = bad.accept()
        flooder.handshake(64513)
        since = speaker.announcer.sessions()[0].established_since
        flood = (upd(ORIGIN, PATH, NEXT_HOP, nlri="20 c633640a") + upd(ORIGIN, PATH)) * 2000

        def misbehave() -> None:
            for _ in range(20):
                flooder.send(flood)
            flooder.send(b"\x00" * 19)

        thread = threading.Thread(target=misbehave)
        thread.start()
        gaps = self.keepalive_gaps(conn, 4)
        thread.join()
        assert gaps and max(gaps) < 1.5, gaps
        # Keep the good peer talking while the speaker works through the rest of the flood: a
        # silent fake peer would expire its own 3 s hold timer on a loaded machine.
        done = threading.Event()
        answering = threading.Thread(target=self.answer_keepalives, args=(conn, done))
        answering.start()
        try:
            assert notification(flooder.recv_type(NOTIFICATION, timeout=30)) == (1, 1)
        finally:
            done.set()
            answering.join()
        assert speaker.announcer.sessions()[0].established_since == since

    def test_keepalives_on_time_while_another_handshake_waits_for_netlink(self, fake_peer, make_speaker, bgp):
        """A handshake whose rtnetlink dump takes 2.5 s does not delay another session's keepalives (off the loop)."""
        slow = threading.Event()
        dumps = []

        def interface_addresses():
            dumps.append(threading.current_thread().name)
            if slow.is_set():
                time.sleep(2.5)
            return bgp_net.interface_addresses()

        fast, delayed = fake_peer(), fake_peer(bgp.RTR6)
        speaker = make_speaker(interface_addresses=interface_addresses, connect_timeout=10)
        first = bgp.peer(64512, 64513, hold_time=3)
        speaker.configure(first)
        conn = fast.accept()
        conn.handshake(64513, hold=3)
        gaps: list[float] = []
        watcher = threading.Thread(target=lambda: gaps.extend(self.keepalive_gaps(conn, 5)))
        watcher.start()
        conn_time = time.monotonic()
        time.sleep(1.2)  # a keepalive or two first, so a stalled loop would show as one long gap
        slow.set()
        speaker.configure(first, bgp.peer(64512, 64513, peer_address=netaddr.IPAddress(bgp.RTR6)))
        other = delayed.accept()
        started = time.monotonic()
        watcher.join()
        assert len(gaps) >= 3 and max(gaps) < 1.5, (gaps, started - conn_time)
        other.handshake(64513)
        assert time.monotonic() - started > 2  # the OPEN did wait for the slow dump
        bgp.wait_for(lambda: speaker.state(1) == "Established", what="the second session")
        assert all(name.startswith("metallb-bgp-net") for name in dumps), dumps


class TestTimers:
    """Keepalives and the hold timer."""

    def test_keepalives_every_third_of_hold_time(self, fake_peer, make_speaker, bgp):
        """With a negotiated hold time of 3 s, KEEPALIVEs come about every second."""
        fp = fake_peer()
        make_speaker().configure(bgp.peer(64512, 64513, hold_time=30))
        conn = fp.accept()
        conn.handshake(64513, hold=3)
        stamps = []
        while len(stamps) < 3:
            conn.recv_type(KEEPALIVE, timeout=2)
            stamps.append(time.monotonic())
            conn.send(bgp.KEEPALIVE)
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert all(0.7 < g < 1.5 for g in gaps), gaps

    @pytest.mark.parametrize(("keepalive", "peer_hold", "expected"), [(1, 30, 1.0), (5, 3, 1.0)])
    def test_keepalive_time(self, fake_peer, make_speaker, bgp, keepalive, peer_hold, expected):
        """keepalive-time sets the spacing, but never slower than a third of the negotiated hold time."""
        fp = fake_peer()
        make_speaker().configure(bgp.peer(64512, 64513, hold_time=30, keepalive_time=keepalive))
        conn = fp.accept()
        conn.handshake(64513, hold=peer_hold)
        stamps = []
        while len(stamps) < 3:
            conn.recv_type(KEEPALIVE, timeout=2 * expected + 1)
            stamps.append(time.monotonic())
            conn.send(bgp.KEEPALIVE)
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert all(0.7 * expected < g < 1.5 * expected for g in gaps), gaps

    def test_hold_timer_expiry_sends_notification(self, fake_peer, make_speaker, bgp, caplog):
        """A peer that goes silent is dropped with NOTIFICATION 4/0 after the hold time."""
        caplog.set_level(logging.WARNING)
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513, hold_time=3))
        conn = fp.accept()
        conn.handshake(64513)
        started = time.monotonic()
        assert notification(conn.recv_type(NOTIFICATION, timeout=6)) == (4, 0)
        assert 2.5 < time.monotonic() - started < 4.5
        bgp.wait_for(lambda: "hold timer expired: nothing received for 3 s" in caplog.text, what="the log line")


class TestRoutes:
    """What the peer receives."""

    def test_ipv6_next_hop_over_ipv4_session(self, fake_peer, make_speaker, bgp, one_service):
        """Over an IPv4 session, IPv6 routes use the interface's global IPv6 address as next hop."""
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        conn.handshake(64513)
        assert collect_updates(conn, 2) == {"198.51.100.10/32": bgp.NODE4, "2001:db8:ff::10/128": bgp.NODE6}

    def test_ipv6_session_next_hops(self, fake_peer, make_speaker, bgp, one_service):
        """Over an IPv6 session, IPv6 routes use the session address and IPv4 routes the interface's IPv4."""
        pool, svc = one_service
        fp = fake_peer(bgp.RTR6)
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513, peer_address=netaddr.IPAddress(bgp.RTR6)), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        op = sb.BGPOpen(conn.handshake(64513))
        assert op.bgp_id == bgp.NODE4  # first IPv4 address of the session's interface
        assert collect_updates(conn, 2) == {"198.51.100.10/32": bgp.NODE4, "2001:db8:ff::10/128": bgp.NODE6}

    def test_no_ipv6_address_means_no_ipv6_routes(self, lab, fake_peer, make_speaker, bgp, one_service, caplog):
        """Without a global IPv6 address on the session's interface, IPv6 routes are held back and the log says why."""
        caplog.set_level(logging.WARNING)
        lab.run(lab.node, f"ip addr del {bgp.NODE6}/64 dev n0")
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        conn.handshake(64513)
        assert collect_updates(conn, 1) == {"198.51.100.10/32": bgp.NODE4}
        assert "IPv6 routes are not sent: no global IPv6 address on the interface of 192.0.2.2" in caplog.text
        assert speaker.announcer.sessions()[0].announced == 1
        assert speaker.metric("metallb_bgp_pending_prefixes_total") == 1  # the IPv6 route is not counted

    def test_peer_without_ipv6_unicast_gets_no_ipv6_routes(self, fake_peer, make_speaker, bgp, one_service, caplog):
        """A peer that does not negotiate IPv6 unicast gets only IPv4 routes, and the log says why."""
        caplog.set_level(logging.WARNING)
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        conn.handshake(64513, ipv6=False)
        assert collect_updates(conn, 1) == {"198.51.100.10/32": bgp.NODE4}
        assert "IPv6 routes are not sent: the peer did not negotiate IPv6 unicast" in caplog.text
        bgp.wait_for(lambda: speaker.announcer.sessions()[0].announced == 1, what="one prefix announced")

    def test_source_address_is_used_for_the_session_and_next_hop(self, lab, fake_peer, make_speaker, bgp, one_service):
        """With source-address, the session comes from that address and it becomes the next hop and router ID."""
        lab.run(lab.node, "ip addr add 192.0.2.20/24 dev n0")
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513, source_address=netaddr.IPAddress("192.0.2.20")), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        assert conn.sock.getpeername()[0] == "192.0.2.20"
        assert sb.BGPOpen(conn.handshake(64513)).bgp_id == "192.0.2.20"
        assert collect_updates(conn, 2) == {"198.51.100.10/32": "192.0.2.20", "2001:db8:ff::10/128": bgp.NODE6}

    def test_prefixes_are_packed_and_withdrawals_batched(self, fake_peer, make_speaker, bgp):
        """2 000 prefixes with equal attributes arrive in 3 UPDATEs, and their withdrawal in 3 more."""
        pool = bgp.bgp_pool("10.0.0.0/16")
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        conn = fp.accept()
        conn.handshake(64513)
        # One service with 2 000 addresses: one change, so the batching is not split by timing.
        speaker.announcer.announce(
            bgp.service("ns/many", *(f"10.0.{i >> 8}.{i & 255}" for i in range(2000)), pool=pool)
        )
        received: set[str] = set()
        while len(received) < 2000:
            received.update(str(n.prefix) for n in sb.BGPUpdate(conn.recv_type(UPDATE)).nlri)
        bgp.wait_for(lambda: speaker.metric("metallb_bgp_updates_total") == 3, what="3 UPDATEs")
        speaker.announcer.withdraw("ns/many")
        withdrawn: set[str] = set()
        while len(withdrawn) < 2000:
            withdrawn.update(str(n.prefix) for n in sb.BGPUpdate(conn.recv_type(UPDATE)).withdrawn_routes)
        assert withdrawn == received
        bgp.wait_for(lambda: speaker.metric("metallb_bgp_updates_total") == 6, what="3 more UPDATEs")

    def test_route_refresh_resends_everything(self, fake_peer, make_speaker, bgp, one_service):
        """A ROUTE-REFRESH makes the speaker send every route of that family again; other families are ignored."""
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        conn.handshake(64513)
        first = collect_updates(conn, 2)
        conn.send(b"\xff" * 16 + b"\x00\x17\x05\x00\x01\x00\x01")
        assert collect_updates(conn, 1) == {"198.51.100.10/32": bgp.NODE4}
        conn.send(b"\xff" * 16 + b"\x00\x17\x05\x00\x02\x00\x01")
        assert collect_updates(conn, 1) == {"2001:db8:ff::10/128": bgp.NODE6}
        conn.send(b"\xff" * 16 + b"\x00\x17\x05\x00\x01\x00\x80")  # SAFI 128: not ours, ignored
        conn.send(b"\xff" * 16 + b"\x00\x17\x05\x00\x02\x00\x01")
        assert collect_updates(conn, 1) == {"2001:db8:ff::10/128": bgp.NODE6}
        assert set(first) == {"198.51.100.10/32", "2001:db8:ff::10/128"}

    def test_reconnect_resends_whole_set(self, fake_peer, make_speaker, bgp, one_service):
        """After the connection drops, the new session receives the full desired set, including changes made meanwhile."""
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        conn.handshake(64513)
        collect_updates(conn, 2)
        conn.close()
        speaker.announcer.announce(bgp.service("ns/b", "198.51.100.20", pool=pool))
        conn = fp.accept()
        conn.handshake(64513)
        assert set(collect_updates(conn, 3)) == {"198.51.100.10/32", "198.51.100.20/32", "2001:db8:ff::10/128"}

    def test_close_withdraws_then_ceases(self, fake_peer, make_speaker, bgp, one_service):
        """close() withdraws every prefix, then sends NOTIFICATION 6/2 (Administrative Shutdown)."""
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        conn.handshake(64513)
        collect_updates(conn, 2)
        speaker.announcer.close()
        upd = sb.BGPUpdate(conn.recv_type(UPDATE))
        assert [str(n.prefix) for n in upd.withdrawn_routes] == ["198.51.100.10/32"]
        unreach = sb.BGPUpdate(conn.recv_type(UPDATE)).path_attr[0].attribute
        assert [str(n.prefix) for n in unreach.afi_safi_specific.withdrawn_routes] == ["2001:db8:ff::10/128"]
        assert notification(conn.recv_type(NOTIFICATION)) == (6, 2)


class TestConfigChanges:
    """Sessions follow the configuration and the node's labels."""

    def test_unchanged_peer_keeps_its_session(self, fake_peer, make_speaker, bgp, one_service):
        """Re-applying a config with the same peer neither drops nor re-dials the session."""
        pool, _ = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        fp.accept().handshake(64513)
        speaker.wait_established()
        since = speaker.announcer.sessions()[0].established_since
        speaker.configure(bgp.peer(64512, 64513), pools=(pool, bgp.bgp_pool("203.0.113.0/24", name="other")))
        assert speaker.announcer.sessions()[0].established_since == since
        fp.listener.settimeout(0.3)
        with pytest.raises(TimeoutError):
            fp.listener.accept()

    def test_removed_peer_gets_cease_peer_deconfigured(self, fake_peer, make_speaker, bgp, one_service):
        """A peer dropped from the config gets NOTIFICATION 6/3 and its metrics disappear."""
        pool, _ = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        conn = fp.accept()
        conn.handshake(64513)
        speaker.wait_established()
        speaker.configure(pools=(pool,))
        assert notification(conn.recv_type(NOTIFICATION)) == (6, 3)
        assert speaker.announcer.sessions() == []
        assert speaker.metric("metallb_bgp_session_up") is None

    def test_node_labels_select_peers(self, fake_peer, make_speaker, bgp, one_service):
        """A peer whose node-selectors stop matching the node's labels is disconnected; matching again reconnects."""
        pool, _ = one_service
        rack_a = (NodeSelector(match_labels=(("rack", "a"),)),)
        fp = fake_peer()
        speaker = make_speaker(labels={"rack": "a"})
        peer = bgp.peer(64512, 64513, node_selectors=rack_a)
        speaker.configure(peer, pools=(pool,))
        conn = fp.accept()
        conn.handshake(64513)
        speaker.node = speaker.node.__class__(name="node-a", labels={"rack": "b"})
        speaker.configure(peer, pools=(pool,))
        assert notification(conn.recv_type(NOTIFICATION)) == (6, 3)
        speaker.node = speaker.node.__class__(name="node-a", labels={"rack": "a"})
        speaker.configure(peer, pools=(pool,))
        fp.accept().handshake(64513)
        speaker.wait_established()


BIG = BgpAdvertisement(communities=tuple(Community(65000 << 16 | i) for i in range(2000)))


def big_pool(bgp):
    """A pool whose routes carry 2 000 communities (8 000 bytes of attributes)."""
    return bgp.bgp_pool("198.51.100.0/24", advertisements=(BIG,))


class TestMessageSize:
    """Routes whose attributes alone exceed 4096 bytes need RFC 8654 extended messages."""

    def test_refused_without_extended_messages(self, fake_peer, make_speaker, bgp, caplog):
        """The big route is not sent; a log line, the refused gauge, status and refusals() say why; others flow."""
        caplog.set_level(logging.WARNING)
        small, big = bgp.bgp_pool("203.0.113.0/24", name="small"), big_pool(bgp)
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(small, big))
        speaker.announcer.announce(bgp.service("ns/big", "198.51.100.20", pool=big))
        speaker.announcer.announce(bgp.service("ns/small", "203.0.113.5", pool=small))
        conn = fp.accept()
        assert sb.BGPOpen(conn.recv_type(OPEN)).opt_params  # we offer extended messages ...
        conn.send(bgp.peer_open(64513) + bgp.KEEPALIVE)  # ... the peer does not
        assert collect_updates(conn, 1) == {"203.0.113.5/32": bgp.NODE4}
        bgp.wait_for(lambda: speaker.metric("metallb_bgp_refused_prefixes") == 1, what="refused gauge")
        status = speaker.announcer.sessions()[0]
        assert (status.state, status.refused, status.extended_messages) == ("Established", 1, False)
        assert "the peer did not negotiate extended messages (RFC 8654)" in status.refused_reason
        reasons = speaker.announcer.refusals()
        assert list(reasons) == ["ns/big"]
        assert reasons["ns/big"].startswith("route 198.51.100.20/32 not sent to 192.0.2.1:179: an UPDATE with")
        assert "1 routes not sent (198.51.100.20/32)" in caplog.text
        assert speaker.metric("metallb_bgp_pending_prefixes_total") == 1
        # Gone from the desired set, gone from the refusals.
        speaker.announcer.withdraw("ns/big")
        bgp.wait_for(lambda: speaker.metric("metallb_bgp_refused_prefixes") == 0, what="refusal cleared")
        assert speaker.announcer.refusals() == {}

    def test_sent_with_extended_messages(self, fake_peer, make_speaker, bgp):
        """A peer that negotiated extended messages gets the route in one UPDATE over 4096 bytes."""
        big = big_pool(bgp)
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(big,))
        speaker.announcer.announce(bgp.service("ns/big", "198.51.100.20", pool=big))
        conn = fp.accept()
        conn.handshake(64513, extended=True)
        body = conn.recv_type(UPDATE)
        assert 8000 < len(body) < 65535
        assert announced(body) == {"198.51.100.20/32": bgp.NODE4}
        assert speaker.announcer.sessions()[0].extended_messages
        assert speaker.announcer.refusals() == {}

    def test_route_growing_too_large_is_withdrawn(self, fake_peer, make_speaker, bgp):
        """A route already at the peer whose new attributes no longer fit is withdrawn, not left stale."""
        small = bgp.bgp_pool("198.51.100.0/24")
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(small,))
        speaker.announcer.announce(bgp.service("ns/a", "198.51.100.20", pool=small))
        conn = fp.accept()
        conn.handshake(64513)
        assert collect_updates(conn, 1) == {"198.51.100.20/32": bgp.NODE4}
        speaker.announcer.announce(bgp.service("ns/a", "198.51.100.20", pool=big_pool(bgp)))
        withdrawn = sb.BGPUpdate(conn.recv_type(UPDATE)).withdrawn_routes
        assert [str(n.prefix) for n in withdrawn] == ["198.51.100.20/32"]
        bgp.wait_for(lambda: speaker.announcer.sessions()[0].refused == 1, what="refused")


def end_of_rib(body: bytes) -> int | None:
    """The AFI of an End-of-RIB UPDATE body, else None."""
    if body == b"\x00\x00\x00\x00":
        return 1
    if body == bytes.fromhex("0000 0006 800f03 0002 01"):
        return 2
    return None


class TestGracefulRestart:
    """RFC 4724 on our side: the capability, End-of-RIB, and closing without a NOTIFICATION."""

    def test_capability_restart_bit_and_forwarding_flags(self, fake_peer, make_speaker, bgp):
        """The OPEN offers GR with 120 s and F bits; R is set on the first session only."""
        fp = fake_peer()
        speaker = make_speaker(forwarding_preserved=True)
        speaker.configure(bgp.peer(64512, 64513, enable_graceful_restart=True))
        conn = fp.accept()
        op = conn.handshake(64513, graceful=True)
        assert bytes.fromhex("40 0a 8078 0001 01 80 0002 01 80") in op
        assert speaker.announcer.sessions()[0].graceful_restart
        conn.close()
        assert bytes.fromhex("40 0a 0078 0001 01 80 0002 01 80") in fp.accept().handshake(64513, graceful=True)

    def test_forwarding_flag_follows_time_since_boot(self, fake_peer, make_speaker, bgp):
        """Derived F bit: set when the kernel has been up longer than the restart time (else it may have rebooted)."""
        fp = fake_peer()
        speaker = make_speaker(restart_time=30)
        speaker.configure(bgp.peer(64512, 64513, enable_graceful_restart=True))
        flags = "80" if bgp_net.seconds_since_boot() > 30 else "00"
        assert bytes.fromhex(f"40 0a 801e 0001 01 {flags} 0002 01 {flags}") in fp.accept().handshake(64513)

    def test_no_capability_unless_enabled(self, fake_peer, make_speaker, bgp):
        """Without enable_graceful_restart, no GR capability and no End-of-RIB."""
        fp = fake_peer()
        make_speaker().configure(bgp.peer(64512, 64513))
        conn = fp.accept()
        assert b"\x40\x0a" not in conn.handshake(64513, graceful=True)
        conn.sock.settimeout(1.5)
        with pytest.raises(TimeoutError):
            conn.recv_type(UPDATE, timeout=1.5)

    def test_end_of_rib_after_initial_update_once_settled(self, fake_peer, make_speaker, bgp, one_service):
        """Routes first, then End-of-RIB for IPv4 and IPv6, sent only once the desired set was quiet for the delay."""
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker(end_of_rib_delay=0.6)
        speaker.configure(bgp.peer(64512, 64513, enable_graceful_restart=True), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        conn.handshake(64513, graceful=True)
        up = time.monotonic()
        time.sleep(0.3)
        speaker.announcer.announce(bgp.service("ns/late", "198.51.100.30", pool=pool))  # restarts the quiet time
        routes: dict[str, str] = {}
        eors = []
        while len(eors) < 2:
            body = conn.recv_type(UPDATE)
            if (afi := end_of_rib(body)) is not None:
                eors.append((afi, time.monotonic() - up))
            else:
                assert not eors, "a route after End-of-RIB"
                routes.update(announced(body))
        assert set(routes) == {"198.51.100.10/32", "198.51.100.30/32", "2001:db8:ff::10/128"}
        assert [a for a, _ in eors] == [1, 2]
        assert 0.8 < eors[0][1] < 1.6, eors

    def test_close_keeps_routes_with_the_peer(self, fake_peer, make_speaker, bgp, one_service, caplog):
        """close() with GR negotiated sends neither withdrawals nor a NOTIFICATION: the TCP connection just ends."""
        caplog.set_level(logging.INFO)
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker(end_of_rib_delay=0)
        speaker.configure(bgp.peer(64512, 64513, enable_graceful_restart=True), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        conn.handshake(64513, graceful=True)
        collect_updates(conn, 2)
        speaker.announcer.close()
        rest = conn.recv_all()
        assert [m for m in rest if m[0] != UPDATE or end_of_rib(m[1]) is None] == []
        assert "closed for a graceful restart: no NOTIFICATION, the peer keeps our 2 routes" in caplog.text

    def test_close_without_peer_support_withdraws(self, fake_peer, make_speaker, bgp, one_service):
        """If the peer did not offer GR, close() withdraws and sends Cease as always."""
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513, enable_graceful_restart=True), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        conn.handshake(64513)
        collect_updates(conn, 2)
        speaker.announcer.close()
        assert notification(conn.recv_type(NOTIFICATION)) == (6, 2)

    def test_session_knobs_are_checked(self, bgp):
        """A restart time beyond 12 bits is refused when the session is built."""
        from metallb.announcers.bgp.metrics import BgpMetrics
        from metallb.announcers.bgp.session import Session
        from prometheus_client import CollectorRegistry

        with pytest.raises(ValueError, match="restart_time 5000 is not within 0..4095"):
            Session(bgp.peer(64512, 64513), node_name="n", desired={}, desired_counts={}, restart_time=5000,
                    metrics=BgpMetrics(CollectorRegistry()))  # fmt: skip


class TestFailHook:
    """The hook BFD uses: bring a session down at once."""

    def test_fail_session_sends_bfd_down_and_reconnects(self, fake_peer, make_speaker, bgp, caplog):
        """fail_session() sends Cease/BFD Down, closes, logs the reason, and dials again."""
        caplog.set_level(logging.WARNING)
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513))
        conn = fp.accept()
        conn.handshake(64513)
        speaker.announcer.fail_session(netaddr.IPAddress(bgp.RTR4), "BFD session went down")
        assert notification(conn.recv_type(NOTIFICATION)) == (6, 10)
        assert conn.recv() is None
        bgp.wait_for(lambda: "BFD session went down" in caplog.text, what="the log line")
        fp.accept().handshake(64513)
        speaker.wait_established()

    def test_fail_before_established_is_ignored(self, make_speaker, bgp):
        """Failing a session that is not up changes nothing."""
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513, peer_address=netaddr.IPAddress("192.0.2.77")))
        speaker.announcer.fail_session(netaddr.IPAddress("192.0.2.77"), "BFD down")
        assert speaker.state() in ("Idle", "Connect")


class TestFlapDamping:
    """A prefix is advertised again no sooner than the damping interval after its previous advertisement."""

    def test_readvertisement_waits_for_the_interval(self, fake_peer, make_speaker, bgp, one_service):
        """Withdraw at once, re-advertise only when the interval since the first advertisement is over."""
        pool = bgp.bgp_pool("198.51.100.0/24")
        svc = bgp.service("ns/flappy", "198.51.100.10", pool=pool)
        fp = fake_peer()
        speaker = make_speaker(flap_interval=1.5)
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        conn = fp.accept()
        conn.handshake(64513)
        before = time.monotonic()
        speaker.announcer.announce(svc)
        assert collect_updates(conn, 1) == {"198.51.100.10/32": bgp.NODE4}
        first = time.monotonic()
        for _ in range(3):  # the service flaps three times quickly
            speaker.announcer.withdraw("ns/flappy")
            time.sleep(0.05)
            speaker.announcer.announce(svc)
            time.sleep(0.05)
        assert [str(n.prefix) for n in sb.BGPUpdate(conn.recv_type(UPDATE)).withdrawn_routes] == ["198.51.100.10/32"]
        bgp.wait_for(lambda: speaker.registry.get_sample_value("metallb_bgp_damped_prefixes") == 1, what="held")
        assert collect_updates(conn, 1) == {"198.51.100.10/32": bgp.NODE4}
        # The first advertisement went out between *before* and *first* (a loaded machine may
        # deliver it late), so the interval bounds the re-advertisement from both sides.
        now = time.monotonic()
        assert now - before > 1.45 and now - first < 2.5, (now - before, now - first)
        assert speaker.registry.get_sample_value("metallb_bgp_damped_prefixes") == 0
        conn.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            conn.recv_type(UPDATE, timeout=0.5)  # the flaps left nothing else to send

    def test_withdrawn_while_held_is_never_advertised(self, fake_peer, make_speaker, bgp):
        """A prefix wanted again and then withdrawn within the interval is not advertised at its end."""
        pool = bgp.bgp_pool("198.51.100.0/24")
        svc = bgp.service("ns/flappy", "198.51.100.10", pool=pool)
        fp = fake_peer()
        speaker = make_speaker(flap_interval=1.0)
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        conn = fp.accept()
        conn.handshake(64513)
        speaker.announcer.announce(svc)
        collect_updates(conn, 1)
        speaker.announcer.withdraw("ns/flappy")
        conn.recv_type(UPDATE)
        speaker.announcer.announce(svc)
        time.sleep(0.2)
        speaker.announcer.withdraw("ns/flappy")
        conn.sock.settimeout(1.5)
        with pytest.raises(TimeoutError):
            conn.recv_type(UPDATE, timeout=1.5)

    def test_off_with_zero(self, fake_peer, make_speaker, bgp):
        """flap_interval=0 re-advertises at once."""
        pool = bgp.bgp_pool("198.51.100.0/24")
        svc = bgp.service("ns/flappy", "198.51.100.10", pool=pool)
        fp = fake_peer()
        speaker = make_speaker(flap_interval=0)
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        conn = fp.accept()
        conn.handshake(64513)
        speaker.announcer.announce(svc)
        collect_updates(conn, 1)
        speaker.announcer.withdraw("ns/flappy")
        conn.recv_type(UPDATE)
        started = time.monotonic()
        speaker.announcer.announce(svc)
        assert collect_updates(conn, 1) == {"198.51.100.10/32": bgp.NODE4}
        assert time.monotonic() - started < 0.5


class TestAdvertisementPeersAndNodes:
    """BGPAdvertisement peers and nodeSelectors reach the sessions."""

    def test_each_peer_gets_the_routes_of_the_advertisements_naming_it(self, fake_peer, make_speaker, bgp):
        """Peer "a" gets the /32 of the advertisement naming it, peer "b" the /24 of the one naming b."""
        pool = bgp.bgp_pool(
            "198.51.100.0/24",
            advertisements=(BgpAdvertisement(peers=("a",)), BgpAdvertisement(aggregation_length=24, peers=("b",))),
        )
        fa, fb = fake_peer(), fake_peer(bgp.RTR6)
        speaker = make_speaker()
        speaker.configure(
            bgp.peer(64512, 64513, name="a"),
            bgp.peer(64512, 64513, name="b", peer_address=netaddr.IPAddress(bgp.RTR6)),
            pools=(pool,),
        )
        speaker.announcer.announce(bgp.service("ns/s", "198.51.100.10", pool=pool))
        conn_a, conn_b = fa.accept(), fb.accept()
        conn_a.handshake(64513)
        conn_b.handshake(64513)
        assert collect_updates(conn_a, 1) == {"198.51.100.10/32": bgp.NODE4}
        assert collect_updates(conn_b, 1) == {"198.51.100.0/24": bgp.NODE4}
        assert list(map(str, speaker.announcer.desired("a"))) == ["198.51.100.10/32"]
        assert speaker.announcer.desired() == {}  # a peer no advertisement names gets neither

    def test_advertisements_selecting_other_nodes_are_not_sent(self, fake_peer, make_speaker, bgp):
        """Only the advertisements whose nodeSelectors select this node make routes here."""
        rack_b = (NodeSelector(match_labels=(("rack", "b"),)),)
        pool = bgp.bgp_pool(
            "198.51.100.0/24",
            advertisements=(BgpAdvertisement(node_selectors=rack_b), BgpAdvertisement(aggregation_length=24)),
        )
        fp = fake_peer()
        speaker = make_speaker(labels={"rack": "a"})
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        speaker.announcer.announce(bgp.service("ns/s", "198.51.100.10", pool=pool))
        conn = fp.accept()
        conn.handshake(64513)
        assert collect_updates(conn, 1) == {"198.51.100.0/24": bgp.NODE4}

    def test_peer_with_fields_not_applied_that_need_them_gets_no_session(self, fake_peer, make_speaker, bgp, caplog):
        """A peer with a VRF is not started (the speaker has no VRFs yet); one with ebgp_multihop is."""
        caplog.set_level(logging.WARNING)
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513, name="red", vrf="red"))
        assert speaker.announcer.sessions() == []
        assert "BGP peer red is not started" in caplog.text
        speaker.configure(bgp.peer(64512, 64513, name="far", ebgp_multihop=True))
        fp.accept().handshake(64513)
        speaker.wait_established()
