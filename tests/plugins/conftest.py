"""Fixtures for the address-service tests: real servers on 127.0.0.1, and dnsmasq in namespaces.

``LegacyServer`` answers exactly as DHCPManager (kramergroup/dhcpmanager
22441f2b) does: every handler answers 200, capitalised keys outside the IP
endpoints, no ``/v1/config`` (the router's 404), a "timeout" answer after its
request timeout, and a non-idempotent POST. Faults are queued per request.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from metallb.allocator import Allocator, Config, parse_config
from metallb.allocator.testing import wait_for
from metallb.plugins.address_service.http import HttpServer, make_http_server
from metallb.plugins.address_service.memory import MemoryBackend
from metallb.plugins.address_service.service import AddressService
from metallb.plugins.address_service.standin import DhcpManagerStandIn
from prometheus_client import CollectorRegistry

CIDR = "192.0.2.0/24"


# -- DHCPManager stand-in ------------------------------------------------------------------------

#: DHCPManager's API as implemented (see ``metallb.plugins.address_service.standin``).
LegacyServer = DhcpManagerStandIn
#: The original's timing at 1/100: a 3 s bind takes 30 ms, its 10 s POST wait 100 ms.
TIME_SCALE = 0.01


@pytest.fixture
def legacy() -> Iterator[LegacyServer]:
    """A DHCPManager stand-in with /v1/status."""
    server = LegacyServer()
    yield server
    server.close()


@pytest.fixture
def make_legacy() -> Iterator[Callable[..., LegacyServer]]:
    """Factory: ``make_legacy(cidr=..., has_status=..., timing="original", time_scale=...)``; closed at teardown."""
    made: list[LegacyServer] = []

    def make(**kwargs: Any) -> LegacyServer:
        made.append(LegacyServer(**kwargs))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def original() -> Iterator[LegacyServer]:
    """A DHCPManager stand-in with the original's timing at :data:`TIME_SCALE` (3 s binds take 30 ms)."""
    server = LegacyServer(timing="original", time_scale=TIME_SCALE)
    yield server
    server.close()


@pytest.fixture
def legacy_no_status() -> Iterator[LegacyServer]:
    """A DHCPManager stand-in without /v1/status (404), like a server that never had it."""
    server = LegacyServer(has_status=False)
    yield server
    server.close()


# -- the bundled server, in process --------------------------------------------------------------


@attrs.define
class Bundled:
    """The bundled address service (memory backend) on 127.0.0.1."""

    service: AddressService
    httpd: HttpServer

    @property
    def url(self) -> str:
        return self.httpd.url

    @property
    def registry(self) -> CollectorRegistry:
        """Where its metrics live."""
        return self.httpd.metrics.registry

    def held(self) -> dict[str, str]:
        """ip -> service of every bound lease."""
        return {lease.ip: lease.service for lease in self.service.leases() if not lease.lost}


@pytest.fixture
def make_bundled() -> Iterator[Callable[..., Bundled]]:
    """Factory: ``make_bundled(cidrs=[...], auth_token=..., tls=(cert, key), **service_options)``."""
    made: list[Bundled] = []

    def make(
        *, cidrs: tuple[str, ...] = (CIDR,), tls: tuple[str, str] | None = None, auth_token: str = "", **options: Any
    ) -> Bundled:
        service = AddressService(backend=MemoryBackend(cidrs=cidrs), **options)
        service.start()
        cert, key = tls or ("", "")
        httpd = make_http_server(service, tls_cert=cert, tls_key=key, auth_token=auth_token)
        httpd.start_thread()
        made.append(Bundled(service=service, httpd=httpd))
        return made[-1]

    yield make
    for bundled in made:
        bundled.httpd.shutdown()
        bundled.httpd.server_close()
        bundled.service.close()


@pytest.fixture
def bundled(make_bundled: Callable[..., Bundled]) -> Bundled:
    """The bundled server with the memory backend over 192.0.2.0/24."""
    return make_bundled()


# -- allocators ------------------------------------------------------------------------------------


def pool_yaml(name: str, url: str, *, cidrs: str = CIDR, extra: str = "") -> str:
    """One ``address-services`` entry."""
    return f"- name: {name}\n  url: {url}\n  protocol: layer2\n  cidrs: [{cidrs}]\n" + "".join(
        f"  {line}\n" for line in extra.splitlines()
    )


def with_options(config: Config, **options: Any) -> Config:
    """*config* with programmatic options (``timeout``, ``backoff`` ...) added to every address-service pool."""
    pools = {
        name: attrs.evolve(spec, options={**spec.options, **options}) if spec.kind == "address-services" else spec
        for name, spec in config.pools.items()
    }
    return Config(pools=pools, peers=config.peers, communities=config.communities, sections=config.sections)


@pytest.fixture
def make_allocator() -> Iterator[Callable[..., Allocator]]:
    """Factory: ``make_allocator(yaml_text, **programmatic_options)``; closed at teardown."""
    made: list[Allocator] = []

    def make(text: str, **options: Any) -> Allocator:
        config = parse_config(text)
        made.append(Allocator(config=with_options(config, **{"backoff": 0.05, **options})))
        return made[-1]

    yield make
    for alloc in made:
        alloc.close()


def held_by(alloc: Allocator, pool: str) -> dict[str, str]:
    """ip -> service for what *alloc* holds in *pool* (one service per address here)."""
    return {str(ip): a.service for a in alloc.allocations() if a.pool == pool for ip in a.ips}


# -- the bundled server as a process ------------------------------------------------------------------


#: ``metallb address-service`` as deployed: through the ``metallb`` command line.
COMMAND = (sys.executable, "-m", "metallb.operator")


@attrs.define
class ServerProcess:
    """``metallb address-service`` (a process) with its URL."""

    proc: subprocess.Popen[str]
    url: str
    log: Path


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``start(*args, options=(...))`` runs ``metallb *options address-service *args``; waits for its readiness line; killed at teardown."""
    started: list[ServerProcess] = []

    def start(*args: str, options: tuple[str, ...] = (), timeout: float = 20.0) -> ServerProcess:
        log = tmp_path / f"server-{len(started)}.log"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [*COMMAND, *options, "address-service", "--listen", "127.0.0.1:0", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, "PYTHONSAFEPATH": "1"},
            )
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                line = proc.stdout.readline()
                if line.startswith("listening on"):
                    break
        match = re.search(r"(https?://\S+)", line)
        if match is None:
            proc.kill()
            raise AssertionError(f"server did not start: {log.read_text()}")
        started.append(ServerProcess(proc=proc, url=match.group(1), log=log))
        return started[-1]

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(timeout=10)


#: dnsmasq's DHCPv6 range in the lab.
V6_RANGE = ("2001:db8:1::100", "2001:db8:1::1ff")


# -- dnsmasq in a namespace -----------------------------------------------------------------------------


def read_leases(path: Path, *, settle: float = 0.25, timeout: float = 10.0) -> dict[str, tuple[int, str, str, str]]:
    """ip -> (expiry, mac, hostname, client-id) from a dnsmasq lease file, never from half a rewrite.

    DHCPv6 leases come as ip -> (expiry, IAID, hostname, client DUID).

    dnsmasq rewrites the file in place: it truncates it, then writes every
    lease in one go. A read in between sees an empty (or, with a large file,
    unfinished) file. So a read counts only when the file did not change
    while it was read and ends with a complete line; an empty file counts
    once it has stayed empty for *settle* seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            before = path.stat()
            text = path.read_bytes()
            after = path.stat()
        except FileNotFoundError:
            return {}
        unchanged = (before.st_ino, before.st_size, before.st_mtime_ns) == (
            after.st_ino,
            after.st_size,
            after.st_mtime_ns,
        )
        whole = text.endswith(b"\n") or (not text and time.time() - after.st_mtime >= settle)
        if unchanged and len(text) == after.st_size and whole:
            break
        assert time.monotonic() < deadline, f"{path} stayed half-written for {timeout} s"
        time.sleep(0.01)
    out = {}
    for line in text.decode().splitlines():
        parts = line.split()
        if len(parts) >= 5:
            out[parts[2]] = (int(parts[0]), parts[1], parts[3], parts[4])
    return out


@attrs.define
class DhcpLab:
    """Namespace ``srv`` runs dnsmasq on n0 (192.0.2.2); the address service uses c0 in namespace ``cli``."""

    lab: Any
    server_ns: str
    client_ns: str
    leasefile: Path
    workdir: Path
    dnsmasq: subprocess.Popen[bytes] | None = None

    def start_dnsmasq(
        self, first: str = "192.0.2.50", last: str = "192.0.2.59", *, v6: tuple[str, str] = V6_RANGE, lease: str = "2m"
    ) -> None:
        pidfile = self.workdir / "dnsmasq.pid"
        pidfile.unlink(missing_ok=True)
        self.dnsmasq = self.lab.popen(
            self.server_ns,
            [
                "dnsmasq",
                "--keep-in-foreground",
                f"--log-facility={self.workdir}/dnsmasq.log",
                "--log-dhcp",
                "--port=0",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                "--no-ping",
                "--dhcp-authoritative",
                "--interface=n0",
                "--bind-interfaces",
                f"--dhcp-range={first},{last},255.255.255.0,{lease}",
                f"--dhcp-range={v6[0]},{v6[1]},64,{lease}",
                f"--dhcp-leasefile={self.leasefile}",
                f"--pid-file={pidfile}",
            ],
        )
        deadline = time.monotonic() + 5
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pidfile.exists(), "dnsmasq did not start"

    def stop_dnsmasq(self) -> None:
        assert self.dnsmasq is not None
        self.dnsmasq.terminate()
        self.dnsmasq.wait(timeout=5)

    def leases(self) -> dict[str, tuple[int, str, str, str]]:
        """ip -> (expiry, mac, hostname, client-id) from dnsmasq's lease file (see :func:`read_leases`)."""
        return read_leases(self.leasefile)

    def holding(self, *ips: str, timeout: float = 5.0) -> dict[str, tuple[int, str, str, str]]:
        """:meth:`leases` once it lists every one of *ips*.

        dnsmasq sends the ACK (or REPLY) before it rewrites its lease file, so a
        lease the client was just given may not be listed yet.
        """

        def listed() -> dict[str, tuple[int, str, str, str]] | None:
            leases = self.leases()
            return leases if set(ips) <= set(leases) else None

        return wait_for(listed, timeout, f"dnsmasq to list {', '.join(ips)}")

    def expiry(self, ip: str) -> int:
        """The expiry dnsmasq lists for *ip*, 0 while it lists none (between an ACK and the file's rewrite)."""
        entry = self.leases().get(ip)
        return entry[0] if entry else 0


@pytest.fixture
def dhcp_lab(netlab: Any, tmp_path: Path) -> DhcpLab:
    """Two namespaces joined by a veth, dnsmasq serving 192.0.2.50-59 and 2001:db8:1::100-1ff (2 min, --no-ping)."""
    server_ns = netlab.ns("srv")
    client_ns = netlab.ns("cli")
    netlab.veth(client_ns, "c0", server_ns, "n0", mac_a="02:00:00:00:00:c0", mac_b="02:00:00:00:00:02")
    netlab.run(server_ns, "ip addr add 192.0.2.2/24 dev n0 && ip addr add 2001:db8:1::2/64 dev n0 nodad")
    lab = DhcpLab(lab=netlab, server_ns=server_ns, client_ns=client_ns, leasefile=tmp_path / "leases", workdir=tmp_path)
    lab.start_dnsmasq()
    return lab


def server_held(url: str) -> dict[str, str]:
    """ip -> service of every bound lease, as the server's own GET /v1/status reports it."""
    import httpx

    data = httpx.get(f"{url}/v1/status", timeout=5).json()
    out = {}
    for item in data["Allocations"] or ():
        if item.get("Lost") or not item.get("Lease"):
            continue
        name, _, namespace = item["Hostname"].partition(".")
        out[item["Lease"]["FixedAddress"]] = f"{namespace}/{name}"
    return out


@attrs.frozen
class Helpers:
    """Plain helper functions, as a fixture (test modules cannot import each other or conftest)."""

    pool_yaml: Callable[..., str] = pool_yaml
    held_by: Callable[[Allocator, str], dict[str, str]] = held_by
    wait_for: Callable[..., Any] = wait_for
    with_options: Callable[..., Config] = with_options
    server_held: Callable[[str], dict[str, str]] = server_held
    read_leases: Callable[..., dict[str, tuple[int, str, str, str]]] = read_leases


@pytest.fixture
def helpers() -> Helpers:
    """``pool_yaml``, ``held_by``, ``wait_for``, ``with_options``, ``server_held``, ``read_leases``."""
    return Helpers()


class DropProxy:
    """A TCP proxy on 127.0.0.1; after ``drop_next.set()`` it cuts the next answer before it reaches the client."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition("//")[2].partition(":")
        self.target = (host, int(port))
        self.drop_next = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while data := src.recv(65536):
                if answers and self.drop_next.is_set():
                    self.drop_next.clear()
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


@pytest.fixture
def make_proxy() -> Iterator[Callable[[str], DropProxy]]:
    """Factory: ``make_proxy(url)`` -> a DropProxy in front of *url*."""
    made: list[DropProxy] = []

    def make(url: str) -> DropProxy:
        made.append(DropProxy(url))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()
