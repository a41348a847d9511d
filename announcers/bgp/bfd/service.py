"""BFD sessions on their own thread and event loop: UDP sockets, timers, TTL checks (RFC 5881, 5883).

Why a thread of its own: the BGP speaker's loop spends tens of milliseconds at
a time encoding UPDATEs when it loads many routes, and a BFD packet that waits
for it is a late packet; at 100 ms x 3 a few late packets are a false failure.
Here nothing but BFD runs on the loop, so a packet waits at most for the
interpreter to switch threads (5 ms by default), which ``bench/bfd.py``
measures while the speaker loads 100 000 routes.

Sockets: one receiving socket per address family and port (3784 single hop,
4784 multihop) bound to the wildcard address, reading the TTL or hop limit of
each packet (``IP_RECVTTL``, ``IPV6_RECVHOPLIMIT``); one sending socket per
session, bound to a source port in 49152-65535 (and to the peer's
``source-address`` when set), sending with TTL 255. Single-hop packets must
arrive with TTL 255 (RFC 5881 5), multihop ones with at least the profile's
``minimum_ttl``. A send the kernel refuses (``ENOBUFS`` from a full queue,
``EPERM`` from a firewall) is counted and logged once per streak; the
session's own timers then decide, as if the packet was lost on the wire.
Linux reports ``ENOBUFS`` on UDP only to sockets with ``IP_RECVERR``, so the
sending sockets set it, and drain the ICMP errors it queues (a router without
BFD answers port unreachable).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import attrs
import netaddr
from metallb.allocator.model import BfdProfile
from metallb.announcers.bgp.bfd.auth import Authenticator, AuthKey
from metallb.announcers.bgp.bfd.machine import SessionMachine, Transition
from metallb.announcers.bgp.bfd.packet import (
    MULTI_HOP_PORT,
    SINGLE_HOP_PORT,
    BfdDecodeError,
    ControlPacket,
    Diag,
    State,
    decode,
    encode,
)

__all__ = [
    "BfdService",
    "BfdStatus",
    "EchoNotSupported",
    "Listener",
    "MetricsSink",
    "SessionKey",
    "SessionSpec",
    "peer_label",
]

log = logging.getLogger(__name__)

_IP_RECVTTL = 12  # <linux/in.h>; the socket module lacks these
_IP_RECVERR, _IPV6_RECVERR = 11, 25
# Errors an ICMP message leaves on a socket with RECVERR, which the next send reports instead of sending.
_ICMP_ERRORS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN})
_TOS_NETWORK_CONTROL = 0xC0  # CS6, as FRR and BIRD send BFD
_SOURCE_PORTS = (49152, 65535)  # RFC 5881 4
_RX_RETRY = 5.0  # seconds between attempts to open a receiving socket that failed
_MAX_PACKET = 512
_BATCH = 64  # packets read per wake-up before other sessions' timers get a turn

#: (peer, local address or None, multihop): what makes two sessions different.
SessionKey = tuple[netaddr.IPAddress, netaddr.IPAddress | None, bool]


class MetricsSink(Protocol):
    """What the service counts (:class:`~metallb.announcers.bgp.bfd.metrics.BfdMetrics` in the speaker)."""

    def start(self, peer: str) -> None: ...
    def session_up(self, peer: str, up: bool) -> None: ...
    def received(self, peer: str, count: int = 1) -> None: ...
    def sent(self, peer: str, count: int = 1) -> None: ...
    def send_error(self, peer: str, count: int = 1) -> None: ...
    def discarded(self, peer: str, count: int = 1) -> None: ...
    def forget(self, peer: str) -> None: ...


class EchoNotSupported(ValueError):
    """A profile asks for the echo function, which this BFD does not implement."""


def peer_label(peer: netaddr.IPAddress) -> str:
    """The metrics label of a BFD session: the peer's address, as MetalLB's FRR mode labels it."""
    return str(peer)


@attrs.frozen(kw_only=True)
class SessionSpec:
    """One wanted BFD session.

    Attributes:
        peer: the peer's address.
        local: the address to send from (the BGP peer's ``source-address``), or None for the kernel's choice.
        multihop: RFC 5883 (port 4784, ``minimum_ttl`` checked) instead of RFC 5881 (port 3784, TTL 255).
        profile: timers and roles.
        auth: the key, when the session authenticates.
    """

    peer: netaddr.IPAddress
    local: netaddr.IPAddress | None = None
    multihop: bool = False
    profile: BfdProfile = attrs.field(factory=BfdProfile)
    auth: AuthKey | None = None

    @property
    def key(self) -> SessionKey:
        """The session's identity; a new profile applies to the running session (through a Poll)."""
        return (self.peer, self.local, self.multihop)

    def check(self) -> None:
        """Raise ``ValueError`` for what this BFD cannot do (echo mode, out-of-range timers)."""
        p = self.profile
        if p.echo_mode:
            raise EchoNotSupported(
                f"BFD to {self.peer}: echo mode is not supported (metallb's BFD runs asynchronous mode only); "
                "set echo-mode to false"
            )
        if self.local is not None and self.local.version != self.peer.version:
            raise ValueError(f"BFD to {self.peer}: local address {self.local} is of another IP family")
        for name, value, low, high in (
            ("receive interval", p.receive_interval, 1, 60000),
            ("transmit interval", p.transmit_interval, 1, 60000),
            ("detect multiplier", p.detect_multiplier, 1, 255),
            ("minimum TTL", p.minimum_ttl, 1, 255),
        ):
            if not low <= value <= high:
                raise ValueError(f"BFD to {self.peer}: {name} {value} is not {low}-{high}")


@attrs.frozen(kw_only=True)
class BfdStatus:
    """A snapshot of one BFD session, for status tables.

    Attributes:
        peer: the peer's address.
        multihop: RFC 5883 session.
        state: ``AdminDown``, ``Down``, ``Init`` or ``Up``.
        remote_state: the peer's state as it last told us.
        diag: why our state last changed.
        remote_diag: why the peer's state last changed, as it told us.
        local_discr: our discriminator.
        remote_discr: the peer's (0 until heard).
        tx_interval: milliseconds between our packets (before jitter).
        detection_time: milliseconds without a packet before the session fails.
        up_since: wall-clock time it came up, or None.
        last_error: why it cannot work (a port in use ...), or "".
    """

    peer: str
    multihop: bool
    state: str
    remote_state: str
    diag: str
    remote_diag: str
    local_discr: int
    remote_discr: int
    tx_interval: float
    detection_time: float
    up_since: float | None = None
    last_error: str = ""


class _Session:
    """A machine with its sending socket and timer; touched only on the BFD loop."""

    def __init__(self, spec: SessionSpec, machine: SessionMachine, sock: socket.socket) -> None:
        self.spec = spec
        self.machine = machine
        self.sock = sock
        self.label = peer_label(spec.peer)
        self.dest = (str(spec.peer), MULTI_HOP_PORT if spec.multihop else SINGLE_HOP_PORT)
        self.handle: asyncio.TimerHandle | None = None
        self.refused = 0  # sends refused in the current streak
        self.up_since: float | None = None
        self.last_error = ""


Listener = Callable[[SessionSpec, Transition], None]


class BfdService:
    """Runs BFD sessions on a thread of its own; every public method may be called from any thread.

    Args:
        metrics: where to count; None for no metrics.
        listener: called on the BFD thread with each state change; it must hand work
            to its own thread and return at once (``loop.call_soon_threadsafe``).
        rng: source of discriminators, ports and jitter (tests seed it).

    The thread, like every thread, starts in the network namespace of the thread
    that creates the service, and so do its sockets.
    """

    def __init__(
        self,
        *,
        metrics: MetricsSink | None = None,
        listener: Listener | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._metrics = metrics
        self._listener = listener
        self._rng = rng or random.Random()
        self._sessions: dict[SessionKey, _Session] = {}
        self._by_discr: dict[int, _Session] = {}
        self._rx: dict[tuple[int, bool], socket.socket] = {}
        self._rx_failed: dict[tuple[int, bool], tuple[float, str]] = {}
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="metallb-bfd", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<BfdService(sessions={len(self._sessions)})>"

    # -- public ----------------------------------------------------------------------

    def configure(self, specs: Iterable[SessionSpec]) -> None:
        """Run exactly these sessions: start new ones, stop (AdminDown) removed ones, retime changed ones.

        Returns at once; the BFD thread applies it. A spec :meth:`SessionSpec.check`
        refuses is logged and skipped.
        """
        wanted = {}
        for spec in specs:
            try:
                spec.check()
            except ValueError as exc:
                log.error("%s", exc)
                continue
            wanted[spec.key] = spec
        if not self._closed:
            self._loop.call_soon_threadsafe(self._configure, wanted)

    def sessions(self) -> list[BfdStatus]:
        """Every session's state, in configuration order."""
        if self._closed:
            return []
        return asyncio.run_coroutine_threadsafe(self._statuses(), self._loop).result(10)

    def close(self) -> None:
        """Tell every peer AdminDown, close the sockets and stop the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self._loop.close()

    # -- loop side: configuration ------------------------------------------------------

    async def _statuses(self) -> list[BfdStatus]:
        return [self._status(s) for s in self._sessions.values()]

    @staticmethod
    def _status(s: _Session) -> BfdStatus:
        m = s.machine
        return BfdStatus(
            peer=s.label,
            multihop=s.spec.multihop,
            state=str(m.state),
            remote_state=str(m.remote_state),
            diag=Diag.text(m.local_diag),
            remote_diag=Diag.text(m.remote_diag),
            local_discr=m.local_discr,
            remote_discr=m.remote_discr,
            tx_interval=round(m.tx_interval() * 1e3, 3),
            detection_time=round(m.detection_time() * 1e3, 3),
            up_since=s.up_since,
            last_error=s.last_error,
        )

    def _configure(self, wanted: dict[SessionKey, SessionSpec]) -> None:
        now = self._loop.time()
        for key in [k for k in self._sessions if k not in wanted]:
            self._stop(self._sessions.pop(key), now)
        for key, spec in wanted.items():
            current = self._sessions.get(key)
            if current is None:
                try:
                    self._start(spec, now)
                except OSError as exc:
                    log.error("BFD to %s: cannot open a socket: %s", spec.peer, exc)
            elif current.spec != spec:
                self._retime(current, spec, now)
        for rx_key in [k for k in self._rx if not any(self._rx_key(s.spec) == k for s in self._sessions.values())]:
            self._loop.remove_reader(self._rx[rx_key])
            self._rx.pop(rx_key).close()

    def _start(self, spec: SessionSpec, now: float) -> None:
        p = spec.profile
        discr = self._new_discriminator()
        machine = SessionMachine(
            local_discr=discr,
            desired_min_tx=p.transmit_interval * 1000,
            required_min_rx=p.receive_interval * 1000,
            detect_mult=p.detect_multiplier,
            passive=p.passive_mode,
            now=now,
            rng=self._rng,
            auth=Authenticator(spec.auth, rng=self._rng) if spec.auth is not None else None,
        )
        s = _Session(spec, machine, self._sending_socket(spec))
        self._loop.add_reader(s.sock, _drain, s.sock)
        self._sessions[spec.key] = s
        self._by_discr[discr] = s
        if self._metrics is not None:
            self._metrics.start(s.label)
        self._ensure_rx(s, now)
        log.info(
            "BFD session to %s started (%s, tx %d ms, rx %d ms, multiplier %d%s, source port %d)",
            spec.peer, "multihop" if spec.multihop else "single hop", p.transmit_interval, p.receive_interval,
            p.detect_multiplier, ", passive" if p.passive_mode else "", s.sock.getsockname()[1],
        )  # fmt: skip
        self._arm(s)

    def _retime(self, s: _Session, spec: SessionSpec, now: float) -> None:
        p = spec.profile
        s.spec = spec
        s.machine.passive = p.passive_mode
        if spec.auth != (s.machine.auth.key if s.machine.auth is not None else None):
            s.machine.auth = Authenticator(spec.auth, rng=self._rng) if spec.auth is not None else None
        s.machine.set_timers(
            desired_min_tx=p.transmit_interval * 1000,
            required_min_rx=p.receive_interval * 1000,
            detect_mult=p.detect_multiplier,
            now=now,
        )
        log.info("BFD session to %s: new profile %s", spec.peer, p)
        self._arm(s)

    def _stop(self, s: _Session, now: float) -> None:
        if s.handle is not None:
            s.handle.cancel()
        if s.machine.admin_down(now) is not None:
            self._send(s, s.machine.transmit(now))  # the peer sees AdminDown, not a failure (RFC 5882 3.2)
        self._by_discr.pop(s.machine.local_discr, None)
        self._loop.remove_reader(s.sock)
        s.sock.close()
        if self._metrics is not None:
            self._metrics.forget(s.label)
        log.info("BFD session to %s stopped", s.spec.peer)

    async def _shutdown(self) -> None:
        now = self._loop.time()
        for s in self._sessions.values():
            self._stop(s, now)
        self._sessions.clear()
        for sock in self._rx.values():
            self._loop.remove_reader(sock)
            sock.close()
        self._rx.clear()

    def _new_discriminator(self) -> int:
        while True:
            discr = self._rng.randrange(1, 1 << 32)
            if discr not in self._by_discr:
                return discr

    # -- loop side: sockets -----------------------------------------------------------

    def _sending_socket(self, spec: SessionSpec) -> socket.socket:
        family = socket.AF_INET if spec.peer.version == 4 else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, _TOS_NETWORK_CONTROL)
                sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, _TOS_NETWORK_CONTROL)
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            host = str(spec.local) if spec.local is not None else ("0.0.0.0" if family == socket.AF_INET else "::")
            low, high = _SOURCE_PORTS
            for _ in range(64):  # random, so sessions get distinct ports (RFC 5881 4: SHOULD be unique)
                try:
                    sock.bind((host, self._rng.randint(low, high)))
                    return sock
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
            raise OSError(errno.EADDRINUSE, f"no free source port in {low}-{high}")
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _rx_key(spec: SessionSpec) -> tuple[int, bool]:
        return (spec.peer.version, spec.multihop)

    def _ensure_rx(self, s: _Session, now: float) -> None:
        """Open the receiving socket *s* needs; on failure retry every few seconds, saying why in its status."""
        key = self._rx_key(s.spec)
        if key in self._rx:
            s.last_error = ""
            return
        failed = self._rx_failed.get(key)
        if failed is not None and now - failed[0] < _RX_RETRY:
            s.last_error = failed[1]
            return
        version, multihop = key
        port = MULTI_HOP_PORT if multihop else SINGLE_HOP_PORT
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
                sock.bind(("0.0.0.0", port))
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
                sock.bind(("::", port))
        except OSError as exc:
            sock.close()
            why = f"cannot receive on UDP port {port} (IPv{version}): {exc.strerror or exc}"
            if exc.errno == errno.EADDRINUSE:
                why += "; another BFD daemon (or speaker) runs in this network namespace"
            if failed is None:
                log.error("BFD: %s; retrying every %g s", why, _RX_RETRY)
            self._rx_failed[key] = (now, why)
            s.last_error = why
            return
        if failed is not None:
            log.info("BFD: receiving on UDP port %d (IPv%d) now", port, version)
        self._rx_failed.pop(key, None)
        self._rx[key] = sock
        self._loop.add_reader(sock, self._readable, sock, multihop)
        for other in self._sessions.values():
            if self._rx_key(other.spec) == key:
                other.last_error = ""

    def _send(self, s: _Session, pkt: ControlPacket) -> None:
        data = s.machine.auth.sign(pkt) if s.machine.auth is not None else encode(pkt)
        try:
            try:
                s.sock.sendto(data, s.dest)
            except OSError as exc:
                if exc.errno not in _ICMP_ERRORS:
                    raise
                s.sock.sendto(data, s.dest)  # that was an earlier ICMP error, now cleared: send for real
        except OSError as exc:
            # ENOBUFS (a full or zero-length queue), EPERM (a firewall), EAGAIN...: a packet lost on our side.
            if s.refused == 0:
                log.warning(
                    "BFD to %s: the kernel refused a packet (%s); counting further refusals until one is sent",
                    s.label, exc.strerror or exc,
                )  # fmt: skip
            s.refused += 1
            if self._metrics is not None:
                self._metrics.send_error(s.label)
            return
        if s.refused:
            log.warning("BFD to %s: sending again after %d refused packets", s.label, s.refused)
            s.refused = 0
        if self._metrics is not None:
            self._metrics.sent(s.label)

    def _readable(self, sock: socket.socket, multihop: bool) -> None:
        for _ in range(_BATCH):
            try:
                data, ancdata, _, addr = sock.recvmsg(_MAX_PACKET, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("BFD: receive failed: %s", exc)
                return
            self._received(data, _ttl(ancdata), addr[0], multihop)

    def _received(self, data: bytes, ttl: int | None, host: str, multihop: bool) -> None:
        try:
            source = netaddr.IPAddress(host.split("%", 1)[0])
        except (netaddr.AddrFormatError, ValueError):
            return
        try:
            pkt = decode(data)
        except BfdDecodeError as exc:
            self._discard(self._by_source(source, multihop), source, f"malformed: {exc}")
            return
        s = self._by_discr.get(pkt.your_discr) if pkt.your_discr else self._by_source(source, multihop)
        if s is None or s.spec.multihop != multihop:
            log.debug("BFD: packet from %s (your discriminator %d) matches no session", source, pkt.your_discr)
            return
        if s.spec.peer != source:
            self._discard(s, source, f"for our session to {s.spec.peer} but from {source}")
            return
        if multihop:
            if ttl is None or ttl < s.spec.profile.minimum_ttl:
                self._discard(s, source, f"TTL {ttl} is below the minimum {s.spec.profile.minimum_ttl}")
                return
        elif ttl != 255:  # RFC 5881 5: a single-hop packet that crossed a router, or was forged
            self._discard(s, source, f"TTL {ttl} is not 255 on a single-hop session")
            return
        now = self._loop.time()
        result = s.machine.receive(pkt, now, raw=data)
        if result.discarded:
            self._discard(s, source, result.discarded)
            return
        if self._metrics is not None:
            self._metrics.received(s.label)
        if result.transition is not None:
            self._changed(s, result.transition)
        if result.reply_final:
            self._send(s, s.machine.transmit(now, final=True))  # at once, outside the periodic timer (6.8.6)
        elif result.transition is not None and s.machine.sending():
            self._send(s, s.machine.transmit(now))
        self._arm(s)

    def _by_source(self, source: netaddr.IPAddress, multihop: bool) -> _Session | None:
        for s in self._sessions.values():
            if s.spec.peer == source and s.spec.multihop == multihop:
                return s
        return None

    def _discard(self, s: _Session | None, source: netaddr.IPAddress, why: str) -> None:
        log.debug("BFD: discarded a packet from %s: %s", source, why)
        if s is not None and self._metrics is not None:
            self._metrics.discarded(s.label)

    # -- loop side: timers -------------------------------------------------------------

    def _arm(self, s: _Session) -> None:
        if s.handle is not None:
            s.handle.cancel()
        when = s.machine.deadline()
        s.handle = None if when == math.inf else self._loop.call_at(when, self._tick, s)

    def _tick(self, s: _Session) -> None:
        s.handle = None
        now = self._loop.time()
        transition, pkt = s.machine.tick(now)
        if transition is not None:
            self._changed(s, transition)
        if pkt is not None:
            self._send(s, pkt)
        if self._rx_key(s.spec) not in self._rx:
            self._ensure_rx(s, now)
        self._arm(s)

    def _changed(self, s: _Session, t: Transition) -> None:
        m = s.machine
        why = Diag.text(t.diag) if t.diag else "handshake"
        if t.remote_admin_down:
            why = "the peer signalled AdminDown"
        timers = f"; tx {m.tx_interval() * 1e3:g} ms, detection time {m.detection_time() * 1e3:g} ms"
        log.log(
            logging.WARNING if t.failed else logging.INFO,
            "BFD session to %s: %s -> %s (%s%s)", s.label, t.old, t.new, why, timers if t.new == State.UP else "",
        )  # fmt: skip
        if t.new == State.UP:
            s.up_since = time.time()
            if self._metrics is not None:
                self._metrics.session_up(s.label, True)
        elif t.old == State.UP:
            s.up_since = None
            if self._metrics is not None:
                self._metrics.session_up(s.label, False)
        if self._listener is not None:
            try:
                self._listener(s.spec, t)
            except Exception:  # a listener's bug must not stop BFD
                log.exception("BFD: the state-change listener failed")


def _drain(sock: socket.socket) -> None:
    """Empty a sending socket's error queue (ICMP errors, RECVERR) and any datagram sent to its port."""
    for flags in (socket.MSG_ERRQUEUE, 0):
        for _ in range(_BATCH):
            try:
                sock.recvmsg(_MAX_PACKET, 512, flags)
            except OSError:  # EAGAIN: empty; anything else: nothing to do about it here
                break


def _ttl(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancdata:
        if (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)):
            return int.from_bytes(data[:4], sys.byteorder)
    return None
