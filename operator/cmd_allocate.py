"""Allocate addresses for services from a config, without a cluster (a dry run).

Each SERVICE is ``namespace/name``, optionally followed by ``@pool``,
``=address``, or ``#6`` for IPv6 (``%4,6`` for dual stack). Useful to see
what MetalLB's first-fit rules hand out before deploying a config.
"""

from __future__ import annotations

import argparse
import sys

from metallb.allocator import Allocator, MetalLBError, parse_config
from metallb.operator.cmd_config import read_config_text
from metallb.operator.table import render_table


def run(args: argparse.Namespace) -> int:
    """Allocate in order and print a table of the results."""
    try:
        allocator = Allocator(config=parse_config(read_config_text(args.config)))
    except (MetalLBError, OSError) as exc:
        print(f"{args.config}: invalid: {exc}", file=sys.stderr)
        return 1
    rows, failed, held = [], 0, []
    for text in args.services:
        name, _, families = text.partition("%")
        name, _, family = name.partition("#")
        name, _, address = name.partition("=")
        name, _, pool = name.partition("@")
        try:
            if families:
                ips = allocator.allocate_dual(name, families=[int(f) for f in families.split(",")], pool=pool or None)
            else:
                fam = int(family) if family else None
                ips = (allocator.allocate(name, family=fam, pool=pool or None, ip=address or None),)
            rows.append((name, ", ".join(map(str, ips)), allocator.pool_of(name) or "-", ""))
            held.append(name)
        except (MetalLBError, ValueError, TypeError) as exc:
            failed += 1
            rows.append((name, "<pending>", pool or "-", str(exc)))
    print(render_table(("SERVICE", "ADDRESSES", "POOL", "ERROR"), rows))
    for name in allocator.config.pools:
        stats = allocator.stats(name)
        total = "unknown" if stats.total is None else str(stats.total)
        print(f"pool {name}: {stats.in_use} in use of {total}", file=sys.stderr)
    # A dry run: give every address back (address services and other remote sources included).
    for name in held:
        allocator.unassign(name)
    allocator.close()
    return 1 if failed else 0
