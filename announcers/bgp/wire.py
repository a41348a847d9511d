"""BGP-4 message encoding and decoding (RFC 4271, 4760, 6793, 1997, 8092, 2918).

Pure functions over bytes: no sockets, no clocks. Encoding uses ``struct``
directly, because building 100 000 prefixes with a generic packet library costs
seconds where this costs milliseconds; the tests decode our output with scapy.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator, Sequence

import attrs
import netaddr
from metallb.allocator.model import Community, LargeCommunity

__all__ = [
    "AS_TRANS",
    "HEADER_LEN",
    "MAX_MESSAGE_LEN",
    "BgpError",
    "MsgType",
    "Open",
    "PathAttributes",
    "decode_header",
    "decode_notification",
    "decode_open",
    "encode_keepalive",
    "encode_notification",
    "encode_open",
    "encode_route_refresh",
    "encode_updates",
    "encode_withdrawals",
    "notification_text",
    "validate_update",
]

MARKER = b"\xff" * 16
HEADER_LEN = 19
MAX_MESSAGE_LEN = 4096
AS_TRANS = 23456

AFI_IPV4, AFI_IPV6, SAFI_UNICAST = 1, 2, 1
CAP_MP, CAP_ROUTE_REFRESH, CAP_AS4 = 1, 2, 65

# Path attribute flags and type codes.
OPTIONAL, TRANSITIVE, EXTENDED = 0x80, 0x40, 0x10
ORIGIN, AS_PATH, NEXT_HOP, LOCAL_PREF, COMMUNITIES = 1, 2, 3, 5, 8
MP_REACH, MP_UNREACH, AS4_PATH, LARGE_COMMUNITY = 14, 15, 17, 32
ORIGIN_INCOMPLETE = 2
AS_SEQUENCE = 2


class MsgType(enum.IntEnum):
    """BGP message types."""

    OPEN = 1
    UPDATE = 2
    NOTIFICATION = 3
    KEEPALIVE = 4
    ROUTE_REFRESH = 5


class BgpError(Exception):
    """A protocol error: the session must send NOTIFICATION *code*/*subcode* and close."""

    def __init__(self, code: int, subcode: int, reason: str, data: bytes = b"") -> None:
        super().__init__(f"{reason} (NOTIFICATION {code}/{subcode})")
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.data = data


# NOTIFICATION codes (RFC 4271 4.5) and the subcodes we send or commonly receive.
_CODES = {
    1: "Message Header Error",
    2: "OPEN Message Error",
    3: "UPDATE Message Error",
    4: "Hold Timer Expired",
    5: "Finite State Machine Error",
    6: "Cease",
}
_SUBCODES = {
    (1, 1): "Connection Not Synchronized",
    (1, 2): "Bad Message Length",
    (1, 3): "Bad Message Type",
    (2, 1): "Unsupported Version Number",
    (2, 2): "Bad Peer AS",
    (2, 3): "Bad BGP Identifier",
    (2, 4): "Unsupported Optional Parameter",
    (2, 6): "Unacceptable Hold Time",
    (3, 1): "Malformed Attribute List",
    (3, 5): "Attribute Length Error",
    (3, 10): "Invalid Network Field",
    (6, 2): "Administrative Shutdown",
    (6, 3): "Peer De-configured",
    (6, 4): "Administrative Reset",
    (6, 5): "Connection Rejected",
    (6, 7): "Connection Collision Resolution",
}


def notification_text(code: int, subcode: int) -> str:
    """``2/2 OPEN Message Error: Bad Peer AS``: how logs name a NOTIFICATION."""
    name = _CODES.get(code, "unknown code")
    sub = _SUBCODES.get((code, subcode))
    return f"{code}/{subcode} {name}" + (f": {sub}" if sub else "")


def _message(kind: MsgType, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", HEADER_LEN + len(body), kind) + body


def decode_header(header: bytes) -> tuple[MsgType, int]:
    """Check a 19-byte header; return the type and the body length."""
    if header[:16] != MARKER:
        raise BgpError(1, 1, "bad marker")
    length, kind = struct.unpack("!HB", header[16:19])
    if not HEADER_LEN <= length <= MAX_MESSAGE_LEN:
        raise BgpError(1, 2, f"bad message length {length}", header[16:18])
    try:
        mtype = MsgType(kind)
    except ValueError:
        raise BgpError(1, 3, f"bad message type {kind}", bytes([kind])) from None
    minimum = {MsgType.OPEN: 29, MsgType.UPDATE: 23, MsgType.NOTIFICATION: 21, MsgType.KEEPALIVE: 19}
    if length < minimum.get(mtype, 23) or (mtype == MsgType.KEEPALIVE and length != HEADER_LEN):
        raise BgpError(1, 2, f"bad length {length} for {mtype.name}", header[16:18])
    return mtype, length - HEADER_LEN


# -- OPEN ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Open:
    """The parts of an OPEN message a speaker acts on."""

    asn: int
    hold_time: int
    router_id: netaddr.IPAddress
    families: frozenset[tuple[int, int]] = frozenset()
    four_octet: bool = False
    route_refresh: bool = False
    version: int = 4


def encode_open(*, asn: int, hold_time: int, router_id: netaddr.IPAddress) -> bytes:
    """An OPEN with MP IPv4 and IPv6 unicast, route refresh and 4-octet AS capabilities."""
    caps = (
        struct.pack("!BBHBB", CAP_MP, 4, AFI_IPV4, 0, SAFI_UNICAST)
        + struct.pack("!BBHBB", CAP_MP, 4, AFI_IPV6, 0, SAFI_UNICAST)
        + struct.pack("!BB", CAP_ROUTE_REFRESH, 0)
        + struct.pack("!BBI", CAP_AS4, 4, asn)
    )
    params = struct.pack("!BB", 2, len(caps)) + caps
    my_as = asn if asn <= 0xFFFF else AS_TRANS
    body = struct.pack("!BHHIB", 4, my_as, hold_time, int(router_id), len(params)) + params
    return _message(MsgType.OPEN, body)


def decode_open(body: bytes) -> Open:
    """Parse an OPEN body, raising :class:`BgpError` with the RFC's subcode when malformed."""
    if len(body) < 10:
        raise BgpError(1, 2, "OPEN too short")
    version, my_as, hold, rid, plen = struct.unpack("!BHHIB", body[:10])
    if version != 4:
        raise BgpError(2, 1, f"unsupported BGP version {version}", struct.pack("!H", 4))
    params = body[10:]
    if len(params) != plen:
        raise BgpError(2, 0, f"optional parameters length {plen} but {len(params)} bytes follow")
    families: set[tuple[int, int]] = set()
    asn4: int | None = None
    refresh = False
    pos = 0
    while pos < plen:
        if pos + 2 > plen:
            raise BgpError(2, 0, "truncated optional parameter")
        ptype, length = params[pos], params[pos + 1]
        value = params[pos + 2 : pos + 2 + length]
        pos += 2 + length
        if len(value) != length:
            raise BgpError(2, 0, "truncated optional parameter")
        if ptype != 2:
            raise BgpError(2, 4, f"unsupported optional parameter {ptype}")
        for code, cap in _capabilities(value):
            if code == CAP_MP and len(cap) == 4:
                afi, _, safi = struct.unpack("!HBB", cap)
                families.add((afi, safi))
            elif code == CAP_AS4:
                if len(cap) != 4:
                    raise BgpError(2, 0, "malformed 4-octet AS capability")
                (asn4,) = struct.unpack("!I", cap)
            elif code == CAP_ROUTE_REFRESH:
                refresh = True
    return Open(
        asn=asn4 if asn4 is not None else my_as,
        hold_time=hold,
        router_id=netaddr.IPAddress(rid, 4),
        # No MP capability at all means IPv4 unicast only (RFC 4760 section 8).
        families=frozenset(families or {(AFI_IPV4, SAFI_UNICAST)}),
        four_octet=asn4 is not None,
        route_refresh=refresh,
        version=version,
    )


def _capabilities(value: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos < len(value):
        if pos + 2 > len(value):
            raise BgpError(2, 0, "truncated capability")
        code, length = value[pos], value[pos + 1]
        cap = value[pos + 2 : pos + 2 + length]
        if len(cap) != length:
            raise BgpError(2, 0, "truncated capability")
        yield code, cap
        pos += 2 + length


# -- KEEPALIVE, NOTIFICATION, ROUTE-REFRESH -----------------------------------------------

_KEEPALIVE = _message(MsgType.KEEPALIVE, b"")


def encode_keepalive() -> bytes:
    """A KEEPALIVE: the bare 19-byte header."""
    return _KEEPALIVE


def encode_notification(code: int, subcode: int, data: bytes = b"") -> bytes:
    """A NOTIFICATION with *code*, *subcode* and *data*."""
    return _message(MsgType.NOTIFICATION, struct.pack("!BB", code, subcode) + data)


def decode_notification(body: bytes) -> tuple[int, int, bytes]:
    """Code, subcode and data of a NOTIFICATION body."""
    if len(body) < 2:
        raise BgpError(1, 2, "NOTIFICATION too short")
    return body[0], body[1], body[2:]


def encode_route_refresh(afi: int, safi: int = SAFI_UNICAST) -> bytes:
    """A ROUTE-REFRESH request for one address family (RFC 2918)."""
    return _message(MsgType.ROUTE_REFRESH, struct.pack("!HBB", afi, 0, safi))


# -- UPDATE -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PathAttributes:
    """Everything an UPDATE carries besides the prefixes; equal values share an UPDATE.

    Attributes:
        local_asn: our ASN; put in AS_PATH for eBGP.
        ibgp: iBGP session: empty AS_PATH and LOCAL_PREF present.
        four_octet: the peer negotiated 4-octet AS numbers.
        next_hop: IPv4 next hop, or the IPv6 global next hop for IPv6 prefixes.
        localpref: LOCAL_PREF value (iBGP only).
        communities: standard and large communities.
    """

    local_asn: int
    ibgp: bool
    four_octet: bool
    next_hop: netaddr.IPAddress
    localpref: int = 0
    communities: tuple[Community | LargeCommunity, ...] = ()


def _attr(flags: int, code: int, value: bytes) -> bytes:
    if len(value) > 255:
        return struct.pack("!BBH", flags | EXTENDED, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def _as_path(asns: Sequence[int], width: int) -> bytes:
    if not asns:
        return b""
    fmt = "!BB" + ("H" if width == 2 else "I") * len(asns)
    return struct.pack(fmt, AS_SEQUENCE, len(asns), *asns)


def _common_attributes(attrs_: PathAttributes) -> list[bytes]:
    """ORIGIN, AS_PATH (+ AS4_PATH), LOCAL_PREF, COMMUNITIES, LARGE_COMMUNITY, each encoded."""
    out = [_attr(TRANSITIVE, ORIGIN, bytes([ORIGIN_INCOMPLETE]))]
    if attrs_.ibgp:
        out.append(_attr(TRANSITIVE, AS_PATH, b""))
    elif attrs_.four_octet:
        out.append(_attr(TRANSITIVE, AS_PATH, _as_path([attrs_.local_asn], 4)))
    elif attrs_.local_asn <= 0xFFFF:
        out.append(_attr(TRANSITIVE, AS_PATH, _as_path([attrs_.local_asn], 2)))
    else:
        # A 2-octet peer sees AS_TRANS; AS4_PATH carries the real number (RFC 6793 4.2.2).
        out.append(_attr(TRANSITIVE, AS_PATH, _as_path([AS_TRANS], 2)))
        out.append(_attr(OPTIONAL | TRANSITIVE, AS4_PATH, _as_path([attrs_.local_asn], 4)))
    if attrs_.ibgp:
        out.append(_attr(TRANSITIVE, LOCAL_PREF, struct.pack("!I", attrs_.localpref)))
    std = sorted(c.value for c in attrs_.communities if isinstance(c, Community))
    if std:
        out.append(_attr(OPTIONAL | TRANSITIVE, COMMUNITIES, struct.pack(f"!{len(std)}I", *std)))
    large = sorted((c.global_admin, c.local1, c.local2) for c in attrs_.communities if isinstance(c, LargeCommunity))
    if large:
        flat = [n for triple in large for n in triple]
        out.append(_attr(OPTIONAL | TRANSITIVE, LARGE_COMMUNITY, struct.pack(f"!{len(flat)}I", *flat)))
    return sorted(out, key=lambda a: a[1])


def encode_prefix(net: netaddr.IPNetwork) -> bytes:
    """NLRI encoding: length in bits, then just enough bytes of the address."""
    nbytes = (net.prefixlen + 7) // 8
    width = 4 if net.version == 4 else 16
    return bytes([net.prefixlen]) + int(net.network).to_bytes(width, "big")[:nbytes]


def _chunks(encoded: Iterable[bytes], room: int) -> Iterator[bytes]:
    """Concatenate encoded prefixes into runs of at most *room* bytes."""
    buf: list[bytes] = []
    size = 0
    for item in encoded:
        if size + len(item) > room and buf:
            yield b"".join(buf)
            buf, size = [], 0
        buf.append(item)
        size += len(item)
    if buf:
        yield b"".join(buf)


def encode_updates(attrs_: PathAttributes, prefixes: Iterable[netaddr.IPNetwork]) -> Iterator[bytes]:
    """UPDATEs announcing *prefixes* (all of one family) with *attrs_*, packed up to 4096 bytes.

    IPv4 prefixes go in the NLRI field with NEXT_HOP; IPv6 prefixes go in MP_REACH_NLRI.
    Attributes are in ascending type order.
    """
    common = _common_attributes(attrs_)
    if attrs_.next_hop.version == 4:
        ordered = sorted([*common, _attr(TRANSITIVE, NEXT_HOP, attrs_.next_hop.packed)], key=lambda a: a[1])
        attrs_blob = b"".join(ordered)
        room = MAX_MESSAGE_LEN - HEADER_LEN - 4 - len(attrs_blob)
        for nlri in _chunks(map(encode_prefix, prefixes), room):
            yield _message(MsgType.UPDATE, struct.pack("!HH", 0, len(attrs_blob)) + attrs_blob + nlri)
        return
    head = struct.pack("!HBB", AFI_IPV6, SAFI_UNICAST, 16) + attrs_.next_hop.packed + b"\x00"
    before = b"".join(a for a in common if a[1] < MP_REACH)
    after = b"".join(a for a in common if a[1] > MP_REACH)
    # MP_REACH always uses the 4-byte extended header here, so its size is known in advance.
    room = MAX_MESSAGE_LEN - HEADER_LEN - 4 - len(before) - len(after) - 4 - len(head)
    for nlri in _chunks(map(encode_prefix, prefixes), room):
        mp = struct.pack("!BBH", OPTIONAL | EXTENDED, MP_REACH, len(head) + len(nlri)) + head + nlri
        blob = before + mp + after
        yield _message(MsgType.UPDATE, struct.pack("!HH", 0, len(blob)) + blob)


def encode_withdrawals(prefixes: Iterable[netaddr.IPNetwork]) -> Iterator[bytes]:
    """UPDATEs withdrawing *prefixes*: IPv4 in the withdrawn-routes field, IPv6 in MP_UNREACH_NLRI."""
    v4: list[bytes] = []
    v6: list[bytes] = []
    for net in prefixes:
        (v4 if net.version == 4 else v6).append(encode_prefix(net))
    for blob in _chunks(v4, MAX_MESSAGE_LEN - HEADER_LEN - 4):
        yield _message(MsgType.UPDATE, struct.pack("!H", len(blob)) + blob + b"\x00\x00")
    head = struct.pack("!HB", AFI_IPV6, SAFI_UNICAST)
    for blob in _chunks(v6, MAX_MESSAGE_LEN - HEADER_LEN - 4 - 4 - len(head)):
        mp = struct.pack("!BBH", OPTIONAL | EXTENDED, MP_UNREACH, len(head) + len(blob)) + head + blob
        yield _message(MsgType.UPDATE, struct.pack("!HH", 0, len(mp)) + mp)


def _check_prefixes(blob: bytes, max_len: int, what: str) -> None:
    pos = 0
    while pos < len(blob):
        plen = blob[pos]
        if plen > max_len:
            raise BgpError(3, 10, f"{what}: prefix length {plen} > {max_len}")
        pos += 1 + (plen + 7) // 8
    if pos != len(blob):
        raise BgpError(3, 1 if what == "withdrawn routes" else 10, f"{what}: truncated prefix")


def validate_update(body: bytes) -> None:
    """Check an UPDATE's framing enough to trust the session; the routes themselves are ignored."""
    if len(body) < 4:
        raise BgpError(1, 2, "UPDATE too short")
    (wlen,) = struct.unpack("!H", body[:2])
    if 2 + wlen + 2 > len(body):
        raise BgpError(3, 1, f"withdrawn routes length {wlen} exceeds the message")
    _check_prefixes(body[2 : 2 + wlen], 32, "withdrawn routes")
    pos = 2 + wlen
    (alen,) = struct.unpack("!H", body[pos : pos + 2])
    pos += 2
    if pos + alen > len(body):
        raise BgpError(3, 1, f"path attributes length {alen} exceeds the message")
    end = pos + alen
    while pos < end:
        if pos + 3 > end:
            raise BgpError(3, 1, "truncated path attribute header")
        flags = body[pos]
        if flags & EXTENDED:
            if pos + 4 > end:
                raise BgpError(3, 1, "truncated path attribute header")
            (length,) = struct.unpack("!H", body[pos + 2 : pos + 4])
            pos += 4
        else:
            length = body[pos + 2]
            pos += 3
        if pos + length > end:
            raise BgpError(3, 1, "path attribute runs past the attribute list")
        pos += length
    _check_prefixes(body[end:], 32, "NLRI")
