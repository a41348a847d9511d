"""Allocate addresses for services from a config, without a cluster (a dry run).

Each SERVICE is ``namespace/name``, optionally followed by ``@pool``,
``=address``, or ``#6`` for IPv6 (``%4,6`` for dual stack). Useful to see
what MetalLB's first-fit rules hand out before deploying a config. Prints a
table and each pool's use; exit status 1 (and one line on standard error)
when the config is invalid or a service got no address.
"""

from __future__ import annotations

import argparse
import sys

import netaddr
from metallb.allocator import Allocator, MetalLBError, parse_config
from metallb.allocator.yamlload import shown
from metallb.operator.cmd_config import read_config_text, reason, shown_path
from metallb.operator.table import render_table


def run(args: argparse.Namespace) -> int:
    """Allocate in order and print a table of the results."""
    try:
        allocator = Allocator(config=parse_config(read_config_text(args.config)))
    except MetalLBError as exc:
        print(f"{shown_path(args.config)}: invalid: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{shown_path(args.config)}: cannot read: {reason(exc)}", file=sys.stderr)
        return 1
    rows, failed, held = [], 0, []
    for text in args.services:
        name, _, families = text.partition("%")
        name, _, family = name.partition("#")
        name, _, address = name.partition("=")
        name, _, pool = name.partition("@")
        try:
            if not name:
                raise ValueError(f"{text!r}: no service name: write namespace/name")
            if families:
                ips = allocator.allocate_dual(name, families=[int(f) for f in families.split(",")], pool=pool or None)
            else:
                fam = int(family) if family else None
                ips = (allocator.allocate(name, family=fam, pool=pool or None, ip=address or None),)
            rows.append((shown(name), ", ".join(map(str, ips)), shown(allocator.pool_of(name) or "-"), ""))
            held.append(name)
        except (MetalLBError, ValueError, TypeError, netaddr.AddrFormatError) as exc:
            failed += 1
            rows.append((shown(name), "<pending>", shown(pool or "-"), shown(str(exc), limit=200)))
    print(render_table(("SERVICE", "ADDRESSES", "POOL", "ERROR"), rows))
    for name in allocator.config.pools:
        stats = allocator.stats(name)
        total = "unknown" if stats.total is None else str(stats.total)
        print(f"pool {shown(name)}: {stats.in_use} in use of {total}")
    # A dry run: give every address back (address services and other remote sources included).
    for name in held:
        allocator.unassign(name)
    allocator.close()
    if failed:
        print(f"metallb allocate: {failed} of {len(args.services)} got no address (see ERROR)", file=sys.stderr)
    return 1 if failed else 0
