"""The interfaces of this network namespace, read from rtnetlink (no /sys, no ip(8)).

rtnetlink answers for the namespace of the socket, so a thread that entered a
namespace with ``setns`` sees that namespace's links; ``/sys/class/net`` would
show the namespace sysfs was mounted in. The same family of sockets delivers
link and address events, which trigger a rescan at once.
"""

from __future__ import annotations

import ctypes
import fnmatch
import os
import socket
import struct
from collections.abc import Iterator

import attrs

__all__ = [
    "Link",
    "enter_netns",
    "event_socket",
    "links",
    "matches",
]

_RTM_GETLINK = 18
_RTM_NEWLINK = 16
_RTM_GETADDR = 22
_RTM_NEWADDR = 20
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_IFLA_ADDRESS = 1
_IFLA_IFNAME = 3
_IFLA_MASTER = 10
_IFA_ADDRESS = 1
_RTMGRP_LINK = 0x1
_RTMGRP_IPV6_IFADDR = 0x100

IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_NOARP = 0x80
IFF_SLAVE = 0x800
_ARPHRD_ETHER = 1
_CLONE_NEWNET = 0x40000000


@attrs.frozen(kw_only=True)
class Link:
    """One network interface as the responder needs it.

    Attributes:
        index: the kernel's ifindex.
        name: the interface name.
        mac: its 6-byte hardware address.
        flags: ``IFF_*`` flags.
        master: ifindex of the bond or bridge it is enslaved to, 0 if none.
        link_local: its first IPv6 link-local address (16 bytes), or None.
    """

    index: int
    name: str
    mac: bytes
    flags: int
    master: int = 0
    link_local: bytes | None = None

    @property
    def qualifies(self) -> bool:
        """Up, Ethernet, not loopback, not enslaved to a bond or bridge, and ARP not off."""
        return (
            bool(self.flags & IFF_UP)
            and len(self.mac) == 6
            and not self.flags & (IFF_LOOPBACK | IFF_NOARP | IFF_SLAVE)
            and self.master == 0
        )

    @property
    def arp(self) -> bool:
        """Whether the interface can answer ARP (it has the BROADCAST flag)."""
        return self.qualifies and bool(self.flags & IFF_BROADCAST)

    @property
    def ndp(self) -> bool:
        """Whether it can answer NDP (it has a link-local address to answer from)."""
        return self.qualifies and self.link_local is not None


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether interface *name* is one of *patterns* (names or shell patterns); empty matches all."""
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _attrs(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("HH", data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def _dump(sock: socket.socket, kind: int, family: int) -> Iterator[tuple[int, bytes]]:
    header = struct.pack("IHHII", 16 + 16, kind, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
    # ifinfomsg and ifaddrmsg both start with the family byte; 16 bytes covers either.
    sock.send(header + struct.pack("B15x", family))
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + 16 <= len(data):
            length, mtype = struct.unpack_from("IH", data, offset)
            if length < 16:
                return
            if mtype == _NLMSG_DONE:
                return
            if mtype == _NLMSG_ERROR:
                raise OSError(-struct.unpack_from("i", data, offset + 16)[0], "rtnetlink dump failed")
            yield mtype, data[offset + 16 : offset + length]
            offset += (length + 3) & ~3


def links() -> dict[int, Link]:
    """Every interface of the calling thread's network namespace, by ifindex."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        found: dict[int, tuple[str, bytes, int, int]] = {}
        for mtype, body in _dump(sock, _RTM_GETLINK, socket.AF_UNSPEC):
            if mtype != _RTM_NEWLINK or len(body) < 16:
                continue
            _family, arphrd, index, flags = struct.unpack_from("BxHiI", body)
            name, mac, master = "", b"", 0
            for kind, value in _attrs(body, 16):
                if kind == _IFLA_IFNAME:
                    name = value.rstrip(b"\0").decode(errors="replace")
                elif kind == _IFLA_ADDRESS and arphrd == _ARPHRD_ETHER:
                    mac = value
                elif kind == _IFLA_MASTER and len(value) == 4:
                    master = struct.unpack("I", value)[0]
            found[index] = (name, mac, flags, master)
        link_local: dict[int, bytes] = {}
        for mtype, body in _dump(sock, _RTM_GETADDR, socket.AF_INET6):
            if mtype != _RTM_NEWADDR or len(body) < 8:
                continue
            index = struct.unpack_from("I", body, 4)[0]
            for kind, value in _attrs(body, 8):
                if kind == _IFA_ADDRESS and len(value) == 16 and value[:2] == b"\xfe\x80":
                    link_local.setdefault(index, value)
    return {
        index: Link(index=index, name=name, mac=mac, flags=flags, master=master, link_local=link_local.get(index))
        for index, (name, mac, flags, master) in found.items()
    }


def event_socket() -> socket.socket:
    """A non-blocking rtnetlink socket that becomes readable when links or IPv6 addresses change."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.bind((0, _RTMGRP_LINK | _RTMGRP_IPV6_IFADDR))
    sock.setblocking(False)
    return sock


def enter_netns(path: str) -> None:
    """Move the calling thread into the network namespace at *path* (``/run/netns/NAME``).

    Only this thread moves: sockets it creates afterwards live in that namespace.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)
