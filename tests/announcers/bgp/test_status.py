"""``BgpAnnouncer.status_of()``: the peers each Service's routes are sent to, against a real BIRD."""

from __future__ import annotations

import threading

import netaddr
import pytest
from metallb.allocator.model import BgpAdvertisement
from metallb.allocator.testing import wait_for

pytestmark = pytest.mark.netns

ASN, ROUTER_ASN = 64512, 64513


class TestStatusOf:
    """What ``ServiceBGPStatus.status.peers`` is made from."""

    def test_names_the_peers_holding_the_routes_and_follows_the_session(self, make_router, make_speaker, bgp):
        """A Service is reported once BIRD holds its route, by BGPPeer name; a dead session drops it and notifies."""
        changed = threading.Event()
        router = make_router("bird", asn=ROUTER_ASN, peer_asn=ASN)
        speaker = make_speaker(notify=changed.set)
        # Service b's advertisement names a peer this node has no session to: it is advertised to nobody.
        pool_a = bgp.bgp_pool("198.51.100.0/28", name="a")
        pool_b = bgp.bgp_pool("198.51.100.16/28", name="b", advertisements=(BgpAdvertisement(peers=("elsewhere",)),))
        speaker.configure(bgp.peer(ASN, ROUTER_ASN, name="tor-a"), pools=(pool_a, pool_b))
        assert speaker.announcer.status_of() == {}
        speaker.announcer.announce(bgp.service("ns/a", "198.51.100.1", pool=pool_a))
        speaker.announcer.announce(bgp.service("ns/b", "198.51.100.17", pool=pool_b))
        wait_for(lambda: speaker.announcer.status_of() == {"ns/a": ("tor-a",)}, what="ns/a advertised to tor-a")
        assert "198.51.100.1/32" in router.routes(4)  # sent means the router has it
        assert changed.is_set()
        changed.clear()
        router.kill()
        wait_for(changed.is_set, what="a notification when the session went down")
        assert speaker.announcer.status_of() == {}

    def test_withdrawn_service_leaves_the_status(self, make_router, make_speaker, bgp):
        """A withdrawn Service is no longer reported; another one sharing nothing with it stays."""
        make_router("bird", asn=ROUTER_ASN, peer_asn=ASN)
        speaker = make_speaker()
        pool = bgp.bgp_pool("198.51.100.0/28")
        speaker.configure(bgp.peer(ASN, ROUTER_ASN, name="tor-a"), pools=(pool,))
        speaker.announcer.announce(bgp.service("ns/a", "198.51.100.1", pool=pool))
        speaker.announcer.announce(bgp.service("ns/b", "198.51.100.2", pool=pool))
        wait_for(lambda: speaker.announcer.status_of() == {"ns/a": ("tor-a",), "ns/b": ("tor-a",)}, what="both")
        speaker.announcer.withdraw("ns/a")
        wait_for(lambda: speaker.announcer.status_of() == {"ns/b": ("tor-a",)}, what="ns/a gone")

    def test_configmap_peers_are_named_by_position(self, make_router, make_speaker, bgp):
        """A ConfigMap peer (no name) is reported as ``peer<N>``, N its position from 1, as ``config convert`` names it."""
        make_router("bird", asn=ROUTER_ASN, peer_asn=ASN)
        speaker = make_speaker()
        pool = bgp.bgp_pool("198.51.100.0/28")
        unreachable = bgp.peer(ASN, ROUTER_ASN, peer_address=netaddr.IPAddress("192.0.2.9"))
        speaker.configure(unreachable, bgp.peer(ASN, ROUTER_ASN), pools=(pool,))
        speaker.announcer.announce(bgp.service("ns/a", "198.51.100.1", pool=pool))
        wait_for(lambda: speaker.announcer.status_of() == {"ns/a": ("peer2",)}, what="ns/a advertised to peer2")
