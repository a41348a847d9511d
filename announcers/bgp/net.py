"""Local network facts the BGP speaker needs: interface addresses and TCP-MD5.

Addresses are read through an rtnetlink dump (not ``/proc``), so the answer is
that of the calling thread's network namespace, like the session's own socket.
"""

from __future__ import annotations

import socket
import struct

import attrs
import netaddr

__all__ = ["InterfaceAddress", "interface_addresses", "ipv4_for_interface_of", "ipv6_next_hop_for", "set_md5"]

_RTM_NEWADDR, _RTM_GETADDR, _NLMSG_DONE, _NLMSG_ERROR = 20, 22, 3, 2
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFA_ADDRESS, _IFA_LOCAL, _IFA_FLAGS = 1, 2, 8
_IFA_F_DEPRECATED, _IFA_F_TENTATIVE, _IFA_F_DADFAILED = 0x20, 0x40, 0x08
_RT_SCOPE_UNIVERSE = 0
_TCP_MD5SIG = 14


@attrs.frozen(kw_only=True)
class InterfaceAddress:
    """One address of one interface, as the kernel reports it."""

    index: int
    address: netaddr.IPAddress
    prefixlen: int
    scope: int
    flags: int

    @property
    def usable_global(self) -> bool:
        """Global scope and neither tentative, deprecated nor failed DAD."""
        bad = _IFA_F_DEPRECATED | _IFA_F_TENTATIVE | _IFA_F_DADFAILED
        return self.scope == _RT_SCOPE_UNIVERSE and not self.flags & bad


def interface_addresses() -> list[InterfaceAddress]:
    """Every address of every interface in this thread's network namespace, in kernel order."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        req = struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
        hdr = struct.pack("=IHHII", 16 + len(req), _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
        sock.sendall(hdr + req)
        out: list[InterfaceAddress] = []
        while True:
            data = sock.recv(65536)
            pos = 0
            while pos + 16 <= len(data):
                length, mtype = struct.unpack_from("=IH", data, pos)
                if mtype == _NLMSG_DONE:
                    return out
                if mtype == _NLMSG_ERROR:
                    raise OSError("rtnetlink address dump failed")
                if mtype == _RTM_NEWADDR:
                    item = _parse_addr(data[pos + 16 : pos + length])
                    if item is not None:
                        out.append(item)
                pos += (length + 3) & ~3


def _parse_addr(msg: bytes) -> InterfaceAddress | None:
    family, prefixlen, flags, scope, index = struct.unpack_from("=BBBBI", msg)
    attrs_: dict[int, bytes] = {}
    pos = 8
    while pos + 4 <= len(msg):
        alen, atype = struct.unpack_from("=HH", msg, pos)
        if alen < 4:
            break
        attrs_[atype] = msg[pos + 4 : pos + alen]
        pos += (alen + 3) & ~3
    if _IFA_FLAGS in attrs_:
        (flags,) = struct.unpack("=I", attrs_[_IFA_FLAGS])
    # For IPv4, IFA_LOCAL is our address (IFA_ADDRESS is the far end on point-to-point links).
    raw = attrs_.get(_IFA_LOCAL) or attrs_.get(_IFA_ADDRESS)
    if raw is None or family not in (socket.AF_INET, socket.AF_INET6):
        return None
    version = 4 if family == socket.AF_INET else 6
    address = netaddr.IPAddress(int.from_bytes(raw, "big"), version)
    return InterfaceAddress(index=index, address=address, prefixlen=prefixlen, scope=scope, flags=flags)


def _interface_of(local: netaddr.IPAddress, addrs: list[InterfaceAddress]) -> int | None:
    return next((a.index for a in addrs if a.address == local), None)


def ipv6_next_hop_for(local: netaddr.IPAddress) -> netaddr.IPAddress | None:
    """The IPv6 next hop for a session whose local address is *local*.

    An IPv6 session uses its own address; an IPv4 session uses the first usable
    global IPv6 address of the interface that carries it. None when there is none.
    """
    if local.version == 6:
        return local
    addrs = interface_addresses()
    index = _interface_of(local, addrs)
    return next((a.address for a in addrs if a.index == index and a.address.version == 6 and a.usable_global), None)


def ipv4_for_interface_of(local: netaddr.IPAddress) -> netaddr.IPAddress | None:
    """*local* itself if IPv4, else the first IPv4 address on the interface carrying *local*."""
    if local.version == 4:
        return local
    addrs = interface_addresses()
    index = _interface_of(local, addrs)
    return next((a.address for a in addrs if a.index == index and a.address.version == 4), None)


def set_md5(sock: socket.socket, peer: netaddr.IPAddress, password: str) -> None:
    """Sign every segment to *peer* with *password* (RFC 2385, Linux ``TCP_MD5SIG``)."""
    key = password.encode()
    if len(key) > 80:
        raise ValueError("TCP MD5 keys are at most 80 bytes")
    if peer.version == 4:
        addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + peer.packed
    else:
        addr = struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", 0, 0) + peer.packed + struct.pack("=I", 0)
    # struct tcp_md5sig: sockaddr_storage, flags, prefixlen, keylen, ifindex, key[80].
    value = addr.ljust(128, b"\0") + struct.pack("=BBHI", 0, 0, len(key), 0) + key.ljust(80, b"\0")
    sock.setsockopt(socket.IPPROTO_TCP, _TCP_MD5SIG, value)
