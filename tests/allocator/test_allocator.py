"""Allocator: MetalLB's allocation semantics, our deliberate improvements, concurrency."""

from __future__ import annotations

import threading
import time
from typing import ClassVar

import netaddr
import pytest
from metallb.allocator import (
    AddressInUseError,
    AddressNotAllowedError,
    AllocationError,
    Allocator,
    ConfigError,
    PoolExhaustedError,
    Port,
    SourceBase,
    UnknownPoolError,
    get_plugin_manager,
    hookimpl,
    parse_config,
    parse_pool_entry,
)
from metallb.announcers.layer2 import plugin as layer2
from metallb.plugins import static_pool

TCP80, UDP53, TCP53 = Port("TCP", 80), Port("UDP", 53), Port("TCP", 53)


def pools(*specs: str) -> str:
    """address-pools YAML from "name|protocol|cidr,cidr[|flag;flag]" strings."""
    out = "address-pools:\n"
    for spec in specs:
        name, proto, cidrs, *flags = spec.split("|")
        out += f"- name: {name}\n  protocol: {proto}\n  addresses: [{', '.join(repr(c) for c in cidrs.split(','))}]\n"
        for flag in flags:
            out += "".join(f"  {f}\n" for f in flag.split(";"))
    return out


class TestFirstFit:
    def test_cidr_order_then_ascending_including_network_and_broadcast(self, make):
        """Addresses come in CIDR order, ascending, .0 and .255 included."""
        alloc = make(pools("p|layer2|10.0.1.254/31,10.0.0.0/31"))
        got = [str(alloc.allocate(f"ns/s{i}")) for i in range(4)]
        assert got == ["10.0.1.254", "10.0.1.255", "10.0.0.0", "10.0.0.1"]
        with pytest.raises(PoolExhaustedError, match='no available IPs in pool "p"'):
            alloc.allocate("ns/full")

    def test_avoid_buggy_ips(self, make):
        """avoid-buggy-ips skips .0 and .255, which cannot even be requested."""
        alloc = make(pools("p|layer2|10.0.0.254/31,10.0.1.0/30|avoid-buggy-ips: true"))
        assert [str(alloc.allocate(f"ns/{i}")) for i in range(4)] == ["10.0.0.254", "10.0.1.1", "10.0.1.2", "10.0.1.3"]
        with pytest.raises(AddressNotAllowedError, match='"10.0.1.0" is not allowed in config'):
            alloc.allocate("ns/x", ip="10.0.1.0")
        assert alloc.stats("p").total == 4

    def test_freed_address_is_reused_first(self, make):
        """After a release, first fit hands out the lowest free address again."""
        alloc = make(pools("p|layer2|10.0.0.0/28"))
        for i in range(5):
            alloc.allocate(f"ns/{i}")
        assert alloc.unassign("ns/2") is True
        assert str(alloc.allocate("ns/new")) == "10.0.0.2"

    def test_ipv6_pool_and_family_choice(self, make):
        """family=6 takes from IPv6 CIDRs only; a pool without that family is skipped."""
        alloc = make(pools("v4|layer2|10.0.0.0/30", "v6|layer2|2001:db8::/64"))
        assert str(alloc.allocate("ns/a", family=6)) == "2001:db8::"
        assert alloc.pool_of("ns/a") == "v6"
        assert str(alloc.allocate("ns/b")) == "10.0.0.0"


class TestPools:
    def test_auto_assign_pools_in_configuration_order(self, make):
        """Auto-assign pools are tried in file order (MetalLB: random), falling through when full."""
        alloc = make(pools("first|layer2|10.0.0.0/31", "second|layer2|10.0.1.0/31"))
        assert [alloc.pool_of(s) for s in ["ns/a", "ns/b", "ns/c"] if alloc.allocate(s)] == ["first", "first", "second"]

    def test_auto_assign_false_needs_explicit_request(self, make):
        """A non-auto-assign pool serves only a named pool or a requested address."""
        alloc = make(pools("manual|layer2|10.0.0.0/30|auto-assign: false"))
        with pytest.raises(PoolExhaustedError, match="no auto-assign pool"):
            alloc.allocate("ns/a")
        assert str(alloc.allocate("ns/a", pool="manual")) == "10.0.0.0"
        assert str(alloc.allocate("ns/b", ip="10.0.0.3")) == "10.0.0.3"

    def test_unknown_pool(self, make):
        """Naming a pool that does not exist is UnknownPoolError listing the known pools."""
        alloc = make(pools("p|layer2|10.0.0.0/30"))
        with pytest.raises(UnknownPoolError, match='unknown pool "nope"; known pools: p'):
            alloc.allocate("ns/a", pool="nope")

    def test_requested_address_outside_named_pool(self, make):
        """ip= in another pool than pool= is refused."""
        alloc = make(pools("a|layer2|10.0.0.0/30", "b|layer2|10.0.1.0/30"))
        with pytest.raises(AddressNotAllowedError, match='in pool "a", not in requested pool "b"'):
            alloc.allocate("ns/x", pool="b", ip="10.0.0.1")

    def test_exact_stats_for_huge_pools(self, make):
        """stats is exact for a /8 and a /64 (no overflow, no enumeration)."""
        alloc = make(pools("big4|layer2|10.0.0.0/8|avoid-buggy-ips: true", "big6|layer2|2001:db8::/64"))
        assert alloc.stats("big4").total == 2**24 - 2 * 2**16
        assert alloc.stats("big6").total == 2**64
        alloc.allocate("ns/a", family=6)
        assert alloc.stats("big6").in_use == 1
        assert alloc.stats("big6").available == 2**64 - 1


class TestSharing:
    def test_same_key_disjoint_ports_share(self, make):
        """Equal sharing and backend keys with disjoint ports share one address."""
        alloc = make(pools("p|layer2|10.0.0.0/29"))
        a = alloc.allocate("ns/dns-udp", ports=[UDP53], sharing_key="dns")
        b = alloc.allocate("ns/dns-tcp", ports=[TCP53], sharing_key="dns")
        assert a == b
        assert alloc.users(a) == ("ns/dns-tcp", "ns/dns-udp")
        assert alloc.stats("p").in_use == 1

    @pytest.mark.parametrize(
        ("second", "reason"),
        [
            ({"ports": [TCP80], "sharing_key": "k"}, "port TCP/80 is already in use"),
            ({"ports": [UDP53], "sharing_key": "other"}, "does not match"),
            ({"ports": [UDP53], "sharing_key": ""}, "new service does not allow sharing"),
            ({"ports": [UDP53], "sharing_key": "k", "backend_key": "app=x"}, "backend key"),
        ],
    )
    def test_incompatible_services_do_not_share(self, make, second, reason):
        """Port clashes, different keys or backend keys make a requested shared address fail."""
        alloc = make(pools("p|layer2|10.0.0.0/29"))
        ip = alloc.allocate("ns/a", ports=[TCP80], sharing_key="k")
        with pytest.raises(AddressInUseError, match=reason):
            alloc.allocate("ns/b", ip=ip, **second)
        assert alloc.ips("ns/b") == ()
        assert alloc.allocate("ns/b", **second) != ip

    def test_first_fit_compares_shared_and_free_positions(self, make):
        """Whichever comes first in pool order wins: an earlier free address, or an earlier shared one."""
        alloc = make(pools("p|layer2|10.0.0.0/29"))
        alloc.allocate("ns/a", ports=[TCP80])
        shared = alloc.allocate("ns/b", ports=[TCP80], sharing_key="k")
        alloc.unassign("ns/a")  # 10.0.0.0 is free again, before the shared 10.0.0.1
        assert str(alloc.allocate("ns/c", ports=[UDP53], sharing_key="k")) == "10.0.0.0"
        # Now 10.0.0.0 is shared by c and comes before the next free address 10.0.0.2.
        assert str(alloc.allocate("ns/d", ports=[TCP53], sharing_key="k")) == "10.0.0.0"
        assert alloc.users(shared) == ("ns/b",)

    def test_sole_user_changes_key_in_place(self, make):
        """A service alone on its address may change its sharing key without moving."""
        alloc = make(pools("p|layer2|10.0.0.0/29"))
        ip = alloc.allocate("ns/a", ports=[TCP80], sharing_key="k1")
        assert alloc.allocate("ns/a", ports=[TCP80], sharing_key="k2") == ip
        assert alloc.allocate("ns/b", ports=[UDP53], sharing_key="k2") == ip

    def test_key_change_refused_while_shared(self, make):
        """Changing the key of an address that others use fails and changes nothing."""
        alloc = make(pools("p|layer2|10.0.0.0/29"))
        ip = alloc.assign("ns/a", "10.0.0.3", ports=[TCP80], sharing_key="k")[0]
        alloc.assign("ns/b", ip, ports=[UDP53], sharing_key="k")
        with pytest.raises(AddressInUseError, match="address also in use by ns/b"):
            alloc.assign("ns/a", ip, ports=[TCP80], sharing_key="other")
        assert alloc.allocate("ns/c", ip=ip, ports=[TCP53], sharing_key="k") == ip

    def test_address_freed_only_when_last_user_goes(self, make):
        """A shared address stays in use until every user has released it."""
        alloc = make(pools("p|layer2|10.0.0.0/31"))
        ip = alloc.allocate("ns/a", ports=[TCP80], sharing_key="k")
        alloc.allocate("ns/b", ports=[UDP53], sharing_key="k")
        alloc.unassign("ns/a")
        assert alloc.stats("p").in_use == 1
        assert alloc.allocate("ns/c") != ip
        alloc.unassign("ns/b")
        assert alloc.allocate("ns/d") == ip


class TestAssign:
    def test_assign_claims_and_blocks_others(self, make):
        """assign records a claim that allocate then skips."""
        alloc = make(pools("p|layer2|10.0.0.0/30"))
        alloc.assign("ns/a", "10.0.0.0")
        assert str(alloc.allocate("ns/b")) == "10.0.0.1"

    def test_assign_outside_config(self, make):
        """An address in no pool is not allowed, and the service keeps what it had."""
        alloc = make(pools("p|layer2|10.0.0.0/30"))
        alloc.assign("ns/a", "10.0.0.1")
        with pytest.raises(AddressNotAllowedError, match='"192.0.2.1" is not allowed in config'):
            alloc.assign("ns/a", "192.0.2.1")
        assert [str(i) for i in alloc.ips("ns/a")] == ["10.0.0.1"]

    def test_assign_sets_the_complete_set(self, make):
        """assign with a sequence replaces everything the service held."""
        alloc = make(pools("p|layer2|10.0.0.0/30,2001:db8::/126"))
        alloc.assign("ns/a", "10.0.0.1")
        alloc.assign("ns/a", ["10.0.0.2", "2001:db8::2"])
        assert [str(i) for i in alloc.ips("ns/a")] == ["10.0.0.2", "2001:db8::2"]
        assert str(alloc.allocate("ns/b")) == "10.0.0.0"
        assert str(alloc.allocate("ns/c")) == "10.0.0.1"

    def test_assign_is_idempotent(self, make):
        """Assigning the same address twice changes nothing."""
        alloc = make(pools("p|layer2|10.0.0.0/30"))
        alloc.assign("ns/a", "10.0.0.1", ports=[TCP80])
        alloc.assign("ns/a", "10.0.0.1", ports=[TCP80])
        assert alloc.stats("p").in_use == 1

    def test_two_addresses_of_one_family_rejected(self, make):
        """At most one address per family."""
        alloc = make(pools("p|layer2|10.0.0.0/30"))
        with pytest.raises(AllocationError, match="at most one address per IP family"):
            alloc.assign("ns/a", ["10.0.0.1", "10.0.0.2"])


class TestAllocateExisting:
    def test_existing_allocation_is_returned(self, make):
        """A service that holds an address gets the same one back."""
        alloc = make(pools("p|layer2|10.0.0.0/30"))
        ip = alloc.allocate("ns/a")
        assert alloc.allocate("ns/a") == ip
        assert alloc.stats("p").in_use == 1

    def test_wrong_family(self, make):
        """Asking for another family than the one held is MetalLB's wrong-family error."""
        alloc = make(pools("p|layer2|10.0.0.0/30,2001:db8::/126"))
        alloc.allocate("ns/a")
        with pytest.raises(AllocationError, match="IP for wrong family assigned 10.0.0.0"):
            alloc.allocate("ns/a", family=6)

    def test_moving_to_a_requested_address(self, make):
        """Requesting another address moves the service and frees the old one."""
        alloc = make(pools("p|layer2|10.0.0.0/30"))
        alloc.allocate("ns/a")
        assert str(alloc.allocate("ns/a", ip="10.0.0.3")) == "10.0.0.3"
        assert str(alloc.allocate("ns/b")) == "10.0.0.0"

    def test_unassign_is_idempotent(self, make):
        """unassign returns True once, then False."""
        alloc = make(pools("p|layer2|10.0.0.0/30"))
        alloc.allocate("ns/a")
        assert alloc.unassign("ns/a") is True
        assert alloc.unassign("ns/a") is False
        assert alloc.ips("ns/a") == ()
        assert alloc.pool_of("ns/a") is None


class TestDualStack:
    def test_one_address_per_family_from_one_pool(self, make):
        """allocate_dual takes both families from the first pool that has both."""
        alloc = make(pools("v4only|layer2|10.0.0.0/30", "dual|layer2|10.0.1.0/30,2001:db8::/126"))
        ips = alloc.allocate_dual("ns/a")
        assert [str(i) for i in ips] == ["10.0.1.0", "2001:db8::"]
        assert alloc.pool_of("ns/a") == "dual"

    def test_prefer_dual_stack_falls_back(self, make):
        """require_all=False falls back to one family when no pool has both."""
        alloc = make(pools("v4only|layer2|10.0.0.0/30"))
        with pytest.raises(PoolExhaustedError):
            alloc.allocate_dual("ns/a")
        assert [str(i) for i in alloc.allocate_dual("ns/a", require_all=False)] == ["10.0.0.0"]


class TestSetConfig:
    def test_renamed_pool_keeps_allocations(self, make, parse):
        """Allocations follow their address into a renamed pool."""
        alloc = make(pools("old|layer2|10.0.0.0/30"))
        ip = alloc.allocate("ns/a")
        alloc.set_config(parse(pools("new|layer2|10.0.0.0/29")))
        assert alloc.pool_of("ns/a") == "new"
        assert alloc.ips("ns/a") == (ip,)
        assert alloc.stats("new").in_use == 1
        assert alloc.allocate("ns/b") != ip

    def test_orphaning_config_rejected_and_nothing_changes(self, make, parse):
        """A config that would orphan an address in use raises and keeps the old config."""
        alloc = make(pools("p|layer2|10.0.0.0/30"))
        alloc.allocate("ns/a")
        old = alloc.config
        with pytest.raises(ConfigError, match='service "ns/a" cannot own "10.0.0.0" under new config'):
            alloc.set_config(parse(pools("p|layer2|10.0.1.0/30")))
        assert alloc.config is old
        assert str(alloc.allocate("ns/b")) == "10.0.0.1"

    def test_avoid_buggy_ips_can_orphan(self, make, parse):
        """Turning on avoid-buggy-ips while .0 is in use is rejected."""
        alloc = make(pools("p|layer2|10.0.0.0/30"))
        alloc.allocate("ns/a")
        with pytest.raises(ConfigError, match="cannot own"):
            alloc.set_config(parse(pools("p|layer2|10.0.0.0/30|avoid-buggy-ips: true")))

    def test_unchanged_pool_keeps_its_source(self, make, parse):
        """An unchanged pool keeps its source object (and so its state)."""
        alloc = make(pools("p|layer2|10.0.0.0/30", "q|layer2|10.0.1.0/30"))
        before = alloc.source("p")
        alloc.set_config(parse(pools("p|layer2|10.0.0.0/30")))
        assert alloc.source("p") is before


class _Slow(SourceBase):
    """A test source whose acquire blocks until released by the test."""

    gate = threading.Event()

    def __init__(self, spec):
        self.spec = spec
        self.calls = 0

    def acquire(self, owner, *, family, wanted=None, uid=None):
        self.calls += 1
        if self.spec.options.get("mode") == "fail":
            from metallb.allocator import SourceUnavailableError

            raise SourceUnavailableError("address service http://127.0.0.1:1/ unreachable: connection refused")
        assert self.gate.wait(10)
        return netaddr.IPAddress("198.51.100.7")

    def claim(self, owner, ip):
        pass

    def release(self, owner, ip):
        pass


class _SlowPlugin:
    @hookimpl
    def metallb_pool_sections(self):
        return ["slow-pools"]

    @hookimpl
    def metallb_parse_pool(self, entry):
        if entry.section != "slow-pools":
            return None
        return parse_pool_entry(entry, cidrs_key="cidrs", options={"mode": lambda v, w: v or "block"})

    @hookimpl
    def metallb_make_source(self, spec):
        return _Slow(spec) if spec.kind == "slow-pools" else None


class TestConcurrency:
    @pytest.fixture(name="mixed")
    def _mixed(self):
        pm = get_plugin_manager(entry_points=False, plugins=[static_pool, layer2, _SlowPlugin()])
        text = (
            "slow-pools:\n- name: slow\n  protocol: layer2\n  cidrs: [198.51.100.0/24]\n"
            "address-pools:\n- name: fast\n  protocol: layer2\n  addresses: [10.0.0.0/24]\n"
        )
        _Slow.gate.clear()
        yield Allocator(plugin_manager=pm, config=parse_config(text, plugin_manager=pm))
        _Slow.gate.set()

    def test_slow_source_blocks_only_its_callers(self, mixed):
        """While one pool's acquire blocks, other pools and services proceed."""
        result = {}
        waiter = threading.Thread(target=lambda: result.setdefault("slow", mixed.allocate("ns/slow", pool="slow")))
        waiter.start()
        time.sleep(0.1)
        assert str(mixed.allocate("ns/fast", pool="fast")) == "10.0.0.0"
        assert mixed.stats("fast").in_use == 1
        assert "slow" not in result
        _Slow.gate.set()
        waiter.join(5)
        assert str(result["slow"]) == "198.51.100.7"

    def test_calls_for_one_service_wait_their_turn(self, mixed):
        """Calls for a service whose acquire blocks wait, then all see its one address."""
        results = []
        callers = [
            threading.Thread(target=lambda: results.append(mixed.allocate("ns/x", pool="slow"))) for _ in range(3)
        ]
        for caller in callers:
            caller.start()
        time.sleep(0.2)
        assert results == [] and mixed.source("slow").calls == 1
        assert str(mixed.allocate("ns/other", pool="fast")) == "10.0.0.0"
        _Slow.gate.set()
        for caller in callers:
            caller.join(5)
        assert [str(ip) for ip in results] == ["198.51.100.7"] * 3
        assert mixed.source("slow").calls == 1 and mixed.users("198.51.100.7") == ("ns/x",)

    def test_error_lists_pools_tried(self):
        """When every auto-assign pool fails, the error names each one and why."""
        pm = get_plugin_manager(entry_points=False, plugins=[static_pool, layer2, _SlowPlugin()])
        text = (
            "slow-pools:\n- name: dead\n  protocol: layer2\n  mode: fail\n  cidrs: [198.51.101.0/24]\n"
            "address-pools:\n- name: tiny\n  protocol: layer2\n  addresses: [10.0.0.0/32]\n"
        )
        alloc = Allocator(plugin_manager=pm, config=parse_config(text, plugin_manager=pm))
        alloc.allocate("ns/a")  # dead fails, tiny serves
        assert alloc.pool_of("ns/a") == "tiny"
        with pytest.raises(AllocationError) as info:
            alloc.allocate("ns/b")
        message = str(info.value)
        assert 'pool "dead": address service http://127.0.0.1:1/ unreachable' in message
        assert 'pool "tiny": no available IPs in pool "tiny"' in message
        assert not isinstance(info.value, PoolExhaustedError)

    def test_many_threads_never_duplicate(self, make):
        """Concurrent allocations from many threads never hand out one address twice."""
        alloc = make(pools("p|layer2|10.0.0.0/22"))
        results: list[str] = []
        lock = threading.Lock()

        def work(n):
            for i in range(100):
                ip = str(alloc.allocate(f"ns/{n}-{i}"))
                with lock:
                    results.append(ip)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 800
        assert len(set(results)) == 800


class _Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    def metallb_address_allocated(self, service, ip, pool):
        self.events.append(("allocated", service, str(ip), pool))

    @hookimpl
    def metallb_address_released(self, service, ip, pool):
        self.events.append(("released", service, str(ip), pool))


class TestNotifications:
    def test_allocated_and_released_hooks(self):
        """Plugins are told after an address is allocated and after it is released."""
        recorder = _Recorder()
        pm = get_plugin_manager(entry_points=False, plugins=[static_pool, layer2, recorder])
        alloc = Allocator(plugin_manager=pm, config=parse_config(pools("p|layer2|10.0.0.0/30"), plugin_manager=pm))
        alloc.allocate("ns/a")
        alloc.unassign("ns/a")
        assert recorder.events == [("allocated", "ns/a", "10.0.0.0", "p"), ("released", "ns/a", "10.0.0.0", "p")]


class TestReviewedAllocatorEdges:
    def test_dual_with_held_addresses_releases_nothing(self):
        """allocate_dual asking for exactly what the Service holds keeps it without release or re-allocation."""
        recorder = _Recorder()
        pm = get_plugin_manager(entry_points=False, plugins=[static_pool, layer2, recorder])
        alloc = Allocator(
            plugin_manager=pm, config=parse_config(pools("p|layer2|10.0.0.0/30,2001:db8::/126"), plugin_manager=pm)
        )
        ips = alloc.allocate_dual("ns/a")
        recorder.events.clear()
        assert alloc.allocate_dual("ns/a", ips=[str(i) for i in ips]) == ips
        assert recorder.events == []

    def test_dual_request_outside_config_names_the_address(self, make):
        """A requested dual-stack address in no pool is reported as such."""
        alloc = make(pools("p|layer2|10.0.0.0/30,2001:db8::/126"))
        with pytest.raises(AddressNotAllowedError, match='"192.0.2.1" is not allowed'):
            alloc.allocate_dual("ns/a", ips=["192.0.2.1", "2001:db8::1"])

    def test_many_sharers_with_clashing_ports_stay_correct(self, make):
        """Services under one key that all clash on a port each get their own address."""
        alloc = make(pools("p|layer2|10.0.0.0/24"))
        got = {str(alloc.allocate(f"ns/{i}", ports=[TCP80], sharing_key="k")) for i in range(50)}
        assert len(got) == 50
        assert str(alloc.allocate("ns/udp", ports=[UDP53], sharing_key="k")) == "10.0.0.0"


class _Uids(SourceBase):
    """A source that records the uid of each acquire (in ``seen``, shared by the class)."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def __init__(self, spec):
        self.spec = spec

    def acquire(self, owner, *, family, wanted=None, uid=None):
        self.seen.append((owner, uid))
        return netaddr.IPAddress("198.51.100.7")

    def claim(self, owner, ip):
        pass

    def release(self, owner, ip):
        pass


class _OldUids(_Uids):
    def acquire(self, owner, *, family, wanted=None):
        self.seen.append((owner, "no uid parameter"))
        return netaddr.IPAddress("198.51.100.8")


class _UidPlugin:
    @hookimpl
    def metallb_pool_sections(self):
        return ["uid-pools"]

    @hookimpl
    def metallb_parse_pool(self, entry):
        if entry.section != "uid-pools":
            return None
        return parse_pool_entry(entry, cidrs_key="cidrs", options={"mode": lambda v, w: v or "new"})

    @hookimpl
    def metallb_make_source(self, spec):
        if spec.kind != "uid-pools":
            return None
        return (_OldUids if spec.options["mode"] == "old" else _Uids)(spec)


class TestServiceUid:
    def test_uid_reaches_the_source_and_old_sources_keep_working(self):
        """allocate(uid=...) hands the uid to acquire(); a source whose acquire has no uid parameter is called without."""
        pm = get_plugin_manager(entry_points=False, plugins=[layer2, _UidPlugin()])
        text = (
            "uid-pools:\n- name: new\n  protocol: layer2\n  cidrs: [198.51.100.7/32]\n"
            "- name: old\n  protocol: layer2\n  cidrs: [198.51.100.8/32]\n  mode: old\n"
        )
        alloc = Allocator(plugin_manager=pm, config=parse_config(text, plugin_manager=pm))
        _Uids.seen = []
        alloc.allocate("ns/a", pool="new", uid="u-1")
        alloc.allocate("ns/b", pool="old", uid="u-2")
        alloc.unassign("ns/a")
        alloc.allocate_dual("ns/c", families=(4,), pool="new", uid="u-3")
        assert _Uids.seen == [("ns/a", "u-1"), ("ns/b", "no uid parameter"), ("ns/c", "u-3")]
        alloc.close()
