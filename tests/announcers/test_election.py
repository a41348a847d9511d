"""The layer-2 election: a pure function of the service, the nodes and their state."""

from __future__ import annotations

import hashlib
import itertools
import random

import attrs
import netaddr
import pytest
from metallb.allocator.model import (
    EXCLUDE_LB_LABEL,
    ClusterView,
    L2Advertisement,
    NodeInfo,
    NodeSelector,
    PoolSpec,
    ServiceView,
)
from metallb.announcers.election import candidates, rank, reason_not_to_announce, winner
from metallb.announcers.layer2.announcer import pool_interfaces

NODES = ("iris1", "iris2", "iris3", "iris4")
VIP = netaddr.IPAddress("192.0.2.10")


def pool(*selectors: NodeSelector) -> PoolSpec:
    """A layer-2 pool with optional node selectors."""
    return PoolSpec(
        name="l2",
        kind="address-pools",
        cidrs=(netaddr.IPNetwork("192.0.2.0/24"),),
        node_selectors=selectors,
    )


def service(
    *,
    local: bool = False,
    ready: tuple[str, ...] = NODES,
    any_ready: bool = True,
    ips: tuple[netaddr.IPAddress, ...] = (VIP,),
    key: str = "default/web",
    selectors: tuple[NodeSelector, ...] = (),
) -> ServiceView:
    """A service view; by default every node has a ready endpoint."""
    return ServiceView(
        key=key,
        ips=ips,
        pool=pool(*selectors),
        local_traffic=local,
        ready_nodes=frozenset(ready),
        has_ready_endpoints=any_ready,
    )


def cluster(
    me: str,
    *,
    nodes: tuple[str, ...] = NODES,
    labels: dict[str, dict[str, str]] | None = None,
    live: tuple[str, ...] = NODES,
    ignore_exclude_lb: bool = False,
) -> ClusterView:
    """The cluster as node *me* sees it."""
    labels = labels or {}
    infos = {n: NodeInfo(name=n, labels=labels.get(n, {})) for n in nodes}
    return ClusterView(
        node=infos.get(me, NodeInfo(name=me, labels=labels.get(me, {}))),
        nodes=infos,
        live_speakers=frozenset(live),
        ignore_exclude_lb=ignore_exclude_lb,
    )


def by_hash(address: object, nodes: tuple[str, ...]) -> list[str]:
    """The order the issue specifies, computed independently: sha256 of node#address."""
    return sorted(nodes, key=lambda n: hashlib.sha256(f"{n}#{address}".encode()).hexdigest())


def announcers(svc: ServiceView, **kwargs: object) -> list[str]:
    """The nodes that decide to announce *svc*, each asking from its own point of view."""
    return [n for n in NODES if reason_not_to_announce(svc, cluster(n, **kwargs)) is None]  # type: ignore[arg-type]


class TestRank:
    """Ordering candidates by hash."""

    def test_metallb_example(self):
        """MetalLB's own test: for key test1, iris2 (1ab9...) wins over iris1 (a3f1...)."""
        assert winner("test1", ["iris1", "iris2"]) == "iris2"

    def test_lowest_sha256_of_node_and_address_wins(self):
        """The order is ascending sha256(node + "#" + address)."""
        for address in ("192.0.2.1", "192.0.2.2", "2001:db8::1"):
            assert rank(address, NODES) == by_hash(address, NODES)

    def test_order_of_inputs_never_matters(self):
        """Every permutation of the candidates gives the same winner."""
        expected = winner(VIP, NODES)
        assert all(winner(VIP, list(p)) == expected for p in itertools.permutations(NODES))

    def test_no_candidates_no_winner(self):
        """Without candidates nobody announces."""
        assert winner(VIP, []) is None

    def test_different_addresses_spread_over_nodes(self):
        """The winner depends on the address, so addresses spread over the nodes."""
        winners = {winner(f"192.0.2.{i}", NODES) for i in range(1, 40)}
        assert winners == set(NODES)


class TestCandidates:
    """Who may announce, by traffic policy, endpoints, labels and liveness."""

    def test_cluster_policy_uses_every_live_speaker(self):
        """With Cluster, every live speaker is a candidate, even without a local endpoint."""
        svc = service(ready=("iris1",))
        assert candidates(svc, cluster("iris1", live=("iris1", "iris2", "iris3"))) == {"iris1", "iris2", "iris3"}

    def test_cluster_policy_needs_some_ready_endpoint(self):
        """With Cluster and no ready endpoint anywhere, there is no candidate."""
        assert candidates(service(ready=(), any_ready=False), cluster("iris1")) == frozenset()

    def test_cluster_policy_counts_endpoints_without_a_node(self):
        """A ready endpoint with no node name still makes Cluster services announceable."""
        assert candidates(service(ready=(), any_ready=True), cluster("iris1")) == set(NODES)

    def test_local_policy_uses_nodes_with_ready_endpoints(self):
        """With Local, only live nodes hosting a ready endpoint are candidates."""
        svc = service(local=True, ready=("iris2", "iris4"))
        assert candidates(svc, cluster("iris1", live=("iris1", "iris2", "iris3"))) == {"iris2"}

    def test_excluded_nodes_are_out(self):
        """Nodes carrying the exclusion label (any value) are not candidates."""
        view = cluster("iris1", labels={"iris2": {EXCLUDE_LB_LABEL: ""}, "iris3": {EXCLUDE_LB_LABEL: "true"}})
        assert candidates(service(), view) == {"iris1", "iris4"}

    def test_exclusion_can_be_ignored(self):
        """With --ignore-exclude-lb (setting or view) the label is ignored."""
        labels = {"iris2": {EXCLUDE_LB_LABEL: "true"}}
        assert candidates(service(), cluster("iris1", labels=labels), ignore_exclude_lb=True) == set(NODES)
        assert candidates(service(), cluster("iris1", labels=labels, ignore_exclude_lb=True)) == set(NODES)

    def test_node_selectors_filter(self):
        """Nodes the pool's node-selectors do not select are not candidates (selectors are ORed)."""
        selectors = (NodeSelector(match_labels=(("zone", "a"),)), NodeSelector(match_labels=(("zone", "b"),)))
        labels = {"iris1": {"zone": "a"}, "iris2": {"zone": "b"}, "iris3": {"zone": "c"}}
        assert candidates(service(selectors=selectors), cluster("iris1", labels=labels)) == {"iris1", "iris2"}

    def test_empty_liveness_means_untracked(self):
        """With no liveness information every known node counts as alive."""
        assert candidates(service(), cluster("iris1", live=())) == set(NODES)


class TestReason:
    """What each node concludes, and why it does not announce."""

    @pytest.mark.parametrize(
        ("svc", "view", "reason"),
        [
            (service(ips=()), cluster("iris1"), "noIPAllocated"),
            (service(ready=(), any_ready=False), cluster("iris1"), "noEndpoints"),
            (service(local=True, ready=("iris2",)), cluster("iris1"), "noLocalEndpoints"),
            (service(), cluster("iris1", labels={"iris1": {EXCLUDE_LB_LABEL: ""}}), "nodeExcluded"),
            (
                service(selectors=(NodeSelector(match_labels=(("zone", "a"),)),)),
                cluster("iris1", labels={"iris1": {"zone": "b"}}),
                "nodeNotSelected",
            ),
            (service(), cluster(by_hash(VIP, NODES)[1]), "notOwner"),
            (service(), cluster(by_hash(VIP, NODES)[0]), None),
        ],
        ids=["no-ip", "no-endpoints", "no-local", "excluded", "not-selected", "not-owner", "owner"],
    )
    def test_reasons(self, svc, view, reason):
        """Each situation yields MetalLB's reason string, or None for the winner."""
        assert reason_not_to_announce(svc, view) == reason

    def test_exactly_one_node_announces_with_cluster_policy(self):
        """All nodes evaluating the same service agree on a single announcer: the hash winner."""
        assert announcers(service()) == [by_hash(VIP, NODES)[0]]

    def test_local_policy_winner_is_among_ready_nodes(self):
        """With Local, the announcer is the hash winner among nodes with ready endpoints."""
        ready = tuple(by_hash(VIP, NODES)[2:])
        assert announcers(service(local=True, ready=ready)) == [by_hash(VIP, ready)[0]]

    def test_not_ready_endpoints_elsewhere_do_not_count(self):
        """A Local service whose only ready endpoint is on a dead node is announced by nobody."""
        svc = service(local=True, ready=("iris3",))
        assert announcers(svc, live=("iris1", "iris2", "iris4")) == []

    def test_excluded_winner_hands_over_to_the_next(self):
        """Excluding the hash winner makes the runner-up announce."""
        first, second = by_hash(VIP, NODES)[:2]
        assert announcers(service(), labels={first: {EXCLUDE_LB_LABEL: ""}}) == [second]

    def test_services_sharing_an_address_pick_the_same_node(self):
        """Two services on one address, with different keys, are announced by the same node."""
        one = announcers(service(key="a/one"))
        two = announcers(service(key="b/two"))
        assert one == two and len(one) == 1

    def test_dual_stack_elects_by_the_first_address(self):
        """A service with two addresses is elected by its first one."""
        v6 = netaddr.IPAddress("2001:db8::10")
        assert announcers(service(ips=(VIP, v6))) == [by_hash(VIP, NODES)[0]]

    def test_nodes_joining_and_leaving(self):
        """When the winner's speaker dies the runner-up takes over; when it returns it wins again."""
        first, second = by_hash(VIP, NODES)[:2]
        assert announcers(service()) == [first]
        without = tuple(n for n in NODES if n != first)
        assert announcers(service(), live=without) == [second]
        assert announcers(service()) == [first]

    def test_result_never_depends_on_input_order(self):
        """Shuffling nodes, labels and ready sets never changes anyone's decision."""
        rng = random.Random(7)
        labels = {"iris1": {"zone": "a"}, "iris2": {EXCLUDE_LB_LABEL: ""}, "iris3": {"zone": "a"}}
        svc = service(local=True, ready=("iris1", "iris3", "iris4"))
        expected = {n: reason_not_to_announce(svc, cluster(n, labels=labels)) for n in NODES}
        for _ in range(20):
            order = list(NODES)
            rng.shuffle(order)
            ready = list(svc.ready_nodes)
            rng.shuffle(ready)
            shuffled = service(local=True, ready=tuple(ready))
            got = {n: reason_not_to_announce(shuffled, cluster(n, nodes=tuple(order), labels=labels)) for n in NODES}
            assert got == expected


def advertised(*ads: L2Advertisement) -> ServiceView:
    """A service of a pool announced by layer-2 advertisements *ads*."""
    spec = attrs.evolve(pool(), advertisements=ads)
    return attrs.evolve(service(), pool=spec)


class TestL2AdvertisementNodes:
    """L2Advertisement nodeSelectors decide which nodes may announce (MetalLB's poolMatchesNodeL2)."""

    def test_only_nodes_an_advertisement_selects_are_candidates(self):
        """The winner is elected among the nodes some advertisement of the pool selects."""
        ads = (L2Advertisement(node_selectors=(NodeSelector(match_labels=(("rack", "1"),)),)),)
        labels = {"iris1": {"rack": "1"}, "iris2": {"rack": "1"}}
        svc = advertised(*ads)
        assert candidates(svc, cluster("iris1", labels=labels)) == {"iris1", "iris2"}
        assert reason_not_to_announce(svc, cluster("iris3", labels=labels)) == "nodeNotSelected"
        assert len(announcers(svc, labels=labels)) == 1

    def test_advertisements_add_up(self):
        """A node selected by any advertisement of the pool may announce."""
        ads = (L2Advertisement(nodes=frozenset({"iris1"})), L2Advertisement(nodes=frozenset({"iris4"})))
        assert candidates(advertised(*ads), cluster("iris1")) == {"iris1", "iris4"}

    def test_resolved_names_win_over_labels(self):
        """An advertisement resolved against Node objects selects those names, whatever the labels say now."""
        ads = (
            L2Advertisement(node_selectors=(NodeSelector(match_labels=(("rack", "1"),)),), nodes=frozenset({"iris2"})),
        )
        assert candidates(advertised(*ads), cluster("iris1", labels={"iris1": {"rack": "1"}})) == {"iris2"}


class TestPoolInterfaces:
    """The interfaces a layer-2 pool is answered on from one node (MetalLB's ipAdvertisementFor)."""

    def test_interfaces_of_the_advertisements_selecting_the_node(self):
        """Only the advertisements selecting this node count; their interfaces add up."""
        spec = attrs.evolve(
            pool(),
            advertisements=(
                L2Advertisement(interfaces=("eth1",), nodes=frozenset({"n1"})),
                L2Advertisement(interfaces=("eth2",), nodes=frozenset({"n1", "n2"})),
                L2Advertisement(interfaces=("eth3",), nodes=frozenset({"n2"})),
            ),
        )
        assert pool_interfaces(spec, NodeInfo(name="n1")) == ("eth1", "eth2")
        assert pool_interfaces(spec, NodeInfo(name="n2")) == ("eth2", "eth3")

    def test_one_without_interfaces_opens_every_interface(self):
        """An advertisement without interfaces selecting the node means every interface."""
        spec = attrs.evolve(pool(), advertisements=(L2Advertisement(interfaces=("eth1",)), L2Advertisement()))
        assert pool_interfaces(spec, NodeInfo(name="n1")) == ()
