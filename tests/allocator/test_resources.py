"""MetalLB's resources as a configuration: every kind, every loader check with MetalLB v0.15's verdict."""

from __future__ import annotations

import base64
from typing import Any

import netaddr
import pytest
from metallb.allocator import (
    BgpAdvertisement,
    ConfigError,
    L2Advertisement,
    LabelSelector,
    ServiceAllocation,
    TransientConfigError,
    load_resources,
    parse_config,
    parse_resources,
)
from metallb.allocator.resources import ObjectRef, read_resource_documents

NS = "metallb-system"
VERSIONS = {"BGPPeer": "v1beta2", "AddressService": "v1alpha1"}


def obj(kind: str, name: str, spec: dict[str, Any] | None = None, *, labels=None, version=None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if labels:
        meta["labels"] = labels
    out = {"apiVersion": f"metallb.io/{version or VERSIONS.get(kind, 'v1beta1')}", "kind": kind, "metadata": meta}
    if spec is not None:
        out["spec"] = spec
    return out


def pool(name: str, *addresses: str, labels=None, **spec: Any) -> dict[str, Any]:
    return obj("IPAddressPool", name, {"addresses": list(addresses), **spec}, labels=labels)


def peer(name: str, version=None, **spec: Any) -> dict[str, Any]:
    return obj("BGPPeer", name, {"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", **spec}, version=version)


def l2(name: str, **spec: Any) -> dict[str, Any]:
    return obj("L2Advertisement", name, spec)


def bgp(name: str, **spec: Any) -> dict[str, Any]:
    return obj("BGPAdvertisement", name, spec)


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def secret(name: str, type_: str = "kubernetes.io/basic-auth", **data: str) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "type": type_,
        "data": encoded,
    }


def rejected(*objects: dict[str, Any], **kw: Any) -> str:
    """The message of the error the set is rejected with (not a waiting one)."""
    with pytest.raises(ConfigError) as info:
        parse_resources(list(objects), **kw)
    assert not isinstance(info.value, TransientConfigError), info.value
    return str(info.value)


def waiting(*objects: dict[str, Any]) -> str:
    """The message of the transient error the set waits on."""
    with pytest.raises(TransientConfigError) as info:
        parse_resources(list(objects))
    return str(info.value)


class TestReading:
    """Streams, Lists, kinds and namespaces, read as kubectl sends them."""

    def test_yaml_values_are_typed_as_kubectl_types_them(self):
        """Plain numbers and YAML 1.1 booleans are typed; quoted ones stay strings, so a quoted ASN is refused."""
        text = "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec:\n  myASN: {asn}\n  peerASN: 1\n  peerAddress: 192.0.2.1\n  ebgpMultiHop: yes\n"
        config = parse_config(text.replace("{asn}", "64500"))
        assert config.peers[0].my_asn == 64500 and config.peers[0].ebgp_multihop
        with pytest.raises(
            ConfigError, match=r'BGPPeer "p": field "spec.myASN": value "64500": must be a whole number, not a string'
        ):
            parse_config(text.replace("{asn}", '"64500"'))

    def test_lists_are_expanded(self):
        """A `kubectl get -o yaml` List and an API list (items without kind) both give their items."""
        listed = {"apiVersion": "v1", "kind": "List", "items": [pool("a", "10.0.0.0/24")]}
        api = {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPoolList",
            "items": [{"metadata": {"name": "b"}, "spec": {"addresses": ["10.1.0.0/24"]}}],
        }
        assert list(parse_resources([listed, api]).pools) == ["a", "b"]

    def test_stream_with_documents_and_comments(self):
        """A multi-document stream parses through parse_config; empty documents are skipped."""
        text = "---\n# pools\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a, namespace: metallb-system}\nspec: {addresses: [10.0.0.0/24]}\n---\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: metallb-system}\n"
        config = parse_config(text)
        assert config.pools["a"].protocols == ("layer2",)

    def test_a_configmap_manifest_alone_is_the_legacy_format(self):
        """A stream holding only a ConfigMap with data.config (kubectl get cm -o yaml) parses its data.config."""
        text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    address-pools:\n    - {name: a, protocol: layer2, addresses: [10.0.0.0/24]}\n"
        config = parse_config(text)
        assert config.sections == ("address-pools",) and list(config.pools) == ["a"]

    def test_other_objects_are_ignored_with_a_warning(self):
        """Deployments, status kinds and the FRR bgpextras ConfigMap are no configuration: ignored, named in warnings."""
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "controller"}}
        status = obj("ServiceL2Status", "l2-abc")
        extras = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bgpextras"}}
        result = load_resources([pool("a", "10.0.0.0/24"), deployment, status, extras])
        assert result.error is None and list(result.config.pools) == ["a"]
        assert result.warnings == ('Deployment "controller" (apps/v1): ignored, not configuration',)

    def test_unknown_metallb_kind_and_version(self):
        """A misspelt metallb.io kind, or a version not served, is an error naming the known ones."""
        assert "unknown kind in metallb.io" in rejected(obj("IPAdressPool", "a"))
        assert 'apiVersion "metallb.io/v1beta2" is not served (use metallb.io/v1beta1)' in rejected(
            obj("IPAddressPool", "a", {"addresses": ["10.0.0.0/24"]}, version="v1beta2")
        )

    def test_one_namespace(self):
        """Objects in several namespaces are rejected; with a namespace given, the others are ignored."""
        other = pool("b", "10.1.0.0/24")
        other["metadata"]["namespace"] = "elsewhere"
        assert "several namespaces" in rejected(pool("a", "10.0.0.0/24"), other)
        config = parse_resources([pool("a", "10.0.0.0/24"), other], namespace=NS)
        assert list(config.pools) == ["a"]

    def test_documents_must_be_objects(self):
        """A document that is no Kubernetes object is one error line."""
        with pytest.raises(ConfigError, match=r"document #2: must be a Kubernetes object"):
            read_resource_documents("apiVersion: v1\nkind: Node\nmetadata: {name: n}\n---\n- a list\n")

    def test_unknown_spec_field(self):
        """A field the kind does not have is an error (kubectl --validate=strict); later MetalLB fields say so."""
        assert 'unknown field "spec.autoassign"' in rejected(pool("a", "10.0.0.0/24", autoassign=False))
        assert "a MetalLB v0.16 field" in rejected(pool("a", "10.0.0.0/24"), l2("x", serviceSelectors=[]))


class TestIPAddressPool:
    """IPAddressPool fields, defaults and address checks (MetalLB's ParseCIDR)."""

    def test_defaults_and_model_fields(self):
        """autoAssign defaults to true, avoidBuggyIPs to false; labels and the pool kind are kept."""
        spec = parse_resources([pool("a", "10.0.0.7/24", labels={"zone": "x"})]).pools["a"]
        assert spec.auto_assign and not spec.avoid_buggy_ips and spec.service_allocation is None
        assert spec.cidrs == (netaddr.IPNetwork("10.0.0.0/24"),)  # host bits dropped, as Go's ParseCIDR
        assert dict(spec.labels) == {"zone": "x"} and spec.kind == "address-pools"
        assert spec.advertisements == ()  # no advertisement: allocated from, not announced

    @pytest.mark.parametrize(
        ("address", "rule"),
        [
            (" 10.0.0.0/8", "invalid CIDR"),  # a CIDR is not trimmed
            ("10.0.0.1", "invalid CIDR"),  # no prefix length
            ("10.0.0.0/33", "invalid CIDR"),
            ("10/8", "invalid CIDR"),
            ("10.0.0.9-10.0.0.1", "the start IP is after the end IP"),
            ("10.0.0.x-10.0.0.9", "invalid start IP"),
            ("10.0.0.1-::1", "different IP families"),
        ],
    )
    def test_bad_addresses(self, address, rule):
        """Each malformed entry names the pool, the entry's index, the value and the rule."""
        message = rejected(pool("p1", "10.1.0.0/24", address))
        assert message.startswith('IPAddressPool "p1": field "spec.addresses[1]"') and rule in message

    def test_range_ends_are_trimmed(self):
        """A range's ends are trimmed and expanded to its minimal CIDRs."""
        spec = parse_resources([pool("a", " 10.0.0.1 - 10.0.0.3")]).pools["a"]
        assert [str(c) for c in spec.cidrs] == ["10.0.0.1/32", "10.0.0.2/31"]

    def test_no_addresses_and_no_name(self):
        """A pool without addresses, or without a name, is MetalLB's error."""
        assert "pool has no prefixes defined" in rejected(pool("a"))
        nameless = pool("x", "10.0.0.0/24")
        del nameless["metadata"]["name"]
        assert "IPAddressPool #1: missing pool name" in rejected(nameless)

    def test_overlaps_within_and_across_pools(self):
        """Overlapping or identical CIDRs are errors, within a pool too, reported on the later pool in name order."""
        assert (
            'IPAddressPool "b": CIDR "10.0.0.0/25" in pool "b" overlaps with already defined CIDR "10.0.0.0/24" (pool "a")'
            in rejected(pool("b", "10.0.0.0/25"), pool("a", "10.0.0.0/24"))
        )
        assert "overlaps" in rejected(pool("a", "10.0.0.0/24", "10.0.0.0/24"))
        parse_resources([pool("a", "10.0.0.0/25"), pool("b", "10.0.0.128/25")])  # adjacent is fine

    def test_pool_names_are_unique_across_kinds(self):
        """An AddressService named like an IPAddressPool is a duplicate pool."""
        service = obj("AddressService", "a", {"url": "http://x", "cidrs": ["10.9.0.0/24"]})
        assert 'duplicate definition of pool "a"' in rejected(pool("a", "10.0.0.0/24"), service)


class TestServiceAllocation:
    """serviceAllocation: MetalLB v0.15's parsing, and which Services it selects."""

    def allocation(self, *objects: dict[str, Any], **spec: Any) -> ServiceAllocation:
        config = parse_resources([pool("a", "10.0.0.0/24", serviceAllocation=spec), *objects])
        found = config.pools["a"].service_allocation
        assert found is not None
        return found

    def test_priority_only_selects_every_service(self):
        """Only a priority, or nothing at all, selects every Service in every namespace (v0.15)."""
        for spec in ({"priority": 5}, {}):
            allocation = self.allocation(**spec)
            assert allocation.every_service and allocation.selects("any", {})

    def test_namespaces_and_selectors(self):
        """Namespaces by name or by resolved label selectors, ANDed with service selectors."""
        allocation = self.allocation(
            namespace("web", team="a"),
            namespace("db", team="b"),
            namespaces=["extra"],
            namespaceSelectors=[{"matchLabels": {"team": "a"}}],
            serviceSelectors=[{"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}],
        )
        assert allocation.selected_namespaces == {"web"}
        assert allocation.selects("web", {"tier": "front"}) and allocation.selects("extra", {"tier": "front"})
        assert not allocation.selects("web", {"tier": "back"}) and not allocation.selects("db", {"tier": "front"})

    def test_namespace_selectors_matching_nothing_select_no_service(self):
        """Selectors resolved to no Namespace, without service selectors: the pool is never auto-assigned."""
        allocation = self.allocation(namespaceSelectors=[{"matchLabels": {"team": "none"}}])
        assert not allocation.selects("default", {})

    def test_duplicates(self):
        """A repeated namespace or selector is MetalLB's duplicate definition error."""
        assert "duplicate definition of namespaces" in rejected(
            pool("a", "10.0.0.0/24", serviceAllocation={"namespaces": ["x", "x"]})
        )
        sel = {"matchLabels": {"a": "b"}}
        assert "duplicate definition of serviceSelectors" in rejected(
            pool("a", "10.0.0.0/24", serviceAllocation={"serviceSelectors": [sel, sel]})
        )


class TestAdvertisementSelection:
    """Which pools an advertisement selects, and what that makes of the pools' protocols."""

    def test_no_selection_selects_every_pool(self):
        """Neither ipAddressPools nor selectors: every pool, of every kind."""
        service = obj("AddressService", "c", {"url": "http://x", "cidrs": ["10.9.0.0/24"]})
        config = parse_resources([pool("a", "10.0.0.0/24"), service, l2("all")])
        assert {p.name: p.protocols for p in config.pools.values()} == {"a": ("layer2",), "c": ("layer2",)}

    def test_by_name_and_by_label(self):
        """Listed names and label selectors add up; unknown names are ignored."""
        config = parse_resources(
            [
                pool("a", "10.0.0.0/24"),
                pool("b", "10.1.0.0/24", labels={"zone": "x"}),
                pool("c", "10.2.0.0/24"),
                bgp("r", ipAddressPools=["a", "ghost"], ipAddressPoolSelectors=[{"matchLabels": {"zone": "x"}}]),
            ]
        )
        assert [p.name for p in config.pools.values() if p.protocols] == ["a", "b"]
        assert config.pools["c"].advertisements == ()  # allocated from, not announced

    def test_selector_matching_nothing_selects_nothing(self):
        """A selector that matches no pool does not fall back to every pool."""
        config = parse_resources(
            [pool("a", "10.0.0.0/24"), l2("x", ipAddressPoolSelectors=[{"matchLabels": {"no": "pe"}}])]
        )
        assert config.pools["a"].protocols == ()

    def test_layer2_and_bgp_both_apply(self):
        """Several advertisements may select one pool, of both protocols."""
        config = parse_resources([pool("a", "10.0.0.0/24"), l2("x"), bgp("y"), bgp("z", localPref=0, peers=["p"])])
        assert config.pools["a"].protocols == ("layer2", "bgp") and len(config.pools["a"].bgp_advertisements) == 2

    def test_identical_layer2_advertisements_merge(self):
        """Two L2Advertisements with the same interfaces (any order) and nodes are one advertisement."""
        config = parse_resources(
            [pool("a", "10.0.0.0/24"), l2("x", interfaces=["a", "b"]), l2("y", interfaces=["b", "a"])]
        )
        assert config.pools["a"].l2_advertisements == (L2Advertisement(interfaces=("a", "b")),)

    def test_node_selectors_resolve_against_nodes(self):
        """With Node objects, nodeSelectors become node names (none: every node); without, they stay selectors."""
        objects = [pool("a", "10.0.0.0/24"), l2("x", nodeSelectors=[{"matchLabels": {"rack": "1"}}]), bgp("y")]
        with_nodes = parse_resources([*objects, node("n1", rack="1"), node("n2", rack="2")]).pools["a"]
        assert with_nodes.l2_advertisements[0].nodes == {"n1"} and with_nodes.bgp_advertisements[0].nodes == {
            "n1",
            "n2",
        }
        offline = parse_resources(objects).pools["a"].l2_advertisements[0]
        assert offline.nodes is None and offline.node_selectors == (LabelSelector(match_labels=(("rack", "1"),)),)
        assert offline.selects("n9", {"rack": "1"}) and not offline.selects("n9", {"rack": "2"})

    def test_duplicate_lists(self):
        """A repeated pool name, peer or community in one advertisement is MetalLB's duplicate error."""
        assert "duplicate definition of ipAddressPools" in rejected(
            pool("a", "10.0.0.0/24"), l2("x", ipAddressPools=["a", "a"])
        )
        assert "duplicate definition of peers" in rejected(pool("a", "10.0.0.0/24"), bgp("x", peers=["p", "p"]))
        assert "duplicate definition of community" in rejected(
            pool("a", "10.0.0.0/24"), bgp("x", communities=["1:1", "1:1"])
        )


class TestBGPAdvertisement:
    """BGPAdvertisement fields and the per-pool checks."""

    def test_defaults(self):
        """Aggregation lengths default to 32 and 128, localPref to 0."""
        config = parse_resources([pool("a", "10.0.0.0/24"), bgp("x")])
        assert config.pools["a"].bgp_advertisements == (BgpAdvertisement(),)

    @pytest.mark.parametrize(
        ("spec", "rule"),
        [
            ({"aggregationLength": 33}, "invalid aggregation length for IPv4"),
            ({"aggregationLength": 0}, "invalid aggregation length for IPv4"),
            ({"aggregationLengthV6": 129}, "invalid aggregation length for IPv6"),
            ({"localPref": -1}, "must be between 0 and 4294967295"),
        ],
    )
    def test_bad_values(self, spec, rule):
        """Out-of-range lengths and localPref are hard errors."""
        assert rule in rejected(pool("a", "10.0.0.0/24"), bgp("x", **spec))

    def test_aggregation_per_entry_against_its_widest_cidr(self):
        """A range accepts the prefix length of its widest piece (3.3.3.2-3.3.3.254: 26), not more specific."""
        parse_resources([pool("a", "3.3.3.2-3.3.3.254"), bgp("x", aggregationLength=26)])
        assert "prefix 26" in rejected(pool("a", "3.3.3.2-3.3.3.254"), bgp("x", aggregationLength=25))
        assert "is more specific" in rejected(pool("a", "10.0.0.0/24"), bgp("x", aggregationLength=16))

    def test_communities(self):
        """Literals, large literals and Community aliases; an alias and its value collapse into one community."""
        alias = obj("Community", "c", {"communities": [{"name": "no-export", "value": "65535:65281"}]})
        config = parse_resources(
            [pool("a", "10.0.0.0/24"), alias, bgp("x", communities=["no-export", "65535:65281", "large:1:2:3"])]
        )
        assert [str(c) for c in config.pools["a"].bgp_advertisements[0].communities] == ["65535:65281", "large:1:2:3"]
        assert config.communities["no-export"].value == 0xFFFFFF01

    @pytest.mark.parametrize("text", ["no-export", "foo", "1:2:3"])
    def test_unknown_community_name_waits(self, text):
        """A string that is not a literal (wrong field count) may be a Community not created yet: waiting."""
        assert f'value "{text}": waiting for a Community alias' in waiting(
            pool("a", "10.0.0.0/24"), bgp("x", communities=[text])
        )

    @pytest.mark.parametrize("text", ["65536:1", "a:b", "large:1:2:x"])
    def test_bad_community_value_is_invalid(self, text):
        """A literal with the right field count but bad numbers is a hard error."""
        assert "invalid community value" in rejected(pool("a", "10.0.0.0/24"), bgp("x", communities=[text]))

    def test_conflicting_localpref(self):
        """Different localPrefs on one pool conflict unless aggregation lengths, peers or nodes keep them apart."""
        base = [pool("a", "10.0.0.0/24"), bgp("x", localPref=100)]
        assert "invalid local preference" in rejected(*base, bgp("y", localPref=200))
        assert "invalid local preference" in rejected(*base, bgp("y"))  # 0 (unset) is a localPref too
        parse_resources([*base, bgp("y", localPref=200, aggregationLength=24)])
        parse_resources(
            [pool("a", "10.0.0.0/24"), bgp("x", localPref=100, peers=["p1"]), bgp("y", localPref=200, peers=["p2"])]
        )
        apart = [
            bgp("x", localPref=100, nodeSelectors=[{"matchLabels": {"r": "1"}}]),
            bgp("y", localPref=200, nodeSelectors=[{"matchLabels": {"r": "2"}}]),
        ]
        parse_resources([pool("a", "10.0.0.0/24"), *apart, node("n1", r="1"), node("n2", r="2")])
        assert "invalid local preference" in rejected(
            pool("a", "10.0.0.0/24"),
            bgp("x", localPref=100, peers=["p1"]),
            bgp("y", localPref=200),  # empty peers: all
        )

    def test_dual_stack_pool_needs_both_lengths_to_differ(self):
        """On a dual-stack pool, only an IPv4 length difference does not keep two localPrefs apart."""
        objects = [
            pool("a", "10.0.0.0/24", "2001:db8::/64"),
            bgp("x", localPref=100),
            bgp("y", localPref=200, aggregationLength=24),
        ]
        assert "invalid local preference" in rejected(*objects)
        objects[2]["spec"]["aggregationLengthV6"] = 64
        parse_resources(objects)


class TestBGPPeer:
    """BGPPeer v1beta2 (and v1beta1) into the peer model, with MetalLB's checks in its order."""

    def test_every_field_reaches_the_model(self):
        """Each v1beta2 field lands in its PeerSpec field; the password comes from the basic-auth Secret."""
        spec = {
            "peerPort": 1179,
            "holdTime": "30s",
            "keepaliveTime": "5s",
            "connectTime": "7s",
            "routerID": "10.0.0.1",
            "sourceAddress": "192.0.2.2",
            "nodeSelectors": [{"matchLabels": {"rack": "1"}}],
            "passwordSecret": {"name": "pw", "namespace": "ignored"},
            "bfdProfile": "fast",
            "enableGracefulRestart": True,
            "ebgpMultiHop": True,
            "vrf": "red",
            "disableMP": True,
            "dualStackAddressFamily": True,
        }
        bfd = obj("BFDProfile", "fast", {"receiveInterval": 100})
        (p,) = parse_resources([peer("r1", **spec), secret("pw", password="s3cret"), bfd]).peers
        assert (p.name, p.peer_port, p.hold_time, p.keepalive_time, p.connect_time) == ("r1", 1179, 30, 5.0, 7.0)
        assert (str(p.router_id), str(p.source_address), p.password, p.bfd_profile) == (
            "10.0.0.1",
            "192.0.2.2",
            "s3cret",
            "fast",
        )
        assert p.enable_graceful_restart and p.ebgp_multihop and p.disable_mp and p.dual_stack_address_family
        assert p.vrf == "red" and p.node_selectors == (LabelSelector(match_labels=(("rack", "1"),)),)

    def test_defaults_and_timers(self):
        """No timers: 90 s hold; keepalive derives from hold (stored as None) and hold from keepalive (3x)."""
        assert parse_resources([peer("a")]).peers[0].hold_time == 90
        assert parse_resources([peer("a", holdTime="9s")]).peers[0].keepalive_time is None
        assert parse_resources([peer("a", keepaliveTime="10s")]).peers[0].hold_time == 30
        assert parse_resources([peer("a", holdTime="900ms")]).peers[0].hold_time == 0  # truncated to 0: accepted

    @pytest.mark.parametrize(
        ("spec", "rule"),
        [
            ({"myASN": 0}, "missing local ASN"),
            ({"peerASN": 0}, "missing peer ASN and dynamicASN"),
            ({"dynamicASN": "external"}, "both peer ASN and dynamicASN specified"),
            ({"peerASN": 0, "dynamicASN": "other"}, "invalid dynamicASN"),
            ({"peerASN": 64500, "ebgpMultiHop": True}, "invalid ebgp-multihop parameter set for an ibgp peer"),
            ({"peerAddress": ""}, "peer has no Address or Interface specified"),
            ({"interface": "eth0"}, "peer has both Address and Interface specified"),
            ({"holdTime": "2s"}, "invalid hold time: must be 0 or >=3s"),
            ({"holdTime": "10s", "keepaliveTime": "11s"}, "invalid keepaliveTime: must be lower than holdTime"),
            ({"holdTime": "ninety"}, "must be a duration with a unit"),
            ({"peerAddress": "192.0.2.300"}, "invalid BGPPeer address"),
            ({"routerID": "x"}, "invalid router ID"),
            ({"sourceAddress": "x"}, "invalid source IP"),
            ({"password": "a", "passwordSecret": {"name": "pw"}}, "can not have both password and secret ref"),
            ({"peerPort": 0}, "must be between 1 and 16384"),
            ({"connectTime": "1500ms"}, "connect time should contain a whole number of seconds"),
            ({"connectTime": "70000s"}, "connect time should be between 1 seconds to 65535"),
        ],
    )
    def test_invalid(self, spec, rule):
        """Each of MetalLB's peer checks rejects the set, naming the peer."""
        message = rejected(peer("r1", **spec), secret("pw", password="x"))
        assert message.startswith('BGPPeer "r1"') and rule in message

    def test_secret_problems(self):
        """A missing Secret waits; a Secret of the wrong type or without the password key is invalid."""
        assert 'waiting for the Secret "pw"' in waiting(peer("r1", passwordSecret={"name": "pw"}))
        assert 'must be "kubernetes.io/basic-auth"' in rejected(
            peer("r1", passwordSecret={"name": "pw"}), secret("pw", "Opaque", password="x")
        )
        assert 'has no key "password"' in rejected(
            peer("r1", passwordSecret={"name": "pw"}), secret("pw", username="x")
        )

    def test_missing_bfd_profile_waits(self):
        """A peer naming a BFD profile that does not exist waits for it."""
        assert 'waiting for the BFDProfile "fast"' in waiting(peer("r1", bfdProfile="fast"))

    def test_duplicates(self):
        """An exact duplicate (same name and settings) is an error; a changed one replaces the first."""
        assert "peer already exists" in rejected(peer("r1"), peer("r1"))
        result = load_resources([peer("r1"), peer("r1", holdTime="30s")])
        assert result.config.peers[0].hold_time == 30 and "replaces" in result.warnings[0]
        config = parse_resources([peer("r1"), peer("r2")])  # same session, two names: fine for the loader
        assert [p.name for p in config.peers] == ["r1", "r2"]

    def test_v1beta1_is_served(self):
        """The deprecated v1beta1 parses its fields; v1beta2-only ones are unknown there."""
        assert parse_resources([peer("r1", version="v1beta1", holdTime="30s")]).peers[0].hold_time == 30
        assert 'unknown field "spec.vrf"' in rejected(peer("r1", version="v1beta1", vrf="red"))


class TestCommunityAndBFD:
    """Community and BFDProfile objects, and the check across them."""

    def test_community_values_and_duplicates(self):
        """A bad alias value is always invalid (never waiting); an alias defined twice is a duplicate."""
        assert 'parsing community "x"' in rejected(
            obj("Community", "c", {"communities": [{"name": "x", "value": "nope"}]})
        )
        twice = [obj("Community", n, {"communities": [{"name": "x", "value": "1:1"}]}) for n in ("c1", "c2")]
        assert "duplicate definition of community" in rejected(*twice)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("detectMultiplier", 1),
            ("receiveInterval", 9),
            ("transmitInterval", 60001),
            ("minimumTtl", 255),
            ("echoInterval", 5),
        ],
    )
    def test_bfd_ranges(self, field, value):
        """Each BFD value outside MetalLB's range is an error naming the field."""
        assert f'field "spec.{field}"' in rejected(obj("BFDProfile", "b", {field: value}))

    def test_bfd_profile_model(self):
        """A profile keeps what is set, None for the rest."""
        config = parse_resources([obj("BFDProfile", "b", {"receiveInterval": 300, "echoMode": True})])
        profile = config.bfd_profiles["b"]
        assert (profile.receive_interval, profile.transmit_interval, profile.echo_mode) == (300, None, True)

    def test_ipv6_pool_to_an_echo_mode_peer(self):
        """An IPv6 pool advertised to a peer whose BFD profile uses echo mode is rejected."""
        objects = [
            pool("a", "2001:db8::/64"),
            bgp("x"),
            peer("r1", bfdProfile="e"),
            obj("BFDProfile", "e", {"echoMode": True}),
        ]
        assert "echo mode" in rejected(*objects)


class TestVerdicts:
    """Every object gets its own verdict; the first problem in MetalLB's order is the set's."""

    def test_each_object_its_verdict(self):
        """A bad object is invalid with its message; a good one is valid and says the set is not applied."""
        result = load_resources([pool("a", "10.0.0.0/24"), pool("b", "bad"), l2("x")])
        assert result.config is None and "spec.addresses[0]" in str(result.error)
        bad, good = result.verdicts[ObjectRef("IPAddressPool", "b")], result.verdicts[ObjectRef("IPAddressPool", "a")]
        assert (bad.valid, bad.reason) == (False, "InvalidField") and bad.message == str(result.error)
        assert good.valid and good.message.startswith("valid; the configuration is not applied:")

    def test_reasons(self):
        """Overlaps, duplicates, conflicts and waiting references have their own reasons."""
        result = load_resources(
            [
                pool("a", "10.0.0.0/24"),
                pool("b", "10.0.0.0/24"),
                bgp("x", communities=["nope"]),
                peer("p", bfdProfile="f"),
            ]
        )
        reasons = {ref.name: v.reason for ref, v in result.verdicts.items() if not v.valid}
        assert reasons == {"b": "Overlap", "x": "Waiting", "p": "Waiting"}
        assert isinstance(result.error, TransientConfigError)  # the peer's, first in MetalLB's order

    def test_valid_set(self):
        """A valid set gives a config and valid verdicts."""
        result = load_resources([pool("a", "10.0.0.0/24"), l2("x")])
        assert result.error is None and all(v.valid and v.message == "valid" for v in result.verdicts.values())


class TestModes:
    """mode="native" and mode="frr": MetalLB's validators of what one BGP implementation supports."""

    @pytest.mark.parametrize(
        "field",
        [
            {"bfdProfile": "b"},
            {"keepaliveTime": "5s"},
            {"vrf": "red"},
            {"connectTime": "5s"},
            {"enableGracefulRestart": True},
            {"disableMP": True},
            {"dualStackAddressFamily": True},
            {"interface": "eth0", "peerAddress": ""},
        ],
    )
    def test_native_rejects_frr_only_peer_fields(self, field):
        """Each FRR-only peer field is unsupported in native mode; ebgpMultiHop is accepted (as MetalLB does)."""
        objects = [peer("r1", **field), obj("BFDProfile", "b", {})]
        assert "not supported in native BGP mode" in rejected(*objects, mode="native")
        parse_resources([peer("r1", ebgpMultiHop=True)], mode="native")

    def test_native_other_rules(self):
        """Native mode rejects BFD profiles, IPv6 pools advertised by BGP, and large communities anywhere."""
        assert "BFD profiles are not supported" in rejected(obj("BFDProfile", "b", {}), mode="native")
        assert "IPv6" in rejected(pool("a", "2001:db8::/64"), bgp("x"), mode="native")
        parse_resources([pool("a", "2001:db8::/64"), l2("x")], mode="native")  # layer 2 is fine
        assert "only legacy communities" in rejected(
            obj("Community", "c", {"communities": [{"name": "x", "value": "large:1:2:3"}]}), mode="native"
        )

    def test_frr_rules(self):
        """FRR mode wants one routerID, no repeated session per VRF, and one myASN per VRF."""
        assert "same routerID" in rejected(
            peer("a", routerID="10.0.0.1"), peer("b", peerAddress="192.0.2.2"), mode="frr"
        )
        assert "FRR mode doesn't support duplicate BGPPeers" in rejected(peer("a"), peer("b"), mode="frr")
        assert "all myASN must be equal" in rejected(peer("a"), peer("b", myASN=1, peerAddress="192.0.2.2"), mode="frr")
        parse_resources([peer("a"), peer("b", vrf="red")], mode="frr")

    def test_unknown_mode(self):
        """A mode other than native or frr is an error."""
        assert "must be one of native, frr" in rejected(pool("a", "10.0.0.0/24"), mode="bird")
