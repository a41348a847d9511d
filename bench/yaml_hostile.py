"""Benchmark metallb's YAML loading on hostile input, against plain PyYAML, in one run.

Attack classes of issue 11: alias bombs, deep nesting, 64 KiB of random or dense input, long
scalars. For each input: time and peak memory (tracemalloc, a separate run) of
``metallb.allocator.yamlload.load_yaml`` with its default events (libyaml when PyYAML has
it) and with PyYAML's Python events (the fallback), and of the baseline
``yaml.load(text, Loader=yaml.BaseLoader)``. An alias bomb costs the baseline nothing to
load (its values are shared) but everything to use, so its baseline is load plus one walk of
the value, at small nesting levels only. Target: any 64 KiB document parses or fails in
under 1 s and 100 MB. Writes JSON under bench/results/.

    python bench/yaml_hostile.py            # 64 KiB inputs
    python bench/yaml_hostile.py --quick    # 8 KiB inputs, for CI
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml
from metallb.allocator import yamlload
from metallb.allocator.errors import ConfigError


def alias_bomb(levels: int, width: int = 9) -> str:
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def fill(size: int, unit: str, head: str = "", tail: str = "") -> str:
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


FRAGMENTS = ["- ", "[", "]", "{", "}", ": ", ", ", "&a ", "*a", "!!str ", "! ", "\n", "  ", "? ", "---\n", "'", '"', "|\n", "a", "1", "~", "é"]  # fmt: skip


def cases(size: int, seed: int) -> list[tuple[str, str, str | bytes]]:
    rng = random.Random(seed)
    out: list[tuple[str, str, str | bytes]] = [
        ("alias bomb", "9 levels x 9 aliases (issue 11)", alias_bomb(9)),
        ("deep nesting", "peers: [ x 3000 (issue 11)", "peers: " + "[" * 3000 + "]" * 3000),
        ("deep nesting", f"[ x {size}", "[" * size),
        ("deep nesting", f"'- ' x {size // 2}", "- " * (size // 2) + "x"),
        (
            "deep nesting",
            "block mappings, 120 levels",
            "".join("  " * i + "a:\n" for i in range(120)) + "  " * 120 + "x",
        ),
        ("deep nesting", "repeated [ x 99 + ] x 99", fill(size, "[" * 99 + "]" * 99 + ",", "[", "]")),
        ("dense", "flat flow list a, a, ...", fill(size, "a, ", "[", "]")),
        ("dense", "flat block list", fill(size, "- a\n")),
        (
            "dense",
            "address pools",
            fill(size, "- name: p\n  protocol: layer2\n  addresses: [192.0.2.0/24]\n", "address-pools:\n"),
        ),
        ("random", "random bytes", rng.randbytes(size)),
        (
            "random",
            "random printable ASCII",
            "".join(rng.choice("\n\t !\"#%&'*,-.:;>?@[]abc{|}~012") for _ in range(size)),
        ),
        ("random", "random YAML fragments", "".join(rng.choice(FRAGMENTS) for _ in range(size // 2))[:size]),
        ("long scalar", "plain", "a: " + "x" * size),
        ("long scalar", "double-quoted escapes", 'a: "' + "\\x41" * (size // 4) + '"'),
        ("long scalar", "literal block", "a: |\n" + ("  " + "y" * 70 + "\n") * (size // 73)),
        ("long scalar", "key (over 1024 characters)", "k" * size + ": v"),
        ("long scalar", "anchor name", "a: &" + "n" * size + " x"),
        ("long scalar", "tag", "a: !" + "t" * size + " x"),
    ]
    return out


def walk(value: object) -> int:
    """Nodes in *value*, aliases expanded (what any consumer of the value pays)."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def measure(load: Callable[[str | bytes], object], text: str | bytes) -> dict[str, object]:
    def run() -> str:
        try:
            load(text)
        except ConfigError:
            return "ConfigError"
        except (yaml.YAMLError, RecursionError, ValueError, AttributeError) as exc:
            return type(exc).__name__
        return "value"

    t0 = time.perf_counter()
    verdict = run()
    elapsed = time.perf_counter() - t0
    peak = None
    if verdict != "RecursionError":  # tracing a thousand frames deep makes that run last a minute
        tracemalloc.start()
        run()
        peak = round(tracemalloc.get_traced_memory()[1] / 1e6, 2)
        tracemalloc.stop()
    return {"ms": round(elapsed * 1000, 1), "peak_mb": peak, "verdict": verdict}


def cell(m: dict[str, object]) -> str:
    peak = "  n/a" if m["peak_mb"] is None else f"{m['peak_mb']:5.1f}"
    return f"{m['ms']:7.1f} ms {peak} MB {m['verdict']:>14}"


def ours(parser: str) -> Callable[[str | bytes], object]:
    return lambda text: yamlload._load(
        text, max_nodes=yamlload.MAX_NODES, max_depth=yamlload.MAX_DEPTH, stream=False, parser=parser
    )


def baseline(text: str | bytes) -> object:
    return walk(yaml.load(text, Loader=yaml.BaseLoader))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 KiB inputs (CI)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    size = 8 * 1024 if args.quick else 64 * 1024
    parsers = list(yamlload._LOADERS)
    results: dict[str, object] = {"size": size, "parsers": parsers, "cases": []}
    columns = "".join(f" | {'ours, ' + p + ' events':>32}" for p in parsers)
    print(f"{'class':12} {'input':34} {'bytes':>6}{columns} | {'baseline: PyYAML BaseLoader':>32}")
    worst = {p: {"ms": 0.0, "peak_mb": 0.0} for p in parsers}
    for klass, name, text in cases(size, args.seed):
        row: dict[str, object] = {"class": klass, "input": name, "bytes": len(text)}
        line = f"{klass:12} {name:34} {len(text):6}"
        for p in parsers:
            mine = measure(ours(p), text)
            row[p] = mine
            worst[p]["ms"] = max(worst[p]["ms"], mine["ms"])  # type: ignore[type-var]
            worst[p]["peak_mb"] = max(worst[p]["peak_mb"], mine["peak_mb"] or 0)  # type: ignore[type-var]
            line += " | " + cell(mine)
        if klass == "alias bomb":
            line += " | (small levels below)"
        elif args.quick and name.startswith(("peers: [", "[ x")):
            line += " | (seconds to a RecursionError: full run only)"
        else:
            base = measure(baseline, text)
            row["baseline"] = base
            line += " | " + cell(base)
        results["cases"].append(row)  # type: ignore[attr-defined]
        print(line, flush=True)
    # The baseline's alias bomb grows 9x per level: load and walk it at small levels only.
    bomb_levels = [3, 4] if args.quick else [3, 4, 5, 6]
    results["baseline_alias_bomb"] = {}
    for levels in bomb_levels:
        text = alias_bomb(levels)
        base = measure(baseline, text)
        results["baseline_alias_bomb"][levels] = base  # type: ignore[index]
        print(f"{'alias bomb':12} {f'{levels} levels, baseline only':34} {len(text):6} | {cell(base)}  ({9 ** (levels + 1):,} leaves)")  # fmt: skip
    checks = {}
    for p in parsers:
        checks[f"slowest input, {p} events (target < 1000 ms at {size} bytes)"] = worst[p]["ms"]
        checks[f"largest peak memory, {p} events (target < 100 MB)"] = worst[p]["peak_mb"]
    results["checks"] = checks
    for k, v in checks.items():
        print(f"  {k}: {v}")
    out = (
        Path(__file__).resolve().parent / "results" / ("yaml_hostile-quick.json" if args.quick else "yaml_hostile.json")
    )
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
