"""The speaker against a scripted peer: timers, protocol errors, route refresh, config changes, close.

The scripted peer listens in the router namespace; our messages are decoded with scapy.
"""

from __future__ import annotations

import itertools
import logging
import time

import netaddr
import pytest
from metallb.allocator.model import BgpAdvertisement, NodeSelector
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

    def test_peer_notification_in_open_is_logged(self, fake_peer, make_speaker, bgp, caplog):
        """A NOTIFICATION instead of an OPEN is logged with its name."""
        caplog.set_level(logging.WARNING)
        fp = fake_peer()
        make_speaker().configure(bgp.peer(64512, 64513))
        conn = fp.accept()
        conn.recv_type(OPEN)
        conn.send(b"\xff" * 16 + b"\x00\x15\x03\x06\x05")
        bgp.wait_for(lambda: "6/5 Cease: Connection Rejected" in caplog.text, what="the log line")


class TestGarbage:
    """Broken input never hangs or crashes the speaker: it answers with a NOTIFICATION and reconnects."""

    @pytest.mark.parametrize(
        ("data", "code"),
        [
            (b"\x00" * 16 + b"\x00\x13\x04", (1, 1)),  # bad marker
            (b"\xff" * 16 + b"\x00\x05\x04", (1, 2)),  # length below 19
            (b"\xff" * 16 + b"\x00\x13\x07", (1, 3)),  # unknown type
            (b"\xff" * 16 + b"\x00\x1b\x02" + bytes.fromhex("0000 0004 40010502"), (3, 1)),  # attribute overrun
            (b"\xff" * 16 + b"\x00\x1d\x01" + bytes.fromhex("04fc01000ac0000201 00"), (5, 3)),  # OPEN again
        ],
    )
    def test_bad_message_after_establishment(self, fake_peer, make_speaker, bgp, data, code):
        """Malformed messages get the right NOTIFICATION, and the session comes back afterwards."""
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
        """A ROUTE-REFRESH makes the speaker send the whole set again."""
        pool, svc = one_service
        fp = fake_peer()
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        speaker.announcer.announce(svc)
        conn = fp.accept()
        conn.handshake(64513)
        first = collect_updates(conn, 2)
        conn.send(b"\xff" * 16 + b"\x00\x17\x05\x00\x01\x00\x01")
        assert collect_updates(conn, 2) == first

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
