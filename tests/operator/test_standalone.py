"""`metallb standalone`: allocation from files, persistence across restarts, hot reload."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from metallb.allocator.testing import wait_for
from metallb.operator.standalone import Standalone

CONFIG = """
address-pools:
- name: main
  protocol: layer2
  addresses: [192.0.2.10-192.0.2.13]
- name: manual
  protocol: layer2
  auto-assign: false
  addresses: [198.51.100.0/30]
"""


def service(name: str, *, port: int = 80, annotations: str = "", extra: str = "") -> str:
    """One Service manifest document."""
    ann = f"\n  annotations: {{{annotations}}}" if annotations else ""
    return (
        f"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default{ann}\n"
        f"spec:\n  type: LoadBalancer\n  ports: [{{port: {port}}}]\n{extra}"
    )


def run_once(tmp: Path, services: str, config: str = CONFIG) -> subprocess.CompletedProcess[str]:
    (tmp / "config.yaml").write_text(config)
    (tmp / "services.yaml").write_text(services)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "metallb.operator",
            "standalone",
            "--once",
            "--node",
            "n1",
            "--config",
            str(tmp / "config.yaml"),
            "--services",
            str(tmp / "services.yaml"),
            "--state",
            str(tmp / "state.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def state(tmp: Path) -> dict[str, list[str]]:
    doc = json.loads((tmp / "state.json").read_text())
    return {k: v["addresses"] for k, v in doc["services"].items()}


class TestOnce:
    def test_allocates_prints_and_persists(self, tmp_path):
        """--once allocates every Service, prints the table and writes the state file."""
        result = run_once(tmp_path, service("a") + service("b", annotations="metallb.io/address-pool: manual"))
        assert result.returncode == 0, result.stderr
        assert "default/a" in result.stdout and "192.0.2.10" in result.stdout
        assert state(tmp_path) == {"default/a": ["192.0.2.10"], "default/b": ["198.51.100.0"]}

    def test_restart_never_moves_an_address(self, tmp_path):
        """After a restart with the services reordered and one added, every address stays."""
        run_once(tmp_path, service("a") + service("b") + service("c"))
        first = state(tmp_path)
        run_once(tmp_path, service("new") + service("c") + service("b") + service("a"))
        second = state(tmp_path)
        for key, ips in first.items():
            assert second[key] == ips
        assert second["default/new"] == ["192.0.2.13"]

    def test_removed_service_frees_its_address(self, tmp_path):
        """A Service removed from the file gives its address back."""
        run_once(tmp_path, service("a") + service("b"))
        run_once(tmp_path, service("b"))
        run_once(tmp_path, service("b") + service("c"))
        assert state(tmp_path) == {"default/b": ["192.0.2.11"], "default/c": ["192.0.2.10"]}

    def test_pending_reason_in_table_and_status(self, tmp_path):
        """An unsatisfiable Service is shown pending with the reason, by standalone and by `metallb status`."""
        services = "".join(service(f"s{i}") for i in range(5))
        result = run_once(tmp_path, services)
        assert result.returncode == 0
        assert "<pending>" in result.stdout and "no available IPs" in result.stdout
        status = subprocess.run(
            [sys.executable, "-m", "metallb.operator", "status", "--state", str(tmp_path / "state.json")],
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
        ).stdout
        assert "default/s4" in status and "no available IPs" in status

    def test_invalid_config_fails_clearly(self, tmp_path):
        """With no valid config at all, standalone exits 1 naming the problem."""
        result = run_once(
            tmp_path, service("a"), config="address-pools:\n- name: x\n  protocol: layer2\n  addresses: [bad]\n"
        )
        assert result.returncode == 1
        assert 'address pool #1 "x"' in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()


class TestRunning:
    @pytest.fixture(name="running")
    def _running(self, tmp_path):
        (tmp_path / "config.yaml").write_text(CONFIG)
        (tmp_path / "services.yaml").write_text(service("a"))
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "metallb.operator",
                "standalone",
                "--no-announce",
                "--node",
                "n1",
                "--poll-interval",
                "0.2",
                "--metrics-port",
                str(port),
                "--config",
                str(tmp_path / "config.yaml"),
                "--services",
                str(tmp_path / "services.yaml"),
                "--state",
                str(tmp_path / "state.json"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: "default/a" in get(base + "/status"), ignore=(OSError,))
            yield tmp_path, base, proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)

    def test_reloads_services_file(self, running):
        """Editing the services file allocates for the new Service without a restart."""
        tmp, base, _ = running
        time.sleep(0.05)
        (tmp / "services.yaml").write_text(service("a") + service("b"))
        os.utime(tmp / "services.yaml", (time.time() + 1, time.time() + 1))
        status = wait_for(lambda: json.loads(get(base + "/status"))["services"].get("default/b"), ignore=(OSError,))
        assert status["addresses"] == ["192.0.2.11"]

    def test_bad_config_is_kept_stale(self, running):
        """A broken config edit keeps the last good config and sets the stale gauge."""
        tmp, base, _ = running
        (tmp / "config.yaml").write_text("address-pools: [oops\n")
        os.utime(tmp / "config.yaml", (time.time() + 1, time.time() + 1))
        wait_for(lambda: "metallb_k8s_client_config_stale_bool 1.0" in get(base + "/metrics"), ignore=(OSError,))
        assert json.loads(get(base + "/status"))["services"]["default/a"]["addresses"] == ["192.0.2.10"]
        metrics = get(base + "/metrics")
        assert 'metallb_allocator_addresses_in_use_total{pool="main"} 1.0' in metrics
        assert 'metallb_allocator_addresses_total{pool="main"} 4.0' in metrics

    def test_sigterm_exits_cleanly(self, running):
        """SIGTERM stops the process with status 0."""
        _, _, proc = running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


class TestRemoteSourceAcrossRuns:
    def test_service_removed_between_runs_is_released_at_the_address_service(self, tmp_path):
        """A Service dropped from the file between two --once runs gives its lease back to the address service."""
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "metallb.operator",
                "address-service",
                "--listen",
                f"127.0.0.1:{port}",
                "--backend",
                "memory",
                "--cidr",
                "10.30.0.0/28",
                "--state-file",
                str(tmp_path / "as.json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
        )
        try:
            wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz"), ignore=(OSError,))
            config = f"address-services:\n- name: leased\n  protocol: layer2\n  url: http://127.0.0.1:{port}\n  cidrs: [10.30.0.0/28]\n"

            def leased() -> set[str]:
                doc = json.loads(get(f"http://127.0.0.1:{port}/v1/status"))
                return {a["Service"] for a in doc.get("Allocations") or ()}

            assert run_once(tmp_path, service("a") + service("b"), config=config).returncode == 0
            assert leased() == {"default/a", "default/b"}
            assert run_once(tmp_path, service("b"), config=config).returncode == 0
            assert leased() == {"default/b"}
            assert set(state(tmp_path)) == {"default/b"}
        finally:
            server.kill()
            server.wait(10)


class TestPendingRetries:
    def test_pending_services_retried_after_1_then_2_seconds(self, tmp_path, caplog):
        """A Service pending on an unreachable address service is retried 1 s, then 2 s after each failed pass."""
        caplog.set_level(logging.INFO, logger="metallb.operator.standalone")
        (tmp_path / "config.yaml").write_text(
            f"address-services:\n- name: down\n  protocol: layer2\n  url: http://127.0.0.1:{free_port()}\n"
            "  cidrs: [10.30.0.0/28]\n"
        )
        (tmp_path / "services.yaml").write_text(service("a"))
        app = Standalone(
            config_path=str(tmp_path / "config.yaml"),
            services_path=str(tmp_path / "services.yaml"),
            node="n1",
            state_path=None,
            announce=False,
        )
        app.changed()
        app.sync()
        assert app.retry
        stop = threading.Event()
        thread = threading.Thread(target=app.follow, args=(stop,), kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            wait_for(lambda: caplog.text.count("retrying pending services") >= 2, timeout=20)
        finally:
            stop.set()
            thread.join(20)
            app.close()
        # Each pause runs from the end of a pass (its AllocationFailed line) to the next retry.
        ours = [r for r in caplog.records if r.name == "metallb.operator.standalone"]
        ends = [r.created for r in ours if "AllocationFailed" in r.getMessage()]
        starts = [r.created for r in ours if r.getMessage() == "retrying pending services"]
        assert [round(start - end) for end, start in zip(ends, starts[:2], strict=False)] == [1, 2]


RESOURCES = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: main}
spec:
  addresses: [192.0.2.10-192.0.2.13]
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: quiet}
spec:
  addresses: [198.51.100.0/30]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2}
spec:
  ipAddressPools: [main]
"""


class TestResourceConfig:
    def test_once_reads_resource_files(self, tmp_path):
        """--config takes MetalLB's resources as well as the ConfigMap format."""
        result = run_once(
            tmp_path, service("a") + service("b", annotations="metallb.io/address-pool: quiet"), RESOURCES
        )
        assert result.returncode == 0, result.stderr
        assert state(tmp_path) == {"default/a": ["192.0.2.10"], "default/b": ["198.51.100.0"]}

    def test_pool_no_advertisement_selects_is_not_announced(self, tmp_path):
        """A Service of a pool no advertisement selects gets its address, and the table says it is not announced."""
        (tmp_path / "config.yaml").write_text(RESOURCES.replace("ipAddressPools: [main]", "ipAddressPools: [nothing]"))
        (tmp_path / "services.yaml").write_text(service("a"))
        app = Standalone(
            config_path=str(tmp_path / "config.yaml"),
            services_path=str(tmp_path / "services.yaml"),
            node="n1",
            state_path=str(tmp_path / "state.json"),
        )
        try:
            (row,) = app.sync()
        finally:
            app.close()
        assert row.addresses == ("192.0.2.10",)
        assert row.announced == 'not announced: no advertisement selects pool "main"'
        assert json.loads((tmp_path / "state.json").read_text())["services"]["default/a"]["announced"] == row.announced
