"""parse_config: MetalLB v0.12 rules, literal scalars, error messages, extensions."""

from __future__ import annotations

import netaddr
import pytest
from metallb.allocator import BgpAdvertisement, Community, ConfigError, L2Advertisement, LargeCommunity, NodeSelector

POOL = """
address-pools:
- name: p
  protocol: layer2
  addresses: [192.0.2.0/24]
"""


class TestDocument:
    def test_empty_document_is_an_empty_config(self, parse):
        """An empty document is valid and has no pools and no peers."""
        config = parse("")
        assert dict(config.pools) == {}
        assert config.peers == ()

    def test_scalar_document_is_rejected(self, parse):
        """A bare scalar is not a config."""
        with pytest.raises(ConfigError, match="mapping of sections"):
            parse("hello")

    def test_unclaimed_top_level_key_names_the_key(self, parse):
        """A section no plugin claims is an error that names it and says what to do."""
        with pytest.raises(ConfigError, match='unknown top-level key "adress-pools".*metallb plugins'):
            parse("adress-pools: []")

    def test_duplicate_keys_are_rejected(self, parse):
        """A key repeated in one mapping is an error naming the key and line."""
        with pytest.raises(ConfigError, match='line 5: duplicate key "protocol"'):
            parse("address-pools:\n- name: p\n  protocol: layer2\n  addresses: [192.0.2.0/24]\n  protocol: bgp\n")

    def test_invalid_yaml_names_the_position(self, parse):
        """Broken YAML gives an error with line and column."""
        with pytest.raises(ConfigError, match=r"invalid YAML: line \d+, column \d+"):
            parse("address-pools:\n - name: [\n")

    def test_bfd_profiles_are_not_supported(self, parse):
        """bfd-profiles (FRR-only upstream) gives a clear not-supported error."""
        with pytest.raises(ConfigError, match='"bfd-profiles" is not supported'):
            parse("bfd-profiles: []")

    def test_unknown_pool_key_is_rejected(self, parse):
        """Strict keys: an unknown field in a pool names the field and the allowed ones."""
        with pytest.raises(ConfigError, match='address pool #1 "p": unknown field "adresses"'):
            parse("address-pools:\n- name: p\n  protocol: layer2\n  adresses: [192.0.2.0/24]\n")


class TestScalars:
    def test_names_are_literal_text(self, parse):
        """'name: no' is the pool "no" and 'name: 123' is "123", not a boolean or number."""
        config = parse(
            "address-pools:\n- name: no\n  protocol: layer2\n  addresses: [192.0.2.0/28]\n"
            "- name: 123\n  protocol: layer2\n  addresses: [192.0.2.16/28]\n"
        )
        assert list(config.pools) == ["no", "123"]

    def test_community_is_not_sexagesimal(self, parse):
        """'1:30' stays a community (65566), not YAML 1.1's base-60 number 90."""
        config = parse(
            "address-pools:\n- name: p\n  protocol: bgp\n  addresses: [192.0.2.0/24]\n"
            "  bgp-advertisements:\n  - communities: [1:30]\n"
        )
        assert config.pools["p"].bgp_advertisements[0].communities == (Community(65566),)

    @pytest.mark.parametrize(
        ("word", "value"), [("off", False), ("No", False), ("YES", True), ("on", True), ("true", True)]
    )
    def test_yaml_11_booleans(self, parse, word, value):
        """Booleans accept the YAML 1.1 words in their case variants."""
        config = parse(POOL + f"  auto-assign: {word}\n")
        assert config.pools["p"].auto_assign is value

    def test_bad_boolean_names_field_and_value(self, parse):
        """A non-boolean gives the field, the value and the rule."""
        with pytest.raises(
            ConfigError, match='address pool #1 "p": field "auto-assign": value "maybe": must be a boolean'
        ):
            parse(POOL + "  auto-assign: maybe\n")


class TestAddresses:
    def test_cidr_host_bits_are_cleared(self, parse):
        """CIDRs are non-strict: 10.20.30.40/24 becomes 10.20.30.0/24."""
        config = parse("address-pools:\n- name: p\n  protocol: layer2\n  addresses: [10.20.30.40/24]\n")
        assert config.pools["p"].cidrs == (netaddr.IPNetwork("10.20.30.0/24"),)

    def test_range_is_expanded_to_minimal_cidrs(self, parse):
        """A range becomes the minimal ascending CIDR list covering exactly its ends."""
        config = parse("address-pools:\n- name: p\n  protocol: layer2\n  addresses: [' 10.0.0.1 - 10.0.0.6 ']\n")
        assert [str(c) for c in config.pools["p"].cidrs] == ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]

    def test_reversed_range_is_rejected(self, parse):
        """A range whose start is after its end is an error (v0.12)."""
        with pytest.raises(
            ConfigError, match='field "addresses": value "10.0.0.9-10.0.0.1": invalid IP range: start is after end'
        ):
            parse("address-pools:\n- name: p\n  protocol: layer2\n  addresses: [10.0.0.9-10.0.0.1]\n")

    def test_mixed_family_range_is_rejected(self, parse):
        """A range mixing IPv4 and IPv6 is an error."""
        with pytest.raises(ConfigError, match="different IP families"):
            parse("address-pools:\n- name: p\n  protocol: layer2\n  addresses: ['10.0.0.1-2001:db8::1']\n")

    def test_plain_address_needs_a_length(self, parse):
        """A bare IP without /len is invalid and the message says how to fix it."""
        with pytest.raises(ConfigError, match="/32 or /128"):
            parse("address-pools:\n- name: p\n  protocol: layer2\n  addresses: [10.0.0.1]\n")

    def test_bad_prefix_length(self, parse):
        """/33 is an invalid CIDR naming the pool and the value."""
        with pytest.raises(
            ConfigError, match='address pool #1 "p": field "addresses": value "10.0.0.0/33": invalid CIDR'
        ):
            parse("address-pools:\n- name: p\n  protocol: layer2\n  addresses: [10.0.0.0/33]\n")

    def test_overlap_within_a_pool(self, parse):
        """A CIDR overlapping an earlier CIDR of the same pool is rejected."""
        with pytest.raises(
            ConfigError, match='CIDR "10.0.0.0/25" in pool "p" overlaps with already defined CIDR "10.0.0.0/24"'
        ):
            parse("address-pools:\n- name: p\n  protocol: layer2\n  addresses: [10.0.0.0/24, 10.0.0.0/25]\n")

    def test_overlap_across_pools(self, parse):
        """Pools may not overlap; adjacent ranges are fine."""
        parse(POOL + "- name: q\n  protocol: layer2\n  addresses: [192.0.3.0/24]\n")
        with pytest.raises(ConfigError, match='address pool #2 "q": CIDR "192.0.2.128/25"'):
            parse(POOL + "- name: q\n  protocol: layer2\n  addresses: [192.0.2.128/25]\n")

    def test_pool_without_addresses(self, parse):
        """A pool needs at least one prefix."""
        with pytest.raises(ConfigError, match="pool has no prefixes defined"):
            parse("address-pools:\n- name: p\n  protocol: layer2\n  addresses: []\n")


class TestValidationOrder:
    def test_name_is_checked_before_addresses(self, parse):
        """Missing name is reported before bad addresses, as MetalLB orders its checks."""
        with pytest.raises(ConfigError, match="missing pool name"):
            parse("address-pools:\n- protocol: layer2\n  addresses: [nonsense]\n")

    def test_addresses_are_checked_before_protocol(self, parse):
        """Bad addresses are reported before a missing protocol."""
        with pytest.raises(ConfigError, match="invalid CIDR"):
            parse("address-pools:\n- name: p\n  addresses: [1.2.3.4/99]\n")

    def test_missing_and_unknown_protocol(self, parse):
        """protocol is required and must be layer2 or bgp."""
        with pytest.raises(ConfigError, match="missing the protocol field"):
            parse("address-pools:\n- name: p\n  addresses: [10.0.0.0/24]\n")
        with pytest.raises(ConfigError, match='field "protocol": value "arp": unknown protocol'):
            parse("address-pools:\n- name: p\n  protocol: arp\n  addresses: [10.0.0.0/24]\n")

    def test_duplicate_pool_name(self, parse):
        """Pool names are unique."""
        with pytest.raises(ConfigError, match='duplicate definition of pool "p"'):
            parse(POOL + "- name: p\n  protocol: layer2\n  addresses: [10.0.0.0/24]\n")

    def test_peers_are_checked_before_pools(self, parse):
        """A bad peer is reported even when a pool is bad too."""
        with pytest.raises(ConfigError, match="peer #1: missing local ASN"):
            parse("address-pools:\n- protocol: layer2\npeers:\n- peer-asn: 1\n  peer-address: 192.0.2.1\n")


class TestBgpAdvertisements:
    def test_default_advertisement(self, parse):
        """A bgp pool without advertisements gets one default advertisement."""
        config = parse("address-pools:\n- name: p\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n")
        assert config.pools["p"].bgp_advertisements == (BgpAdvertisement(),)

    def test_null_entry_is_a_default_advertisement(self, parse):
        """'bgp-advertisements: [ - ]' decodes to one all-default advertisement."""
        config = parse(
            "address-pools:\n- name: p\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n  bgp-advertisements:\n  -\n"
        )
        assert config.pools["p"].bgp_advertisements == (BgpAdvertisement(),)

    def test_layer2_pool_with_advertisements(self, parse):
        """A layer2 pool may not carry advertisements, but an empty list is tolerated."""
        parse(POOL + "  bgp-advertisements: []\n")
        with pytest.raises(ConfigError, match="cannot have bgp-advertisements configuration element in a layer2"):
            parse(POOL + "  bgp-advertisements:\n  - localpref: 1\n")

    def test_aggregation_length_against_each_family(self, parse):
        """aggregation-length checks IPv4 CIDRs, aggregation-length-v6 IPv6 ones."""
        base = "address-pools:\n- name: p\n  protocol: bgp\n  addresses: [10.0.0.0/24, 2001:db8::/64]\n  bgp-advertisements:\n"
        config = parse(base + "  - aggregation-length: 24\n    aggregation-length-v6: 64\n")
        adv = config.pools["p"].bgp_advertisements[0]
        assert (adv.aggregation_length, adv.aggregation_length_v6) == (24, 64)
        with pytest.raises(ConfigError, match='field "aggregation-length": value "16".*10.0.0.0/24 is more specific'):
            parse(base + "  - aggregation-length: 16\n")
        with pytest.raises(ConfigError, match='field "aggregation-length-v6": value "48"'):
            parse(base + "  - aggregation-length-v6: 48\n")
        with pytest.raises(ConfigError, match="must be at most 32"):
            parse(base + "  - aggregation-length: 33\n")

    def test_communities_aliases_literals_and_large(self, parse):
        """Communities resolve aliases first, then literals; large:A:B:C is accepted; result is sorted."""
        config = parse(
            "bgp-communities:\n  noexp: 65535:65281\naddress-pools:\n- name: p\n  protocol: bgp\n"
            "  addresses: [10.0.0.0/24]\n  bgp-advertisements:\n  - communities: [large:1:2:3, noexp, 100:1]\n"
        )
        assert config.pools["p"].bgp_advertisements[0].communities == (
            Community(100 << 16 | 1),
            Community(0xFFFFFF01),
            LargeCommunity(global_admin=1, local1=2, local2=3),
        )

    def test_bad_community_alias_is_checked_even_if_unused(self, parse):
        """Every alias is parsed, used or not."""
        with pytest.raises(ConfigError, match='parsing community "bad": value "1:70000": invalid second section'):
            parse("bgp-communities:\n  bad: 1:70000\n")

    def test_duplicates_in_advertisements(self, parse):
        """Duplicate communities in one advertisement, or duplicate advertisements, are rejected."""
        base = "address-pools:\n- name: p\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n  bgp-advertisements:\n"
        with pytest.raises(ConfigError, match="duplicate community"):
            parse(base + "  - communities: [1:1, 1:1]\n")
        with pytest.raises(ConfigError, match="duplicate advertisement"):
            parse(base + "  - localpref: 5\n  - localpref: 5\n")


class TestPeers:
    PEER = "peers:\n- my-asn: 64500\n  peer-asn: 64501\n  peer-address: 192.0.2.1\n"

    def test_defaults(self, parse):
        """Port defaults to 179 and hold time to 90 s."""
        (peer,) = parse(self.PEER).peers
        assert (peer.peer_port, peer.hold_time, peer.router_id, peer.password) == (179, 90, None, "")

    @pytest.mark.parametrize(("text", "seconds"), [("3m", 180), ("1m30s", 90), ("0", 0), ("4.9s", 4), ("1h", 3600)])
    def test_hold_time_durations(self, parse, text, seconds):
        """hold-time is a Go duration, truncated to whole seconds."""
        (peer,) = parse(self.PEER + f"  hold-time: {text}\n").peers
        assert peer.hold_time == seconds

    @pytest.mark.parametrize("text", ["90", "2s", "abc"])
    def test_bad_hold_time(self, parse, text):
        """A hold time without unit, below 3 s, or unparseable is rejected."""
        with pytest.raises(ConfigError, match=f'peer #1: field "hold-time": value "{text}": invalid hold time'):
            parse(self.PEER + f"  hold-time: {text}\n")

    def test_missing_asns_and_bad_address(self, parse):
        """ASNs are required, the address must parse."""
        with pytest.raises(ConfigError, match="missing peer ASN"):
            parse("peers:\n- my-asn: 1\n  peer-address: 192.0.2.1\n")
        with pytest.raises(ConfigError, match='field "peer-address": value "router1": invalid peer IP'):
            parse("peers:\n- my-asn: 1\n  peer-asn: 2\n  peer-address: router1\n")
        with pytest.raises(ConfigError, match='field "my-asn": value "-5"'):
            parse("peers:\n- my-asn: -5\n  peer-asn: 2\n  peer-address: 192.0.2.1\n")

    def test_duplicate_peer(self, parse):
        """Two identical peers are rejected; differing only in hold time is allowed."""
        with pytest.raises(ConfigError, match="peer #2: already exists"):
            parse(self.PEER + self.PEER.removeprefix("peers:\n"))
        config = parse(self.PEER + self.PEER.removeprefix("peers:\n") + "  hold-time: 30s\n")
        assert len(config.peers) == 2

    def test_source_address_router_id_password(self, parse):
        """source-address (v0.11+), router-id and password are parsed."""
        (peer,) = parse(self.PEER + "  source-address: 192.0.2.9\n  router-id: 10.0.0.1\n  password: s3cret\n").peers
        assert (str(peer.source_address), str(peer.router_id), peer.password) == ("192.0.2.9", "10.0.0.1", "s3cret")

    def test_frr_only_keys_are_not_supported(self, parse):
        """keepalive-time and friends give a clear not-supported error."""
        with pytest.raises(ConfigError, match='field "keepalive-time" is not supported'):
            parse(self.PEER + "  keepalive-time: 10s\n")


class TestNodeSelectors:
    def test_selectors_are_ored_and_match(self, parse):
        """List items are ORed; labels and expressions inside one are ANDed."""
        (peer,) = parse(
            TestPeers.PEER + "  node-selectors:\n  - match-labels: {rack: a}\n    match-expressions:\n"
            "    - {key: zone, operator: In, values: [x, y]}\n  - match-expressions:\n    - {key: edge, operator: Exists}\n"
        ).peers
        assert peer.selects({"rack": "a", "zone": "x"})
        assert not peer.selects({"rack": "a", "zone": "z"})
        assert peer.selects({"edge": ""})
        assert not peer.selects({})

    def test_empty_selector_list_selects_all(self):
        """No selectors means every node."""
        assert NodeSelector.any_match((), {"anything": "x"})

    def test_bad_operator_and_values(self, parse):
        """Operators are exact-case; In needs values, Exists takes none."""
        base = TestPeers.PEER + "  node-selectors:\n  - match-expressions:\n"
        with pytest.raises(ConfigError, match='field "operator": value "in"'):
            parse(base + "    - {key: a, operator: in, values: [x]}\n")
        with pytest.raises(ConfigError, match="needs at least one value"):
            parse(base + "    - {key: a, operator: NotIn}\n")
        with pytest.raises(ConfigError, match="takes no values"):
            parse(base + "    - {key: a, operator: Exists, values: [x]}\n")
        with pytest.raises(ConfigError, match="invalid label key"):
            parse(base + "    - {key: 'bad key', operator: Exists}\n")


class TestExtensions:
    def test_interfaces_and_node_selectors_on_pools(self, parse):
        """Pools accept interfaces (layer2 only) and node-selectors."""
        config = parse(POOL + "  interfaces: [eth0, 'en*']\n  node-selectors:\n  - match-labels: {l2: 'yes'}\n")
        pool = config.pools["p"]
        assert pool.l2_advertisements == (L2Advertisement(interfaces=("eth0", "en*")),)
        assert pool.node_selectors[0].matches({"l2": "yes"})

    def test_interfaces_on_bgp_pool_rejected(self, parse):
        """interfaces applies to layer2 pools only."""
        with pytest.raises(ConfigError, match="applies to layer2 pools only"):
            parse("address-pools:\n- name: p\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n  interfaces: [eth0]\n")

    def test_pool_order_is_file_order(self, parse):
        """Config.pools keeps file order, which is the auto-assign order."""
        text = "".join(f"- name: {n}\n  protocol: layer2\n  addresses: [10.0.{i}.0/24]\n" for i, n in enumerate("zay"))
        assert list(parse("address-pools:\n" + text).pools) == ["z", "a", "y"]

    def test_config_is_immutable(self, parse):
        """Config and its pools mapping cannot be changed."""
        config = parse(POOL)
        with pytest.raises(TypeError):
            config.pools["x"] = config.pools["p"]  # type: ignore[index]
        with pytest.raises(AttributeError):
            config.peers = ()  # type: ignore[misc]


class TestDump:
    def test_normalised_output_parses_back_to_the_same_config(self, parse):
        """What check-config prints is itself a valid config equal to the original."""
        from metallb.allocator import dump_config

        text = (
            "peers:\n- my-asn: 64500\n  peer-asn: 64501\n  peer-address: 192.0.2.1\n  hold-time: 1m30s\n"
            "  node-selectors:\n  - match-labels: {rack: a}\n"
            "bgp-communities:\n  noexp: 65535:65281\n"
            "address-pools:\n- name: p\n  protocol: bgp\n  addresses: [10.0.0.1-10.0.0.6, 2001:db8::/64]\n"
            "  bgp-advertisements:\n  - aggregation-length: 32\n    communities: [noexp, large:1:2:3]\n"
            "- name: q\n  protocol: layer2\n  auto-assign: no\n  interfaces: [eth*]\n  addresses: [10.1.0.0/24]\n"
        )
        config = parse(text)
        assert parse(dump_config(config)) == config


class TestReviewedConfigEdges:
    def test_boolean_given_a_list(self, parse):
        """A list where a boolean belongs is a ConfigError, not a crash."""
        with pytest.raises(ConfigError, match='field "auto-assign".*must be a boolean'):
            parse(POOL + "  auto-assign: [yes]\n")

    def test_aggregation_checked_against_expanded_range(self, parse):
        """A range is checked through the CIDRs it expands to, as MetalLB does."""
        base = "address-pools:\n- name: p\n  protocol: bgp\n  addresses: [10.0.0.1-10.0.0.2]\n  bgp-advertisements:\n"
        with pytest.raises(ConfigError, match="10.0.0.1/32 is more specific"):
            parse(base + "  - aggregation-length: 30\n")
        assert parse(base + "  - aggregation-length: 32\n").pools["p"].bgp_advertisements[0].aggregation_length == 32


class TestV012Compatibility:
    """The ConfigMap cases where MetalLB v0.12.1's own parser gave a different verdict; each has MetalLB's now."""

    PEER = "peers:\n- my-asn: 64500\n  peer-asn: 64501\n  peer-address: 192.0.2.1\n"
    BGP = "address-pools:\n- name: p\n  protocol: bgp\n  addresses: [{addresses}]\n  bgp-advertisements:\n"

    def test_ebgp_multihop_is_accepted(self, parse):
        """MetalLB accepts ebgp-multihop on a peer (check-config warns it is not applied yet); not on an iBGP peer."""
        (peer,) = parse(self.PEER + "  ebgp-multihop: true\n").peers
        assert peer.ebgp_multihop
        with pytest.raises(ConfigError, match="invalid ebgp-multihop parameter set for an ibgp peer"):
            parse(self.PEER.replace("64501", "64500") + "  ebgp-multihop: true\n")

    def test_range_aggregation_against_its_widest_cidr(self, parse):
        """MetalLB accepts 3.3.3.2-3.3.3.254 with aggregation-length 26 (its widest piece is a /26), rejects 25."""
        base = self.BGP.format(addresses="3.3.3.2-3.3.3.254")
        assert parse(base + "  - aggregation-length: 26\n").pools["p"].bgp_advertisements[0].aggregation_length == 26
        with pytest.raises(ConfigError, match="more specific"):
            parse(base + "  - aggregation-length: 25\n")

    def test_default_and_explicit_32_are_two_advertisements(self, parse):
        """MetalLB accepts {} and {aggregation-length: 32} in one pool: they are not duplicates as written."""
        config = parse(self.BGP.format(addresses="10.0.0.0/24") + "  - {}\n  - aggregation-length: 32\n")
        assert config.pools["p"].bgp_advertisements == (BgpAdvertisement(), BgpAdvertisement())

    def test_alias_and_its_literal_are_no_duplicate(self, parse):
        """MetalLB accepts [no-export, "65535:65281"] (an alias and its value): they collapse into one community."""
        text = "bgp-communities:\n  no-export: 65535:65281\n" + self.BGP.format(addresses="10.0.0.0/24")
        config = parse(text + '  - communities: [no-export, "65535:65281"]\n')
        assert config.pools["p"].bgp_advertisements[0].communities == (Community(0xFFFFFF01),)

    def test_quoted_number_is_refused(self, parse):
        """MetalLB rejects my-asn: "1": Go's YAML decodes no quoted text into a number (nor into a boolean)."""
        with pytest.raises(ConfigError, match='peer #1: field "my-asn": value "1": must be a number, not quoted text'):
            parse(self.PEER.replace("my-asn: 64500", 'my-asn: "1"'))
        with pytest.raises(ConfigError, match='field "auto-assign": value "false": must be a boolean'):
            parse(POOL + '  auto-assign: "false"\n')
        assert parse(self.PEER.replace("my-asn: 64500", "my-asn: 1")).peers[0].my_asn == 1
