"""The layer-2 responder: one thread, one epoll loop, one raw packet socket per interface.

The loop thread owns all state. Other threads hand it work through
:meth:`Responder.apply`, which waits until the loop has done it, so an address
is answered as soon as ``apply`` returns. Per frame the loop does one
``recv``, a dict lookup on the target address (frames for other addresses
stop there), a few slices and one ``send`` of a prebuilt template.

While answering, the loop also watches for other hosts claiming an address it
answers for: an ARP request or reply whose sender address is ours, or a
Neighbor Advertisement (unsolicited, with the Override flag or not) whose
target is ours, from a MAC that is neither this host's nor one of *friends*
(the other speakers'). Each is reported to ``on_conflict``. Our own frames
never reach the loop (the kernel filter drops outgoing frames), and a frame
sent by another interface of this host carries one of its MACs.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import errno
import heapq
import itertools
import logging
import os
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs
import netaddr
from metallb.announcers.layer2.netlink import Link, enter_netns, event_socket, links, matches
from metallb.announcers.layer2.packets import (
    SNAPLEN,
    ArpAnswer,
    NdpAnswer,
    mac_text,
    parse_arp_claim,
    parse_arp_request,
    parse_neighbor_advertisement,
    parse_neighbor_solicitation,
    responder_filter,
    solicited_node_group,
)
from metallb.announcers.metrics import PerRegistry
from prometheus_client import CollectorRegistry, Counter

__all__ = ["Metrics", "Responder", "metrics_for"]

log = logging.getLogger(__name__)

_ETH_P_ALL = 0x0003
_SO_ATTACH_FILTER = 26
_SO_RCVBUFFORCE = 33
#: Frames served per wake-up of one interface before the loop looks at the others.
_BATCH = 64
#: MetalLB's gratuitous schedule: a round every 1.1 s until 5 s after the last announce.
SPAM_INTERVAL = 1.1
SPAM_DURATION = 5.0
#: Seconds between two warnings about the same claimant of the same address (each claim is still reported).
CLAIM_LOG_INTERVAL = 5.0
_ICMPV6_NA = 136
T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Metrics:
    """MetalLB's layer-2 counters and our takeovers, labelled by ``ip``."""

    requests_received: Counter
    responses_sent: Counter
    gratuitous_sent: Counter
    conflicts: Counter
    takeovers: Counter


@PerRegistry
def metrics_for(registry: CollectorRegistry) -> Metrics:
    """The layer-2 counters registered in *registry* (default: the global one), created once."""
    return Metrics(
        requests_received=Counter(
            "metallb_layer2_requests_received",
            "Number of layer2 requests received for owned IPs",
            ["ip"],
            registry=registry,
        ),
        responses_sent=Counter(
            "metallb_layer2_responses_sent",
            "Number of layer2 responses sent for owned IPs",
            ["ip"],
            registry=registry,
        ),
        gratuitous_sent=Counter(
            "metallb_layer2_gratuitous_sent",
            "Number of gratuitous layer2 packets sent for owned IPs",
            ["ip"],
            registry=registry,
        ),
        conflicts=Counter(
            "metallb_layer2_address_conflicts",
            "Other hosts found using a service address (answering a conflict probe, or by gratuitous ARP)",
            ["ip", "mac"],
            registry=registry,
        ),
        takeovers=Counter(
            "metallb_layer2_takeovers_total",
            "Times this node started answering for an address (a failover or a first announcement)",
            ["ip"],
            registry=registry,
        ),
    )


def _text(packed: bytes) -> str:
    """A packed IPv4 or IPv6 address as text."""
    return str(netaddr.IPAddress(int.from_bytes(packed, "big"), 4 if len(packed) == 4 else 6))


class _Port:
    """One interface: its packet socket, its answer tables and its multicast memberships."""

    def __init__(self, link: Link, rcvbuf: int) -> None:
        self.link = link
        self.arp: dict[bytes, ArpAnswer] = {}
        self.ndp: dict[bytes, NdpAnswer] = {}
        self.groups: dict[bytes, int] = {}
        self._members: dict[bytes, socket.socket] = {}
        self._holders: list[socket.socket] = []
        # Protocol 0 receives nothing, so no unfiltered frame is queued before bind.
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            prog = responder_filter()
            buf = ctypes.create_string_buffer(prog, len(prog))
            fprog = struct.pack("HL", len(prog) // 8, ctypes.addressof(buf))
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, rcvbuf)
            except PermissionError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.bind((link.name, _ETH_P_ALL))
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def join(self, group: bytes) -> None:
        """Join solicited-node *group* once per port, counting users.

        IPV6_JOIN_GROUP (not a packet-socket membership) so the kernel also sends
        MLD reports: switches that snoop MLD forward the group only to listeners.
        """
        # Users are counted even if the join below fails (leave() stays balanced);
        # a group not yet joined is tried again by its next user.
        self.groups[group] = self.groups.get(group, 0) + 1
        if group in self._members:
            return
        mreq = group + struct.pack("I", self.link.index)
        for holder in self._holders:
            try:
                holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            except OSError as exc:
                if exc.errno not in (errno.ENOBUFS, errno.ENOMEM):
                    raise
                continue  # this socket's option memory is full; try the next one
            self._members[group] = holder
            return
        holder = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self._holders.append(holder)
        holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        self._members[group] = holder

    def leave(self, group: bytes) -> None:
        """Drop one user of *group*; leave it when the last one goes."""
        count = self.groups.get(group, 0) - 1
        if count > 0:
            self.groups[group] = count
            return
        self.groups.pop(group, None)
        holder = self._members.pop(group, None)
        if holder is not None:
            mreq = group + struct.pack("I", self.link.index)
            try:
                holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, mreq)
            except OSError as exc:  # the interface may be gone already
                log.debug("leaving %s on %s: %s", _text(group), self.link.name, exc)

    def close(self) -> None:
        """Close the sockets; the kernel drops their memberships with them."""
        self.sock.close()
        for holder in self._holders:
            holder.close()
        self._holders.clear()
        self._members.clear()
        self.groups.clear()


@attrs.define
class _Spam:
    deadline: float
    next_at: float


class Responder:
    """Answers ARP and NDP for a set of addresses on the interfaces that qualify.

    Args:
        restrict: interface names or shell patterns the responder may use at
            all (the speaker's ``interfaces`` setting); empty means any.
        netns: path of a network namespace for the loop thread to enter
            (tests and benchmarks); None stays where the process is.
        registry: where the metrics live; default the global registry.
        rescan_interval: seconds between interface rescans; link events from
            rtnetlink trigger one at once as well.
        rcvbuf: receive buffer of each packet socket, in bytes, so bursts are
            queued rather than dropped.
        on_conflict: called from the loop thread with (address, MAC, interface)
            for each frame of another host claiming an address answered here.
        friends: called from the loop thread when a claim is seen: MACs (6
            bytes each) that are never a conflict besides this host's own.
    """

    def __init__(
        self,
        *,
        restrict: tuple[str, ...] = (),
        netns: str | None = None,
        registry: CollectorRegistry | None = None,
        rescan_interval: float = 10.0,
        rcvbuf: int = 4 << 20,
        on_conflict: Callable[[netaddr.IPAddress, str, str], None] | None = None,
        friends: Callable[[], frozenset[bytes]] | None = None,
    ) -> None:
        self._restrict = restrict
        self._on_conflict = on_conflict
        self._friends = friends
        self._host_macs: frozenset[bytes] = frozenset()  # every interface of this host, from the last scan
        self._claim_logged: dict[tuple[bytes, bytes], float] = {}
        self._netns = netns
        self._metrics = metrics_for(registry)
        self._rescan_interval = rescan_interval
        self._rcvbuf = rcvbuf
        self._addresses: dict[netaddr.IPAddress, tuple[str, ...]] = {}
        self._ports: dict[int, _Port] = {}
        self._by_fd: dict[int, _Port] = {}
        self._spam: dict[netaddr.IPAddress, _Spam] = {}
        # (next_at, seq, address), so a wake-up looks only at the rounds that are due;
        # entries whose _Spam was removed or rescheduled are skipped when popped.
        self._spam_due: list[tuple[float, int, netaddr.IPAddress]] = []
        self._spam_seq = itertools.count()
        self._counters: dict[bytes, tuple[Any, Any]] = {}
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = queue.SimpleQueue()
        self._stopping = False
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="metallb-layer2", daemon=True)

    def __repr__(self) -> str:
        return f"<Responder(addresses={len(self._addresses)}, interfaces={len(self._ports)})>"

    # -- public API, called from any thread ------------------------------------------

    def start(self) -> None:
        """Start the loop thread and wait until the first interface scan is done."""
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            self._thread.join()
            self._close_pipe()
            raise RuntimeError("layer2 responder failed to start") from self._failure

    def apply(
        self,
        changes: Mapping[netaddr.IPAddress, tuple[str, ...] | None],
        *,
        announce: Iterable[netaddr.IPAddress] = (),
    ) -> None:
        """Add addresses (with their interface patterns) or remove them (None); then
        start or extend the gratuitous announcements of *announce*."""
        spam = tuple(announce)
        changes = dict(changes)
        self._call(lambda: self._apply(changes, spam))

    def answering(self) -> dict[str, tuple[str, ...]]:
        """For each interface with a responder, the addresses it answers for (for status and tests)."""

        def snapshot() -> dict[str, tuple[str, ...]]:
            return {p.link.name: tuple(sorted(_text(a) for a in (*p.arp, *p.ndp))) for p in self._ports.values()}

        return self._call(snapshot)

    def macs(self) -> frozenset[str]:
        """The MACs of the interfaces the responder answers on (what the other speakers must know as ours)."""
        return self._call(lambda: frozenset(mac_text(p.link.mac) for p in self._ports.values()))

    def rescan(self) -> None:
        """Rescan interfaces now (the loop also does it on link events and periodically)."""
        self._call(self._rescan)

    def close(self) -> None:
        """Stop answering, leave every group and stop the thread. Idempotent."""
        if self._thread.is_alive():
            self._stopping = True
            self._wake()
            self._thread.join(timeout=10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        # Closed only once the thread is gone, so a late wake-up never writes to a reused fd.
        if self._thread.is_alive() or self._wake_w < 0:
            return
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r = self._wake_w = -1

    # -- plumbing ----------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # a wake-up is already pending
        except OSError as exc:  # closed: the loop is gone
            log.debug("waking the layer2 loop: %s", exc)

    def _call(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        if not self._thread.is_alive():
            raise RuntimeError("layer2 responder is not running")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((fn, future))
        self._wake()
        return future.result(timeout=30)

    def _run(self) -> None:
        epoll: select.epoll | None = None
        events: socket.socket | None = None
        try:
            try:
                if self._netns:
                    enter_netns(self._netns)
                self._epoll = epoll = select.epoll()
                self._events = events = event_socket()
                epoll.register(events.fileno(), select.EPOLLIN)
                epoll.register(self._wake_r, select.EPOLLIN)
                self._rescan()
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                self._failure = exc
                return
            finally:
                self._ready.set()
            self._loop()
        finally:
            for port in list(self._ports.values()):
                self._close_port(port)
            if epoll is not None:
                epoll.close()
            if events is not None:
                events.close()
            while not self._calls.empty():
                _, future = self._calls.get()
                future.set_exception(RuntimeError("layer2 responder closed"))

    def _loop(self) -> None:
        next_scan = time.monotonic() + self._rescan_interval
        events_fd = self._events.fileno()
        by_fd = self._by_fd
        while not self._stopping:
            now = time.monotonic()
            due = self._spam_due[0][0] if self._spam_due else next_scan
            timeout = max(0.0, min(due, next_scan) - now)
            try:
                ready = self._epoll.poll(timeout)
            except InterruptedError:
                continue
            try:
                dirty = False
                for fd, _ in ready:
                    port = by_fd.get(fd)
                    if port is not None:
                        self._serve(port)
                    elif fd == events_fd:
                        dirty = self._drain_events() or dirty
                    elif fd == self._wake_r:
                        self._run_calls()
                now = time.monotonic()
                if dirty or now >= next_scan:
                    next_scan = now + self._rescan_interval
                    self._rescan()
                if self._spam_due and self._spam_due[0][0] <= now:
                    self._send_due_spam(now)
            except Exception:  # the loop must outlive any bug in one step
                log.exception("layer2 responder loop")

    def _run_calls(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while not self._calls.empty():
            fn, future = self._calls.get()
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

    def _drain_events(self) -> bool:
        got = False
        while True:
            try:
                if not self._events.recv(1 << 16):
                    return got
                got = True
            except BlockingIOError:
                return got
            except OSError as exc:  # ENOBUFS: events were lost, so rescan
                log.debug("rtnetlink events: %s", exc)
                got = True

    # -- the hot path ------------------------------------------------------------------

    def _serve(self, port: _Port) -> None:
        sock = port.sock
        arp = port.arp
        ndp = port.ndp
        mac = port.link.mac
        for _ in range(_BATCH):
            try:
                frame = sock.recv(SNAPLEN)
            except BlockingIOError:
                return
            except OSError as exc:  # ENETDOWN and friends: the rescan will sort it out
                log.debug("receive on %s: %s", port.link.name, exc)
                return
            try:
                reply: bytes
                if frame[12:14] == b"\x08\x06":
                    if frame[28:32] in arp:
                        # Another host gives its MAC for our address (a gratuitous ARP, a reply): report it.
                        claim = parse_arp_claim(frame)
                        if claim is not None:
                            self._claim(claim.sender_ip, claim.sender_mac, port.link.name)
                    if frame[20:22] != b"\x00\x01":
                        continue
                    key = frame[38:42]
                    answer = arp.get(key)
                    if answer is None:
                        continue
                    request = parse_arp_request(frame, mac)
                    if request is None:
                        continue
                    reply = answer.reply(request)  # a claim's request is answered too: the reply defends it
                else:
                    key = frame[62:78]
                    answer6 = ndp.get(key)
                    if answer6 is None:
                        continue
                    if frame[54] == _ICMPV6_NA:
                        advert = parse_neighbor_advertisement(frame)
                        if advert is not None:
                            self._claim(key, advert.mac, port.link.name)
                        continue
                    solicitation = parse_neighbor_solicitation(frame, mac)
                    if solicitation is None:
                        continue
                    reply = answer6.reply(solicitation)
                received, sent = self._counters[key]
                try:
                    sock.send(reply)  # before counting: the counters stay off the latency path
                except OSError as exc:
                    received.inc()
                    log.debug("reply on %s: %s", port.link.name, exc)
                    continue
                received.inc()
                sent.inc()
            except Exception:  # a malformed frame must never stop the loop
                log.exception("dropping a frame on %s", port.link.name)

    def _claim(self, packed: bytes, mac: bytes, interface: str) -> None:
        """A frame claims our address *packed* for *mac*: a conflict unless the MAC is ours or a friend's."""
        if mac in self._host_macs:
            return
        if self._friends is not None:
            try:
                if mac in self._friends():
                    return
            except Exception:  # a failing lookup must not silence the report
                log.exception("looking up the other speakers' MACs")
        now = time.monotonic()
        logged = self._claim_logged.get((packed, mac))
        if logged is None or now - logged >= CLAIM_LOG_INTERVAL:
            if len(self._claim_logged) >= 1024:  # a flood of forged MACs: forget, do not grow
                self._claim_logged.clear()
            self._claim_logged[(packed, mac)] = now
            log.warning("%s: another host (%s) claims it on %s", _text(packed), mac_text(mac), interface)
        if self._on_conflict is not None:
            self._on_conflict(netaddr.IPAddress(_text(packed)), mac_text(mac), interface)

    # -- state changes, run in the loop thread -------------------------------------------

    def _apply(
        self, changes: Mapping[netaddr.IPAddress, tuple[str, ...] | None], spam: tuple[netaddr.IPAddress, ...]
    ) -> None:
        for address, patterns in changes.items():
            if address in self._addresses:
                if self._addresses[address] == patterns:
                    continue
                for port in self._ports.values():
                    self._unbind(port, address)
                del self._addresses[address]
                if patterns is None:
                    self._spam.pop(address, None)
            if patterns is not None:
                self._addresses[address] = patterns
                packed = bytes(address.packed)
                if packed not in self._counters:
                    labels = str(address)
                    self._counters[packed] = (
                        self._metrics.requests_received.labels(ip=labels),
                        self._metrics.responses_sent.labels(ip=labels),
                    )
                for port in self._ports.values():
                    self._bind(port, address, patterns)
            else:
                self._counters.pop(bytes(address.packed), None)
        now = time.monotonic()
        for address in spam:
            if address not in self._addresses:
                continue
            entry = self._spam.get(address)
            if entry is None:
                entry = self._spam[address] = _Spam(deadline=now + SPAM_DURATION, next_at=now + SPAM_INTERVAL)
                heapq.heappush(self._spam_due, (entry.next_at, next(self._spam_seq), address))
                self._send_spam(address)
            else:
                entry.deadline = now + SPAM_DURATION

    def _bind(self, port: _Port, address: netaddr.IPAddress, patterns: tuple[str, ...]) -> None:
        link = port.link
        if not matches(link.name, patterns):
            return
        packed = bytes(address.packed)
        if address.version == 4 and link.arp:
            port.arp[packed] = ArpAnswer(mac=link.mac, address=packed)
        elif address.version == 6 and link.ndp and packed not in port.ndp:
            try:
                port.join(solicited_node_group(packed))
            except OSError as exc:
                log.warning("cannot join the solicited-node group of %s on %s: %s", address, link.name, exc)
            port.ndp[packed] = NdpAnswer(mac=link.mac, address=packed)

    def _unbind(self, port: _Port, address: netaddr.IPAddress) -> None:
        packed = bytes(address.packed)
        port.arp.pop(packed, None)
        if port.ndp.pop(packed, None) is not None:
            port.leave(solicited_node_group(packed))

    def _rescan(self) -> None:
        try:
            current = links()
        except OSError as exc:
            log.warning("cannot list interfaces: %s", exc)
            return
        self._host_macs = frozenset(link.mac for link in current.values())
        wanted = {
            index: link
            for index, link in current.items()
            if (link.arp or link.ndp) and matches(link.name, self._restrict)
        }
        for index, port in list(self._ports.items()):
            link = wanted.get(index)
            if link is None or (link.name, link.mac) != (port.link.name, port.link.mac):
                log.info("closing the layer2 responder on %s", port.link.name)
                self._close_port(port)
            elif link != port.link:  # flags or link-local changed: keep the socket, redo the tables
                for address in self._addresses:
                    self._unbind(port, address)
                port.link = link
                for address, patterns in self._addresses.items():
                    self._bind(port, address, patterns)
        for index, link in wanted.items():
            if index in self._ports:
                continue
            try:
                port = _Port(link, self._rcvbuf)
            except OSError as exc:  # one interface failing never stops the others
                log.warning("cannot answer on %s: %s", link.name, exc)
                continue
            log.info("layer2 responder on %s (arp=%s, ndp=%s)", link.name, link.arp, link.ndp)
            self._ports[index] = port
            self._by_fd[port.sock.fileno()] = port
            self._epoll.register(port.sock.fileno(), select.EPOLLIN)
            for address, patterns in self._addresses.items():
                self._bind(port, address, patterns)

    def _close_port(self, port: _Port) -> None:
        self._ports.pop(port.link.index, None)
        fd = port.sock.fileno()
        self._by_fd.pop(fd, None)
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass
        port.close()

    # -- gratuitous announcements --------------------------------------------------------

    def _send_due_spam(self, now: float) -> None:
        due = self._spam_due
        while due and due[0][0] <= now:
            at, _, address = heapq.heappop(due)
            entry = self._spam.get(address)
            if entry is None or entry.next_at != at:
                continue  # withdrawn, or rescheduled by a newer announce
            if now > entry.deadline:
                del self._spam[address]
                continue
            entry.next_at = now + SPAM_INTERVAL
            heapq.heappush(due, (entry.next_at, next(self._spam_seq), address))
            self._send_spam(address)

    def _send_spam(self, address: netaddr.IPAddress) -> None:
        packed = bytes(address.packed)
        counter = self._metrics.gratuitous_sent.labels(ip=str(address))
        for port in self._ports.values():
            frames: tuple[bytes, ...]
            if address.version == 4 and packed in port.arp:
                frames = port.arp[packed].gratuitous()
            elif address.version == 6 and packed in port.ndp:
                frames = (port.ndp[packed].gratuitous(),)
            else:
                continue
            for frame in frames:
                try:
                    port.sock.send(frame)
                except OSError as exc:
                    log.debug("gratuitous %s on %s: %s", address, port.link.name, exc)
                    continue
                counter.inc()
