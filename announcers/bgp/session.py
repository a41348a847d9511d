"""One BGP session to one peer, on asyncio: connect, OPEN, keepalives, hold timer, sync, backoff.

The session owns what it has told the peer (``advertised``) and converges it
to the desired set it is handed, MetalLB's declarative ``Set`` model. Every
protocol error ends in a NOTIFICATION and a log line that says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping

import attrs
import netaddr
from metallb.allocator.model import PeerSpec
from metallb.allocator.retry import Backoff
from metallb.announcers.bgp import net as bgp_net
from metallb.announcers.bgp import wire as bgp_wire
from metallb.announcers.bgp.metrics import BgpMetrics
from metallb.announcers.bgp.policy import PrefixKey, Route
from metallb.announcers.bgp.wire import BgpError, MsgType

__all__ = [
    "BACKOFF_CAP",
    "CONNECT_TIMEOUT",
    "PeerNotification",
    "Session",
    "SessionStatus",
    "peer_label",
    "reconnect_backoff",
]

log = logging.getLogger(__name__)

#: Seconds for the TCP connect and the OPEN exchange together (as MetalLB).
CONNECT_TIMEOUT = 10.0
#: Longest pause between connection attempts.
BACKOFF_CAP = 120.0
# Keep at most this much unsent data queued, so a KEEPALIVE never waits behind megabytes of UPDATEs.
_WRITE_HIGH_WATER = 64 * 1024


def reconnect_backoff(*, cap: float = BACKOFF_CAP) -> Backoff:
    """MetalLB's pauses before connection attempts: 0 (the first), 1, 2, 4 ... up to *cap* seconds."""
    return Backoff(initial=1.0, cap=cap, jitter=0.0, immediate=True)


def peer_label(peer: PeerSpec) -> str:
    """``addr:port`` (``[addr]:port`` for IPv6), the metrics label MetalLB uses (``%iface:port`` unnumbered)."""
    address = peer.peer_address
    if address is None:  # an unnumbered peer (interface): not started until the speaker supports it
        return f"%{peer.interface}:{peer.peer_port}"
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{host}:{peer.peer_port}"


def derive_router_id(peer: PeerSpec, local: netaddr.IPAddress, node_name: str) -> netaddr.IPAddress:
    """MetalLB's order: configured IPv4 ID, the local IPv4 address, IPv4 on the same interface, CRC32 of the node."""
    if peer.router_id is not None and peer.router_id.version == 4:
        return peer.router_id
    v4 = bgp_net.ipv4_for_interface_of(local)
    if v4 is not None:
        return v4
    return netaddr.IPAddress(int.from_bytes(struct.pack("<I", zlib.crc32(node_name.encode())), "big"), 4)


class PeerNotification(Exception):
    """The peer sent a NOTIFICATION."""

    def __init__(self, code: int, subcode: int, data: bytes) -> None:
        super().__init__(bgp_wire.notification_text(code, subcode) + (f" data={data.hex()}" if data else ""))
        self.code = code
        self.subcode = subcode


# Failures that end one connection attempt or session; the loop logs them and retries.
_EXPECTED = (OSError, EOFError, BgpError, PeerNotification, TimeoutError)


@attrs.frozen(kw_only=True)
class SessionStatus:
    """A snapshot of one session, for status tables.

    Attributes:
        peer: ``addr:port``.
        state: ``Idle``, ``Connect``, ``OpenSent``, ``OpenConfirm`` or ``Established``.
        local_address: our end of the TCP connection, when connected.
        router_id: the router ID we sent.
        hold_time: the negotiated hold time (0 until established).
        established_since: wall-clock time the session came up, or None.
        announced: prefixes the peer currently has from us.
        pending: prefixes still to send or withdraw.
        last_error: why the last connection ended or failed.
    """

    peer: str
    state: str
    local_address: str = ""
    router_id: str = ""
    hold_time: int = 0
    established_since: float | None = None
    announced: int = 0
    pending: int = 0
    last_error: str = ""


@attrs.define(kw_only=True)
class _Conn:
    """What one established connection negotiated."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    local: netaddr.IPAddress
    hold: int
    ibgp: bool
    four_octet: bool
    families: frozenset[tuple[int, int]]
    next_hops: dict[int, netaddr.IPAddress]


class Session:
    """A speaker's session to one peer. All methods run on the announcer's event loop."""

    def __init__(
        self,
        peer: PeerSpec,
        *,
        node_name: str,
        desired: Mapping[PrefixKey, Route],
        desired_counts: Mapping[int, int],
        metrics: BgpMetrics,
        connect_timeout: float = CONNECT_TIMEOUT,
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        self.peer = peer
        self.label = peer_label(peer)
        self._node = node_name
        self._metrics = metrics
        self._connect_timeout = connect_timeout
        self._backoff_cap = backoff_cap
        # The announcer's live desired set, changed only on this loop; _dirty names what changed.
        self._desired = desired
        self._desired_counts = desired_counts  # prefixes of _desired per IP version
        self._dirty: set[PrefixKey] = set()
        self._advertised: dict[PrefixKey, Route] = {}
        self._changed = asyncio.Event()
        self._synced = asyncio.Event()
        self._conn: _Conn | None = None
        self._state = "Idle"
        self._router_id = ""
        self._since: float | None = None
        self._pending = 0
        self._last_error = ""
        self._skipped: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    # -- control -------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting; reconnects forever until :meth:`stop`."""
        self._metrics.session_up(self.label, False)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"bgp {self.label}")

    def mark_changed(self, prefixes: Iterable[PrefixKey]) -> None:
        """The desired routes of *prefixes* changed: send or withdraw them (a new session sends everything)."""
        if self._conn is None:
            return
        self._dirty.update(prefixes)
        self._synced.clear()
        self._changed.set()

    async def stop(self, *, subcode: int = 2, withdraw: bool = False, timeout: float = 2.0) -> None:
        """End the session with NOTIFICATION Cease/*subcode*, after withdrawing everything if *withdraw*."""
        if withdraw and self._conn is not None and self._advertised:
            self._desired, self._desired_counts = {}, {4: 0, 6: 0}
            self.mark_changed(list(self._advertised))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._synced.wait(), timeout)
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                conn.writer.write(bgp_wire.encode_notification(6, subcode))
                await asyncio.wait_for(conn.writer.drain(), timeout)
            log.info("session to %s closed: sent NOTIFICATION %s", self.label, bgp_wire.notification_text(6, subcode))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._metrics.session_up(self.label, False)

    def status(self) -> SessionStatus:
        """A snapshot of this session."""
        conn = self._conn
        return SessionStatus(
            peer=self.label,
            state=self._state,
            local_address=str(conn.local) if conn else "",
            router_id=self._router_id,
            hold_time=conn.hold if conn else 0,
            established_since=self._since,
            announced=len(self._advertised),
            pending=self._pending,
            last_error=self._last_error,
        )

    # -- connection loop -------------------------------------------------------------

    async def _run(self) -> None:
        backoff = reconnect_backoff(cap=self._backoff_cap)
        while True:
            delay = backoff.next()
            if delay:
                log.debug("session to %s: next attempt in %.0f s", self.label, delay)
                await asyncio.sleep(delay)
            try:
                conn = await self._open()
            except _EXPECTED as exc:
                self._fail(exc)
                continue
            except Exception:  # a bug must not end the retry loop for good: log it and go on
                log.exception("session to %s: unexpected error while connecting", self.label)
                self._last_error = "internal error (see log)"
                continue
            backoff.reset()  # MetalLB resets the backoff after a successful OPEN exchange
            try:
                await self._established(conn)
            except _EXPECTED as exc:
                self._fail(exc)
            except Exception:  # as above
                log.exception("session to %s: unexpected error on the established session", self.label)
                self._last_error = "internal error (see log)"
            finally:
                self._down()

    def _fail(self, exc: BaseException) -> None:
        self._state = "Idle"
        self._last_error = str(exc) or type(exc).__name__
        if isinstance(exc, asyncio.IncompleteReadError):
            self._last_error = "connection closed by the peer"
        log.warning("session to %s: %s", self.label, self._last_error)

    def _down(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.writer.close()
        self._state = "Idle"
        self._since = None
        self._advertised.clear()
        self._pending = 0
        self._metrics.session_up(self.label, False)
        self._metrics.announced(self.label, 0)

    async def _open(self) -> _Conn:
        """TCP connect and OPEN exchange, within one deadline."""
        peer = self.peer
        address = peer.peer_address
        if address is None:
            raise OSError(f"BGP unnumbered (interface {peer.interface}) is not supported yet")
        self._state = "Connect"
        sock = socket.socket(socket.AF_INET if address.version == 4 else socket.AF_INET6, socket.SOCK_STREAM)
        writer: asyncio.StreamWriter | None = None
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if peer.password:
                bgp_net.set_md5(sock, address, peer.password)
            if peer.source_address is not None:
                sock.bind((str(peer.source_address), 0))
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await loop.sock_connect(sock, (str(address), peer.peer_port))
            except TimeoutError:
                hint = (
                    "a TCP MD5 password mismatch is a likely cause (the peer drops segments with a wrong signature)"
                    if peer.password
                    else "the peer may be unreachable or may expect a TCP MD5 password"
                )
                raise TimeoutError(f"TCP connection timed out after {self._connect_timeout:g} s; {hint}") from None
            reader, writer = await asyncio.open_connection(sock=sock)
            try:
                async with asyncio.timeout(self._connect_timeout):
                    return await self._handshake(reader, writer)
            except TimeoutError:
                raise TimeoutError(
                    f"no OPEN/KEEPALIVE from the peer within {self._connect_timeout:g} s (state {self._state})"
                ) from None
        except BaseException:
            if writer is not None:
                writer.close()
            else:
                sock.close()
            raise

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Conn:
        peer = self.peer
        local = _local_address(writer)
        router_id = derive_router_id(peer, local, self._node)
        self._router_id = str(router_id)
        writer.write(bgp_wire.encode_open(asn=peer.my_asn, hold_time=peer.hold_time, router_id=router_id))
        self._state = "OpenSent"
        try:
            mtype, body = await _read_message(reader)
            if mtype == MsgType.NOTIFICATION:
                raise PeerNotification(*bgp_wire.decode_notification(body))
            if mtype != MsgType.OPEN:
                raise BgpError(5, 1, f"expected OPEN, got {mtype.name}")
            their = bgp_wire.decode_open(body)
            if their.asn != peer.peer_asn:
                raise BgpError(2, 2, f"peer ASN is {their.asn} but peer-asn is {peer.peer_asn}", body[1:3])
            if their.hold_time in (1, 2):
                raise BgpError(2, 6, f"unacceptable hold time {their.hold_time} s (must be 0 or >= 3)")
            if int(their.router_id) == 0:
                raise BgpError(2, 3, "peer router ID is 0.0.0.0")
            writer.write(bgp_wire.encode_keepalive())
            self._state = "OpenConfirm"
            mtype, body = await _read_message(reader)
            if mtype == MsgType.NOTIFICATION:
                raise PeerNotification(*bgp_wire.decode_notification(body))
            if mtype != MsgType.KEEPALIVE:
                raise BgpError(5, 2, f"expected KEEPALIVE, got {mtype.name}")
        except BgpError as exc:
            writer.write(bgp_wire.encode_notification(exc.code, exc.subcode, exc.data))
            with contextlib.suppress(OSError):
                await writer.drain()
            raise BgpError(
                exc.code,
                exc.subcode,
                f"{exc.reason}; sent NOTIFICATION {bgp_wire.notification_text(exc.code, exc.subcode)}",
            ) from None
        hold = min(peer.hold_time, their.hold_time)
        ibgp = peer.my_asn == peer.peer_asn
        next_hops: dict[int, netaddr.IPAddress] = {}
        v4 = bgp_net.ipv4_for_interface_of(local)
        v6 = bgp_net.ipv6_next_hop_for(local)
        if v4 is not None:
            next_hops[4] = v4
        if v6 is not None:
            next_hops[6] = v6
        return _Conn(
            reader=reader,
            writer=writer,
            local=local,
            hold=hold,
            ibgp=ibgp,
            four_octet=their.four_octet,
            families=their.families,
            next_hops=next_hops,
        )

    # -- established -----------------------------------------------------------------

    async def _established(self, conn: _Conn) -> None:
        self._conn = conn
        self._state = "Established"
        self._since = time.time()
        self._last_error = ""
        self._skipped.clear()
        self._advertised.clear()
        self._metrics.session_up(self.label, True)
        self._metrics.announced(self.label, 0)
        self._dirty = set(self._desired)
        log.info(
            "session to %s established (local %s, router ID %s, hold %d s, %s)",
            self.label, conn.local, self._router_id, conn.hold, "iBGP" if conn.ibgp else "eBGP",
        )  # fmt: skip
        self._changed.set()
        tasks = [
            asyncio.create_task(self._read_loop(conn)),
            asyncio.create_task(self._sync_loop(conn)),
        ]
        if conn.hold:
            tasks.append(asyncio.create_task(self._keepalive_loop(conn)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if isinstance(exc, BgpError):
                conn.writer.write(bgp_wire.encode_notification(exc.code, exc.subcode, exc.data))
                with contextlib.suppress(OSError, TimeoutError):
                    await asyncio.wait_for(conn.writer.drain(), 1)
                text = bgp_wire.notification_text(exc.code, exc.subcode)
                raise BgpError(exc.code, exc.subcode, f"{exc.reason}; sent NOTIFICATION {text}")
            if exc is not None:
                raise exc

    async def _read_loop(self, conn: _Conn) -> None:
        while True:
            try:
                async with asyncio.timeout(conn.hold or None):
                    mtype, body = await _read_message(conn.reader)
            except TimeoutError:
                raise BgpError(4, 0, f"hold timer expired: nothing received for {conn.hold} s") from None
            if mtype == MsgType.UPDATE:
                bgp_wire.validate_update(body)  # peer routes are checked, then ignored
            elif mtype == MsgType.ROUTE_REFRESH:
                log.info("session to %s: ROUTE-REFRESH received, sending every route again", self.label)
                # Resend what we want; keep what the peer holds but we no longer want,
                # so a withdrawal still pending is sent rather than forgotten.
                for key in self._desired:
                    self._advertised.pop(key, None)
                self._dirty |= set(self._desired)
                self._changed.set()
            elif mtype == MsgType.NOTIFICATION:
                raise PeerNotification(*bgp_wire.decode_notification(body))
            elif mtype == MsgType.OPEN:
                raise BgpError(5, 3, "OPEN received on an established session")

    async def _keepalive_loop(self, conn: _Conn) -> None:
        interval = conn.hold / 3
        while True:
            await asyncio.sleep(interval)
            conn.writer.write(bgp_wire.encode_keepalive())

    async def _sync_loop(self, conn: _Conn) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._sync(conn)
            if not self._changed.is_set():
                self._synced.set()

    @staticmethod
    def _why_not(conn: _Conn, family: int) -> str | None:
        """Why routes of *family* cannot go to this peer, or None when they can."""
        afi = bgp_wire.AFI_IPV4 if family == 4 else bgp_wire.AFI_IPV6
        if (afi, bgp_wire.SAFI_UNICAST) not in conn.families:
            return f"the peer did not negotiate IPv{family} unicast"
        if family not in conn.next_hops:
            kind = "global IPv6" if family == 6 else "IPv4"
            return f"no {kind} address on the interface of {conn.local} to use as the next hop"
        return None

    def _can_send(self, conn: _Conn, family: int) -> bool:
        """Whether routes of *family* can go to this peer; says once per session why not."""
        why = self._why_not(conn, family)
        if why is None:
            return True
        if family not in self._skipped:
            self._skipped.add(family)
            log.warning("session to %s: IPv%d routes are not sent: %s", self.label, family, why)
        return False

    async def _sync(self, conn: _Conn) -> None:
        dirty, self._dirty = self._dirty, set()
        sendable = {f: self._can_send(conn, f) for f in (4, 6) if any(p[0] == f for p in dirty)}
        gone: list[Route] = []
        groups: dict[tuple[int, int, tuple[object, ...]], list[Route]] = defaultdict(list)
        for prefix in dirty:
            want = self._desired.get(prefix) if sendable[prefix[0]] else None
            have = self._advertised.get(prefix)
            if want is None:
                if have is not None:
                    gone.append(have)
            elif have != want:
                groups[(prefix[0], want.localpref, want.communities)].append(want)
        self._pending = len(gone) + sum(len(g) for g in groups.values())
        # MetalLB's "pending" gauge counts the prefixes the peer should have, not the work left.
        wanted = sum(n for f, n in self._desired_counts.items() if self._why_not(conn, f) is None)
        self._metrics.pending(self.label, wanted)
        if gone:
            for msg in bgp_wire.encode_withdrawals(r.prefix for r in gone):
                await self._send(conn, msg)
            for route in gone:
                self._advertised.pop(route.key, None)  # a ROUTE-REFRESH may have cleared it meanwhile
            self._progress(len(gone))
        for (family, _, _), routes in groups.items():
            first = routes[0]
            attrs_ = bgp_wire.PathAttributes(
                local_asn=self.peer.my_asn,
                ibgp=conn.ibgp,
                four_octet=conn.four_octet,
                next_hop=conn.next_hops[family],
                localpref=first.localpref,
                communities=first.communities,
            )
            for msg in bgp_wire.encode_updates(attrs_, (r.prefix for r in routes)):
                await self._send(conn, msg)
            for route in routes:
                self._advertised[route.key] = route
            self._progress(len(routes))

    def _progress(self, done: int) -> None:
        self._pending -= done
        self._metrics.announced(self.label, len(self._advertised))

    async def _send(self, conn: _Conn, msg: bytes) -> None:
        conn.writer.write(msg)
        self._metrics.update_sent(self.label)
        if conn.writer.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            await conn.writer.drain()
            await asyncio.sleep(0)  # let the reader and the keepalive timer run between chunks


async def _read_message(reader: asyncio.StreamReader) -> tuple[MsgType, bytes]:
    header = await reader.readexactly(bgp_wire.HEADER_LEN)
    mtype, length = bgp_wire.decode_header(header)
    return mtype, await reader.readexactly(length)


def _local_address(writer: asyncio.StreamWriter) -> netaddr.IPAddress:
    host = str(writer.get_extra_info("sockname")[0]).split("%", 1)[0]
    ip = netaddr.IPAddress(host)
    return ip.ipv4() if ip.version == 6 and ip.is_ipv4_mapped() else ip
