"""Graceful restart (RFC 4724) and extended messages (RFC 8654) against BIRD 2, GoBGP and FRR.

The speaker restarts while routers keep its routes as stale; a client pinging an
announced address through BIRD or FRR (which install routes in their namespace's
kernel, FRR through zebra) loses no packet while ``metallb standalone`` restarts.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from metallb.allocator.model import BgpAdvertisement, Community

pytestmark = pytest.mark.netns

A4, A6, B4 = "198.51.100.10/32", "2001:db8:ff::10/128", "198.51.100.20/32"
BIG = BgpAdvertisement(communities=tuple(Community(65000 << 16 | i) for i in range(2000)))


def in_restart(router) -> bool:
    """Whether *router* holds our routes as stale through a graceful restart."""
    if router.name == "bird":  # BIRD marks nothing in its route listing, but says so per protocol
        out = router.cli(f"birdc -s {router.path('ctl')} show protocols all speaker").stdout
        return "Neighbor graceful restart active" in out
    table = router.wait_routes(lambda t: True)
    return bool(table) and all(e.stale for e in table.values())


@pytest.mark.parametrize("kind", ["bird", "gobgp", "frr"])
class TestGracefulRestart:
    """Our routes outlive the speaker at a helper router, are refreshed, and End-of-RIB removes the rest."""

    def test_restart_keeps_routes_and_end_of_rib_removes_the_rest(self, kind, make_router, make_speaker, bgp):
        """close() leaves the routes (stale); the next speaker refreshes ns/a and its End-of-RIB removes ns/b."""
        router = make_router(kind, asn=64513, peer_asn=64512, graceful_restart=True)
        pool = bgp.bgp_pool("198.51.100.0/24", "2001:db8:ff::/64")
        peer = bgp.peer(64512, 64513, enable_graceful_restart=True)
        first = make_speaker(end_of_rib_delay=0.5)
        first.configure(peer, pools=(pool,))
        first.announcer.announce(bgp.service("ns/a", "198.51.100.10", "2001:db8:ff::10", pool=pool))
        first.announcer.announce(bgp.service("ns/b", "198.51.100.20", pool=pool))
        router.wait_routes(lambda t: set(t) == {A4, A6, B4})
        assert first.announcer.sessions()[0].graceful_restart
        first.announcer.close()
        bgp.wait_for(lambda: in_restart(router), what=f"{kind} to hold our routes as stale")
        time.sleep(1)
        assert set(router.wait_routes(lambda t: True)) == {A4, A6, B4}

        # ns/b went away while the speaker was down.
        second = make_speaker(end_of_rib_delay=0.5)
        second.configure(peer, pools=(pool,))
        second.announcer.announce(bgp.service("ns/a", "198.51.100.10", "2001:db8:ff::10", pool=pool))
        deadline = time.monotonic() + 20  # GoBGP turns connections away for about 5 s after a session ends
        while True:
            table = router.wait_routes(lambda t: True)
            assert {A4, A6} <= set(table), f"ns/a left {kind}'s table during the restart: {table}"
            if set(table) == {A4, A6} and not in_restart(router):
                break
            assert time.monotonic() < deadline, f"End-of-RIB did not clean up: {table}"
            time.sleep(0.1)
        assert not any(e.stale for e in table.values())
        assert second.state() == "Established"

    def test_without_graceful_restart_close_withdraws(self, kind, make_router, make_speaker, bgp):
        """A speaker without enable_graceful_restart still withdraws on close, even towards a helper router."""
        router = make_router(kind, asn=64513, peer_asn=64512, graceful_restart=True)
        pool = bgp.bgp_pool("198.51.100.0/24")
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(pool,))
        speaker.announcer.announce(bgp.service("ns/a", "198.51.100.10", pool=pool))
        router.wait_routes(lambda t: set(t) == {A4})
        speaker.announcer.close()
        router.wait_routes(lambda t: not t, timeout=5)


@pytest.mark.parametrize(("kind", "extended"), [("bird", True), ("frr", True), ("gobgp", False)])
class TestExtendedMessages:
    """A route with 2 000 communities (8 kB of attributes) goes only to routers that negotiated RFC 8654."""

    def test_big_route(self, kind, extended, make_router, make_speaker, bgp):
        """BIRD (with `enable extended messages`) and FRR get it whole; GoBGP 3.10 does not, and its session stays."""
        router = make_router(kind, asn=64513, peer_asn=64512, extended_messages=True)
        small, big = bgp.bgp_pool("203.0.113.0/24", name="small"), bgp.bgp_pool("198.51.100.0/24",
                                                                                advertisements=(BIG,))  # fmt: skip
        speaker = make_speaker()
        speaker.configure(bgp.peer(64512, 64513), pools=(small, big))
        speaker.announcer.announce(bgp.service("ns/big", "198.51.100.20", pool=big))
        speaker.announcer.announce(bgp.service("ns/small", "203.0.113.5", pool=small))
        status = speaker.announcer.sessions
        if extended:
            table = router.wait_routes(lambda t: set(t) == {B4, "203.0.113.5/32"})
            assert table[B4].communities == tuple(f"65000:{i}" for i in range(2000))
            assert status()[0].extended_messages and status()[0].refused == 0
            return
        router.wait_routes(lambda t: set(t) == {"203.0.113.5/32"})
        bgp.wait_for(lambda: status()[0].refused == 1, what="the refusal")
        since = status()[0].established_since
        time.sleep(2)
        assert set(router.wait_routes(lambda t: True)) == {"203.0.113.5/32"}
        assert (status()[0].state, status()[0].established_since) == ("Established", since)
        assert not status()[0].extended_messages
        assert speaker.metric("metallb_bgp_refused_prefixes") == 1
        assert "did not negotiate extended messages" in speaker.announcer.refusals()["ns/big"]


CONFIG = """
peers:
- peer-address: 192.0.2.1
  peer-asn: 64513
  my-asn: 64512
  hold-time: 9s
  graceful-restart: true
address-pools:
- name: routed
  protocol: bgp
  addresses: [198.51.100.10/31]
"""
SERVICE = """
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  type: LoadBalancer
  loadBalancerIP: {ip}
  ports: [{{port: 80}}]
"""


@pytest.mark.parametrize("kind", ["bird", "frr"])
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
class TestHitlessRestart:
    """A client pinging a service address through the router loses nothing while the speaker restarts."""

    def test_ping_through_restart(self, kind, how, lab, make_router, tmp_path):
        """metallb standalone with graceful-restart is stopped and started again; not one ping is lost.

        Topology: client (203.0.113.2) - router (forwards, installs BGP routes in its kernel) - node
        (the service address on lo, as kube-proxy would answer for it). While the speaker is down,
        the second service is deleted: after the restart its route is gone from the router's kernel.
        """
        netlab = lab.netlab
        cli = netlab.ns("cli")
        netlab.veth(cli, "c0", lab.rtr, "r1")
        netlab.run(cli, "ip addr add 203.0.113.2/24 dev c0 && ip route add default via 203.0.113.1")
        netlab.run(lab.rtr, "ip addr add 203.0.113.1/24 dev r1 && sysctl -qw net.ipv4.ip_forward=1")
        netlab.run(lab.node, "ip addr add 198.51.100.10/32 dev lo && ip route add default via 192.0.2.1")
        router = make_router(kind, asn=64513, peer_asn=64512, graceful_restart=True, kernel=True)
        (tmp_path / "config.yaml").write_text(CONFIG)
        services = tmp_path / "services.yaml"
        services.write_text(
            SERVICE.format(name="web", ip="198.51.100.10") + "---" + SERVICE.format(name="old", ip="198.51.100.11")
        )

        def kernel_routes() -> str:
            return netlab.run(lab.rtr, "ip route show proto bird; ip route show proto bgp").stdout

        def routed(ip: str) -> bool:
            """The router's kernel forwards *ip* to the node (zebra adds an nhid)."""
            return re.search(rf"^{re.escape(ip)} (nhid \d+ )?via 192\.0\.2\.2 ", kernel_routes(), re.M) is not None

        def start() -> subprocess.Popen[bytes]:
            argv = [sys.executable, "-m", "metallb.operator", "standalone", "--node", "n1",
                    "--config", str(tmp_path / "config.yaml"), "--services", str(services),
                    "--state", str(tmp_path / "state.json"), "--metrics-port", "0"]  # fmt: skip
            with open(tmp_path / "standalone.log", "ab") as log:  # the child keeps its own copy of the fd
                return netlab.popen(lab.node, argv, stdout=subprocess.DEVNULL, stderr=log, cwd="/")

        def wait(predicate, what: str, timeout: float = 30) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                assert time.monotonic() < deadline, (
                    f"{what}\n{kernel_routes()}\n" + (tmp_path / "standalone.log").read_text()[-3000:]
                )
                time.sleep(0.1)

        speaker = start()
        wait(lambda: routed("198.51.100.10") and routed("198.51.100.11"), "routes in the router's kernel")
        ping = netlab.popen(cli, ["ping", "-n", "-i", "0.01", "198.51.100.10"], stdout=subprocess.PIPE)
        time.sleep(1)
        speaker.send_signal(getattr(signal, how))
        speaker.wait(15)
        wait(lambda: in_restart(router), f"{kind} to hold our routes as stale")
        services.write_text(SERVICE.format(name="web", ip="198.51.100.10"))  # ns old deleted meanwhile
        time.sleep(1)
        assert routed("198.51.100.11")  # kept, stale, while we are away
        start()
        wait(lambda: not routed("198.51.100.11") and not in_restart(router), "End-of-RIB clean-up")
        time.sleep(0.5)
        ping.send_signal(signal.SIGINT)
        out = ping.communicate(timeout=10)[0].decode()
        sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
        assert sent > 200 and received == sent, out[-400:]
        assert routed("198.51.100.10")
        assert os.path.exists(tmp_path / "state.json")
