"""Pure BGP policy: who advertises, which routes, backoff, router ID, and the plugin hook."""

from __future__ import annotations

import attrs
import netaddr
import pytest
from metallb.allocator.interfaces import Announcer, AnnouncerSettings
from metallb.allocator.model import (
    EXCLUDE_LB_LABEL,
    BfdProfile,
    BgpAdvertisement,
    Community,
    Config,
    LabelExpression,
    NodeInfo,
    NodeSelector,
    PeerSpec,
    PoolSpec,
    ServiceView,
)
from metallb.allocator.plugins import get_plugin_manager
from metallb.announcers.bgp import plugin as bgp
from metallb.announcers.bgp.policy import DesiredSet, Route, advertise_reason, routes_for
from metallb.announcers.bgp.session import derive_router_id, peer_label, reconnect_backoff
from prometheus_client import CollectorRegistry

RACK_A = (NodeSelector(match_labels=(("rack", "a"),)),)
NOT_RACK_A = (NodeSelector(match_expressions=(LabelExpression(key="rack", operator="NotIn", values=("a",)),)),)
PEER_ALL = PeerSpec(my_asn=64512, peer_asn=64513, peer_address=netaddr.IPAddress("192.0.2.1"))
PEER_RACK_A = PeerSpec(my_asn=64512, peer_asn=64513, peer_address=netaddr.IPAddress("192.0.2.9"), node_selectors=RACK_A)


def pool(*, selectors: tuple[NodeSelector, ...] = (), advs: tuple[BgpAdvertisement, ...] = ()) -> PoolSpec:
    return PoolSpec(
        name="p",
        kind="address-pools",
        cidrs=(netaddr.IPNetwork("198.51.100.0/24"), netaddr.IPNetwork("2001:db8:ff::/64")),
        advertisements=advs,
        node_selectors=selectors,
    )


def svc(
    *, local: bool = False, ready: frozenset[str] = frozenset(), any_ready: bool = True, **kw: object
) -> ServiceView:
    return ServiceView(
        key="ns/s",
        ips=(netaddr.IPAddress("198.51.100.10"),),
        pool=pool(**kw),  # type: ignore[arg-type]
        local_traffic=local,
        ready_nodes=ready,
        has_ready_endpoints=any_ready,
    )


class TestAdvertiseReason:
    """The pure decision: does this node advertise the service?"""

    @pytest.mark.parametrize(
        ("service", "labels", "peers", "ignore_exclude", "want"),
        [
            # Cluster policy: every node with a peer, while any ready endpoint exists.
            (svc(), {}, (PEER_ALL,), False, None),
            (svc(any_ready=False), {}, (PEER_ALL,), False, "noEndpoints"),
            (svc(ready=frozenset({"other"})), {}, (PEER_ALL,), False, None),
            # Local policy: only nodes with a ready local endpoint.
            (svc(local=True, ready=frozenset({"node-a"})), {}, (PEER_ALL,), False, None),
            (svc(local=True, ready=frozenset({"other"})), {}, (PEER_ALL,), False, "noLocalEndpoints"),
            (svc(local=True), {}, (PEER_ALL,), False, "noLocalEndpoints"),
            # Peers are chosen per node by their node-selectors.
            (svc(), {}, (), False, "noPeers"),
            (svc(), {"rack": "b"}, (PEER_RACK_A,), False, "noPeers"),
            (svc(), {"rack": "a"}, (PEER_RACK_A,), False, None),
            # The pool's node-selectors exclude nodes, whatever the endpoints.
            (svc(selectors=RACK_A), {"rack": "b"}, (PEER_ALL,), False, "nodeNotSelected"),
            (svc(selectors=RACK_A, local=True, ready=frozenset({"node-a"})), {}, (PEER_ALL,), False, "nodeNotSelected"),
            (svc(selectors=RACK_A), {"rack": "a"}, (PEER_ALL,), False, None),
            (svc(selectors=NOT_RACK_A), {"rack": "a"}, (PEER_ALL,), False, "nodeNotSelected"),
            # The exclusion label is honoured unless told otherwise.
            (svc(), {EXCLUDE_LB_LABEL: ""}, (PEER_ALL,), False, "nodeExcluded"),
            (svc(), {EXCLUDE_LB_LABEL: ""}, (PEER_ALL,), True, None),
        ],
    )
    def test_table(self, service, labels, peers, ignore_exclude, want):
        """Each row: service, node labels and peers give the expected reason (None = advertise)."""
        got = advertise_reason(
            service=service, node_name="node-a", labels=labels, peers=peers, ignore_exclude_lb=ignore_exclude
        )
        assert got == want


class TestRoutes:
    """Routes of a service and the de-duplicated desired set."""

    def test_default_advertisement_is_host_route(self):
        """Without advertisements a pool yields one /32 (or /128) per address."""
        s = ServiceView(
            key="ns/a", ips=(netaddr.IPAddress("198.51.100.10"), netaddr.IPAddress("2001:db8:ff::10")), pool=pool()
        )
        assert [str(r.prefix) for r in routes_for(s)] == ["198.51.100.10/32", "2001:db8:ff::10/128"]

    def test_each_advertisement_masks_to_its_length(self):
        """Every advertisement yields the address masked to aggregation-length (v6: aggregation-length-v6)."""
        c = (Community(1 << 16 | 2),)
        advs = (
            BgpAdvertisement(localpref=50, communities=c),
            BgpAdvertisement(aggregation_length=24, aggregation_length_v6=64),
        )
        s = ServiceView(
            key="ns/a",
            ips=(netaddr.IPAddress("198.51.100.10"), netaddr.IPAddress("2001:db8:ff::10")),
            pool=pool(advs=advs),
        )
        assert routes_for(s) == (
            Route(prefix=netaddr.IPNetwork("198.51.100.10/32"), localpref=50, communities=c),
            Route(prefix=netaddr.IPNetwork("198.51.100.0/24")),
            Route(prefix=netaddr.IPNetwork("2001:db8:ff::10/128"), localpref=50, communities=c),
            Route(prefix=netaddr.IPNetwork("2001:db8:ff::/64")),
        )

    def test_aggregates_are_deduplicated_across_services(self):
        """Two services in one /24 aggregate share one route; it stays until the last of them goes."""
        advs = (BgpAdvertisement(aggregation_length=24),)
        a = routes_for(ServiceView(key="ns/a", ips=(netaddr.IPAddress("198.51.100.10"),), pool=pool(advs=advs)))
        b = routes_for(ServiceView(key="ns/b", ips=(netaddr.IPAddress("198.51.100.20"),), pool=pool(advs=advs)))
        desired = DesiredSet()
        assert desired.set("ns/a", a) == {(4, int(netaddr.IPAddress("198.51.100.0")), 24)}
        assert desired.set("ns/b", b) == set()  # same prefix, same attributes: nothing to send
        assert list(desired.by_prefix()) == [netaddr.IPNetwork("198.51.100.0/24")]
        desired.set("ns/a", ())
        assert list(desired.by_prefix()) == [netaddr.IPNetwork("198.51.100.0/24")]
        desired.set("ns/b", ())
        assert desired.by_prefix() == {}

    def test_setting_the_same_routes_is_no_change(self):
        """Announcing a service again with identical routes reports no change."""
        net = netaddr.IPNetwork("198.51.100.10/32")
        desired = DesiredSet()
        assert desired.set("ns/a", (Route(prefix=net),))
        assert not desired.set("ns/a", (Route(prefix=net),))
        assert not desired.set("ns/unknown", ())

    def test_changed_routes_replace_old_ones(self):
        """A service whose address changes loses its old prefix and gains the new one."""
        old, new = netaddr.IPNetwork("198.51.100.10/32"), netaddr.IPNetwork("198.51.100.11/32")
        desired = DesiredSet()
        desired.set("ns/a", (Route(prefix=old),))
        desired.set("ns/a", (Route(prefix=new, localpref=5),))
        assert desired.by_prefix() == {new: Route(prefix=new, localpref=5)}

    def test_conflicting_attributes_pick_smallest_service_key(self):
        """When two services produce one prefix with different attributes, the smallest key wins, whatever the order."""
        net = netaddr.IPNetwork("198.51.100.0/24")
        desired = DesiredSet()
        desired.set("ns/z", (Route(prefix=net, localpref=10),))
        desired.set("ns/a", (Route(prefix=net, localpref=20),))
        assert desired.by_prefix()[net].localpref == 20
        desired.set("ns/a", ())
        assert desired.by_prefix()[net].localpref == 10


class TestSessionHelpers:
    """Backoff, router ID and metric labels."""

    def test_backoff_sequence(self):
        """Pauses are 0, 1, 2, 4 ... seconds, capped at 120, and start from 0 again after a reset."""
        backoff = reconnect_backoff()
        assert [backoff.next() for _ in range(10)] == [0, 1, 2, 4, 8, 16, 32, 64, 120, 120]
        backoff.reset()
        assert [backoff.next() for _ in range(3)] == [0, 1, 2]

    def test_backoff_cap(self):
        """The cap (the plugin's backoff_cap option) bounds every pause."""
        backoff = reconnect_backoff(cap=2)
        assert [backoff.next() for _ in range(5)] == [0, 1, 2, 2, 2]

    def test_router_id_configured_wins(self):
        """A configured IPv4 router ID is used as is."""
        peer = PeerSpec(
            my_asn=1, peer_asn=2, peer_address=netaddr.IPAddress("192.0.2.1"), router_id=netaddr.IPAddress("10.0.0.1")
        )
        assert derive_router_id(peer, netaddr.IPAddress("192.0.2.2"), "n") == netaddr.IPAddress("10.0.0.1")

    def test_router_id_from_local_ipv4(self):
        """Without a configured ID (or with an IPv6 one), the session's local IPv4 address is used."""
        peer = PeerSpec(
            my_asn=1,
            peer_asn=2,
            peer_address=netaddr.IPAddress("192.0.2.1"),
            router_id=netaddr.IPAddress("2001:db8::1"),
        )
        assert derive_router_id(peer, netaddr.IPAddress("192.0.2.2"), "n") == netaddr.IPAddress("192.0.2.2")

    def test_router_id_falls_back_to_crc32_of_node_name(self):
        """An IPv6 session with no IPv4 on its interface uses CRC32(node name) in little-endian bytes."""
        peer = PeerSpec(my_asn=1, peer_asn=2, peer_address=netaddr.IPAddress("2001:db8::1"))
        # CRC32-IEEE of this sentence is 0x414FA339, a well-known check value.
        got = derive_router_id(peer, netaddr.IPAddress("2001:db8:99::1"), "The quick brown fox jumps over the lazy dog")
        assert got == netaddr.IPAddress("57.163.79.65")

    def test_peer_label(self):
        """Labels are addr:port, with brackets for IPv6."""
        assert peer_label(PEER_ALL) == "192.0.2.1:179"
        assert (
            peer_label(PeerSpec(my_asn=1, peer_asn=2, peer_address=netaddr.IPAddress("2001:db8::1"), peer_port=1179))
            == "[2001:db8::1]:1179"
        )


class TestPlugin:
    """The announcer factory hook."""

    def test_hook_returns_announcer_for_bgp_only(self):
        """The hook builds a BGP announcer for protocol bgp and declines any other."""
        pm = get_plugin_manager(entry_points=False, plugins=[bgp])
        settings = AnnouncerSettings(node_name="n", registry=CollectorRegistry())
        assert pm.hook.metallb_make_announcer(protocol="layer2", settings=settings) is None
        announcer = pm.hook.metallb_make_announcer(protocol="bgp", settings=settings)
        try:
            assert isinstance(announcer, Announcer)
            assert announcer.protocol == "bgp"
            assert announcer.sessions() == []
        finally:
            announcer.close()


class TestMasking:
    """The fast prefix computation agrees with the model's own."""

    @pytest.mark.parametrize("address", ["198.51.100.77", "0.0.0.0", "255.255.255.255", "2001:db8:ff::1234", "::"])
    def test_every_length_matches_model_prefix(self, address):
        """For every aggregation length, routes_for masks exactly as BgpAdvertisement.prefix does."""
        ip = netaddr.IPAddress(address)
        for length in range((32 if ip.version == 4 else 128) + 1):
            adv = BgpAdvertisement(aggregation_length=min(length, 32), aggregation_length_v6=length)
            (route,) = routes_for(ServiceView(key="ns/a", ips=(ip,), pool=pool(advs=(adv,))))
            assert route.prefix == adv.prefix(ip)
            assert route.prefix.prefixlen == length


class TestAdvertisementSelection:
    """BGPAdvertisement nodeSelectors and peers in the pure policy."""

    RACK_B_ADV = BgpAdvertisement(node_selectors=RACK_A, aggregation_length=24)

    def test_no_advertisement_selecting_the_node(self):
        """A node no BGP advertisement of the pool selects does not advertise (nodeNotSelected)."""
        s = svc(advs=(BgpAdvertisement(node_selectors=RACK_A),))
        assert advertise_reason(service=s, node_name="n", labels={"rack": "b"}, peers=(PEER_ALL,)) == "nodeNotSelected"
        assert advertise_reason(service=s, node_name="n", labels={"rack": "a"}, peers=(PEER_ALL,)) is None

    def test_routes_of_the_advertisements_selecting_the_node(self):
        """routes_for with a node keeps the advertisements selecting it, each route with its peers."""
        s = svc(advs=(BgpAdvertisement(node_selectors=RACK_A, peers=("p1",)), BgpAdvertisement(aggregation_length=24)))
        on_a = routes_for(s, NodeInfo(name="n", labels={"rack": "a"}))
        assert [(str(r.prefix), sorted(r.peers)) for r in on_a] == [
            ("198.51.100.10/32", ["p1"]),
            ("198.51.100.0/24", []),
        ]
        assert [str(r.prefix) for r in routes_for(s, NodeInfo(name="n", labels={}))] == ["198.51.100.0/24"]

    def test_one_prefix_for_different_peers(self):
        """One prefix from two advertisements for different peers gives two routes."""
        s = svc(advs=(BgpAdvertisement(localpref=10, peers=("p1",)), BgpAdvertisement(localpref=20, peers=("p2",))))
        assert [(r.localpref, sorted(r.peers)) for r in routes_for(s)] == [(10, ["p1"]), (20, ["p2"])]


class TestDesiredSetPerPeer:
    """Each peer's route for a prefix: the routes reaching it, smallest service key first."""

    NET = netaddr.IPNetwork("198.51.100.0/24")

    def key(self) -> tuple[int, int, int]:
        return (4, int(self.NET.ip), 24)

    def test_route_for_each_peer(self):
        """A route naming peers reaches only them; the others get the unrestricted route, or none."""
        desired = DesiredSet()
        desired.set("ns/a", (Route(prefix=self.NET, localpref=10, peers=frozenset({"p1"})),))
        assert desired.route_for(self.key(), "p1").localpref == 10
        assert desired.route_for(self.key(), "p2") is None and desired.by_prefix() == {}
        desired.set("ns/b", (Route(prefix=self.NET, localpref=30),))
        assert desired.route_for(self.key(), "p1").localpref == 10  # ns/a sorts first
        assert desired.route_for(self.key(), "p2").localpref == 30 and desired.by_prefix()[self.NET].localpref == 30

    def test_a_change_for_one_peer_only_is_a_change(self):
        """set() reports a prefix whose route changed for any peer, and not one that changed for none."""
        desired = DesiredSet()
        desired.set("ns/b", (Route(prefix=self.NET, localpref=10),))
        assert desired.set("ns/a", (Route(prefix=self.NET, localpref=20, peers=frozenset({"p1"})),)) == {
            self.key()
        }  # p1 now gets 20
        assert (
            desired.set("ns/c", (Route(prefix=self.NET, localpref=30, peers=frozenset({"p1"})),)) == set()
        )  # ns/a still wins for p1
        assert desired.by_prefix()[self.NET].localpref == 10


class TestUnapplied:
    """What the BGP plugin reports as accepted but not applied, and which peers get no session."""

    def test_peer_fields_not_applied(self):
        """Fields outside APPLIED_PEER_FIELDS set to other than their default are reported, in model order."""
        peer = attrs.evolve(PEER_ALL, name="r", ebgp_multihop=True, bfd_profile="b", connect_time=5.0)
        assert bgp.unapplied_peer_fields(peer) == ("connect_time", "ebgp_multihop", "bfd_profile")
        assert bgp.starts_session(peer)
        assert bgp.unapplied_peer_fields(attrs.evolve(PEER_ALL, keepalive_time=30.0)) == ()  # a third of 90 s

    def test_needed_fields_stop_the_session(self):
        """A VRF, a dynamic ASN or an unnumbered interface keep the peer from starting."""
        for change in (
            {"vrf": "red"},
            {"dynamic_asn": "external", "peer_asn": 0},
            {"interface": "eth0", "peer_address": None},
        ):
            assert not bgp.starts_session(attrs.evolve(PEER_ALL, **change)), change

    def test_hook_names_peers_and_bfd_profiles(self):
        """metallb_unapplied_config reports each peer with unapplied fields, and every BFD profile."""
        config = Config(
            peers=(PEER_ALL, attrs.evolve(PEER_ALL, name="r", vrf="red")),
            bfd_profiles={"b": BfdProfile(name="b")},
        )
        found = bgp.metallb_unapplied_config(config)
        assert [(u.kind, u.name, u.index, u.fields, u.effect) for u in found] == [
            ("BGPPeer", "r", 2, ("vrf",), "the session is not started"),
            (
                "BFDProfile",
                "b",
                0,
                ("name",),
                "the BGP speaker does not run BFD yet; sessions using the profile run without it",
            ),
        ]
