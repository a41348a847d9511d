"""The ``dhcp`` backend: every address is a real DHCP lease, one MAC per lease.

Packets are built and parsed with scapy and sent on one raw ``AF_PACKET``
socket (with a BPF filter for DHCP replies) on the configured interface, so
no interface, macvlan or address is ever created: chaddr is the lease's MAC,
the Ethernet source is the interface's own. Every message carries the
BROADCAST flag, because the leased address lives on no host and unicast
replies would go unanswered.

Renewal follows go-dhclient (DHCPManager's client): at T1 a *broadcast*
REQUEST with requested-address and server-identifier and ciaddr 0, because an
RFC 2131 RENEWING request (ciaddr set) gets its ACK sent to an address nobody
answers ARP for. After T2 the server identifier is left out (any server may
answer); at expiry, or on a NAK, the lease is reported lost. Renewals run
concurrently (a pool of threads), so one silent server delays no other lease.

A REQUEST that got no ACK in time may still have been granted: the offered
address is released at once, and an ACK that arrives later for that
transaction is released too.
"""

from __future__ import annotations

import ctypes
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
    client_id_for,
    wire_hostname,
)
from metallb.plugins.address_service.keeper import LeaseKeeper, in_netns
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet

__all__ = ["DhcpBackend"]

log = logging.getLogger(__name__)

_ETH_P_IP = 0x0800
_SO_ATTACH_FILTER = 26
_PACKET_OUTGOING = 4
_BROADCAST_FLAG = 0x8000
_INFINITE = 0xFFFFFFFF
# tcpdump -dd "ip and udp dst port 68": only DHCP client-port traffic reaches us.
_BPF = (
    (0x28, 0, 0, 0x0000000C),
    (0x15, 0, 8, 0x00000800),
    (0x30, 0, 0, 0x00000017),
    (0x15, 0, 6, 0x00000011),
    (0x28, 0, 0, 0x00000014),
    (0x45, 4, 0, 0x00001FFF),
    (0xB1, 0, 0, 0x0000000E),
    (0x48, 0, 0, 0x00000010),
    (0x15, 0, 1, 0x00000044),
    (0x06, 0, 0, 0x00040000),
    (0x06, 0, 0, 0x00000000),
)
_PARAMS = [1, 3, 6, 51, 54, 58, 59]
#: How long an abandoned REQUEST's late ACK is watched for (then released).
LATE_ACK_WINDOW = 60.0


def _open_socket(interface: str, netns: str) -> socket.socket:
    """A raw socket on *interface*, opened inside *netns* by a helper thread (setns is per thread)."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_IP))
        program = b"".join(struct.pack("HBBI", *ins) for ins in _BPF)
        buffer = ctypes.create_string_buffer(program)
        fprog = struct.pack("HL", len(_BPF), ctypes.addressof(buffer))
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
        try:
            sock.bind((interface, _ETH_P_IP))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"interface {interface!r}: {exc.strerror}") from None
        return sock

    return in_netns(netns, make, name="dhcp-socket")


def _options(packet: Packet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in packet[DHCP].options:
        if isinstance(item, tuple) and len(item) >= 2:
            out[item[0]] = item[1] if len(item) == 2 else list(item[1:])
    return out


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _addresses(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(_text(v) for v in value)
    return (_text(value),)


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


@attrs.define(kw_only=True)
class _Reply:
    packet: Packet
    kind: str
    source_mac: str


class DhcpBackend(LeaseKeeper):
    """Leases addresses from the DHCP server(s) on *interface*.

    Args:
        interface: where to send DHCP (a NIC on the server's segment).
        netns: open the socket in this named network namespace ("" = the process's own).
        cidrs: what the DHCP scope hands out, reported by ``/v1/config``.
        offer_timeout: wait for an OFFER before repeating the DISCOVER; above 3 s
            because servers ping-check a new address before offering it.
        ack_timeout: wait for an ACK or NAK before repeating the REQUEST.
        renew_after: renew this many seconds after each ACK instead of at T1
            (tests: dnsmasq's shortest lease is 2 minutes).
    """

    kind = "dhcp"
    needs_mac = True
    protocol = "DHCP"
    _log = log
    _bufsize = 4096
    _scheduler_name = "dhcp-renew"

    def __init__(
        self,
        *,
        interface: str,
        netns: str = "",
        cidrs: Sequence[str] = (),
        offer_timeout: float = 5.0,
        ack_timeout: float = 3.0,
        renew_after: float | None = None,
    ) -> None:
        super().__init__(interface=interface, netns=netns, cidrs=cidrs, renew_after=renew_after)
        self.offer_timeout = offer_timeout
        self.ack_timeout = ack_timeout
        self._ifmac = ""
        self._waiters: dict[int, queue.Queue[_Reply]] = {}
        # xid -> (mac, client id, until): REQUESTs given up on; an ACK for one is released.
        self._abandoned: dict[int, tuple[str, bytes, float]] = {}
        self.late_acks_released = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, listener: LeaseListener) -> None:
        """Open the socket; start the receiver and the renewal scheduler."""
        self._listener = listener
        self._sock = _open_socket(self.interface, self.netns)
        self._ifmac = ":".join(f"{b:02x}" for b in self._sock.getsockname()[4][:6])
        self._start_threads()
        log.info(
            "dhcp backend on %s (mac %s)%s",
            self.interface,
            self._ifmac,
            f" in netns {self.netns}" if self.netns else "",
        )

    # -- packets ----------------------------------------------------------------------------

    def _handle(self, data: bytes, address: Any) -> None:
        if address[2] == _PACKET_OUTGOING:
            return
        try:
            frame = Ether(data)
            bootp = frame[BOOTP]
            kind = {2: "offer", 5: "ack", 6: "nak"}.get(int(_options(frame).get("message-type", 0)), "")
        except Exception:  # noqa: BLE001 - a malformed frame must not stop the receiver
            return
        if bootp.op != 2 or not kind:
            return
        xid = int(bootp.xid)
        with self._lock:
            waiter = self._waiters.get(xid)
            late = self._abandoned.get(xid) if waiter is None and kind == "ack" else None
        if waiter is not None:
            waiter.put(_Reply(packet=frame, kind=kind, source_mac=str(frame.src)))
        elif late is not None and late[2] > time.monotonic():
            self._release_late(_Reply(packet=frame, kind=kind, source_mac=str(frame.src)), late[0], late[1])

    def _release_late(self, reply: _Reply, mac: str, client_id: bytes) -> None:
        """An ACK after its REQUEST was given up: nobody holds that lease, so it goes back at once."""
        address = str(reply.packet[BOOTP].yiaddr)
        server_id = _text(_options(reply.packet).get("server_id", ""))
        log.warning("late DHCPACK for %s (mac %s) after the request timed out: releasing it", address, mac)
        self._send_release(address, server_id, reply.source_mac, mac, client_id)
        self.late_acks_released += 1

    def _frame(self, *, xid: int, mac: str, options: list[Any], ciaddr: str = "0.0.0.0") -> bytes:
        packet = (
            Ether(src=self._ifmac, dst="ff:ff:ff:ff:ff:ff")
            / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67)
            / BOOTP(op=1, xid=xid, flags=_BROADCAST_FLAG, ciaddr=ciaddr, chaddr=_mac_bytes(mac))
            / DHCP(options=[*options, "end"])
        )
        return bytes(packet)

    def _exchange(self, frame: bytes, xid: int, kinds: set[str], *, timeout: float, every: float) -> _Reply | None:
        """Send *frame* every *every* seconds until a reply of *kinds* arrives or *timeout* passes."""
        assert self._sock is not None
        waiter: queue.Queue[_Reply] = queue.Queue()
        with self._lock:
            self._waiters[xid] = waiter
        try:
            deadline = time.monotonic() + timeout
            while not self._stop.is_set() and time.monotonic() < deadline:
                self._sock.send(frame)
                resend = min(deadline, time.monotonic() + every)
                while (left := resend - time.monotonic()) > 0:
                    try:
                        reply = waiter.get(timeout=left)
                    except queue.Empty:
                        break
                    if reply.kind in kinds:
                        return reply
            return None
        finally:
            with self._lock:
                self._waiters.pop(xid, None)

    # -- obtain, renew, release ------------------------------------------------------------------

    def obtain(self, request: LeaseRequest, *, timeout: float) -> Lease:
        """DISCOVER, OFFER, REQUEST, ACK for *request.mac*, within *timeout*."""
        if self._sock is None:
            raise BackendError("the dhcp backend is not started")
        started = time.monotonic()
        xid = random.getrandbits(32)
        client_id = client_id_for(request.service, request.uid)
        common: list[Any] = [("client_id", client_id), ("hostname", wire_hostname(request.service).encode())]
        discover: list[Any] = [("message-type", "discover"), *common, ("param_req_list", _PARAMS)]
        if request.wanted:
            discover.append(("requested_addr", request.wanted))
        offer = self._exchange(
            self._frame(xid=xid, mac=request.mac, options=discover),
            xid,
            {"offer"},
            timeout=timeout,
            every=self.offer_timeout,
        )
        if offer is None:
            raise LeaseTimeoutError(
                f"no DHCPOFFER on {self.interface} within {timeout:g} s (scope exhausted or no server)"
            )
        address = str(offer.packet[BOOTP].yiaddr)
        server_id = _text(_options(offer.packet).get("server_id", ""))
        if request.wanted and address != request.wanted:
            raise AddressTakenError(f"the DHCP server offered {address}, not the requested {request.wanted}")
        options: list[Any] = [
            ("message-type", "request"),
            ("server_id", server_id),
            ("requested_addr", address),
            *common,
            ("param_req_list", _PARAMS),
        ]
        left = timeout - (time.monotonic() - started)
        reply = self._exchange(
            self._frame(xid=xid, mac=request.mac, options=options),
            xid,
            {"ack", "nak"},
            timeout=max(left, 0.5),
            every=self.ack_timeout,
        )
        if reply is None:
            # The server may have granted it and its ACK got lost or is late: release the offer now,
            # and a late ACK of this transaction when it comes.
            with self._lock:
                now = time.monotonic()
                self._abandoned = {x: v for x, v in self._abandoned.items() if v[2] > now}
                self._abandoned[xid] = (request.mac, client_id, now + LATE_ACK_WINDOW)
            self._send_release(address, server_id, offer.source_mac, request.mac, client_id)
            raise LeaseTimeoutError(f"no DHCPACK for {address} on {self.interface} within {timeout:g} s")
        if reply.kind == "nak":
            raise NoAddressError(
                f"the DHCP server refused {address}: {_text(_options(reply.packet).get('error_message', 'DHCPNAK'))}"
            )
        base = Lease(
            id=request.id,
            service=request.service,
            uid=request.uid,
            ip=address,
            mac=request.mac,
            client_id=client_id.hex(),
        )
        lease = self._bound(base, reply)
        self._keep(lease)
        log.info(
            "DHCP lease %s for %s (mac %s) from %s, %s s",
            address,
            request.service,
            request.mac,
            server_id,
            _lease_seconds(lease),
        )
        return lease

    def _bound(self, lease: Lease, reply: _Reply) -> Lease:
        """*lease* as granted by the ACK *reply* (times from now)."""
        opts = _options(reply.packet)
        now = time.time()
        seconds = int(opts.get("lease_time", _INFINITE))
        if seconds == _INFINITE:
            renew = rebind = expires = None
        else:
            t1 = float(opts.get("renewal_time", seconds * 0.5))
            t2 = float(opts.get("rebinding_time", seconds * 0.875))
            renew, rebind, expires = self._deadlines(now, seconds, t1, t2)
        return attrs.evolve(
            lease,
            ip=str(reply.packet[BOOTP].yiaddr),
            server_id=_text(opts.get("server_id", lease.server_id)),
            server_mac=reply.source_mac,
            netmask=_text(opts.get("subnet_mask", "")),
            routers=_addresses(opts.get("router")),
            dns=_addresses(opts.get("name_server")),
            interface=self.interface,
            bound=now,
            renew=renew,
            rebind=rebind,
            expires=expires,
            lost=False,
        )

    def _ask(self, lease: Lease, *, rebinding: bool) -> Lease | str | None:
        xid = random.getrandbits(32)
        options: list[Any] = [("message-type", "request"), ("requested_addr", lease.ip)]
        if not rebinding:
            options.append(("server_id", lease.server_id))  # renewing: ask the server that granted it
        options += [
            ("client_id", bytes.fromhex(lease.client_id)),
            ("hostname", wire_hostname(lease.service).encode()),
            ("param_req_list", _PARAMS),
        ]
        # ciaddr stays 0 and the request is broadcast: see the module docstring.
        reply = self._exchange(
            self._frame(xid=xid, mac=lease.mac, options=options),
            xid,
            {"ack", "nak"},
            timeout=self.ack_timeout,
            every=self.ack_timeout,
        )
        if reply is None:
            return None
        if reply.kind == "ack" and str(reply.packet[BOOTP].yiaddr) == lease.ip:
            return self._bound(lease, reply)
        return "DHCPNAK" if reply.kind == "nak" else "another address"

    def release(self, lease: Lease) -> None:
        """Forget the lease and send DHCPRELEASE to its server (no reply comes; best effort)."""
        current = self._forget(lease)
        if current.lost or not current.server_id:
            return
        self._send_release(
            current.ip, current.server_id, current.server_mac, current.mac, bytes.fromhex(current.client_id)
        )

    def _send_release(self, ip: str, server_id: str, server_mac: str, mac: str, client_id: bytes) -> None:
        """DHCPRELEASE of *ip* (chaddr *mac*), unicast to the server; no reply comes."""
        if self._sock is None or not server_id:
            return
        packet = (
            Ether(src=self._ifmac, dst=server_mac or "ff:ff:ff:ff:ff:ff")
            / IP(src=ip, dst=server_id)
            / UDP(sport=68, dport=67)
            / BOOTP(op=1, xid=random.getrandbits(32), ciaddr=ip, chaddr=_mac_bytes(mac))
            / DHCP(options=[("message-type", "release"), ("server_id", server_id), ("client_id", client_id), "end"])
        )
        try:
            self._sock.send(bytes(packet))
        except OSError as exc:
            log.warning("DHCPRELEASE %s (mac %s) not sent: %s", ip, mac, exc)
            return
        log.info("DHCPRELEASE %s (mac %s) to %s", ip, mac, server_id)


def _lease_seconds(lease: Lease) -> str:
    return "infinite" if lease.expires is None else f"{lease.expires - lease.bound:.0f}"
