"""Frame parsing and reply templates, checked against scapy; the kernel filter, checked in a namespace."""

from __future__ import annotations

import ctypes
import random
import select
import socket
import struct
import threading

import netaddr
import pytest
from hypothesis import given
from hypothesis import strategies as st
from metallb.announcers.layer2.netlink import enter_netns
from metallb.announcers.layer2.packets import (
    ArpAnswer,
    NdpAnswer,
    checksum,
    mac_bytes,
    parse_arp_claim,
    parse_arp_request,
    parse_neighbor_advertisement,
    parse_neighbor_solicitation,
    responder_filter,
    solicited_node_group,
)
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    in6_chksum,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import raw

CLIENT = "02:00:00:00:00:c0"
NODE = "02:00:00:00:00:0a"
VIP4 = "192.0.2.100"
VIP6 = "2001:db8:1::100"


def scapy_arp(*, dst: str = "ff:ff:ff:ff:ff:ff", op: int = 1) -> bytes:
    """An ARP request (or other op) from the client for VIP4, built by scapy."""
    return raw(Ether(dst=dst, src=CLIENT) / ARP(op=op, hwsrc=CLIENT, psrc="192.0.2.1", pdst=VIP4))


def scapy_ns(
    *, src: str = "2001:db8:1::1", hlim: int = 255, slla: bool = True, mac: str = "33:33:ff:00:01:00"
) -> bytes:
    """A Neighbor Solicitation for VIP6 to its solicited-node group (by default), built by scapy."""
    dst = "ff02::1:ff00:100" if mac.startswith("33:33") else VIP6
    pkt = Ether(src=CLIENT, dst=mac) / IPv6(src=src, dst=dst, hlim=hlim)
    pkt = pkt / ICMPv6ND_NS(tgt=VIP6)
    if slla:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=CLIENT)
    return raw(pkt)


def arp_answer() -> ArpAnswer:
    return ArpAnswer(mac=mac_bytes(NODE), address=bytes(netaddr.IPAddress(VIP4).packed))


def ndp_answer() -> NdpAnswer:
    return NdpAnswer(mac=mac_bytes(NODE), address=bytes(netaddr.IPAddress(VIP6).packed))


class TestChecksum:
    """The Internet checksum used for ICMPv6."""

    def test_matches_scapy_for_random_data(self):
        """For random buffers of every parity the checksum equals scapy's."""
        from scapy.utils import checksum as scapy_checksum

        rng = random.Random(1)
        for length in range(1, 200):
            data = bytes(rng.getrandbits(8) for _ in range(length))
            assert checksum(data) % 0xFFFF == scapy_checksum(data) % 0xFFFF

    def test_solicited_node_group(self):
        """The group is ff02::1:ff plus the low 24 bits of the address."""
        group = solicited_node_group(bytes(netaddr.IPAddress("2001:db8::12:3456").packed))
        assert netaddr.IPAddress(int.from_bytes(group, "big")) == netaddr.IPAddress("ff02::1:ff12:3456")


class TestArpFrames:
    """ARP requests in, replies and gratuitous frames out."""

    def test_parses_a_broadcast_request(self):
        """A broadcast request yields the asker's MAC and IP and the target."""
        request = parse_arp_request(scapy_arp(), mac_bytes(NODE))
        assert request is not None
        assert request.sender_mac == mac_bytes(CLIENT)
        assert request.target_ip == netaddr.IPAddress(VIP4).packed

    def test_accepts_requests_to_our_mac_only(self):
        """Requests unicast to us are parsed; unicast to someone else is dropped."""
        assert parse_arp_request(scapy_arp(dst=NODE), mac_bytes(NODE)) is not None
        assert parse_arp_request(scapy_arp(dst="02:00:00:00:00:99"), mac_bytes(NODE)) is None

    def test_drops_replies_and_truncated_frames(self):
        """ARP replies and every truncation of a request are dropped."""
        good = scapy_arp()
        assert parse_arp_request(scapy_arp(op=2), mac_bytes(NODE)) is None
        assert all(parse_arp_request(good[:n], mac_bytes(NODE)) is None for n in range(len(good) - 18))

    def test_reply_equals_scapys(self):
        """The template reply is byte for byte what scapy builds."""
        request = parse_arp_request(scapy_arp(), mac_bytes(NODE))
        assert request is not None
        expected = Ether(dst=CLIENT, src=NODE) / ARP(op=2, hwsrc=NODE, psrc=VIP4, hwdst=CLIENT, pdst="192.0.2.1")
        assert arp_answer().reply(request) == raw(expected)

    def test_gratuitous_request_and_reply(self):
        """Both gratuitous frames are broadcast with sender = target = the address."""
        for frame, op in zip(arp_answer().gratuitous(), (1, 2), strict=True):
            pkt = Ether(frame)
            assert pkt.dst == "ff:ff:ff:ff:ff:ff"
            assert (pkt[ARP].op, pkt[ARP].psrc, pkt[ARP].pdst, pkt[ARP].hwsrc) == (op, VIP4, VIP4, NODE)
            assert pkt[ARP].hwdst == "ff:ff:ff:ff:ff:ff"


class TestNdpFrames:
    """Neighbor Solicitations in, advertisements out."""

    def test_parses_a_solicitation_with_source_link_layer_option(self):
        """The source address, source link-layer option and target are extracted."""
        ns = parse_neighbor_solicitation(scapy_ns(), mac_bytes(NODE))
        assert ns is not None
        assert ns.source_mac == mac_bytes(CLIENT)
        assert ns.target == netaddr.IPAddress(VIP6).packed

    def test_accepts_unicast_to_our_mac_only(self):
        """A unicast solicitation (a reachability probe) is parsed when sent to our MAC only."""
        assert parse_neighbor_solicitation(scapy_ns(mac=NODE), mac_bytes(NODE)) is not None
        assert parse_neighbor_solicitation(scapy_ns(mac="02:00:00:00:00:99"), mac_bytes(NODE)) is None

    def test_drops_invalid_solicitations(self):
        """No option, DAD source, hop limit 64, bad checksum or any truncation: dropped."""
        good = scapy_ns()
        assert parse_neighbor_solicitation(scapy_ns(slla=False), mac_bytes(NODE)) is None
        assert parse_neighbor_solicitation(scapy_ns(src="::", slla=False), mac_bytes(NODE)) is None
        assert parse_neighbor_solicitation(scapy_ns(hlim=64), mac_bytes(NODE)) is None
        assert parse_neighbor_solicitation(good[:56] + b"\x00\x00" + good[58:], mac_bytes(NODE)) is None
        assert all(parse_neighbor_solicitation(good[:n], mac_bytes(NODE)) is None for n in range(len(good)))

    def test_reply_equals_scapys(self):
        """The solicited NA (S=1, O=0, hop limit 255, from the address) matches scapy's, checksum included."""
        ns = parse_neighbor_solicitation(scapy_ns(), mac_bytes(NODE))
        assert ns is not None
        expected = (
            Ether(dst=CLIENT, src=NODE)
            / IPv6(src=VIP6, dst="2001:db8:1::1", hlim=255)
            / ICMPv6ND_NA(tgt=VIP6, R=0, S=1, O=0)
            / ICMPv6NDOptDstLLAddr(lladdr=NODE)
        )
        assert ndp_answer().reply(ns) == raw(expected)

    def test_reply_checksum_is_valid_for_many_sources(self):
        """For any asker address the incremental checksum verifies."""
        rng = random.Random(2)
        for _ in range(200):
            src = str(netaddr.IPAddress(rng.getrandbits(128), 6))
            ns = parse_neighbor_solicitation(scapy_ns(src=src), mac_bytes(NODE))
            assert ns is not None
            pkt = Ether(ndp_answer().reply(ns))
            icmp = raw(pkt[ICMPv6ND_NA])
            assert in6_chksum(58, pkt[IPv6], icmp) == 0

    def test_unsolicited_advertisement(self):
        """The gratuitous NA goes to all nodes with O=1, S=0, hop limit 255 and a valid checksum."""
        pkt = Ether(ndp_answer().gratuitous())
        assert (pkt.dst, pkt[IPv6].dst, pkt[IPv6].hlim) == ("33:33:00:00:00:01", "ff02::1", 255)
        na = pkt[ICMPv6ND_NA]
        assert (na.S, na.O, na.R, na.tgt, pkt[ICMPv6NDOptDstLLAddr].lladdr) == (0, 1, 0, VIP6, NODE)
        assert in6_chksum(58, pkt[IPv6], raw(na)) == 0


def packet_socket(ns: str, ifname: str, *, with_filter: bool = False) -> socket.socket:
    """A raw packet socket bound to *ifname* in namespace *ns* (opened by a thread that enters it)."""
    box: list[socket.socket] = []

    def open_socket() -> None:
        enter_netns(f"/run/netns/{ns}")
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        if with_filter:
            prog = responder_filter()
            buf = ctypes.create_string_buffer(prog, len(prog))
            sock.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HL", len(prog) // 8, ctypes.addressof(buf)))
        sock.bind((ifname, 0x0003))
        box.append(sock)

    thread = threading.Thread(target=open_socket)
    thread.start()
    thread.join()
    return box[0]


@pytest.mark.netns
class TestKernelFilter:
    """The classic BPF program, attached to a real socket."""

    def test_keeps_only_received_arp_and_neighbour_discovery(self, netlab):
        """ARP requests and replies, NS and NA pass; our own frames, other ARP ops, IPv4 and VLAN-tagged do not."""
        a, b = netlab.ns("a"), netlab.ns("b")
        netlab.veth(a, "v0", b, "v1")
        na = raw(Ether(dst=NODE, src=CLIENT) / IPv6(src=VIP6, dst="fe80::1") / ICMPv6ND_NA(tgt=VIP6))
        ipv4 = raw(Ether(dst=NODE, src=CLIENT, type=0x0800) / (b"\x45" + bytes(40)))
        tagged = raw(
            Ether(dst="ff:ff:ff:ff:ff:ff", src=CLIENT) / Dot1Q(vlan=7) / ARP(op=1, psrc="192.0.2.1", pdst=VIP4)
        )
        with packet_socket(b, "v1", with_filter=True) as listener, packet_socket(a, "v0") as sender:
            listener.send(scapy_arp())  # outgoing: must not come back to the listener
            for frame in (scapy_arp(), scapy_arp(op=2), scapy_arp(op=3), scapy_ns(), na, ipv4, tagged):
                sender.send(frame)
            got = []
            while select.select([listener], [], [], 0.3)[0]:
                got.append(listener.recv(2048))
        assert got == [scapy_arp(), scapy_arp(op=2), scapy_ns(), na]


STRANGER = "02:00:00:00:00:5e"


def scapy_na(*, hlim: int = 255, tlla: str | None = STRANGER, solicited: int = 0, override: int = 1) -> bytes:
    """An unsolicited (by default) Neighbor Advertisement for VIP6 from STRANGER to all nodes, built by scapy."""
    pkt = Ether(src=STRANGER, dst="33:33:00:00:00:01") / IPv6(src=VIP6, dst="ff02::1", hlim=hlim)
    pkt = pkt / ICMPv6ND_NA(tgt=VIP6, R=0, S=solicited, O=override)
    if tlla is not None:
        pkt = pkt / ICMPv6NDOptDstLLAddr(lladdr=tlla)
    return raw(pkt)


class TestClaims:
    """Frames in which another host claims an address: ARP of either op, Neighbor Advertisements."""

    @pytest.mark.parametrize("op", [1, 2])
    def test_arp_request_or_reply_names_its_sender(self, op):
        """A gratuitous ARP request or reply gives its sender's MAC and address."""
        claim = parse_arp_claim(scapy_arp(op=op))
        assert claim is not None and claim.sender_mac == mac_bytes(CLIENT)
        assert claim.sender_ip == netaddr.IPAddress("192.0.2.1").packed
        assert parse_arp_claim(scapy_arp(op=3)) is None

    def test_unsolicited_na_names_the_target_link_layer_address(self):
        """An unsolicited NA with O=1 parses to its target, the MAC in its option, and its flags."""
        na = parse_neighbor_advertisement(scapy_na(tlla="02:00:00:00:00:99"))
        assert na is not None and na.target == netaddr.IPAddress(VIP6).packed
        assert na.mac == mac_bytes("02:00:00:00:00:99") and na.override and not na.solicited

    def test_without_an_option_the_ethernet_source_is_the_claimant(self):
        """An NA without a target link-layer option is claimed by the frame's source MAC."""
        na = parse_neighbor_advertisement(scapy_na(tlla=None, solicited=1, override=0))
        assert na is not None and na.mac == mac_bytes(STRANGER) and na.solicited and not na.override

    def test_invalid_advertisements_are_dropped(self):
        """A hop limit below 255, a bad checksum, a truncated frame or a solicitation are not advertisements."""
        good = scapy_na()
        assert parse_neighbor_advertisement(scapy_na(hlim=64)) is None
        broken = bytearray(good)
        broken[57] ^= 0xFF
        assert parse_neighbor_advertisement(bytes(broken)) is None
        assert parse_neighbor_advertisement(good[:70]) is None
        assert parse_neighbor_advertisement(scapy_ns()) is None

    def test_our_own_gratuitous_na_parses_to_our_mac(self):
        """The responder's own unsolicited NA (O=1) names the node's MAC, so it is recognised as ours."""
        answer = NdpAnswer(mac=mac_bytes(NODE), address=bytes(netaddr.IPAddress(VIP6).packed))
        na = parse_neighbor_advertisement(answer.gratuitous())
        assert na is not None and na.mac == mac_bytes(NODE) and na.override

    @given(st.binary(max_size=200))
    def test_arbitrary_bytes_never_raise(self, data):
        """Garbage parses to None or an advertisement, never an exception."""
        parse_neighbor_advertisement(data)
        parse_arp_claim(data)
