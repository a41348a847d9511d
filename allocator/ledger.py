"""The allocator's bookkeeping: who holds which address, from which pool, on which terms.

A :class:`Ledger` has no lock and does no I/O. The :class:`~metallb.allocator.Allocator`
holds its lock around every call and does what may block (``acquire``,
``release``, ``reconcile``, hook calls) outside it. The ledger calls only the
local parts of sources: ``owns``, ``rank``, ``peek`` and ``claim``. Methods that
let addresses go return them as ``(source, ip)`` pairs for the caller to
release after the lock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TypeAlias

import attrs
import netaddr
from metallb.allocator.errors import (
    AddressInUseError,
    AddressNotAllowedError,
    AllocationError,
    ConfigError,
    UnknownPoolError,
)
from metallb.allocator.interfaces import AddressSource
from metallb.allocator.model import Config, PoolSpec, Port
from sortedcontainers import SortedDict

__all__ = [
    "Allocation",
    "Ledger",
    "Released",
    "Tenant",
    "may_have",
    "owner_in",
    "priority_order",
    "sharing_problem",
]

#: Addresses let go, for the caller to give back to their sources outside the lock.
Released: TypeAlias = list[tuple[AddressSource, netaddr.IPAddress]]


@attrs.frozen
class Allocation:
    """A snapshot of what one service holds (for status views)."""

    service: str
    pool: str
    ips: tuple[netaddr.IPAddress, ...]
    ports: frozenset[Port]
    sharing_key: str
    backend_key: str


@attrs.frozen(slots=True, kw_only=True)
class Tenant:
    """A service as it asks to hold addresses: the terms on which it may share one.

    ``labels`` (the Service's labels, sorted pairs) only choose the pools an
    automatic allocation tries (``service_allocation``); they never decide sharing.
    ``uid`` (the Service's ``metadata.uid``, when known) is passed to sources,
    which may key leases on it; it never decides sharing.
    """

    service: str
    ports: frozenset[Port]
    sharing_key: str
    backend_key: str
    labels: tuple[tuple[str, str], ...] = attrs.field(default=(), eq=False)
    uid: str | None = attrs.field(default=None, eq=False)


@attrs.define(slots=True, kw_only=True)
class _Held:
    pool: str
    ips: tuple[netaddr.IPAddress, ...]
    ports: frozenset[Port]
    sharing_key: str
    backend_key: str


@attrs.define(slots=True, kw_only=True)
class _Use:
    """Who uses one address, and under which keys."""

    pool: str
    sharing_key: str
    backend_key: str
    users: dict[str, frozenset[Port]]


def sharing_problem(use: _Use, tenant: Tenant) -> str | None:
    """MetalLB's compatibility rules for *tenant* joining the users of an address."""
    service = tenant.service
    others = [u for u in use.users if u != service]
    if not others:
        return None  # a sole user may change its keys in place
    reason = None
    if not use.sharing_key:
        reason = "existing service does not allow sharing"
    elif not tenant.sharing_key:
        reason = "new service does not allow sharing"
    elif use.sharing_key != tenant.sharing_key:
        reason = f'sharing key "{tenant.sharing_key}" does not match "{use.sharing_key}"'
    elif use.backend_key != tenant.backend_key:
        reason = "backend key (traffic policy and selector) differs"
    if reason:
        return f"address also in use by {', '.join(sorted(others))}: {reason}"
    for other in others:
        clash = tenant.ports & use.users[other]
        if clash:
            return f"port {min(clash)} is already in use on this address by {other}"
    return None


def owner_in(sources: Mapping[str, AddressSource], ip: netaddr.IPAddress) -> str | None:
    """The name of the pool whose source owns *ip*, or None."""
    for name, source in sources.items():
        if source.owns(ip):
            return name
    return None


class Ledger:
    """Allocations, per-address users and keys, and the index of shareable addresses.

    Attributes:
        config: the configuration in force.
        sources: each pool's source, by pool name.
        held: what each service holds.
        uses: who uses each address.
    """

    def __init__(self) -> None:
        self.config = Config()
        self.sources: dict[str, AddressSource] = {}
        self.held: dict[str, _Held] = {}
        self.uses: dict[netaddr.IPAddress, _Use] = {}
        self._in_use: dict[str, int] = {}
        # Family -> the auto-assign pools that may have its addresses (computed once per config):
        # those with a service allocation in priority order, and the others in configuration order.
        self._auto: dict[int | None, tuple[list[PoolSpec], list[PoolSpec]]] = {}
        # (pool, family, sharing key, backend key) -> rank -> address, for
        # finding a compatible shared address without scanning the pool.
        self._shareable: dict[tuple[str, int, str, str], SortedDict] = {}

    # -- reading ---------------------------------------------------------------------

    def owner(self, ip: netaddr.IPAddress) -> str | None:
        """The pool that contains *ip* under the current config, or None."""
        return owner_in(self.sources, ip)

    def spec(self, pool: str) -> PoolSpec:
        """The spec of *pool*; raises :class:`UnknownPoolError`."""
        spec = self.config.pools.get(pool)
        if spec is None:
            raise UnknownPoolError(f'unknown pool "{pool}"; known pools: {", ".join(self.config.pools) or "none"}')
        return spec

    def auto_pools(
        self, family: int | None, namespace: str = "", labels: Mapping[str, str] | None = None
    ) -> list[PoolSpec]:
        """Without a plugin's choice: the auto-assign pools of *family* (None: any), in the order to try them.

        MetalLB v0.15's order: first the pools whose ``service_allocation``
        selects the Service (in *namespace*, with *labels*), by priority (see
        :func:`priority_order`); then the pools without a ``service_allocation``,
        in configuration order. A pool with a ``service_allocation`` that does
        not select the Service is not tried.
        """
        found = self._auto.get(family)
        if found is None:
            usable = [
                p for p in self.config.pools.values() if p.auto_assign and (family is None or may_have(p, family))
            ]
            found = self._auto[family] = (
                sorted((p for p in usable if p.service_allocation is not None), key=priority_order),
                [p for p in usable if p.service_allocation is None],
            )
        allocating, plain = found
        if not allocating:
            return list(plain)
        wanted = labels or {}
        pinned = [
            p
            for p in allocating
            if p.service_allocation is not None and p.service_allocation.selects(namespace, wanted)
        ]
        return pinned + plain

    def in_use(self, pool: str) -> int:
        """Distinct addresses held in *pool*."""
        return self._in_use.get(pool, 0)

    def users(self, ip: netaddr.IPAddress) -> tuple[str, ...]:
        """The services holding *ip*, sorted."""
        use = self.uses.get(ip)
        return tuple(sorted(use.users)) if use else ()

    def holders(self, pool: str) -> dict[netaddr.IPAddress, tuple[str, ...]]:
        """Address to sorted users, for every address held in *pool*."""
        return {ip: tuple(sorted(u.users)) for ip, u in self.uses.items() if u.pool == pool}

    def allocation(self, service: str) -> Allocation | None:
        """What *service* holds, or None."""
        h = self.held.get(service)
        if h is None:
            return None
        return Allocation(
            service=service, pool=h.pool, ips=h.ips, ports=h.ports, sharing_key=h.sharing_key, backend_key=h.backend_key
        )

    def allocations(self) -> list[Allocation]:
        """Every allocation, sorted by service."""
        return [a for a in map(self.allocation, sorted(self.held)) if a is not None]

    # -- decisions (raise, change nothing) -------------------------------------------

    def kept(
        self, tenant: Tenant, family: int, pool: str | None, wanted: netaddr.IPAddress | None, *, extend: bool
    ) -> netaddr.IPAddress | None:
        """The address of *family* the service keeps (its terms renewed), or None to allocate.

        A request for another address or pool moves the service. Without
        *extend*, a service holding only another family is an error.
        """
        held = self.held.get(tenant.service)
        if held is None:
            return None
        same = [a for a in held.ips if a.version == family]
        moving = (wanted is not None and same and wanted != same[0]) or (pool is not None and pool != held.pool)
        if same and not moving:
            self.renew(tenant)
            return same[0]
        if not same and not extend and not moving:
            raise AllocationError(
                f"IP for wrong family assigned {held.ips[0]}: "
                f'"{tenant.service}" holds an IPv{held.ips[0].version} address'
            )
        return None

    def kept_all(
        self, tenant: Tenant, families: Sequence[int], requested: Iterable[netaddr.IPAddress], pool: str | None
    ) -> tuple[netaddr.IPAddress, ...] | None:
        """The addresses the service keeps when they already serve every family asked for, else None."""
        held = self.held.get(tenant.service)
        if (
            held is not None
            and {a.version for a in held.ips} == set(families)
            and set(requested) <= set(held.ips)
            and pool in (None, held.pool)
        ):
            self.renew(tenant)
            return held.ips
        return None

    def home(self, tenant: Tenant, ips: Sequence[netaddr.IPAddress]) -> str:
        """The pool that would hold *ips* for the tenant (restart path); raises when none may."""
        pools = []
        for ip in ips:
            pool = self.owner(ip)
            if pool is None:
                raise AddressNotAllowedError(f'"{ip}" is not allowed in config')
            pools.append(pool)
        if len(set(pools)) > 1:
            raise AllocationError(
                f'assign "{tenant.service}": {ips[0]} is in pool "{pools[0]}" but {ips[1]} is in pool '
                f'"{pools[1]}"; a service\'s addresses come from one pool'
            )
        for ip in ips:
            use = self.uses.get(ip)
            if use is not None:
                problem = sharing_problem(use, tenant)
                if problem:
                    raise AddressInUseError(f'can\'t assign "{ip}" to "{tenant.service}": {problem}')
        return pools[0]

    def vet(self, tenant: Tenant, pool: str, source: AddressSource, got: netaddr.IPAddress, family: int) -> str | None:
        """Why *got*, just acquired from *source*, cannot be recorded; None when it can."""
        if self.sources.get(pool) is not source:
            return f'pool "{pool}" changed while allocating; try again'
        if got.version != family or not source.owns(got):
            return f'pool "{pool}" handed out {got}, which is not an IPv{family} address of the pool'
        use = self.uses.get(got)
        if use is not None and tenant.service not in use.users:
            problem = sharing_problem(use, tenant)
            if problem:
                return f'pool "{pool}" handed out {got}, already held: {problem}'
        return None

    # -- changes ---------------------------------------------------------------------

    def renew(self, tenant: Tenant) -> None:
        """New ports and keys for what the service holds; raises when its co-users refuse them."""
        held = self.held[tenant.service]
        for ip in held.ips:
            use = self.uses.get(ip)
            if use is not None:
                problem = sharing_problem(use, tenant)
                if problem:
                    raise AddressInUseError(f'can\'t change sharing key for "{tenant.service}", {problem}')
        self.record(tenant, held.pool, held.ips)

    def join_wanted(
        self, tenant: Tenant, pool: str, ip: netaddr.IPAddress
    ) -> tuple[netaddr.IPAddress, Released] | None:
        """Join the other users of the requested *ip*; None when nobody else holds it."""
        use = self.uses.get(ip)
        if use is None or tenant.service in use.users:
            return None
        problem = sharing_problem(use, tenant)
        if problem:
            raise AddressInUseError(f'can\'t assign "{ip}" to "{tenant.service}": {problem}')
        return ip, self.join(tenant, pool, ip)

    def join_first_fit(
        self, tenant: Tenant, family: int, pool: str, source: AddressSource
    ) -> tuple[netaddr.IPAddress, Released] | None:
        """Join a shared address of *pool* that first fit prefers to the next free one, if any.

        Only addresses held under the tenant's keys are examined, and none after
        the next free address (which first fit would take instead).
        """
        index = self._shareable.get((pool, family, tenant.sharing_key, tenant.backend_key))
        if not index:
            return None
        nxt = source.peek(family)
        for rank in index.irange(maximum=None if nxt is None else source.rank(nxt)):
            ip = index[rank]
            if sharing_problem(self.uses[ip], tenant) is None:
                return ip, self.join(tenant, pool, ip)
        return None

    def join(self, tenant: Tenant, pool: str, ip: netaddr.IPAddress) -> Released:
        """Add the tenant to the users of *ip* in *pool* (its source learns through ``claim``)."""
        self.sources[pool].claim(tenant.service, ip)
        return self.take(tenant, pool, ip)

    def take(self, tenant: Tenant, pool: str, got: netaddr.IPAddress) -> Released:
        """Record *got* from *pool*; the service's other family stays if it is from the same pool."""
        held = self.held.get(tenant.service)
        if held is None or held.pool != pool:
            return self.record(tenant, pool, (got,))
        return self.record(tenant, pool, (*(a for a in held.ips if a.version != got.version), got))

    def claim(self, tenant: Tenant, pool: str, ips: tuple[netaddr.IPAddress, ...]) -> Released:
        """Record that the tenant holds *ips* of *pool*, telling its source (restart path)."""
        source = self.sources[pool]
        for ip in ips:
            source.claim(tenant.service, ip)
        return self.record(tenant, pool, ips)

    def record(self, tenant: Tenant, pool: str, ips: tuple[netaddr.IPAddress, ...]) -> Released:
        """Make the tenant hold exactly *ips*; return what it let go."""
        sk, bk = tenant.sharing_key, tenant.backend_key
        released = self.forget(tenant.service, keep=ips)
        self.held[tenant.service] = _Held(pool=pool, ips=ips, ports=tenant.ports, sharing_key=sk, backend_key=bk)
        for ip in ips:
            use = self.uses.get(ip)
            if use is None:
                use = self.uses[ip] = _Use(pool=pool, sharing_key=sk, backend_key=bk, users={})
                self._in_use[pool] = self._in_use.get(pool, 0) + 1
                use.users[tenant.service] = tenant.ports
                self._index(ip, use)
                continue
            if use.sharing_key != sk or use.backend_key != bk:
                self._unindex(ip)
                use.sharing_key, use.backend_key = sk, bk
                self._index(ip, use)
            use.users[tenant.service] = tenant.ports
        return released

    def forget(self, service: str, *, keep: Collection[netaddr.IPAddress] = ()) -> Released:
        """Drop what *service* holds, except *keep*; return what it let go."""
        held = self.held.pop(service, None)
        if held is None:
            return []
        released = []
        for ip in held.ips:
            if ip in keep:
                continue
            use = self.uses[ip]
            use.users.pop(service, None)
            if not use.users:
                self._unindex(ip)
                del self.uses[ip]
                self._in_use[use.pool] -= 1
            source = self.sources.get(held.pool)
            if source is not None:
                released.append((source, ip))
        return released

    def detach_sources(self) -> list[AddressSource]:
        """Forget every source (the allocator is closing) and return them."""
        sources, self.sources = list(self.sources.values()), {}
        return sources

    # -- configuration ---------------------------------------------------------------

    def moves(self, sources: Mapping[str, AddressSource], created: Iterable[AddressSource]) -> dict[str, str]:
        """The new pool of each service whose pool's source changes; raises :class:`ConfigError`.

        Allocations follow their address to whichever pool now owns it; every
        held address must belong to one pool, and a service's addresses to the same one.
        """
        fresh = {id(s) for s in created}
        moves: dict[str, str] = {}
        for service, held in self.held.items():
            old = self.sources[held.pool]
            if sources.get(held.pool) is old and id(old) not in fresh:
                continue
            homes = [owner_in(sources, ip) for ip in held.ips]
            home = homes[0]
            if home is None or any(h != home for h in homes):
                bad = held.ips[homes.index(None)] if None in homes else held.ips[1]
                raise ConfigError(
                    f'new config not compatible with assigned IPs: service "{service}" cannot own "{bad}" '
                    f"under new config; keep a pool that contains it, or release the service first"
                )
            moves[service] = home
        return moves

    def adopt(self, config: Config, sources: dict[str, AddressSource], moves: Mapping[str, str]) -> list[AddressSource]:
        """Switch to *config* and *sources* (cannot fail); return the sources no longer used."""
        dropped = [s for n, s in self.sources.items() if sources.get(n) is not s]
        for service, pool in moves.items():
            held = self.held[service]
            for ip in held.ips:
                sources[pool].claim(service, ip)
                self.uses[ip].pool = pool
            held.pool = pool
        self.sources = sources
        self.config = config
        self._auto = {}
        self._in_use = dict.fromkeys(sources, 0)
        # Pool names and ranks may have changed: rebuild the sharing index.
        self._shareable.clear()
        for ip, use in self.uses.items():
            self._in_use[use.pool] += 1
            self._index(ip, use)
        return dropped

    # -- the sharing index -----------------------------------------------------------

    def _rank(self, pool: str, ip: netaddr.IPAddress) -> int:
        rank = self.sources[pool].rank(ip)
        return int(ip) if rank is None else rank  # unordered sources: ascending addresses

    def _index(self, ip: netaddr.IPAddress, use: _Use) -> None:
        if use.sharing_key:
            key = (use.pool, ip.version, use.sharing_key, use.backend_key)
            self._shareable.setdefault(key, SortedDict())[self._rank(use.pool, ip)] = ip

    def _unindex(self, ip: netaddr.IPAddress) -> None:
        use = self.uses.get(ip)
        if use is None or not use.sharing_key:
            return
        key = (use.pool, ip.version, use.sharing_key, use.backend_key)
        index = self._shareable.get(key)
        if index is not None:
            index.pop(self._rank(use.pool, ip), None)
            if not index:
                del self._shareable[key]


def priority_order(spec: PoolSpec) -> tuple[bool, int]:
    """Sort key of pools with a service allocation: a priority (lower first, negatives too), then none (0).

    ``sorted`` is stable, so equal priorities keep configuration order
    (resource name order for resources); MetalLB leaves that order random.
    """
    priority = spec.service_allocation.priority if spec.service_allocation is not None else 0
    return (priority == 0, priority)


def may_have(spec: PoolSpec, family: int) -> bool:
    """Whether *spec* may hand out *family*: it has such CIDRs, or none at all (a remote pool)."""
    return not spec.cidrs or family in spec.families()
