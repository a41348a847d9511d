"""allocate() without a family: the first pool with a free address, IPv4 first; allocate_dual's one-pool rule."""

from __future__ import annotations

import netaddr
import pytest
from metallb.allocator import AllocationError, Allocator, PoolExhaustedError, hookimpl, parse_config
from metallb.allocator.testing import plugin_manager_with
from metallb.plugins import static_pool


def pools(*entries: tuple[str, str, bool]) -> str:
    """address-pools YAML from (name, comma-separated CIDRs, auto-assign) triples."""
    out = "address-pools:\n"
    for name, cidrs, auto in entries:
        out += f"- name: {name}\n  protocol: layer2\n  auto-assign: {str(auto).lower()}\n  addresses: [{cidrs}]\n"
    return out


class TestAnyFamily:
    def test_thousand_services_over_a_v4_24_and_a_v6_64(self, make):
        """1 000 services get addresses: the IPv4 /24 first, then the IPv6 /64, none twice."""
        alloc = make(pools(("v4", "192.0.2.0/24", True), ("v6", "2001:db8::/64", True)))
        got = [alloc.allocate(f"default/s{i}") for i in range(1000)]
        assert len(set(got)) == 1000
        assert [ip.version for ip in got] == [4] * 256 + [6] * 744
        assert alloc.stats("v4").in_use == 256 and alloc.stats("v6").in_use == 744

    def test_ipv4_first_within_a_dual_stack_pool(self, make):
        """A dual-stack pool hands out its IPv4 addresses first, then its IPv6 ones, then the next pool's."""
        alloc = make(pools(("d", "10.0.0.0/31,2001:db8::/127", True), ("next", "10.0.1.0/31", True)))
        got = [str(alloc.allocate(f"ns/s{i}")) for i in range(6)]
        assert got == ["10.0.0.0", "10.0.0.1", "2001:db8::", "2001:db8::1", "10.0.1.0", "10.0.1.1"]
        with pytest.raises(PoolExhaustedError) as info:
            alloc.allocate("ns/full")
        assert 'pool "d" (IPv4): no available IPs in pool "d"' in str(info.value)
        assert 'pool "d" (IPv6): no available IPs in pool "d"' in str(info.value)
        assert 'pool "next": no available IPs in pool "next"' in str(info.value)

    def test_the_first_pool_in_order_wins_over_families(self, make):
        """An IPv6-only pool listed first is used before a later IPv4 pool."""
        alloc = make(pools(("v6", "2001:db8::/127", True), ("v4", "10.0.0.0/31", True)))
        assert alloc.allocate("ns/a").version == 6

    def test_families_four_and_six_work_as_before(self, make):
        """family=4 and family=6 pick only pools of that family."""
        alloc = make(pools(("v6", "2001:db8::/127", True), ("v4", "10.0.0.0/31", True)))
        assert str(alloc.allocate("ns/a", family=4)) == "10.0.0.0"
        assert str(alloc.allocate("ns/b", family=6)) == "2001:db8::"

    def test_requested_address_gives_the_family(self, make):
        """With ip= and no family, the family is the address's."""
        alloc = make(pools(("d", "10.0.0.0/31,2001:db8::/127", True)))
        assert str(alloc.allocate("ns/a", ip="2001:db8::1")) == "2001:db8::1"

    def test_named_pool_any_family(self, make):
        """pool= without a family takes that pool's IPv4 first, then its IPv6, even when not auto-assign."""
        alloc = make(pools(("manual", "10.0.0.0/32,2001:db8::/128", False)))
        with pytest.raises(PoolExhaustedError, match='no available IPs: no auto-assign pool has addresses for "ns/a"'):
            alloc.allocate("ns/a")
        assert str(alloc.allocate("ns/a", pool="manual")) == "10.0.0.0"
        assert str(alloc.allocate("ns/b", pool="manual")) == "2001:db8::"
        with pytest.raises(PoolExhaustedError):
            alloc.allocate("ns/c", pool="manual")

    def test_a_service_keeps_what_it_holds(self, make):
        """A service holding an address of any family keeps it; asking for another pool moves it."""
        alloc = make(pools(("v6", "2001:db8::/127", True), ("v4", "10.0.0.0/31", True)))
        held = alloc.allocate("ns/a", family=6)
        assert alloc.allocate("ns/a") == held
        moved = alloc.allocate("ns/a", pool="v4")
        assert moved.version == 4 and alloc.ips("ns/a") == (moved,)
        assert alloc.users(held) == ()

    def test_sharing_joins_within_the_first_pool(self, make):
        """With a sharing key, a compatible shared address of the first pool is joined as before."""
        alloc = make(pools(("d", "10.0.0.0/31,2001:db8::/127", True)))
        from metallb.allocator import Port

        ip = alloc.allocate("ns/a", ports=[Port("TCP", 80)], sharing_key="k")
        assert alloc.allocate("ns/b", ports=[Port("TCP", 443)], sharing_key="k") == ip

    def test_select_pools_hears_family_none(self):
        """metallb_select_pools gets PoolRequest.family None and its order is followed."""
        heard = []

        class Reverse:
            @hookimpl
            def metallb_select_pools(self, request, pools):
                heard.append(request.family)
                return list(reversed(pools))

        pm = plugin_manager_with(static_pool, Reverse())
        text = pools(("a", "10.0.0.0/31", True), ("b", "2001:db8::/127", True))
        alloc = Allocator(plugin_manager=pm, config=parse_config(text, plugin_manager=pm))
        assert alloc.allocate("ns/x") == netaddr.IPAddress("2001:db8::")
        assert heard == [None]


class TestDualOnePool:
    TWO_POOLS = pools(("v4", "10.0.0.0/31", True), ("v6", "2001:db8::/127", True))

    def test_two_single_family_pools_name_the_rule_and_the_fix(self, make):
        """Across an IPv4 and an IPv6 pool the error says why (one pool, as MetalLB) and what to configure."""
        alloc = make(self.TWO_POOLS)
        with pytest.raises(PoolExhaustedError) as info:
            alloc.allocate_dual("ns/a")
        message = str(info.value)
        assert 'no pool can give "ns/a" addresses of families IPv4/IPv6' in message
        assert "a dual-stack service takes all its addresses from one pool, as in MetalLB" in message
        assert '"v4" has IPv4 only, "v6" has IPv6 only' in message
        assert "list an IPv4 and an IPv6 range in the same pool's addresses, or pass require_all=False" in message
        assert alloc.allocations() == []

    def test_a_named_single_family_pool_says_the_same(self, make):
        """allocate_dual(pool=...) on a one-family pool fails with the same hint."""
        alloc = make(self.TWO_POOLS)
        with pytest.raises(AllocationError, match='"v4" has IPv4 only; list an IPv4 and an IPv6 range'):
            alloc.allocate_dual("ns/a", pool="v4")

    def test_prefer_dual_stack_takes_the_first_family(self, make):
        """require_all=False falls back to one family from the first pool that has it."""
        alloc = make(self.TWO_POOLS)
        assert [str(ip) for ip in alloc.allocate_dual("ns/a", require_all=False)] == ["10.0.0.0"]

    def test_one_dual_stack_pool_serves_both(self, make):
        """The configuration the hint asks for works."""
        alloc = make(pools(("dual", "10.0.0.0/31,2001:db8::/127", True)))
        assert [ip.version for ip in alloc.allocate_dual("ns/a")] == [4, 6]
