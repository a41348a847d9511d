"""The baseline: MetalLB's allocator algorithm, written straightforwardly in Python.

First fit by walking each CIDR's addresses in ascending order and trying to
assign each one, with per-address state in maps keyed by the address text (as
MetalLB's Go code keys its maps by ``ip.String()``). Kept only to be measured
against; it has no config handling, no threads and no plugins.
"""

from __future__ import annotations

import netaddr


class LinearAllocator:
    """Linear-scan first fit over one pool's CIDRs."""

    def __init__(self, cidrs: list[str]) -> None:
        self.cidrs = [netaddr.IPNetwork(c) for c in cidrs]
        self.services: dict[str, tuple[str, frozenset[tuple[str, int]], str]] = {}
        self.sharing: dict[str, str] = {}  # ip -> sharing key
        self.ports: dict[str, dict[tuple[str, int], str]] = {}  # ip -> port -> service
        self.users: dict[str, set[str]] = {}

    def _can_assign(self, svc: str, ip: str, ports: frozenset[tuple[str, int]], key: str) -> bool:
        users = self.users.get(ip)
        if not users:
            return True
        if not key or self.sharing.get(ip) != key:
            return False
        owners = self.ports.get(ip, {})
        return all(owners.get(p, svc) == svc for p in ports)

    def allocate(self, svc: str, family: int, ports: frozenset[tuple[str, int]] = frozenset(), key: str = "") -> str:
        for cidr in self.cidrs:
            if cidr.version != family:
                continue
            for address in cidr:
                ip = str(address)
                if self._can_assign(svc, ip, ports, key):
                    self.services[svc] = (ip, ports, key)
                    self.users.setdefault(ip, set()).add(svc)
                    self.sharing[ip] = key
                    slots = self.ports.setdefault(ip, {})
                    for p in ports:
                        slots[p] = svc
                    return ip
        raise RuntimeError("no available IPs")

    def unassign(self, svc: str) -> None:
        ip, ports, _ = self.services.pop(svc)
        self.users[ip].discard(svc)
        for p in ports:
            self.ports[ip].pop(p, None)
        if not self.users[ip]:
            del self.users[ip], self.ports[ip], self.sharing[ip]
