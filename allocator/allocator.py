"""The allocator: which service holds which address, from which pool.

Semantics are MetalLB's (first fit in configuration order, sharing keys,
``avoid-buggy-ips``, pools chosen by ``serviceAllocation`` and priority,
all-or-nothing config changes) with three deliberate improvements: auto-assign
pools of equal priority are tried in configuration order instead of at random,
capacity is exact for any pool size, and no operation scans a pool.

Concurrency: every method is thread-safe. The bookkeeping is a lock-free
:class:`~metallb.allocator.ledger.Ledger`; this facade holds one lock around
every use of it. Calls into sources that may block (``acquire``, ``release``,
``reconcile``, ``describe``) and hook notifications run outside the lock, and
calls for the same service are serialised, so a slow address service delays
only the callers waiting on it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TypeAlias

import netaddr
import pluggy
from metallb.allocator import values
from metallb.allocator.errors import (
    AddressNotAllowedError,
    AllocationError,
    PoolExhaustedError,
    SourceUnavailableError,
    UnknownPoolError,
)
from metallb.allocator.interfaces import AddressSource, ReconcileReport, SourceCapabilities
from metallb.allocator.ledger import Allocation, Ledger, Released, Tenant, may_have
from metallb.allocator.model import Config, PoolRequest, PoolSpec, PoolStats, Port
from metallb.allocator.plugins import Hooks, default_plugin_manager

__all__ = ["Allocation", "Allocator"]

log = logging.getLogger(__name__)

IPLike: TypeAlias = "str | netaddr.IPAddress"
_FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}


#: The :class:`PoolSpec` fields that decide which addresses a pool's source hands
#: out. A pool whose other fields change (protocol, interfaces, node selectors,
#: advertisements, auto-assign, service allocation, labels: how its addresses are
#: announced, and to whom they are offered unasked) keeps its source, and with it what the source
#: tracks (an address service's lease ids); the source gets the new spec.
ALLOCATION_FIELDS = ("name", "kind", "cidrs", "avoid_buggy_ips", "options")


_NO_CAPABILITIES = SourceCapabilities()


def _reusable(old: PoolSpec, new: PoolSpec) -> bool:
    """Whether a source built for *old* hands out the same addresses for *new*."""
    return all(getattr(old, field) == getattr(new, field) for field in ALLOCATION_FIELDS)


@functools.cache
def _takes_uid(kind: type[AddressSource]) -> bool:
    """Whether a source class's ``acquire`` accepts ``uid`` (added to the protocol later)."""
    try:
        parameters = inspect.signature(kind.acquire).parameters
    except (TypeError, ValueError, AttributeError):
        return False
    return "uid" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _ip(value: IPLike, where: str = "", argument: str = "ip") -> netaddr.IPAddress:
    """An address argument: a TypeError for what is no address at all, AddressNotAllowedError for bad text."""
    value = values.ip_value(value, where, argument)
    if isinstance(value, netaddr.IPAddress):
        return value
    try:
        return netaddr.IPAddress(str(value).strip())
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise AddressNotAllowedError(f'"{value}" is not an IP address') from None


def _tenant(
    where: str,
    service: object,
    ports: object,
    sharing_key: object,
    backend_key: object,
    labels: object = None,
    uid: object = None,
) -> Tenant:
    """The service, its sharing terms, its labels and uid, each argument checked (TypeError or ValueError naming it)."""
    if labels is not None and not (
        isinstance(labels, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    ):
        raise TypeError(f'{where}: argument "labels": value {values.shown(labels)}: must map label names to strings')
    return Tenant(
        service=values.service_key(service, where),
        ports=values.ports(ports, where),
        sharing_key=values.text(sharing_key, where, "sharing_key"),
        backend_key=values.text(backend_key, where, "backend_key"),
        labels=tuple(sorted((labels or {}).items())),
        uid=None if uid is None else values.text(uid, where, "uid"),
    )


def _failure(
    service: str,
    family: int | None,
    pool: str | None,
    wanted: netaddr.IPAddress | None,
    errors: list[tuple[str, AllocationError]],
) -> AllocationError:
    """The error of an allocation every candidate pool refused; *errors* are (``pool "name"``, exception) pairs."""
    if len(errors) == 1 and (pool is not None or wanted is not None):
        return errors[0][1]
    if not errors:
        what = "addresses" if family is None else f"IPv{family} addresses"
        return PoolExhaustedError(f'no available IPs: no auto-assign pool has {what} for "{service}"')
    detail = "; ".join(f"{label}: {exc}" for label, exc in errors)
    kind = PoolExhaustedError if all(isinstance(e, PoolExhaustedError) for _, e in errors) else AllocationError
    return kind(f'no available IPs for "{service}" (tried {len(errors)} pools): {detail}')


class Allocator:
    """Holds address allocations for services, over the pools of a :class:`Config`.

    Args:
        plugin_manager: builds the address sources; by default every installed
            plugin.
        config: an initial configuration (same as calling :meth:`set_config`).
    """

    def __init__(self, *, plugin_manager: pluggy.PluginManager | None = None, config: Config | None = None) -> None:
        self._hooks = Hooks(plugin_manager if plugin_manager is not None else default_plugin_manager())
        self._kinds: Mapping[str, SourceCapabilities] | None = None  # resolved on first use and at set_config
        self._lock = threading.Condition(threading.Lock())
        self._busy: set[str] = set()  # services with a call in progress
        self._waiting = 0  # callers waiting for their service's turn
        self._ledger = Ledger()
        if config is not None:
            self.set_config(config)

    def __repr__(self) -> str:
        book = self._ledger
        return f"<Allocator(pools={len(book.sources)}, services={len(book.held)}, addresses={len(book.uses)})>"

    # -- configuration -------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self._ledger.config

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The plugins this allocator builds sources with (call them through :class:`~metallb.allocator.Hooks`)."""
        return self._hooks.plugin_manager

    def source(self, pool: str) -> AddressSource:
        """The address source serving *pool* (for status views and tests); :class:`UnknownPoolError` if none."""
        values.pool_name(pool, "source()")
        with self._lock:
            return self._source_of(pool)

    def pool_kinds(self) -> Mapping[str, SourceCapabilities]:
        """Every pool kind (section) the plugins provide, with what its pools declare (``metallb_pool_capabilities``).

        Independent of the pools the config has: the controller removes the
        annotations of every kind from Services that no longer hold such an
        address. Asked of the plugins once, and again at each :meth:`set_config`.
        """
        with self._lock:
            kinds = self._kinds
        if kinds is not None:
            return kinds
        resolved = self._resolve_kinds(self.config)  # hooks run outside the lock
        with self._lock:
            if self._kinds is None:  # unless a set_config resolved them meanwhile
                self._kinds = resolved
            return self._kinds

    def capabilities(self, pool: str) -> SourceCapabilities:
        """What *pool*'s kind declares (finalizer, annotations); the defaults for an unknown pool."""
        values.pool_name(pool, "capabilities()")
        spec = self.config.pools.get(pool)
        if spec is None:
            return _NO_CAPABILITIES
        return self.pool_kinds().get(spec.kind, _NO_CAPABILITIES)

    def _resolve_kinds(self, config: Config) -> Mapping[str, SourceCapabilities]:
        """Ask the plugins what each pool kind declares: every section they name, and those *config* uses."""
        sections = dict.fromkeys([*self._hooks.pool_sections(), *(spec.kind for spec in config.pools.values())])
        return MappingProxyType({section: self._hooks.pool_capabilities(section) for section in sections})

    def set_config(self, config: Config) -> None:
        """Replace the pools, all or nothing.

        Allocations follow their address to whichever pool now contains it
        (renamed and split pools work). A pool whose :data:`ALLOCATION_FIELDS`
        are unchanged keeps its source, which gets the new spec. Raises,
        changing nothing, :class:`ConfigError` when an address in use would
        belong to no pool, and :class:`PluginError` when no plugin builds a
        pool's kind or a plugin answers wrongly.
        """
        kinds = self._resolve_kinds(config)
        created: list[AddressSource] = []
        with self._lock:
            try:
                sources = {name: self._source_for(name, spec, created) for name, spec in config.pools.items()}
                moves = self._ledger.moves(sources, created)
            except BaseException:
                for source in created:
                    with contextlib.suppress(Exception):
                        source.close()
                raise
            # Commit: nothing below can fail.
            dropped = self._ledger.adopt(config, sources, moves)
            self._kinds = kinds
            for name, source in sources.items():
                _hand_spec(source, config.pools[name])
        for source in dropped:
            try:
                source.close()
            except Exception:
                log.exception("closing the source of a removed pool failed")

    def _source_for(self, name: str, spec: PoolSpec, created: list[AddressSource]) -> AddressSource:
        """The current source of pool *name* if it serves *spec*, else a new one (added to *created*)."""
        old = self._ledger.sources.get(name)
        if old is not None and _reusable(old.spec, spec):
            return old
        source = self._hooks.make_source(spec)
        created.append(source)
        return source

    # -- outside the lock ----------------------------------------------------------

    def _release(self, service: str, released: Released) -> None:
        """Give addresses back to their sources, outside the lock."""
        for source, ip in released:
            try:
                source.release(service, ip)
            except Exception:
                log.exception("pool %r failed to release %s for %s", source.spec.name, ip, service)
            self._hooks.address_released(service, ip, source.spec.name)

    def _release_all(self, service: str) -> None:
        """Release everything *service* holds; the caller already serialises it."""
        with self._lock:
            released = self._ledger.forget(service)
        self._release(service, released)

    def _done(self, service: str, pool: str, ip: netaddr.IPAddress, released: Released) -> netaddr.IPAddress:
        """After *service* got *ip* from *pool*: release what it let go, notify, return *ip*."""
        self._release(service, released)
        self._hooks.address_allocated(service, ip, pool)
        return ip

    def _serial(self, service: str) -> _Turn:
        """Serialise calls for one service; other services proceed in parallel."""
        return _Turn(self, service)

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
        """Record that *service* holds *ips* (one address, or one per family) and return them.

        Replaces whatever the service held. Never talks to a remote source:
        this is the restart path, re-learning addresses from Service status.

        Returns:
            The addresses the service now holds, as ``netaddr.IPAddress``
            objects in the order given: a tuple of one address, or of one
            per family.

        Raises :class:`AllocationError` (and changes nothing) when an address
        is in no pool or cannot be shared with its current users;
        ``TypeError``/``ValueError`` for a malformed argument.
        """
        tenant = _tenant("assign()", service, ports, sharing_key, backend_key)
        if isinstance(ips, (str, bytes)) or not isinstance(ips, Iterable):
            wanted: tuple[netaddr.IPAddress, ...] = (_ip(ips, "assign()", "ips"),)  # type: ignore[arg-type]
        else:
            wanted = tuple(_ip(i, "assign()", "ips") for i in ips)
        if not wanted:
            raise AllocationError(f'assign "{service}": no address given')
        if len({ip.version for ip in wanted}) != len(wanted):
            raise AllocationError(
                f'assign "{service}": at most one address per IP family, got {", ".join(map(str, wanted))}'
            )
        with self._serial(service):
            with self._lock:
                pool = self._ledger.home(tenant, wanted)
                released = self._ledger.claim(tenant, pool, wanted)
            self._release(service, released)
        for ip in wanted:
            self._hooks.address_allocated(service, ip, pool)
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
        labels: Mapping[str, str] | None = None,
        uid: str | None = None,
    ) -> netaddr.IPAddress:
        """Give *service* one address and return it.

        Args:
            family: 4 or 6; None (the default) takes the family of *ip*, and
                without *ip* an address of any family: from the first pool
                (in selection order) with a free address, IPv4 first within a
                dual-stack pool. A service already holding an address keeps it.
            pool: take it from this pool (``auto-assign: false`` pools allowed);
                default: the auto-assign pools whose ``service_allocation``
                selects the service, by priority, then those without one, in
                configuration order.
            ip: exactly this address (the pool's source is asked for it).
            ports: the service's ports, for sharing.
            sharing_key: the ``allow-shared-ip`` value; empty means never share.
            backend_key: services share only with equal backend keys.
            labels: the Service's labels, for pools' ``service_allocation``
                (the namespace is the part of *service* before the slash).
            uid: the Service's ``metadata.uid``, handed to the source (an
                address service keys its idempotent POST on it).

        A service that already holds an address of *family* keeps it (its
        ports and keys are updated); asking for another ``ip`` or ``pool``
        moves it. Raises :class:`AllocationError` (subclasses say why) and
        holds nothing new when it fails; when every auto-assign pool fails,
        the message names each pool tried and why. A malformed argument is a
        ``TypeError`` or ``ValueError`` naming it.
        """
        tenant = _tenant("allocate()", service, ports, sharing_key, backend_key, labels, uid)
        fam = values.family(family, "allocate()", optional=True)
        pool = values.pool_name(pool, "allocate()", optional=True)
        wanted = None if ip is None else _ip(ip, "allocate()")
        if wanted is not None and fam is None:
            fam = wanted.version
        if wanted is not None and wanted.version != fam:
            raise AllocationError(f'allocate "{service}": requested address {wanted} is not an IPv{fam} address')
        with self._serial(tenant.service):
            if fam is None:
                return self._allocate_any(tenant, pool)
            return self._allocate(tenant, fam, pool, wanted, extend=False)

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
        labels: Mapping[str, str] | None = None,
        uid: str | None = None,
    ) -> tuple[netaddr.IPAddress, ...]:
        """Give *service* one address per family, all from the same pool, and return them.

        One pool serves every family, as in MetalLB: a dual-stack service needs
        a pool with an IPv4 and an IPv6 range (two single-family pools do not
        make one; the error says which pools lack which family).
        ``require_all=False`` is Kubernetes' ``PreferDualStack``: when no pool
        can serve every family, fall back to the first family that works.
        *labels* are the Service's, as in :meth:`allocate`; *uid* is handed to the sources, as there.
        """
        where = "allocate_dual()"
        tenant = _tenant(where, service, ports, sharing_key, backend_key, labels, uid)
        families = values.families(families, where)
        pool = values.pool_name(pool, where, optional=True)
        require_all = values.flag(require_all, where, "require_all")
        if isinstance(ips, (str, bytes)) or not isinstance(ips, Iterable):
            raise TypeError(
                f'{where}: argument "ips": value {values.shown(ips)}: must be a list of addresses, one per family'
            )
        requested = {a.version: a for a in (_ip(i, where, "ips") for i in ips)}
        with self._serial(service):
            with self._lock:
                # Already served: ports and keys are updated in place, nothing is released.
                kept = self._ledger.kept_all(tenant, families, requested.values(), pool)
                if kept is not None:
                    return kept
                moving = service in self._ledger.held
                candidates = self._dual_candidates(tenant, families, pool, requested)
            if moving:
                self._release_all(service)
            errors: list[str] = []
            for spec in candidates:
                got = self._allocate_all(tenant, families, spec.name, requested, errors)
                if got is not None:
                    return got
            if not require_all:
                for fam in families:
                    try:
                        return (self._allocate(tenant, fam, pool, requested.get(fam), extend=False),)
                    except AllocationError as exc:
                        errors.append(f"IPv{fam} alone: {exc}")
            raise PoolExhaustedError(
                f'no pool can give "{service}" addresses of families {"/".join(f"IPv{f}" for f in families)}'
                + (f": {'; '.join(errors)}" if errors else ": no pool has addresses of every family")
                + self._one_pool_hint(families, pool, require_all)
            )

    def _one_pool_hint(self, families: Sequence[int], pool: str | None, require_all: bool) -> str:
        """Why pools of one family each cannot serve a dual-stack service, and what to configure instead."""
        config = self._ledger.config  # immutable: no lock needed to read it
        chosen = config.pools.get(pool) if pool is not None else None
        pools = [chosen] if chosen is not None else [p for p in config.pools.values() if p.auto_assign]
        lacking = [p for p in pools if not all(may_have(p, f) for f in families)]
        if not lacking:
            return ""
        has = ", ".join(
            f'"{p.name}" has {"/".join(_FAMILY_NAMES[f] for f in sorted(p.families()))} only' for p in lacking
        )
        return (
            f" (a dual-stack service takes all its addresses from one pool, as in MetalLB: {has}; "
            f"list an IPv4 and an IPv6 range in the same pool's addresses"
            + (", or pass require_all=False to accept one family)" if require_all else ")")
        )

    # -- allocation steps ------------------------------------------------------------

    def _allocate(
        self, tenant: Tenant, family: int, pool: str | None, wanted: netaddr.IPAddress | None, *, extend: bool
    ) -> netaddr.IPAddress:
        """One address of *family*; the caller holds the service's serialisation."""
        with self._lock:
            kept = self._ledger.kept(tenant, family, pool, wanted, extend=extend)
            if kept is not None:
                return kept
            candidates = self._candidates(tenant, family, pool, wanted)
            # A requested address other services hold: join them, if they agree.
            joined = None if wanted is None else self._ledger.join_wanted(tenant, candidates[0].name, wanted)
        if joined is not None:
            return self._done(tenant.service, candidates[0].name, *joined)
        errors: list[tuple[str, AllocationError]] = []
        for spec in candidates:
            try:
                got = self._take(tenant, family, spec.name, wanted)
            except AllocationError as exc:
                errors.append((f'pool "{spec.name}"', exc))
                continue
            if got is not None:
                return got
        raise _failure(tenant.service, family, pool, wanted, errors)

    def _allocate_any(self, tenant: Tenant, pool: str | None) -> netaddr.IPAddress:
        """One address of any family: the first pool with a free one, IPv4 first; the caller serialises."""
        with self._lock:
            held = self._ledger.held.get(tenant.service)
            if held is not None and pool in (None, held.pool):
                self._ledger.renew(tenant)
                return held.ips[0]
            candidates = [self._ledger.spec(pool)] if pool is not None else self._select(tenant, None)
        errors: list[tuple[str, AllocationError]] = []
        for spec in candidates:
            fams = [f for f in (4, 6) if may_have(spec, f)]
            for fam in fams:
                try:
                    got = self._take(tenant, fam, spec.name, None)
                except AllocationError as exc:
                    label = f'pool "{spec.name}"' + (f" ({_FAMILY_NAMES[fam]})" if len(fams) > 1 else "")
                    errors.append((label, exc))
                    continue
                if got is not None:
                    return got
        raise _failure(tenant.service, None, pool, None, errors)

    def _candidates(
        self, tenant: Tenant, family: int, pool: str | None, wanted: netaddr.IPAddress | None
    ) -> list[PoolSpec]:
        """The pools to try, in order (lock held): the requested address's, the requested one, or the auto ones."""
        book = self._ledger
        if wanted is not None:
            owner = book.owner(wanted)
            if owner is None:
                raise AddressNotAllowedError(f'"{wanted}" is not allowed in config')
            if pool is not None and owner != pool:
                book.spec(pool)  # an unknown pool is the first problem
                raise AddressNotAllowedError(
                    f'requested address {wanted} is in pool "{owner}", not in requested pool "{pool}"'
                )
            return [book.config.pools[owner]]
        if pool is not None:
            spec = book.spec(pool)
            if not may_have(spec, family):
                raise PoolExhaustedError(f'no available IPs in pool "{pool}": it has no IPv{family} addresses')
            return [spec]
        return self._select(tenant, family)

    def _dual_candidates(
        self, tenant: Tenant, families: Sequence[int], pool: str | None, requested: dict[int, netaddr.IPAddress]
    ) -> list[PoolSpec]:
        """The pools that may serve every family, in order (lock held)."""
        if pool is not None:
            return [self._ledger.spec(pool)]
        if requested:
            first = next(iter(requested.values()))
            owner = self._ledger.owner(first)
            if owner is None:
                raise AddressNotAllowedError(f'"{first}" is not allowed in config')
            return [self._ledger.spec(owner)]
        return [p for p in self._select(tenant, families[0]) if all(may_have(p, f) for f in families)]

    def _select(self, tenant: Tenant, family: int | None) -> list[PoolSpec]:
        """The pools an automatic allocation tries: a plugin's choice, else the auto-assign ones (of *family*)."""
        pools = list(self._ledger.config.pools.values())
        request = PoolRequest(
            service=tenant.service,
            family=family,
            sharing_key=tenant.sharing_key,
            backend_key=tenant.backend_key,
            labels=dict(tenant.labels),
        )
        chosen = self._hooks.select_pools(request, pools)
        if chosen is not None:
            return list(chosen)
        return self._ledger.auto_pools(family, request.namespace, request.labels)

    def _take(
        self, tenant: Tenant, family: int, pool: str, wanted: netaddr.IPAddress | None
    ) -> netaddr.IPAddress | None:
        """An address from *pool*: a shared one first fit prefers, else the source's; None if the pool went."""
        with self._lock:
            source = self._ledger.sources.get(pool)
            if source is None:
                return None
            joined = None
            if wanted is None and tenant.sharing_key:
                joined = self._ledger.join_first_fit(tenant, family, pool, source)
        if joined is not None:
            return self._done(tenant.service, pool, *joined)
        got = self._acquire(source, tenant, family, wanted, pool)
        with self._lock:
            problem = self._ledger.vet(tenant, pool, source, got, family)
            released = self._ledger.take(tenant, pool, got) if problem is None else []
        if problem is not None:
            self._release(tenant.service, [(source, got)])
            raise AllocationError(problem)
        return self._done(tenant.service, pool, got, released)

    @staticmethod
    def _acquire(
        source: AddressSource, tenant: Tenant, family: int, wanted: netaddr.IPAddress | None, pool: str
    ) -> netaddr.IPAddress:
        """``source.acquire``, outside the lock; a source's unexpected error is an unavailable source."""
        try:
            if tenant.uid is None or not _takes_uid(type(source)):  # sources older than the uid keep working
                return source.acquire(tenant.service, family=family, wanted=wanted)
            return source.acquire(tenant.service, family=family, wanted=wanted, uid=tenant.uid)
        except AllocationError:
            raise
        except Exception as exc:
            log.exception("pool %r failed unexpectedly", pool)
            raise SourceUnavailableError(f"{type(exc).__name__}: {exc}") from None

    def _allocate_all(
        self,
        tenant: Tenant,
        families: Sequence[int],
        pool: str,
        requested: dict[int, netaddr.IPAddress],
        errors: list[str],
    ) -> tuple[netaddr.IPAddress, ...] | None:
        """One address per family from *pool*, or None (holding nothing; the reason added to *errors*)."""
        got: list[netaddr.IPAddress] = []
        try:
            for fam in families:
                got.append(self._allocate(tenant, fam, pool, requested.get(fam), extend=True))
        except AllocationError as exc:
            errors.append(f'pool "{pool}": {exc}')
            self._release_all(tenant.service)
            return None
        return tuple(got)

    # -- releasing and reading -------------------------------------------------------

    def unassign(self, service: str) -> bool:
        """Release everything *service* holds. Idempotent: False if it held nothing."""
        service = values.service_key(service, "unassign()")
        with self._serial(service):
            with self._lock:
                if service not in self._ledger.held:
                    return False
                released = self._ledger.forget(service)
            self._release(service, released)
        return True

    def ips(self, service: str) -> tuple[netaddr.IPAddress, ...]:
        """The addresses *service* holds, () if none."""
        service = values.service_key(service, "ips()")
        with self._lock:
            held = self._ledger.held.get(service)
            return held.ips if held else ()

    def pool_of(self, service: str) -> str | None:
        """The pool *service*'s addresses come from, or None."""
        service = values.service_key(service, "pool_of()")
        with self._lock:
            held = self._ledger.held.get(service)
            return held.pool if held else None

    def allocation(self, service: str) -> Allocation | None:
        """What *service* holds (addresses, pool, ports, keys), or None."""
        service = values.service_key(service, "allocation()")
        with self._lock:
            return self._ledger.allocation(service)

    def pool_for(self, ip: IPLike) -> str | None:
        """The pool that contains *ip* under the current config, or None."""
        address = _ip(ip, "pool_for()")
        with self._lock:
            return self._ledger.owner(address)

    def users(self, ip: IPLike) -> tuple[str, ...]:
        """The services holding *ip*, sorted."""
        address = _ip(ip, "users()")
        with self._lock:
            return self._ledger.users(address)

    def stats(self, pool: str) -> PoolStats:
        """Exact capacity (None when unknown) and distinct addresses in use."""
        values.pool_name(pool, "stats()")
        with self._lock:
            source = self._source_of(pool)
            return PoolStats(total=source.capacity(), in_use=self._ledger.in_use(pool))

    def _source_of(self, pool: str) -> AddressSource:
        """*pool*'s source (lock held); :class:`UnknownPoolError` naming the known pools if none."""
        source = self._ledger.sources.get(pool)
        if source is None:
            known = ", ".join(self._ledger.sources) or "none"
            raise UnknownPoolError(f'unknown pool "{pool}"; known pools: {known}')
        return source

    def describe(self, service: str) -> dict[str, str]:
        """Source facts about *service*'s addresses (for example a lease id)."""
        service = values.service_key(service, "describe()")
        with self._lock:
            held = self._ledger.held.get(service)
            ips = held.ips if held else ()
            source = self._ledger.sources.get(held.pool) if held else None
        out: dict[str, str] = {}
        if source is not None:
            for ip in ips:
                out.update(source.describe(ip))
        return out

    def allocations(self) -> list[Allocation]:
        """A snapshot of every allocation, sorted by service."""
        with self._lock:
            return self._ledger.allocations()

    def reconcile(self, pool: str | None = None) -> dict[str, ReconcileReport]:
        """Ask each pool's source (or only *pool*'s) to compare what we hold with its backend."""
        values.pool_name(pool, "reconcile()", optional=True)
        with self._lock:
            names = [pool] if pool is not None else list(self._ledger.sources)
            work = []
            for name in names:
                source = self._ledger.sources.get(name)
                if source is None:
                    raise UnknownPoolError(f'unknown pool "{name}"')
                work.append((name, source, self._ledger.holders(name)))
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
            sources = self._ledger.detach_sources()
        for source in sources:
            with contextlib.suppress(Exception):
                source.close()


def _hand_spec(source: AddressSource, spec: PoolSpec) -> None:
    """Give a kept source its pool's new spec (which differs only outside :data:`ALLOCATION_FIELDS`)."""
    if source.spec == spec:
        return
    try:
        source.spec = spec
    except AttributeError:  # a read-only spec: harmless, it decides the same addresses
        log.debug("pool %r: the source keeps its spec (read-only)", spec.name)


class _Turn:
    """``with allocator._serial(service):`` one call at a time for *service*."""

    __slots__ = ("_allocator", "_service")

    def __init__(self, allocator: Allocator, service: str) -> None:
        self._allocator = allocator
        self._service = service

    def __enter__(self) -> None:
        a = self._allocator
        with a._lock:
            while self._service in a._busy:
                a._waiting += 1
                try:
                    a._lock.wait()
                finally:
                    a._waiting -= 1
            a._busy.add(self._service)

    def __exit__(self, *exc: object) -> None:
        a = self._allocator
        with a._lock:
            a._busy.discard(self._service)
            if a._waiting:  # notify_all costs even with nobody to wake
                a._lock.notify_all()
