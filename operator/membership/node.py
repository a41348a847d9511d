"""The gossip runtime: one :class:`~.state.Swim` over encrypted UDP and TCP, on its own asyncio loop.

:class:`GossipNode` binds its UDP and TCP sockets when it is built (so a
caller learns at once that the port is taken), then runs the state machine in
a background thread: probes, acks and gossip go over UDP; a probe's TCP
fallback and the push-pull state exchange go over TCP (one connection per
exchange, frames of ``length:u32`` and an encrypted packet).

Every packet is checked before the state machine sees it: its source address
must be a member's (from Kubernetes), it must decrypt with the shared key,
decode, and name as sender the member that owns that address. Anything else
is dropped and counted in :attr:`GossipNode.dropped`.

The other threads read :meth:`GossipNode.live` (an immutable snapshot) and
are told of changes through ``on_change``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from metallb.operator.membership.crypto import DecryptError, Keyring
from metallb.operator.membership.messages import Kind, Packet, Status, WireError, decode, encode
from metallb.operator.membership.state import MemberView, Params, Send, Swim, Transport

__all__ = ["GossipNode"]

log = logging.getLogger(__name__)
_FRAME = struct.Struct("!I")
_MAX_FRAME = 4 << 20
_SYNC_TIMEOUT = 5.0


def _normal(host: str) -> str:
    """One spelling per address, so a member's address and a packet's source compare equal."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.compressed


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, node: GossipNode) -> None:
        self.node = node

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.node._dispatch(self.node._handle(data, str(addr[0]), Transport.UDP))

    def error_received(self, exc: Exception) -> None:
        log.debug("memberlist: UDP error: %s", exc)  # ICMP unreachable from a stopped member: expected


class GossipNode:
    """One member on the network; see the module docstring.

    Args:
        name: this member (the node name).
        keyring: the shared key(s).
        bind: (address, port) to listen on; ``""`` or ``0.0.0.0`` is every address, port 0 any free port.
        members: member name -> address (this member may be among them).
        peer_port: the port members listen on (default: the port bound here, as in a DaemonSet).
        params: protocol parameters.
        on_change: called (from the gossip thread) whenever :meth:`live` changes.
        on_suspect: called (from the gossip thread) with a member each time it turns from alive to
            suspect (this member's probe failed, or another member said so).
        join_timeout: seconds after which the node counts as ready even if no member answered the join.
        meta: this member's meta to start with (see :meth:`set_meta`).
    """

    def __init__(
        self,
        name: str,
        *,
        keyring: Keyring,
        bind: tuple[str, int],
        members: Mapping[str, str] | None = None,
        peer_port: int | None = None,
        params: Params | None = None,
        on_change: Callable[[], None] | None = None,
        on_suspect: Callable[[str], None] | None = None,
        join_timeout: float = 2.0,
        meta: bytes | None = None,
    ) -> None:
        self.name = name
        self._keyring = keyring
        self._on_change = on_change
        self._on_suspect = on_suspect
        self._join_timeout = join_timeout
        host, port = bind
        self._host = host if host not in ("", "0.0.0.0", "::") else ""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._udp = socket.socket(family, socket.SOCK_DGRAM)
        self._tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            for sock in (self._udp, self._tcp):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setblocking(False)
            self._udp.bind((host, port))
            self.port = int(self._udp.getsockname()[1])
            self._tcp.bind((host, self.port))
            self._tcp.listen(128)
        except OSError:
            self._udp.close()
            self._tcp.close()
            raise
        self.peer_port = peer_port or self.port
        now = time.monotonic()
        # Wall-clock milliseconds: a restarted speaker starts above anything its previous process reached.
        self.swim = Swim(
            name, incarnation=time.time_ns() // 1_000_000, now=now, params=params, observer=self._observe, meta=meta
        )
        self._addresses: dict[str, str] = {}
        self._by_address: dict[str, str] = {}
        self._live: frozenset[str] = frozenset({name})
        self._applied = threading.Event()  # a member list reached the state machine
        self._joined_at: float | None = None  # when the first join went out
        #: Bytes and packets that left and arrived (encrypted sizes, UDP and TCP).
        self.bytes_sent = self.bytes_received = self.packets_sent = self.packets_received = 0
        #: Packets dropped before the state machine, by reason: stranger, decrypt, malformed.
        self.dropped = {"stranger": 0, "decrypt": 0, "malformed": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._leave = True
        self._lock = threading.Lock()  # guards the state machine against set_members before the loop runs
        if members:
            self._set_members(dict(members))

    # -- the other threads' side -----------------------------------------------------------

    def live(self) -> frozenset[str]:
        """Members counted live now (this one too, unless it holds itself down after being cut off)."""
        return self._live

    def members(self) -> dict[str, MemberView]:
        """Every other member as this one sees it (thread-safe)."""
        with self._lock:
            return self.swim.members()

    def metas(self) -> dict[str, bytes]:
        """Every other member's meta where known (thread-safe)."""
        with self._lock:
            return self.swim.metas()

    def set_meta(self, meta: bytes | None) -> None:
        """Carry *meta* from now on (thread-safe; a change is gossiped at once, under a new incarnation)."""
        with self._lock:
            self.swim.set_meta(meta, time.monotonic())
        loop = self._loop
        if loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(self._wake.set)

    @property
    def addresses(self) -> dict[str, str]:
        """The members as last applied: name -> address."""
        return dict(self._addresses)

    def ready(self) -> bool:
        """True once members are known and the join's state exchange answered, nobody is there, or it timed out."""
        if not self._applied.is_set():
            return False
        joined = self._joined_at
        return (
            self.swim.synced
            or not self._addresses.keys() - {self.name}
            or (joined is not None and time.monotonic() - joined >= self._join_timeout)
        )

    def set_members(self, members: Mapping[str, str]) -> None:
        """Who may be a member, with their addresses (thread-safe)."""
        self._set_members(dict(members))
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(self._after_members)

    def start(self) -> GossipNode:
        """Run in a background thread."""
        self._thread = threading.Thread(target=self._run, name=f"memberlist-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, leave: bool = True) -> None:
        """Stop; with *leave*, first tell every member this one is leaving so they take over at once."""
        self._leave = leave
        self._stopping = True
        loop = self._loop
        if loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(self._wake.set)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._udp.close()
        self._tcp.close()

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        except Exception:
            log.exception("memberlist: the gossip loop failed")
        finally:
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = asyncio.Event()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), sock=self._udp)
        self._transport = transport
        server = await asyncio.start_server(self._serve, sock=self._tcp)
        self._loop = loop
        self._join()
        while not self._stopping:
            now = time.monotonic()
            with self._lock:
                self._dispatch(self.swim.tick(now))
                self._refresh(now)
                delay = self.swim.next_deadline() - time.monotonic()
            self._wake.clear()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        if self._leave:
            with self._lock:
                self._dispatch(self.swim.leave(time.monotonic()))
            await asyncio.sleep(0.02)  # let the goodbyes leave the socket buffer
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # Let them end on this loop: a connection handler collected after the loop closed fails in close().
        await asyncio.gather(*tasks, return_exceptions=True)
        transport.close()

    def _set_members(self, members: dict[str, str]) -> None:
        addresses = {}
        for name, host in members.items():
            try:
                addresses[name] = _normal(host)
            except ValueError:
                log.warning("memberlist: member %s has no usable address %r; ignored", name, host)
        with self._lock:
            self._addresses = addresses
            self._by_address = {a: n for n, a in addresses.items()}
            now = time.monotonic()
            self.swim.set_members(addresses, now)
            self._refresh(now)
        self._applied.set()

    def _after_members(self) -> None:
        """In the gossip thread: a first member list starts the join; deadlines may have moved."""
        self._join()
        if self._wake is not None:
            self._wake.set()

    def _join(self) -> None:
        """Push-pull with a few members, once there are members to ask (gossip thread)."""
        if self._joined_at is not None or not self._addresses.keys() - {self.name}:
            return
        with self._lock:
            self._joined_at = time.monotonic()
            self._dispatch(self.swim.join(self._joined_at))

    def _refresh(self, now: float) -> None:
        live = self.swim.live(now)
        if live != self._live:
            self._live = live
            if self._on_change is not None:
                self._on_change()

    def _observe(self, member: str, old: Status, new: Status, now: float) -> None:
        level = logging.DEBUG if Status.SUSPECT in (old, new) and Status.DEAD not in (old, new) else logging.INFO
        log.log(level, "memberlist: %s is %s (was %s)", member, new.name.lower(), old.name.lower())
        if old == Status.ALIVE and new == Status.SUSPECT and self._on_suspect is not None:
            self._on_suspect(member)

    # -- packets ---------------------------------------------------------------------------

    def _handle(self, data: bytes, source: str, transport: Transport) -> list[Send]:
        """Check one packet from *source*; hand it to the state machine; return what to send."""
        self.bytes_received += len(data)
        self.packets_received += 1
        try:
            source = _normal(source)
        except ValueError:
            source = ""
        owner = self._by_address.get(source)
        if owner is None:  # checked before decrypting: strangers cost us nothing
            self.dropped["stranger"] += 1
            return []
        try:
            packet = decode(self._keyring.decrypt(data))
        except DecryptError:
            self.dropped["decrypt"] += 1
            return []
        except WireError:
            self.dropped["malformed"] += 1
            return []
        if packet.sender != owner:
            self.dropped["stranger"] += 1
            return []
        now = time.monotonic()
        with self._lock:
            sends = self.swim.receive(now, packet, transport=transport)
            self._refresh(now)
        if self._wake is not None:
            self._wake.set()  # deadlines may have moved (a new update to gossip, a relay to time)
        return sends

    def _seal(self, packet: Packet) -> bytes:
        data = self._keyring.encrypt(encode(packet))
        self.bytes_sent += len(data)
        self.packets_sent += 1
        return data

    def _dispatch(self, sends: list[Send]) -> None:
        for send in sends:
            host = self._addresses.get(send.to)
            if host is None:
                continue
            if send.transport == Transport.UDP:
                if self._transport is not None:
                    self._transport.sendto(self._seal(send.packet), (host, self.peer_port))
            else:
                task = asyncio.ensure_future(self._request(host, send.packet))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _request(self, host: str, packet: Packet) -> None:
        """A TCP exchange: send *packet*, hand every answer to the state machine, until EOF or timeout."""
        timeout = self.swim.params.probe_interval * (self.swim.health + 1)
        if packet.kind == Kind.SYNC:
            timeout = _SYNC_TIMEOUT
        writer = None
        try:
            async with asyncio.timeout(timeout):
                local = (self._host, 0) if self._host else None
                reader, writer = await asyncio.open_connection(host, self.peer_port, local_addr=local)
                data = self._seal(packet)
                writer.write(_FRAME.pack(len(data)) + data)
                await writer.drain()
                while (frame := await self._read_frame(reader)) is not None:
                    self._dispatch(self._handle(frame, host, Transport.TCP))
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("memberlist: TCP %s to %s: %s", packet.kind.name, host, exc)
        finally:
            if writer is not None:
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        task = asyncio.current_task()
        if task is not None:  # cancelled at stop like our own requests (start_server does not track it)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            async with asyncio.timeout(_SYNC_TIMEOUT):
                frame = await self._read_frame(reader)
                if frame is None:
                    return
                # Answers to a TCP request (an ack, a push-pull reply) go back on this connection.
                replies: list[Send] = []
                others: list[Send] = []
                for send in self._handle(frame, peer, Transport.TCP):
                    (replies if send.transport == Transport.TCP else others).append(send)
                self._dispatch(others)
                for send in replies:
                    data = self._seal(send.packet)
                    writer.write(_FRAME.pack(len(data)) + data)
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("memberlist: TCP from %s: %s", peer, exc)
        finally:
            writer.close()

    @staticmethod
    async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
        try:
            header = await reader.readexactly(_FRAME.size)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return None
        (size,) = _FRAME.unpack(header)
        if size > _MAX_FRAME:
            raise OSError(f"frame of {size} bytes, at most {_MAX_FRAME}")
        return await reader.readexactly(size)
