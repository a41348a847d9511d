"""Benchmark ``parse_config`` on large configs: time per pool count, and how it grows.

Two families of configs, each at 10, 100, 1 000 and 10 000 pools (issue 11):

- ``ipv4``: every pool one unaligned 200-address IPv4 range (``10.x.y.3-10.x.y.202``,
  6 CIDRs each, each pool in its own /24);
- ``ipv6``: every pool one unaligned IPv6 range spanning about 100 CIDRs
  (``fd00:0:N::1 - fd00:0:N::3:ffff:ffff:fffe``).

Before issue 11 the overlap check compared every CIDR with every other: 100 IPv6 ranges took
52 s. Now it sorts once and sweeps. The ratio column divides each time by the previous one;
n log n growth from n to 10n is a ratio of about 10 * log(10n)/log(n) (13 to 20 here), quadratic
growth 100. Target: 10 000 pools under 2 s, no ratio above 1.5 x the n log n ratio. The
printed check fails (exit 1) when a target is missed. Writes JSON under bench/results/.

    python bench/config_parse.py            # 10 .. 10 000 pools
    python bench/config_parse.py --quick    # 10 .. 1 000 pools, for CI
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import netaddr
from metallb.allocator import default_plugin_manager, parse_config


def ipv4_pools(n: int) -> str:
    """*n* pools, each one unaligned 200-address IPv4 range in its own /24."""
    lines = ["address-pools:"]
    for i in range(n):
        base = f"10.{i // 256 % 256}.{i % 256}"
        lines += [f"- name: p{i}", "  protocol: layer2", f"  addresses: [{base}.3-{base}.202]"]
    return "\n".join(lines) + "\n"


def ipv6_pools(n: int) -> str:
    """*n* pools, each one unaligned IPv6 range of about 100 CIDRs."""
    lines = ["address-pools:"]
    for i in range(n):
        prefix = f"fd00:{i // 65536:x}:{i % 65536:x}"
        lines += [f"- name: p{i}", "  protocol: bgp", f"  addresses: [{prefix}::1-{prefix}::3:ffff:ffff:fffe]"]
    return "\n".join(lines) + "\n"


FAMILIES: dict[str, Callable[[int], str]] = {"ipv4": ipv4_pools, "ipv6": ipv6_pools}


def cidrs_of(text: str) -> int:
    """How many CIDRs the first range of *text* expands to."""
    first = text.split("addresses: [", 1)[1].split("]", 1)[0]
    start, end = first.split("-")
    return len(netaddr.iprange_to_cidrs(start, end))


def best_of(runs: int, text: str) -> float:
    pm = default_plugin_manager()
    best = math.inf
    for _ in range(runs):
        t0 = time.perf_counter()
        parse_config(text, plugin_manager=pm)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="up to 1 000 pools (CI)")
    args = parser.parse_args()
    sizes = [10, 100, 1000] if args.quick else [10, 100, 1000, 10_000]
    results: dict[str, object] = {"sizes": sizes, "families": {}}
    failures = []
    print(f"{'family':6} {'pools':>6} {'CIDRs':>8} {'YAML KB':>8} {'seconds':>9} {'ratio':>7} {'n log n':>8}")
    for family, build in FAMILIES.items():
        rows = []
        previous: tuple[int, float] | None = None
        for n in sizes:
            text = build(n)
            seconds = best_of(3 if n <= 1000 else 1, text)
            cidrs = n * cidrs_of(text)
            ratio = expected = None
            if previous is not None:
                p_n, p_s = previous
                ratio = seconds / p_s
                expected = (n * math.log(n)) / (p_n * math.log(p_n))
                # Small sizes are noise-dominated (fixed costs): judge growth from 1 000 pools on.
                if p_n >= 1000 and ratio > 1.5 * expected:
                    failures.append(f"{family}: {p_n} -> {n} pools grew {ratio:.1f}x (n log n: {expected:.1f}x)")
            if n == 10_000 and seconds >= 2.0:
                failures.append(f"{family}: {n} pools took {seconds:.2f} s (target < 2 s)")
            previous = (n, seconds)
            rows.append({"pools": n, "cidrs": cidrs, "bytes": len(text), "seconds": round(seconds, 4), "ratio": ratio})
            print(
                f"{family:6} {n:6} {cidrs:8} {len(text) / 1024:8.1f} {seconds:9.4f} "
                f"{'' if ratio is None else f'{ratio:6.1f}x'} {'' if expected is None else f'{expected:7.1f}x'}",
                flush=True,
            )
        results["families"][family] = rows  # type: ignore[index]
    results["failures"] = failures
    for failure in failures:
        print(f"  MISSED: {failure}")
    if not failures:
        print("  targets met: growth no worse than n log n" + ("" if args.quick else "; 10 000 pools under 2 s"))
    out = (
        Path(__file__).resolve().parent / "results" / ("config_parse-quick.json" if args.quick else "config_parse.json")
    )
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
