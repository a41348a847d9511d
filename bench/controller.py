"""Benchmark `metallb controller` on N LoadBalancer Services in the Kubernetes API emulator.

The emulator (tests/kube_emulator.py) serves from this process; the controller
runs as its own process, `python -m metallb.operator controller --kubeconfig ...`,
exactly as deployed, so the two do not share an interpreter lock and the
controller's peak RSS and CPU time are its own. The runs:

- baseline: ``--workers 1`` (MetalLB's single worker), N Services to allocate;
- ours: ``--workers 4`` (the default), the same N Services on a fresh emulator;
- restart: a second controller on the state the 4-worker run left (every
  Service allocated): time to ready and to a drained queue, and what it writes;
- the baseline and ours again with a delay on every write request (default
  5 ms, an etcd-backed API server's order of magnitude; the emulator itself
  answers in well under a millisecond), where parallel workers can overlap
  the waits.

Each run reports the time from process start until every Service has an
address in status (the moment the emulator commits the last one), API
requests per Service by verb and resource (the emulator's request log), and
the controller's peak RSS and CPU seconds. The emulator keeps enough watch
history that no watch expires, so relists are the controller's own doing.

    python bench/controller.py            # 10 000 Services
    python bench/controller.py --quick    # 300, for CI (well under 30 s)
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NS = "metallb-system"
CONFIG = """\
address-pools:
- name: bench
  protocol: layer2
  addresses: [10.200.0.0/16]
"""
NAMESPACES = 20  # Services spread over this many namespaces, as in a real cluster


def load_emulator() -> ModuleType:
    """tests/ is no package: import the emulator by path."""
    name = "metallb_bench_kube_emulator"
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "kube_emulator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here while the class is built
    spec.loader.exec_module(module)
    return module


class Progress:
    """Watches the emulator's commits: when the Lease appears and when the last Service gets an address."""

    def __init__(self, emulator: Any, n: int) -> None:
        self.n = n
        self.allocated: set[tuple[str, str]] = set()
        self.done = threading.Event()
        self.t_lease: float | None = None
        self.t_first: float | None = None
        self.t_all: float | None = None
        original = emulator._emit

        def emit(res: Any, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
            original(res, kind, obj, old)
            self._saw(res.plural, res.group, kind, obj)

        emulator._emit = emit  # called with the emulator's lock held: keep this cheap

    def _saw(self, plural: str, group: str, kind: str, obj: dict[str, Any]) -> None:
        now = time.monotonic()
        if plural == "leases" and self.t_lease is None:
            self.t_lease = now
        if plural != "services" or group:
            return
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if kind != "DELETED" and ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
            self.allocated.add(key)
            self.t_first = self.t_first or now
        else:
            self.allocated.discard(key)
        if len(self.allocated) == self.n and self.t_all is None:
            self.t_all = now
            self.done.set()


def populate(emulator: Any, n: int) -> None:
    emulator.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    emulator.put_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "config", "namespace": NS},
            "data": {"config": CONFIG},
        }
    )
    for i in range(n):
        emulator.put_object(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"svc-{i:05d}", "namespace": f"team-{i % NAMESPACES:02d}"},
                "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            }
        )


_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/v1)(?:/namespaces/[^/]+)?/(?P<res>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[a-z]+))?$"
)


def classify(method: str, target: str) -> str:
    """``verb resource[/subresource]`` of one request, in RBAC's words."""
    url = urlsplit(target)
    m = _PATH.match(url.path)
    if m is None:
        return f"{method} {url.path}"
    resource_name = m["res"] + (f"/{m['sub']}" if m["sub"] else "")
    if method == "GET":
        verb = (
            "watch" if parse_qs(url.query).get("watch", [""])[0].lower() == "true" else ("get" if m["name"] else "list")
        )
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method)
    return f"{verb} {resource_name}"


def request_summary(records: list[Any], n: int) -> dict[str, Any]:
    by_kind = collections.Counter(classify(r.method, r.path) for r in records)
    errors = collections.Counter(f"{classify(r.method, r.path)} {r.status}" for r in records if r.status >= 400)
    writes = sum(c for k, c in by_kind.items() if k.split()[0] in ("create", "update", "patch", "delete"))
    return {
        "total": len(records),
        "per_service": len(records) / n,
        "writes_per_service": writes / n,
        "by_kind": dict(by_kind.most_common()),
        "by_kind_per_service": {k: c / n for k, c in by_kind.most_common()},
        "errors": dict(errors),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def updates_total(port: int) -> float:
    _, text = scrape(port, "/metrics")
    found = re.search(r"^metallb_k8s_client_updates_total (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


class ControllerProcess:
    """`metallb controller` as a child process, reaped with os.wait4 for its rusage."""

    def __init__(self, kubeconfig: Path, workdir: Path, workers: int) -> None:
        self.port = free_port()
        cmd = [
            sys.executable, "-m", "metallb.operator", "--log-level", "warning", "controller",
            "--kubeconfig", str(kubeconfig), "--metrics-host", "127.0.0.1", "--metrics-port", str(self.port),
            "--workers", str(workers), "--lease-duration", "15",
        ]  # fmt: skip
        self.log_path = workdir / f"controller-{workers}-{time.monotonic_ns()}.log"
        self.log = self.log_path.open("w")
        self.t_start = time.monotonic()
        # cwd outside the repo: the folders must not shadow the installed package.
        self.proc = subprocess.Popen(cmd, cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT)

    def memory_mib(self, field: str) -> float:
        """VmRSS (now) or VmHWM (peak) of the child, in MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> dict[str, float]:
        """SIGTERM and reap; returns the child's resident memory (now and peak, MiB) and CPU seconds.

        The peak is VmHWM, read before the signal: ru_maxrss would not do, since
        exec carries the high-water mark of the spawning process (this one,
        holding the emulator) over to the child.
        """
        if not self.alive():  # it exited on its own, and poll() reaped it
            self.log.close()
            return {"rss_at_end_mib": 0.0, "peak_rss_mib": 0.0, "cpu_s": 0.0, "exit_code": self.proc.returncode}
        rss, peak = self.memory_mib("VmRSS"), self.memory_mib("VmHWM")
        self.proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.log.close()
        return {
            "rss_at_end_mib": rss,
            "peak_rss_mib": peak,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "exit_code": self.proc.returncode,
        }

    def alive(self) -> bool:
        return self.proc.poll() is None

    def failure(self, what: str) -> SystemExit:
        """Stop the child; an exit carrying *what* and the end of its log."""
        code = self.stop()["exit_code"]
        tail = "".join(self.log_path.read_text().splitlines(keepends=True)[-15:])
        return SystemExit(f"{what} (controller exit code {code}); its log ends:\n{tail}")


def wait_drained(ctl: ControllerProcess, n: int, deadline: float) -> None:
    """Until the controller has processed at least n keys and processed none for half a second."""
    last, since = -1.0, time.monotonic()
    while time.monotonic() < deadline and ctl.alive():
        count = updates_total(ctl.port)
        if count != last:
            last, since = count, time.monotonic()
        elif count >= n and time.monotonic() - since >= 0.5:
            return
        time.sleep(0.1)
    raise ctl.failure(f"the controller did not drain its queue (processed {last:.0f} of {n})")


def add_write_latency(emulator: Any, seconds: float) -> None:
    """Delay every request but reads, in the request's own server thread (others proceed meanwhile)."""
    original = emulator._handle

    def handle(method: str, *args: Any) -> Any:
        if method != "GET":
            time.sleep(seconds)
        return original(method, *args)

    emulator._handle = handle


def allocation_run(
    kube: ModuleType, n: int, workers: int, workdir: Path, timeout: float, write_latency: float = 0.0
) -> tuple[dict[str, Any], Any]:
    """A fresh emulator with n unallocated Services; a controller with *workers*; returns figures and the emulator."""
    emulator = kube.KubeEmulator(history=max(1000, 10 * n))
    emulator.requests = collections.deque()  # unbounded: every request of the run counts
    if write_latency:
        add_write_latency(emulator, write_latency)
    populate(emulator, n)
    progress = Progress(emulator, n)
    emulator.start()
    kubeconfig = emulator.write_kubeconfig(workdir / "kubeconfig")
    self_cpu = resource.getrusage(resource.RUSAGE_SELF)
    ctl = ControllerProcess(kubeconfig, workdir, workers)
    deadline = time.monotonic() + timeout
    while not progress.done.wait(0.5):
        if time.monotonic() > deadline or not ctl.alive():
            emulator.stop()
            raise ctl.failure(f"workers={workers}: only {len(progress.allocated)} of {n} Services allocated")
    wait_drained(ctl, n, time.monotonic() + timeout)
    usage = ctl.stop()
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    records = list(emulator.requests)
    ips = [i["ip"] for s in emulator.objects("services") for i in s["status"]["loadBalancer"].get("ingress") or ()]
    assert len(ips) == n == len(set(ips)), "every Service has exactly one address, none shared"
    assert progress.t_lease is not None and progress.t_all is not None and progress.t_first is not None
    figures = {
        "workers": workers,
        "write_latency_ms": write_latency * 1000,
        "seconds_to_all_allocated": progress.t_all - ctl.t_start,
        "seconds_startup": progress.t_lease - ctl.t_start,  # interpreter, imports, Lease
        "seconds_lease_to_all_allocated": progress.t_all - progress.t_lease,
        "services_per_second_after_lease": n / (progress.t_all - progress.t_lease),
        "requests": request_summary(records, n),
        "emulator_cpu_s": (self_after.ru_utime + self_after.ru_stime) - (self_cpu.ru_utime + self_cpu.ru_stime),
        **usage,
    }
    return figures, emulator


def restart_run(emulator: Any, n: int, workdir: Path, timeout: float) -> dict[str, Any]:
    """A new controller on an emulator whose Services all have addresses."""
    emulator.requests.clear()
    before = {(s["metadata"]["namespace"], s["metadata"]["name"]): s["status"] for s in emulator.objects("services")}
    ctl = ControllerProcess(emulator.write_kubeconfig(workdir / "kubeconfig"), workdir, 4)
    deadline = time.monotonic() + timeout
    while scrape(ctl.port, "/readyz")[0] != 200:
        if time.monotonic() > deadline or not ctl.alive():
            raise ctl.failure("the restarted controller never became ready")
        time.sleep(0.05)
    t_ready = time.monotonic()
    wait_drained(ctl, n, deadline)
    t_drained = time.monotonic()
    usage = ctl.stop()
    after = {(s["metadata"]["namespace"], s["metadata"]["name"]): s["status"] for s in emulator.objects("services")}
    assert before == after, "a restart changed no Service's status"
    return {
        "seconds_to_ready": t_ready - ctl.t_start,
        "seconds_to_drained": t_drained - ctl.t_start,
        "requests": request_summary(list(emulator.requests), n),
        **usage,
    }


def show(label: str, run: dict[str, Any]) -> None:
    req = run["requests"]
    kinds = ", ".join(f"{k} {v:.2f}" for k, v in req["by_kind_per_service"].items() if v >= 0.005)
    timing = (
        f"{run['seconds_to_all_allocated']:6.2f} s to all allocated ({run['seconds_startup']:.2f} s start-up)"
        if "seconds_to_all_allocated" in run
        else f"{run['seconds_to_ready']:6.2f} s to ready, {run['seconds_to_drained']:.2f} s to drained"
    )
    memory = f"RSS peak {run['peak_rss_mib']:.0f} MiB, at end {run['rss_at_end_mib']:.0f} MiB"
    print(f"{label:<10} {timing}; {memory}, CPU {run['cpu_s']:.1f} s")
    print(f"{'':<10} requests/service {req['per_service']:.2f} (writes {req['writes_per_service']:.2f}): {kinds}")
    if req["errors"]:
        print(f"{'':<10} errors: {req['errors']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 Services (CI)")
    parser.add_argument("-n", type=int, help="number of Services (default: 10 000, or 300 with --quick)")
    parser.add_argument(
        "--timeout", type=float, help="seconds per run before giving up (default: 900, 120 with --quick)"
    )
    parser.add_argument("--write-latency-ms", type=float, default=5.0, help="delay per write (default: %(default)s)")
    args = parser.parse_args()
    n = args.n or (300 if args.quick else 10_000)
    args.timeout = args.timeout or (120.0 if args.quick else 900.0)
    kube = load_emulator()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="metallb-bench-") as tmp:
        workdir = Path(tmp)
        print(f"metallb controller, {n} LoadBalancer Services in {NAMESPACES} namespaces, one /16 pool")
        baseline, emulator = allocation_run(kube, n, 1, workdir, args.timeout)
        emulator.stop()
        show("1 worker", baseline)
        ours, emulator = allocation_run(kube, n, 4, workdir, args.timeout)
        show("4 workers", ours)
        restart = restart_run(emulator, n, workdir, args.timeout)
        emulator.stop()
        show("restart", restart)
        latency = args.write_latency_ms / 1000
        print(f"with {args.write_latency_ms:g} ms per write request:")
        slow_baseline, emulator = allocation_run(kube, n, 1, workdir, args.timeout, latency)
        emulator.stop()
        show("1 worker", slow_baseline)
        slow_ours, emulator = allocation_run(kube, n, 4, workdir, args.timeout, latency)
        emulator.stop()
        show("4 workers", slow_ours)
    speedup = baseline["seconds_lease_to_all_allocated"] / ours["seconds_lease_to_all_allocated"]
    slow_speedup = slow_baseline["seconds_lease_to_all_allocated"] / slow_ours["seconds_lease_to_all_allocated"]
    print(
        f"4 workers allocate {speedup:.2f}x as fast as 1 worker (from Lease to last address), "
        f"{slow_speedup:.2f}x with {args.write_latency_ms:g} ms writes"
    )
    results = {
        "services": n,
        "namespaces": NAMESPACES,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "baseline_1_worker": baseline,
        "ours_4_workers": ours,
        "restart": restart,
        "speedup_4_vs_1_workers": speedup,
        "write_latency_ms": args.write_latency_ms,
        "baseline_1_worker_write_latency": slow_baseline,
        "ours_4_workers_write_latency": slow_ours,
        "speedup_4_vs_1_workers_write_latency": slow_speedup,
        "bench_seconds": time.monotonic() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("controller-quick.json" if args.quick else "controller.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)} in {results['bench_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
