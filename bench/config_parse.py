"""Benchmark ``parse_config`` on large configs: time per pool count, and how it grows.

Three families of configs, each at 10, 100, 1 000 and 10 000 pools (issues 11 and 12):

- ``ipv4``: every pool one unaligned 200-address IPv4 range (``10.x.y.3-10.x.y.202``,
  10 CIDRs each, each pool in its own /24);
- ``ipv6``: every pool one unaligned IPv6 range spanning 98 CIDRs
  (``fd00:0:N::1 - fd00:0:N::3:ffff:ffff:fffe``);
- ``resources``: the ``ipv4`` pools as ``IPAddressPool`` resources, each selected by its own
  advertisement through a label selector (a YAML stream of 2n documents).

Before issue 11 the overlap check compared every CIDR with every other: 100 IPv6 ranges took
32 to 52 s, 1 000 IPv4 pools 31 s. Now it sorts once and sweeps. The ratio column divides each
time by the previous one; n log n growth from n to 10n is a ratio of 10 log(10n)/log(n) (13 to 20
here), quadratic growth 100. Times are processor time of this process, best of three (one run at
10 000 pools), so that other load on a shared machine does not count; wall-clock time is printed
beside. Targets, checked from 1 000 pools on (exit status 1 when missed): no growth ratio above
1.5 times the n log n ratio; 10 000 IPv4 pools under 2 s. 10 000 IPv6 pools are 980 000 CIDRs,
each a netaddr object: their target is the growth alone. Writes JSON under bench/results/.

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


def resource_pools(n: int) -> str:
    """*n* IPAddressPools (as ``ipv4``), each selected by its own advertisement by label, as a YAML stream."""
    docs = []
    for i in range(n):
        base = f"10.{i // 256 % 256}.{i % 256}"
        kind = "L2Advertisement" if i % 2 else "BGPAdvertisement"
        docs += [
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n"
            f"metadata: {{name: p{i}, namespace: metallb-system, labels: {{pool: p{i}}}}}\n"
            f"spec: {{addresses: [{base}.3-{base}.202]}}\n",
            f"apiVersion: metallb.io/v1beta1\nkind: {kind}\nmetadata: {{name: a{i}, namespace: metallb-system}}\n"
            f"spec: {{ipAddressPoolSelectors: [{{matchLabels: {{pool: p{i}}}}}]}}\n",
        ]
    return "---\n".join(docs)


FAMILIES: dict[str, Callable[[int], str]] = {"ipv4": ipv4_pools, "ipv6": ipv6_pools, "resources": resource_pools}


def cidrs_of(text: str) -> int:
    """How many CIDRs the first range of *text* expands to."""
    first = text.split("addresses: [", 1)[1].split("]", 1)[0]
    start, end = first.split("-")
    return len(netaddr.iprange_to_cidrs(start, end))


def best_of(runs: int, text: str) -> tuple[float, float]:
    """The best processor time and the best wall-clock time of *runs* parses."""
    pm = default_plugin_manager()
    cpu = wall = math.inf
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        parse_config(text, plugin_manager=pm)
        cpu = min(cpu, time.process_time() - started_cpu)
        wall = min(wall, time.perf_counter() - started)
    return cpu, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="up to 1 000 pools (CI)")
    args = parser.parse_args()
    sizes = [10, 100, 1000] if args.quick else [10, 100, 1000, 10_000]
    results: dict[str, object] = {"sizes": sizes, "families": {}}
    failures = []
    print(
        f"{'family':9} {'pools':>6} {'CIDRs':>8} {'YAML KB':>8} {'cpu s':>8} {'wall s':>8} {'ratio':>7} {'n log n':>8}"
    )
    for family, build in FAMILIES.items():
        rows = []
        previous: tuple[int, float] | None = None
        for n in sizes:
            text = build(n)
            seconds, wall = best_of(3 if n <= 1000 else 1, text)
            cidrs = n * cidrs_of(text)
            ratio = expected = None
            if previous is not None:
                p_n, p_s = previous
                ratio = seconds / p_s
                expected = (n * math.log(n)) / (p_n * math.log(p_n))
                # Small sizes are dominated by fixed costs: judge growth from 1 000 pools on.
                if p_n >= 1000 and ratio > 1.5 * expected:
                    failures.append(f"{family}: {p_n} -> {n} pools grew {ratio:.1f}x (n log n: {expected:.1f}x)")
            if family == "ipv4" and n == 10_000 and seconds >= 2.0:
                failures.append(f"{family}: {n} pools took {seconds:.2f} s (target < 2 s)")
            previous = (n, seconds)
            rows.append(
                {"pools": n, "cidrs": cidrs, "bytes": len(text), "cpu_s": round(seconds, 4), "wall_s": round(wall, 4),
                 "ratio": ratio}
            )  # fmt: skip
            print(
                f"{family:9} {n:6} {cidrs:8} {len(text) / 1024:8.1f} {seconds:8.3f} {wall:8.3f} "
                f"{'' if ratio is None else f'{ratio:6.1f}x'} {'' if expected is None else f'{expected:7.1f}x'}",
                flush=True,
            )
        results["families"][family] = rows  # type: ignore[index]
    results["failures"] = failures
    for failure in failures:
        print(f"  MISSED: {failure}")
    if not failures:
        print("  targets met" + ("" if args.quick else ": growth no worse than n log n; 10 000 IPv4 pools under 2 s"))
    out = (
        Path(__file__).resolve().parent / "results" / ("config_parse-quick.json" if args.quick else "config_parse.json")
    )
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
