"""Address services: allocations per second and latency through the client, and DHCP lease time.

1. The bundled server (memory backend) runs as its own process on 127.0.0.1;
   an :class:`~metallb.allocator.Allocator` with one ``address-services`` pool
   allocates with 1 and with 16 concurrent callers. Each allocation is a real
   ``POST /v1/ip`` over HTTP; addresses are released between rounds.
2. The bundled server with the ``dhcp`` backend leases from a real dnsmasq
   (``--no-ping``) in two network namespaces; the time of each allocation
   through the client (HTTP, DISCOVER/OFFER/REQUEST/ACK) is measured.
   Needs root and dnsmasq; skipped with a note otherwise.

Run::

    /opt/venv/bin/python bench/address_service.py            # full run
    /opt/venv/bin/python bench/address_service.py --quick    # a few seconds, for CI

Results are printed and written as JSON under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from metallb.allocator import Allocator, parse_config

# Documentation ranges only: the memory backend hands out numbers, no traffic goes there.
CIDRS = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``metallb address-service`` as deployed, through the metallb command line."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "metallb.operator",
            "--log-level",
            "warning",
            "address-service",
            "--listen",
            "127.0.0.1:0",
            *args,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, match.group(1)


def allocator(url: str, cidrs: list[str]) -> Allocator:
    text = f"address-services:\n- name: bench\n  url: {url}\n  protocol: layer2\n  cidrs: [{', '.join(cidrs)}]\n"
    return Allocator(config=parse_config(text))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    return {
        "allocations": len(latencies),
        "allocs_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
    }


def run_callers(alloc: Allocator, callers: int, per_caller: int, tag: str) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(caller: int) -> None:
        mine = []
        try:
            for i in range(per_caller):
                started = time.perf_counter()
                alloc.allocate(f"bench/{tag}-{caller}-{i}", pool="bench")
                mine.append(time.perf_counter() - started)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(c,)) for c in range(callers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    for a in alloc.allocations():
        alloc.unassign(a.service)
    return latencies, wall


def bench_http(quick: bool) -> dict[str, object]:
    proc, url = start_server("--backend", "memory", *(f"--cidr={c}" for c in CIDRS))
    results: dict[str, object] = {}
    try:
        alloc = allocator(url, CIDRS)
        run_callers(alloc, 4, 10, "warm")  # connections, imports, /v1/config
        rounds = 1 if quick else 3
        for callers in (1, 16):
            per_caller = (160 if quick else 640) // callers
            latencies: list[float] = []
            wall = 0.0
            for r in range(rounds):
                lat, w = run_callers(alloc, callers, per_caller, f"r{r}")
                latencies += lat
                wall += w
            results[f"callers_{callers}"] = summary(latencies, wall)
        alloc.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return results


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, capture_output=True)


def lease_lines(path: Path) -> int:
    """Leases in dnsmasq's lease file. It is rewritten in place (truncated, then written), so skip a read in between."""
    for _ in range(200):
        text = path.read_text()
        if text.endswith("\n"):
            return len(text.splitlines())
        time.sleep(0.01)
    return 0


def bench_dhcp(quick: bool) -> dict[str, object]:
    if os.geteuid() != 0 or shutil.which("dnsmasq") is None or shutil.which("ip") is None:
        return {"skipped": "needs root, iproute2 and dnsmasq (dnsmasq-base)"}
    prefix = f"bas{os.getpid()}"
    srv, cli = f"{prefix}-srv", f"{prefix}-cli"
    work = Path(tempfile.mkdtemp(prefix="bench-as-"))
    count = 10 if quick else 40
    dnsmasq = server = None
    try:
        for ns in (srv, cli):
            sh(f"ip netns add {ns} && ip -n {ns} link set lo up")
        sh(f"ip link add c0 netns {cli} type veth peer name n0 netns {srv}")
        sh(f"ip -n {srv} addr add 192.0.2.2/24 dev n0 && ip -n {srv} link set n0 up && ip -n {cli} link set c0 up")
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", srv, "dnsmasq", "--keep-in-foreground", "--port=0", "--no-resolv", "--no-hosts",
             "--user=root", "--no-ping", "--dhcp-authoritative", "--interface=n0", "--bind-interfaces",
             "--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,2m", f"--dhcp-leasefile={work}/leases",
             f"--pid-file={work}/pid", "--log-facility=/dev/null"],
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while not (work / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        server, url = start_server(
            "--backend", "dhcp", "--interface", "c0", "--netns", cli, "--derive-macs", "--cidr", "192.0.2.0/24"
        )
        alloc = allocator(url, ["192.0.2.0/24"])
        alloc.allocate("bench/warm", pool="bench")
        alloc.unassign("bench/warm")
        latencies = []
        for i in range(count):
            started = time.perf_counter()
            alloc.allocate(f"bench/dhcp-{i}", pool="bench")
            latencies.append(time.perf_counter() - started)
        leased = lease_lines(work / "leases")
        for a in alloc.allocations():
            alloc.unassign(a.service)
        alloc.close()
        return {
            "leases": count,
            "in_dnsmasq_lease_file": leased,
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
            "max_ms": round(max(latencies) * 1000, 2),
        }
    finally:
        for proc in (server, dnsmasq):
            if proc is not None:
                proc.kill()
                proc.wait(timeout=5)
        for ns in (srv, cli):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for CI (a few seconds)")
    args = parser.parse_args()
    results = {"http_memory_backend": bench_http(args.quick), "dhcp_dnsmasq": bench_dhcp(args.quick)}
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    text = json.dumps(results, indent=2)
    print(text)
    out = Path(__file__).parent / "results" / ("address_service-quick.json" if args.quick else "address_service.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
