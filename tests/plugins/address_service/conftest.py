"""Fixtures for ``metallb address-service`` as deployed: a process, hostile clients in processes of their own."""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

COMMAND = (sys.executable, "-m", "metallb.operator")
HOSTILE = Path(__file__).with_name("hostile.py")
ENV = {**os.environ, "PYTHONSAFEPATH": "1"}


@attrs.define
class Server:
    """``metallb address-service`` as a process, and where it listens."""

    proc: subprocess.Popen[str]
    host: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ask(
        self, method: str, path: str, body: bytes | None = None, *, timeout: float = 5.0
    ) -> tuple[int, str | None, bytes]:
        """One request on a new connection: (status, Content-Type, body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type"), resp.read()
        finally:
            conn.close()

    def backlog(self) -> int:
        """Connections waiting in the listening socket's accept queue (``/proc/net/tcp``)."""
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == self.port:  # LISTEN on our port
                return int(fields[4].split(":")[1], 16)
        return 0

    def threads(self) -> int:
        return int(re.search(r"^Threads:\s+(\d+)", Path(f"/proc/{self.proc.pid}/status").read_text(), re.M)[1])

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metric(self, name: str) -> float:
        """The value of one sample of ``/metrics`` (0 when absent)."""
        text = self.ask("GET", "/metrics")[2].decode()
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found[1]) if found else 0.0


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """Where state files go: tmpfs when there is one, so fsync costs no disk wait on a busy machine."""
    path = Path(tempfile.mkdtemp(prefix="as-state-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@attrs.define
class Launcher:
    """Starts ``metallb address-service`` processes with their logs in *folder*; :meth:`stop` kills them all."""

    folder: Path
    started: list[Server] = attrs.field(factory=list)

    def start(self, *args: str, prefix: tuple[str, ...] = (), argv: list[str] | None = None) -> Server:
        """``address-service *args`` (under *prefix*, e.g. ``prlimit``), or *argv* printing ``listening on URL``."""
        log = self.folder / f"server-{len(self.started)}.log"
        command = argv or [*prefix, *COMMAND, "address-service", "--listen", "127.0.0.1:0", *args]
        with open(log, "w") as err:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=ENV)
        assert proc.stdout is not None
        deadline, line = time.monotonic() + 30, ""
        while time.monotonic() < deadline and proc.poll() is None and not line.startswith("listening on"):
            if select.select([proc.stdout], [], [], 0.2)[0]:
                line = proc.stdout.readline()
        found = re.search(r"http://([\d.]+):(\d+)", line)
        if found is None:
            proc.kill()
            raise AssertionError(f"server did not start: {log.read_text()}")
        self.started.append(Server(proc=proc, host=found[1], port=int(found[2]), log=log))
        return self.started[-1]

    def stop(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                server.proc.kill()
            server.proc.wait(timeout=10)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``launch(*args, prefix=(...), argv=None)`` (see :meth:`Launcher.start`); killed at teardown."""
    launcher = Launcher(tmp_path)
    yield launcher.start
    launcher.stop()


@pytest.fixture(scope="module")
def launch_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Like ``launch``, for servers shared by a module's tests (hypothesis runs many examples in one test)."""
    launcher = Launcher(tmp_path_factory.mktemp("servers"))
    yield launcher.start
    launcher.stop()


@attrs.define
class Attack:
    """``hostile.py`` running; :meth:`stop` ends it and returns its statistics."""

    proc: subprocess.Popen[str]

    def stop(self) -> dict[str, object]:
        if self.proc.poll() is not None:
            raise AssertionError("the attacker died")
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        self.proc.wait(timeout=10)
        return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.fixture
def attack() -> Iterator[Callable[..., Attack]]:
    """Factory: ``attack(server, mode, count, rate=200)``; returns once *count* connections are open and accepted."""
    running: list[Attack] = []

    def start(server: Server, mode: str, count: int, rate: float = 200.0) -> Attack:
        proc = subprocess.Popen(
            [sys.executable, str(HOSTILE), mode, server.host, str(server.port), str(count), str(rate)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        running.append(Attack(proc=proc))
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.2)[0] and proc.stdout.readline().strip() == "ready":
                while server.backlog() and time.monotonic() < deadline:
                    time.sleep(0.05)  # the opening burst is accepted: from now on the attack is held
                return running[-1]
            if proc.poll() is not None:
                break
        raise AssertionError("the attack did not get going")

    yield start
    for item in running:
        if item.proc.poll() is None:
            item.proc.kill()
            item.proc.wait(timeout=10)
