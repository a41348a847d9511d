"""The controller with an address-service pool: SIGKILLed at random points, never duplicating, moving or leaking.

Everything is real: the controller and the bundled address service run as
processes, the API is the emulator over HTTP, and the final check compares
the address service's own ``/v1/status`` with every Service's status.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

NS = "metallb-system"
SERVICES = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """The emulator (in this process), the address service and the controller (processes)."""

    def __init__(self, kube, tmp_path) -> None:
        self.kube, self.tmp = kube, tmp_path
        self.as_port = free_port()
        self.kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        self.address_service: subprocess.Popen[bytes] | None = None
        self.controller: subprocess.Popen[bytes] | None = None
        kube.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        config = (
            "address-services:\n- name: leased\n  protocol: layer2\n"
            f"  url: http://127.0.0.1:{self.as_port}/\n  cidrs: [10.20.0.0/20]\n"
        )
        kube.put_object(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config", "namespace": NS},
                "data": {"config": config},
            }
        )

    def start_address_service(self) -> None:
        self.address_service = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "metallb.operator",
                "address-service",
                "--listen",
                f"127.0.0.1:{self.as_port}",
                "--backend",
                "memory",
                "--cidr",
                "10.20.0.0/20",
                "--state-file",
                str(self.tmp / "as-state.json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / "address-service.log", "ab"),
            cwd="/",
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.as_port}/healthz", timeout=1):
                    return
            except OSError:
                assert time.monotonic() < deadline, "address service did not start"
                time.sleep(0.05)

    def stop_address_service(self) -> None:
        assert self.address_service is not None
        self.address_service.terminate()
        self.address_service.wait(10)

    def start_controller(self) -> None:
        self.controller = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "metallb.operator",
                "controller",
                "--kubeconfig",
                str(self.kubeconfig),
                "--namespace",
                NS,
                "--metrics-port",
                "0",
                "--lease-duration",
                "1",
                "--workers",
                "8",
                "--reconcile-interval",
                "2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / "controller.log", "ab"),
            cwd="/",
        )

    def kill_controller(self) -> None:
        assert self.controller is not None
        self.controller.kill()
        self.controller.wait(10)

    def statuses(self) -> dict[str, list[str]]:
        out = {}
        for obj in self.kube.objects("services", "default"):
            ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            out[obj["metadata"]["name"]] = [i["ip"] for i in ingress if i.get("ip")]
        return out

    def leases(self) -> dict[str, str]:
        """Service ("ns/name") -> leased address, as the address service reports it."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.as_port}/v1/status", timeout=5) as answer:
            doc = json.loads(answer.read())
        out: dict[str, str] = {}
        for alloc in doc.get("Allocations") or ():
            assert alloc["Service"] not in out, f"two leases for {alloc['Service']}"
            out[alloc["Service"]] = alloc["Lease"]["FixedAddress"]
        return out

    def close(self) -> None:
        for proc in (self.controller, self.address_service):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture(name="stack")
def _stack(kube, tmp_path):
    stack = Stack(kube, tmp_path)
    stack.start_address_service()
    try:
        yield stack
    finally:
        stack.close()


def service(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
    }


def wait_all(stack: Stack, names: list[str], stall: float, limit: float = 900) -> dict[str, list[str]]:
    """Every Service's status once all have one; fails when none gains an address for *stall* seconds.

    Progress, not a deadline: on a loaded machine the controller is slow but must never get stuck.
    """
    started = last_progress = time.monotonic()
    done = -1
    while True:
        statuses = stack.statuses()
        count = sum(1 for n in names if statuses.get(n))
        if count == len(names):
            return statuses
        now = time.monotonic()
        if count > done:
            done, last_progress = count, now
        if now - last_progress > stall or now - started > limit:
            missing = [n for n in names if not statuses.get(n)]
            log = (stack.tmp / "controller.log").read_text()[-3000:]
            raise AssertionError(
                f"{len(missing)} services without address, none gained one for {now - last_progress:.0f} s, "
                f"e.g. {missing[:5]}\n{log}"
            )
        time.sleep(0.2)


@pytest.mark.slow
class TestChaos:
    def test_sigkill_at_random_points_never_duplicates_moves_or_leaks(self, stack):
        """Four SIGKILLs during 1 000 address-service allocations: every Service ends with a unique, unmoved, leased address."""
        seed = random.randrange(1 << 30)
        rng = random.Random(seed)
        names = [f"s{i:04d}" for i in range(SERVICES)]
        first_seen: dict[str, list[str]] = {}
        moved: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                for name, ips in stack.statuses().items():
                    if ips:
                        if name not in first_seen:
                            first_seen[name] = ips
                        elif first_seen[name] != ips:
                            moved.append(f"{name}: {first_seen[name]} -> {ips}")
                stop.wait(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        stack.start_controller()
        for i, name in enumerate(names):
            stack.kube.put_object(service(name))
            if i % 250 == 249:
                # Kill at a random moment while work is in flight, then restart.
                time.sleep(rng.uniform(0.2, 2.0))
                stack.kill_controller()
                stack.start_controller()
        statuses = wait_all(stack, names, stall=30)
        time.sleep(0.5)
        stop.set()
        watcher.join(5)
        assert not moved, f"addresses moved (seed {seed}): {moved[:5]}"
        addresses = [statuses[n][0] for n in names]
        assert all(len(statuses[n]) == 1 for n in names)
        assert len(set(addresses)) == SERVICES, f"duplicated addresses (seed {seed})"
        # Every lease the address service holds is in exactly one Service's status, and vice versa.
        deadline = time.monotonic() + 15  # the controller's reconciliation releases orphans
        while True:
            leases = stack.leases()
            if leases == {f"default/{n}": statuses[n][0] for n in names}:
                break
            assert time.monotonic() < deadline, (
                f"server and Services disagree (seed {seed}): "
                f"{len(leases)} leases for {SERVICES} services; "
                f"extra: {sorted(set(leases) - {f'default/{n}' for n in names})[:5]}"
            )
            time.sleep(0.5)


class TestAddressServiceOutage:
    def test_down_then_back(self, stack):
        """While the address service is down new Services wait with a clear Warning; when it returns they get addresses."""
        stack.start_controller()
        stack.kube.put_object(service("before"))
        before = wait_all(stack, ["before"], stall=30)["before"]
        stack.stop_address_service()
        stack.kube.put_object(service("during"))
        deadline = time.monotonic() + 30
        while True:
            warnings = [
                e
                for e in stack.kube.objects("events", "default")
                if e["involvedObject"]["name"] == "during" and e["reason"] == "AllocationFailed"
            ]
            if warnings:
                break
            assert time.monotonic() < deadline, "no AllocationFailed event while the address service is down"
            time.sleep(0.2)
        assert f"127.0.0.1:{stack.as_port}" in warnings[0]["message"]
        stack.start_address_service()
        assert wait_all(stack, ["during"], stall=90)["during"]
        assert stack.statuses()["before"] == before

    def test_deleted_while_controller_down_is_released(self, stack):
        """The finalizer makes a Service deleted while the controller is down release its lease on restart."""
        stack.start_controller()
        stack.kube.put_object(service("gone"))
        wait_all(stack, ["gone"], stall=30)
        deadline = time.monotonic() + 10
        while "metallb.io/address-release" not in (
            stack.kube.get("services", "default", "gone")["metadata"].get("finalizers") or ()
        ):
            assert time.monotonic() < deadline, "no finalizer on an address-service Service"
            time.sleep(0.1)
        stack.kill_controller()
        stack.kube.delete_object("services", "default", "gone")
        assert stack.kube.get("services", "default", "gone") is not None  # held by the finalizer
        assert "default/gone" in stack.leases()
        stack.start_controller()
        deadline = time.monotonic() + 30
        while stack.kube.get("services", "default", "gone") is not None or "default/gone" in stack.leases():
            assert time.monotonic() < deadline, "lease not released after restart"
            time.sleep(0.2)
