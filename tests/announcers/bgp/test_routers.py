"""The speaker against real routers (BIRD 2, GoBGP, FRR), each in its own network namespace.

Routes are read back through each router's own CLI (``birdc``, ``gobgp``, ``vtysh``).
"""

from __future__ import annotations

import logging
import time

import netaddr
import pytest
from metallb.allocator.model import BgpAdvertisement, Community, LargeCommunity

pytestmark = pytest.mark.netns

ROUTERS = ["bird", "gobgp", "frr"]
# (our ASN, the router's ASN)
SESSIONS = {
    "ibgp-2octet": (64512, 64512),
    "ebgp-2octet": (64512, 64513),
    "ebgp-4octet": (4200000001, 64513),
    "ibgp-4octet": (4200000001, 4200000001),
}
COMMUNITY = Community(65000 << 16 | 100)
LARGE = LargeCommunity(global_admin=4200000001, local1=7, local2=8)
ADVERTISEMENTS = (
    BgpAdvertisement(localpref=150, communities=(COMMUNITY, LARGE)),
    BgpAdvertisement(aggregation_length=24, aggregation_length_v6=64),
)


def announce_two_services(speaker, bgp, my_asn: int, router_asn: int, **peer_kw):
    """Peer with the router and announce ns/a (v4 + v6) and ns/b (v4) from one pool."""
    pool = bgp.bgp_pool("198.51.100.0/24", "2001:db8:ff::/64", advertisements=ADVERTISEMENTS)
    speaker.configure(bgp.peer(my_asn, router_asn, **peer_kw), pools=(pool,))
    speaker.announcer.announce(bgp.service("ns/a", "198.51.100.10", "2001:db8:ff::10", pool=pool))
    speaker.announcer.announce(bgp.service("ns/b", "198.51.100.20", pool=pool))


ALL_PREFIXES = {"198.51.100.10/32", "198.51.100.20/32", "198.51.100.0/24", "2001:db8:ff::10/128", "2001:db8:ff::/64"}


@pytest.mark.parametrize("session", list(SESSIONS))
@pytest.mark.parametrize("kind", ROUTERS)
class TestRoutes:
    """Sessions establish and routes carry the right attributes, for each router and ASN mix."""

    def test_routes_attributes_aggregation_and_withdrawal(self, kind, session, make_router, make_speaker, bgp):
        """IPv4 and IPv6 routes arrive with next hop, AS path, local preference and communities; withdrawals remove them."""
        my_asn, router_asn = SESSIONS[session]
        ibgp = my_asn == router_asn
        router = make_router(kind, asn=router_asn, peer_asn=my_asn)
        speaker = make_speaker()
        announce_two_services(speaker, bgp, my_asn, router_asn)
        speaker.wait_established()
        table = router.wait_routes(lambda t: set(t) == ALL_PREFIXES)

        path = () if ibgp else (my_asn,)
        for prefix, entry in table.items():
            assert entry.next_hop == (bgp.NODE6 if ":" in prefix else bgp.NODE4), prefix
            assert entry.as_path == path, prefix
        for host in ("198.51.100.10/32", "2001:db8:ff::10/128"):
            assert table[host].communities == ("65000:100",)
            assert table[host].large_communities == ("4200000001:7:8",)
            assert (table[host].local_pref == 150) is ibgp  # LOCAL_PREF goes to iBGP peers only
        assert table["198.51.100.0/24"].communities == ()
        assert speaker.metric("metallb_bgp_session_up") == 1
        assert speaker.metric("metallb_bgp_announced_prefixes_total") == 5
        assert speaker.metric("metallb_bgp_pending_prefixes_total") == 5  # what the peer should have
        assert speaker.metric("metallb_bgp_updates_total") >= 3

        # The /24 aggregate stays while ns/b still needs it, then goes with ns/b.
        speaker.announcer.withdraw("ns/a")
        router.wait_routes(lambda t: set(t) == {"198.51.100.0/24", "198.51.100.20/32"})
        speaker.announcer.withdraw("ns/b")
        router.wait_routes(lambda t: not t)
        assert speaker.metric("metallb_bgp_announced_prefixes_total") == 0
        assert speaker.metric("metallb_bgp_pending_prefixes_total") == 0


@pytest.mark.parametrize("kind", ROUTERS)
class TestIpv6Session:
    """A session over IPv6 carries both families."""

    def test_both_families_over_ipv6(self, kind, make_router, make_speaker, bgp):
        """IPv6 routes use the session address as next hop, IPv4 routes the interface's IPv4 address."""
        router = make_router(kind, asn=64513, peer_asn=4200000001, transport=6)
        speaker = make_speaker()
        announce_two_services(speaker, bgp, 4200000001, 64513, peer_address=netaddr.IPAddress(bgp.RTR6))
        table = router.wait_routes(lambda t: set(t) == ALL_PREFIXES)
        assert table["2001:db8:ff::10/128"].next_hop == bgp.NODE6
        assert table["198.51.100.10/32"].next_hop == bgp.NODE4
        assert speaker.metric("metallb_bgp_session_up", f"[{bgp.RTR6}]:179") == 1

    @pytest.mark.parametrize("transport", [4, 6])
    def test_disable_mp_keeps_to_the_session_family(self, kind, transport, make_router, make_speaker, bgp):
        """With disable-mp an IPv4 session carries only IPv4 routes and an IPv6 session only IPv6 ones."""
        router = make_router(kind, asn=64513, peer_asn=64512, transport=transport)
        speaker = make_speaker()
        address = netaddr.IPAddress(bgp.RTR4 if transport == 4 else bgp.RTR6)
        announce_two_services(speaker, bgp, 64512, 64513, peer_address=address, disable_mp=True)
        own = {p for p in ALL_PREFIXES if (":" in p) == (transport == 6)}
        router.wait_routes(lambda t: set(t) == own)
        time.sleep(0.5)  # nothing of the other family follows
        assert set(router.wait_routes(lambda t: True)) == own
        status = speaker.announcer.sessions()[0]
        assert status.state == "Established"


@pytest.mark.parametrize("kind", ROUTERS)
class TestFailures:
    """Router restarts and misconfiguration."""

    def test_router_restart_brings_routes_back(self, kind, make_router, make_speaker, bgp):
        """After the router is killed and started again, the session re-establishes and every route returns."""
        router = make_router(kind, asn=64513, peer_asn=4200000001)
        speaker = make_speaker()
        announce_two_services(speaker, bgp, 4200000001, 64513)
        router.wait_routes(lambda t: set(t) == ALL_PREFIXES)
        router.kill()
        bgp.wait_for(lambda: speaker.state() != "Established", what="the session to drop")
        assert speaker.metric("metallb_bgp_session_up") == 0
        router = make_router(kind, asn=64513, peer_asn=4200000001)
        router.wait_routes(lambda t: set(t) == ALL_PREFIXES, timeout=15)
        assert speaker.state() == "Established"

    def test_wrong_peer_asn_is_refused_with_notification(self, kind, make_router, make_speaker, bgp, caplog):
        """An OPEN from an unexpected ASN gets NOTIFICATION 2/2 and a log line naming both ASNs."""
        caplog.set_level(logging.WARNING, logger="metallb.announcers.bgp.session")
        make_router(kind, asn=64513, peer_asn=64512)
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64999))
        bgp.wait_for(lambda: "Bad Peer AS" in caplog.text, what="the Bad Peer AS log line")
        assert (
            "peer ASN is 64513 but peer-asn is 64999; sent NOTIFICATION 2/2 OPEN Message Error: Bad Peer AS"
            in caplog.text
        )
        assert speaker.state() != "Established"
        assert "peer-asn is 64999" in speaker.announcer.sessions()[0].last_error

    def test_router_refusing_our_asn_is_logged(self, kind, make_router, make_speaker, bgp, caplog):
        """When the router expects another ASN, its NOTIFICATION is logged with code and name."""
        caplog.set_level(logging.WARNING, logger="metallb.announcers.bgp.session")
        make_router(kind, asn=64513, peer_asn=64999)
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513))
        bgp.wait_for(lambda: "2/2 OPEN Message Error: Bad Peer AS" in caplog.text, what="the router's NOTIFICATION")
        assert speaker.state() != "Established"


@pytest.mark.parametrize("kind", ROUTERS)
class TestDynamicAsn:
    """dynamic-asn: the peer's AS comes from its OPEN, internal or external as configured."""

    @pytest.mark.parametrize(("dynamic", "router_asn"), [("external", 4200000002), ("internal", 64512)])
    def test_session_and_routes(self, kind, dynamic, router_asn, make_router, make_speaker, bgp):
        """Any router AS of the configured kind is accepted; eBGP routes carry our AS, iBGP ones local preference."""
        router = make_router(kind, asn=router_asn, peer_asn=64512)
        speaker = make_speaker()
        announce_two_services(speaker, bgp, 64512, 0, dynamic_asn=dynamic)
        speaker.wait_established()
        table = router.wait_routes(lambda t: set(t) == ALL_PREFIXES)
        host = table["198.51.100.10/32"]
        assert host.as_path == ((64512,) if dynamic == "external" else ())
        assert (host.local_pref == 150) is (dynamic == "internal")  # LOCAL_PREF goes to iBGP peers only

    def test_wrong_kind_is_refused_with_notification(self, kind, make_router, make_speaker, bgp, caplog):
        """An external router where dynamic-asn says internal gets NOTIFICATION 2/2 and a reason in the status."""
        caplog.set_level(logging.WARNING, logger="metallb.announcers.bgp.session")
        make_router(kind, asn=64513, peer_asn=64512)
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 0, dynamic_asn="internal"))
        bgp.wait_for(lambda: "Bad Peer AS" in caplog.text, what="the Bad Peer AS log line")
        assert speaker.state() != "Established"
        assert (
            "peer ASN is 64513 but dynamic-asn is internal (our ASN 64512)"
            in speaker.announcer.sessions()[0].last_error
        )


@pytest.mark.parametrize("kind", ["bird", "frr", "gobgp"])
class TestPasswords:
    """TCP MD5 signatures (RFC 2385)."""

    def test_md5_password_establishes(self, kind, make_router, make_speaker, bgp):
        """With the same password on both ends the session comes up and routes arrive."""
        router = make_router(kind, asn=64513, peer_asn=64512, password="s3cret-key")
        speaker = make_speaker()
        announce_two_services(speaker, bgp, 64512, 64513, password="s3cret-key")
        router.wait_routes(lambda t: set(t) == ALL_PREFIXES)

    def test_wrong_password_times_out_and_says_why(self, kind, make_router, make_speaker, bgp, caplog):
        """A wrong password is dropped silently by the router; the log says the connect timed out and why."""
        caplog.set_level(logging.WARNING, logger="metallb.announcers.bgp.session")
        make_router(kind, asn=64513, peer_asn=64512, password="right")
        speaker = make_speaker(connect_timeout=1)
        speaker.configure(bgp.peer(64512, 64513, password="wrong"))
        bgp.wait_for(lambda: "timed out" in caplog.text, what="the timeout log line")
        assert "TCP connection timed out after 1 s; a TCP MD5 password mismatch is a likely cause" in caplog.text
        assert speaker.state() != "Established"
