"""One BGP session to one peer, on asyncio: connect, OPEN, keepalives, hold timer, sync, backoff.

The session owns what it has told the peer (``advertised``) and converges it
to the desired set it is handed, MetalLB's declarative ``Set`` model. Every
protocol error ends in a NOTIFICATION and a log line that says why. Nothing
here blocks the loop: the rtnetlink dump a handshake needs runs in an
executor, and a peer flooding us is read in slices.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor

import attrs
import netaddr
from metallb.allocator.model import PeerSpec
from metallb.allocator.retry import Backoff
from metallb.announcers.bgp import net as bgp_net
from metallb.announcers.bgp import wire as bgp_wire
from metallb.announcers.bgp.metrics import BgpMetrics
from metallb.announcers.bgp.net import InterfaceAddress
from metallb.announcers.bgp.policy import PrefixKey, Route
from metallb.announcers.bgp.wire import BgpError, MsgType, UpdateAction

__all__ = [
    "BACKOFF_CAP",
    "CONNECT_TIMEOUT",
    "END_OF_RIB_DELAY",
    "RESTART_TIME",
    "PeerNotification",
    "Session",
    "SessionFailed",
    "SessionStatus",
    "peer_label",
    "reconnect_backoff",
]

log = logging.getLogger(__name__)

#: Seconds for the TCP connect and the OPEN exchange together (as MetalLB).
CONNECT_TIMEOUT = 10.0
#: Longest pause between connection attempts.
BACKOFF_CAP = 120.0
#: Graceful restart: the restart time we advertise (RFC 4724; FRR's, BIRD's and GoBGP's default too).
RESTART_TIME = 120
#: Graceful restart: End-of-RIB waits until the desired set has been quiet this long (seconds) ...
END_OF_RIB_DELAY = 1.0
#: ... and never longer than this after the session came up.
END_OF_RIB_MAX_DELAY = 10.0
# Keep at most this much unsent data queued, so a KEEPALIVE never waits behind megabytes of UPDATEs.
_WRITE_HIGH_WATER = 64 * 1024
# Received messages handled in a row before the reader yields to the loop (a peer flooding us
# must not starve the other sessions).
_READ_SLICE = 64
# Log at most this many malformed UPDATEs per session (the rest are counted).
_LOGGED_UPDATE_ERRORS = 10
_FAMILIES = ((bgp_wire.AFI_IPV4, bgp_wire.SAFI_UNICAST), (bgp_wire.AFI_IPV6, bgp_wire.SAFI_UNICAST))


def reconnect_backoff(*, cap: float = BACKOFF_CAP) -> Backoff:
    """MetalLB's pauses before connection attempts: 0 (the first), 1, 2, 4 ... up to *cap* seconds."""
    return Backoff(initial=1.0, cap=cap, jitter=0.0, immediate=True)


def peer_label(peer: PeerSpec) -> str:
    """``addr:port`` (``[addr]:port`` for IPv6), the metrics label MetalLB uses (``%iface:port`` unnumbered)."""
    address = peer.peer_address
    if address is None:  # an unnumbered peer (interface): not started until the speaker supports it
        return f"%{peer.interface}:{peer.peer_port}"
    zone = f"%{peer.interface}" if peer.interface else ""  # link-local: one address per interface
    host = f"[{address}{zone}]" if address.version == 6 else str(address)
    return f"{host}:{peer.peer_port}"


def derive_router_id(
    peer: PeerSpec,
    local: netaddr.IPAddress,
    node_name: str,
    addrs: Sequence[InterfaceAddress] | None = None,
) -> netaddr.IPAddress:
    """MetalLB's order: configured IPv4 ID, the local IPv4 address, IPv4 on the same interface, CRC32 of the node."""
    if peer.router_id is not None and peer.router_id.version == 4:
        return peer.router_id
    v4 = bgp_net.ipv4_for_interface_of(local, addrs)
    if v4 is not None:
        return v4
    return netaddr.IPAddress(int.from_bytes(struct.pack("<I", zlib.crc32(node_name.encode())), "big"), 4)


class PeerNotification(Exception):
    """The peer sent a NOTIFICATION."""

    def __init__(self, code: int, subcode: int, data: bytes) -> None:
        super().__init__(bgp_wire.notification_text(code, subcode) + (f" data={data.hex()}" if data else ""))
        self.code = code
        self.subcode = subcode


class SessionFailed(Exception):
    """Something outside the session (BFD) declared the path dead: :meth:`Session.fail`."""


# Failures that end one connection attempt or session; the loop logs them and retries.
_EXPECTED = (OSError, EOFError, BgpError, PeerNotification, TimeoutError, SessionFailed)


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
        graceful_restart: both sides advertised graceful restart (RFC 4724).
        extended_messages: both sides advertised extended messages (RFC 8654).
        refused: prefixes we want this peer to have but cannot send it.
        refused_reason: why, for one of them (every reason: ``BgpAnnouncer.refusals()``).
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
    graceful_restart: bool = False
    extended_messages: bool = False
    refused: int = 0
    refused_reason: str = ""


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
    graceful: bool = False  # both sides advertised graceful restart
    extended: bool = False  # both sides advertised extended messages
    failed: asyncio.Future[None] = attrs.field(factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def max_len(self) -> int:
        """The longest UPDATE, NOTIFICATION or ROUTE-REFRESH either side may send."""
        return bgp_wire.MAX_EXTENDED_LEN if self.extended else bgp_wire.MAX_MESSAGE_LEN


class Session:
    """A speaker's session to one peer. All methods run on the announcer's event loop.

    Keyword options besides the peer (whose ``enable_graceful_restart`` turns
    graceful restart on): *restart_time* advertised with graceful restart;
    *extended_messages* to advertise RFC 8654; *end_of_rib_delay*, the quiet
    time before End-of-RIB; *interface_addresses*, the rtnetlink dump (a seam
    for tests), run in *executor* (None: the loop's default);
    *forwarding_preserved*, the F bit (None: derived, see
    :meth:`_forwarding_preserved`); *on_advertised*, called on the loop
    whenever the prefixes the peer holds from us (:meth:`advertised`) change.
    """

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
        restart_time: int = RESTART_TIME,
        extended_messages: bool = True,
        end_of_rib_delay: float = END_OF_RIB_DELAY,
        interface_addresses: Callable[[], Sequence[InterfaceAddress]] = bgp_net.interface_addresses,
        executor: Executor | None = None,
        forwarding_preserved: bool | None = None,
        on_advertised: Callable[[], None] | None = None,
    ) -> None:
        if not 0 <= restart_time <= 0xFFF:
            raise ValueError(f"restart_time {restart_time} is not within 0..4095 seconds (RFC 4724)")
        self.peer = peer
        self.label = peer_label(peer)
        self._node = node_name
        self._metrics = metrics
        self._connect_timeout = connect_timeout
        self._backoff_cap = backoff_cap
        self._graceful = peer.enable_graceful_restart
        self._restart_time = restart_time
        self._extended = extended_messages
        self._eor_delay = end_of_rib_delay
        self._interface_addresses = interface_addresses
        self._executor = executor
        self._forwarding = forwarding_preserved
        self._restarted = True  # until the first session is up: the R bit of RFC 4724
        # The announcer's live desired set, changed only on this loop; _dirty names what changed.
        self._desired = desired
        self._desired_counts = desired_counts  # prefixes of _desired per IP version
        self._dirty: set[PrefixKey] = set()
        self._advertised: dict[PrefixKey, Route] = {}
        self._refused: dict[PrefixKey, str] = {}  # wanted but not sendable to this peer, and why
        self._changed = asyncio.Event()
        self._synced = asyncio.Event()
        self._last_change = 0.0  # loop time of the last change of the desired set
        self._conn: _Conn | None = None
        self._state = "Idle"
        self._router_id = ""
        self._since: float | None = None
        self._pending = 0
        self._last_error = ""
        self._skipped: set[int] = set()
        self._refusals_logged: set[tuple[int, int, tuple[object, ...]]] = set()
        self._update_errors = 0
        self._task: asyncio.Task[None] | None = None
        self._on_advertised = on_advertised
        self._told: frozenset[PrefixKey] = frozenset()  # what on_advertised was last called for

    # -- control -------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting; reconnects forever until :meth:`stop`."""
        self._metrics.session_up(self.label, False)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"bgp {self.label}")

    def mark_changed(self, prefixes: Iterable[PrefixKey]) -> None:
        """The desired routes of *prefixes* changed: send or withdraw them (a new session sends everything)."""
        self._last_change = asyncio.get_running_loop().time()
        if self._conn is None:
            return
        self._dirty.update(prefixes)
        self._synced.clear()
        self._changed.set()

    def fail(self, reason: str) -> None:
        """Bring the established session down at once, for *reason* (BFD saw the path fail).

        Sends Cease/BFD Down (RFC 9384) without waiting for it to leave, closes
        the connection and reconnects with the usual backoff. A session that is
        not established is left alone.
        """
        conn = self._conn
        if conn is None or conn.failed.done():
            log.debug("session to %s: fail(%r) ignored: not established", self.label, reason)
            return
        with contextlib.suppress(OSError, RuntimeError):
            conn.writer.write(bgp_wire.encode_notification(6, 10))
        conn.failed.set_exception(SessionFailed(f"{reason}; sent NOTIFICATION {bgp_wire.notification_text(6, 10)}"))

    async def stop(
        self, *, subcode: int = 2, withdraw: bool = False, graceful: bool = False, timeout: float = 2.0
    ) -> None:
        """End the session with NOTIFICATION Cease/*subcode*, after withdrawing everything if *withdraw*.

        With *graceful* and graceful restart negotiated, close the connection
        instead, without a NOTIFICATION and without withdrawing: the peer keeps
        our routes (stale) for the restart time, until the next speaker sends
        its own and End-of-RIB (RFC 4724).
        """
        conn = self._conn
        if graceful and conn is not None and conn.graceful:
            kept = len(self._advertised)
            if self._task is not None:
                self._task.cancel()  # stop sending before the connection goes
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None
            with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                conn.writer.close()
                await asyncio.wait_for(conn.writer.wait_closed(), timeout)
            log.info(
                "session to %s closed for a graceful restart: no NOTIFICATION, the peer keeps our %d routes "
                "as stale for up to %d s",
                self.label, kept, self._restart_time,
            )  # fmt: skip
        else:
            if withdraw and conn is not None and self._advertised:
                self._desired, self._desired_counts = {}, {4: 0, 6: 0}
                self.mark_changed(list(self._advertised))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._synced.wait(), timeout)
            conn = self._conn
            if conn is not None:
                with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                    conn.writer.write(bgp_wire.encode_notification(6, subcode))
                    await asyncio.wait_for(conn.writer.drain(), timeout)
                log.info(
                    "session to %s closed: sent NOTIFICATION %s", self.label, bgp_wire.notification_text(6, subcode)
                )
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._metrics.session_up(self.label, False)
        self._metrics.refused(self.label, 0)

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
            graceful_restart=bool(conn and conn.graceful),
            extended_messages=bool(conn and conn.extended),
            refused=len(self._refused),
            refused_reason=next(iter(self._refused.values()), ""),
        )

    def advertised(self) -> frozenset[PrefixKey]:
        """The prefixes the peer holds from us now: sent on the established session (none while it is down)."""
        return frozenset(self._advertised) if self._conn is not None else frozenset()

    def _tell(self) -> None:
        """Call *on_advertised* if :meth:`advertised` changed since the last call."""
        now = self.advertised()
        if now != self._told:
            self._told = now
            if self._on_advertised is not None:
                self._on_advertised()

    def refused(self) -> dict[PrefixKey, str]:
        """The prefixes this peer should have but cannot be sent, with the reason (a copy)."""
        return dict(self._refused)

    # -- connection loop -------------------------------------------------------------

    async def _run(self) -> None:
        backoff = reconnect_backoff(cap=self._backoff_cap)
        if self.peer.connect_time is not None:  # connect-time: a fixed pause, as FRR's connect timer
            backoff = Backoff(initial=self.peer.connect_time, cap=self.peer.connect_time, jitter=0.0, immediate=True)
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
        self._refused.clear()
        self._pending = 0
        self._metrics.session_up(self.label, False)
        self._metrics.announced(self.label, 0)
        self._metrics.refused(self.label, 0)
        self._tell()

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
            if peer.ebgp_multihop and peer.external():
                # eBGP multihop: leave with TTL 255 so any number of routed hops (or a router's
                # GTSM check, RFC 5082) lets the session through. Otherwise the kernel's default.
                if address.version == 4:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            if peer.source_address is not None:
                sock.bind((str(peer.source_address), 0))
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await loop.sock_connect(sock, self._sockaddr())
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

    def _sockaddr(self) -> tuple[str, int] | tuple[str, int, int, int]:
        """The peer's socket address; a link-local one carries its interface's index (the scope)."""
        peer = self.peer
        if not peer.interface:
            return (str(peer.peer_address), peer.peer_port)
        return (str(peer.peer_address), peer.peer_port, 0, socket.if_nametoindex(peer.interface))

    def _forwarding_preserved(self) -> bool:
        """The F bit: whether the forwarding state of our routes survived since the peer last had them.

        Our routes are forwarded by this node's kernel (and kube-proxy), not by
        this process, so a restarted speaker finds them still working, unless the
        node itself rebooted. A router keeps stale routes for at most the restart
        time, so if the kernel has been up longer than that, any stale route of
        ours it holds is from this boot: the state is preserved. Within the
        restart time after a boot, say it is not, and the router drops what it
        kept from before the reboot at once.
        """
        if self._forwarding is not None:
            return self._forwarding
        return bgp_net.seconds_since_boot() > self._restart_time

    def _local_facts(
        self, local: netaddr.IPAddress
    ) -> tuple[netaddr.IPAddress, netaddr.IPAddress | None, netaddr.IPAddress | None]:
        """Router ID and IPv4 / IPv6 next hops for a session from *local*: one rtnetlink dump (blocking)."""
        addrs = self._interface_addresses()
        router_id = derive_router_id(self.peer, local, self._node, addrs)
        return router_id, bgp_net.ipv4_for_interface_of(local, addrs), bgp_net.ipv6_next_hop_for(local, addrs)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Conn:
        peer = self.peer
        local = _local_address(writer)
        # The dump blocks; in an executor thread (started from this loop's thread, so in its
        # network namespace) the other sessions' keepalives keep their time meanwhile.
        loop = asyncio.get_running_loop()
        router_id, v4, v6 = await loop.run_in_executor(self._executor, self._local_facts, local)
        self._router_id = str(router_id)
        restart = None
        if self._graceful:
            forwarding = self._forwarding_preserved()
            restart = bgp_wire.GracefulRestart(
                restart_time=self._restart_time,
                restarting=self._restarted,
                families=tuple((afi, safi, forwarding) for afi, safi in self._families()),
            )
        writer.write(
            bgp_wire.encode_open(
                asn=peer.my_asn,
                hold_time=peer.hold_time,
                router_id=router_id,
                graceful_restart=restart,
                extended_message=self._extended,
                afis=tuple(afi for afi, _ in self._families()),
            )
        )
        self._state = "OpenSent"
        try:
            mtype, body = await _read_message(reader)
            if mtype == MsgType.NOTIFICATION:
                raise PeerNotification(*bgp_wire.decode_notification(body))
            if mtype != MsgType.OPEN:
                raise BgpError(5, 1, f"expected OPEN, got {mtype.name}")
            their = bgp_wire.decode_open(body)
            if peer.dynamic_asn:
                if (their.asn == peer.my_asn) != (peer.dynamic_asn == "internal"):
                    raise BgpError(
                        2, 2, f"peer ASN is {their.asn} but dynamic-asn is {peer.dynamic_asn} (our ASN {peer.my_asn})",
                        body[1:3],
                    )  # fmt: skip
            elif their.asn != peer.peer_asn:
                raise BgpError(2, 2, f"peer ASN is {their.asn} but peer-asn is {peer.peer_asn}", body[1:3])
            ibgp = their.asn == peer.my_asn
            if their.hold_time in (1, 2):
                raise BgpError(2, 6, f"unacceptable hold time {their.hold_time} s (must be 0 or >= 3)")
            if int(their.router_id) == 0:
                raise BgpError(2, 3, "peer router ID is 0.0.0.0")
            if ibgp and their.router_id == router_id:
                raise BgpError(2, 3, f"iBGP peer router ID {their.router_id} is ours too (RFC 6286)")
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
        next_hops: dict[int, netaddr.IPAddress] = {}
        if v4 is not None:
            next_hops[4] = v4
        if v6 is not None:
            next_hops[6] = v6
        return _Conn(
            reader=reader,
            writer=writer,
            local=local,
            hold=min(peer.hold_time, their.hold_time),
            ibgp=ibgp,
            four_octet=their.four_octet,
            families=their.families,
            next_hops=next_hops,
            graceful=self._graceful and their.graceful_restart is not None,
            extended=self._extended and their.extended_message,
        )

    # -- established -----------------------------------------------------------------

    async def _established(self, conn: _Conn) -> None:
        self._conn = conn
        self._state = "Established"
        self._since = time.time()
        self._last_error = ""
        self._restarted = False
        self._skipped.clear()
        self._refusals_logged.clear()
        self._update_errors = 0
        self._advertised.clear()
        self._refused.clear()
        self._metrics.session_up(self.label, True)
        self._metrics.announced(self.label, 0)
        self._dirty = set(self._desired)
        self._last_change = asyncio.get_running_loop().time()
        log.info(
            "session to %s established (local %s, router ID %s, hold %d s, %s%s%s)",
            self.label, conn.local, self._router_id, conn.hold, "iBGP" if conn.ibgp else "eBGP",
            ", graceful restart" if conn.graceful else "", ", extended messages" if conn.extended else "",
        )  # fmt: skip
        self._changed.set()
        tasks: list[asyncio.Future[None]] = [
            asyncio.create_task(self._read_loop(conn)),
            asyncio.create_task(self._sync_loop(conn)),
            conn.failed,
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
        handled = 0
        while True:
            try:
                async with asyncio.timeout(conn.hold or None):
                    mtype, body = await _read_message(conn.reader, max_len=conn.max_len)
            except TimeoutError:
                raise BgpError(4, 0, f"hold timer expired: nothing received for {conn.hold} s") from None
            if mtype == MsgType.UPDATE:
                self._received_update(conn, body)
            elif mtype == MsgType.ROUTE_REFRESH:
                self._route_refresh(conn, body)
            elif mtype == MsgType.NOTIFICATION:
                raise PeerNotification(*bgp_wire.decode_notification(body))
            elif mtype == MsgType.OPEN:
                raise BgpError(5, 3, "OPEN received on an established session")
            handled += 1
            if handled % _READ_SLICE == 0:
                await asyncio.sleep(0)  # a peer flooding us must not starve the other sessions

    def _received_update(self, conn: _Conn, body: bytes) -> None:
        """Validate a peer's UPDATE (RFC 7606); we learn no routes, so a valid one is simply dropped."""
        check = bgp_wire.validate_update(body, four_octet=conn.four_octet, ibgp=conn.ibgp)
        if check.end_of_rib is not None:
            log.debug("session to %s: End-of-RIB received for AFI/SAFI %d/%d", self.label, *check.end_of_rib)
        if check.action == UpdateAction.ACCEPT:
            return
        approach = "treat-as-withdraw" if check.action == UpdateAction.TREAT_AS_WITHDRAW else "attribute-discard"
        self._metrics.update_error(self.label, approach)
        self._update_errors += 1
        if self._update_errors <= _LOGGED_UPDATE_ERRORS:
            log.warning(
                "session to %s: malformed UPDATE handled by %s (RFC 7606)%s: %s",
                self.label, approach,
                "; further ones are only counted" if self._update_errors == _LOGGED_UPDATE_ERRORS else "",
                "; ".join(check.problems),
            )  # fmt: skip

    def _route_refresh(self, conn: _Conn, body: bytes) -> None:
        """Resend every route of the family asked for (RFC 2918); other requests are ignored."""
        afi, subtype, safi = bgp_wire.decode_route_refresh(body)
        family = {bgp_wire.AFI_IPV4: 4, bgp_wire.AFI_IPV6: 6}.get(afi)
        if subtype != 0 or safi != bgp_wire.SAFI_UNICAST or family is None or (afi, safi) not in conn.families:
            log.info("session to %s: ROUTE-REFRESH for AFI/SAFI %d/%d (subtype %d) ignored", self.label, afi, safi,
                     subtype)  # fmt: skip
            return
        log.info("session to %s: ROUTE-REFRESH received, sending every IPv%d route again", self.label, family)
        # Resend what we want; keep what the peer holds but we no longer want,
        # so a withdrawal still pending is sent rather than forgotten.
        keys = {key for key in self._desired if key[0] == family}
        for key in keys:
            self._advertised.pop(key, None)
        self._dirty |= keys
        self._changed.set()

    async def _keepalive_loop(self, conn: _Conn) -> None:
        interval = conn.hold / 3
        if self.peer.keepalive_time is not None:
            interval = min(interval, self.peer.keepalive_time)  # keepalive-time, never slower than hold / 3
        while True:
            await asyncio.sleep(interval)
            conn.writer.write(bgp_wire.encode_keepalive())

    async def _sync_loop(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        eor_due = self._graceful  # End-of-RIB once, after the initial update
        latest = loop.time() + END_OF_RIB_MAX_DELAY
        while True:
            if eor_due and not self._changed.is_set():
                # The initial update is out. Wait for the desired set to settle first: a speaker that
                # just started may not have been handed every service yet, and End-of-RIB makes the
                # router drop every stale route we have not refreshed.
                wait = min(self._last_change + self._eor_delay, latest) - loop.time()
                if wait <= 0:
                    await self._send_end_of_rib(conn)
                    eor_due = False
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._changed.wait()
                    continue
            await self._changed.wait()
            self._changed.clear()
            started = loop.time()
            await self._sync(conn)
            log.debug("session to %s: synced in %.3f s, %d routes at the peer", self.label, loop.time() - started,
                      len(self._advertised))  # fmt: skip
            if not self._changed.is_set():
                self._synced.set()

    async def _send_end_of_rib(self, conn: _Conn) -> None:
        families = [f for f in self._families() if f in conn.families]
        for afi, safi in families:
            await self._send(conn, bgp_wire.encode_end_of_rib(afi, safi))
        log.info(
            "session to %s: initial update done, %d routes; sent End-of-RIB for %s",
            self.label, len(self._advertised), ", ".join("IPv4" if f[0] == 1 else "IPv6" for f in families),
        )  # fmt: skip

    def _families(self) -> tuple[tuple[int, int], ...]:
        """The families we offer: both, or with disable-mp only the session's own (MetalLB's meaning)."""
        address = self.peer.peer_address
        if not self.peer.disable_mp or address is None:
            return _FAMILIES
        return ((bgp_wire.AFI_IPV4 if address.version == 4 else bgp_wire.AFI_IPV6, bgp_wire.SAFI_UNICAST),)

    def _why_not(self, conn: _Conn, family: int) -> str | None:
        """Why routes of *family* cannot go to this peer, or None when they can."""
        afi = bgp_wire.AFI_IPV4 if family == 4 else bgp_wire.AFI_IPV6
        if (afi, bgp_wire.SAFI_UNICAST) not in self._families():
            return f"disable-mp: only IPv{6 if family == 4 else 4} routes over this session"
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

    def _size_limit(self, conn: _Conn, attrs_: bgp_wire.PathAttributes) -> tuple[int | None, str]:
        """The message size to pack UPDATEs with *attrs_* into, or None and why they cannot be sent."""
        try:
            need = bgp_wire.update_overhead(attrs_) + bgp_wire.MAX_PREFIX_BYTES[attrs_.next_hop.version]
        except ValueError:
            need = bgp_wire.MAX_EXTENDED_LEN + 1
        if need <= bgp_wire.MAX_MESSAGE_LEN:
            return bgp_wire.MAX_MESSAGE_LEN, ""
        if need <= bgp_wire.MAX_EXTENDED_LEN and conn.extended:
            return bgp_wire.MAX_EXTENDED_LEN, ""
        if need <= bgp_wire.MAX_EXTENDED_LEN:
            why = "the peer did not negotiate extended messages (RFC 8654), so UPDATEs are limited to 4096 bytes"
        else:
            why = "no BGP message is that long (65535 bytes at most)"
        return None, f"an UPDATE with its path attributes needs at least {need} bytes, and {why}"

    async def _sync(self, conn: _Conn) -> None:
        dirty, self._dirty = self._dirty, set()
        sendable = {f: self._can_send(conn, f) for f in (4, 6) if any(p[0] == f for p in dirty)}
        gone: list[PrefixKey] = []
        groups: dict[tuple[int, int, tuple[object, ...]], list[Route]] = defaultdict(list)
        for prefix in dirty:
            want = self._desired.get(prefix) if sendable[prefix[0]] else None
            have = self._advertised.get(prefix)
            if want is None:
                self._refused.pop(prefix, None)
                if have is not None:
                    gone.append(prefix)
            elif have != want:
                groups[(prefix[0], want.localpref, want.communities)].append(want)
        batches: list[tuple[bgp_wire.PathAttributes, int, list[Route]]] = []
        for group, routes in groups.items():
            first = routes[0]
            attrs_ = bgp_wire.PathAttributes(
                local_asn=self.peer.my_asn,
                ibgp=conn.ibgp,
                four_octet=conn.four_octet,
                next_hop=conn.next_hops[group[0]],
                localpref=first.localpref,
                communities=first.communities,
            )
            limit, why = self._size_limit(conn, attrs_)
            if limit is None:
                self._refuse(group, routes, why)
                gone.extend(r.key for r in routes if r.key in self._advertised)  # its old attributes must go
                continue
            for route in routes:
                self._refused.pop(route.key, None)
            batches.append((attrs_, limit, routes))
        self._metrics.refused(self.label, len(self._refused))
        self._pending = len(gone) + sum(len(b[2]) for b in batches)
        # MetalLB's "pending" gauge counts the prefixes the peer should have, not the work left.
        wanted = sum(n for f, n in self._desired_counts.items() if self._why_not(conn, f) is None)
        self._metrics.pending(self.label, wanted - len(self._refused))
        if gone:
            for msg in bgp_wire.encode_withdrawals(gone):
                await self._send(conn, msg)
            for key in gone:
                self._advertised.pop(key, None)  # a ROUTE-REFRESH may have cleared it meanwhile
            self._progress(len(gone))
        for attrs_, limit, routes in batches:
            encoded = (bgp_wire.encode_prefix_key(*r.key) for r in routes)
            for msg in bgp_wire.encode_updates(attrs_, encoded, max_len=limit):
                await self._send(conn, msg)
            for route in routes:
                self._advertised[route.key] = route
            self._progress(len(routes))
        self._tell()

    def _refuse(self, group: tuple[int, int, tuple[object, ...]], routes: list[Route], why: str) -> None:
        """Record that *routes* cannot go to this peer; log it once per attribute set and session."""
        for route in routes:
            self._refused[route.key] = why
        if group not in self._refusals_logged:
            self._refusals_logged.add(group)
            shown = ", ".join(str(r.prefix) for r in routes[:3]) + (", ..." if len(routes) > 3 else "")
            log.warning("session to %s: %d routes not sent (%s): %s", self.label, len(routes), shown, why)

    def _progress(self, done: int) -> None:
        self._pending -= done
        self._metrics.announced(self.label, len(self._advertised))

    async def _send(self, conn: _Conn, msg: bytes) -> None:
        conn.writer.write(msg)
        self._metrics.update_sent(self.label)
        if conn.writer.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            await conn.writer.drain()
            await asyncio.sleep(0)  # let the reader and the keepalive timer run between chunks


async def _read_message(
    reader: asyncio.StreamReader, *, max_len: int = bgp_wire.MAX_MESSAGE_LEN
) -> tuple[MsgType, bytes]:
    header = await reader.readexactly(bgp_wire.HEADER_LEN)
    mtype, length = bgp_wire.decode_header(header, max_len=max_len)
    return mtype, await reader.readexactly(length)


def _local_address(writer: asyncio.StreamWriter) -> netaddr.IPAddress:
    host = str(writer.get_extra_info("sockname")[0]).split("%", 1)[0]
    ip = netaddr.IPAddress(host)
    return ip.ipv4() if ip.version == 6 and ip.is_ipv4_mapped() else ip
