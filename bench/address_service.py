"""Address services: allocations per second and latency through the client, and DHCP lease time.

1. The bundled server (memory backend) runs as its own process on 127.0.0.1;
   an :class:`~metallb.allocator.Allocator` with one ``address-services`` pool
   allocates with 1 and with 16 concurrent callers. Each allocation is a real
   ``POST /v1/ip`` over HTTP; addresses are released between rounds.
2. The bundled server with the ``dhcp`` and ``dhcpv6`` backends leases from a
   real dnsmasq (``--no-ping``) in two network namespaces; the time of each
   allocation through the client (HTTP, then DISCOVER/OFFER/REQUEST/ACK or
   SOLICIT/ADVERTISE/REQUEST/REPLY) is measured, IPv4 and IPv6 interleaved.
   Needs root and dnsmasq; skipped with a note otherwise.
3. Leaks: allocate/release cycles (an ``acquire`` then at once a ``release``)
   against the DHCPManager stand-in in its original-timing mode (serial
   binding, an IP index written 30 ms after the POST's answer, or 100 ms as
   when its controller reaches etcd over a network hop), scaled so a 3 s bind
   takes 30 ms; leaks are the leases the stand-in still holds afterwards.
   ``--client-module FILE`` measures another client (say, main's:
   ``git show main:plugins/address_service/client.py > /tmp/c.py``).
4. Failover: two ``--kube-leases`` replicas against the API emulator
   (tests/kube_emulator.py) and dnsmasq; the leader is SIGKILLed after each
   batch of leases, and the time until the other serves ``/v1/status`` is
   measured (``--lease-duration 2``).

Run::

    /opt/venv/bin/python bench/address_service.py            # full run
    /opt/venv/bin/python bench/address_service.py --quick    # a few seconds, for CI

Results are printed and written as JSON under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
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
from typing import Any

from metallb.allocator import AllocationError, Allocator, parse_config
from metallb.plugins.address_service.standin import DhcpManagerStandIn

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


def _lab(prefix: str, work: Path, dhcp_range: str, v4: str) -> tuple[str, str, subprocess.Popen[bytes]]:
    """Namespaces srv/cli joined by a veth, dnsmasq on n0 with *dhcp_range* and a DHCPv6 range."""
    srv, cli = f"{prefix}-srv", f"{prefix}-cli"
    for ns in (srv, cli):
        sh(f"ip netns add {ns} && ip -n {ns} link set lo up")
        sh(f"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0")
    sh(f"ip link add c0 netns {cli} type veth peer name n0 netns {srv}")
    sh(f"ip -n {srv} addr add {v4} dev n0 && ip -n {srv} addr add 2001:db8:1::2/64 dev n0 nodad")
    sh(f"ip -n {srv} link set n0 up && ip -n {cli} link set c0 up")
    dnsmasq = subprocess.Popen(
        ["ip", "netns", "exec", srv, "dnsmasq", "--keep-in-foreground", "--port=0", "--no-resolv", "--no-hosts",
         "--user=root", "--no-ping", "--dhcp-authoritative", "--interface=n0", "--bind-interfaces",
         f"--dhcp-range={dhcp_range}", "--dhcp-range=2001:db8:1::100,2001:db8:1::ffff,64,10m",
         f"--dhcp-leasefile={work}/leases", f"--pid-file={work}/pid", "--log-facility=/dev/null"],
    )  # fmt: skip
    deadline = time.monotonic() + 5
    while not (work / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return srv, cli, dnsmasq


def _drop_lab(prefix: str, work: Path, *procs: subprocess.Popen[Any] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    for ns in (f"{prefix}-srv", f"{prefix}-cli"):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


def _can_lab() -> str:
    if os.geteuid() != 0 or shutil.which("dnsmasq") is None or shutil.which("ip") is None:
        return "needs root, iproute2 and dnsmasq (dnsmasq-base)"
    return ""


def bench_dhcp(quick: bool) -> dict[str, object]:
    """DHCPv4 and DHCPv6 leases through the client, interleaved in one run against one dnsmasq."""
    if why := _can_lab():
        return {"skipped": why}
    prefix = f"bas{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="bench-as-"))
    count = 10 if quick else 40
    dnsmasq = server = None
    try:
        _, cli, dnsmasq = _lab(prefix, work, "192.0.2.50,192.0.2.99,255.255.255.0,2m", "192.0.2.2/24")
        server, url = start_server(
            "--backend", "dhcp", "--backend", "dhcpv6", "--interface", "c0", "--netns", cli, "--derive-macs",
            "--cidr", "192.0.2.0/24", "--cidr", "2001:db8:1::/64",
        )  # fmt: skip
        alloc = allocator(url, ["192.0.2.0/24", "2001:db8:1::/64"])
        for family in (4, 6):
            alloc.allocate(f"bench/warm{family}", pool="bench", family=family)
        alloc.unassign("bench/warm4")
        alloc.unassign("bench/warm6")
        latencies: dict[int, list[float]] = {4: [], 6: []}
        for i in range(count):
            for family in (4, 6):
                started = time.perf_counter()
                alloc.allocate(f"bench/v{family}-{i}", pool="bench", family=family)
                latencies[family].append(time.perf_counter() - started)
        leased = lease_lines(work / "leases")
        for a in alloc.allocations():
            alloc.unassign(a.service)
        alloc.close()
        out: dict[str, object] = {"leases_per_family": count, "lines_in_dnsmasq_lease_file": leased}
        for family, values in latencies.items():
            out[f"dhcpv{family}"] = {
                "p50_ms": round(percentile(values, 0.5) * 1000, 2),
                "p99_ms": round(percentile(values, 0.99) * 1000, 2),
                "max_ms": round(max(values) * 1000, 2),
            }
        return out
    finally:
        _drop_lab(prefix, work, server, dnsmasq)


def _emulator() -> Any:
    path = Path(__file__).resolve().parents[1] / "tests" / "kube_emulator.py"
    spec = importlib.util.spec_from_file_location("metallb_bench_kube_emulator", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.KubeEmulator


def bench_failover(quick: bool) -> dict[str, object]:
    """Two ``--kube-leases`` replicas against the API emulator and dnsmasq: SIGKILL the leader, time the takeover."""
    if why := _can_lab():
        return {"skipped": why}
    import yaml
    from kubernetes import client

    prefix = f"baf{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="bench-as-ha-"))
    count, rounds = (20, 1) if quick else (100, 3)
    emulator = _emulator()().start()
    procs: list[subprocess.Popen[str]] = []
    dnsmasq = None
    try:
        api = emulator.api_client()
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "metallb-system"}})
        crd = Path(__file__).resolve().parents[1] / "operator" / "deploy" / "address-service" / "metallb.io_addressleases.yaml"
        try:
            client.ApiextensionsV1Api(api).create_custom_resource_definition(yaml.safe_load(crd.read_text()))
        except client.exceptions.ApiException:
            emulator.add_resource("metallb.io", "v1alpha1", "addressleases", "AddressLease")
        kubeconfig = str(emulator.write_kubeconfig(work / "kubeconfig"))
        _, cli, dnsmasq = _lab(prefix, work, "198.18.0.10,198.18.3.250,255.255.252.0,10m", "198.18.0.2/22")
        args = (
            "--backend", "dhcp", "--interface", "c0", "--netns", cli, "--derive-macs", "--cidr", "198.18.0.0/22",
            "--kube-leases", "--kubeconfig", kubeconfig, "--lease-duration", "2",
        )  # fmt: skip
        urls = []
        for n in range(2):
            proc, url = start_server(*args, "--identity", f"r{n}")
            procs.append(proc)
            urls.append(url)
        takeovers: list[float] = []
        made = 0
        for r in range(rounds):
            leader = _wait_leader(urls, 10.0)
            for _ in range(count):
                resp = httpx_post(urls[leader], f"bench/s{made}")
                assert resp == 201, resp
                made += 1
            procs[leader].kill()
            procs[leader].wait(timeout=5)
            killed = time.perf_counter()
            other = 1 - leader
            while time.perf_counter() - killed < 30:
                if _status_ok(urls[other]):
                    break
                time.sleep(0.01)
            takeovers.append(time.perf_counter() - killed)
            leases = len(_allocations(urls[other]))
            assert leases == made, (leases, made)
            proc, url = start_server(*args, "--identity", f"r{leader}-{r}")  # the killed replica comes back
            procs[leader], urls[leader] = proc, url
        return {
            "lease_duration_s": 2,
            "leases_at_kill": [count * (r + 1) for r in range(rounds)],
            "serving_again_s": [round(t, 2) for t in takeovers],
            "max_s": round(max(takeovers), 2),
        }
    finally:
        _drop_lab(prefix, work, dnsmasq, *procs)
        emulator.stop()


def httpx_post(url: str, service: str) -> int:
    import httpx

    return httpx.post(f"{url}/v1/ip", json={"service": service}, timeout=15).status_code


def _status_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/v1/status", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _allocations(url: str) -> list[object]:
    import httpx

    return list(httpx.get(f"{url}/v1/status", timeout=5).json()["Allocations"] or ())


def _wait_leader(urls: list[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n, url in enumerate(urls):
            if _status_ok(url):
                return n
        time.sleep(0.05)
    raise SystemExit("no replica became leader")


def load_client(path: str) -> type:
    """``AddressServiceSource`` from another copy of client.py (the before figure)."""
    spec = importlib.util.spec_from_file_location("metallb_bench_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AddressServiceSource  # type: ignore[no-any-return]


def leak_run(source_class: type, index_delay: float, workers: int, cycles: int) -> dict[str, object]:
    """One scenario: *cycles* acquire-then-release by *workers* threads; what the stand-in holds after leaked."""
    server = DhcpManagerStandIn("10.99.0.0/22", timing="original", time_scale=0.01, index_delay=index_delay)
    text = f"address-services:\n- name: bench\n  url: {server.url}\n  protocol: layer2\n  cidrs: [10.99.0.0/22]\n"
    spec = parse_config(text).pools["bench"]
    # The tests' quicker backoff (0.05 s instead of 0.25 s); the timing of the answers is the original's.
    source = source_class(attrs_evolve(spec, {**spec.options, "backoff": 0.05, "late-lease-poll": 0.1}))
    failures = 0
    lock = threading.Lock()

    def work(worker: int) -> None:
        nonlocal failures
        for n in range(worker, cycles, workers):
            owner = f"bench/s{n}"
            try:
                ip = source.acquire(owner, family=4)
            except AllocationError:
                with lock:
                    failures += 1
                continue
            source.release(owner, ip)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flushed = source.flush(60.0)
    deadline = time.monotonic() + 5
    while not server.idle() and time.monotonic() < deadline:
        time.sleep(0.05)  # the original binds late what timed out
    if hasattr(source, "flush_late"):
        flushed = source.flush_late(30.0) and source.flush(60.0) and flushed
    wall = time.perf_counter() - started
    source.close()
    leaked = len(server.held())
    server.close()
    return {
        "cycles": cycles,
        "leaked": leaked,
        "leaked_pct": round(100.0 * leaked / cycles, 1),
        "failed_allocations": failures,
        "pending_releases_left": not flushed,
        "seconds": round(wall, 1),
    }


def bench_leaks(quick: bool, client_module: str) -> dict[str, object]:
    """Allocate/release cycles against the original's timing, sequential and 8 at a time."""
    from metallb.plugins.address_service.client import AddressServiceSource

    source_class = load_client(client_module) if client_module else AddressServiceSource
    many = 100 if quick else 1000
    results: dict[str, object] = {"client": client_module or "this tree"}
    for index_delay, workers, cycles in ((0.03, 8, many), (0.1, 8, many), (0.03, 1, many // 5)):
        name = f"index_delay_{int(index_delay * 1000)}ms_workers_{workers}"
        results[name] = leak_run(source_class, index_delay, workers, cycles)
    return results


def attrs_evolve(spec: object, options: dict[str, object]) -> object:
    import attrs

    return attrs.evolve(spec, options=options)  # type: ignore[misc]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for CI (a few seconds)")
    parser.add_argument("--client-module", default="", metavar="FILE", help="leaks: measure this client.py instead")
    parser.add_argument("--leaks-only", action="store_true", help="run the leak measurement only")
    args = parser.parse_args()
    logging.getLogger("stamina").setLevel(logging.ERROR)  # one line per retried DELETE otherwise
    results: dict[str, object] = {"leaks_original_timing": bench_leaks(args.quick, args.client_module)}
    if not args.leaks_only:
        results["http_memory_backend"] = bench_http(args.quick)
        results["dhcp_dnsmasq_v4_v6"] = bench_dhcp(args.quick)
        results["ha_failover"] = bench_failover(args.quick)
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    text = json.dumps(results, indent=2)
    print(text)
    name = "address_service" + ("-leaks" if args.leaks_only else "") + ("-quick" if args.quick else "")
    out = Path(__file__).parent / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
