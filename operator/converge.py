"""The controller's decision for one Service: MetalLB's convergence (v0.12 and later).

:func:`converge` reads a :class:`ServiceIntent`, updates the allocator, and
returns what the Service's status, annotations and events should become. It
never talks to Kubernetes: the controller and standalone mode apply the
:class:`Outcome` themselves, writing only what changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import attrs
import netaddr
from metallb.allocator import (
    AddressInUseError,
    AddressNotAllowedError,
    AllocationError,
    Allocator,
    PoolExhaustedError,
    SourceUnavailableError,
    UnknownPoolError,
)
from metallb.operator.service import POOL_ANNOTATION, ServiceIntent

__all__ = ["FAILURE_REASONS", "Event", "Outcome", "converge", "failure_reason"]


def _frozen(value: Mapping[str, str | None]) -> Mapping[str, str | None]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class Event:
    """A Kubernetes Event to record on the Service."""

    type: str  # Normal or Warning
    reason: str
    message: str


@attrs.frozen(kw_only=True)
class Outcome:
    """What the Service should look like after convergence.

    Attributes:
        ingress: the addresses for ``status.loadBalancer.ingress``.
        annotations: metallb's annotations to set (a None value removes one):
            the pool, and those every installed pool kind declares
            (``SourceCapabilities.annotations``). Read-only.
        finalizer: whether the Service should carry metallb's finalizer (its
            pool's kind declares ``remote_release``).
        events: events to record.
        retry: the Service should be processed again later (with backoff).
        pending: why the Service has no address yet, for status views.
        ours: False for Services of another load-balancer class (left untouched).
        failure: ``(pool, reason)`` when an allocation was tried and failed
            (``metallb_allocator_allocation_failures_total``); pool is "" when
            none was named.
    """

    ingress: tuple[str, ...] = ()
    annotations: Mapping[str, str | None] = attrs.field(factory=dict, converter=_frozen, hash=False)
    finalizer: bool = False
    events: tuple[Event, ...] = ()
    retry: bool = False
    pending: str = ""
    ours: bool = True
    failure: tuple[str, str] | None = None


#: ``metallb_allocator_allocation_failures_total``'s reason label, by error class (the first match wins).
FAILURE_REASONS: tuple[tuple[type[AllocationError], str], ...] = (
    (PoolExhaustedError, "exhausted"),
    (UnknownPoolError, "unknown-pool"),
    (AddressNotAllowedError, "not-allowed"),
    (AddressInUseError, "in-use"),
    (SourceUnavailableError, "source-unavailable"),
)


def failure_reason(exc: AllocationError) -> str:
    """The reason label of *exc*: one of :data:`FAILURE_REASONS`, else "other"."""
    return next((reason for kind, reason in FAILURE_REASONS if isinstance(exc, kind)), "other")


def _managed(allocator: Allocator) -> dict[str, str | None]:
    """Every annotation metallb may write, each set to None (removed).

    Those of every installed pool kind, not only of the kinds the config has
    now: a Service must lose a kind's annotation after its pools are gone.
    """
    names: dict[str, str | None] = {POOL_ANNOTATION: None}
    for capabilities in allocator.pool_kinds().values():
        for _, annotation in capabilities.annotations:
            names[annotation] = None
    return names


def _cleared(allocator: Allocator, reason: str = "", *events: Event, retry: bool = False) -> Outcome:
    return Outcome(annotations=_managed(allocator), events=events, retry=retry, pending=reason)


def converge(
    intent: ServiceIntent, allocator: Allocator, *, synced: bool = True, lb_class: str | None = None
) -> Outcome:
    """Bring *allocator* in line with the Service and say what its status should be.

    Args:
        intent: the Service, read by :func:`~metallb.operator.service.read_service`.
        allocator: holds every allocation.
        synced: False until every Service of the first full list has had its
            existing addresses re-assigned (MetalLB's sync barrier): until then
            nothing new is allocated.
        lb_class: the load-balancer class this controller serves (None: only
            Services without a class).
    """
    key = intent.key
    if intent.lb_class != lb_class:
        allocator.unassign(key)
        return Outcome(ours=False, pending=f"load-balancer class {intent.lb_class!r} is not ours")
    if not intent.is_load_balancer:
        allocator.unassign(key)
        return _cleared(allocator, "not a LoadBalancer")
    # Re-learn addresses from status (restart path), unless we hold some already.
    if not allocator.ips(key) and intent.current:
        try:
            allocator.assign(
                key,
                list(intent.current),
                ports=intent.ports,
                sharing_key=intent.sharing_key,
                backend_key=intent.backend_key,
            )
        except AllocationError:
            pass  # notAllowedByConfig: fall through and allocate anew
    if intent.error:
        # Keep whatever the Service has (re-learned above after a restart): the user must fix the request.
        held = allocator.ips(key)
        return Outcome(
            ingress=tuple(map(str, held)),
            annotations=_annotations(allocator, key) if held else {},
            finalizer=_needs_finalizer(allocator, key),
            events=(Event(type="Warning", reason="LoadBalancerFailed", message=intent.error),),
            pending="" if held else intent.error,
        )
    held = allocator.ips(key)
    if held and not _still_wanted(intent, allocator, held):
        allocator.unassign(key)
        held = ()
    if held:
        current = allocator.allocation(key)
        changed = current is None or (current.ports, current.sharing_key, current.backend_key) != (
            frozenset(intent.ports),
            intent.sharing_key,
            intent.backend_key,
        )
        if changed:
            # Update ports and keys in place; if sharing is now refused, move as MetalLB does.
            try:
                allocator.assign(
                    key, list(held), ports=intent.ports, sharing_key=intent.sharing_key, backend_key=intent.backend_key
                )
            except AllocationError:
                allocator.unassign(key)
                held = ()
    if held:
        return Outcome(
            ingress=tuple(map(str, held)),
            annotations=_annotations(allocator, key),
            finalizer=_needs_finalizer(allocator, key),
        )
    if not synced:
        return _cleared(allocator, "waiting for the controller's first full sync", retry=True)
    try:
        ips = _allocate(intent, allocator)
    except AllocationError as exc:
        message = f'Failed to allocate IP for "{key}": {exc}'
        event = Event(type="Warning", reason="AllocationFailed", message=message)
        failure = (intent.pool or "", failure_reason(exc))
        return attrs.evolve(_cleared(allocator, str(exc), event, retry=True), failure=failure)
    shown = ", ".join(f'"{ip}"' for ip in ips)
    return Outcome(
        ingress=tuple(map(str, ips)),
        annotations=_annotations(allocator, key),
        finalizer=_needs_finalizer(allocator, key),
        events=(Event(type="Normal", reason="IPAllocated", message=f"Assigned IP [{shown}]"),),
    )


def _still_wanted(intent: ServiceIntent, allocator: Allocator, held: tuple[netaddr.IPAddress, ...]) -> bool:
    """MetalLB's release reasons: different IP, different pool, different families."""
    if intent.requested and set(intent.requested) != set(held):
        return False  # differentIPRequested
    if intent.pool is not None and not intent.requested and allocator.pool_of(intent.key) != intent.pool:
        return False  # differentPoolRequested (a requested address wins over the annotation)
    wanted = set(intent.families)
    have = {ip.version for ip in held}
    if have == wanted:
        return True
    # PreferDualStack keeps a single-family fallback it already has.
    return not intent.require_all and have <= wanted and len(intent.families) > 1 and len(have) == 1


def _allocate(intent: ServiceIntent, allocator: Allocator) -> tuple[netaddr.IPAddress, ...]:
    opts = {
        "ports": intent.ports,
        "sharing_key": intent.sharing_key,
        "backend_key": intent.backend_key,
        "labels": dict(intent.labels),
        "uid": intent.uid or None,  # an address service's idempotent POST is keyed on it
    }
    # A requested address bypasses the pool annotation and auto-assign, as in MetalLB.
    if len(intent.families) > 1:
        return allocator.allocate_dual(
            intent.key,
            families=intent.families,
            pool=None if intent.requested else intent.pool,
            ips=intent.requested,
            require_all=intent.require_all,
            **opts,  # type: ignore[arg-type]
        )
    ip = intent.requested[0] if intent.requested else None
    pool = None if ip is not None else intent.pool
    return (allocator.allocate(intent.key, family=intent.families[0], pool=pool, ip=ip, **opts),)  # type: ignore[arg-type]


def _annotations(allocator: Allocator, key: str) -> dict[str, str | None]:
    """The pool, and the ``describe()`` facts its source maps to annotations; others removed."""
    out = _managed(allocator)
    pool = allocator.pool_of(key)
    out[POOL_ANNOTATION] = pool
    if pool is not None:
        details = allocator.describe(key)
        for fact, annotation in allocator.capabilities(pool).annotations:
            out[annotation] = details.get(fact)
    return out


def _needs_finalizer(allocator: Allocator, key: str) -> bool:
    """Addresses from sources whose releases reach a remote backend carry the finalizer."""
    pool = allocator.pool_of(key)
    return pool is not None and allocator.capabilities(pool).remote_release
