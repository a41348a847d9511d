"""Link-local IPv6 peers with an interface: BIRD, GoBGP and FRR peering with us over fe80:: addresses."""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import netaddr
import pytest
from metallb.allocator import parse_config
from metallb.allocator.convert import config_to_resources
from metallb.allocator.model import Config
from metallb.announcers.bgp import plugin

pytestmark = pytest.mark.netns

RTR_LL, NODE_LL = "fe80::1", "fe80::2"
PREFIXES = {"198.51.100.10/32", "2001:db8:ff::10/128"}


def bgp_wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 15
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start(kind: str, lab: Any) -> Any:
    """A passive router (AS 64513) peering with fe80::2 on r0; returns a function reading its table."""
    path = lambda name: os.path.join(lab.workdir, name)  # noqa: E731
    if kind == "bird":
        with open(path("bird.conf"), "w") as fh:
            fh.write(f"""
router id 192.0.2.1;
protocol device {{ }}
protocol bgp speaker {{
  local {RTR_LL} as 64513; neighbor {NODE_LL}%r0 as 64512; interface "r0";
  passive on; direct; hold time 9; error wait time 1, 5;
  ipv4 {{ import all; export none; }}; ipv6 {{ import all; export none; }};
}}
""")
        lab.netlab.popen(lab.rtr, ["bird", "-f", "-c", path("bird.conf"), "-s", path("bird.ctl")])

        def table() -> dict[str, str]:
            out = ""
            for t in ("master4", "master6"):
                out += lab.run(lab.rtr, f"birdc -s {path('bird.ctl')} show route all table {t}", check=False).stdout
            return dict(re.findall(r"^([0-9a-f.:]+/\d+)\s+unicast.*?BGP\.next_hop: (\S+)", out, re.M | re.S))

    elif kind == "gobgp":
        with open(path("gobgpd.toml"), "w") as fh:
            fh.write(f"""
[global.config]
  as = 64513
  router-id = "192.0.2.1"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{NODE_LL}%r0"
    peer-as = 64512
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
""")
        argv = ["gobgpd", "-f", path("gobgpd.toml"), "-p", "--api-hosts", "127.0.0.1:50051", "--pprof-disable"]
        lab.netlab.popen(lab.rtr, argv)

        def table() -> dict[str, str]:
            out: dict[str, str] = {}
            for family in (4, 6):
                text = lab.run(lab.rtr, f"gobgp -u 127.0.0.1 -p 50051 global rib -a ipv{family} -j", check=False).stdout
                for prefix, paths in (json.loads(text) if text.strip() not in ("", "null") else {}).items():
                    attrs = {a["type"]: a for a in paths[0]["attrs"]}
                    out[prefix] = attrs[14]["nexthop"] if 14 in attrs else attrs[3]["nexthop"]
            return out

    else:
        vty = path("vty")
        os.makedirs(vty, exist_ok=True)
        os.chmod(vty, 0o777)
        with open(path("bgpd.conf"), "w") as fh:
            fh.write(
                "frr defaults traditional\nrouter bgp 64513\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n"
                f" neighbor {NODE_LL} remote-as 64512\n neighbor {NODE_LL} interface r0\n neighbor {NODE_LL} passive\n"
                f" neighbor {NODE_LL} timers 3 9\n address-family ipv4 unicast\n  neighbor {NODE_LL} activate\n"
                f" exit-address-family\n address-family ipv6 unicast\n  neighbor {NODE_LL} activate\n"
                " exit-address-family\n"
            )
        # bgpd needs zebra's interface list to place a connection from a link-local address.
        zserv = os.path.join(vty, "zserv.api")
        common = ["-z", zserv, "--vty_socket", vty, "-P", "0"]
        lab.netlab.popen(lab.rtr, ["/usr/lib/frr/zebra", *common, "-f", "/dev/null", "-i", path("zebra.pid")])
        bgp_wait(lambda: os.path.exists(zserv), "zebra")
        lab.netlab.popen(lab.rtr, ["/usr/lib/frr/bgpd", *common, "-f", path("bgpd.conf"), "-i", path("bgpd.pid")])

        def vtysh(cmd: str) -> str:
            return lab.run(lab.rtr, f"vtysh --vty_socket {vty} -c '{cmd}'", check=False).stdout

        def table() -> dict[str, str]:
            out: dict[str, str] = {}
            for family in (4, 6):
                for prefix, paths in (
                    json.loads(vtysh(f"show bgp ipv{family} unicast json") or "{}").get("routes", {}).items()
                ):
                    hops = [n["ip"] for n in paths[0].get("nexthops", []) if n.get("scope", "global") == "global"]
                    out[prefix] = hops[0] if hops else ""
            return out

        bgp_wait(lambda: NODE_LL in vtysh("show bgp neighbors json"), "bgpd to read its configuration")
    return table


@pytest.mark.parametrize("kind", ["bird", "gobgp", "frr"])
class TestLinkLocalPeer:
    """peer-address fe80::1 with interface n0."""

    def test_session_and_next_hops(self, kind, lab, make_speaker, bgp):
        """The session comes up over the link-local addresses; IPv6 routes carry the global address as next hop."""
        lab.run(lab.rtr, f"ip addr add {RTR_LL}/64 dev r0 nodad")
        lab.run(lab.node, f"ip addr add {NODE_LL}/64 dev n0 nodad")
        table = start(kind, lab)
        speaker = make_speaker()
        pool = bgp.bgp_pool("198.51.100.0/24", "2001:db8:ff::/64")
        peer = bgp.peer(64512, 64513, peer_address=netaddr.IPAddress(RTR_LL), interface="n0")
        speaker.announcer.set_config(Config(pools={pool.name: pool}, peers=(peer,)), speaker.node)
        speaker.announcer.announce(bgp.service("ns/a", "198.51.100.10", "2001:db8:ff::10", pool=pool))
        speaker.wait_established(timeout=20)
        bgp.wait_for(lambda: set(table()) == PREFIXES, timeout=10, what=f"{kind} to receive both routes")
        hops = table()
        assert hops["198.51.100.10/32"] == bgp.NODE4
        assert hops["2001:db8:ff::10/128"] == bgp.NODE6
        status = speaker.announcer.sessions()[0]
        assert (status.peer, status.local_address) == (f"[{RTR_LL}%n0]:179", NODE_LL)


class TestLinkLocalConfig:
    """A link-local peer in the model, the BGP plugin's report and the resource conversion."""

    def test_interface_is_the_scope_and_applied(self):
        """peer-address fe80::1 with interface eth0 parses, starts a session and has nothing reported unapplied."""
        config = parse_config("peers:\n- my-asn: 64500\n  peer-asn: 64501\n  peer-address: fe80::1\n  interface: eth0\n")
        (peer,) = config.peers
        assert (str(peer.peer_address), peer.interface) == ("fe80::1", "eth0")
        assert plugin.starts_session(peer) and plugin.metallb_unapplied_config(config) == []

    def test_conversion_notes_what_a_bgppeer_cannot_say(self):
        """convert-config writes the address alone (MetalLB rejects peerAddress with interface) and says so."""
        config = parse_config("peers:\n- my-asn: 64500\n  peer-asn: 64501\n  peer-address: fe80::1\n  interface: eth0\n")
        conversion = config_to_resources(config)
        (spec,) = [o["spec"] for o in conversion.objects if o["kind"] == "BGPPeer"]
        assert spec["peerAddress"] == "fe80::1" and "interface" not in spec
        assert any("fe80::1" in note and '"eth0"' in note for note in conversion.notes), conversion.notes
