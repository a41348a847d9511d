"""Static pools: the ``address-pools`` section and the ``IPAddressPool`` kind, MetalLB's own pools.

Addresses are handed out first fit (CIDRs in configuration order, ascending
addresses, network and broadcast addresses included) from a free-space index,
so each allocation costs O(log n) whatever the pool size, /64 included.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import netaddr
from metallb.allocator import (
    AddressInUseError,
    AddressNotAllowedError,
    PoolEntry,
    PoolExhaustedError,
    PoolResource,
    PoolResourceKind,
    PoolSpec,
    SourceBase,
    hookimpl,
)
from metallb.allocator.config import parse_pool_entry
from metallb.allocator.freespace import FreeSpace, RankSpace
from metallb.allocator.model import buggy_count, is_buggy
from metallb.allocator.resources import address_texts, parse_pool_resource, pool_resource

SECTION = "address-pools"
#: The same pools as resources: MetalLB's ``IPAddressPool``.
KIND = PoolResourceKind(kind="IPAddressPool", plural="ipaddresspools", section=SECTION, versions=("v1beta1",))


class StaticSource(SourceBase):
    """A pool of fixed CIDRs, with exact capacity and O(log n) first fit."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._spaces: dict[int, tuple[RankSpace, FreeSpace]] = {}
        for family in (4, 6):
            cidrs = [c for c in spec.cidrs if c.version == family]
            if not cidrs:
                continue
            ranks = RankSpace(cidrs)
            skip = (
                (lambda r, rs=ranks: rs.value(r) & 0xFF in (0, 255)) if spec.avoid_buggy_ips and family == 4 else None
            )
            self._spaces[family] = (ranks, FreeSpace(ranks.size, skip=skip))
        # address -> owners; a str for the usual single owner saves memory.
        self._owners: dict[netaddr.IPAddress, str | set[str]] = {}
        self._capacity: int = sum(c.size - (buggy_count(c) if spec.avoid_buggy_ips else 0) for c in spec.cidrs)

    def __repr__(self) -> str:
        return f"<StaticSource({self.spec.name!r}, cidrs={len(self.spec.cidrs)}, in_use={len(self._owners)})>"

    def _rank(self, ip: netaddr.IPAddress) -> tuple[FreeSpace, int] | None:
        space = self._spaces.get(ip.version)
        if space is None or (self.spec.avoid_buggy_ips and is_buggy(ip)):
            return None
        rank = space[0].rank(int(ip))
        return None if rank is None else (space[1], rank)

    def owns(self, ip: netaddr.IPAddress) -> bool:
        """In a CIDR of the pool and not an avoided buggy address."""
        return self._rank(ip) is not None

    def rank(self, ip: netaddr.IPAddress) -> int | None:
        """Position in first-fit order within the address's family."""
        found = self._rank(ip)
        return None if found is None else found[1]

    def _add_owner(self, ip: netaddr.IPAddress, owner: str) -> None:
        current = self._owners.get(ip)
        if current is None:
            self._owners[ip] = owner
        elif isinstance(current, set):
            current.add(owner)
        elif current != owner:
            self._owners[ip] = {current, owner}

    def acquire(
        self, owner: str, *, family: int, wanted: netaddr.IPAddress | None = None, uid: str | None = None
    ) -> netaddr.IPAddress:
        """Take *wanted*, or the first free address of *family*."""
        with self._lock:
            if wanted is not None:
                found = self._rank(wanted)
                if found is None:
                    raise AddressNotAllowedError(f'"{wanted}" is not allowed in pool "{self.spec.name}"')
                if not found[0].take(found[1]):
                    current = self._owners.get(wanted)
                    if current != owner and not (isinstance(current, set) and owner in current):
                        raise AddressInUseError(f'"{wanted}" is already in use in pool "{self.spec.name}"')
                self._add_owner(wanted, owner)
                return wanted
            space = self._spaces.get(family)
            rank = None if space is None else space[1].lowest()
            if space is None or rank is None:
                raise PoolExhaustedError(
                    f'no available IPs in pool "{self.spec.name}"'
                    + ("" if space else f" (it has no IPv{family} addresses)")
                )
            space[1].take(rank)
            ip = netaddr.IPAddress(space[0].value(rank), family)
            self._owners[ip] = owner
            return ip

    def claim(self, owner: str, ip: netaddr.IPAddress) -> None:
        """Mark *ip* used by *owner* (restart path)."""
        with self._lock:
            found = self._rank(ip)
            if found is None:
                raise AddressNotAllowedError(f'"{ip}" is not allowed in pool "{self.spec.name}"')
            found[0].take(found[1])
            self._add_owner(ip, owner)

    def release(self, owner: str, ip: netaddr.IPAddress) -> None:
        """Drop *owner*; the address is free again when nobody holds it."""
        with self._lock:
            current = self._owners.get(ip)
            if isinstance(current, set):
                current.discard(owner)
                if len(current) > 1:
                    return
                if current:
                    self._owners[ip] = current.pop()
                    return
            elif current != owner:
                return
            del self._owners[ip]
            found = self._rank(ip)
            if found is not None:
                found[0].give(found[1])

    def capacity(self) -> int:
        """Exact: every address of every CIDR, minus avoided buggy ones."""
        return self._capacity

    def peek(self, family: int) -> netaddr.IPAddress | None:
        """The next address first fit would return."""
        with self._lock:
            space = self._spaces.get(family)
            rank = None if space is None else space[1].lowest()
            return None if space is None or rank is None else netaddr.IPAddress(space[0].value(rank), family)


@hookimpl
def metallb_pool_sections() -> Sequence[str]:
    """Static pools live in ``address-pools``."""
    return [SECTION]


@hookimpl
def metallb_parse_pool(entry: PoolEntry) -> PoolSpec | None:
    """``address-pools`` entries: the common keys plus ``addresses``."""
    if entry.section != SECTION:
        return None
    return parse_pool_entry(entry, cidrs_key="addresses")


@hookimpl
def metallb_make_source(spec: PoolSpec) -> StaticSource | None:
    """A StaticSource for ``address-pools`` pools."""
    return StaticSource(spec) if spec.kind == SECTION else None


@hookimpl
def metallb_pool_resource_kinds() -> Sequence[PoolResourceKind]:
    """Static pools are ``IPAddressPool`` resources."""
    return [KIND]


@hookimpl
def metallb_parse_pool_resource(resource: PoolResource) -> PoolSpec | None:
    """``IPAddressPool``: the shared pool fields plus ``addresses``."""
    if resource.kind.kind != KIND.kind:
        return None
    return parse_pool_resource(resource, cidrs_key="addresses")


@hookimpl
def metallb_render_pool_resource(spec: PoolSpec, namespace: str) -> Sequence[dict[str, object]] | None:
    """An ``address-pools`` pool as an ``IPAddressPool`` (ranges written as ranges again)."""
    if spec.kind != SECTION:
        return None
    return [pool_resource(spec, KIND, namespace, {"addresses": address_texts(spec.cidrs)})]
