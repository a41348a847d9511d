"""Property tests: the allocator's invariants hold under any sequence of operations."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from metallb.allocator import (
    AllocationError,
    Allocator,
    ConfigError,
    PoolExhaustedError,
    Port,
    get_plugin_manager,
    parse_config,
)
from metallb.allocator.model import is_buggy
from metallb.announcers.layer2 import plugin as layer2
from metallb.plugins import static_pool

PM = get_plugin_manager(entry_points=False, plugins=[static_pool, layer2])
CONFIGS = [
    "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [10.0.0.0/29]\n",
    "address-pools:\n- name: b\n  protocol: layer2\n  addresses: [10.0.0.0/28]\n",
    "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [10.0.0.4/30]\n- name: c\n  protocol: layer2\n  addresses: [10.0.0.0/30]\n",
    "address-pools:\n- name: a\n  protocol: layer2\n  avoid-buggy-ips: true\n  addresses: [10.0.0.0/29]\n",
    # Dual stack: allocate() without a family takes IPv4 first within a pool, and pools in order.
    "address-pools:\n- name: d\n  protocol: layer2\n  addresses: [10.0.0.0/30, fd00::/126]\n"
    "- name: v6\n  protocol: layer2\n  addresses: [fd00:1::/127]\n",
    "address-pools:\n- name: v6\n  protocol: layer2\n  addresses: [fd00::/127]\n"
    "- name: a\n  protocol: layer2\n  addresses: [10.0.0.0/29]\n",
]
SERVICES = [f"ns/s{i}" for i in range(10)]
PORTS = [Port("TCP", 80), Port("UDP", 53), Port("TCP", 53)]


class AllocatorMachine(RuleBasedStateMachine):
    """Random allocate/assign/unassign/set_config sequences against a small pool."""

    def __init__(self) -> None:
        super().__init__()
        self.alloc = Allocator(plugin_manager=PM, config=parse_config(CONFIGS[0], plugin_manager=PM))
        self.meta: dict[str, tuple[frozenset[Port], str]] = {}

    def _snapshot(self) -> tuple[object, ...]:
        return (self.alloc.config, tuple(self.alloc.allocations()))

    def _free(self) -> list[tuple[str, dict[int, int]]]:
        """Each pool in order with its free addresses per family (the model allocate(family=None) follows)."""
        used = {ip for a in self.alloc.allocations() for ip in a.ips}
        out = []
        for pool in self.alloc.config.pools.values():
            free = {}
            for family in (4, 6):
                ips = [ip for c in pool.cidrs if c.version == family for ip in c]
                usable = [ip for ip in ips if not (pool.avoid_buggy_ips and is_buggy(ip))]
                free[family] = sum(1 for ip in usable if ip not in used)
            out.append((pool.name, free))
        return out

    @rule(
        svc=st.sampled_from(SERVICES),
        ports=st.sets(st.sampled_from(PORTS), min_size=1),
        key=st.sampled_from(["", "k", "j"]),
        family=st.sampled_from([None, None, 4, 6]),
    )
    def allocate(self, svc: str, ports: set[Port], key: str, family: int | None) -> None:
        before = self._snapshot()
        held = self.alloc.ips(svc)
        free = self._free()
        try:
            ip = self.alloc.allocate(svc, ports=ports, sharing_key=key, family=family)
        except AllocationError as exc:
            assert self._snapshot() == before, "a failed allocate changed state"
            if family is None and not held and isinstance(exc, PoolExhaustedError):
                assert not any(sum(f.values()) for _, f in free), f"{svc} got nothing while {free} were free"
            return
        self.meta[svc] = (frozenset(ports), key)
        if family is not None:
            assert ip.version == family
        elif held:
            assert ip == held[0], "a service keeps the address it holds"
        else:
            # The first pool with a free address, IPv4 first, unless an earlier shared address was joined.
            first = next((i for i, (_, f) in enumerate(free) if sum(f.values())), len(free))
            names = [name for name, _ in free]
            pool = self.alloc.pool_of(svc)
            shared = len(self.alloc.users(ip)) > 1
            index = names.index(pool)
            assert index == first or (index < first and shared), f"{ip} from {pool}, but {free} were free"
            if index == first and not shared and free[first][1][4]:
                assert ip.version == 4, f"{ip}: IPv6 while {pool} had free IPv4 addresses"

    @rule(
        svc=st.sampled_from(SERVICES),
        last=st.integers(0, 15),
        ports=st.sets(st.sampled_from(PORTS), min_size=1),
        key=st.sampled_from(["", "k"]),
    )
    def assign(self, svc: str, last: int, ports: set[Port], key: str) -> None:
        before = self._snapshot()
        try:
            self.alloc.assign(svc, f"10.0.0.{last}", ports=ports, sharing_key=key)
        except AllocationError:
            assert self._snapshot() == before, "a failed assign changed state"
            return
        self.meta[svc] = (frozenset(ports), key)

    @rule(svc=st.sampled_from(SERVICES))
    def unassign(self, svc: str) -> None:
        held = self.alloc.ips(svc)
        assert self.alloc.unassign(svc) is bool(held)
        assert self.alloc.ips(svc) == ()
        for ip in held:
            assert svc not in self.alloc.users(ip)
        self.meta.pop(svc, None)

    @rule(index=st.integers(0, len(CONFIGS) - 1))
    def set_config(self, index: int) -> None:
        before = self._snapshot()
        try:
            self.alloc.set_config(parse_config(CONFIGS[index], plugin_manager=PM))
        except ConfigError:
            assert self._snapshot() == before, "a rejected config changed state"

    @invariant()
    def no_illegitimate_sharing(self) -> None:
        by_ip: dict[object, list[str]] = {}
        for a in self.alloc.allocations():
            for ip in a.ips:
                by_ip.setdefault(ip, []).append(a.service)
                assert self.alloc.config.pool_for(ip) is not None, "an address outside every pool is held"
        for users in by_ip.values():
            if len(users) < 2:
                continue
            keys = {self.meta[u][1] for u in users}
            assert keys != {""} and len(keys) == 1, f"{users} share without a common sharing key"
            seen: set[Port] = set()
            for u in users:
                assert not (self.meta[u][0] & seen), f"{users} share with clashing ports"
                seen |= self.meta[u][0]

    @invariant()
    def in_use_counts_distinct_addresses(self) -> None:
        ips = {ip for a in self.alloc.allocations() for ip in a.ips}
        total = sum(self.alloc.stats(p).in_use for p in self.alloc.config.pools)
        assert total == len(ips)


TestAllocatorMachine = AllocatorMachine.TestCase
TestAllocatorMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
