"""A tiny third-party pool plugin: ``stride-pools`` hand out every Nth address of a CIDR.

It exists to prove that a plugin installed from its own distribution adds a
config section and is allocated from exactly like a built-in one, and adds a
command to ``metallb`` (``metallb stride-preview``).
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence

import netaddr
from metallb.allocator import (
    ConfigError,
    PoolEntry,
    PoolExhaustedError,
    PoolSpec,
    SourceBase,
    hookimpl,
    parse_pool_entry,
)

SECTION = "stride-pools"


def _stride(value: object, where: str) -> int:
    text = "1" if value is None else str(value)
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f'{where}: field "stride": value "{text}": must be a whole number of at least 1')
    return int(text)


class StrideSource(SourceBase):
    """Every ``stride``-th address of the pool's first CIDR."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self._stride = int(spec.options["stride"])  # type: ignore[call-overload]
        self._cidr = spec.cidrs[0]
        self._lock = threading.Lock()
        self._owners: dict[netaddr.IPAddress, set[str]] = {}

    def owns(self, ip: netaddr.IPAddress) -> bool:
        return ip in self._cidr and (int(ip) - self._cidr.first) % self._stride == 0

    def acquire(
        self, owner: str, *, family: int, wanted: netaddr.IPAddress | None = None, uid: str | None = None
    ) -> netaddr.IPAddress:
        with self._lock:
            for value in range(self._cidr.first, self._cidr.last + 1, self._stride):
                ip = netaddr.IPAddress(value, self._cidr.version)
                if (wanted is None or ip == wanted) and ip not in self._owners:
                    self._owners[ip] = {owner}
                    return ip
        raise PoolExhaustedError(f'stride pool "{self.spec.name}" is full')

    def claim(self, owner: str, ip: netaddr.IPAddress) -> None:
        with self._lock:
            self._owners.setdefault(ip, set()).add(owner)

    def release(self, owner: str, ip: netaddr.IPAddress) -> None:
        with self._lock:
            owners = self._owners.get(ip, set())
            owners.discard(owner)
            if not owners:
                self._owners.pop(ip, None)

    def capacity(self) -> int:
        return (self._cidr.size + self._stride - 1) // self._stride


@hookimpl
def metallb_pool_sections() -> Sequence[str]:
    return [SECTION]


@hookimpl
def metallb_parse_pool(entry: PoolEntry) -> PoolSpec | None:
    if entry.section != SECTION:
        return None
    return parse_pool_entry(entry, cidrs_key="cidrs", options={"stride": _stride})


@hookimpl
def metallb_make_source(spec: PoolSpec) -> StrideSource | None:
    return StrideSource(spec) if spec.kind == SECTION else None


def _preview(args: argparse.Namespace) -> int:
    cidr = netaddr.IPNetwork(args.cidr)
    for value in range(cidr.first, cidr.last + 1, args.stride):
        print(netaddr.IPAddress(value, cidr.version))
    return 0


@hookimpl
def metallb_add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stride-preview",
        help="print the addresses a stride pool hands out, in order",
        description="Print the addresses a stride pool of CIDR hands out, first fit first.",
        epilog="examples:\n  metallb stride-preview 192.0.2.0/28 --stride 4\n",
    )
    parser.add_argument("cidr", metavar="CIDR")
    parser.add_argument("--stride", type=int, default=1, help="every Nth address (default: 1)")
    parser.set_defaults(run=_preview)
