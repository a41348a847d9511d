"""Conflict probing before a first announcement: RFC 5227 ARP probes for IPv4, duplicate address detection for IPv6.

Before this node answers for an address that none of our speakers announced
before, it asks the link whether somebody already uses it: ARP probes (sender
address 0.0.0.0, so no neighbour cache learns anything) and a DAD Neighbor
Solicitation (source ``::``). A host that owns the address answers the ARP
probe with a reply and the solicitation with a Neighbor Advertisement; the
kernel does both for its own addresses. Frames from this host's own MACs never
count. The probe is quick on purpose (:data:`PROBE_TIME`, below RFC 5227's
seconds): it must not keep a new Service waiting.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterable

import attrs
import netaddr
from metallb.announcers.layer2.netlink import Link, links, matches
from metallb.announcers.layer2.packets import BROADCAST, ETH_P_ARP, ETH_P_IPV6, checksum, mac_text, solicited_node_group

__all__ = ["PROBE_TIME", "Conflict", "arp_probe", "dad_solicitation", "probe"]

#: Seconds a probe listens in all (RFC 5227 takes 1-2 s per probe; we must stay under one second).
PROBE_TIME = 0.8
#: When the probes leave, in seconds from the start: three, as RFC 5227, but closer together.
PROBE_AT = (0.0, 0.2, 0.4)
_PACKET_OUTGOING = 4


@attrs.frozen(kw_only=True)
class Conflict:
    """Another host answered for an address.

    Attributes:
        address: the address.
        mac: the MAC that answered, ``aa:bb:...``.
        interface: where its answer arrived.
    """

    address: netaddr.IPAddress
    mac: str
    interface: str

    def __str__(self) -> str:
        return f"AddressConflict: {self.address} is answered by {self.mac} on {self.interface}"


def arp_probe(mac: bytes, address: netaddr.IPAddress) -> bytes:
    """An RFC 5227 ARP probe from *mac* for *address*: broadcast, sender address 0.0.0.0."""
    return (
        BROADCAST
        + mac
        + struct.pack("!HHHBBH", ETH_P_ARP, 1, 0x0800, 6, 4, 1)
        + mac
        + bytes(4)
        + bytes(6)
        + bytes(address.packed)
    )


def dad_solicitation(mac: bytes, address: netaddr.IPAddress) -> bytes:
    """A duplicate-address-detection Neighbor Solicitation from *mac* for *address* (source ``::``, no options)."""
    target = bytes(address.packed)
    group = solicited_node_group(target)
    body = b"\x87\x00\x00\x00\x00\x00\x00\x00" + target
    csum = checksum(bytes(16) + group + struct.pack("!IxxxB", len(body), 58) + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    ip6 = b"\x60\x00\x00\x00" + struct.pack("!HBB", len(body), 58, 255) + bytes(16) + group
    return b"\x33\x33" + group[12:] + mac + struct.pack("!H", ETH_P_IPV6) + ip6 + body


def _answer(frame: bytes, address: netaddr.IPAddress, own: frozenset[bytes]) -> bytes | None:
    """The MAC of another host claiming *address* in *frame*: its ARP (any opcode) or its Neighbor Advertisement."""
    packed = bytes(address.packed)
    if address.version == 4:
        if len(frame) < 42 or frame[12:14] != b"\x08\x06" or frame[28:32] != packed:
            return None
        mac = frame[22:28]
    else:
        if len(frame) < 78 or frame[12:14] != b"\x86\xdd" or frame[20] != 58 or frame[54] != 136:
            return None
        if frame[62:78] != packed:
            return None
        mac = frame[6:12]
    return None if mac in own else mac


def probe(
    address: netaddr.IPAddress,
    *,
    patterns: tuple[str, ...] = (),
    restrict: tuple[str, ...] = (),
    own_macs: Iterable[bytes] = (),
    duration: float = PROBE_TIME,
) -> Conflict | None:
    """Probe for *address* on every interface that would answer for it; the first other host answering, or None.

    Runs in the calling thread's network namespace and blocks for *duration*
    (less when somebody answers). *patterns* are the pool's interfaces and
    *restrict* the speaker's (empty: any). The MACs of this host's interfaces,
    and *own_macs*, are never a conflict.
    """
    ports: list[tuple[Link, socket.socket]] = []
    current = links()
    own = frozenset(own_macs) | {link.mac for link in current.values()}
    proto = ETH_P_ARP if address.version == 4 else ETH_P_IPV6
    try:
        for link in current.values():
            usable = link.arp if address.version == 4 else link.qualifies  # DAD needs no link-local address
            if not usable or not matches(link.name, restrict) or not matches(link.name, patterns):
                continue
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
            try:
                sock.bind((link.name, proto))
                sock.setblocking(False)
            except OSError:
                sock.close()
                continue  # the link went away meanwhile: nothing to probe there
            ports.append((link, sock))
        if not ports:
            return None
        start = time.monotonic()
        pending = list(PROBE_AT)
        by_fd = {sock.fileno(): (link, sock) for link, sock in ports}
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        while True:
            now = time.monotonic() - start
            while pending and pending[0] <= now:
                pending.pop(0)
                for link, sock in ports:
                    frame = (
                        arp_probe(link.mac, address) if address.version == 4 else dad_solicitation(link.mac, address)
                    )
                    try:
                        sock.send(frame)
                    except OSError:
                        pass  # a link going down is no conflict
            if now >= duration:
                return None
            wait = min([duration - now] + [p - now for p in pending])
            for fd, _ in poller.poll(max(0, wait) * 1000):
                link, sock = by_fd[fd]
                while True:
                    try:
                        frame, where = sock.recvfrom(2048)
                    except (BlockingIOError, OSError):
                        break
                    if where[2] == _PACKET_OUTGOING:
                        continue
                    mac = _answer(frame, address, own)
                    if mac is not None:
                        return Conflict(address=address, mac=mac_text(mac), interface=link.name)
    finally:
        for _, sock in ports:
            sock.close()
