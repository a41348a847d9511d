"""The allocator: which service holds which address, from which pool.

Semantics are MetalLB's (first fit in configuration order, sharing keys,
``avoid-buggy-ips``, all-or-nothing config changes) with three deliberate
improvements: auto-assign pools are tried in configuration order instead of at
random, capacity is exact for any pool size, and no operation scans a pool.

Concurrency: every method is thread-safe. One lock guards the bookkeeping;
calls into sources that may block (``acquire``, ``release``, ``reconcile``) run
outside it, and calls for the same service are serialised, so a slow address
service delays only the callers waiting on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeAlias

import attrs
import netaddr
import pluggy
from metallb.allocator.errors import (
    AddressInUseError,
    AddressNotAllowedError,
    AllocationError,
    ConfigError,
    PluginError,
    PoolExhaustedError,
    SourceUnavailableError,
    UnknownPoolError,
)
from metallb.allocator.interfaces import AddressSource, ReconcileReport, SourceCapabilities, capabilities_of
from metallb.allocator.model import Config, PoolRequest, PoolSpec, PoolStats, Port
from sortedcontainers import SortedDict

__all__ = ["Allocation", "Allocator"]

log = logging.getLogger(__name__)

IPLike: TypeAlias = "str | netaddr.IPAddress"


@attrs.frozen
class Allocation:
    """A snapshot of what one service holds (for status views)."""

    service: str
    pool: str
    ips: tuple[netaddr.IPAddress, ...]
    ports: frozenset[Port]
    sharing_key: str
    backend_key: str


@attrs.define(slots=True)
class _Held:
    pool: str
    ips: tuple[netaddr.IPAddress, ...]
    ports: frozenset[Port]
    sharing_key: str
    backend_key: str


@attrs.define(slots=True)
class _Use:
    """Who uses one address, and under which keys."""

    pool: str
    sharing_key: str
    backend_key: str
    users: dict[str, frozenset[Port]]


def _ip(value: IPLike) -> netaddr.IPAddress:
    if isinstance(value, netaddr.IPAddress):
        return value
    try:
        return netaddr.IPAddress(str(value).strip())
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise AddressNotAllowedError(f'"{value}" is not an IP address') from None


def _sharing_problem(use: _Use, service: str, ports: frozenset[Port], sharing_key: str, backend_key: str) -> str | None:
    """MetalLB's compatibility rules for *service* joining the users of an address."""
    others = [u for u in use.users if u != service]
    if not others:
        return None  # a sole user may change its keys in place
    reason = None
    if not use.sharing_key:
        reason = "existing service does not allow sharing"
    elif not sharing_key:
        reason = "new service does not allow sharing"
    elif use.sharing_key != sharing_key:
        reason = f'sharing key "{sharing_key}" does not match "{use.sharing_key}"'
    elif use.backend_key != backend_key:
        reason = "backend key (traffic policy and selector) differs"
    if reason:
        return f"address also in use by {', '.join(sorted(others))}: {reason}"
    for other in others:
        clash = ports & use.users[other]
        if clash:
            port = min(clash)
            return f"port {port} is already in use on this address by {other}"
    return None


class Allocator:
    """Holds address allocations for services, over the pools of a :class:`Config`.

    Args:
        plugin_manager: builds the address sources; by default every installed
            plugin.
        config: an initial configuration (same as calling :meth:`set_config`).
    """

    def __init__(self, *, plugin_manager: pluggy.PluginManager | None = None, config: Config | None = None) -> None:
        if plugin_manager is None:
            from metallb.allocator.plugins import default_plugin_manager

            plugin_manager = default_plugin_manager()
        self._pm = plugin_manager
        self._lock = threading.Condition(threading.Lock())
        self._busy: set[str] = set()
        self._config = Config()
        self._sources: dict[str, AddressSource] = {}
        self._held: dict[str, _Held] = {}
        self._uses: dict[netaddr.IPAddress, _Use] = {}
        self._in_use: dict[str, int] = {}
        # (pool, family, sharing key, backend key) -> rank -> address, for
        # finding a compatible shared address without scanning the pool.
        self._shareable: dict[tuple[str, int, str, str], SortedDict] = {}
        if config is not None:
            self.set_config(config)

    def __repr__(self) -> str:
        return f"<Allocator(pools={len(self._sources)}, services={len(self._held)}, addresses={len(self._uses)})>"

    # -- configuration -------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self._config

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The plugins this allocator builds sources with (call them through :class:`~metallb.allocator.Hooks`)."""
        return self._pm

    def capabilities(self, pool: str) -> SourceCapabilities:
        """What *pool*'s source declares (finalizer, annotations); the defaults for an unknown pool."""
        return capabilities_of(self._sources.get(pool))

    def set_config(self, config: Config) -> None:
        """Replace the pools, all or nothing.

        Allocations follow their address to whichever pool now contains it
        (renamed and split pools work). Raises :class:`ConfigError`, changing
        nothing, when an address in use would belong to no pool.
        """
        created: list[AddressSource] = []
        with self._lock:
            try:
                sources: dict[str, AddressSource] = {}
                for name, spec in config.pools.items():
                    old = self._sources.get(name)
                    if old is not None and old.spec == spec:
                        sources[name] = old
                        continue
                    source = self._pm.hook.metallb_make_source(spec=spec)
                    if source is None:
                        raise ConfigError(
                            f'pool "{name}": no installed plugin builds pools of section "{spec.kind}"; '
                            f"run `metallb plugins` to see what is loaded"
                        )
                    created.append(source)
                    sources[name] = source
                kept = {id(s) for s in sources.values()} - {id(s) for s in created}
                moves: dict[str, str] = {}
                for service, held in self._held.items():
                    if id(self._sources[held.pool]) in kept and sources.get(held.pool) is self._sources[held.pool]:
                        continue
                    homes = {self._owner_in(sources, ip) for ip in held.ips}
                    if None in homes or len(homes) != 1:
                        bad = (
                            next(ip for ip in held.ips if self._owner_in(sources, ip) is None)
                            if None in homes
                            else held.ips[1]
                        )
                        raise ConfigError(
                            f'new config not compatible with assigned IPs: service "{service}" cannot own "{bad}" '
                            f"under new config; keep a pool that contains it, or release the service first"
                        )
                    moves[service] = homes.pop()  # type: ignore[assignment]
            except BaseException:
                for source in created:
                    with contextlib.suppress(Exception):
                        source.close()
                raise
            # Commit: nothing below can fail.
            dropped = [s for n, s in self._sources.items() if sources.get(n) is not s]
            for service, pool in moves.items():
                held = self._held[service]
                for ip in held.ips:
                    sources[pool].claim(service, ip)
                    self._uses[ip].pool = pool
                held.pool = pool
            self._sources = sources
            self._config = config
            self._in_use = dict.fromkeys(sources, 0)
            # Pool names and ranks may have changed: rebuild the sharing index.
            self._shareable.clear()
            for ip, use in self._uses.items():
                self._in_use[use.pool] += 1
                self._index(ip, use)
        for source in dropped:
            try:
                source.close()
            except Exception:
                log.exception("closing the source of a removed pool failed")

    @staticmethod
    def _owner_in(sources: Mapping[str, AddressSource], ip: netaddr.IPAddress) -> str | None:
        for name, source in sources.items():
            if source.owns(ip):
                return name
        return None

    # -- bookkeeping helpers (lock held) -------------------------------------------

    def _rank(self, pool: str, ip: netaddr.IPAddress) -> int:
        rank = self._sources[pool].rank(ip)
        return int(ip) if rank is None else rank  # unordered sources: ascending addresses

    def _index(self, ip: netaddr.IPAddress, use: _Use) -> None:
        if use.sharing_key:
            key = (use.pool, ip.version, use.sharing_key, use.backend_key)
            self._shareable.setdefault(key, SortedDict())[self._rank(use.pool, ip)] = ip

    def _unindex(self, ip: netaddr.IPAddress) -> None:
        use = self._uses.get(ip)
        if use is None or not use.sharing_key:
            return
        key = (use.pool, ip.version, use.sharing_key, use.backend_key)
        index = self._shareable.get(key)
        if index is not None:
            index.pop(self._rank(use.pool, ip), None)
            if not index:
                del self._shareable[key]

    def _pool_of_ip(self, ip: netaddr.IPAddress) -> str | None:
        return self._owner_in(self._sources, ip)

    def _record(
        self, service: str, pool: str, ips: tuple[netaddr.IPAddress, ...], ports: frozenset[Port], sk: str, bk: str
    ) -> list[tuple[AddressSource, netaddr.IPAddress]]:
        """Make *service* hold exactly *ips*; return the (source, ip) pairs it let go."""
        released = self._forget(service, keep=ips)
        self._held[service] = _Held(pool=pool, ips=ips, ports=ports, sharing_key=sk, backend_key=bk)
        for ip in ips:
            use = self._uses.get(ip)
            if use is None:
                use = self._uses[ip] = _Use(pool=pool, sharing_key=sk, backend_key=bk, users={})
                self._in_use[pool] = self._in_use.get(pool, 0) + 1
                use.users[service] = ports
                self._index(ip, use)
                continue
            if (use.sharing_key, use.backend_key) != (sk, bk):
                self._unindex(ip)
                use.sharing_key, use.backend_key = sk, bk
                self._index(ip, use)
            use.users[service] = ports
        return released

    def _forget(
        self, service: str, *, keep: Iterable[netaddr.IPAddress] = ()
    ) -> list[tuple[AddressSource, netaddr.IPAddress]]:
        held = self._held.pop(service, None)
        if held is None:
            return []
        keep = set(keep)
        released = []
        for ip in held.ips:
            if ip in keep:
                continue
            use = self._uses[ip]
            use.users.pop(service, None)
            if not use.users:
                self._unindex(ip)
                del self._uses[ip]
                self._in_use[use.pool] -= 1
            source = self._sources.get(held.pool)
            if source is not None:
                released.append((source, ip))
        return released

    def _release(self, service: str, released: Sequence[tuple[AddressSource, netaddr.IPAddress]]) -> None:
        """Give addresses back to their sources, outside the lock."""
        for source, ip in released:
            try:
                source.release(service, ip)
            except Exception:
                log.exception("pool %r failed to release %s for %s", source.spec.name, ip, service)
            self._notify(self._pm.hook.metallb_address_released, service, ip, source.spec.name)

    def _notify(self, hook: pluggy.HookCaller, service: str, ip: netaddr.IPAddress, pool: str) -> None:
        try:
            hook(service=service, ip=ip, pool=pool)
        except Exception:
            log.exception("a plugin's %s hook raised", hook.name)

    @contextlib.contextmanager
    def _serial(self, service: str) -> Iterator[None]:
        """Serialise calls for one service; other services proceed in parallel."""
        with self._lock:
            while service in self._busy:
                self._lock.wait()
            self._busy.add(service)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(service)
                self._lock.notify_all()

    # -- the public API --------------------------------------------------------------

    def assign(
        self,
        service: str,
        ips: IPLike | Sequence[IPLike],
        *,
        ports: Iterable[Port] = (),
        sharing_key: str = "",
        backend_key: str = "",
    ) -> tuple[netaddr.IPAddress, ...]:
        """Record that *service* holds *ips* (one address, or one per family).

        Replaces whatever the service held. Never talks to a remote source:
        this is the restart path, re-learning addresses from Service status.
        Raises :class:`AllocationError` (and changes nothing) when an address
        is in no pool or cannot be shared with its current users.
        """
        wanted = (_ip(ips),) if isinstance(ips, (str, netaddr.IPAddress)) else tuple(_ip(i) for i in ips)
        if not wanted:
            raise AllocationError(f'assign "{service}": no address given')
        if len({ip.version for ip in wanted}) != len(wanted):
            raise AllocationError(
                f'assign "{service}": at most one address per IP family, got {", ".join(map(str, wanted))}'
            )
        port_set = frozenset(ports)
        with self._serial(service):
            with self._lock:
                pools = []
                for ip in wanted:
                    pool = self._pool_of_ip(ip)
                    if pool is None:
                        raise AddressNotAllowedError(f'"{ip}" is not allowed in config')
                    pools.append(pool)
                if len(set(pools)) > 1:
                    raise AllocationError(
                        f'assign "{service}": {wanted[0]} is in pool "{pools[0]}" but {wanted[1]} is in pool '
                        f'"{pools[1]}"; a service\'s addresses come from one pool'
                    )
                for ip in wanted:
                    use = self._uses.get(ip)
                    if use is not None:
                        problem = _sharing_problem(use, service, port_set, sharing_key, backend_key)
                        if problem:
                            raise AddressInUseError(f'can\'t assign "{ip}" to "{service}": {problem}')
                source = self._sources[pools[0]]
                for ip in wanted:
                    source.claim(service, ip)
                released = self._record(service, pools[0], wanted, port_set, sharing_key, backend_key)
            self._release(service, released)
        for ip in wanted:
            self._notify(self._pm.hook.metallb_address_allocated, service, ip, pools[0])
        return wanted

    def allocate(
        self,
        service: str,
        *,
        family: int | None = None,
        pool: str | None = None,
        ip: IPLike | None = None,
        ports: Iterable[Port] = (),
        sharing_key: str = "",
        backend_key: str = "",
    ) -> netaddr.IPAddress:
        """Give *service* one address and return it.

        Args:
            family: 4 or 6 (default: the family of *ip*, else 4).
            pool: take it from this pool (``auto-assign: false`` pools allowed);
                default: the auto-assign pools in configuration order.
            ip: exactly this address (the pool's source is asked for it).
            ports: the service's ports, for sharing.
            sharing_key: the ``allow-shared-ip`` value; empty means never share.
            backend_key: services share only with equal backend keys.

        A service that already holds an address of *family* keeps it (its
        ports and keys are updated); asking for another ``ip`` or ``pool``
        moves it. Raises :class:`AllocationError` (subclasses say why) and
        holds nothing new when it fails; when every auto-assign pool fails,
        the message names each pool tried and why.
        """
        wanted = None if ip is None else _ip(ip)
        fam = family if family is not None else (wanted.version if wanted is not None else 4)
        if fam not in (4, 6):
            raise AllocationError(f'allocate "{service}": family must be 4 or 6, not {family!r}')
        if wanted is not None and wanted.version != fam:
            raise AllocationError(f'allocate "{service}": requested address {wanted} is not an IPv{fam} address')
        with self._serial(service):
            return self._allocate(service, fam, pool, wanted, frozenset(ports), sharing_key, backend_key, extend=False)

    def allocate_dual(
        self,
        service: str,
        *,
        families: Sequence[int] = (4, 6),
        pool: str | None = None,
        ips: Sequence[IPLike] = (),
        ports: Iterable[Port] = (),
        sharing_key: str = "",
        backend_key: str = "",
        require_all: bool = True,
    ) -> tuple[netaddr.IPAddress, ...]:
        """Give *service* one address per family, all from the same pool.

        ``require_all=False`` is Kubernetes' ``PreferDualStack``: when no pool
        can serve every family, fall back to the first family that works.
        """
        port_set = frozenset(ports)
        requested = {a.version: a for a in map(_ip, ips)}
        with self._serial(service):
            with self._lock:
                held = self._held.get(service)
                if (
                    held is not None
                    and {a.version for a in held.ips} == set(families)
                    and set(requested.values()) <= set(held.ips)
                    and pool in (None, held.pool)
                ):
                    # Already served: update ports and keys in place, release nothing.
                    self._check_share(service, held.ips, port_set, sharing_key, backend_key)
                    self._record(service, held.pool, held.ips, port_set, sharing_key, backend_key)
                    return held.ips
                if pool is not None:
                    candidates = [self._spec(pool)]
                elif requested:
                    first = next(iter(requested.values()))
                    owner = self._pool_of_ip(first)
                    if owner is None:
                        raise AddressNotAllowedError(f'"{first}" is not allowed in config')
                    candidates = [self._spec(owner)]
                else:
                    candidates = [
                        p
                        for p in self._select(service, families[0], sharing_key, backend_key)
                        if all(f in p.families() or not p.cidrs for f in families)
                    ]
            if held is not None:
                self._release_all(service)
            errors = []
            for spec in candidates:
                got: list[netaddr.IPAddress] = []
                try:
                    for fam in families:
                        got.append(
                            self._allocate(
                                service,
                                fam,
                                spec.name,
                                requested.get(fam),
                                port_set,
                                sharing_key,
                                backend_key,
                                extend=True,
                            )
                        )
                    return tuple(got)
                except AllocationError as exc:
                    errors.append(f'pool "{spec.name}": {exc}')
                    self._release_all(service)
            if not require_all:
                for fam in families:
                    try:
                        return (
                            self._allocate(
                                service, fam, pool, requested.get(fam), port_set, sharing_key, backend_key, extend=False
                            ),
                        )
                    except AllocationError as exc:
                        errors.append(f"IPv{fam} alone: {exc}")
            raise PoolExhaustedError(
                f'no pool can give "{service}" addresses of families {"/".join(f"IPv{f}" for f in families)}'
                + (f": {'; '.join(errors)}" if errors else ": no pool has addresses of every family")
            )

    def _release_all(self, service: str) -> None:
        """Release everything *service* holds; the caller already serialises it."""
        with self._lock:
            released = self._forget(service)
        self._release(service, released)

    def _spec(self, pool: str) -> PoolSpec:
        spec = self._config.pools.get(pool)
        if spec is None:
            raise UnknownPoolError(f'unknown pool "{pool}"; known pools: {", ".join(self._config.pools) or "none"}')
        return spec

    def _select(self, service: str, family: int, sharing_key: str, backend_key: str) -> list[PoolSpec]:
        pools = list(self._config.pools.values())
        request = PoolRequest(service=service, family=family, sharing_key=sharing_key, backend_key=backend_key)
        chosen = self._pm.hook.metallb_select_pools(request=request, pools=pools)
        if chosen is None:
            return [p for p in pools if p.auto_assign and (family in p.families() or not p.cidrs)]
        for p in chosen:
            if not isinstance(p, PoolSpec) or p.name not in self._config.pools:
                raise PluginError(f"metallb_select_pools returned {p!r}, which is not a configured pool")
        return list(chosen)

    def _check_share(
        self, service: str, ips: Iterable[netaddr.IPAddress], ports: frozenset[Port], sk: str, bk: str
    ) -> None:
        for ip in ips:
            use = self._uses.get(ip)
            if use is not None:
                problem = _sharing_problem(use, service, ports, sk, bk)
                if problem:
                    raise AddressInUseError(f'can\'t change sharing key for "{service}", {problem}')

    def _shared_candidate(
        self, spec: PoolSpec, service: str, family: int, ports: frozenset[Port], sk: str, bk: str, *, before: int | None
    ) -> tuple[int, netaddr.IPAddress] | None:
        """The first address under these keys this service may join, up to rank *before*.

        Only addresses held under the same keys are examined, and none after the
        next free address (which first fit would take instead).
        """
        index = self._shareable.get((spec.name, family, sk, bk))
        if not index:
            return None
        for rank in index.irange(maximum=before):
            ip = index[rank]
            if _sharing_problem(self._uses[ip], service, ports, sk, bk) is None:
                return rank, ip
        return None

    def _allocate(
        self,
        service: str,
        family: int,
        pool: str | None,
        wanted: netaddr.IPAddress | None,
        ports: frozenset[Port],
        sk: str,
        bk: str,
        *,
        extend: bool,
    ) -> netaddr.IPAddress:
        """One address of *family*; the caller holds the service's serialisation."""
        with self._lock:
            held = self._held.get(service)
            if held is not None:
                same = [a for a in held.ips if a.version == family]
                moving = (wanted is not None and same and wanted != same[0]) or (pool is not None and pool != held.pool)
                if same and not moving:
                    self._check_share(service, held.ips, ports, sk, bk)
                    self._record(service, held.pool, held.ips, ports, sk, bk)
                    return same[0]
                if not same and not extend and not moving:
                    raise AllocationError(
                        f"IP for wrong family assigned {held.ips[0]}: "
                        f'"{service}" holds an IPv{held.ips[0].version} address'
                    )
            shared: tuple[str, netaddr.IPAddress] | None = None
            if wanted is not None:
                owner = self._pool_of_ip(wanted)
                if owner is None:
                    raise AddressNotAllowedError(f'"{wanted}" is not allowed in config')
                if pool is not None and owner != pool:
                    self._spec(pool)
                    raise AddressNotAllowedError(
                        f'requested address {wanted} is in pool "{owner}", not in requested pool "{pool}"'
                    )
                candidates = [self._config.pools[owner]]
                use = self._uses.get(wanted)
                if use is not None and service not in use.users:
                    problem = _sharing_problem(use, service, ports, sk, bk)
                    if problem:
                        raise AddressInUseError(f'can\'t assign "{wanted}" to "{service}": {problem}')
                    shared = (owner, wanted)
            elif pool is not None:
                spec = self._spec(pool)
                if spec.cidrs and family not in spec.families():
                    raise PoolExhaustedError(f'no available IPs in pool "{pool}": it has no IPv{family} addresses')
                candidates = [spec]
            else:
                candidates = self._select(service, family, sk, bk)
            if shared is not None:
                released = self._commit_share(service, shared[0], shared[1], ports, sk, bk)
        if shared is not None:
            self._release(service, released)
            self._notify(self._pm.hook.metallb_address_allocated, service, shared[1], shared[0])
            return shared[1]
        errors: list[tuple[str, AllocationError]] = []
        for spec in candidates:
            with self._lock:
                source = self._sources.get(spec.name)
                if source is None:
                    continue
                found = None
                if wanted is None and sk:
                    nxt = source.peek(family)
                    # First fit: a compatible shared address wins over a later free one.
                    found = self._shared_candidate(
                        spec, service, family, ports, sk, bk, before=None if nxt is None else source.rank(nxt)
                    )
                    if found is not None:
                        released = self._commit_share(service, spec.name, found[1], ports, sk, bk)
            if found is not None:
                self._release(service, released)
                self._notify(self._pm.hook.metallb_address_allocated, service, found[1], spec.name)
                return found[1]
            try:
                got = source.acquire(service, family=family, wanted=wanted)
            except AllocationError as exc:
                errors.append((spec.name, exc))
                continue
            except Exception as exc:
                log.exception("pool %r failed unexpectedly", spec.name)
                errors.append((spec.name, SourceUnavailableError(f"{type(exc).__name__}: {exc}")))
                continue
            with self._lock:
                problem = self._commit_check(service, spec.name, source, got, family, ports, sk, bk)
                if problem is None:
                    released = self._record(service, spec.name, self._combined(service, spec.name, got), ports, sk, bk)
            if problem is not None:
                self._release(service, [(source, got)])
                errors.append((spec.name, AllocationError(problem)))
                continue
            self._release(service, released)
            self._notify(self._pm.hook.metallb_address_allocated, service, got, spec.name)
            return got
        raise self._failure(service, family, pool, wanted, errors)

    def _combined(self, service: str, pool: str, got: netaddr.IPAddress) -> tuple[netaddr.IPAddress, ...]:
        """The service's addresses after taking *got* from *pool*: other families stay if same pool."""
        held = self._held.get(service)
        if held is None or held.pool != pool:
            return (got,)
        return (*(a for a in held.ips if a.version != got.version), got)

    def _commit_check(
        self,
        service: str,
        pool: str,
        source: AddressSource,
        got: netaddr.IPAddress,
        family: int,
        ports: frozenset[Port],
        sk: str,
        bk: str,
    ) -> str | None:
        if self._sources.get(pool) is not source:
            return f'pool "{pool}" changed while allocating; try again'
        if got.version != family or not source.owns(got):
            return f'pool "{pool}" handed out {got}, which is not an IPv{family} address of the pool'
        use = self._uses.get(got)
        if use is not None and service not in use.users:
            problem = _sharing_problem(use, service, ports, sk, bk)
            if problem:
                return f'pool "{pool}" handed out {got}, already held: {problem}'
        return None

    def _commit_share(
        self, service: str, pool: str, ip: netaddr.IPAddress, ports: frozenset[Port], sk: str, bk: str
    ) -> list[tuple[AddressSource, netaddr.IPAddress]]:
        """Join the users of *ip* (lock held, no I/O); return what to release after the lock."""
        self._sources[pool].claim(service, ip)
        return self._record(service, pool, self._combined(service, pool, ip), ports, sk, bk)

    def _failure(
        self,
        service: str,
        family: int,
        pool: str | None,
        wanted: netaddr.IPAddress | None,
        errors: list[tuple[str, AllocationError]],
    ) -> AllocationError:
        if len(errors) == 1 and (pool is not None or wanted is not None):
            return errors[0][1]
        if not errors:
            return PoolExhaustedError(
                f'no available IPs: no auto-assign pool has IPv{family} addresses for "{service}"'
            )
        detail = "; ".join(f'pool "{name}": {exc}' for name, exc in errors)
        kind = PoolExhaustedError if all(isinstance(e, PoolExhaustedError) for _, e in errors) else AllocationError
        return kind(f'no available IPs for "{service}" (tried {len(errors)} pools): {detail}')

    def unassign(self, service: str) -> bool:
        """Release everything *service* holds. Idempotent: False if it held nothing."""
        with self._serial(service):
            with self._lock:
                if service not in self._held:
                    return False
                released = self._forget(service)
            self._release(service, released)
        return True

    def ips(self, service: str) -> tuple[netaddr.IPAddress, ...]:
        """The addresses *service* holds, () if none."""
        with self._lock:
            held = self._held.get(service)
            return held.ips if held else ()

    def pool_of(self, service: str) -> str | None:
        """The pool *service*'s addresses come from, or None."""
        with self._lock:
            held = self._held.get(service)
            return held.pool if held else None

    def allocation(self, service: str) -> Allocation | None:
        """What *service* holds (addresses, pool, ports, keys), or None."""
        with self._lock:
            h = self._held.get(service)
            if h is None:
                return None
            return Allocation(
                service=service,
                pool=h.pool,
                ips=h.ips,
                ports=h.ports,
                sharing_key=h.sharing_key,
                backend_key=h.backend_key,
            )

    def pool_for(self, ip: IPLike) -> str | None:
        """The pool that contains *ip* under the current config, or None."""
        with self._lock:
            return self._pool_of_ip(_ip(ip))

    def users(self, ip: IPLike) -> tuple[str, ...]:
        """The services holding *ip*, sorted."""
        with self._lock:
            use = self._uses.get(_ip(ip))
            return tuple(sorted(use.users)) if use else ()

    def stats(self, pool: str) -> PoolStats:
        """Exact capacity (None when unknown) and distinct addresses in use."""
        with self._lock:
            source = self._sources.get(pool)
            if source is None:
                raise UnknownPoolError(f'unknown pool "{pool}"; known pools: {", ".join(self._sources) or "none"}')
            return PoolStats(total=source.capacity(), in_use=self._in_use.get(pool, 0))

    def describe(self, service: str) -> dict[str, str]:
        """Source facts about *service*'s addresses (for example a lease id)."""
        with self._lock:
            held = self._held.get(service)
            source = self._sources.get(held.pool) if held else None
        out: dict[str, str] = {}
        if held and source:
            for ip in held.ips:
                out.update(source.describe(ip))
        return out

    def allocations(self) -> list[Allocation]:
        """A snapshot of every allocation, sorted by service."""
        with self._lock:
            return [
                Allocation(
                    service=s,
                    pool=h.pool,
                    ips=h.ips,
                    ports=h.ports,
                    sharing_key=h.sharing_key,
                    backend_key=h.backend_key,
                )
                for s, h in sorted(self._held.items())
            ]

    def reconcile(self, pool: str | None = None) -> dict[str, ReconcileReport]:
        """Ask each pool's source (or only *pool*'s) to compare what we hold with its backend."""
        with self._lock:
            names = [pool] if pool is not None else list(self._sources)
            work = []
            for name in names:
                source = self._sources.get(name)
                if source is None:
                    raise UnknownPoolError(f'unknown pool "{name}"')
                held = {ip: tuple(sorted(u.users)) for ip, u in self._uses.items() if u.pool == name}
                work.append((name, source, held))
        reports = {}
        for name, source, held in work:
            try:
                reports[name] = source.reconcile(held)
            except Exception as exc:  # noqa: BLE001 - one failing pool must not stop the others
                log.warning("reconciling pool %r failed: %s", name, exc)
                reports[name] = ReconcileReport(supported=False)
        return reports

    def close(self) -> None:
        """Close every source (releases nothing)."""
        with self._lock:
            sources, self._sources = list(self._sources.values()), {}
        for source in sources:
            with contextlib.suppress(Exception):
                source.close()
