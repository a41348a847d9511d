"""eBGP multihop, keepalive-time: BIRD, GoBGP and FRR one routed hop away, each checking the TTL (RFC 5082).

Topology (three namespaces; the session addresses sit on loopbacks, so the
routers reach them only through the hop, which forwards)::

    node  lo 192.0.2.2/32  n0 10.1.0.2/24 <-veth-> h0 10.1.0.1/24  hop  h1 10.2.0.1/24 <-veth-> r0 10.2.0.2/24  rtr  lo 192.0.2.1/32

Every router requires what arrives to have at least TTL 254 (GTSM, "two hops
away"): our packets leave with TTL 255 with ``ebgp-multihop`` and arrive with
254; without it they leave with the kernel's default (64) and are dropped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import netaddr
import pytest
from metallb.allocator.model import BfdProfile, Config

pytestmark = pytest.mark.netns

RTR4, NODE4 = "192.0.2.1", "192.0.2.2"
ROUTE = "198.51.100.10/32"


@attrs.define
class HopLab:
    """The three namespaces (same fields as the other BGP tests' lab, so their speaker fixture works)."""

    netlab: Any
    rtr: str
    node: str
    hop: str
    workdir: str

    def run(self, ns: str, cmd: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.netlab.run(ns, cmd, check=check)

    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)


@pytest.fixture(name="lab")
def _lab(netlab: Any) -> Iterator[HopLab]:
    """Node, hop and router namespaces, routed as in the module docstring; removed at teardown."""
    node, hop, rtr = netlab.ns("node"), netlab.ns("hop"), netlab.ns("rtr")
    netlab.veth(node, "n0", hop, "h0")
    netlab.veth(hop, "h1", rtr, "r0")
    netlab.run(node, f"ip addr add 10.1.0.2/24 dev n0 && ip addr add {NODE4}/32 dev lo")
    netlab.run(node, f"ip route add {RTR4}/32 via 10.1.0.1 src {NODE4}")
    netlab.run(hop, "ip addr add 10.1.0.1/24 dev h0 && ip addr add 10.2.0.1/24 dev h1")
    netlab.run(hop, f"sysctl -qw net.ipv4.ip_forward=1 && ip route add {NODE4}/32 via 10.1.0.2")
    netlab.run(hop, f"ip route add {RTR4}/32 via 10.2.0.2")
    netlab.run(rtr, f"ip addr add 10.2.0.2/24 dev r0 && ip addr add {RTR4}/32 dev lo")
    netlab.run(rtr, f"ip route add {NODE4}/32 via 10.2.0.1 src {RTR4}")
    workdir = tempfile.mkdtemp(prefix="bgp-hop-")
    os.chmod(workdir, 0o777)
    try:
        yield HopLab(netlab, rtr, node, hop, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- the routers: passive, eBGP AS 64513, multihop, GTSM at two hops --------------------------


def start_bird(lab: HopLab, *, neighbor: str = NODE4) -> Callable[[], set[str]]:
    conf = f"""
router id {RTR4};
protocol device {{ }}
protocol static {{ ipv4; route {neighbor}/32 via 10.2.0.1; }}
protocol bgp speaker {{
  local {RTR4} as 64513;
  neighbor {neighbor} as 64512;
  multihop 2;
  ttl security on;
  passive on;
  hold time 9;
  error wait time 1, 5;
  ipv4 {{ import all; export none; }};
}}
"""
    with open(lab.path("bird.conf"), "w") as fh:
        fh.write(conf)
    ctl = lab.path("bird.ctl")
    with open(lab.path("bird.log"), "ab") as log:
        lab.netlab.popen(lab.rtr, ["bird", "-f", "-c", lab.path("bird.conf"), "-s", ctl], stdout=log, stderr=log)
    wait(lambda: lab.run(lab.rtr, f"birdc -s {ctl} show status", check=False).returncode == 0, "BIRD's CLI")

    def routes() -> set[str]:
        out = lab.run(lab.rtr, f"birdc -s {ctl} show route table master4 protocol speaker").stdout
        return set(re.findall(r"^([0-9.]+/\d+)\s+unicast", out, re.M))

    return routes


def start_gobgp(lab: HopLab) -> Callable[[], set[str]]:
    # GoBGP refuses ebgp-multihop together with ttl-security; GTSM alone lets a peer be hops away.
    conf = f"""
[global.config]
  as = 64513
  router-id = "{RTR4}"
  local-address-list = ["{RTR4}"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{NODE4}"
    peer-as = 64512
  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
    idle-hold-time-after-reset = 1
  [neighbors.transport.config]
    passive-mode = true
    local-address = "{RTR4}"
  [neighbors.ttl-security.config]
    enabled = true
    ttl-min = 254
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"""
    with open(lab.path("gobgpd.toml"), "w") as fh:
        fh.write(conf)
    argv = ["gobgpd", "-f", lab.path("gobgpd.toml"), "-p", "--api-hosts", "127.0.0.1:50051", "--pprof-disable"]
    with open(lab.path("gobgpd.log"), "ab") as log:
        lab.netlab.popen(lab.rtr, argv, stdout=log, stderr=log)
    cli = "gobgp -u 127.0.0.1 -p 50051"
    wait(lambda: lab.run(lab.rtr, f"{cli} global", check=False).returncode == 0, "GoBGP's CLI")

    def routes() -> set[str]:
        out = lab.run(lab.rtr, f"{cli} global rib -a ipv4 -j").stdout.strip()
        return set(json.loads(out) if out and out != "null" else {})

    return routes


def start_frr(lab: HopLab, *, bfd: bool = False) -> Callable[[], set[str]]:
    """zebra, bgpd and (with *bfd*) bfdd, BFD 100 ms x 3 on the multihop session."""
    vty = lab.path("vty")
    os.makedirs(vty, exist_ok=True)
    os.chmod(vty, 0o777)
    zserv = os.path.join(vty, "zserv.api")
    common = ["-z", zserv, "--vty_socket", vty, "-P", "0", "--log", f"file:{lab.path('frr.log')}"]
    n = NODE4
    bfd_conf = f" neighbor {n} bfd\n neighbor {n} bfd profile fast\n" if bfd else ""
    with open(lab.path("bgpd.conf"), "w") as fh:
        fh.write(
            f"frr defaults traditional\nrouter bgp 64513\n bgp router-id {RTR4}\n no bgp ebgp-requires-policy\n"
            f" neighbor {n} remote-as 64512\n neighbor {n} passive\n neighbor {n} update-source {RTR4}\n"
            f" neighbor {n} ttl-security hops 2\n neighbor {n} timers 3 30\n{bfd_conf}"
            f" address-family ipv4 unicast\n  neighbor {n} activate\n exit-address-family\n"
        )
    with open(lab.path("bfdd.conf"), "w") as fh:
        fh.write("bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !\n!\n")
    with open(lab.path("frr.out"), "ab") as log:
        lab.netlab.popen(lab.rtr, ["/usr/lib/frr/zebra", *common, "-f", "/dev/null", "-i", lab.path("zebra.pid")],
                         stdout=log, stderr=log)  # fmt: skip
        wait(lambda: os.path.exists(zserv), "zebra")
        if bfd:
            lab.netlab.popen(
                lab.rtr,
                ["/usr/lib/frr/bfdd", *common, "--bfdctl", os.path.join(vty, "bfdd.sock"),
                 "-f", lab.path("bfdd.conf"), "-i", lab.path("bfdd.pid")],
                stdout=log, stderr=log,
            )  # fmt: skip
        lab.netlab.popen(lab.rtr, ["/usr/lib/frr/bgpd", *common, "-f", lab.path("bgpd.conf"), "-i",
                                   lab.path("bgpd.pid")], stdout=log, stderr=log)  # fmt: skip

    def vtysh(cmd: str) -> str:
        return lab.run(lab.rtr, f"vtysh --vty_socket {vty} -c '{cmd}'", check=False).stdout

    # bgpd answers before it has read its configuration; a connection then gets NOTIFICATION 5/0.
    wait(lambda: NODE4 in vtysh("show bgp neighbors json"), "FRR's bgpd with its neighbour")
    if bfd:
        wait(lambda: os.path.exists(os.path.join(vty, "bfdd.vty")), "FRR's bfdd")

    def routes() -> set[str]:
        return set(json.loads(vtysh("show bgp ipv4 unicast json") or "{}").get("routes", {}))

    routes.vtysh = vtysh  # type: ignore[attr-defined]
    return routes


ROUTERS = {"bird": start_bird, "gobgp": start_gobgp, "frr": start_frr}


def wait(predicate: Callable[[], object], what: str, *, timeout: float = 15, step: float = 0.05) -> float:
    """Poll until *predicate* holds; the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what} did not happen within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


def configure(speaker: Any, bgp: Any, *, profile: BfdProfile | None = None, **peer_kw: Any) -> None:
    """Peer with 192.0.2.1 (AS 64513) from AS 64512 and announce 198.51.100.10."""
    pool = bgp.bgp_pool("198.51.100.0/24")
    peer = bgp.peer(64512, 64513, bfd_profile="fast" if profile else "", **peer_kw)
    profiles = {"fast": profile} if profile else {}
    speaker.announcer.set_config(Config(pools={pool.name: pool}, peers=(peer,), bfd_profiles=profiles), speaker.node)
    speaker.announcer.announce(bgp.service("ns/a", "198.51.100.10", pool=pool))


class TestEbgpMultihop:
    """ebgp-multihop against routers one routed hop away that check the TTL."""

    @pytest.mark.parametrize("kind", ["bird", "gobgp", "frr"])
    def test_session_through_a_routed_hop(self, kind, lab, make_speaker, bgp):
        """With ebgp-multihop the session comes up through the hop, past each router's TTL check, and routes flow."""
        routes = ROUTERS[kind](lab)
        speaker = make_speaker()
        configure(speaker, bgp, ebgp_multihop=True)
        speaker.wait_established(timeout=20)
        wait(lambda: routes() == {ROUTE}, f"{kind} to receive {ROUTE}")
        assert speaker.announcer.sessions()[0].local_address == NODE4

    def test_without_multihop_the_router_drops_us(self, lab, make_speaker, bgp):
        """Without ebgp-multihop our packets leave with the kernel's TTL and GTSM drops them: no session."""
        routes = start_bird(lab)
        speaker = make_speaker(connect_timeout=2)
        configure(speaker, bgp)
        time.sleep(5)  # two connection attempts
        assert speaker.state() != "Established" and not routes()
        # BIRD sets the minimum TTL on the accepted connection: it answers our SYN, then never hears our OPEN.
        assert speaker.announcer.sessions()[0].last_error, "a reason in the status"

    @pytest.mark.parametrize(("asn", "ttl"), [(64513, 254), (64512, 63)])
    def test_ttl_on_the_wire(self, lab, make_speaker, bgp, asn, ttl):
        """eBGP with ebgp-multihop leaves with TTL 255 (254 after the hop); iBGP ignores it: the kernel's 64."""
        capture = lab.netlab.popen(
            lab.rtr, ["tcpdump", "-i", "r0", "-n", "-v", "-c", "1", "-l", "tcp dst port 179 and tcp[tcpflags] == tcp-syn"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        capture.stderr.readline()  # "listening on r0 ..." once the capture runs
        speaker = make_speaker(connect_timeout=2)
        pool = bgp.bgp_pool("198.51.100.0/24")
        peer = bgp.peer(64512, asn, ebgp_multihop=True)
        speaker.announcer.set_config(Config(pools={pool.name: pool}, peers=(peer,)), speaker.node)
        out, _ = capture.communicate(timeout=15)  # nothing listens: each SYN gets a reset, and is retried
        assert f"ttl {ttl},".encode() in out, out


class TestSourceAddress:
    """source-address against a real router."""

    def test_session_from_the_configured_address(self, lab, make_speaker, bgp):
        """With two addresses on the node, the session and next hop use source-address; BIRD knows only that one."""
        lab.run(lab.node, "ip addr add 192.0.2.3/32 dev lo")
        lab.run(lab.hop, "ip route add 192.0.2.3/32 via 10.1.0.2")
        lab.run(lab.rtr, "ip route add 192.0.2.3/32 via 10.2.0.1")
        routes = start_bird(lab, neighbor="192.0.2.3")
        speaker = make_speaker()
        source = netaddr.IPAddress("192.0.2.3")
        configure(speaker, bgp, ebgp_multihop=True, source_address=source)
        speaker.wait_established(timeout=20)
        wait(lambda: routes() == {ROUTE}, "BIRD to receive the route")
        assert speaker.announcer.sessions()[0].local_address == "192.0.2.3"
        ctl = lab.path("bird.ctl")
        out = lab.run(lab.rtr, f"birdc -s {ctl} show route all table master4 protocol speaker").stdout
        assert "BGP.next_hop: 192.0.2.3" in out, out


class TestMultihopBfd:
    """A peer with ebgp-multihop and a bfd-profile runs multihop BFD (RFC 5883) through the hop."""

    def test_frr_multihop_bfd_withdraws_on_a_cut(self, lab, make_speaker, bgp):
        """FRR's multihop BFD session comes up with ours (TTL 254 >= minimum-ttl 254); a cut path withdraws at once."""
        routes = start_frr(lab, bfd=True)
        speaker = make_speaker()
        fast = BfdProfile(receive_interval=100, transmit_interval=100, detect_multiplier=3)
        configure(speaker, bgp, ebgp_multihop=True, hold_time=30, profile=fast)
        speaker.wait_established(timeout=20)
        wait(lambda: routes() == {ROUTE}, "FRR to receive the route")
        wait(lambda: [s.state for s in speaker.announcer.bfd_sessions()] == ["Up"], "our BFD session Up")
        session = speaker.announcer.bfd_sessions()[0]
        assert session.multihop
        peers = json.loads(routes.vtysh("show bfd peers json") or "[]")  # type: ignore[attr-defined]
        assert [(p["peer"], p["multihop"], p["status"]) for p in peers] == [(NODE4, True, "up")]
        lab.run(lab.node, "tc qdisc replace dev n0 root pfifo limit 0")  # the path fails, the link stays up
        took = wait(lambda: not routes(), "FRR to withdraw the route", timeout=5, step=0.02)
        assert took < 1.5, took  # 300 ms detection; the hold time is 30 s
