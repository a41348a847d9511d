"""The gossip protocol's messages and their wire format (before encryption).

One packet carries one protocol message (a ping, an ack...) and any number of
piggybacked membership updates. All integers are big-endian; a name is one
length byte and UTF-8 (Kubernetes node names are at most 253 bytes)::

    packet  = version:u8 kind:u8 sender:name incarnation:u64 seq:u32 target:name count:u16 update*
    update  = status:u8 incarnation:u64 name:name source:name meta
    name    = length:u8 utf8
    meta    = length:u8 bytes    (length 255: no meta carried)

A member's *meta* is opaque here (the speakers put their announcing
interfaces' MACs in it) and at most :data:`MAX_META` bytes, so a hostile
member cannot make the others store more than that per member. It rides on
the updates that say a member is alive and belongs to their incarnation: a
member that changes its meta bumps its incarnation, as memberlist does.

The sender's own incarnation rides in every packet, so a packet from a member
is first-hand news of it. Sizes are computed without encoding (the simulation
counts bytes without building them), and a test keeps :func:`packet_size`
equal to ``len(encode(...))``.
"""

from __future__ import annotations

import enum
import struct

import attrs

__all__ = [
    "MAX_META",
    "MAX_NAME",
    "VERSION",
    "Kind",
    "Packet",
    "Status",
    "Update",
    "WireError",
    "decode",
    "encode",
    "header_size",
    "packet_size",
    "update_size",
]

VERSION = 1
MAX_NAME = 253
#: Longest member meta in bytes (a MAC list of 40 interfaces fits).
MAX_META = 250
_NO_META = 255
_HEADER = struct.Struct("!BB")
_INC_SEQ = struct.Struct("!QI")
_COUNT = struct.Struct("!H")
_UPDATE = struct.Struct("!BQ")


class WireError(ValueError):
    """A packet that does not decode (truncated, unknown kind, bad name...)."""


class Kind(enum.IntEnum):
    """What a packet asks or answers."""

    PING = 1  #: are you alive? (``target`` names who must answer)
    ACK = 2  #: yes (``seq`` of the ping), sent or forwarded
    NACK = 3  #: an indirect probe found no answer in time (``seq`` of the request)
    PING_REQ = 4  #: please ping ``target`` for me
    GOSSIP = 5  #: updates only
    SYNC = 6  #: push-pull: my whole view, send me yours (TCP)
    SYNC_REPLY = 7  #: push-pull answer (TCP)


class Status(enum.IntEnum):
    """A member's state as one member sees it."""

    ALIVE = 1
    SUSPECT = 2
    DEAD = 3
    LEFT = 4  #: it said goodbye (a dead notice sent by the member itself)


@attrs.frozen(kw_only=True)
class Update:
    """News about one member: its status at an incarnation, and who says so (``source``).

    ``meta`` is the member's meta at that incarnation, or None when the update
    does not carry it (news of a suspicion or death, or an alive member whose
    meta at this incarnation the sender does not know).
    """

    status: Status
    name: str
    incarnation: int
    source: str = ""
    meta: bytes | None = None


@attrs.frozen(kw_only=True)
class Packet:
    """One message from ``sender`` (at its ``incarnation``) with piggybacked ``updates``."""

    kind: Kind
    sender: str
    incarnation: int
    seq: int = 0
    target: str = ""
    updates: tuple[Update, ...] = ()


def _name_bytes(name: str) -> bytes:
    raw = name.encode()
    if len(raw) > MAX_NAME:
        raise WireError(f"member name {name[:40]!r}...: {len(raw)} bytes, at most {MAX_NAME}")
    return raw


def _meta_bytes(meta: bytes | None) -> bytes:
    if meta is None:
        return bytes((_NO_META,))
    if len(meta) > MAX_META:
        raise WireError(f"member meta of {len(meta)} bytes, at most {MAX_META}")
    return bytes((len(meta),)) + meta


def header_size(sender: str, target: str = "") -> int:
    """Bytes of a packet without updates."""
    return _HEADER.size + 1 + _length(sender) + _INC_SEQ.size + 1 + _length(target) + _COUNT.size


def _length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def update_size(update: Update) -> int:
    """Bytes one update adds to a packet."""
    return _UPDATE.size + 3 + _length(update.name) + _length(update.source) + len(update.meta or b"")


def packet_size(packet: Packet) -> int:
    """``len(encode(packet))``, computed without encoding."""
    return header_size(packet.sender, packet.target) + sum(update_size(u) for u in packet.updates)


def encode(packet: Packet) -> bytes:
    """The packet's bytes (raises :class:`WireError` for a name too long or a count too large)."""
    if len(packet.updates) > 0xFFFF:
        raise WireError(f"{len(packet.updates)} updates in one packet, at most 65535")
    sender, target = _name_bytes(packet.sender), _name_bytes(packet.target)
    parts = [
        _HEADER.pack(VERSION, packet.kind),
        bytes((len(sender),)),
        sender,
        _INC_SEQ.pack(packet.incarnation, packet.seq),
        bytes((len(target),)),
        target,
        _COUNT.pack(len(packet.updates)),
    ]
    for update in packet.updates:
        name, source = _name_bytes(update.name), _name_bytes(update.source)
        parts += [_UPDATE.pack(update.status, update.incarnation), bytes((len(name),)), name]
        parts += [bytes((len(source),)), source, _meta_bytes(update.meta)]
    return b"".join(parts)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise WireError(f"truncated packet: needs {end} bytes, has {len(self.data)}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def meta(self) -> bytes | None:
        length = self.take(1)[0]
        if length == _NO_META:
            return None
        if length > MAX_META:
            raise WireError(f"member meta of {length} bytes, at most {MAX_META}")
        return self.take(length)

    def name(self) -> str:
        raw = self.take(self.take(1)[0])
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise WireError("member name is not UTF-8") from exc


def decode(data: bytes) -> Packet:
    """The packet in *data*; :class:`WireError` for anything malformed (never another exception)."""
    reader = _Reader(data)
    version, kind = _HEADER.unpack(reader.take(_HEADER.size))
    if version != VERSION:
        raise WireError(f"packet version {version}, expected {VERSION}")
    try:
        kind = Kind(kind)
    except ValueError:
        raise WireError(f"unknown packet kind {kind}") from None
    sender = reader.name()
    incarnation, seq = _INC_SEQ.unpack(reader.take(_INC_SEQ.size))
    target = reader.name()
    (count,) = _COUNT.unpack(reader.take(_COUNT.size))
    updates = []
    for _ in range(count):
        status, inc = _UPDATE.unpack(reader.take(_UPDATE.size))
        try:
            status = Status(status)
        except ValueError:
            raise WireError(f"unknown member status {status}") from None
        name, source = reader.name(), reader.name()
        updates.append(Update(status=status, name=name, incarnation=inc, source=source, meta=reader.meta()))
    if reader.pos != len(data):
        raise WireError(f"{len(data) - reader.pos} trailing bytes after the packet")
    if not sender:
        raise WireError("packet without a sender")
    return Packet(kind=kind, sender=sender, incarnation=incarnation, seq=seq, target=target, updates=tuple(updates))
