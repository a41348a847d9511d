"""The layer-2 announcer against real clients (arping, ndisc6, the client kernel) in namespaces."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

import netaddr
import pytest
from metallb.allocator.interfaces import Announcer, AnnouncerSettings
from metallb.allocator.model import Config, L2Advertisement, NodeInfo, PoolSpec, ServiceView
from metallb.allocator.plugins import get_plugin_manager
from metallb.announcers.layer2 import responder as l2_responder
from metallb.announcers.layer2.packets import checksum, mac_bytes
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.netns

BCAST = b"\xff" * 6
CLIENT_MAC = "02:00:00:00:00:c0"
NODE_MAC = "02:00:00:00:00:0a"
NODE_B_MAC = "02:00:00:00:00:0b"
VIP4 = netaddr.IPAddress("192.0.2.100")
VIP6 = netaddr.IPAddress("2001:db8:1::100")
OTHER4 = netaddr.IPAddress("192.0.2.101")
OTHER6 = netaddr.IPAddress("2001:db8:1::101")


def make_pool(*, interfaces: tuple[str, ...] = ()) -> PoolSpec:
    """A layer-2 pool over the documentation ranges the tests use."""
    return PoolSpec(
        name="l2",
        kind="address-pools",
        cidrs=(netaddr.IPNetwork("192.0.2.96/28"), netaddr.IPNetwork("2001:db8:1::100/120")),
        advertisements=(L2Advertisement(interfaces=interfaces),),
    )


def make_service(key: str = "default/web", *ips: netaddr.IPAddress, pool: PoolSpec | None = None) -> ServiceView:
    """A service with *ips* (default: both service addresses) from *pool*."""
    return ServiceView(key=key, ips=ips or (VIP4, VIP6), pool=pool or make_pool())


def sample(registry: CollectorRegistry, metric: str, ip: object) -> float:
    """A layer-2 counter's value for *ip* (0 when never touched)."""
    return registry.get_sample_value(f"metallb_layer2_{metric}_total", {"ip": str(ip)}) or 0.0


def arp_request(target: netaddr.IPAddress, *, dst: bytes = BCAST, op: int = 1) -> bytes:
    """An ARP request from the client for *target*."""
    mac = mac_bytes(CLIENT_MAC)
    return (
        dst
        + mac
        + b"\x08\x06\x00\x01\x08\x00\x06\x04"
        + struct.pack("!H", op)
        + mac
        + netaddr.IPAddress("192.0.2.1").packed
        + bytes(6)
        + target.packed
    )


def solicitation(
    target: netaddr.IPAddress, *, hlim: int = 255, options: bytes | None = None, source: str = "2001:db8:1::1"
) -> bytes:
    """A Neighbor Solicitation from the client for *target*, to its solicited-node group."""
    mac = mac_bytes(CLIENT_MAC)
    src = bytes(netaddr.IPAddress(source).packed)
    tgt = bytes(target.packed)
    group = bytes(netaddr.IPAddress("ff02::1:ff00:0").packed)[:13] + tgt[13:]
    opts = b"\x01\x01" + mac if options is None else options
    body = b"\x87\x00\x00\x00\x00\x00\x00\x00" + tgt + opts
    csum = checksum(src + group + struct.pack("!IxxxB", len(body), 58) + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    ip6 = b"\x60\x00\x00\x00" + struct.pack("!HBB", len(body), 58, hlim) + src + group
    return b"\x33\x33\xff" + tgt[13:] + mac + b"\x86\xdd" + ip6 + body


def replies_for(frames: list[bytes], address: netaddr.IPAddress) -> list[bytes]:
    """The ARP replies or Neighbor Advertisements among *frames* that answer for *address*."""
    packed = bytes(address.packed)
    out = []
    for f in frames:
        if (f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" and f[28:32] == packed and f[0:6] != BCAST) or (
            f[12:14] == b"\x86\xdd" and len(f) >= 78 and f[54] == 136 and f[62:78] == packed and f[0] & 1 == 0
        ):
            out.append(f)
    return out


class TestPlugin:
    """The plugin module and its factory hook."""

    def test_factory_builds_a_layer2_announcer(self, l2lab):
        """The hook, loaded from the entry point, returns an Announcer for protocol layer2."""
        pm = get_plugin_manager(allow=["layer2"])
        settings = AnnouncerSettings(node_name="node", netns=f"/run/netns/{l2lab.node}", registry=CollectorRegistry())
        announcer = pm.hook.metallb_make_announcer(protocol="layer2", settings=settings)
        l2lab.announcers.append(announcer)
        assert isinstance(announcer, Announcer)
        assert announcer.protocol == "layer2"

    def test_factory_ignores_other_protocols(self):
        """The hook returns None for any protocol but layer2, so other plugins get their turn."""
        pm = get_plugin_manager(allow=["layer2"])
        assert pm.hook.metallb_make_announcer(protocol="bgp", settings=AnnouncerSettings(node_name="n")) is None

    def test_close_is_idempotent_and_stops_answering(self, l2lab):
        """After close the address gets no answer, and a second close does nothing."""
        announcer = l2lab.announcer()
        announcer.announce(make_service())
        assert l2lab.arping(VIP4) == [NODE_MAC]
        announcer.close()
        announcer.close()
        assert l2lab.arping(VIP4) == []


class TestArp:
    """Answers to ARP requests, checked with arping."""

    def test_arping_gets_our_mac(self, l2lab):
        """An announced IPv4 address is answered with the node's MAC."""
        l2lab.announcer().announce(make_service())
        assert l2lab.arping(VIP4, count=2) == [NODE_MAC, NODE_MAC]

    def test_no_answer_for_other_addresses(self, l2lab):
        """An address not announced gets no reply."""
        l2lab.announcer().announce(make_service())
        assert l2lab.arping(OTHER4) == []

    def test_no_answer_after_withdraw(self, l2lab):
        """Withdrawing the service stops the replies."""
        announcer = l2lab.announcer()
        announcer.announce(make_service())
        assert l2lab.arping(VIP4) == [NODE_MAC]
        announcer.withdraw("default/web")
        assert l2lab.arping(VIP4) == []

    def test_counters_match_what_the_client_saw(self, l2lab):
        """requests_received and responses_sent equal the replies arping received."""
        registry = CollectorRegistry()
        l2lab.announcer(registry=registry).announce(make_service())
        seen = l2lab.arping(VIP4, count=3)
        assert len(seen) == 3
        assert sample(registry, "responses_sent", VIP4) == 3
        assert sample(registry, "requests_received", VIP4) == 3

    def test_reply_is_unicast_to_the_asker(self, l2lab):
        """The reply goes to the requester's MAC and IP, from the announced address."""
        l2lab.announcer().announce(make_service())
        got = replies_for(l2lab.exchange([arp_request(VIP4)]), VIP4)
        assert len(got) == 1
        reply = got[0]
        assert reply[0:6] == mac_bytes(CLIENT_MAC)
        assert reply[22:28] == mac_bytes(NODE_MAC)
        assert reply[32:38] == mac_bytes(CLIENT_MAC)
        assert reply[38:42] == netaddr.IPAddress("192.0.2.1").packed

    def test_requests_to_another_mac_or_replies_are_ignored(self, l2lab):
        """Requests unicast to some other MAC, and ARP replies, get no answer; ours to our MAC do."""
        l2lab.announcer().announce(make_service())
        frames = [arp_request(VIP4, dst=mac_bytes("02:00:00:00:00:99")), arp_request(VIP4, op=2)]
        assert replies_for(l2lab.exchange(frames), VIP4) == []
        assert len(replies_for(l2lab.exchange([arp_request(VIP4, dst=mac_bytes(NODE_MAC))]), VIP4)) == 1

    def test_address_never_given_to_the_kernel(self, l2lab, netlab):
        """The service address is neither on an interface nor a proxy neighbour."""
        l2lab.announcer().announce(make_service())
        l2lab.wait_answering(l2lab.announcers[0], "n0", VIP4, VIP6)
        text = netlab.run(l2lab.node, "ip addr; ip -4 neigh show proxy; ip -6 neigh show proxy").stdout
        assert str(VIP4) not in text
        assert str(VIP6) not in text


class TestNdp:
    """Answers to Neighbor Solicitations, checked with ndisc6."""

    def test_ndisc6_gets_our_mac(self, l2lab):
        """An announced IPv6 address is answered with the node's MAC."""
        announcer = l2lab.announcer()
        announcer.announce(make_service())
        l2lab.wait_answering(announcer, "n0", VIP6)
        assert l2lab.ndisc6(VIP6) == NODE_MAC

    def test_no_answer_for_other_addresses_or_after_withdraw(self, l2lab):
        """Other addresses get nothing; the announced one gets nothing once withdrawn."""
        registry = CollectorRegistry()
        announcer = l2lab.announcer(registry=registry)
        announcer.announce(make_service())
        l2lab.wait_answering(announcer, "n0", VIP6)
        assert l2lab.ndisc6(OTHER6) is None
        assert l2lab.ndisc6(VIP6) == NODE_MAC
        announcer.withdraw("default/web")
        assert l2lab.ndisc6(VIP6) is None
        assert sample(registry, "responses_sent", VIP6) == 1

    def test_joins_and_leaves_the_solicited_node_group(self, l2lab, netlab):
        """The group of an announced address is joined, and left when the last user goes."""
        announcer = l2lab.announcer()
        other = netaddr.IPAddress("2001:db8:2::100")  # same low 24 bits, so the same group
        announcer.announce(make_service("a/one", VIP6))
        announcer.announce(make_service("a/two", other))
        l2lab.wait_answering(announcer, "n0", VIP6, other)

        def groups() -> str:
            return netlab.run(l2lab.node, "ip maddr show dev n0").stdout

        assert "ff02::1:ff00:100" in groups()
        assert "33:33:ff:00:01:00" in groups()
        announcer.withdraw("a/one")
        assert "ff02::1:ff00:100" in groups()
        announcer.withdraw("a/two")
        assert "ff02::1:ff00:100" not in groups()

    def test_advertisement_is_solicited_from_the_address_with_hop_limit_255(self, l2lab):
        """The reply is a solicited NA (S=1, O=0) with our MAC as target link-layer option."""
        announcer = l2lab.announcer()
        announcer.announce(make_service())
        l2lab.wait_answering(announcer, "n0", VIP6)
        got = replies_for(l2lab.exchange([solicitation(VIP6)]), VIP6)
        assert len(got) == 1
        na = got[0]
        assert na[0:6] == mac_bytes(CLIENT_MAC)
        assert na[21] == 255
        assert na[22:38] == VIP6.packed
        assert na[38:54] == netaddr.IPAddress("2001:db8:1::1").packed
        assert na[58] == 0x40
        assert na[78:80] == b"\x02\x01"
        assert na[80:86] == mac_bytes(NODE_MAC)

    def test_solicitations_without_source_link_layer_option_are_ignored(self, l2lab):
        """No source link-layer option, a DAD probe, or a hop limit below 255: no answer."""
        announcer = l2lab.announcer()
        announcer.announce(make_service())
        l2lab.wait_answering(announcer, "n0", VIP6)
        frames = [
            solicitation(VIP6, options=b""),
            solicitation(VIP6, options=b"", source="::"),
            solicitation(VIP6, hlim=64),
        ]
        assert replies_for(l2lab.exchange(frames), VIP6) == []
        assert len(replies_for(l2lab.exchange([solicitation(VIP6)]), VIP6)) == 1


class TestSharing:
    """Services sharing an address: counted per address."""

    def test_shared_address_answered_until_the_last_service_goes(self, l2lab):
        """Withdrawing one of two services on an address keeps answering for the other."""
        announcer = l2lab.announcer()
        announcer.announce(make_service("a/one", VIP4))
        announcer.announce(make_service("a/two", VIP4))
        announcer.withdraw("a/one")
        assert l2lab.arping(VIP4) == [NODE_MAC]
        announcer.withdraw("a/two")
        assert l2lab.arping(VIP4) == []

    def test_announce_is_idempotent(self, l2lab):
        """Announcing a service twice needs only one withdraw."""
        announcer = l2lab.announcer()
        announcer.announce(make_service("a/one", VIP4))
        announcer.announce(make_service("a/one", VIP4))
        announcer.withdraw("a/one")
        announcer.withdraw("a/one")
        assert l2lab.arping(VIP4) == []

    def test_new_addresses_replace_old_ones(self, l2lab):
        """Announcing a service again with another address stops answering for the old one."""
        announcer = l2lab.announcer()
        announcer.announce(make_service("a/one", VIP4))
        announcer.announce(make_service("a/one", OTHER4))
        assert l2lab.arping(VIP4) == []
        assert l2lab.arping(OTHER4) == [NODE_MAC]

    def test_takeovers_count_new_addresses_only(self, l2lab):
        """``metallb_layer2_takeovers_total`` counts an address when this node starts answering for it, once."""
        registry = CollectorRegistry()
        announcer = l2lab.announcer(registry=registry)
        announcer.announce(make_service("a/one", VIP4))
        announcer.announce(make_service("a/one", VIP4))
        announcer.announce(make_service("a/two", VIP4))
        announcer.withdraw("a/one")
        announcer.withdraw("a/two")
        announcer.announce(make_service("a/one", VIP4))
        assert sample(registry, "takeovers", VIP4) == 2


class TestInterfaces:
    """Which interfaces answer, as they come and go."""

    def test_pool_interfaces_restrict_answers(self, l2lab, netlab):
        """A pool naming other interfaces (by pattern) is not answered on n0."""
        netlab.veth(l2lab.node, "x0", l2lab.node, "x1")
        announcer = l2lab.announcer()
        announcer.announce(make_service("a/x", VIP4, pool=make_pool(interfaces=("x*",))))
        announcer.announce(make_service("a/n", OTHER4, pool=make_pool(interfaces=("n0",))))
        answering = announcer.responder.answering()
        assert answering["x0"] == answering["x1"] == (str(VIP4),)
        assert answering["n0"] == (str(OTHER4),)
        assert l2lab.arping(VIP4) == []
        assert l2lab.arping(OTHER4) == [NODE_MAC]

    def test_config_change_moves_answers(self, l2lab, netlab):
        """A new config naming other interfaces for the pool moves the answers there."""
        netlab.veth(l2lab.node, "x0", l2lab.node, "x1")
        announcer = l2lab.announcer()
        announcer.announce(make_service("a/x", VIP4, pool=make_pool(interfaces=("x*",))))
        assert l2lab.arping(VIP4) == []
        announcer.set_config(Config(pools={"l2": make_pool(interfaces=("n0",))}), NodeInfo(name="node"))
        assert announcer.responder.answering()["n0"] == (str(VIP4),)
        assert l2lab.arping(VIP4) == [NODE_MAC]

    def test_speaker_interfaces_setting_restricts_every_pool(self, l2lab, netlab):
        """With the speaker's interfaces set, other interfaces get no responder at all."""
        netlab.veth(l2lab.node, "x0", l2lab.node, "x1")
        announcer = l2lab.announcer(interfaces=("x0",))
        announcer.announce(make_service())
        assert set(announcer.responder.answering()) == {"x0"}
        assert l2lab.arping(VIP4) == []

    def test_down_and_noarp_interfaces_are_skipped(self, l2lab, netlab):
        """Interfaces that are down or have NOARP get no responder; n0 keeps answering."""
        netlab.veth(l2lab.node, "x0", l2lab.node, "x1")
        netlab.run(l2lab.node, "ip link set x0 arp off && ip link set x1 down")
        announcer = l2lab.announcer()
        announcer.announce(make_service("a/one", VIP4))
        assert set(announcer.responder.answering()) == {"n0"}
        assert l2lab.arping(VIP4) == [NODE_MAC]

    def test_bridge_ports_are_skipped_and_the_bridge_answers(self, l2lab, netlab):
        """n0 enslaved to a snooping bridge gets no responder; the bridge answers and reports its group."""
        netlab.run(
            l2lab.node,
            "ip link add br0 address 02:00:00:00:00:bb type bridge mcast_snooping 1 mcast_querier 1"
            " && ip link set n0 master br0 && ip link set br0 up",
        )
        announcer = l2lab.announcer()
        announcer.announce(make_service())
        l2lab.wait_answering(announcer, "br0", VIP4, VIP6)
        assert set(announcer.responder.answering()) == {"br0"}
        assert l2lab.arping(VIP4) == ["02:00:00:00:00:bb"]
        assert l2lab.ndisc6(VIP6) == "02:00:00:00:00:bb"
        # The MLD report reached the bridge: a snooping switch would forward the group to us.
        assert "port br0 grp ff02::1:ff00:100" in netlab.run(l2lab.node, "bridge mdb show").stdout

    def test_interfaces_that_appear_later_answer_and_join_groups(self, l2lab, netlab):
        """An interface created after the announcement gets a responder and the group membership."""
        announcer = l2lab.announcer()
        announcer.announce(make_service())
        netlab.veth(l2lab.node, "late0", l2lab.client, "late1", mac_a="02:00:00:00:00:1a")
        l2lab.wait_answering(announcer, "late0", VIP4, VIP6)
        assert "ff02::1:ff00:100" in netlab.run(l2lab.node, "ip maddr show dev late0").stdout
        deadline = time.monotonic() + 3  # ndisc6 needs the client's link-local address too
        while "fe80::" not in netlab.run(l2lab.client, "ip -6 addr show dev late1").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        out = netlab.run(l2lab.client, f"ndisc6 -q -1 -r 2 -w 300 {VIP6} late1", check=False).stdout
        assert out.strip().lower() == "02:00:00:00:00:1a"
        netlab.run(l2lab.node, "ip link del late0")
        deadline = time.monotonic() + 2
        while "late0" in announcer.responder.answering() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "late0" not in announcer.responder.answering()

    def test_one_failing_interface_does_not_stop_the_others(self, l2lab, netlab, monkeypatch):
        """When opening one interface fails, the others still get responders."""
        netlab.veth(l2lab.node, "x0", l2lab.node, "x1")
        real = l2_responder._Port.__init__

        def failing(self, link, rcvbuf):
            if link.name == "x0":
                raise OSError(19, "No such device")
            real(self, link, rcvbuf)

        monkeypatch.setattr(l2_responder._Port, "__init__", failing)
        announcer = l2lab.announcer()
        announcer.announce(make_service("a/one", VIP4))
        assert set(announcer.responder.answering()) == {"n0", "x1"}
        assert l2lab.arping(VIP4) == [NODE_MAC]


class TestGratuitous:
    """Gratuitous ARP and unsolicited NA on taking over an address."""

    def test_first_round_is_sent_at_once(self, l2lab):
        """Announcing sends a broadcast ARP request and reply and an unsolicited NA (O=1) at once."""
        announcer = l2lab.announcer()
        # Settle the link-local address first, so the NDP responder exists when we announce.
        announcer.announce(make_service("warm/up", OTHER6))
        l2lab.wait_answering(announcer, "n0", OTHER6)
        box: list[list[bytes]] = []
        capture = threading.Thread(target=lambda: box.append(l2lab.exchange([], wait=0.5)))
        capture.start()
        time.sleep(0.15)
        announcer.announce(make_service())
        capture.join()
        frames = box[0]
        v4 = [f for f in frames if f[12:14] == b"\x08\x06" and f[28:32] == VIP4.packed]
        assert sorted(f[20:22] for f in v4) == [b"\x00\x01", b"\x00\x02"]
        assert all(f[0:6] == BCAST and f[38:42] == VIP4.packed and f[32:38] == BCAST for f in v4)
        na = [f for f in frames if f[12:14] == b"\x86\xdd" and f[54] == 136 and f[62:78] == VIP6.packed]
        assert len(na) == 1
        assert na[0][0:6] == b"\x33\x33\x00\x00\x00\x01"
        assert na[0][21] == 255
        assert na[0][58] == 0x20

    def test_rounds_every_1_1_s_for_5_s_and_none_once_withdrawn(self, l2lab):
        """A held address gets 5 rounds in 5 s then stops; a withdrawn one gets only the first round."""
        registry = CollectorRegistry()
        announcer = l2lab.announcer(registry=registry)
        announcer.announce(make_service("a/kept", VIP4))
        announcer.announce(make_service("a/gone", OTHER4))
        announcer.withdraw("a/gone")
        time.sleep(5.8)
        assert sample(registry, "gratuitous_sent", VIP4) == 10
        assert sample(registry, "gratuitous_sent", OTHER4) == 2


class TestTakeover:
    """Failover between two nodes on one bridge."""

    def test_client_cache_moves_to_the_new_node_within_1_s(self, bridged, netlab):
        """After A withdraws and B announces, the client's neighbour cache shows B's MAC within 1 s."""
        a = bridged.announcer(bridged.node)
        b_registry = CollectorRegistry()
        b = bridged.announcer(bridged.node_b, registry=b_registry)
        service = make_service()
        a.announce(service)
        bridged.wait_answering(a, "n0", VIP4, VIP6)

        def talk() -> None:  # makes the client kernel resolve both addresses
            for family, ip in ((socket.AF_INET, VIP4), (socket.AF_INET6, VIP6)):
                with socket.socket(family, socket.SOCK_DGRAM) as s:
                    s.sendto(b"x", (str(ip), 9))

        bridged.in_client(talk)
        deadline = time.monotonic() + 3
        while (bridged.neigh(VIP4), bridged.neigh(VIP6)) != (NODE_MAC, NODE_MAC):
            assert time.monotonic() < deadline, "the client never resolved the addresses to node A"
            time.sleep(0.02)
        while "fe80::" not in netlab.run(bridged.node_b, "ip -6 addr show dev n0").stdout:  # B can do NDP
            assert time.monotonic() < deadline, "node B never got a link-local address"
            time.sleep(0.02)
        b.responder.rescan()
        start = time.monotonic()
        a.withdraw(service.key)
        b.announce(service)
        while (bridged.neigh(VIP4), bridged.neigh(VIP6)) != (NODE_B_MAC, NODE_B_MAC):
            assert time.monotonic() - start < 1.0, (bridged.neigh(VIP4), bridged.neigh(VIP6))
            time.sleep(0.02)
        # The client never asked B: the gratuitous frames alone moved its cache.
        assert sample(b_registry, "requests_received", VIP4) == 0
        assert sample(b_registry, "requests_received", VIP6) == 0
        assert sample(b_registry, "gratuitous_sent", VIP4) >= 2


class TestGarbage:
    """Malformed frames and floods never stop the responder."""

    def test_malformed_frames_get_no_reply(self, l2lab):
        """Truncated, mis-sized, wrongly typed and VLAN-tagged requests, random bytes, floods: no reply, no harm."""
        registry = CollectorRegistry()
        announcer = l2lab.announcer(registry=registry)
        announcer.announce(make_service())
        l2lab.wait_answering(announcer, "n0", VIP4, VIP6)
        rng = random.Random(4)
        good_arp, good_ns = arp_request(VIP4), solicitation(VIP6)
        frames = [good_arp[:n] for n in range(14, len(good_arp))]
        frames += [good_ns[:n] for n in range(14, len(good_ns))]
        frames += [
            good_arp[:14] + b"\x00\x01\x08\x00\x10\x04" + good_arp[20:],  # hardware length 16
            good_arp[:14] + b"\x00\x06\x08\x00\x06\x04" + good_arp[20:],  # not Ethernet
            good_arp[:22] + b"\x01" + good_arp[23:],  # multicast sender MAC
            good_arp[:12] + b"\x81\x00\x00\x07" + good_arp[12:],  # tagged for VLAN 7: not this network
            good_ns[:12] + b"\x81\x00\x00\x07" + good_ns[12:],
            good_ns[:19] + b"\xff" + good_ns[20:],  # payload length beyond the frame
            good_ns[:56] + b"\x00\x00" + good_ns[58:],  # bad checksum
            good_ns[:20] + b"\x3b" + good_ns[21:],  # next header not ICMPv6
            solicitation(VIP6, options=b"\x01\x00" + bytes(6)),  # zero-length option
            solicitation(VIP6, options=b"\x01\x02" + bytes(6)),  # option past the end
            solicitation(VIP6, options=b"\x0e\x01" + bytes(6)),  # only an unknown option
        ]
        frames += [bytes(rng.getrandbits(8) for _ in range(rng.randrange(14, 200))) for _ in range(300)]
        # A flood of well-formed requests for addresses we do not announce.
        frames += [arp_request(netaddr.IPAddress(f"192.0.2.{n}")) for n in range(110, 250)] * 20
        frames += [solicitation(netaddr.IPAddress(f"2001:db8:1::{n:x}")) for n in range(0x110, 0x150)] * 20
        got = l2lab.exchange(frames, wait=0.5)
        assert replies_for(got, VIP4) == []
        assert replies_for(got, VIP6) == []
        assert sample(registry, "responses_sent", VIP4) == 0
        assert sample(registry, "responses_sent", VIP6) == 0
        assert l2lab.arping(VIP4) == [NODE_MAC]
        assert l2lab.ndisc6(VIP6) == NODE_MAC

    def test_fuzzed_requests_are_answered_only_when_valid(self, l2lab):
        """Randomly mutated requests never stop the responder, and every reply sent reached the client."""
        registry = CollectorRegistry()
        announcer = l2lab.announcer(registry=registry)
        announcer.announce(make_service())
        l2lab.wait_answering(announcer, "n0", VIP4, VIP6)
        rng = random.Random(5)
        frames = []
        for good in (arp_request(VIP4), solicitation(VIP6)):
            for _ in range(1500):
                frame = bytearray(good)
                for _ in range(rng.randrange(1, 4)):
                    frame[rng.randrange(len(frame))] = rng.getrandbits(8)
                cut = rng.choice((len(frame), len(frame), rng.randrange(14, len(frame) + 16)))
                frames.append(bytes(frame[:cut]) + bytes(max(0, cut - len(frame))))
        got = l2lab.exchange(frames, wait=0.5)
        assert len(replies_for(got, VIP4)) == sample(registry, "responses_sent", VIP4) > 0
        assert len(replies_for(got, VIP6)) == sample(registry, "responses_sent", VIP6) > 0
        assert l2lab.arping(VIP4) == [NODE_MAC]
        assert l2lab.ndisc6(VIP6) == NODE_MAC
