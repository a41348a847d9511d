"""BGP message encodings, checked byte by byte against hand-decoded RFC layouts and by scapy's decoder."""

from __future__ import annotations

import struct

import netaddr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metallb.allocator.model import Community, LargeCommunity
from metallb.announcers.bgp import wire as w
from scapy.contrib import bgp as sb

# scapy assumes 2-octet AS paths unless told otherwise (it would garble ours).
sb.bgp_module_conf.use_2_bytes_asn = False

MARKER = "ff" * 16
NH4 = netaddr.IPAddress("192.0.2.2")
NH6 = netaddr.IPAddress("2001:db8:1::2")


def h(text: str) -> bytes:
    """Bytes from hex with spaces."""
    return bytes.fromhex(text.replace(" ", ""))


def scapy_capabilities(raw: bytes) -> list[sb.BGPCapability]:
    """Every capability in a capability parameter value, decoded by scapy one at a time."""
    caps = []
    while raw:
        cap = sb.BGPCapability(raw)
        caps.append(cap)
        raw = raw[2 + cap.length :]
    return caps


def attrs_(**kwargs: object) -> w.PathAttributes:
    defaults: dict[str, object] = {"local_asn": 64512, "ibgp": False, "four_octet": True, "next_hop": NH4}
    return w.PathAttributes(**{**defaults, **kwargs})  # type: ignore[arg-type]


class TestOpen:
    """OPEN (RFC 4271 4.2) with capabilities (RFC 4760, 2918, 6793)."""

    def test_two_octet_asn_bytes(self):
        """A 2-octet ASN goes in My AS and in the 4-octet capability; 51 bytes in all."""
        got = w.encode_open(asn=65001, hold_time=90, router_id=netaddr.IPAddress("192.0.2.2"))
        want = h(MARKER + "0033 0104 fde9 005a c0000202 1602 1401 04 0001 00 0101 04 0002 00 0102 0041 04 0000fde9")
        assert got == want

    def test_four_octet_asn_uses_as_trans(self):
        """An ASN above 65535 sends AS_TRANS (23456) in My AS and the real one in capability 65."""
        got = w.encode_open(asn=4200000001, hold_time=3, router_id=netaddr.IPAddress("198.51.100.1"))
        assert got[19:29] == h("04 5ba0 0003 c6336401 16")
        assert got[-6:] == h("41 04 fa56ea01")

    def test_scapy_decodes_open(self):
        """scapy reads version, AS_TRANS, hold time, router ID and all four capabilities."""
        msg = sb.BGP(w.encode_open(asn=4200000001, hold_time=90, router_id=netaddr.IPAddress("192.0.2.2")))
        op = msg[sb.BGPOpen]
        assert (op.version, op.my_as, op.hold_time, op.bgp_id) == (4, 23456, 90, "192.0.2.2")
        caps = scapy_capabilities(bytes(w.encode_open(asn=4200000001, hold_time=90, router_id=NH4)[31:]))
        assert [c.code for c in caps] == [1, 1, 2, 65]
        assert [(c.afi, c.safi) for c in caps[:2]] == [(1, 1), (2, 1)]
        assert caps[3].asn == 4200000001

    def test_decode_roundtrip_of_peer_open(self):
        """A peer's OPEN yields its 4-octet ASN, hold time, families and capabilities."""
        body = w.encode_open(asn=4200000001, hold_time=30, router_id=NH4)[19:]
        got = w.decode_open(body)
        assert got == w.Open(
            asn=4200000001,
            hold_time=30,
            router_id=NH4,
            families=frozenset({(1, 1), (2, 1)}),
            four_octet=True,
            route_refresh=True,
        )

    def test_open_without_capabilities_means_ipv4_only(self):
        """No MP capability means IPv4 unicast only, and the 2-octet ASN is the peer's ASN."""
        got = w.decode_open(h("04 fc01 005a c0000201 00"))
        assert (got.asn, got.families, got.four_octet) == (64513, frozenset({(1, 1)}), False)

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ("03 fc01 005a c0000201 00", (2, 1)),  # version 3
            ("04 fc01 005a c0000201 04 01 02 00 00", (2, 4)),  # optional parameter type 1
            ("04 fc01 005a c0000201 05 02 03 41 04 00", (2, 0)),  # capability longer than its parameter
            ("04 fc01 005a c0000201 09", (2, 0)),  # parameter length beyond the message
        ],
    )
    def test_malformed_open_is_rejected_with_code(self, body, code):
        """Malformed OPENs raise the RFC's NOTIFICATION code and subcode."""
        with pytest.raises(w.BgpError) as err:
            w.decode_open(h(body))
        assert (err.value.code, err.value.subcode) == code


class TestUpdate:
    """UPDATE encoding (RFC 4271 4.3, 4760, 6793, 1997, 8092)."""

    def test_ebgp_two_octet_peer_bytes(self):
        """eBGP to a 2-octet peer: ORIGIN, 2-octet AS_PATH, NEXT_HOP, COMMUNITIES, then the NLRI."""
        msgs = list(
            w.encode_updates(
                attrs_(four_octet=False, communities=(Community(65000 << 16 | 1),)),
                [netaddr.IPNetwork("198.51.100.10/32")],
            )
        )
        want = h(MARKER + "0035 020000 001940 01 01 0240 02 04 02 01 fc0040 03 04 c0000202c0 08 04 fde8000120 c633640a")
        assert msgs == [want]

    def test_ibgp_has_empty_as_path_and_local_pref(self):
        """iBGP: an empty AS_PATH and LOCAL_PREF, in type order."""
        (msg,) = w.encode_updates(attrs_(ibgp=True, localpref=200), [netaddr.IPNetwork("198.51.100.0/24")])
        assert msg[19:] == h("0000 0015 40 01 01 02 40 02 00 40 03 04 c0000202 40 05 04 000000c8 18 c63364")

    def test_four_octet_asn_to_two_octet_peer_adds_as4_path(self):
        """A 4-octet ASN to a 2-octet peer: AS_TRANS in AS_PATH and the real ASN in AS4_PATH."""
        (msg,) = w.encode_updates(
            attrs_(local_asn=4200000001, four_octet=False), [netaddr.IPNetwork("198.51.100.10/32")]
        )
        assert h("40 02 04 02 01 5ba0") in msg
        assert h("c0 11 06 02 01 fa56ea01") in msg

    def test_ipv6_goes_in_mp_reach(self):
        """IPv6 prefixes travel in MP_REACH_NLRI with a 16-byte next hop, and no NEXT_HOP attribute."""
        (msg,) = w.encode_updates(attrs_(next_hop=NH6), [netaddr.IPNetwork("2001:db8:ff::/64")])
        mp = h("90 0e 001e 0002 01 10 20010db8000100000000000000000002 00 40 20010db800ff0000")
        assert msg[19:] == h("0000 002f 40 01 01 02 40 02 06 02 01 0000fc00") + mp

    def test_scapy_decodes_ebgp_update_with_four_octet_path(self):
        """scapy (4-octet mode) reads our AS path, next hop, communities and NLRI."""
        (msg,) = w.encode_updates(
            attrs_(
                local_asn=4200000001,
                communities=(Community(65000 << 16 | 1), LargeCommunity(global_admin=1, local1=2, local2=3)),
            ),
            [netaddr.IPNetwork("198.51.100.10/32"), netaddr.IPNetwork("198.51.100.0/24")],
        )
        upd = sb.BGP(msg)[sb.BGPUpdate]
        by_code = {a.type_code: a.attribute for a in upd.path_attr}
        assert by_code[1].origin == 2
        assert by_code[2].segments[0].segment_value == [4200000001]
        assert by_code[3].next_hop == "192.0.2.2"
        assert by_code[8].community == 65000 << 16 | 1
        seg = by_code[32].segments[0]
        assert (seg.global_administrator, seg.local_data_part1, seg.local_data_part2) == (1, 2, 3)
        assert [str(n.prefix) for n in upd.nlri] == ["198.51.100.10/32", "198.51.100.0/24"]

    def test_scapy_decodes_ipv6_update(self):
        """scapy reads MP_REACH_NLRI's AFI, next hop and prefix."""
        (msg,) = w.encode_updates(
            attrs_(next_hop=NH6, ibgp=True, localpref=7), [netaddr.IPNetwork("2001:db8:ff::10/128")]
        )
        upd = sb.BGP(msg)[sb.BGPUpdate]
        by_code = {a.type_code: a.attribute for a in upd.path_attr}
        mp = by_code[14]
        assert (mp.afi, mp.nh_v6_addr, str(mp.nlri[0].prefix)) == (2, "2001:db8:1::2", "2001:db8:ff::10/128")
        assert by_code[5].local_pref == 7

    def test_many_prefixes_are_packed_under_4096_bytes(self):
        """Prefixes sharing attributes fill UPDATEs up to the 4096-byte limit, none lost."""
        nets = [netaddr.IPNetwork(f"10.{i >> 8}.{i & 255}.1/32") for i in range(2000)]
        msgs = list(w.encode_updates(attrs_(), nets))
        assert all(len(m) <= 4096 for m in msgs)
        assert len(msgs) == 3
        decoded = [str(n.prefix) for m in msgs for n in sb.BGP(m)[sb.BGPUpdate].nlri]
        assert decoded == [str(n) for n in nets]

    def test_withdrawals_are_batched(self):
        """IPv4 withdrawals share the withdrawn-routes field; IPv6 ones share MP_UNREACH_NLRI."""
        v4 = [netaddr.IPNetwork("198.51.100.10/32"), netaddr.IPNetwork("198.51.100.0/24")]
        v6 = [netaddr.IPNetwork("2001:db8:ff::10/128")]
        msgs = list(w.encode_withdrawals(v4 + v6))
        assert msgs[0] == h(MARKER + "0020 02 0009 20 c633640a 18 c63364 0000")
        unreach = sb.BGP(msgs[1])[sb.BGPUpdate].path_attr[0].attribute
        assert unreach.afi == 2
        assert [str(n.prefix) for n in unreach.afi_safi_specific.withdrawn_routes] == ["2001:db8:ff::10/128"]


class TestOtherMessages:
    """KEEPALIVE, NOTIFICATION, ROUTE-REFRESH and header checks."""

    def test_keepalive_is_a_bare_header(self):
        """A KEEPALIVE is the 19-byte header with type 4."""
        assert w.encode_keepalive() == h(MARKER + "0013 04")

    def test_notification_bytes_and_text(self):
        """A NOTIFICATION carries code, subcode and data; logs name it in words."""
        assert w.encode_notification(2, 2, h("fc00")) == h(MARKER + "0017 03 02 02 fc00")
        assert w.notification_text(2, 2) == "2/2 OPEN Message Error: Bad Peer AS"

    def test_route_refresh_bytes(self):
        """ROUTE-REFRESH: AFI, reserved, SAFI (RFC 2918)."""
        assert w.encode_route_refresh(2) == h(MARKER + "0017 05 0002 00 01")

    @pytest.mark.parametrize(
        ("header", "code"),
        [
            ("00" * 16 + "0013 04", (1, 1)),
            (MARKER + "0012 04", (1, 2)),
            (MARKER + "1001 02", (1, 2)),
            (MARKER + "0013 09", (1, 3)),
            (MARKER + "0014 04", (1, 2)),
        ],
    )
    def test_bad_headers(self, header, code):
        """Bad marker, length or type raise the matching Message Header Error."""
        with pytest.raises(w.BgpError) as err:
            w.decode_header(h(header))
        assert (err.value.code, err.value.subcode) == code

    @pytest.mark.parametrize(
        "body",
        [
            "0005 20c6",  # withdrawn length past the end
            "0000 0010 40 01 01 02",  # attributes length past the end
            "0000 0000 21 c633640a",  # NLRI prefix length 33
        ],
    )
    def test_malformed_updates_are_rejected(self, body):
        """Received UPDATEs with broken framing raise an UPDATE Message Error."""
        with pytest.raises(w.BgpError) as err:
            w.validate_update(h(body))
        assert err.value.code == 3

    def test_well_formed_update_passes(self):
        """Our own UPDATEs pass the validation we apply to received ones."""
        (msg,) = w.encode_updates(attrs_(), [netaddr.IPNetwork("198.51.100.0/24")])
        assert w.validate_update(msg[19:]) == w.UpdateCheck(announced=1)

    def test_extended_length_only_when_allowed(self):
        """UPDATE may be 65535 bytes once extended messages are negotiated; OPEN and KEEPALIVE never exceed 4096."""
        with pytest.raises(w.BgpError):
            w.decode_header(h(MARKER + "1001 02"))
        assert w.decode_header(h(MARKER + "ffff 02"), max_len=w.MAX_EXTENDED_LEN) == (w.MsgType.UPDATE, 65516)
        for kind in ("01", "04"):
            with pytest.raises(w.BgpError) as err:
                w.decode_header(h(MARKER + "1001" + kind), max_len=w.MAX_EXTENDED_LEN)
            assert (err.value.code, err.value.subcode) == (1, 2)

    @pytest.mark.parametrize(
        ("body", "want"),
        [
            ("0001 00 02", None),  # subtype 0 of RFC 2918 ... (AFI 1, reserved, SAFI 2)
            ("0002 00", (7, 1)),  # 3 bytes
            ("0001 00 01 00", (7, 1)),  # 5 bytes
        ],
    )
    def test_route_refresh_length(self, body, want):
        """A ROUTE-REFRESH whose body is not 4 bytes is a ROUTE-REFRESH Message Error (RFC 7313 section 5)."""
        if want is None:
            assert w.decode_route_refresh(h(body)) == (1, 0, 2)
            return
        with pytest.raises(w.BgpError) as err:
            w.decode_route_refresh(h(body))
        assert (err.value.code, err.value.subcode) == want
        assert w.notification_text(7, 1) == "7/1 ROUTE-REFRESH Message Error: Invalid Message Length"


class TestCapabilities:
    """Graceful restart (RFC 4724), extended messages (RFC 8654) and extended optional parameters (RFC 9072)."""

    GR = w.GracefulRestart(restart_time=120, restarting=True, families=((1, 1, True), (2, 1, True)))

    def test_graceful_restart_and_extended_message_bytes(self):
        """GR is code 64: R bit and 12-bit restart time, then AFI, SAFI, F bit per family; extended message is 6/0."""
        got = w.encode_open(asn=64512, hold_time=90, router_id=NH4, graceful_restart=self.GR, extended_message=True)
        assert h("06 00 40 0a 8078 0001 01 80 0002 01 80") in got
        caps = scapy_capabilities(got[31:])
        assert [c.code for c in caps] == [1, 1, 2, 6, 64, 65]
        gr = caps[4]
        assert (gr.restart_flags, gr.restart_time) == (0x8, 120)
        # scapy 2.8 decodes only the first family (the rest stays raw); the bytes above show both.
        assert [(e.afi, e.safi, e.flags) for e in gr.entries][:1] == [(1, 1, 0x80)]

    def test_default_open_is_unchanged(self):
        """Without the options, the OPEN carries the four original capabilities only."""
        assert w.encode_open(asn=64512, hold_time=90, router_id=NH4) == w.encode_open(
            asn=64512, hold_time=90, router_id=NH4, graceful_restart=None, extended_message=False
        )

    def test_decode_roundtrip(self):
        """A peer's GR (with restart time, R bit and F bits) and extended message capabilities are read back."""
        body = w.encode_open(asn=64513, hold_time=9, router_id=NH4, graceful_restart=self.GR, extended_message=True)[
            19:
        ]
        got = w.decode_open(body)
        assert got.graceful_restart == self.GR
        assert got.extended_message

    def test_helper_only_graceful_restart(self):
        """A GR capability without families (a helper that keeps no state itself) is 2 bytes."""
        got = w.GracefulRestart.decode(h("0078"))
        assert got == w.GracefulRestart(restart_time=120)
        assert got.encode() == h("0078")

    @pytest.mark.parametrize("value", ["", "00", "0078 0001", "0078 0001 01 80 00"])
    def test_malformed_graceful_restart_is_an_open_error(self, value):
        """A GR capability whose length is not 2 + 4n is refused with OPEN Message Error."""
        with pytest.raises(w.BgpError) as err:
            w.GracefulRestart.decode(h(value))
        assert err.value.code == 2

    def test_rfc9072_extended_optional_parameters(self):
        """Non-Ext OP Len 255 and Type 255 announce 2-byte parameter lengths; the capabilities inside are read."""
        caps = h("01 04 0001 00 01 41 04 fade0001")
        params = h("02") + struct.pack("!H", len(caps)) + caps
        body = h("04 5ba0 005a c0000201 ff ff") + struct.pack("!H", len(params)) + params
        got = w.decode_open(body)
        assert (got.asn, got.families) == (0xFADE0001, frozenset({(1, 1)}))

    def test_malformed_multiprotocol_capability(self):
        """A multiprotocol capability that is not 4 bytes is an OPEN Message Error."""
        with pytest.raises(w.BgpError) as err:
            w.decode_open(h("04 fc01 005a c0000201 06 02 04 01 02 0001"))
        assert err.value.code == 2


class TestEndOfRib:
    """The End-of-RIB marker (RFC 4724 section 2)."""

    def test_ipv4_is_an_empty_update(self):
        """IPv4 unicast: an UPDATE with no withdrawn routes, no attributes and no NLRI: 23 bytes."""
        assert w.encode_end_of_rib(1) == h(MARKER + "0017 02 0000 0000")

    def test_ipv6_is_an_empty_mp_unreach(self):
        """IPv6 unicast: an UPDATE whose only attribute is an empty MP_UNREACH_NLRI for AFI 2 / SAFI 1."""
        msg = w.encode_end_of_rib(2)
        assert msg == h(MARKER + "001d 02 0000 0006 80 0f 03 0002 01")
        unreach = sb.BGP(msg)[sb.BGPUpdate].path_attr[0].attribute
        assert unreach.afi == 2

    @pytest.mark.parametrize("afi", [1, 2])
    def test_recognized_when_received(self, afi):
        """validate_update reports an End-of-RIB as such."""
        assert w.validate_update(w.encode_end_of_rib(afi)[19:]).end_of_rib == (afi, 1)

    def test_withdrawal_is_not_end_of_rib(self):
        """An UPDATE that withdraws something is not an End-of-RIB."""
        (msg,) = w.encode_withdrawals([netaddr.IPNetwork("2001:db8::/64")])
        assert w.validate_update(msg[19:]).end_of_rib is None


class TestMessageSize:
    """UPDATEs stay within 4096 bytes, or 65535 with extended messages, and never split an attribute set."""

    MANY = tuple(Community(65000 << 16 | i) for i in range(2000))

    def test_many_prefixes_and_attribute_sets_stay_within_limits(self):
        """Thousands of prefixes with large attributes fill messages of at most the given size, none lost."""
        big = attrs_(communities=self.MANY[:900])  # 3.6 kB of communities: about 100 prefixes per UPDATE
        nets = [netaddr.IPNetwork(f"10.{i >> 8}.{i & 255}.0/24") for i in range(1000)]
        msgs = list(w.encode_updates(big, nets))
        assert all(len(m) <= 4096 for m in msgs)
        decoded = [str(n.prefix) for m in msgs for n in sb.BGP(m)[sb.BGPUpdate].nlri]
        assert decoded == [str(n) for n in nets]
        for m in msgs:
            assert w.validate_update(m[19:]).action == w.UpdateAction.ACCEPT

    def test_attributes_too_large_for_4096(self):
        """2 000 communities need more than 4096 bytes: refused at 4096, fine at 65535."""
        big = attrs_(communities=self.MANY)
        assert w.update_overhead(big) > 8000
        with pytest.raises(ValueError, match="no prefix fits within 4096"):
            list(w.encode_updates(big, [netaddr.IPNetwork("198.51.100.10/32")]))
        msgs = list(w.encode_updates(big, [netaddr.IPNetwork("198.51.100.10/32")], max_len=w.MAX_EXTENDED_LEN))
        assert len(msgs) == 1 and 8000 < len(msgs[0]) <= 65535
        assert msgs[0][16:18] == struct.pack("!H", len(msgs[0]))
        assert h("d0 08 1f40") in msgs[0]  # COMMUNITIES, extended length: 8000 bytes
        assert str(sb.BGP(msgs[0])[sb.BGPUpdate].nlri[0].prefix) == "198.51.100.10/32"
        assert w.validate_update(msgs[0][19:]).announced == 1

    def test_ipv6_with_large_attributes_extended(self):
        """IPv6 prefixes with large attributes pack into MP_REACH_NLRI within 65535 bytes."""
        big = attrs_(next_hop=NH6, communities=self.MANY)
        nets = [netaddr.IPNetwork(f"2001:db8:{i:x}::/64") for i in range(5000)]
        msgs = list(w.encode_updates(big, nets, max_len=w.MAX_EXTENDED_LEN))
        assert all(len(m) <= 65535 for m in msgs)
        assert sum(w.validate_update(m[19:]).announced for m in msgs) == 5000

    def test_attribute_longer_than_any_message(self):
        """An attribute over 65535 bytes cannot be encoded at all."""
        huge = attrs_(communities=tuple(Community(i) for i in range(17000)))
        with pytest.raises(ValueError, match="does not fit any BGP message"):
            w.update_overhead(huge)

    def test_prefix_keys_encode_like_networks(self):
        """encode_prefix_key gives the bytes of encode_prefix for every length."""
        for text in ("0.0.0.0/0", "10.0.0.0/8", "198.51.100.128/25", "192.0.2.1/32", "2001:db8::/33", "::1/128"):
            net = netaddr.IPNetwork(text)
            assert w.encode_prefix_key(net.version, int(net.network), net.prefixlen) == w.encode_prefix(net)


def attribute(flags: int, code: int, value: str) -> str:
    """One path attribute as hex."""
    raw = h(value)
    return f"{flags:02x} {code:02x} {len(raw):02x} {value}"


def update(*attributes: str, nlri: str = "18 c63364", withdrawn: str = "") -> bytes:
    """An UPDATE body from hex parts."""
    wd, attrs_hex, nl = h(withdrawn), h(" ".join(attributes)), h(nlri)
    return struct.pack("!H", len(wd)) + wd + struct.pack("!H", len(attrs_hex)) + attrs_hex + nl


ORIGIN_OK = attribute(0x40, 1, "00")
PATH_OK = attribute(0x40, 2, "02 01 0000fc01")
NH_OK = attribute(0x40, 3, "c0000201")
VALID = (ORIGIN_OK, PATH_OK, NH_OK)
TAW, DISCARD = w.UpdateAction.TREAT_AS_WITHDRAW, w.UpdateAction.ATTRIBUTE_DISCARD


class TestRfc7606:
    """Received UPDATEs: session reset, treat-as-withdraw or attribute discard, as RFC 7606 assigns them."""

    @pytest.mark.parametrize(
        ("body", "want"),
        [
            # Treat-as-withdraw (RFC 7606 3, 4, 7.x)
            (update(ORIGIN_OK, PATH_OK), TAW),  # NEXT_HOP missing with NLRI present
            (update(PATH_OK, NH_OK), TAW),  # ORIGIN missing
            (update(attribute(0x40, 1, "07"), PATH_OK, NH_OK), TAW),  # undefined ORIGIN
            (update(attribute(0x40, 1, "0000"), PATH_OK, NH_OK), TAW),  # ORIGIN of 2 bytes
            (update(attribute(0xC0, 1, "00"), PATH_OK, NH_OK), TAW),  # ORIGIN flagged optional
            (update(ORIGIN_OK, attribute(0x40, 2, "07 01 0000fc01"), NH_OK), TAW),  # AS_PATH segment type 7
            (update(ORIGIN_OK, attribute(0x40, 2, "02 02 0000fc01"), NH_OK), TAW),  # segment overruns
            (update(ORIGIN_OK, attribute(0x40, 2, "02 00"), NH_OK), TAW),  # empty segment
            (update(ORIGIN_OK, PATH_OK, attribute(0x40, 3, "c00002")), TAW),  # NEXT_HOP of 3 bytes
            (update(ORIGIN_OK, PATH_OK, attribute(0x40, 3, "7f000001")), TAW),  # loopback next hop
            (update(ORIGIN_OK, PATH_OK, attribute(0x40, 3, "e0000001")), TAW),  # multicast next hop
            (update(*VALID, attribute(0x80, 4, "000000")), TAW),  # MED of 3 bytes
            (update(*VALID, attribute(0xC0, 8, "fde800")), TAW),  # COMMUNITIES not a multiple of 4
            (update(*VALID, attribute(0xC0, 8, "")), TAW),  # empty COMMUNITIES
            (update(*VALID, attribute(0xC0, 32, "00" * 11)), TAW),  # LARGE_COMMUNITY not a multiple of 12
            (update(*VALID, attribute(0xC0, 16, "00" * 7)), TAW),  # EXTENDED_COMMUNITIES not a multiple of 8
            (update(*VALID) + b"", w.UpdateAction.ACCEPT),
            (h("0000 0005 40 01 01 00 40"), TAW),  # 2 bytes left: too few for an attribute header
            (h("0000 0004 40 01 05 02"), TAW),  # attribute longer than the attribute list
            # Attribute discard
            (update(*VALID, attribute(0x40, 6, "01")), DISCARD),  # ATOMIC_AGGREGATE with a value
            (update(*VALID, attribute(0xC0, 7, "fc01c0000201")), DISCARD),  # 2-octet AGGREGATOR on a 4-octet session
            (update(*VALID, attribute(0x40, 5, "00000064")), DISCARD),  # LOCAL_PREF from eBGP
            (update(*VALID, attribute(0xC0, 17, "02 01 0000fc01")), DISCARD),  # AS4_PATH from a 4-octet peer
            (update(*VALID, attribute(0xC0, 8, "fde80001"), attribute(0xC0, 8, "fde80002")), DISCARD),  # repeat
            # Unknown optional attributes are ignored.
            (update(*VALID, attribute(0xC0, 99, "0102")), w.UpdateAction.ACCEPT),
            (update(*VALID, attribute(0x80, 200, "")), w.UpdateAction.ACCEPT),
            # A strong and a weak error: the strong wins (3 (i)).
            (update(attribute(0x40, 1, "07"), PATH_OK, NH_OK, attribute(0x40, 6, "01")), TAW),
        ],
    )
    def test_weaker_approaches(self, body, want):
        """Each malformed attribute gets its approach, with a line saying what was wrong."""
        got = w.validate_update(body)
        assert got.action == want
        assert bool(got.problems) == (want != w.UpdateAction.ACCEPT)

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            (update(*VALID, nlri="21 c633640a"), (3, 10)),  # NLRI prefix length 33
            (update(*VALID, nlri="18 c633"), (3, 10)),  # NLRI prefix runs past the message
            (update(*VALID, withdrawn="21 c633640a"), (3, 1)),  # withdrawn prefix length 33
            (update(*VALID, attribute(0x40, 99, "00")), (3, 2)),  # unrecognized well-known attribute
            (update(*VALID, attribute(0x80, 14, "0002 01 05 0102030405 00")), (3, 9)),  # IPv6 next hop of 5 bytes
            (update(*VALID, attribute(0x80, 14, "0002 01 10")), (3, 9)),  # next hop runs past the attribute
            (update(*VALID, attribute(0x80, 14, "0002 01 10" + "00" * 16 + "00 81" + "00" * 17)), (3, 9)),  # /129
            (update(*VALID, attribute(0x80, 15, "0002")), (3, 9)),  # MP_UNREACH too short
            (update(*VALID, attribute(0x80, 15, "0001 01 21 c633640a")), (3, 9)),  # IPv4 /33 in MP_UNREACH
            (update(attribute(0x80, 15, "0002 01"), attribute(0x80, 15, "0002 01"), nlri=""), (3, 1)),  # twice
        ],
    )
    def test_session_reset(self, body, code):
        """Errors that leave the NLRI unknowable reset the session with the RFC's code and subcode."""
        with pytest.raises(w.BgpError) as err:
            w.validate_update(body)
        assert (err.value.code, err.value.subcode) == code

    def test_unrecognized_well_known_attribute_is_the_notification_data(self):
        """3/2 carries the unrecognized attribute itself as data (RFC 4271 6.3)."""
        with pytest.raises(w.BgpError) as err:
            w.validate_update(update(*VALID, attribute(0x40, 99, "abcd")))
        assert err.value.data == h("40 63 02 abcd")

    def test_ibgp_needs_local_pref_and_keeps_it(self):
        """On iBGP, LOCAL_PREF is mandatory with routes, and accepted."""
        assert w.validate_update(update(*VALID, nlri="18 c63364"), ibgp=True).action == TAW
        ok = update(*VALID, attribute(0x40, 5, "00000064"))
        assert w.validate_update(ok, ibgp=True).action == w.UpdateAction.ACCEPT

    def test_two_octet_sessions_read_two_octet_paths(self):
        """Without 4-octet ASNs, AS_PATH holds 2-byte numbers, and a 6-byte AGGREGATOR is fine."""
        body = update(ORIGIN_OK, attribute(0x40, 2, "02 02 fc01 fc02"), NH_OK, attribute(0xC0, 7, "fc01c0000201"))
        assert w.validate_update(body, four_octet=False).action == w.UpdateAction.ACCEPT
        assert w.validate_update(body, four_octet=True).action == TAW

    def test_counts_prefixes(self):
        """Announced and withdrawn prefixes are counted across the NLRI field and the MP attributes."""
        mp = attribute(0x80, 14, "0002 01 10" + "20010db8000100000000000000000002" + "00 40 20010db800ff0000")
        body = update(ORIGIN_OK, PATH_OK, NH_OK, mp, nlri="18 c63364 20 c633640a", withdrawn="18 c00002")
        got = w.validate_update(body)
        assert (got.action, got.announced, got.withdrawn) == (w.UpdateAction.ACCEPT, 3, 1)


FUZZ = settings(
    derandomize=True, database=None, deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow]
)


def _valid_messages() -> list[bytes]:
    """Well-formed bodies to mutate: our UPDATEs (IPv4, IPv6, withdrawals, End-of-RIB) and an OPEN."""
    comms = (Community(65000 << 16 | 1), LargeCommunity(global_admin=1, local1=2, local2=3))
    out = [
        m[19:]
        for m in (
            *w.encode_updates(attrs_(communities=comms, four_octet=False, local_asn=4200000001),
                              [netaddr.IPNetwork("198.51.100.0/24"), netaddr.IPNetwork("192.0.2.1/32")]),
            *w.encode_updates(attrs_(next_hop=NH6, ibgp=True, localpref=5), [netaddr.IPNetwork("2001:db8::/64")]),
            *w.encode_withdrawals([netaddr.IPNetwork("198.51.100.0/24"), netaddr.IPNetwork("2001:db8::/64")]),
            w.encode_end_of_rib(2),
        )
    ]  # fmt: skip
    return out


VALID_BODIES = _valid_messages()
VALID_OPEN = w.encode_open(
    asn=4200000001,
    hold_time=90,
    router_id=NH4,
    graceful_restart=w.GracefulRestart(restart_time=120, families=((1, 1, True),)),
    extended_message=True,
)[19:]


@st.composite
def mutated(draw: st.DrawFn, bases: list[bytes]) -> bytes:
    """A well-formed body with a few bytes overwritten, cut, or inserted."""
    data = bytearray(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "cut", "insert"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


class TestDecoderFuzz:
    """Whatever a peer sends, the decoders either return or raise BgpError: never another exception."""

    @settings(FUZZ, max_examples=1500)
    @given(body=st.one_of(st.binary(max_size=300), mutated(VALID_BODIES)), four_octet=st.booleans(),
           ibgp=st.booleans())  # fmt: skip
    def test_update(self, body, four_octet, ibgp):
        """validate_update on random and mutated UPDATE bodies."""
        try:
            got = w.validate_update(body, four_octet=four_octet, ibgp=ibgp)
        except w.BgpError as exc:
            assert exc.code in (1, 3)
            return
        assert isinstance(got, w.UpdateCheck)

    @FUZZ
    @given(body=st.one_of(st.binary(max_size=120), mutated([VALID_OPEN])))
    def test_open(self, body):
        """decode_open on random and mutated OPEN bodies."""
        try:
            got = w.decode_open(body)
        except w.BgpError as exc:
            assert exc.code in (1, 2)
            return
        assert isinstance(got, w.Open)

    @FUZZ
    @given(header=st.binary(min_size=19, max_size=19), body=st.binary(max_size=8))
    def test_header_notification_route_refresh(self, header, body):
        """decode_header, decode_notification and decode_route_refresh on random bytes."""
        for call in (
            lambda: w.decode_header(header),
            lambda: w.decode_header(b"\xff" * 16 + header[:3], max_len=w.MAX_EXTENDED_LEN),
            lambda: w.decode_notification(body),
            lambda: w.decode_route_refresh(body),
            lambda: w.GracefulRestart.decode(body),
        ):
            try:
                call()
            except w.BgpError:
                pass
