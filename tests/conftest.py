"""Fixtures shared by every test folder: network namespaces, plugin managers, fresh virtual environments."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_counter = itertools.count()
ROOT = Path(__file__).resolve().parents[1]


class NetLab:
    """Network namespaces and veth pairs that are removed when the test ends.

    Names carry the test process id, so parallel or crashed runs never clash,
    and nothing is ever created in the root namespace.
    """

    def __init__(self) -> None:
        self.prefix = f"t{os.getpid()}-{next(_counter)}"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def ns(self, name: str) -> str:
        """Create namespace ``<prefix>-<name>`` with lo up and IPv6 DAD off; return its name."""
        full = f"{self.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", full], check=True)
        self.namespaces.append(full)
        self.run(full, "ip link set lo up")
        # DAD off before any interface exists, or link-local addresses stay tentative ~1.3 s.
        self.run(full, "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0")
        return full

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str, *, mac_a: str = "", mac_b: str = "") -> None:
        """Create a veth pair with one end in each namespace, both up."""
        cmd = ["ip", "link", "add", if_a, "netns", ns_a]
        if mac_a:
            cmd += ["address", mac_a]
        cmd += ["type", "veth", "peer", "name", if_b, "netns", ns_b]
        if mac_b:
            cmd += ["address", mac_b]
        subprocess.run(cmd, check=True)
        self.run(ns_a, f"ip link set {if_a} up")
        self.run(ns_b, f"ip link set {if_b} up")

    def run(self, ns: str, cmd: str, *, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside *ns* and return its result (text)."""
        return subprocess.run(
            ["ip", "netns", "exec", ns, "sh", "-c", cmd],
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, ns: str, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a process inside *ns*; it is killed at teardown."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)  # type: ignore[call-overload]
        self.processes.append(proc)
        return proc

    def cleanup(self) -> None:
        """Kill started processes and delete every namespace (and so its interfaces)."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for ns in reversed(self.namespaces):
            # Kill anything still running inside before deleting the namespace.
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(name="netlab")
def _netlab() -> Iterator[NetLab]:
    """A NetLab for one test; requires root and iproute2."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("network namespace tests need root and iproute2 (run .ci/run as root)")
    lab = NetLab()
    try:
        yield lab
    finally:
        lab.cleanup()


class FreshVenv:
    """A new virtual environment with metallb installed from the wheel in dist/, as a user has it.

    Commands run through bash with the environment's ``bin`` first on PATH (as
    after ``activate``), outside the repository, with nothing of ours on
    PYTHONPATH.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH", "VIRTUAL_ENV")}
        self.env.update(PATH=f"{path / 'bin'}:{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(path))
        self.env.update(PIP_DISABLE_PIP_VERSION_CHECK="1")

    def run(self, command: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run one shell command line in *cwd*."""
        return subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture(name="fresh_venv")
def _fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    """A fresh venv with metallb from dist/ (built by .ci/install.sh) and its base dependencies from the index."""
    wheels = sorted((ROOT / "dist").glob("metallb-*.whl"))
    if not wheels:
        pytest.fail("no dist/metallb-*.whl: run .ci/install.sh, which builds the wheel the tests run against")
    venv = FreshVenv(tmp_path_factory.mktemp("venv") / "venv")
    created = subprocess.run([sys.executable, "-m", "venv", str(venv.path)], capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    installed = venv.run(f"python -m pip install -q --find-links {ROOT / 'dist'} metallb", cwd=venv.path)
    assert installed.returncode == 0, installed.stderr
    return venv
