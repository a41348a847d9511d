"""BFD against BIRD's ``bfd`` protocol and FRR's ``bfdd``, each in its own network namespace, with BGP on top.

Sessions are read back through ``birdc show bfd sessions`` and ``vtysh show bfd
peers``. The path is cut with the link still up: a ``pfifo limit 0`` root qdisc
on one end drops everything that end sends (and its senders get ``ENOBUFS``),
while the carrier stays up, so what is measured is BFD, not a lost link.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
from typing import Any

import attrs
import netaddr
import pytest
from metallb.allocator.model import BfdProfile, Config
from metallb.announcers.bgp.bfd.auth import AuthKey
from metallb.announcers.bgp.bfd.metrics import BfdMetrics
from metallb.announcers.bgp.bfd.packet import AuthType
from metallb.announcers.bgp.bfd.service import BfdService, SessionSpec
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.netns

RTR4, NODE4 = "192.0.2.1", "192.0.2.2"
FAST = BfdProfile(receive_interval=100, transmit_interval=100, detect_multiplier=3)


@attrs.define
class BfdRouter:
    """A router with BFD in the router namespace: BIRD (``bfd`` protocol) or FRR (zebra, bfdd, bgpd).

    BGP is passive, hold time *hold*, with BFD on the session to 192.0.2.2 when *bgp_bfd*.
    """

    lab: Any
    kind: str
    asn: int = 64513
    peer_asn: int = 64512
    hold: int = 9
    bgp: bool = True
    bgp_bfd: bool = True
    interval: int = 100
    passive: bool = False
    auth: str = ""  # BIRD's authentication type ("keyed sha1" ...), password "secret" with key ID 1
    multihop: bool = False
    procs: list[subprocess.Popen[bytes]] = attrs.Factory(list)

    def path(self, name: str) -> str:
        return os.path.join(self.lab.workdir, f"{self.kind}.{name}")

    def run(self, cmd: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self.lab.rtr, cmd, check=check)

    def start(self) -> BfdRouter:
        (self._start_bird if self.kind == "bird" else self._start_frr)()
        deadline = time.monotonic() + 15
        while not self.ready():
            for proc in self.procs:
                if proc.poll() is not None:
                    with open(self.path("log")) as fh:
                        pytest.fail(f"{self.kind} exited: {fh.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.kind} never answered its CLI")
            time.sleep(0.05)
        return self

    def _popen(self, argv: list[str]) -> None:
        with open(self.path("log"), "ab") as log:
            self.procs.append(self.lab.netlab.popen(self.lab.rtr, argv, stdout=log, stderr=log))

    # -- BIRD ----------------------------------------------------------------------------

    def _start_bird(self) -> None:
        t = self.interval
        opts = f"min rx interval {t} ms; min tx interval {t} ms; multiplier 3;"
        if self.passive:
            opts += " passive on;"
        if self.auth:
            opts += f' authentication {self.auth}; password "secret" {{ id 1; }};'
        if self.multihop:
            bfd = f"multihop {{ {opts} }}; neighbor {NODE4} local {RTR4} multihop;"
        else:  # BGP asks for its session; without BGP, a configured neighbour
            bfd = f'interface "r0" {{ {opts} }};' + ("" if self.bgp else f' neighbor {NODE4} dev "r0";')
        bgp = ""
        if self.bgp:
            bgp = f"""
protocol bgp speaker {{
  local {RTR4} as {self.asn};
  neighbor {NODE4} as {self.peer_asn};
  passive on;
  hold time {self.hold};
  error wait time 1, 5;
  {"bfd on;" if self.bgp_bfd else ""}
  ipv4 {{ import all; export none; }};
}}"""
        with open(self.path("conf"), "w") as fh:
            fh.write(f"router id {RTR4};\nprotocol device {{ }}\nprotocol bfd {{ {bfd} }}\n{bgp}\n")
        self._popen(["bird", "-f", "-c", self.path("conf"), "-s", self.path("ctl"), "-P", self.path("pid")])

    def birdc(self, cmd: str) -> str:
        return self.run(f"birdc -s {self.path('ctl')} {cmd}").stdout

    # -- FRR -----------------------------------------------------------------------------

    def _start_frr(self) -> None:
        vty = self.path("vty")
        os.makedirs(vty, exist_ok=True)
        os.chmod(vty, 0o777)
        zserv = os.path.join(vty, "zserv.api")
        common = ["-z", zserv, "--vty_socket", vty, "-P", "0", "--log", f"file:{self.path('log')}"]
        t = self.interval
        passive = "  passive-mode\n" if self.passive else ""
        peer = f"peer {NODE4} multihop local-address {RTR4}" if self.multihop else f"peer {NODE4} interface r0"
        # With BGP, bgpd registers the session (as MetalLB's FRR mode does): a configured peer as well would
        # be a second session to the node, whose Down packets take ours down.
        static = "" if self.bgp else f" {peer}\n  profile fast\n !\n"
        with open(self.path("bfdd.conf"), "w") as fh:
            fh.write(
                f"bfd\n profile fast\n  receive-interval {t}\n  transmit-interval {t}\n  detect-multiplier 3\n"
                f"{passive} !\n{static}!\n"
            )
        n = NODE4
        bfd = f" neighbor {n} bfd\n neighbor {n} bfd profile fast\n" if self.bgp_bfd else ""
        with open(self.path("bgpd.conf"), "w") as fh:
            fh.write(
                f"frr defaults traditional\nrouter bgp {self.asn}\n bgp router-id {RTR4}\n"
                f" no bgp ebgp-requires-policy\n neighbor {n} remote-as {self.peer_asn}\n neighbor {n} passive\n"
                f" neighbor {n} timers {max(1, self.hold // 3)} {self.hold}\n{bfd}"
                f" address-family ipv4 unicast\n  neighbor {n} activate\n exit-address-family\n"
            )
        self._popen(["/usr/lib/frr/zebra", *common, "-f", "/dev/null", "-i", self.path("zebra.pid")])
        deadline = time.monotonic() + 10
        while not os.path.exists(zserv) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._popen(
            ["/usr/lib/frr/bfdd", *common, "--bfdctl", os.path.join(vty, "bfdd.sock"), "-f", self.path("bfdd.conf"),
             "-i", self.path("bfdd.pid")]
        )  # fmt: skip
        if self.bgp:
            self._popen(["/usr/lib/frr/bgpd", *common, "-f", self.path("bgpd.conf"), "-i", self.path("bgpd.pid")])

    def vtysh(self, cmd: str) -> str:
        return self.run(f"vtysh --vty_socket {self.path('vty')} -c '{cmd}'").stdout

    # -- reading back ----------------------------------------------------------------------

    def ready(self) -> bool:
        if self.kind == "bird":
            return self.run(f"birdc -s {self.path('ctl')} show status", check=False).returncode == 0
        daemons = ("zebra", "bfdd", "bgpd") if self.bgp else ("zebra", "bfdd")
        if not all(os.path.exists(os.path.join(self.path("vty"), f"{d}.vty")) for d in daemons):
            return False
        # bgpd answers before it has read its configuration; a connection then gets NOTIFICATION 5/0.
        return not self.bgp or NODE4 in self.run(f"vtysh --vty_socket {self.path('vty')} -c 'show bgp neighbors json'",
                                                 check=False).stdout  # fmt: skip

    def bfd_state(self) -> dict[str, Any]:
        """The router's BFD session to the node: ``state`` (lower case), intervals in ms when known."""
        if self.kind == "bird":
            for line in self.birdc("show bfd sessions").splitlines():
                fields = line.split()
                if fields and fields[0] == NODE4:
                    # IP address, [interface], state, since (time, maybe date), interval, timeout
                    state = next(f for f in fields[1:] if f in ("Up", "Down", "Init", "AdminDown"))
                    return {"state": state.lower(), "interval": float(fields[-2]) * 1000}
            return {"state": "absent"}
        for peer in json.loads(self.vtysh("show bfd peers json") or "[]"):
            if peer.get("peer") == NODE4:
                return {
                    "state": peer["status"],
                    "interval": peer.get("transmit-interval"),
                    "remote-transmit": peer.get("remote-transmit-interval"),
                    "passive": peer.get("passive-mode"),
                }
        return {"state": "absent"}

    def routes(self) -> set[str]:
        """IPv4 prefixes in the router's BGP table."""
        if self.kind == "bird":
            return set(re.findall(r"^([0-9.]+/\d+)\s+unicast", self.birdc("show route table master4"), re.M))
        return set(json.loads(self.vtysh("show bgp ipv4 unicast json") or "{}").get("routes", {}))

    def wait(self, what: str, predicate: Any, *, timeout: float = 10, step: float = 0.05) -> float:
        """Poll *predicate* until true; return the seconds it took."""
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                pytest.fail(f"{self.kind}: {what} did not happen within {timeout} s; BFD: {self.bfd_state()}")
            time.sleep(step)
        return time.monotonic() - start


@pytest.fixture(name="make_bfd_router")
def _make_bfd_router(lab):
    """Start a router with BFD (``bird`` or ``frr``) in the router namespace; killed at teardown."""

    def make(kind: str, **kwargs: Any) -> BfdRouter:
        return BfdRouter(lab, kind, **kwargs).start()

    return make


def configure(speaker, bgp, *, profile: BfdProfile | None = FAST, hold: int = 9, **peer_kw: Any) -> None:
    """Peer with the router (profile "fast" unless None) and announce 198.51.100.10 and .20."""
    pool = bgp.bgp_pool("198.51.100.0/24")
    peer = bgp.peer(64512, 64513, hold_time=hold, bfd_profile="fast" if profile else "", **peer_kw)
    profiles = {"fast": profile} if profile else {}
    speaker.announcer.set_config(Config(pools={pool.name: pool}, peers=(peer,), bfd_profiles=profiles), speaker.node)
    speaker.announcer.announce(bgp.service("ns/a", "198.51.100.10", pool=pool))
    speaker.announcer.announce(bgp.service("ns/b", "198.51.100.20", pool=pool))


ROUTES = {"198.51.100.10/32", "198.51.100.20/32"}


def bfd_state(speaker) -> str:
    sessions = speaker.announcer.bfd_sessions()
    return sessions[0].state if sessions else "absent"


def cut(lab, ns: str, ifname: str) -> None:
    """Drop everything *ns* sends on *ifname*, carrier still up: senders get ENOBUFS."""
    lab.run(ns, f"tc qdisc replace dev {ifname} root pfifo limit 0")


def restore(lab, ns: str, ifname: str) -> None:
    lab.run(ns, f"tc qdisc del dev {ifname} root")


@pytest.mark.parametrize("kind", ["bird", "frr"])
class TestSessionsComeUp:
    """Our BFD against each router's."""

    def test_bfd_and_bgp_come_up(self, kind, make_bfd_router, make_speaker, bgp):
        """The router shows the session Up at 100 ms, so do we and our metrics, and the routes arrive."""
        router = make_bfd_router(kind)
        speaker = make_speaker()
        configure(speaker, bgp)
        router.wait("BFD Up on the router", lambda: router.bfd_state()["state"] == "up")
        router.wait("the routes", lambda: router.routes() == ROUTES)
        bgp.wait_for(lambda: bfd_state(speaker) == "Up", what="our BFD session Up")
        status = speaker.announcer.bfd_sessions()[0]
        assert (status.peer, status.remote_state, status.tx_interval, status.detection_time) == (RTR4, "Up", 100, 300)
        assert router.bfd_state()["interval"] == 100
        # Poll/Final done: the router applies our 100 ms (FRR shows what it heard from us).
        if kind == "frr":
            router.wait("our 100 ms seen by FRR", lambda: router.bfd_state()["remote-transmit"] == 100)
        metric = lambda name: speaker.registry.get_sample_value(name, {"peer": RTR4})  # noqa: E731
        assert metric("metallb_bfd_session_up") == 1
        # FRR sometimes replaces its session right after BGP comes up (a new discriminator, in Down): then ours
        # follows it down and up again, as RFC 5880 6.8.6 says.
        assert metric("metallb_bfd_session_up_events_total") == metric("metallb_bfd_session_down_events_total") + 1
        assert metric("metallb_bfd_control_packet_input_total") > 0
        assert metric("metallb_bfd_control_packet_output_total") > 0
        assert metric("metallb_bfd_control_packet_discarded_total") == 0

    def test_passive_profile_still_comes_up(self, kind, make_bfd_router, make_speaker, bgp):
        """With passive-mode we wait for the router's first packet, then the session comes up as usual."""
        router = make_bfd_router(kind)
        speaker = make_speaker()
        configure(speaker, bgp, profile=attrs.evolve(FAST, passive_mode=True))
        router.wait("BFD Up on the router", lambda: router.bfd_state()["state"] == "up")

    def test_closing_the_speaker_says_admin_down(self, kind, make_bfd_router, make_speaker, bgp):
        """On close the router hears AdminDown from us after the BGP Cease."""
        router = make_bfd_router(kind)
        speaker = make_speaker()
        configure(speaker, bgp)
        router.wait("BFD Up on the router", lambda: router.bfd_state()["state"] == "up")
        speaker.announcer.close()
        router.wait("BFD down on the router", lambda: router.bfd_state()["state"] == "down", timeout=3)
        if kind == "frr":
            diag = json.loads(router.vtysh("show bfd peers json"))[0]["remote-diagnostic"]
            assert diag == "administratively down"


@pytest.mark.parametrize("kind", ["bird", "frr"])
class TestPathCut:
    """The path fails with the link up: the router withdraws our routes long before the hold time."""

    def test_router_withdraws_before_the_hold_time_and_it_recovers(
        self, kind, make_bfd_router, make_speaker, bgp, caplog
    ):
        """Node egress dropped: the router's BFD fails and it withdraws; our BGP closes too; all comes back after."""
        caplog.set_level(logging.WARNING, logger="metallb.announcers.bgp")
        router = make_bfd_router(kind, hold=30)
        speaker = make_speaker()
        configure(speaker, bgp, hold=30)
        router.wait("the routes", lambda: router.routes() == ROUTES)
        router.wait("BFD Up on the router", lambda: router.bfd_state()["state"] == "up")
        cut(router.lab, router.lab.node, "n0")
        took = router.wait("the withdrawal", lambda: not router.routes(), timeout=5, step=0.02)
        assert took < 1.5, took  # 300 ms detection (0.3-0.4 s in bench/bfd.py); the hold time is 30 s
        # The router tells us over BFD (Down, "neighbor down"), BIRD also with a NOTIFICATION: either closes ours.
        bgp.wait_for(lambda: speaker.state() != "Established", timeout=2, what="our BGP session to close")
        refused = speaker.registry.get_sample_value("metallb_bfd_control_packet_send_errors_total", {"peer": RTR4})
        assert refused and refused > 0  # ENOBUFS counted, not raised
        assert caplog.text.count("the kernel refused a packet") == 1  # once per streak
        restore(router.lab, router.lab.node, "n0")
        router.wait("BFD Up again", lambda: router.bfd_state()["state"] == "up", timeout=15)
        router.wait("the routes again", lambda: router.routes() == ROUTES, timeout=15)
        assert "sending again after" in caplog.text
        assert speaker.registry.get_sample_value("metallb_bfd_session_down_events_total", {"peer": RTR4}) == 1

    def test_we_detect_and_close_bgp_at_once(self, kind, make_bfd_router, make_speaker, bgp):
        """Router egress dropped: our detection time passes and our BGP session closes within it, not the hold time."""
        router = make_bfd_router(kind, hold=30)
        speaker = make_speaker()
        configure(speaker, bgp, hold=30)
        router.wait("the routes", lambda: router.routes() == ROUTES)
        bgp.wait_for(lambda: bfd_state(speaker) == "Up", what="our BFD session Up")
        start = time.monotonic()
        cut(router.lab, router.lab.rtr, "r0")
        bgp.wait_for(lambda: speaker.state() != "Established", timeout=3, what="our BGP session to close")
        assert time.monotonic() - start < 1.5  # 300 ms detection; the hold time is 30 s
        status = speaker.announcer.bfd_sessions()[0]
        assert status.state in ("Down", "Init") and status.diag in ("detection time expired", "none")
        assert speaker.registry.get_sample_value("metallb_bgp_session_up", {"peer": f"{RTR4}:179"}) == 0
        restore(router.lab, router.lab.rtr, "r0")
        speaker.wait_established(timeout=15)


class TestWithoutBfd:
    """BGP never depends on BFD."""

    def test_router_without_bfd_gets_our_routes(self, make_router, make_speaker, bgp):
        """GoBGP has no BFD: with a profile on our side the session still comes up and carries the routes."""
        router = make_router("gobgp", asn=64513, peer_asn=64512)
        speaker = make_speaker()
        configure(speaker, bgp)
        router.wait_routes(lambda t: set(t) == ROUTES)
        time.sleep(1.5)  # longer than a slow BFD interval: BFD never came up, BGP stays
        assert bfd_state(speaker) == "Down" and speaker.state() == "Established"
        assert speaker.registry.get_sample_value("metallb_bfd_session_up", {"peer": RTR4}) == 0

    @pytest.mark.parametrize("kind", ["bird", "frr"])
    def test_bfd_on_the_router_only(self, kind, make_bfd_router, make_speaker, bgp):
        """The router asks for BFD, we have no profile: BGP is established and the routes stay."""
        router = make_bfd_router(kind)
        speaker = make_speaker()
        configure(speaker, bgp, profile=None)
        router.wait("the routes", lambda: router.routes() == ROUTES)
        assert speaker.announcer.bfd_sessions() == []

    def test_profile_removed_stops_bfd_keeps_bgp(self, make_bfd_router, make_speaker, bgp):
        """Dropping the peer's profile tells the router AdminDown (no failure) and keeps the BGP session."""
        router = make_bfd_router("bird")
        speaker = make_speaker()
        configure(speaker, bgp)
        router.wait("BFD Up on the router", lambda: router.bfd_state()["state"] == "up")
        configure(speaker, bgp, profile=None)  # a new PeerSpec: BGP reconnects once
        router.wait("BFD down on the router", lambda: router.bfd_state()["state"] == "down", timeout=3)
        router.wait("the routes", lambda: router.routes() == ROUTES)
        assert speaker.announcer.bfd_sessions() == []


@pytest.fixture(name="service")
def _service(lab, bgp):
    """A BfdService in the node namespace, closed at teardown."""
    made: list[BfdService] = []

    def make(**kwargs: Any) -> BfdService:
        with bgp.in_netns(lab.node):
            made.append(BfdService(**kwargs))
        return made[-1]

    yield make
    for svc in made:
        svc.close()


class TestServiceAgainstRouters:
    """The BFD service alone: multihop and authentication, which the config cannot express yet."""

    @pytest.mark.parametrize("kind", ["bird", "frr"])
    def test_multihop_session(self, kind, make_bfd_router, service, bgp):
        """RFC 5883 on port 4784 comes up against each router's multihop session (BIRD sends TTL 64, FRR 255)."""
        router = make_bfd_router(kind, bgp=False, multihop=True)
        registry = CollectorRegistry()
        svc = service(metrics=BfdMetrics(registry))
        # MetalLB's default minimum TTL (254) fits FRR; BIRD sends multihop packets with the system TTL, 64.
        profile = attrs.evolve(FAST, minimum_ttl=64 if kind == "bird" else 254)
        spec = SessionSpec(peer=netaddr.IPAddress(RTR4), local=netaddr.IPAddress(NODE4), multihop=True, profile=profile)
        svc.configure([spec])
        router.wait("multihop BFD Up", lambda: router.bfd_state()["state"] == "up")
        assert svc.sessions()[0].multihop and svc.sessions()[0].state == "Up"
        assert registry.get_sample_value("metallb_bfd_control_packet_discarded_total", {"peer": RTR4}) == 0

    def test_multihop_minimum_ttl_is_enforced(self, make_bfd_router, service, bgp):
        """BIRD's TTL-64 multihop packets are discarded under MetalLB's default minimum TTL of 254."""
        make_bfd_router("bird", bgp=False, multihop=True)
        registry = CollectorRegistry()
        svc = service(metrics=BfdMetrics(registry))
        spec = SessionSpec(peer=netaddr.IPAddress(RTR4), local=netaddr.IPAddress(NODE4), multihop=True, profile=FAST)
        svc.configure([spec])
        discarded = lambda: registry.get_sample_value("metallb_bfd_control_packet_discarded_total", {"peer": RTR4})  # noqa: E731
        bgp.wait_for(lambda: (discarded() or 0) >= 1, timeout=5, what="a discarded packet")
        assert svc.sessions()[0].state == "Down"

    @pytest.mark.parametrize(
        ("bird_auth", "ours"),
        [
            ("simple", AuthType.SIMPLE),
            ("keyed md5", AuthType.KEYED_MD5),
            ("meticulous keyed md5", AuthType.METICULOUS_KEYED_MD5),
            ("keyed sha1", AuthType.KEYED_SHA1),
            ("meticulous keyed sha1", AuthType.METICULOUS_KEYED_SHA1),
        ],
    )
    def test_authentication_with_bird(self, bird_auth, ours, make_bfd_router, service, bgp):
        """Each authentication type comes up against BIRD with the same key; a wrong key never does."""
        router = make_bfd_router("bird", bgp=False, auth=bird_auth)
        svc = service()
        spec = SessionSpec(
            peer=netaddr.IPAddress(RTR4), profile=FAST, auth=AuthKey(type=ours, key_id=1, secret=b"secret")
        )
        svc.configure([spec])
        bgp.wait_for(lambda: svc.sessions()[0].state == "Up", timeout=10, what=f"{bird_auth} session Up")
        router.wait("BFD Up on BIRD", lambda: router.bfd_state()["state"] == "up")
        svc.configure([attrs.evolve(spec, auth=AuthKey(type=ours, key_id=1, secret=b"wrong"))])
        bgp.wait_for(lambda: svc.sessions()[0].state == "Down", timeout=5, what="the wrong key to fail")
