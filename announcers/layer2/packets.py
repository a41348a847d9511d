"""Layer-2 frames for the responder: parsing with slices, replies from prebuilt templates.

Everything here is pure bytes work, no sockets, so it can be tested against
scapy. The hot path (:meth:`ArpAnswer.reply`, :meth:`NdpAnswer.reply` and the
``parse_*`` functions) does a handful of slices and one dict lookup per frame.
"""

from __future__ import annotations

import struct

import attrs
import netaddr

__all__ = [
    "BROADCAST",
    "ArpAnswer",
    "ArpRequest",
    "ArpClaim",
    "NdpAnswer",
    "NeighborAdvertisement",
    "NeighborSolicitation",
    "checksum",
    "mac_bytes",
    "mac_text",
    "parse_arp_claim",
    "parse_arp_request",
    "parse_neighbor_advertisement",
    "parse_neighbor_solicitation",
    "responder_filter",
    "solicited_node_group",
]

BROADCAST = b"\xff" * 6
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
_ARP_HEADER = b"\x00\x01\x08\x00\x06\x04"  # Ethernet, IPv4, hlen 6, plen 4
_ARP_REQUEST = b"\x00\x01"
_ARP_REPLY = b"\x00\x02"
_ICMPV6 = 58
_NS = 135
_NA = 136
_ALL_NODES = bytes(netaddr.IPAddress("ff02::1").packed)
_ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"
_SN_PREFIX = bytes(netaddr.IPAddress("ff02::1:ff00:0").packed)[:13]
_UNSPECIFIED = bytes(16)
# Enough for any sane solicitation; longer frames are cut and then fail the length check.
SNAPLEN = 512


def mac_bytes(mac: str) -> bytes:
    """``02:00:00:00:00:01`` -> 6 bytes."""
    return bytes(int(part, 16) for part in mac.split(":"))


def mac_text(mac: bytes) -> str:
    """6 bytes -> ``02:00:00:00:00:01``."""
    return ":".join(f"{b:02x}" for b in mac)


def checksum(data: bytes) -> int:
    """The Internet checksum of *data* (RFC 1071).

    Because 2**16 is 1 modulo 0xFFFF, the one's-complement sum of 16-bit words
    is the whole buffer read as one big integer, modulo 0xFFFF: one C-level
    operation instead of a Python loop.
    """
    if len(data) % 2:
        data += b"\x00"
    return 0xFFFF - int.from_bytes(data, "big") % 0xFFFF


def solicited_node_group(address: bytes) -> bytes:
    """The solicited-node multicast group (``ff02::1:ffXX:XXXX``) of a 16-byte address."""
    return _SN_PREFIX + address[13:]


# -- classic BPF ---------------------------------------------------------------------

_LD_W_ABS = 0x20
_LD_H_ABS = 0x28
_LD_B_ABS = 0x30
_JEQ_K = 0x15
_RET_K = 0x06
_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE
_VLAN_TAG_PRESENT = 0xFFFFF000 + 48  # SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT
_PACKET_OUTGOING = 4


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def responder_filter() -> bytes:
    """A kernel socket filter keeping only received, untagged ARP requests and replies, Neighbor
    Solicitations and Neighbor Advertisements.

    Returns the ``struct sock_filter`` array; the kernel drops everything else
    before it is queued, so floods of other traffic cost us nothing. Replies
    and advertisements are kept to see other hosts claiming our addresses.
    Our own sent frames (gratuitous ones included) are dropped by packet type.
    VLAN-tagged frames belong to the VLAN's own interface: answering them
    untagged here would answer on the wrong network.
    """
    prog = [
        _ins(_LD_W_ABS, 0, 0, _PKTTYPE),  # 0
        _ins(_JEQ_K, 14, 0, _PACKET_OUTGOING),  # 1 -> drop
        _ins(_LD_W_ABS, 0, 0, _VLAN_TAG_PRESENT),  # 2
        _ins(_JEQ_K, 0, 12, 0),  # 3 untagged -> 4 | drop
        _ins(_LD_H_ABS, 0, 0, 12),  # 4 ethertype
        _ins(_JEQ_K, 0, 3, ETH_P_ARP),  # 5 -> 6 | 9
        _ins(_LD_H_ABS, 0, 0, 20),  # 6 ARP opcode
        _ins(_JEQ_K, 7, 0, 1),  # 7 request -> accept | 8
        _ins(_JEQ_K, 6, 7, 2),  # 8 reply -> accept | drop
        _ins(_JEQ_K, 0, 6, ETH_P_IPV6),  # 9 -> 10 | drop
        _ins(_LD_B_ABS, 0, 0, 20),  # 10 next header
        _ins(_JEQ_K, 0, 4, _ICMPV6),  # 11 -> 12 | drop
        _ins(_LD_B_ABS, 0, 0, 54),  # 12 ICMPv6 type
        _ins(_JEQ_K, 1, 0, _NS),  # 13 -> accept | 14
        _ins(_JEQ_K, 0, 1, _NA),  # 14 -> accept | drop
        _ins(_RET_K, 0, 0, SNAPLEN),  # 15 accept
        _ins(_RET_K, 0, 0, 0),  # 16 drop
    ]
    return b"".join(prog)


# -- requests ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ArpRequest:
    """The parts of an ARP request a reply needs."""

    sender_mac: bytes
    sender_ip: bytes
    target_ip: bytes


@attrs.frozen(kw_only=True)
class NeighborSolicitation:
    """The parts of a Neighbor Solicitation a reply needs."""

    source_ip: bytes
    source_mac: bytes
    target: bytes


@attrs.frozen(kw_only=True)
class ArpClaim:
    """An ARP frame (request or reply) in which a host gives its MAC for an address."""

    sender_mac: bytes
    sender_ip: bytes


@attrs.frozen(kw_only=True)
class NeighborAdvertisement:
    """The parts of a Neighbor Advertisement that tell who claims an address.

    Attributes:
        target: the 16-byte address advertised.
        mac: the target link-layer address option, or the frame's source MAC without one.
        solicited: the S flag (an answer to a solicitation).
        override: the O flag (neighbours must replace what they cached).
    """

    target: bytes
    mac: bytes
    solicited: bool
    override: bool


def parse_arp_claim(frame: bytes) -> ArpClaim | None:
    """The sender of an Ethernet ARP request or reply (gratuitous or not); None for anything else."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06" or frame[14:20] != _ARP_HEADER:
        return None
    if frame[20:22] not in (_ARP_REQUEST, _ARP_REPLY):
        return None
    return ArpClaim(sender_mac=frame[22:28], sender_ip=frame[28:32])


def parse_neighbor_advertisement(frame: bytes, *, check_sum: bool = True) -> NeighborAdvertisement | None:
    """Parse an Ethernet/IPv6 Neighbor Advertisement, validated as RFC 4861 section 7.1.2 says; None otherwise.

    Hop limit 255, code 0, at least 24 bytes, checksum, option lengths, a
    target that is not multicast. The claimed MAC is the target link-layer
    address option's, else the Ethernet source.
    """
    if len(frame) < 78 or frame[12:14] != b"\x86\xdd" or frame[14] >> 4 != 6:
        return None
    if frame[20] != _ICMPV6 or frame[21] != 255 or frame[54] != _NA or frame[55] != 0:
        return None
    plen = (frame[18] << 8) | frame[19]
    end = 54 + plen
    if plen < 24 or end > len(frame):
        return None
    target = frame[62:78]
    if target[0] == 0xFF:
        return None
    if check_sum:
        pseudo = frame[22:38] + frame[38:54] + struct.pack("!IxxxB", plen, _ICMPV6)
        if checksum(pseudo + frame[54:end]) not in (0, 0xFFFF):
            return None
    mac = frame[6:12]
    pos = 78
    while pos + 2 <= end:  # options; each is at least 8 bytes, so this loop is bounded
        kind, units = frame[pos], frame[pos + 1]
        if units == 0 or pos + units * 8 > end:
            return None
        if kind == 2 and units == 1:
            mac = frame[pos + 2 : pos + 8]
        pos += units * 8
    flags = frame[58]
    return NeighborAdvertisement(target=target, mac=mac, solicited=bool(flags & 0x40), override=bool(flags & 0x20))


def parse_arp_request(frame: bytes, own_mac: bytes) -> ArpRequest | None:
    """Parse an Ethernet ARP request addressed to broadcast or *own_mac*; None otherwise."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06" or frame[14:20] != _ARP_HEADER or frame[20:22] != _ARP_REQUEST:
        return None
    dst = frame[0:6]
    if dst != BROADCAST and dst != own_mac:
        return None
    sender_mac = frame[22:28]
    if sender_mac[0] & 1:  # never unicast a reply to a group address
        return None
    return ArpRequest(sender_mac=sender_mac, sender_ip=frame[28:32], target_ip=frame[38:42])


def parse_neighbor_solicitation(frame: bytes, own_mac: bytes, *, check_sum: bool = True) -> NeighborSolicitation | None:
    """Parse an Ethernet/IPv6 Neighbor Solicitation that carries a source link-layer option.

    Applies RFC 4861 section 7.1.1 validation (hop limit 255, code 0, length,
    checksum, option lengths) and drops solicitations from the unspecified
    address (DAD probes), which cannot be answered by unicast. Frames unicast
    to another MAC (seen on shared media) are dropped, as the kernel's own
    ICMPv6 socket would.
    """
    if len(frame) < 78 or frame[12:14] != b"\x86\xdd" or frame[14] >> 4 != 6:
        return None
    if not frame[0] & 1 and frame[0:6] != own_mac:
        return None
    if frame[20] != _ICMPV6 or frame[21] != 255 or frame[54] != _NS or frame[55] != 0:
        return None
    plen = (frame[18] << 8) | frame[19]
    end = 54 + plen
    if plen < 24 or end > len(frame):
        return None
    source = frame[22:38]
    dest = frame[38:54]
    target = frame[62:78]
    if source == _UNSPECIFIED or target[0] == 0xFF:
        return None
    if dest != target and dest != _SN_PREFIX + target[13:]:
        return None
    if check_sum:
        pseudo = source + dest + struct.pack("!IxxxB", plen, _ICMPV6)
        if checksum(pseudo + frame[54:end]) not in (0, 0xFFFF):
            return None
    mac = None
    pos = 78
    while pos + 2 <= end:  # options; each is at least 8 bytes, so this loop is bounded
        kind, units = frame[pos], frame[pos + 1]
        if units == 0 or pos + units * 8 > end:
            return None
        if kind == 1 and units == 1:
            mac = frame[pos + 2 : pos + 8]
        pos += units * 8
    if mac is None or mac[0] & 1:
        return None
    return NeighborSolicitation(source_ip=source, source_mac=mac, target=target)


# -- replies -------------------------------------------------------------------------


@attrs.frozen
class ArpAnswer:
    """Prebuilt frames for answering ARP for one address on one interface.

    Attributes:
        mac: the interface MAC.
        address: the 4-byte service address.
    """

    mac: bytes
    address: bytes
    _middle: bytes = attrs.field(init=False, repr=False)

    @_middle.default
    def _build_middle(self) -> bytes:
        # Everything between the two requester fields: our MAC, type, header, sender pair.
        return self.mac + b"\x08\x06" + _ARP_HEADER + _ARP_REPLY + self.mac + self.address

    def reply(self, request: ArpRequest) -> bytes:
        """The unicast reply to *request*."""
        return request.sender_mac + self._middle + request.sender_mac + request.sender_ip

    def gratuitous(self) -> tuple[bytes, bytes]:
        """A gratuitous ARP request and reply, both broadcast, sender and target = the address."""
        head = BROADCAST + self.mac + b"\x08\x06" + _ARP_HEADER
        tail = self.mac + self.address + BROADCAST + self.address
        return head + _ARP_REQUEST + tail, head + _ARP_REPLY + tail


@attrs.frozen
class NdpAnswer:
    """Prebuilt frames for answering Neighbor Solicitations for one address on one interface.

    Replies come from the service address itself, as the kernel answers for its
    own addresses: ndisc6 ignores advertisements from any other source.

    Attributes:
        mac: the interface MAC.
        address: the 16-byte service address.
    """

    mac: bytes
    address: bytes
    _partial: int = attrs.field(init=False, repr=False)
    _before: bytes = attrs.field(init=False, repr=False)
    _after: bytes = attrs.field(init=False, repr=False)

    @_partial.default
    def _build_partial(self) -> int:
        # Checksum of everything but the destination address, which varies per reply.
        return int.from_bytes(self.address + struct.pack("!IxxxB", 32, _ICMPV6) + self._body(0x40, 0), "big") % 0xFFFF

    @_before.default
    def _build_before(self) -> bytes:
        return self.mac + b"\x86\xdd" + b"\x60\x00\x00\x00\x00\x20\x3a\xff" + self.address

    @_after.default
    def _build_after(self) -> bytes:
        return self.address + b"\x02\x01" + self.mac

    def _body(self, flags: int, csum: int) -> bytes:
        return struct.pack("!BBHB3x", _NA, 0, csum, flags) + self.address + b"\x02\x01" + self.mac

    def reply(self, request: NeighborSolicitation) -> bytes:
        """The solicited advertisement (S=1, O=0, target link-layer option) answering *request*."""
        dst = request.source_ip
        csum = 0xFFFF - (self._partial + int.from_bytes(dst, "big")) % 0xFFFF
        return (
            request.source_mac
            + self._before
            + dst
            + bytes((_NA, 0, csum >> 8, csum & 0xFF, 0x40, 0, 0, 0))
            + self._after
        )

    def gratuitous(self) -> bytes:
        """An unsolicited advertisement (S=0, O=1) to all nodes (``ff02::1``)."""
        pseudo = self.address + _ALL_NODES + struct.pack("!IxxxB", 32, _ICMPV6)
        csum = checksum(pseudo + self._body(0x20, 0))
        return (
            _ALL_NODES_MAC
            + self.mac
            + b"\x86\xdd\x60\x00\x00\x00\x00\x20\x3a\xff"
            + self.address
            + _ALL_NODES
            + self._body(0x20, csum)
        )
