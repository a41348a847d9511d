"""BGP-4 message encoding and decoding (RFC 4271, 4760, 6793, 1997, 8092, 2918, 4724, 8654, 7606, 9072).

Pure functions over bytes: no sockets, no clocks. Encoding uses ``struct``
directly, because building 100 000 prefixes with a generic packet library costs
seconds where this costs milliseconds; the tests decode our output with scapy.
Received UPDATEs are validated per RFC 7606: :func:`validate_update` raises
:class:`BgpError` where the RFC says "session reset" and otherwise returns the
weaker approach that applies (treat-as-withdraw, attribute discard).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator, Sequence

import attrs
import netaddr
from metallb.allocator.model import Community, LargeCommunity

__all__ = [
    "AFI_IPV4",
    "AFI_IPV6",
    "AS_TRANS",
    "HEADER_LEN",
    "MAX_EXTENDED_LEN",
    "MAX_MESSAGE_LEN",
    "MAX_PREFIX_BYTES",
    "SAFI_UNICAST",
    "BgpError",
    "GracefulRestart",
    "MsgType",
    "Open",
    "PathAttributes",
    "UpdateAction",
    "UpdateCheck",
    "decode_header",
    "decode_notification",
    "decode_open",
    "decode_route_refresh",
    "encode_end_of_rib",
    "encode_keepalive",
    "encode_notification",
    "encode_open",
    "encode_prefix",
    "encode_prefix_key",
    "encode_route_refresh",
    "encode_updates",
    "encode_withdrawals",
    "notification_text",
    "update_overhead",
    "validate_update",
]

MARKER = b"\xff" * 16
HEADER_LEN = 19
#: The RFC 4271 limit, and the only one for OPEN and KEEPALIVE even with extended messages.
MAX_MESSAGE_LEN = 4096
#: The limit for UPDATE, NOTIFICATION and ROUTE-REFRESH once both sides advertised RFC 8654.
MAX_EXTENDED_LEN = 65535
AS_TRANS = 23456

AFI_IPV4, AFI_IPV6, SAFI_UNICAST = 1, 2, 1
CAP_MP, CAP_ROUTE_REFRESH, CAP_EXTENDED_MESSAGE, CAP_GRACEFUL_RESTART, CAP_AS4 = 1, 2, 6, 64, 65
#: Encoded size of the longest prefix of each IP version (length byte + address).
MAX_PREFIX_BYTES = {4: 5, 6: 17}

# Path attribute flags and type codes.
OPTIONAL, TRANSITIVE, PARTIAL, EXTENDED = 0x80, 0x40, 0x20, 0x10
ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF, ATOMIC_AGGREGATE, AGGREGATOR, COMMUNITIES = 1, 2, 3, 4, 5, 6, 7, 8
ORIGINATOR_ID, CLUSTER_LIST, MP_REACH, MP_UNREACH, EXT_COMMUNITIES, AS4_PATH, AS4_AGGREGATOR = 9, 10, 14, 15, 16, 17, 18
LARGE_COMMUNITY = 32
ORIGIN_INCOMPLETE = 2
AS_SET, AS_SEQUENCE, AS_CONFED_SEQUENCE, AS_CONFED_SET = 1, 2, 3, 4


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


# NOTIFICATION codes (RFC 4271 4.5, RFC 7313) and the subcodes we send or commonly receive.
_CODES = {
    1: "Message Header Error",
    2: "OPEN Message Error",
    3: "UPDATE Message Error",
    4: "Hold Timer Expired",
    5: "Finite State Machine Error",
    6: "Cease",
    7: "ROUTE-REFRESH Message Error",
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
    (3, 2): "Unrecognized Well-known Attribute",
    (3, 5): "Attribute Length Error",
    (3, 9): "Optional Attribute Error",
    (3, 10): "Invalid Network Field",
    (5, 1): "Receive Unexpected Message in OpenSent State",
    (5, 2): "Receive Unexpected Message in OpenConfirm State",
    (5, 3): "Receive Unexpected Message in Established State",
    (6, 2): "Administrative Shutdown",
    (6, 3): "Peer De-configured",
    (6, 4): "Administrative Reset",
    (6, 5): "Connection Rejected",
    (6, 7): "Connection Collision Resolution",
    (6, 10): "BFD Down",
    (7, 1): "Invalid Message Length",
}


def notification_text(code: int, subcode: int) -> str:
    """``2/2 OPEN Message Error: Bad Peer AS``: how logs name a NOTIFICATION."""
    name = _CODES.get(code, "unknown code")
    sub = _SUBCODES.get((code, subcode))
    return f"{code}/{subcode} {name}" + (f": {sub}" if sub else "")


def _message(kind: MsgType, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", HEADER_LEN + len(body), kind) + body


_MINIMUM = {
    MsgType.OPEN: 29,
    MsgType.UPDATE: 23,
    MsgType.NOTIFICATION: 21,
    MsgType.KEEPALIVE: 19,
    MsgType.ROUTE_REFRESH: 23,
}


def decode_header(header: bytes, *, max_len: int = MAX_MESSAGE_LEN) -> tuple[MsgType, int]:
    """Check a 19-byte header; return the type and the body length.

    *max_len* is 4096, or 65535 once extended messages were negotiated (OPEN
    and KEEPALIVE stay within 4096 regardless, RFC 8654 section 4).
    """
    if header[:16] != MARKER:
        raise BgpError(1, 1, "bad marker")
    length, kind = struct.unpack("!HB", header[16:19])
    if not HEADER_LEN <= length <= max_len:
        raise BgpError(1, 2, f"bad message length {length}", header[16:18])
    try:
        mtype = MsgType(kind)
    except ValueError:
        raise BgpError(1, 3, f"bad message type {kind}", bytes([kind])) from None
    if (
        length < _MINIMUM[mtype]
        or (mtype == MsgType.KEEPALIVE and length != HEADER_LEN)
        or (mtype == MsgType.OPEN and length > MAX_MESSAGE_LEN)
    ):
        raise BgpError(1, 2, f"bad length {length} for {mtype.name}", header[16:18])
    return mtype, length - HEADER_LEN


# -- OPEN ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class GracefulRestart:
    """The graceful restart capability (RFC 4724 section 3).

    Attributes:
        restart_time: seconds the sender expects to need to come back (12 bits).
        restarting: the Restart State (R) bit: the sender has just restarted.
        notification: RFC 8538's N bit (decoded only; we never set it).
        families: ``(afi, safi, forwarding state preserved)`` per address family.
    """

    restart_time: int
    restarting: bool = False
    notification: bool = False
    families: tuple[tuple[int, int, bool], ...] = ()

    def encode(self) -> bytes:
        """The capability value (without code and length)."""
        flags = (0x8000 if self.restarting else 0) | (0x4000 if self.notification else 0)
        out = struct.pack("!H", flags | min(self.restart_time, 0xFFF))
        for afi, safi, forwarding in self.families:
            out += struct.pack("!HBB", afi, safi, 0x80 if forwarding else 0)
        return out

    @classmethod
    def decode(cls, value: bytes) -> GracefulRestart:
        """Parse a capability value; :class:`BgpError` 2/0 when its length is not 2 + 4n."""
        if len(value) < 2 or (len(value) - 2) % 4:
            raise BgpError(2, 0, f"malformed graceful restart capability ({len(value)} bytes)")
        (head,) = struct.unpack("!H", value[:2])
        families = tuple((afi, safi, bool(flags & 0x80)) for afi, safi, flags in struct.iter_unpack("!HBB", value[2:]))
        return cls(
            restart_time=head & 0xFFF,
            restarting=bool(head & 0x8000),
            notification=bool(head & 0x4000),
            families=families,
        )


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
    graceful_restart: GracefulRestart | None = None
    extended_message: bool = False


def encode_open(
    *,
    asn: int,
    hold_time: int,
    router_id: netaddr.IPAddress,
    graceful_restart: GracefulRestart | None = None,
    extended_message: bool = False,
    afis: tuple[int, ...] = (AFI_IPV4, AFI_IPV6),
) -> bytes:
    """An OPEN with MP unicast for *afis* (IPv4 and IPv6), route refresh and 4-octet AS capabilities.

    Optionally also extended messages (RFC 8654) and graceful restart (RFC 4724).
    """
    caps = b"".join(struct.pack("!BBHBB", CAP_MP, 4, afi, 0, SAFI_UNICAST) for afi in afis)
    caps += struct.pack("!BB", CAP_ROUTE_REFRESH, 0)
    if extended_message:
        caps += struct.pack("!BB", CAP_EXTENDED_MESSAGE, 0)
    if graceful_restart is not None:
        value = graceful_restart.encode()
        caps += struct.pack("!BB", CAP_GRACEFUL_RESTART, len(value)) + value
    caps += struct.pack("!BBI", CAP_AS4, 4, asn)
    params = struct.pack("!BB", 2, len(caps)) + caps
    my_as = asn if asn <= 0xFFFF else AS_TRANS
    body = struct.pack("!BHHIB", 4, my_as, hold_time, int(router_id), len(params)) + params
    return _message(MsgType.OPEN, body)


def _optional_parameters(params: bytes, *, extended: bool) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each optional parameter, in the RFC 4271 or the RFC 9072 extended format."""
    if extended:
        if len(params) < 3:
            raise BgpError(2, 0, "truncated extended optional parameters length")
        # RFC 9072: Non-Ext OP Len 255 and Non-Ext OP Type 255, then a 2-byte length.
        (total,) = struct.unpack("!H", params[1:3])
        params = params[3:]
        if total != len(params):
            raise BgpError(2, 0, f"extended optional parameters length {total} but {len(params)} bytes follow")
    width = 3 if extended else 2
    pos = 0
    while pos < len(params):
        if pos + width > len(params):
            raise BgpError(2, 0, "truncated optional parameter")
        ptype = params[pos]
        length = struct.unpack("!H", params[pos + 1 : pos + 3])[0] if extended else params[pos + 1]
        value = params[pos + width : pos + width + length]
        if len(value) != length:
            raise BgpError(2, 0, "truncated optional parameter")
        yield ptype, value
        pos += width + length


def decode_open(body: bytes) -> Open:
    """Parse an OPEN body, raising :class:`BgpError` with the RFC's subcode when malformed."""
    if len(body) < 10:
        raise BgpError(1, 2, "OPEN too short")
    version, my_as, hold, rid, plen = struct.unpack("!BHHIB", body[:10])
    if version != 4:
        raise BgpError(2, 1, f"unsupported BGP version {version}", struct.pack("!H", 4))
    params = body[10:]
    extended = plen == 255 and params[:1] == b"\xff"  # RFC 9072: Non-Ext OP Len and Type both 255
    if len(params) != plen and not extended:
        raise BgpError(2, 0, f"optional parameters length {plen} but {len(params)} bytes follow")
    families: set[tuple[int, int]] = set()
    asn4: int | None = None
    refresh = extended_message = False
    restart: GracefulRestart | None = None
    for ptype, value in _optional_parameters(params, extended=extended):
        if ptype != 2:
            raise BgpError(2, 4, f"unsupported optional parameter {ptype}")
        for code, cap in _capabilities(value):
            if code == CAP_MP:
                if len(cap) != 4:
                    raise BgpError(2, 0, f"malformed multiprotocol capability ({len(cap)} bytes)")
                afi, _, safi = struct.unpack("!HBB", cap)
                families.add((afi, safi))
            elif code == CAP_AS4:
                if len(cap) != 4:
                    raise BgpError(2, 0, "malformed 4-octet AS capability")
                (asn4,) = struct.unpack("!I", cap)
            elif code == CAP_ROUTE_REFRESH:
                refresh = True
            elif code == CAP_EXTENDED_MESSAGE:
                extended_message = True  # the value is empty; RFC 8654 gives no rule for a non-empty one
            elif code == CAP_GRACEFUL_RESTART:
                restart = GracefulRestart.decode(cap)
    return Open(
        asn=asn4 if asn4 is not None else my_as,
        hold_time=hold,
        router_id=netaddr.IPAddress(rid, 4),
        # No MP capability at all means IPv4 unicast only (RFC 4760 section 8).
        families=frozenset(families or {(AFI_IPV4, SAFI_UNICAST)}),
        four_octet=asn4 is not None,
        route_refresh=refresh,
        version=version,
        graceful_restart=restart,
        extended_message=extended_message,
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
    """A NOTIFICATION with *code*, *subcode* and *data* (cut so the message stays within 4096 bytes)."""
    return _message(MsgType.NOTIFICATION, struct.pack("!BB", code, subcode) + data[: MAX_MESSAGE_LEN - 21])


def decode_notification(body: bytes) -> tuple[int, int, bytes]:
    """Code, subcode and data of a NOTIFICATION body."""
    if len(body) < 2:
        raise BgpError(1, 2, "NOTIFICATION too short")
    return body[0], body[1], body[2:]


def encode_route_refresh(afi: int, safi: int = SAFI_UNICAST) -> bytes:
    """A ROUTE-REFRESH request for one address family (RFC 2918)."""
    return _message(MsgType.ROUTE_REFRESH, struct.pack("!HBB", afi, 0, safi))


def decode_route_refresh(body: bytes) -> tuple[int, int, int]:
    """AFI, subtype and SAFI of a ROUTE-REFRESH; 7/1 when the body is not 4 bytes (RFC 7313 section 5)."""
    if len(body) != 4:
        raise BgpError(7, 1, f"ROUTE-REFRESH of {len(body)} bytes instead of 4", body)
    afi, subtype, safi = struct.unpack("!HBB", body)
    return afi, subtype, safi


def encode_end_of_rib(afi: int, safi: int = SAFI_UNICAST) -> bytes:
    """The End-of-RIB marker (RFC 4724 section 2): an empty UPDATE for IPv4 unicast, else an empty MP_UNREACH_NLRI."""
    if (afi, safi) == (AFI_IPV4, SAFI_UNICAST):
        return _message(MsgType.UPDATE, b"\x00\x00\x00\x00")
    attr = _attr(OPTIONAL, MP_UNREACH, struct.pack("!HB", afi, safi))
    return _message(MsgType.UPDATE, struct.pack("!HH", 0, len(attr)) + attr)


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
    if len(value) > 0xFFFF:
        raise ValueError(f"path attribute {code} of {len(value)} bytes does not fit any BGP message")
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
    return encode_prefix_key(net.version, int(net.network), net.prefixlen)


def encode_prefix_key(version: int, value: int, prefixlen: int) -> bytes:
    """:func:`encode_prefix` from plain integers (the speaker's prefix keys): no netaddr objects built."""
    nbytes = (prefixlen + 7) // 8
    return bytes([prefixlen]) + (value >> ((32 if version == 4 else 128) - 8 * nbytes)).to_bytes(nbytes, "big")


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


def _update_layout(attrs_: PathAttributes) -> tuple[bytes, bytes, bytes]:
    """(attributes before the prefixes, MP_REACH head, attributes after) of an UPDATE with *attrs_*.

    For IPv4 everything is in the first part and the prefixes go in the NLRI field.
    """
    common = _common_attributes(attrs_)
    if attrs_.next_hop.version == 4:
        ordered = sorted([*common, _attr(TRANSITIVE, NEXT_HOP, attrs_.next_hop.packed)], key=lambda a: a[1])
        return b"".join(ordered), b"", b""
    head = struct.pack("!HBB", AFI_IPV6, SAFI_UNICAST, 16) + attrs_.next_hop.packed + b"\x00"
    before = b"".join(a for a in common if a[1] < MP_REACH)
    after = b"".join(a for a in common if a[1] > MP_REACH)
    return before, head, after


def update_overhead(attrs_: PathAttributes) -> int:
    """Bytes of an UPDATE with *attrs_* and no prefix: what the prefixes of one message share."""
    before, head, after = _update_layout(attrs_)
    # MP_REACH always uses the 4-byte extended attribute header, so its size is known in advance.
    mp = 4 + len(head) if head else 0
    return HEADER_LEN + 4 + len(before) + mp + len(after)


def encode_updates(
    attrs_: PathAttributes,
    prefixes: Iterable[netaddr.IPNetwork | bytes],
    *,
    max_len: int = MAX_MESSAGE_LEN,
) -> Iterator[bytes]:
    """UPDATEs announcing *prefixes* (all of one family) with *attrs_*, each at most *max_len* bytes.

    IPv4 prefixes go in the NLRI field with NEXT_HOP; IPv6 prefixes go in MP_REACH_NLRI.
    Attributes are in ascending type order. Prefixes may come already encoded
    (:func:`encode_prefix_key`). Raises ValueError, before yielding anything, when
    the attributes leave no room for a prefix within *max_len*.
    """
    before, head, after = _update_layout(attrs_)
    room = max_len - update_overhead(attrs_)
    if room < MAX_PREFIX_BYTES[attrs_.next_hop.version]:
        raise ValueError(f"path attributes need {max_len - room} bytes; no prefix fits within {max_len}")
    encoded = (p if isinstance(p, bytes) else encode_prefix(p) for p in prefixes)
    if not head:
        for nlri in _chunks(encoded, room):
            yield _message(MsgType.UPDATE, struct.pack("!HH", 0, len(before)) + before + nlri)
        return
    for nlri in _chunks(encoded, room):
        mp = struct.pack("!BBH", OPTIONAL | EXTENDED, MP_REACH, len(head) + len(nlri)) + head + nlri
        blob = before + mp + after
        yield _message(MsgType.UPDATE, struct.pack("!HH", 0, len(blob)) + blob)


def encode_withdrawals(
    prefixes: Iterable[netaddr.IPNetwork | tuple[int, int, int]], *, max_len: int = MAX_MESSAGE_LEN
) -> Iterator[bytes]:
    """UPDATEs withdrawing *prefixes*: IPv4 in the withdrawn-routes field, IPv6 in MP_UNREACH_NLRI.

    Prefixes are networks or ``(version, value, length)`` keys.
    """
    v4: list[bytes] = []
    v6: list[bytes] = []
    for net in prefixes:
        if isinstance(net, tuple):
            (v4 if net[0] == 4 else v6).append(encode_prefix_key(*net))
        else:
            (v4 if net.version == 4 else v6).append(encode_prefix(net))
    for blob in _chunks(v4, max_len - HEADER_LEN - 4):
        yield _message(MsgType.UPDATE, struct.pack("!H", len(blob)) + blob + b"\x00\x00")
    head = struct.pack("!HB", AFI_IPV6, SAFI_UNICAST)
    for blob in _chunks(v6, max_len - HEADER_LEN - 4 - 4 - len(head)):
        mp = struct.pack("!BBH", OPTIONAL | EXTENDED, MP_UNREACH, len(head) + len(blob)) + head + blob
        yield _message(MsgType.UPDATE, struct.pack("!HH", 0, len(mp)) + mp)


# -- received UPDATEs (RFC 4271 6.3 as revised by RFC 7606) ---------------------------------------


class UpdateAction(enum.IntEnum):
    """RFC 7606's error-handling approaches short of a session reset, weakest first."""

    ACCEPT = 0
    ATTRIBUTE_DISCARD = 1
    TREAT_AS_WITHDRAW = 2


@attrs.frozen(kw_only=True)
class UpdateCheck:
    """What :func:`validate_update` found in a received UPDATE.

    Attributes:
        action: the strongest approach the errors call for (RFC 7606 section 3 (i)).
        problems: one line per error found, for the log.
        announced: prefixes announced (NLRI field and MP_REACH_NLRI).
        withdrawn: prefixes withdrawn (withdrawn routes and MP_UNREACH_NLRI).
        end_of_rib: ``(afi, safi)`` when the UPDATE is an End-of-RIB marker.
    """

    action: UpdateAction = UpdateAction.ACCEPT
    problems: tuple[str, ...] = ()
    announced: int = 0
    withdrawn: int = 0
    end_of_rib: tuple[int, int] | None = None


# Expected Optional and Transitive bits of the attributes we know (RFC 4271 5, 4760, 6793, 1997, 4360, 4456, 8092).
_FLAGS = {
    ORIGIN: TRANSITIVE,
    AS_PATH: TRANSITIVE,
    NEXT_HOP: TRANSITIVE,
    MED: OPTIONAL,
    LOCAL_PREF: TRANSITIVE,
    ATOMIC_AGGREGATE: TRANSITIVE,
    AGGREGATOR: OPTIONAL | TRANSITIVE,
    COMMUNITIES: OPTIONAL | TRANSITIVE,
    ORIGINATOR_ID: OPTIONAL,
    CLUSTER_LIST: OPTIONAL,
    MP_REACH: OPTIONAL,
    MP_UNREACH: OPTIONAL,
    EXT_COMMUNITIES: OPTIONAL | TRANSITIVE,
    AS4_PATH: OPTIONAL | TRANSITIVE,
    AS4_AGGREGATOR: OPTIONAL | TRANSITIVE,
    LARGE_COMMUNITY: OPTIONAL | TRANSITIVE,
}
_NAMES = {
    ORIGIN: "ORIGIN",
    AS_PATH: "AS_PATH",
    NEXT_HOP: "NEXT_HOP",
    MED: "MULTI_EXIT_DISC",
    LOCAL_PREF: "LOCAL_PREF",
    ATOMIC_AGGREGATE: "ATOMIC_AGGREGATE",
    AGGREGATOR: "AGGREGATOR",
    COMMUNITIES: "COMMUNITIES",
    ORIGINATOR_ID: "ORIGINATOR_ID",
    CLUSTER_LIST: "CLUSTER_LIST",
    MP_REACH: "MP_REACH_NLRI",
    MP_UNREACH: "MP_UNREACH_NLRI",
    EXT_COMMUNITIES: "EXTENDED_COMMUNITIES",
    AS4_PATH: "AS4_PATH",
    AS4_AGGREGATOR: "AS4_AGGREGATOR",
    LARGE_COMMUNITY: "LARGE_COMMUNITY",
}
# Attributes whose errors the RFCs answer with "attribute discard" rather than "treat-as-withdraw".
_DISCARDABLE = {ATOMIC_AGGREGATE, AGGREGATOR, AS4_PATH, AS4_AGGREGATOR}
# Multiples an attribute's length must be (non-zero) for the attribute to be well-formed.
_MULTIPLE_OF = {COMMUNITIES: 4, CLUSTER_LIST: 4, EXT_COMMUNITIES: 8, LARGE_COMMUNITY: 12}
_FIXED_LENGTH = {
    ORIGIN: 1,
    NEXT_HOP: 4,
    MED: 4,
    LOCAL_PREF: 4,
    ATOMIC_AGGREGATE: 0,
    ORIGINATOR_ID: 4,
    AS4_AGGREGATOR: 8,
}
_MAX_BITS = {AFI_IPV4: 32, AFI_IPV6: 128}


def _count_prefixes(blob: bytes, max_bits: int) -> int | None:
    """Number of prefixes in an NLRI-encoded *blob*, or None when it is syntactically incorrect (RFC 7606 5.3)."""
    count = pos = 0
    end = len(blob)
    while pos < end:
        plen = blob[pos]
        if plen > max_bits:
            return None
        pos += 1 + (plen + 7) // 8
        count += 1
    return count if pos == end else None


def _as_path_problem(value: bytes, width: int) -> str | None:
    """Why an AS_PATH (or AS4_PATH) of *width*-byte ASNs is malformed (RFC 7606 7.2), or None."""
    pos = 0
    while pos < len(value):
        if pos + 2 > len(value):
            return "truncated segment header"
        kind, count = value[pos], value[pos + 1]
        if kind not in (AS_SET, AS_SEQUENCE, AS_CONFED_SEQUENCE, AS_CONFED_SET):
            return f"segment type {kind}"
        if count == 0:
            return "empty segment"
        pos += 2 + count * width
    return "segment runs past the attribute" if pos > len(value) else None


def _next_hop_problem(raw: bytes) -> str | None:
    """Why an IPv4 NEXT_HOP cannot be a next hop (RFC 4271 6.3: not a valid unicast host), or None."""
    first = raw[0]
    if first == 0 or first == 127 or first >= 224 or raw == b"\xff\xff\xff\xff":
        return f"{'.'.join(map(str, raw))} is not a unicast address"
    return None


def _mp_reach(value: bytes, raw: bytes) -> int:
    """Prefix count of MP_REACH_NLRI; a malformed one is a session reset (RFC 7606 7.11)."""
    if len(value) < 5:
        raise BgpError(3, 9, f"MP_REACH_NLRI of {len(value)} bytes", raw)
    afi, safi, nh_len = struct.unpack("!HBB", value[:4])
    if 4 + nh_len + 1 > len(value):
        raise BgpError(3, 9, f"MP_REACH_NLRI next hop length {nh_len} runs past the attribute", raw)
    if afi not in _MAX_BITS or safi != SAFI_UNICAST:
        return 0  # a family we never negotiate: nothing in it is ours to parse
    if nh_len not in ((4, 16, 32) if afi == AFI_IPV4 else (16, 32)):
        raise BgpError(3, 9, f"MP_REACH_NLRI next hop length {nh_len} for AFI {afi}", raw)
    count = _count_prefixes(value[4 + nh_len + 1 :], _MAX_BITS[afi])
    if count is None:
        raise BgpError(3, 9, f"MP_REACH_NLRI for AFI {afi} has a malformed prefix", raw)
    return count


def _mp_unreach(value: bytes, raw: bytes) -> tuple[tuple[int, int], int]:
    """(afi, safi) and prefix count of MP_UNREACH_NLRI; malformed is a session reset (RFC 7606 7.12)."""
    if len(value) < 3:
        raise BgpError(3, 9, f"MP_UNREACH_NLRI of {len(value)} bytes", raw)
    afi, safi = struct.unpack("!HB", value[:3])
    if afi not in _MAX_BITS or safi != SAFI_UNICAST:
        return (afi, safi), 0
    count = _count_prefixes(value[3:], _MAX_BITS[afi])
    if count is None:
        raise BgpError(3, 9, f"MP_UNREACH_NLRI for AFI {afi} has a malformed prefix", raw)
    return (afi, safi), count


def _attribute_problem(code: int, value: bytes, *, four_octet: bool) -> str | None:
    """Why the value of a known attribute is malformed, or None."""
    fixed = _FIXED_LENGTH.get(code)
    if code == AGGREGATOR:
        fixed = 8 if four_octet else 6
    if fixed is not None and len(value) != fixed:
        return f"length {len(value)} instead of {fixed}"
    multiple = _MULTIPLE_OF.get(code)
    if multiple is not None and (not value or len(value) % multiple):
        return f"length {len(value)} is not a non-zero multiple of {multiple}"
    if code == ORIGIN and value[0] > 2:
        return f"undefined value {value[0]}"
    if code == AS_PATH:
        return _as_path_problem(value, 4 if four_octet else 2)
    if code == AS4_PATH:
        return _as_path_problem(value, 4)
    if code == NEXT_HOP:
        return _next_hop_problem(value)
    return None


def validate_update(body: bytes, *, four_octet: bool = True, ibgp: bool = False) -> UpdateCheck:
    """Check a received UPDATE body the way RFC 4271 section 6.3, as revised by RFC 7606, says.

    Raises :class:`BgpError` for the errors that call for a session reset:
    lengths that overrun the message, a syntactically incorrect NLRI or
    withdrawn-routes field, a malformed or repeated MP_REACH_NLRI /
    MP_UNREACH_NLRI, an unrecognized well-known attribute. Everything else is
    returned as the approach that applies: treat-as-withdraw (an attribute
    list that overruns its length, wrong flags, a malformed ORIGIN, AS_PATH,
    NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES, ... or a missing mandatory
    attribute) or attribute discard (ATOMIC_AGGREGATE, AGGREGATOR, AS4_PATH,
    AS4_AGGREGATOR; LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST from an eBGP
    peer; repeats of any other attribute). *four_octet*: the session
    negotiated 4-octet ASNs, so AS_PATH carries 4-byte numbers.
    """
    if len(body) < 4:
        raise BgpError(1, 2, "UPDATE too short")
    (wlen,) = struct.unpack("!H", body[:2])
    if 2 + wlen + 2 > len(body):
        raise BgpError(3, 1, f"withdrawn routes length {wlen} exceeds the message")
    withdrawn = _count_prefixes(body[2 : 2 + wlen], 32)
    if withdrawn is None:
        raise BgpError(3, 1, "withdrawn routes: malformed prefix")
    pos = 2 + wlen
    (alen,) = struct.unpack("!H", body[pos : pos + 2])
    pos += 2
    end = pos + alen
    if end > len(body):
        raise BgpError(3, 1, f"path attributes length {alen} exceeds the message")
    announced = _count_prefixes(body[end:], 32)
    if announced is None:
        raise BgpError(3, 10, "NLRI: malformed prefix")
    action = UpdateAction.ACCEPT
    problems: list[str] = []

    def found(approach: UpdateAction, text: str) -> None:
        nonlocal action
        action = max(action, approach)
        problems.append(text)

    seen: set[int] = set()
    unreach: tuple[int, int] | None = None
    while pos < end:
        flags = body[pos]
        hdr = 4 if flags & EXTENDED else 3
        if end - pos < hdr:
            found(UpdateAction.TREAT_AS_WITHDRAW, f"{end - pos} bytes left in the attribute list, too few for one")
            break
        code = body[pos + 1]
        length = struct.unpack("!H", body[pos + 2 : pos + 4])[0] if hdr == 4 else body[pos + 2]
        if pos + hdr + length > end:
            found(UpdateAction.TREAT_AS_WITHDRAW, f"attribute {code} of {length} bytes runs past the attribute list")
            break
        raw = body[pos : pos + hdr + length]
        value = raw[hdr:]
        pos += hdr + length
        name = _NAMES.get(code, f"attribute {code}")
        if code in seen:
            if code in (MP_REACH, MP_UNREACH):
                raise BgpError(3, 1, f"{name} appears twice")
            found(UpdateAction.ATTRIBUTE_DISCARD, f"{name} appears twice; the repeat is discarded")
            continue
        seen.add(code)
        expected = _FLAGS.get(code)
        if expected is None:
            if not flags & OPTIONAL:
                raise BgpError(3, 2, f"unrecognized well-known attribute {code}", raw)
            continue  # an unknown optional attribute: we pass nothing on, so it is simply ignored
        if code == MP_REACH:
            announced += _mp_reach(value, raw)
        elif code == MP_UNREACH:
            unreach, count = _mp_unreach(value, raw)
            withdrawn += count
        approach = UpdateAction.ATTRIBUTE_DISCARD if code in _DISCARDABLE else UpdateAction.TREAT_AS_WITHDRAW
        if flags & (OPTIONAL | TRANSITIVE) != expected:
            found(approach, f"{name} has flags {flags:#04x}")
            continue
        problem = _attribute_problem(code, value, four_octet=four_octet)
        if problem is not None:
            found(approach, f"malformed {name}: {problem}")
        elif code in (LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST) and not ibgp:
            found(UpdateAction.ATTRIBUTE_DISCARD, f"{name} from an eBGP peer is discarded")
        elif code in (AS4_PATH, AS4_AGGREGATOR) and four_octet:
            found(UpdateAction.ATTRIBUTE_DISCARD, f"{name} from a 4-octet peer is discarded (RFC 6793)")
    if announced and action < UpdateAction.TREAT_AS_WITHDRAW:
        # Mandatory attributes of routes (RFC 7606 3 (d)); NEXT_HOP only for the NLRI field (RFC 4760).
        missing = [ORIGIN, AS_PATH] + ([NEXT_HOP] if body[end:] else []) + ([LOCAL_PREF] if ibgp else [])
        absent = [_NAMES[c] for c in missing if c not in seen]
        if absent:
            found(UpdateAction.TREAT_AS_WITHDRAW, f"missing mandatory attribute {', '.join(absent)}")
    eor: tuple[int, int] | None = None
    if not announced and not withdrawn and not problems:
        if not wlen and not alen:
            eor = (AFI_IPV4, SAFI_UNICAST)
        elif seen == {MP_UNREACH} and unreach is not None:
            eor = unreach
    return UpdateCheck(
        action=action, problems=tuple(problems), announced=announced, withdrawn=withdrawn, end_of_rib=eor
    )
