"""Conflict probing (RFC 5227 ARP probes, IPv6 DAD) against real hosts in namespaces, and the announcer using it."""

from __future__ import annotations

import threading
import time
from typing import Any

import netaddr
import pytest
from metallb.allocator.model import ClusterView, L2Advertisement, NodeInfo, PoolSpec, ServiceView
from metallb.announcers.layer2.netlink import enter_netns
from metallb.announcers.layer2.packets import NdpAnswer, NeighborSolicitation, mac_bytes
from metallb.announcers.layer2.probe import PROBE_TIME, Conflict, arp_probe, dad_solicitation, probe
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.netns

CLIENT_MAC = "02:00:00:00:00:c0"  # as the l2lab fixture sets them
NODE_MAC = "02:00:00:00:00:0a"

TAKEN4 = netaddr.IPAddress("192.0.2.1")  # the client's own addresses: its kernel defends them
TAKEN6 = netaddr.IPAddress("2001:db8:1::1")
FREE4 = netaddr.IPAddress("192.0.2.100")
FREE6 = netaddr.IPAddress("2001:db8:1::100")
POOL = PoolSpec(
    name="l2",
    kind="address-pools",
    cidrs=(netaddr.IPNetwork("192.0.2.0/24"), netaddr.IPNetwork("2001:db8:1::/64")),
    advertisements=(L2Advertisement(),),
)
CLUSTER = ClusterView(node=NodeInfo(name="node"), live_speakers=frozenset({"node"}))


def service(*ips: netaddr.IPAddress, elsewhere: bool = False, key: str = "default/web") -> ServiceView:
    """A Service on *ips*; *elsewhere*: another of our nodes announced it (a move)."""
    return ServiceView(key=key, ips=ips, pool=POOL, announced_elsewhere=elsewhere)


def in_netns(ns: str, fn: Any) -> Any:
    """Run *fn* in a thread inside namespace *ns*; its result."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            enter_netns(f"/run/netns/{ns}")
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=30)
    if "error" in box:
        raise box["error"]
    return box.get("result")


def timed_probe(ns: str, address: netaddr.IPAddress, **kwargs: object) -> tuple[Conflict | None, float]:
    """Probe for *address* from namespace *ns*; the result and the seconds it took."""

    def run() -> tuple[Conflict | None, float]:
        start = time.monotonic()
        found = probe(address, **kwargs)  # type: ignore[arg-type]
        return found, time.monotonic() - start

    result: tuple[Conflict | None, float] = in_netns(ns, run)
    return result


class TestFrames:
    """The probe frames as RFC 5227 and RFC 4862 describe them."""

    def test_arp_probe_has_no_sender_address(self):
        """An ARP probe is a broadcast request with sender address 0.0.0.0 and the probed target."""
        frame = arp_probe(bytes.fromhex("02000000000a"), FREE4)
        assert frame[0:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x01"
        assert frame[28:32] == bytes(4) and frame[38:42] == FREE4.packed

    def test_dad_solicitation_comes_from_the_unspecified_address(self):
        """A DAD solicitation goes from :: to the target's solicited-node group, hop limit 255, no options."""
        frame = dad_solicitation(bytes.fromhex("02000000000a"), FREE6)
        assert frame[0:3] == b"\x33\x33\xff" and frame[3:6] == FREE6.packed[13:]
        assert frame[21] == 255 and frame[22:38] == bytes(16) and frame[54] == 135
        assert frame[62:78] == FREE6.packed and len(frame) == 78


class TestProbe:
    """probe() against the client's kernel, which answers for its own addresses."""

    def test_taken_ipv4_address_is_a_conflict_naming_the_mac(self, l2lab):
        """An ARP probe for an address the client holds gets the client's reply: a conflict with its MAC."""
        found, took = timed_probe(l2lab.node, TAKEN4)
        assert found == Conflict(address=TAKEN4, mac=CLIENT_MAC, interface="n0")
        assert took < PROBE_TIME
        assert "AddressConflict" in str(found) and CLIENT_MAC in str(found)

    def test_taken_ipv6_address_is_a_conflict_naming_the_mac(self, l2lab):
        """A DAD solicitation for an address the client holds gets its Neighbor Advertisement: a conflict."""
        found, _ = timed_probe(l2lab.node, TAKEN6)
        assert found == Conflict(address=TAKEN6, mac=CLIENT_MAC, interface="n0")

    @pytest.mark.parametrize("address", [FREE4, FREE6], ids=["ipv4", "ipv6"])
    def test_free_address_is_clean_within_a_second(self, l2lab, address):
        """Nobody answers for a free address: no conflict, after at most one second of probing."""
        found, took = timed_probe(l2lab.node, address)
        assert found is None
        assert took < 1.0

    def test_probes_leave_no_trace_in_the_neighbour_cache(self, l2lab):
        """A probe's sender address is 0.0.0.0, so the client learns no neighbour entry from it."""
        timed_probe(l2lab.node, FREE4)
        assert l2lab.neigh(FREE4) is None
        assert l2lab.neigh("0.0.0.0") is None

    def test_own_mac_is_never_a_conflict(self, l2lab):
        """The host's own interfaces' MACs, and MACs named as ours, never count: the client probing itself finds none."""
        found, _ = timed_probe(l2lab.client, TAKEN4)
        assert found is None  # the answer would come from c0's own MAC
        found, _ = timed_probe(l2lab.node, TAKEN4, own_macs=[bytes.fromhex(CLIENT_MAC.replace(":", ""))])
        assert found is None

    def test_only_the_pool_interfaces_are_probed(self, l2lab):
        """A pool restricted to other interfaces probes nowhere here: nothing found, at once."""
        found, took = timed_probe(l2lab.node, TAKEN4, patterns=("eth*",))
        assert found is None and took < 0.1


class TestAnnouncerProbes:
    """The layer-2 announcer with conflict_probe: new addresses are answered only once probed clean."""

    def test_taken_address_is_not_answered_and_reported(self, l2lab):
        """A new Service on an address the client holds: not answered, should_announce names the MAC, metric counts it."""
        notified = []
        registry = CollectorRegistry()
        announcer = l2lab.announcer(conflict_probe=True, notify=lambda: notified.append(1), registry=registry)
        svc = service(TAKEN4)
        assert announcer.should_announce(svc, CLUSTER) is None
        announcer.announce(svc)
        deadline = time.monotonic() + 3
        while (announcer.probing or not notified) and time.monotonic() < deadline:  # notify() comes just after
            time.sleep(0.02)
        assert notified, "the speaker was not told that the probe ended"
        reason = announcer.should_announce(svc, CLUSTER)
        assert reason is not None and reason.startswith("AddressConflict") and CLIENT_MAC in reason
        assert "192.0.2.1" not in announcer.responder.answering().get("n0", ())
        assert NODE_MAC not in l2lab.arping(TAKEN4, count=2)
        labels = {"ip": str(TAKEN4), "mac": CLIENT_MAC}
        assert registry.get_sample_value("metallb_layer2_address_conflicts_total", labels) == 1.0
        announcer.withdraw(svc.key)

    def test_free_address_is_answered_after_the_probe(self, l2lab):
        """A new Service on a free address is answered once the probe (under a second) found nobody."""
        announcer = l2lab.announcer(conflict_probe=True)
        start = time.monotonic()
        announcer.announce(service(FREE4, FREE6))
        assert announcer.probing == {FREE4, FREE6}
        assert announcer.status_of() == {}  # not answering yet: no announcement status either
        l2lab.wait_answering(announcer, "n0", FREE4, FREE6)
        assert time.monotonic() - start < 1.5
        assert l2lab.arping(FREE4) == [NODE_MAC]
        assert l2lab.ndisc6(FREE6) == NODE_MAC
        assert announcer.status_of() == {"default/web": ("n0",)}
        assert announcer.problems() == {}

    def test_a_move_is_not_probed(self, l2lab):
        """A Service another of our nodes announced (a failover or drain) is answered at once, even if taken."""
        announcer = l2lab.announcer(conflict_probe=True)
        announcer.announce(service(FREE4, elsewhere=True))
        assert announcer.probing == frozenset()
        assert str(FREE4) in announcer.responder.answering()["n0"]

    def test_without_conflict_probe_answers_at_once(self, l2lab):
        """conflict_probe off (the library default, --no-conflict-probe): answered at once, no probe."""
        announcer = l2lab.announcer()
        announcer.announce(service(FREE4))
        assert announcer.probing == frozenset()
        assert str(FREE4) in announcer.responder.answering()["n0"]

    def test_gratuitous_arp_from_another_host_is_reported(self, l2lab):
        """While answering, a gratuitous ARP from another host for the address is reported (problems, metric)."""
        registry = CollectorRegistry()
        announcer = l2lab.announcer(registry=registry)
        announcer.announce(service(FREE4))
        l2lab.wait_answering(announcer, "n0", FREE4)
        l2lab.netlab.run(l2lab.client, f"arping -U -c 2 -w 1 -i c0 -S {FREE4} {FREE4}", check=False)
        deadline = time.monotonic() + 3
        while not announcer.problems() and time.monotonic() < deadline:
            time.sleep(0.05)
        problem = announcer.problems().get("default/web", "")
        assert problem.startswith("AddressConflict") and CLIENT_MAC in problem
        labels = {"ip": str(FREE4), "mac": CLIENT_MAC}
        assert (registry.get_sample_value("metallb_layer2_address_conflicts_total", labels) or 0) >= 1


NODE_B_MAC = "02:00:00:00:00:0b"  # the bridged fixture's second node


def stranger_na(mac: str, address: netaddr.IPAddress, *, solicited_to: str | None = None) -> bytes:
    """A Neighbor Advertisement for *address* from *mac*: unsolicited (O=1, to all nodes), or solicited (S=1)
    and unicast to *solicited_to*."""
    answer = NdpAnswer(mac=mac_bytes(mac), address=bytes(address.packed))
    if solicited_to is None:
        return answer.gratuitous()
    request = NeighborSolicitation(
        source_ip=bytes(netaddr.IPAddress("fe80::a").packed), source_mac=mac_bytes(solicited_to),
        target=bytes(address.packed),
    )  # fmt: skip
    return answer.reply(request)


def wait_problem(announcer: Any, mac: str, limit: float = 3.0, since: float | None = None) -> tuple[str, float]:
    """Wait until the announcer reports a problem naming *mac*; the problem and the seconds since *since*."""
    start = time.monotonic() if since is None else since
    while time.monotonic() - start < limit:
        found = [p for p in announcer.problems().values() if mac in p]
        if found:
            return found[0], time.monotonic() - start
        time.sleep(0.005)
    raise AssertionError(f"no problem naming {mac}: {announcer.problems()}")


class TestClaimsWhileAnswering:
    """While answering, claims on our addresses by other hosts are reported; our own speakers' never are."""

    @pytest.mark.parametrize("solicited", [False, True], ids=["unsolicited", "solicited"])
    def test_a_strangers_neighbor_advertisement_is_reported(self, l2lab, solicited):
        """An NA from another host for an IPv6 address we answer for: problems() and the metric name its MAC."""
        registry = CollectorRegistry()
        announcer = l2lab.announcer(registry=registry)
        announcer.announce(service(FREE6))
        l2lab.wait_answering(announcer, "n0", FREE6)
        assert announcer.problems() == {}
        sent = time.monotonic()  # an upper bound: entering the client's namespace is included
        l2lab.exchange([stranger_na(CLIENT_MAC, FREE6, solicited_to=NODE_MAC if solicited else None)], wait=0)
        problem, took = wait_problem(announcer, CLIENT_MAC, since=sent)
        print(f"stranger's NA reported after {took * 1000:.1f} ms")
        assert problem == f"AddressConflict: {FREE6} is answered by {CLIENT_MAC} on n0"
        labels = {"ip": str(FREE6), "mac": CLIENT_MAC}
        assert registry.get_sample_value("metallb_layer2_address_conflicts_total", labels) == 1.0

    def test_a_gratuitous_arp_reply_from_a_stranger_is_reported(self, l2lab):
        """A gratuitous ARP reply (arping -A) from another host for our address is reported too."""
        announcer = l2lab.announcer()
        announcer.announce(service(FREE4))
        l2lab.wait_answering(announcer, "n0", FREE4)
        l2lab.netlab.run(l2lab.client, f"arping -A -c 1 -i c0 -S {FREE4} {FREE4}", check=False)
        problem, _ = wait_problem(announcer, CLIENT_MAC)
        assert problem.startswith(f"AddressConflict: {FREE4}")

    @pytest.mark.parametrize("known", [True, False], ids=["known", "unknown"])
    def test_another_speakers_takeover_frames_are_no_conflict_once_its_macs_are_known(self, bridged, known):
        """Node B takes over addresses node A still answers for (a failover back): its gratuitous ARP and
        unsolicited NA are reported by A only if B's MAC is not known as a speaker's; a stranger's always are."""
        friends_of_a = (lambda: frozenset({NODE_B_MAC})) if known else None
        registry = CollectorRegistry()
        a = bridged.announcer(registry=registry, peer_macs=friends_of_a)
        b = bridged.announcer(bridged.node_b, peer_macs=lambda: frozenset({NODE_MAC}))
        a.announce(service(FREE4, FREE6))
        bridged.wait_answering(a, "n0", FREE4, FREE6)
        bridged.wait_answering(b, "n0")  # B's responder is up (its link-local address too)
        b.announce(service(FREE4, FREE6, elsewhere=True))  # a move: gratuitous ARP and unsolicited NA at once
        bridged.wait_answering(b, "n0", FREE4, FREE6)
        # The stranger's claim comes after B's frames on the same link: once A reported it, it saw B's too.
        bridged.exchange([stranger_na(CLIENT_MAC, FREE6)], wait=0)
        wait_problem(a, CLIENT_MAC)
        if known:
            assert not [p for p in a.problems().values() if NODE_B_MAC in p]
            for ip in (FREE4, FREE6):
                labels = {"ip": str(ip), "mac": NODE_B_MAC}
                assert registry.get_sample_value("metallb_layer2_address_conflicts_total", labels) is None
        else:
            assert registry.get_sample_value(
                "metallb_layer2_address_conflicts_total", {"ip": str(FREE6), "mac": NODE_B_MAC}
            ), "without B's MAC known, its unsolicited NA is a conflict (the test would prove nothing)"
        assert not [p for p in b.problems().values() if NODE_MAC in p], "A's gratuitous frames, known to B"

    def test_another_speakers_probe_answer_is_no_conflict(self, bridged):
        """Node B answers for an address; node A's probe for it hears B, a known speaker: no conflict, answered."""
        b = bridged.announcer(bridged.node_b)
        b.announce(service(FREE4))
        bridged.wait_answering(b, "n0", FREE4)
        a = bridged.announcer(conflict_probe=True, peer_macs=lambda: frozenset({NODE_B_MAC}))
        a.announce(service(FREE4))
        bridged.wait_answering(a, "n0", FREE4)
        assert a.problems() == {}
        found, _ = timed_probe(bridged.node, FREE4)  # the same probe without B's MAC: B is a conflict
        assert found is not None and found.mac == NODE_B_MAC
