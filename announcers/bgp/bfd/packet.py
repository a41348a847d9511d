"""BFD control packets (RFC 5880 section 4): encode and decode, with optional authentication.

Pure functions over bytes. Intervals are in microseconds, as on the wire.
:func:`decode` applies the checks of RFC 5880 6.8.6 that need only the packet
itself (version, lengths, multiplier, multipoint, discriminator, the
authentication section's shape) and raises :class:`BfdDecodeError` naming the
rule; what needs session state (your discriminator, digests, sequence
numbers) is the state machine's and :mod:`~metallb.announcers.bgp.bfd.auth`'s.
"""

from __future__ import annotations

import enum
import struct

import attrs

__all__ = [
    "AUTH_LENGTHS",
    "ECHO_PORT",
    "HEADER_LEN",
    "MULTI_HOP_PORT",
    "SINGLE_HOP_PORT",
    "VERSION",
    "AuthSection",
    "AuthType",
    "BfdDecodeError",
    "ControlPacket",
    "Diag",
    "State",
    "decode",
    "encode",
]

VERSION = 1
SINGLE_HOP_PORT = 3784  # RFC 5881
ECHO_PORT = 3785
MULTI_HOP_PORT = 4784  # RFC 5883
HEADER_LEN = 24
_HEADER = struct.Struct("!BBBBIIIII")
_POLL, _FINAL, _CPI, _AUTH, _DEMAND, _MULTIPOINT = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01


class State(enum.IntEnum):
    """bfd.SessionState (RFC 5880 4.1)."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3

    def __str__(self) -> str:
        return ("AdminDown", "Down", "Init", "Up")[self]


class Diag(enum.IntEnum):
    """Diagnostic codes (RFC 5880 4.1); 9-31 are reserved and decode as plain ints."""

    NONE = 0
    DETECTION_TIME_EXPIRED = 1
    ECHO_FAILED = 2
    NEIGHBOR_DOWN = 3
    FORWARDING_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMIN_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8

    @staticmethod
    def text(code: int) -> str:
        """``control detection time expired``: how logs name a diagnostic code."""
        try:
            return Diag(code).name.lower().replace("_", " ")
        except ValueError:
            return f"reserved diagnostic {code}"


class AuthType(enum.IntEnum):
    """Authentication types (RFC 5880 4.1)."""

    SIMPLE = 1
    KEYED_MD5 = 2
    METICULOUS_KEYED_MD5 = 3
    KEYED_SHA1 = 4
    METICULOUS_KEYED_SHA1 = 5


#: Auth Len of each digest type (type, len, key id, reserved, sequence, digest).
AUTH_LENGTHS = {
    AuthType.KEYED_MD5: 24,
    AuthType.METICULOUS_KEYED_MD5: 24,
    AuthType.KEYED_SHA1: 28,
    AuthType.METICULOUS_KEYED_SHA1: 28,
}


class BfdDecodeError(ValueError):
    """A packet RFC 5880 6.8.6 says to discard; the message names the rule."""


@attrs.frozen(kw_only=True)
class AuthSection:
    """The optional authentication section.

    Attributes:
        type: the authentication type.
        key_id: which key of the sender signed the packet.
        sequence: the sequence number (digest types only).
        data: the password (simple) or the digest (MD5: 16 bytes, SHA1: 20).
    """

    type: AuthType
    key_id: int
    sequence: int = 0
    data: bytes = b""

    def encode(self) -> bytes:
        if self.type == AuthType.SIMPLE:
            return struct.pack("!BBB", self.type, 3 + len(self.data), self.key_id) + self.data
        return struct.pack("!BBBBI", self.type, AUTH_LENGTHS[self.type], self.key_id, 0, self.sequence) + self.data


@attrs.frozen(kw_only=True)
class ControlPacket:
    """One BFD control packet; intervals in microseconds.

    Attributes:
        state: the sender's session state.
        diag: why the sender's session last changed state (:class:`Diag`).
        poll: a Poll Sequence is under way (timer change).
        final: the answer to a Poll.
        cpi: control plane independent (we set it clear: we share fate with BGP).
        demand: demand mode (never set by us).
        multipoint: reserved, must be clear.
        detect_mult: the sender's detection multiplier.
        my_discr: the sender's discriminator (never 0).
        your_discr: the receiver's discriminator, 0 while unknown.
        desired_min_tx: how often the sender wants to send.
        required_min_rx: the shortest interval the sender accepts between packets (0: send none).
        required_min_echo_rx: the same for echo packets (0: echo not supported).
        auth: the authentication section, if any.
    """

    state: State
    diag: int = Diag.NONE
    poll: bool = False
    final: bool = False
    cpi: bool = False
    demand: bool = False
    multipoint: bool = False
    detect_mult: int
    my_discr: int
    your_discr: int = 0
    desired_min_tx: int
    required_min_rx: int
    required_min_echo_rx: int = 0
    auth: AuthSection | None = None


def encode(pkt: ControlPacket) -> bytes:
    """The packet's bytes (the authentication section as given: signing is :mod:`.auth`'s)."""
    auth = pkt.auth.encode() if pkt.auth is not None else b""
    flags = (
        (pkt.state << 6)
        | (_POLL if pkt.poll else 0)
        | (_FINAL if pkt.final else 0)
        | (_CPI if pkt.cpi else 0)
        | (_AUTH if pkt.auth is not None else 0)
        | (_DEMAND if pkt.demand else 0)
        | (_MULTIPOINT if pkt.multipoint else 0)
    )
    return (
        _HEADER.pack(
            (VERSION << 5) | (pkt.diag & 0x1F),
            flags,
            pkt.detect_mult,
            HEADER_LEN + len(auth),
            pkt.my_discr,
            pkt.your_discr,
            pkt.desired_min_tx,
            pkt.required_min_rx,
            pkt.required_min_echo_rx,
        )
        + auth
    )


def decode(data: bytes) -> ControlPacket:
    """Parse *data* (one UDP payload); :class:`BfdDecodeError` for anything 6.8.6 discards."""
    if len(data) < HEADER_LEN:
        raise BfdDecodeError(f"packet of {len(data)} bytes is shorter than the {HEADER_LEN}-byte header")
    vers_diag, flags, mult, length, my_discr, your_discr, tx, rx, echo = _HEADER.unpack_from(data)
    if vers_diag >> 5 != VERSION:
        raise BfdDecodeError(f"version {vers_diag >> 5} is not 1")
    has_auth = bool(flags & _AUTH)
    if length < (HEADER_LEN + 2 if has_auth else HEADER_LEN):
        raise BfdDecodeError(f"length field {length} is too small")
    if length > len(data):
        raise BfdDecodeError(f"length field {length} exceeds the {len(data)}-byte payload")
    if mult == 0:
        raise BfdDecodeError("detect multiplier is 0")
    if flags & _MULTIPOINT:
        raise BfdDecodeError("multipoint bit is set")
    if my_discr == 0:
        raise BfdDecodeError("my discriminator is 0")
    auth = _decode_auth(data[HEADER_LEN:length]) if has_auth else None
    return ControlPacket(
        state=State(flags >> 6),
        diag=_diag(vers_diag & 0x1F),
        poll=bool(flags & _POLL),
        final=bool(flags & _FINAL),
        cpi=bool(flags & _CPI),
        demand=bool(flags & _DEMAND),
        multipoint=False,
        detect_mult=mult,
        my_discr=my_discr,
        your_discr=your_discr,
        desired_min_tx=tx,
        required_min_rx=rx,
        required_min_echo_rx=echo,
        auth=auth,
    )


def _diag(code: int) -> int:
    try:
        return Diag(code)
    except ValueError:
        return code


def _decode_auth(section: bytes) -> AuthSection:
    kind, auth_len = section[0], section[1]
    if auth_len != len(section):
        raise BfdDecodeError(f"auth len {auth_len} does not match the {len(section)} bytes after the header")
    try:
        auth_type = AuthType(kind)
    except ValueError:
        raise BfdDecodeError(f"unknown authentication type {kind}") from None
    if auth_type == AuthType.SIMPLE:
        if not 4 <= auth_len <= 19:
            raise BfdDecodeError(f"simple password auth len {auth_len} is not 4-19")
        return AuthSection(type=auth_type, key_id=section[2], data=bytes(section[3:]))
    if auth_len != AUTH_LENGTHS[auth_type]:
        raise BfdDecodeError(f"{auth_type.name.lower()} auth len {auth_len} is not {AUTH_LENGTHS[auth_type]}")
    key_id, sequence = section[2], struct.unpack_from("!I", section, 4)[0]
    return AuthSection(type=auth_type, key_id=key_id, sequence=sequence, data=bytes(section[8:]))
