"""The ``memory`` backend: addresses from configured CIDRs, held in the server's memory.

For tests and small sites. With the server's ``--state-file`` its leases survive
a restart. Leases never expire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import netaddr
from metallb.plugins.address_service.api import AddressTakenError, Lease, LeaseListener, LeaseRequest, NoAddressError

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Hands out host addresses of *cidrs* (IPv4), next fit, so a freed address rests a while.

    Args:
        cidrs: networks in CIDR notation; network and broadcast addresses of
            blocks larger than /31 are never handed out.
    """

    kind = "memory"
    needs_mac = False
    blocking = False  # no I/O: the HTTP server answers on its event loop (without a state file)

    def __init__(self, *, cidrs: Sequence[str]) -> None:
        if not cidrs:
            raise ValueError("the memory backend needs at least one --cidr")
        # Merged, so overlapping --cidr values cannot count an address twice.
        self._nets = tuple(netaddr.cidr_merge([netaddr.IPNetwork(c).cidr for c in cidrs]))
        for net in self._nets:
            if net.version != 4:
                raise ValueError(f"{net}: the address-service protocol carries IPv4 addresses only")
        self._lock = threading.Lock()
        self._used: set[int] = set()
        self._spans = [self._hosts(n) for n in self._nets]
        self._size = sum(last - first + 1 for first, last in self._spans)
        self._cursor = 0  # position in the concatenated host ranges

    def __repr__(self) -> str:
        return f"<MemoryBackend(cidrs={[str(n) for n in self._nets]}, used={len(self._used)})>"

    @staticmethod
    def _hosts(net: netaddr.IPNetwork) -> tuple[int, int]:
        if net.prefixlen >= 31:
            return net.first, net.last
        return net.first + 1, net.last - 1

    def _at(self, position: int) -> int:
        for first, last in self._spans:
            size = last - first + 1
            if position < size:
                return first + position
            position -= size
        raise IndexError(position)

    def _usable(self, value: int) -> bool:
        return any(first <= value <= last for first, last in self._spans)

    def cidrs(self) -> Sequence[str]:
        """The configured networks."""
        return [str(n) for n in self._nets]

    def start(self, listener: LeaseListener) -> None:
        """Nothing runs in the background: memory leases never change on their own."""

    def obtain(self, request: LeaseRequest, *, timeout: float) -> Lease:
        """Take *request.wanted*, or the next free address after the last one handed out."""
        with self._lock:
            if request.wanted:
                value = int(netaddr.IPAddress(request.wanted))
                if not self._usable(value):
                    raise AddressTakenError(f"{request.wanted} is not a host address of {', '.join(self.cidrs())}")
                if value in self._used:
                    raise AddressTakenError(f"{request.wanted} is already leased")
            else:
                for _ in range(self._size):  # bounded: never spin with the lock held
                    value = self._at(self._cursor)
                    self._cursor = (self._cursor + 1) % self._size
                    if value not in self._used:
                        break
                else:
                    raise NoAddressError(f"all {self._size} addresses of {', '.join(self.cidrs())} are leased")
            self._used.add(value)
        return Lease(
            id=request.id,
            service=request.service,
            uid=request.uid,
            ip=str(netaddr.IPAddress(value, 4)),
            mac=request.mac,
            bound=time.time(),
        )

    def resume(self, lease: Lease) -> None:
        """Mark a lease from the state file as taken again."""
        with self._lock:
            self._used.add(int(netaddr.IPAddress(lease.ip)))

    def release(self, lease: Lease) -> None:
        """Free the address."""
        with self._lock:
            self._used.discard(int(netaddr.IPAddress(lease.ip)))

    def close(self) -> None:
        """Nothing to stop."""
