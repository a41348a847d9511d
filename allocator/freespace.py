"""Free-space index for first-fit allocation in O(log n).

A pool's CIDRs of one family are laid end to end in configuration order as a
line of *ranks* 0..size-1, so "first fit in CIDR order, ascending addresses" is
"lowest free rank". Free ranks are kept as disjoint intervals in a sorted map
(start -> end): a fresh /64 is one interval, and the map only grows with
fragmentation, never with pool size.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import netaddr
from sortedcontainers import SortedDict

__all__ = ["FreeSpace", "RankSpace"]


class RankSpace:
    """Maps addresses of one family's CIDRs to ranks and back."""

    def __init__(self, cidrs: Sequence[netaddr.IPNetwork]) -> None:
        self.cidrs = tuple(cidrs)
        self.offsets: list[int] = []  # rank of each CIDR's first address
        total = 0
        for cidr in self.cidrs:
            self.offsets.append(total)
            total += cidr.size
        self.size = total
        # CIDRs never overlap, so sorting them by first address allows bisecting.
        order = sorted(range(len(self.cidrs)), key=lambda i: self.cidrs[i].first)
        self._by_first = [self.cidrs[i].first for i in order]
        self._order = order

    def rank(self, value: int) -> int | None:
        """Rank of the address with integer *value*, or None outside the CIDRs."""
        pos = bisect.bisect_right(self._by_first, value) - 1
        if pos < 0:
            return None
        i = self._order[pos]
        cidr = self.cidrs[i]
        if value > cidr.last:
            return None
        return int(self.offsets[i] + value - cidr.first)

    def value(self, rank: int) -> int:
        """Integer value of the address at *rank*."""
        i = bisect.bisect_right(self.offsets, rank) - 1
        return int(self.cidrs[i].first + rank - self.offsets[i])


class FreeSpace:
    """Free ranks of one RankSpace, as sorted disjoint intervals.

    Args:
        size: number of ranks.
        skip: ranks that may never be handed out (``avoid-buggy-ips``); they
            are dropped lazily from interval starts, so the cost stays O(log n).
    """

    def __init__(self, size: int, *, skip: Callable[[int], bool] | None = None) -> None:
        self._free: SortedDict = SortedDict()
        if size:
            self._free[0] = size - 1
        self._skip = skip

    def lowest(self) -> int | None:
        """The lowest free rank that is not skipped, or None when full."""
        free = self._free
        while free:
            start, end = free.peekitem(0)
            if self._skip is None or not self._skip(start):
                return int(start)
            # Skipped ranks are never free: trim them off the interval for good.
            del free[start]
            if start < end:
                free[start + 1] = end
        return None

    def take(self, rank: int) -> bool:
        """Mark *rank* used; False if it was not free."""
        free = self._free
        i = free.bisect_right(rank) - 1
        if i < 0:
            return False
        start, end = free.peekitem(i)
        if end < rank:
            return False
        del free[start]
        if start < rank:
            free[start] = rank - 1
        if rank < end:
            free[rank + 1] = end
        return True

    def give(self, rank: int) -> None:
        """Mark *rank* free again (merging with free neighbours). Idempotent."""
        free = self._free
        i = free.bisect_right(rank) - 1
        start, end = rank, rank
        if i >= 0:
            left_start, left_end = free.peekitem(i)
            if left_end >= rank:
                return  # already free
            if left_end == rank - 1:
                start = left_start
                del free[left_start]
        right_end = free.get(rank + 1)
        if right_end is not None:
            end = right_end
            del free[rank + 1]
        free[start] = end

    def __len__(self) -> int:
        """Number of free intervals (a measure of fragmentation)."""
        return len(self._free)
