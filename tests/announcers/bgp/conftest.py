"""BGP test fixtures: a router namespace and a node namespace, real routers, and our speaker.

Topology (documentation ranges only, nothing leaves the namespaces)::

    <prefix>-rtr  r0 192.0.2.1/24 2001:db8:1::1/64  <-veth->  n0 192.0.2.2/24 2001:db8:1::2/64  <prefix>-node

The speaker runs in this process: its loop thread is started while the test
thread is inside the node namespace, so its sockets live there.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import attrs
import netaddr
import pytest
from metallb.allocator.interfaces import AnnouncerSettings
from metallb.allocator.model import (
    BgpAdvertisement,
    Config,
    NodeInfo,
    PeerSpec,
    PoolSpec,
    ServiceView,
)
from metallb.allocator.testing import wait_for
from metallb.announcers.bgp.announcer import BgpAnnouncer
from prometheus_client import CollectorRegistry

RTR4, NODE4 = "192.0.2.1", "192.0.2.2"
RTR6, NODE6 = "2001:db8:1::1", "2001:db8:1::2"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Move the calling thread into network namespace *name*, and back afterwards."""
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{name}") as target:
        if _libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
        try:
            yield
        finally:
            if _libc.setns(home.fileno(), _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back failed")


@attrs.frozen
class RibEntry:
    """A route as a router shows it, normalised across BIRD, GoBGP and FRR."""

    prefix: str
    next_hop: str
    as_path: tuple[int, ...]
    local_pref: int | None
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    stale: bool = False  # kept through a graceful restart, not yet refreshed (GoBGP and FRR say so)


@attrs.define
class Lab:
    """The two namespaces of one test."""

    netlab: Any
    rtr: str
    node: str
    workdir: str

    def run(self, ns: str, cmd: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run *cmd* in namespace *ns*."""
        return self.netlab.run(ns, cmd, check=check)


@pytest.fixture(name="lab")
def _lab(netlab: Any) -> Iterator[Lab]:
    """Router and node namespaces joined by a veth, IPv4 and IPv6 on both ends."""
    rtr, node = netlab.ns("rtr"), netlab.ns("node")
    netlab.veth(rtr, "r0", node, "n0")
    netlab.run(rtr, f"ip addr add {RTR4}/24 dev r0 && ip addr add {RTR6}/64 dev r0 nodad")
    netlab.run(node, f"ip addr add {NODE4}/24 dev n0 && ip addr add {NODE6}/64 dev n0 nodad")
    workdir = tempfile.mkdtemp(prefix="bgp-lab-")
    os.chmod(workdir, 0o777)
    try:
        yield Lab(netlab, rtr, node, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- routers -------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class Router:
    """A BGP daemon in the router namespace, passive, peering with the node at 192.0.2.2.

    Options: *graceful_restart* (helper for our restarts, RFC 4724), *extended_messages*
    (RFC 8654, BIRD only), *kernel* (install the routes it learns in the namespace's
    kernel: BIRD's kernel protocol, FRR's zebra; GoBGP cannot).
    """

    lab: Lab
    asn: int
    peer_asn: int
    hold: int = 9
    password: str = ""
    transport: int = 4  # the IP version of the session
    graceful_restart: bool = False
    extended_messages: bool = False
    kernel: bool = False
    proc: subprocess.Popen[bytes] | None = None
    name: ClassVar[str] = ""

    def start(self) -> Router:
        """Write the config, start the daemon and wait until its CLI answers."""
        self.before_start()
        with open(self.path("log"), "ab") as log:
            self.proc = self.lab.netlab.popen(self.lab.rtr, self.argv(), stdout=subprocess.DEVNULL, stderr=log)
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                with open(self.path("log")) as fh:
                    pytest.fail(f"{self.name} exited with {proc.returncode}: {fh.read()[-2000:]}")
            return self.ready()

        wait_for(up, timeout=15, what=f"{self.name} to answer its CLI")
        return self

    def kill(self) -> None:
        """Kill the daemon abruptly (SIGKILL): no NOTIFICATION reaches the speaker."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=5)

    @property
    def local(self) -> str:
        """The router's session address."""
        return RTR4 if self.transport == 4 else RTR6

    @property
    def node(self) -> str:
        """The node's session address."""
        return NODE4 if self.transport == 4 else NODE6

    def path(self, name: str) -> str:
        return os.path.join(self.lab.workdir, f"{self.name}.{name}")

    def cli(self, cmd: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self.lab.rtr, cmd, check=check)

    def wait_routes(
        self, predicate: Callable[[dict[str, RibEntry]], bool], *, timeout: float = 10
    ) -> dict[str, RibEntry]:
        """Poll both tables until *predicate* holds; return them by prefix."""
        last: dict[str, RibEntry] = {}

        def check() -> bool:
            nonlocal last
            last = {**self.routes(4), **self.routes(6)}
            return predicate(last)

        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: routes never matched; last table: {last}")
            time.sleep(0.1)
        return last

    # Implemented per daemon.
    def before_start(self) -> None:
        """Start helper daemons (FRR's zebra)."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def routes(self, family: int) -> dict[str, RibEntry]:
        raise NotImplementedError


class Bird(Router):
    """BIRD 2, controlled through ``birdc``."""

    name = "bird"

    def argv(self) -> list[str]:
        pw = f'password "{self.password}";' if self.password else ""
        filters = "import all; export none; gateway direct;"
        gr = "graceful restart on;" if self.graceful_restart else ""
        ext = "enable extended messages on;" if self.extended_messages else ""
        kernel = "protocol kernel { ipv4 { export all; }; }\nprotocol kernel { ipv6 { export all; }; }" * self.kernel
        conf = f"""
router id {RTR4};
protocol device {{ }}
{kernel}
protocol bgp speaker {{
  local {self.local} as {self.asn};
  neighbor {self.node} as {self.peer_asn};
  passive on;
  direct;
  hold time {self.hold};
  error wait time 1, 5;
  {pw}
  {gr}
  {ext}
  ipv4 {{ {filters} }};
  ipv6 {{ {filters} }};
}}
"""
        with open(self.path("conf"), "w") as fh:
            fh.write(conf)
        return ["bird", "-f", "-c", self.path("conf"), "-s", self.path("ctl"), "-P", self.path("pid")]

    def ready(self) -> bool:
        return self.cli(f"birdc -s {self.path('ctl')} show status", check=False).returncode == 0

    def routes(self, family: int) -> dict[str, RibEntry]:
        out = self.cli(f"birdc -s {self.path('ctl')} show route all table master{family}").stdout
        entries: dict[str, RibEntry] = {}
        for block in re.split(r"\n(?=\S)", out):
            head = re.match(r"([0-9a-f.:]+/\d+)\s+unicast", block)
            if not head:
                continue
            block = re.sub(r"\n\s+(?=\()", " ", block)  # long community lists wrap onto more lines
            attrs_ = dict(re.findall(r"^\s+BGP\.(\w+): ?(.*)$", block, re.M))
            entries[head.group(1)] = RibEntry(
                prefix=head.group(1),
                next_hop=attrs_["next_hop"].split()[0],
                as_path=tuple(int(a) for a in attrs_.get("as_path", "").split()),
                local_pref=int(attrs_["local_pref"]) if "local_pref" in attrs_ else None,
                communities=tuple(f"{a}:{b}" for a, b in re.findall(r"\((\d+),(\d+)\)", attrs_.get("community", ""))),
                large_communities=tuple(
                    f"{a}:{b}:{c}"
                    for a, b, c in re.findall(r"\((\d+), (\d+), (\d+)\)", attrs_.get("large_community", ""))
                ),
            )
        return entries


class GoBgp(Router):
    """GoBGP, controlled through the ``gobgp`` CLI on the namespace's loopback."""

    name = "gobgp"

    def argv(self) -> list[str]:
        pw = f'    auth-password = "{self.password}"\n' if self.password else ""
        gr, mp_gr = "", ""
        if self.graceful_restart:
            gr = "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 120\n"
            mp_gr = "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n"
        conf = f"""
[global.config]
  as = {self.asn}
  router-id = "{RTR4}"
  local-address-list = ["{self.local}"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{self.node}"
    peer-as = {self.peer_asn}
{pw}  [neighbors.timers.config]
    hold-time = {self.hold}
    keepalive-interval = {max(1, self.hold // 3)}
    idle-hold-time-after-reset = 1
  [neighbors.transport.config]
    passive-mode = true
{gr}  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
{mp_gr}  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
{mp_gr}"""
        with open(self.path("conf"), "w") as fh:
            fh.write(conf)
        return ["gobgpd", "-f", self.path("conf"), "-p", "--api-hosts", "127.0.0.1:50051", "--pprof-disable"]

    def ready(self) -> bool:
        return self.cli("gobgp -u 127.0.0.1 -p 50051 global", check=False).returncode == 0

    def routes(self, family: int) -> dict[str, RibEntry]:
        out = self.cli(f"gobgp -u 127.0.0.1 -p 50051 global rib -a ipv{family} -j").stdout.strip()
        entries: dict[str, RibEntry] = {}
        for prefix, paths in (json.loads(out) if out and out != "null" else {}).items():
            attrs_ = {a["type"]: a for a in paths[0]["attrs"]}
            next_hop = attrs_[14]["nexthop"] if 14 in attrs_ else attrs_[3]["nexthop"]
            as_path = tuple(n for seg in attrs_.get(2, {}).get("as_paths", []) for n in seg["asns"])
            entries[prefix] = RibEntry(
                prefix=prefix,
                next_hop=next_hop,
                as_path=as_path,
                local_pref=attrs_[5]["value"] if 5 in attrs_ else None,
                communities=tuple(f"{c >> 16}:{c & 0xFFFF}" for c in attrs_.get(8, {}).get("communities", [])),
                large_communities=tuple(
                    f"{c['ASN']}:{c['LocalData1']}:{c['LocalData2']}" for c in attrs_.get(32, {}).get("value", [])
                ),
                stale=bool(paths[0].get("stale")),
            )
        return entries


class Frr(Router):
    """FRR's bgpd, controlled through ``vtysh``; with *kernel*, zebra too (else bgpd alone, ``-Z``)."""

    name = "frr"

    def before_start(self) -> None:
        vty = self.path("vty")
        os.makedirs(vty, exist_ok=True)
        os.chmod(vty, 0o777)
        if not self.kernel:
            return
        # zebra has no --skip_runas: it runs as user frr (a member of frrvty), keeping its capabilities.
        with open(self.path("zebra.conf"), "w") as fh:
            fh.write("hostname rtr\n")
        with open(self.path("zebra.log"), "ab") as log:
            zebra = self.lab.netlab.popen(
                self.lab.rtr,
                ["/usr/lib/frr/zebra", "-u", "frr", "-g", "frr", "-P", "0", "--vty_socket", vty,
                 "-z", self.path("zserv.api"), "-f", self.path("zebra.conf"), "-i", self.path("zebra.pid")],
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        wait_for(lambda: zebra.poll() is not None or os.path.exists(self.path("zserv.api")), timeout=10, what="zebra")
        assert zebra.poll() is None, open(self.path("zebra.log")).read()

    def argv(self) -> list[str]:
        vty = self.path("vty")
        n = self.node
        pw = f" neighbor {n} password {self.password}\n" if self.password else ""
        gr = " bgp graceful-restart\n" if self.graceful_restart else ""
        conf = f"""
frr defaults traditional
router bgp {self.asn}
 bgp router-id {RTR4}
 no bgp ebgp-requires-policy
 no bgp network import-check
{gr} neighbor {n} remote-as {self.peer_asn}
 neighbor {n} passive
 neighbor {n} timers {max(1, self.hold // 3)} {self.hold}
{pw} address-family ipv4 unicast
  neighbor {n} activate
 exit-address-family
 address-family ipv6 unicast
  neighbor {n} activate
 exit-address-family
"""
        with open(self.path("conf"), "w") as fh:
            fh.write(conf)
        zebra = ["-z", self.path("zserv.api")] if self.kernel else ["-Z", "-n"]
        return [
            "/usr/lib/frr/bgpd", *zebra, "-S", "-P", "0", "--vty_socket", vty,
            "-f", self.path("conf"), "-i", self.path("pid"),
        ]  # fmt: skip

    def vtysh(self, cmd: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cli(f"vtysh --vty_socket {self.path('vty')} -c '{cmd}'", check=check)

    def ready(self) -> bool:
        return self.vtysh("show bgp summary json", check=False).returncode == 0

    def routes(self, family: int) -> dict[str, RibEntry]:
        table = json.loads(self.vtysh(f"show bgp ipv{family} unicast json").stdout or "{}").get("routes", {})
        entries: dict[str, RibEntry] = {}
        for prefix in table:
            detail = json.loads(self.vtysh(f"show bgp ipv{family} unicast {prefix} json").stdout or "{}")
            if not detail.get("paths"):
                continue  # withdrawn between the two commands
            path = detail["paths"][0]
            nexthops = [n["ip"] for n in path.get("nexthops", []) if n.get("scope", "global") == "global"]
            segments = path.get("aspath", {}).get("segments", [])
            entries[prefix] = RibEntry(
                prefix=prefix,
                next_hop=nexthops[0] if nexthops else "",
                as_path=tuple(n for seg in segments for n in seg.get("list", [])),
                local_pref=path.get("locPrf"),
                # "string" is cut short for long lists; "list" is not.
                communities=tuple(map(str, path.get("community", {}).get("list", ())))
                or tuple(path.get("community", {}).get("string", "").split()),
                large_communities=tuple(path.get("largeCommunity", {}).get("string", "").split()),
                stale=bool(path.get("stale")),
            )
        return entries


ROUTERS: dict[str, type[Router]] = {"bird": Bird, "gobgp": GoBgp, "frr": Frr}


# -- the speaker -----------------------------------------------------------------------------


def peer(asn: int, peer_asn: int, **kwargs: Any) -> PeerSpec:
    """A ``peers`` entry for the router (192.0.2.1 unless given), hold time 9 s unless given."""
    kwargs.setdefault("hold_time", 9)
    kwargs.setdefault("peer_address", netaddr.IPAddress(RTR4))
    return PeerSpec(my_asn=asn, peer_asn=peer_asn, **kwargs)


def bgp_pool(*cidrs: str, advertisements: tuple[BgpAdvertisement, ...] = (), name: str = "bgp") -> PoolSpec:
    """A ``bgp`` pool."""
    return PoolSpec(
        name=name,
        kind="address-pools",
        cidrs=tuple(netaddr.IPNetwork(c) for c in cidrs),
        advertisements=advertisements or (BgpAdvertisement(),),
    )


def service(key: str, *ips: str, pool: PoolSpec) -> ServiceView:
    """A Cluster-policy service with ready endpoints."""
    return ServiceView(key=key, ips=tuple(netaddr.IPAddress(i) for i in ips), pool=pool)


@attrs.define
class Speaker:
    """Our announcer running in the node namespace, with a private metrics registry."""

    announcer: BgpAnnouncer
    registry: CollectorRegistry
    node: NodeInfo

    def configure(self, *peers: PeerSpec, pools: tuple[PoolSpec, ...] = ()) -> None:
        self.announcer.set_config(Config(pools={p.name: p for p in pools}, peers=peers), self.node)

    def state(self, index: int = 0) -> str:
        sessions = self.announcer.sessions()
        return sessions[index].state if len(sessions) > index else "absent"

    def wait_established(self, *, timeout: float = 10) -> None:
        wait_for(lambda: self.state() == "Established", timeout=timeout, what="the session to be Established")

    def metric(self, name: str, peer_label: str = f"{RTR4}:179") -> float | None:
        return self.registry.get_sample_value(name, {"peer": peer_label})

    def metric_labels(self, name: str, peer_label: str = f"{RTR4}:179", **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"peer": peer_label, **labels})


@pytest.fixture(name="make_speaker")
def _make_speaker(lab: Lab) -> Iterator[Callable[..., Speaker]]:
    """Build speakers in the node namespace; each is closed at teardown."""
    made: list[BgpAnnouncer] = []

    def make(
        *,
        connect_timeout: float = 3,
        backoff_cap: float = 2,
        labels: dict[str, str] | None = None,
        notify: Callable[[], None] | None = None,
        **options: Any,
    ) -> Speaker:
        """*options* are BgpAnnouncer's keyword options (flap_interval, end_of_rib_delay ...); *notify* the
        settings' callback."""
        registry = CollectorRegistry()
        settings = AnnouncerSettings(
            node_name="node-a", registry=registry, connect_timeout=connect_timeout, backoff_cap=backoff_cap,
            notify=notify,
        )  # fmt: skip
        with in_netns(lab.node):
            announcer = BgpAnnouncer(settings, **options)
        made.append(announcer)
        return Speaker(announcer, registry, NodeInfo(name="node-a", labels=labels or {}))

    yield make
    for announcer in made:
        announcer.close()


@pytest.fixture(name="make_router")
def _make_router(lab: Lab) -> Callable[..., Router]:
    """Start a router (``bird``, ``gobgp`` or ``frr``) in the router namespace; killed at teardown."""

    def make(kind: str, *, asn: int, peer_asn: int, **options: Any) -> Router:
        """*options*: hold, password, transport, graceful_restart, extended_messages, kernel."""
        return ROUTERS[kind](lab=lab, asn=asn, peer_asn=peer_asn, **options).start()

    return make


# -- a scripted peer, for protocol errors no real router will produce -----------------------------


def peer_open(
    asn: int,
    *,
    hold: int = 9,
    router_id: str = RTR4,
    ipv6: bool = True,
    extended: bool = False,
    graceful: bool = False,
) -> bytes:
    """A peer's OPEN, written out by hand: MP IPv4 (+ IPv6) unicast and 4-octet AS capabilities.

    *extended* adds RFC 8654 extended messages, *graceful* an RFC 4724 capability (helper, 120 s).
    """
    rid = bytes(netaddr.IPAddress(router_id).packed)
    c = bytes.fromhex("01 04 0001 00 01" + (" 01 04 0002 00 01" if ipv6 else "")) + b"\x41\x04" + asn.to_bytes(4, "big")
    c += bytes.fromhex("06 00") * extended + bytes.fromhex("40 02 0078") * graceful
    params = bytes([2, len(c)]) + c
    body = bytes([4]) + (asn if asn <= 0xFFFF else 23456).to_bytes(2, "big") + hold.to_bytes(2, "big")
    body += rid + bytes([len(params)]) + params
    return b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + b"\x01" + body


KEEPALIVE = b"\xff" * 16 + b"\x00\x13\x04"


class PeerConn:
    """One accepted connection of a :class:`FakePeer`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, *, timeout: float = 5) -> tuple[int, bytes] | None:
        """Next message as (type, body); None when the speaker closed the connection."""
        self.sock.settimeout(timeout)
        header = self._exactly(19)
        if header is None:
            return None
        length = int.from_bytes(header[16:18], "big")
        body = self._exactly(length - 19)
        return (header[18], body or b"") if body is not None else None

    def recv_all(self, *, timeout: float = 5) -> list[tuple[int, bytes]]:
        """Every message until the speaker closes the connection."""
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + timeout
        while (msg := self.recv(timeout=max(0.01, deadline - time.monotonic()))) is not None:
            out.append(msg)
        return out

    def _exactly(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def recv_type(self, mtype: int, *, timeout: float = 5) -> bytes:
        """Skip messages until one of *mtype* arrives; return its body."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(timeout=max(0.01, deadline - time.monotonic()))
            if msg is None:
                pytest.fail(f"connection closed before a message of type {mtype}")
            if msg[0] == mtype:
                return msg[1]

    def handshake(self, asn: int, *, hold: int = 9, ipv6: bool = True, **caps: bool) -> bytes:
        """Read the speaker's OPEN, answer with ours and a KEEPALIVE, read its KEEPALIVE; return its OPEN body.

        *caps*: ``extended``, ``graceful`` (see :func:`peer_open`).
        """
        first = self.recv()
        assert first is not None and first[0] == 1, first
        self.send(peer_open(asn, hold=hold, ipv6=ipv6, **caps) + KEEPALIVE)
        assert self.recv_type(4) == b""
        return first[1]

    def close(self) -> None:
        self.sock.close()


class FakePeer:
    """A listening socket in the router namespace that tests script by hand."""

    def __init__(self, lab: Lab, address: str) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with in_netns(lab.rtr):
            self.listener = socket.create_server((address, 179), family=family)
        self.conns: list[PeerConn] = []

    def accept(self, *, timeout: float = 5) -> PeerConn:
        self.listener.settimeout(timeout)
        sock, _ = self.listener.accept()
        conn = PeerConn(sock)
        self.conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.listener.close()


@pytest.fixture(name="fake_peer")
def _fake_peer(lab: Lab) -> Iterator[Callable[..., FakePeer]]:
    """Build fake peers listening on port 179 of the router namespace."""
    made: list[FakePeer] = []

    def make(address: str = RTR4) -> FakePeer:
        made.append(FakePeer(lab, address))
        return made[-1]

    yield make
    for fp in made:
        fp.close()


class Helpers:
    """Builders the test modules need (tests cannot import this conftest under importlib mode)."""

    RTR4, NODE4, RTR6, NODE6 = RTR4, NODE4, RTR6, NODE6
    peer = staticmethod(peer)
    bgp_pool = staticmethod(bgp_pool)
    service = staticmethod(service)
    wait_for = staticmethod(wait_for)
    in_netns = staticmethod(in_netns)
    peer_open = staticmethod(peer_open)
    KEEPALIVE = KEEPALIVE


@pytest.fixture(name="bgp")
def _bgp() -> type[Helpers]:
    """The builders of :class:`Helpers`."""
    return Helpers
