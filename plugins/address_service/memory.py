"""The ``memory`` backend: addresses from configured CIDRs, held in the server's memory.

For tests and small sites. With the server's ``--state-file`` its leases survive
a restart. Leases never expire. IPv4 and IPv6 networks (the ``family`` extension).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import netaddr
from metallb.plugins.address_service.api import AddressTakenError, Lease, LeaseListener, LeaseRequest, NoAddressError

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Hands out host addresses of *cidrs* (IPv4 and IPv6), next fit per family, so a freed address rests a while.

    Args:
        cidrs: networks in CIDR notation; network and broadcast addresses of
            IPv4 blocks larger than /31, and the subnet-router anycast address
            of IPv6 blocks larger than /127, are never handed out.
    """

    kind = "memory"
    needs_mac = False
    blocking = False  # no I/O: the HTTP server answers on its event loop (without a state file)

    def __init__(self, *, cidrs: Sequence[str]) -> None:
        if not cidrs:
            raise ValueError("the memory backend needs at least one --cidr")
        # Merged, so overlapping --cidr values cannot count an address twice.
        self._nets = tuple(netaddr.cidr_merge([netaddr.IPNetwork(c).cidr for c in cidrs]))
        self.families = tuple(sorted({n.version for n in self._nets}))
        self._lock = threading.Lock()
        self._used: set[netaddr.IPAddress] = set()
        self._spans = {f: [self._hosts(n) for n in self._nets if n.version == f] for f in self.families}
        self._size = {f: sum(last - first + 1 for first, last in spans) for f, spans in self._spans.items()}
        self._cursor = dict.fromkeys(self.families, 0)  # position in the concatenated host ranges

    def __repr__(self) -> str:
        return f"<MemoryBackend(cidrs={[str(n) for n in self._nets]}, used={len(self._used)})>"

    @staticmethod
    def _hosts(net: netaddr.IPNetwork) -> tuple[int, int]:
        if net.version == 6:
            return (net.first, net.last) if net.prefixlen >= 127 else (net.first + 1, net.last)
        if net.prefixlen >= 31:
            return net.first, net.last
        return net.first + 1, net.last - 1

    def _at(self, family: int, position: int) -> int:
        for first, last in self._spans[family]:
            size = last - first + 1
            if position < size:
                return first + position
            position -= size
        raise IndexError(position)

    def _usable(self, ip: netaddr.IPAddress) -> bool:
        return any(first <= int(ip) <= last for first, last in self._spans.get(ip.version, ()))

    def cidrs(self) -> Sequence[str]:
        """The configured networks."""
        return [str(n) for n in self._nets]

    def start(self, listener: LeaseListener) -> None:
        """Nothing runs in the background: memory leases never change on their own."""

    def obtain(self, request: LeaseRequest, *, timeout: float) -> Lease:
        """Take *request.wanted*, or the next free address of the request's family after the last one handed out."""
        family = request.family
        with self._lock:
            if family not in self._spans:
                raise NoAddressError(f"no IPv{family} network among {', '.join(self.cidrs())}")
            if request.wanted:
                ip = netaddr.IPAddress(request.wanted)
                if not self._usable(ip):
                    raise AddressTakenError(f"{request.wanted} is not a host address of {', '.join(self.cidrs())}")
                if ip in self._used:
                    raise AddressTakenError(f"{request.wanted} is already leased")
            else:
                size = self._size[family]
                for _ in range(min(size, len(self._used) + 1)):  # bounded: never spin with the lock held
                    ip = netaddr.IPAddress(self._at(family, self._cursor[family]), family)
                    self._cursor[family] = (self._cursor[family] + 1) % size
                    if ip not in self._used:
                        break
                else:
                    raise NoAddressError(f"all {size} addresses of {', '.join(self.cidrs())} are leased")
            self._used.add(ip)
        return Lease(
            id=request.id, service=request.service, uid=request.uid, ip=str(ip), mac=request.mac, bound=time.time()
        )

    def resume(self, lease: Lease) -> None:
        """Mark a lease from the state file as taken again."""
        with self._lock:
            self._used.add(netaddr.IPAddress(lease.ip))

    def release(self, lease: Lease) -> None:
        """Free the address."""
        with self._lock:
            self._used.discard(netaddr.IPAddress(lease.ip))

    def close(self) -> None:
        """Nothing to stop."""
