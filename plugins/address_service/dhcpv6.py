"""The ``dhcpv6`` backend: every address is a real DHCPv6 IA_NA lease, one DUID per lease.

Messages are built and parsed with ``struct``: RFC 8415's format is plain
type-length-value, and measured on the project's 2-core machine a SOLICIT
takes 14 us to build and 13 us to parse here against 1.6 ms and 0.55 ms with
scapy's DHCP6 layers. They go out on one UDP socket bound to
port 546 of the interface, to All_DHCP_Relay_Agents_and_Servers (ff02::1:2).
No raw socket and no address is needed: the server answers the interface's
link-local address.

Each lease's client identity is a DUID-LL made of the lease's MAC (so "same
MAC, same client id" holds as for DHCPv4) with IAID 1. SOLICIT/ADVERTISE,
REQUEST/REPLY obtain it; RENEW at T1 (to the server that granted it), REBIND
after T2 (any server), and the lease is lost when a server says NoBinding,
hands out a valid lifetime of 0, or the lease expires. RELEASE gives it back.
Renewals run concurrently. A REQUEST left unanswered releases the advertised
address at once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

import attrs
from metallb.plugins.address_service.api import (
    AddressTakenError,
    BackendError,
    Lease,
    LeaseListener,
    LeaseRequest,
    LeaseTimeoutError,
    NoAddressError,
    wire_hostname,
)
from metallb.plugins.address_service.keeper import LeaseKeeper, in_netns

__all__ = ["DUID_LL", "Dhcpv6Backend", "Message", "decode", "encode"]

log = logging.getLogger(__name__)

SOLICIT, ADVERTISE, REQUEST, RENEW, REBIND, REPLY, RELEASE = 1, 2, 3, 5, 6, 7, 8
OPT_CLIENTID, OPT_SERVERID, OPT_IA_NA, OPT_IAADDR, OPT_ORO, OPT_ELAPSED, OPT_STATUS, OPT_FQDN = 1, 2, 3, 5, 6, 8, 13, 39
STATUS_NOADDRSAVAIL, STATUS_NOBINDING = 2, 3
#: DUID-LL, hardware type 1 (Ethernet): RFC 8415 section 11.4.
DUID_LL = b"\x00\x03\x00\x01"
IAID = 1
SERVERS = "ff02::1:2"
_INFINITE = 0xFFFFFFFF


# -- messages --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Message:
    """One DHCPv6 message: type, 24-bit transaction id, options as ``(code, bytes)`` in order."""

    type: int
    xid: int
    options: tuple[tuple[int, bytes], ...] = ()

    def get(self, code: int) -> bytes | None:
        """The first option *code*'s data, or None."""
        return next((data for c, data in self.options if c == code), None)


def _opts(data: bytes) -> tuple[tuple[int, bytes], ...]:
    out = []
    at = 0
    while at + 4 <= len(data):
        code, length = struct.unpack_from("!HH", data, at)
        if at + 4 + length > len(data):
            raise ValueError("option runs past the message")
        out.append((code, data[at + 4 : at + 4 + length]))
        at += 4 + length
    return tuple(out)


def _opt(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def encode(message: Message) -> bytes:
    """The wire form of *message*."""
    head = struct.pack("!I", (message.type << 24) | (message.xid & 0xFFFFFF))
    return head + b"".join(_opt(code, data) for code, data in message.options)


def decode(data: bytes) -> Message:
    """Parse a message; ValueError when it is not one."""
    if len(data) < 4:
        raise ValueError("shorter than a DHCPv6 header")
    word = struct.unpack_from("!I", data)[0]
    return Message(type=word >> 24, xid=word & 0xFFFFFF, options=_opts(data[4:]))


def _ia_na(address: str = "", *, t1: int = 0, t2: int = 0) -> bytes:
    inner = b""
    if address:
        inner = _opt(OPT_IAADDR, socket.inet_pton(socket.AF_INET6, address) + struct.pack("!II", 0, 0))
    return struct.pack("!III", IAID, t1, t2) + inner


@attrs.frozen(kw_only=True)
class _Granted:
    """What an ADVERTISE or REPLY says about our IA_NA."""

    address: str
    preferred: int
    valid: int
    t1: int
    t2: int
    status: int
    message: str


def _status(data: bytes | None) -> tuple[int, str]:
    if data is None or len(data) < 2:
        return 0, ""
    return struct.unpack_from("!H", data)[0], data[2:].decode(errors="replace")


def _granted(message: Message) -> _Granted:
    """The IA_NA of *message* (status from the message or the IA when the IA has no address)."""
    code, text = _status(message.get(OPT_STATUS))
    ia = message.get(OPT_IA_NA)
    if ia is None or len(ia) < 12:
        return _Granted(address="", preferred=0, valid=0, t1=0, t2=0, status=code or STATUS_NOADDRSAVAIL, message=text)
    _, t1, t2 = struct.unpack_from("!III", ia)
    address, preferred, valid = "", 0, 0
    for opt, data in _opts(ia[12:]):
        if opt == OPT_IAADDR and len(data) >= 24:
            address = socket.inet_ntop(socket.AF_INET6, data[:16])
            preferred, valid = struct.unpack_from("!II", data, 16)
        elif opt == OPT_STATUS:
            code, text = _status(data)
    return _Granted(address=address, preferred=preferred, valid=valid, t1=t1, t2=t2, status=code, message=text)


def _fqdn(service: str) -> bytes:
    """Option 39: flags 0 (the server updates nothing), the one-label name as DNS wire format."""
    label = wire_hostname(service).encode()
    return b"\x00" + bytes([len(label)]) + label + b"\x00"


def duid_for(mac: str) -> bytes:
    """DUID-LL of *mac*: the lease's client identifier."""
    return DUID_LL + bytes.fromhex(mac.replace(":", ""))


# -- the backend -------------------------------------------------------------------------------


def _open_socket(interface: str, netns: str) -> tuple[socket.socket, int]:
    """A UDP socket on [::]:546 of *interface*, opened inside *netns* (setns is per thread); and its index."""

    def make() -> tuple[socket.socket, int]:
        index = socket.if_nametoindex(interface)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        sock.bind(("::", 546))
        return sock, index

    try:
        return in_netns(netns, make, name="dhcpv6-socket")
    except OSError as error:
        raise OSError(error.errno, f"interface {interface!r}: {error.strerror or error}") from None


class Dhcpv6Backend(LeaseKeeper):
    """Leases IPv6 addresses (IA_NA) from the DHCPv6 server(s) on *interface*.

    Args:
        interface: where to send DHCPv6 (a NIC on the server's link).
        netns: open the socket in this named network namespace ("" = the process's own).
        cidrs: what the servers hand out, reported by ``/v1/config``.
        offer_timeout: wait for an ADVERTISE before repeating the SOLICIT.
        reply_timeout: wait for a REPLY before repeating a REQUEST, RENEW or REBIND.
        renew_after: renew this many seconds after each REPLY instead of at T1 (tests).
    """

    kind = "dhcpv6"
    needs_mac = True
    families = (6,)
    protocol = "DHCPv6"
    _what = "DHCPv6 lease"
    _log = log
    _scheduler_name = "dhcpv6-schedule"

    def __init__(
        self,
        *,
        interface: str,
        netns: str = "",
        cidrs: Sequence[str] = (),
        offer_timeout: float = 2.0,
        reply_timeout: float = 2.0,
        renew_after: float | None = None,
    ) -> None:
        super().__init__(interface=interface, netns=netns, cidrs=cidrs, renew_after=renew_after)
        self.offer_timeout = offer_timeout
        self.reply_timeout = reply_timeout
        self._index = 0
        self._waiters: dict[int, queue.Queue[Message]] = {}

    def start(self, listener: LeaseListener) -> None:
        """Open the socket; start the receiver and the renewal scheduler."""
        self._listener = listener
        self._sock, self._index = _open_socket(self.interface, self.netns)
        self._start_threads()
        log.info("dhcpv6 backend on %s%s", self.interface, f" in netns {self.netns}" if self.netns else "")

    # -- packets --------------------------------------------------------------------------

    def _handle(self, data: bytes, address: Any) -> None:
        try:
            message = decode(data)
        except ValueError:
            return  # a malformed datagram must not stop the receiver
        if message.type not in (ADVERTISE, REPLY):
            return
        with self._lock:
            waiter = self._waiters.get(message.xid)
        if waiter is not None:
            waiter.put(message)

    def _send(self, message: Message) -> None:
        assert self._sock is not None
        self._sock.sendto(encode(message), (SERVERS, 547, 0, self._index))

    def _exchange(self, build: Message, kind: int, duid: bytes, *, timeout: float, every: float) -> Message | None:
        """Send *build* every *every* seconds until a *kind* reply for *duid* arrives or *timeout* passes."""
        waiter: queue.Queue[Message] = queue.Queue()
        with self._lock:
            self._waiters[build.xid] = waiter
        started = time.monotonic()
        deadline = started + timeout
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                elapsed = min(0xFFFF, int((time.monotonic() - started) * 100))
                options = tuple((c, struct.pack("!H", elapsed) if c == OPT_ELAPSED else d) for c, d in build.options)
                try:
                    self._send(attrs.evolve(build, options=options))
                except OSError as exc:
                    # ENETUNREACH, EADDRNOTAVAIL: no usable link-local address yet (the link just came
                    # up, DAD) or the link is down. Transient: send again at the next resend.
                    log.warning("sending DHCPv6 on %s failed: %s; trying again in %g s", self.interface, exc, every)
                resend = min(deadline, time.monotonic() + every)
                while (left := resend - time.monotonic()) > 0:
                    try:
                        reply = waiter.get(timeout=left)
                    except queue.Empty:
                        break
                    if reply.type == kind and reply.get(OPT_CLIENTID) == duid:
                        return reply
            return None
        finally:
            with self._lock:
                self._waiters.pop(build.xid, None)

    @staticmethod
    def _message(kind: int, duid: bytes, *options: tuple[int, bytes]) -> Message:
        common = ((OPT_CLIENTID, duid), (OPT_ELAPSED, b"\x00\x00"))
        return Message(type=kind, xid=random.getrandbits(24), options=common + options)

    # -- obtain, renew, release ------------------------------------------------------------------

    def obtain(self, request: LeaseRequest, *, timeout: float) -> Lease:
        """SOLICIT, ADVERTISE, REQUEST, REPLY for the DUID of *request.mac*, within *timeout*."""
        if self._sock is None:
            raise BackendError("the dhcpv6 backend is not started")
        if request.family != 6:
            raise NoAddressError("the dhcpv6 backend hands out IPv6 addresses only")
        started = time.monotonic()
        duid = duid_for(request.mac)
        fqdn = (OPT_FQDN, _fqdn(request.service))
        solicit = self._message(SOLICIT, duid, (OPT_IA_NA, _ia_na(request.wanted)), (OPT_ORO, b"\x00\x17"), fqdn)
        advertise = self._exchange(solicit, ADVERTISE, duid, timeout=timeout, every=self.offer_timeout)
        if advertise is None:
            raise LeaseTimeoutError(f"no DHCPv6 ADVERTISE on {self.interface} within {timeout:g} s")
        offer = _granted(advertise)
        server = advertise.get(OPT_SERVERID) or b""
        if not offer.address:
            raise NoAddressError(f"the DHCPv6 server has no address: status {offer.status} {offer.message}".strip())
        if request.wanted and offer.address != request.wanted:
            raise AddressTakenError(f"the DHCPv6 server offered {offer.address}, not the requested {request.wanted}")
        ask = self._message(REQUEST, duid, (OPT_SERVERID, server), (OPT_IA_NA, _ia_na(offer.address)), fqdn)
        left = max(timeout - (time.monotonic() - started), 0.5)
        reply = self._exchange(ask, REPLY, duid, timeout=left, every=self.reply_timeout)
        if reply is None:
            with contextlib.suppress(OSError):  # best effort, like every RELEASE: the timeout is the answer
                self._send(self._message(RELEASE, duid, (OPT_SERVERID, server), (OPT_IA_NA, _ia_na(offer.address))))
            raise LeaseTimeoutError(f"no DHCPv6 REPLY for {offer.address} on {self.interface} within {timeout:g} s")
        granted = _granted(reply)
        if not granted.address or granted.valid == 0:
            why = f"status {granted.status} {granted.message}".strip()
            raise NoAddressError(f"the DHCPv6 server refused {offer.address}: {why}")
        base = Lease(
            id=request.id,
            service=request.service,
            uid=request.uid,
            ip=granted.address,
            mac=request.mac,
            client_id=duid.hex(),
            server_id=server.hex(),
        )
        lease = self._bound(base, granted)
        self._keep(lease)
        log.info("DHCPv6 lease %s for %s (duid %s), valid %s s", lease.ip, request.service, duid.hex(), granted.valid)
        return lease

    def _bound(self, lease: Lease, granted: _Granted) -> Lease:
        now = time.time()
        if granted.valid == _INFINITE:
            renew = rebind = expires = None
        else:
            t1 = granted.t1 or granted.preferred * 0.5
            t2 = granted.t2 or granted.preferred * 0.8
            renew, rebind, expires = self._deadlines(now, granted.valid, t1, t2)
        return attrs.evolve(
            lease, ip=granted.address, interface=self.interface, bound=now, renew=renew, rebind=rebind,
            expires=expires, lost=False,
        )  # fmt: skip

    def _ask(self, lease: Lease, *, rebinding: bool) -> Lease | str | None:
        duid = bytes.fromhex(lease.client_id)
        ia = (OPT_IA_NA, _ia_na(lease.ip))
        fqdn = (OPT_FQDN, _fqdn(lease.service))
        if rebinding:
            ask = self._message(REBIND, duid, ia, fqdn)
        else:
            ask = self._message(RENEW, duid, (OPT_SERVERID, bytes.fromhex(lease.server_id)), ia, fqdn)
        reply = self._exchange(ask, REPLY, duid, timeout=self.reply_timeout, every=self.reply_timeout)
        if reply is None:
            return None
        granted = _granted(reply)
        if granted.address != lease.ip or granted.valid <= 0:
            return f"status {granted.status} {granted.message}".strip()
        updated = self._bound(lease, granted)
        if reply.get(OPT_SERVERID):
            updated = attrs.evolve(updated, server_id=(reply.get(OPT_SERVERID) or b"").hex())
        return updated

    def release(self, lease: Lease) -> None:
        """Forget the lease and send RELEASE to its server (best effort; the REPLY is not awaited)."""
        current = self._forget(lease)
        if current.lost or self._sock is None or not current.client_id:
            return
        message = self._message(
            RELEASE,
            bytes.fromhex(current.client_id),
            (OPT_SERVERID, bytes.fromhex(current.server_id)),
            (OPT_IA_NA, _ia_na(current.ip)),
        )
        try:
            self._send(message)
        except OSError as exc:
            log.warning("DHCPv6 RELEASE of %s not sent: %s", current.ip, exc)
            return
        log.info("DHCPv6 RELEASE %s (duid %s)", current.ip, current.client_id)
