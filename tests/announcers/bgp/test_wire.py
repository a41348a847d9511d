"""BGP message encodings, checked byte by byte against hand-decoded RFC layouts and by scapy's decoder."""

from __future__ import annotations

import netaddr
import pytest
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
            "0000 0004 40 01 05 02",  # attribute longer than the list
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
        w.validate_update(msg[19:])
