"""The address source contract, as a check a plugin's tests run: :func:`check_source_contract`.

Import it from :mod:`metallb.allocator.testing`. Every rule below is one a
source must keep for the :class:`~metallb.allocator.Allocator` to be right;
``docs/writing-plugins.md`` lists them with the same words. Each check is
reported by name in :attr:`ContractReport.checks`; a broken rule raises
:class:`ContractViolation` naming it, and a pool the checker cannot work with
raises :class:`ContractPreconditionError` saying what to give it instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import attrs
import netaddr
from metallb.allocator.errors import AddressInUseError, AddressNotAllowedError, AllocationError, PoolExhaustedError
from metallb.allocator.interfaces import AddressSource, ReconcileReport
from metallb.allocator.model import PoolSpec

__all__ = ["RULES", "ContractPreconditionError", "ContractReport", "ContractViolation", "check_source_contract"]

T = TypeVar("T")

#: Every rule the checker knows, by key, in the order it checks them; the
#: report's ``checks`` and ``skipped`` use these words.
RULES: Mapping[str, str] = {
    "members": "the source implements AddressSource (every member), and its spec is a PoolSpec",
    "capacity": "capacity() is None or a non-negative int, the same before and after addresses are taken",
    "acquire": "acquire(family=F) returns an IPvF netaddr.IPAddress that owns() accepts",
    "owns": "owns() is True for handed-out addresses and False outside the pool's CIDRs, every time",
    "order": "rank() and peek(): both None (no order), or first fit: peek() is what acquire() returns next, "
    "rank() is an int that grows with each address handed out and None outside the pool",
    "distinct": "distinct owners get distinct addresses",
    "in-use": "acquire(wanted=ip) raises AddressInUseError while another owner holds ip",
    "same-owner": "acquire(wanted=ip) by the owner already holding ip returns ip, held once",
    "second-address": "acquire(wanted=other) by an owner already holding an address returns other; "
    "the owner holds both and releases each on its own",
    "wanted-outside": "acquire(wanted=ip) of an address outside the pool raises AddressNotAllowedError",
    "claim-outside": "claim() of an address outside the pool raises AddressNotAllowedError and records nothing",
    "owners-counted": "claim() adds an owner; an address is free again only when its last owner releases it",
    "release-idempotent": "release() is idempotent: twice, by a non-owner, for an address never held; "
    "a non-owner's release frees nothing",
    "missing-family": "acquire() of a family the pool has no CIDRs of raises an AllocationError",
    "describe": "describe() returns a mapping of str to str",
    "concurrent": "concurrent acquire() calls for distinct owners get distinct addresses "
    "(the calls past the pool's end raise PoolExhaustedError), and concurrent releases free them",
    "exhaustion": "acquire() raises PoolExhaustedError when nothing is free, holds nothing "
    "(the one address released after comes back), and peek() is then None",
    "capacity-exact": "capacity(), when an int, is exactly the number of addresses the pool hands out",
    "reconcile": "reconcile(held): supported=False releases and reports nothing; supported=True releases "
    "no held address and reports none lost while the backend keeps them",
    "restart": "close() releases nothing; claim() on a fresh source takes a held address over (the restart path)",
}


class ContractViolation(AssertionError):
    """An address source broke a rule of the contract; the message names the rule."""


class ContractPreconditionError(ContractViolation):
    """The checker cannot work with this pool (not the source's fault); the message says what to give it."""


@attrs.frozen(kw_only=True)
class ContractReport:
    """What :func:`check_source_contract` checked.

    Attributes:
        checks: the rules verified (values of :data:`RULES`, some for one
            family: "IPv6: ..."), in order.
        skipped: rules not checked, each with the reason (a tiny pool, no
            CIDRs to tell outside addresses by).
        families: the address families exercised.
        ordered: whether the source declares a first-fit order (``rank``/``peek``).
        capacity: what the source reported (None: unknown).
        exhausted_after: addresses handed out, all families together, before
            every family ran out; None when exhaustion was not checked.
    """

    checks: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    families: tuple[int, ...] = ()
    ordered: bool = False
    capacity: int | None = None
    exhausted_after: int | None = None


def _expect(ok: object, rule: str, detail: str) -> None:
    if not ok:
        raise ContractViolation(f"{RULES[rule]}: {detail}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    """One run of the contract check over sources built by one factory."""

    def __init__(self, factory: Callable[[], AddressSource], *, threads: int, limit: int, exhaust: bool) -> None:
        self.factory = factory
        self.threads = threads
        self.limit = limit
        self.exhaust_pool = exhaust
        self.checks: list[str] = []
        self.skipped: list[str] = []
        self.held: list[tuple[str, netaddr.IPAddress]] = []
        self.closed = False
        self.rule = "members"  # the rule being checked: errors of the source's calls are reported under it
        self.source = self._build()

    # -- bookkeeping ------------------------------------------------------------------

    def passed(self, rule: str, family: int | None = None) -> None:
        self.checks.append((f"IPv{family}: " if family else "") + RULES[rule])

    def skip(self, rule: str, reason: str, family: int | None = None) -> None:
        self.skipped.append((f"IPv{family}: " if family else "") + f"{RULES[rule]} (skipped: {reason})")

    def _build(self) -> AddressSource:
        source = self.factory()
        _expect(
            isinstance(source, AddressSource),
            "members",
            f"the factory built {type(source).__name__}, which lacks some of owns, acquire, claim, release, "
            "capacity, rank, peek, describe, reconcile, close or spec (subclass SourceBase for the defaults)",
        )
        return source

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Call the source; an exception nobody expects here is a violation naming the call."""
        try:
            return fn()
        except ContractViolation:
            raise
        except Exception as exc:
            raise ContractViolation(f"{RULES[self.rule]}: {what} raised {type(exc).__name__}: {exc}") from exc

    def take(self, owner: str, family: int, wanted: netaddr.IPAddress | None = None) -> netaddr.IPAddress | None:
        """acquire() for a check: the address (recorded as held), or None when the pool is out."""
        try:
            ip = self.source.acquire(owner, family=family, wanted=wanted)
        except PoolExhaustedError:
            if wanted is not None:
                raise ContractViolation(
                    f"{RULES[self.rule]}: acquire({owner!r}, family={family}, wanted={wanted}) raised "
                    "PoolExhaustedError for an address released just before"
                ) from None
            return None
        except Exception as exc:
            raise ContractViolation(
                f"{RULES[self.rule]}: acquire({owner!r}, family={family}"
                + (f", wanted={wanted}" if wanted else "")
                + f") raised {type(exc).__name__}: {exc}"
            ) from exc
        _expect(
            isinstance(ip, netaddr.IPAddress) and ip.version == family,
            "acquire",
            f"acquire(family={family}) returned {ip!r}",
        )
        _expect(wanted is None or ip == wanted, "acquire", f"acquire(wanted={wanted}) returned {ip}")
        self.held.append((owner, ip))
        return ip

    def give(self, owner: str, ip: netaddr.IPAddress) -> None:
        """release() for a check, forgetting the address from what the checker holds."""
        self.call(f"release({owner!r}, {ip})", lambda: self.source.release(owner, ip))
        with contextlib.suppress(ValueError):
            self.held.remove((owner, ip))

    def refused(self, rule: str, error: type[Exception], what: str, fn: Callable[[], object], owner: str = "") -> None:
        """*fn* must raise *error*; an address it hands out instead is given back by *owner*."""
        try:
            got = fn()
        except error:
            return
        except Exception as exc:
            raise ContractViolation(f"{RULES[rule]}: {what} raised {type(exc).__name__}: {exc}") from exc
        if owner and isinstance(got, netaddr.IPAddress):
            with contextlib.suppress(Exception):
                self.source.release(owner, got)
        raise ContractViolation(f"{RULES[rule]}: {what} returned {got!r} instead of raising {error.__name__}")

    def refuses_acquire(
        self, rule: str, error: type[Exception], owner: str, family: int, wanted: netaddr.IPAddress | None, why: str
    ) -> None:
        """acquire(owner, family, wanted) must raise *error*."""
        what = f"acquire({owner!r}, family={family}" + (f", wanted={wanted}" if wanted else "") + f") {why}"
        self.refused(rule, error, what.strip(), lambda: self.source.acquire(owner, family=family, wanted=wanted), owner)

    def in_use(self, ip: netaddr.IPAddress, family: int, rule: str, why: str) -> None:
        """Another owner's acquire(wanted=ip) must raise AddressInUseError."""
        self.refuses_acquire(rule, AddressInUseError, "test/intruder", family, ip, why)

    def free_again(self, ip: netaddr.IPAddress, family: int, rule: str, why: str) -> None:
        """*ip* must be free: another owner gets exactly it, and gives it back."""
        try:
            got = self.source.acquire("test/probe", family=family, wanted=ip)
        except Exception as exc:
            raise ContractViolation(
                f"{RULES[rule]}: acquire('test/probe', wanted={ip}) {why} raised {type(exc).__name__}: {exc}"
            ) from exc
        _expect(got == ip, rule, f"acquire(wanted={ip}) {why} returned {got}")
        self.give("test/probe", ip)

    def rank(self, ip: netaddr.IPAddress) -> int | None:
        return self.call(f"rank({ip})", lambda: self.source.rank(ip))

    def peek(self, family: int) -> netaddr.IPAddress | None:
        return self.call(f"peek({family})", lambda: self.source.peek(family))

    def capacity(self) -> int | None:
        return self.call("capacity()", self.source.capacity)

    def release_all(self) -> None:
        for owner, ip in reversed(self.held):
            with contextlib.suppress(Exception):
                self.source.release(owner, ip)
        self.held.clear()

    def close(self) -> None:
        """Close the current source, once."""
        source, self.closed = self.source, True
        self.call("close()", source.close)

    # -- the checks ---------------------------------------------------------------------

    def members(self) -> None:
        spec = getattr(self.source, "spec", None)
        _expect(isinstance(spec, PoolSpec), "members", f"spec is {spec!r}")
        self.passed("members")

    def read_capacity(self) -> int | None:
        self.rule = "capacity"
        capacity = self.capacity()
        _expect(capacity is None or (_is_int(capacity) and capacity >= 0), "capacity", f"got {capacity!r}")
        _expect(self.capacity() == capacity, "capacity", "two calls disagree")
        return capacity

    def outside(self, family: int) -> netaddr.IPAddress | None:
        """An address of *family* next to the pool's CIDRs but outside them (None: the pool has no CIDRs)."""
        spec = self.source.spec
        if not spec.cidrs:
            return None
        cidrs = [c for c in spec.cidrs if c.version == family]
        top = (1 << 32) - 1 if family == 4 else (1 << 128) - 1
        for value in [c.last + 1 for c in cidrs] + [c.first - 1 for c in cidrs] + [1, top - 1]:
            if 0 <= value <= top:
                ip = netaddr.IPAddress(value, family)
                if not any(ip in c for c in cidrs):
                    return ip
        return None  # pragma: no cover - a pool of every address of a family

    def family_basics(self, family: int) -> tuple[netaddr.IPAddress, netaddr.IPAddress | None, bool]:
        """The single-source checks for one family; returns (a, b, ordered) with a and b held."""
        source = self.source
        self.rule = "order"
        before = self.peek(family)
        self.rule = "acquire"
        a = self.take("test/a", family)
        if a is None:
            raise ContractPreconditionError(
                f"the pool has no free IPv{family} address to check with: give the checker a pool with free "
                f"addresses of every family it checks (or pass family= to check only the others)"
            )
        self.passed("acquire", family)

        self.rule = "owns"
        owns = self.call(f"owns({a})", lambda: (source.owns(a), source.owns(a)))
        _expect(owns == (True, True), "owns", f"owns({a}) gave {owns[0]!r}, then {owns[1]!r}")
        outside = self.outside(family)
        if outside is None:
            self.skip("owns", "the pool has no CIDRs, so no address is known to be outside it", family)
        else:
            denied = self.call(f"owns({outside})", lambda: source.owns(outside))
            _expect(denied is False, "owns", f"owns({outside}), outside the pool's CIDRs, gave {denied!r}")
            self.passed("owns", family)

        self.rule = "order"
        rank_a = self.rank(a)
        ordered = before is not None or rank_a is not None
        if ordered:
            _expect(before == a, "order", f"peek({family}) gave {before}, then acquire() returned {a}")
            _expect(_is_int(rank_a), "order", f"rank({a}) of a handed-out address gave {rank_a!r}")
            if outside is not None:
                _expect(self.rank(outside) is None, "order", f"rank({outside}), outside the pool, is not None")
            nxt = self.peek(family)
            _expect(nxt == self.peek(family), "order", f"two peek({family}) calls disagree")
            _expect(nxt != a, "order", f"peek({family}) still gives {a} after acquire() took it")
        else:
            _expect(self.peek(family) is None, "order", f"rank({a}) is None but peek({family}) is not")

        self.rule = "distinct"
        b = self.take("test/b", family)
        if b is None:
            self.skip("distinct", "the pool has one free address of this family", family)
        else:
            _expect(b != a, "distinct", f"test/a and test/b both got {a}")
            self.passed("distinct", family)
            if ordered:
                _expect(b == nxt, "order", f"peek({family}) gave {nxt}, then acquire() returned {b}")
                rank_b = self.rank(b)
                _expect(
                    _is_int(rank_b) and rank_b > rank_a,  # type: ignore[operator]
                    "order",
                    f"rank({b}) = {rank_b!r} after rank({a}) = {rank_a!r}: first fit hands out lower ranks first",
                )
        if ordered:
            self.passed("order", family)
        else:
            self.skip("order", "the source declares no order: rank() and peek() are None", family)

        self.rule = "in-use"
        self.in_use(a, family, "in-use", "while test/a holds it")
        self.passed("in-use", family)

        self.rule = "same-owner"
        again = self.call(
            f"acquire('test/a', family={family}, wanted={a})",
            lambda: source.acquire("test/a", family=family, wanted=a),
        )
        _expect(again == a, "same-owner", f"test/a holds {a}; acquire(wanted={a}) returned {again!r}")

        self.rule = "wanted-outside"
        if outside is not None:
            self.refuses_acquire("wanted-outside", AddressNotAllowedError, "test/c", family, outside, "")
            self.passed("wanted-outside", family)
            self.rule = "claim-outside"
            what = f"claim('test/c', {outside})"
            self.refused("claim-outside", AddressNotAllowedError, what, lambda: source.claim("test/c", outside))
            _expect(source.owns(outside) is False, "claim-outside", f"owns({outside}) after the refused claim")
            self.give("test/c", outside)
            self.passed("claim-outside", family)
        else:
            for rule in ("wanted-outside", "claim-outside"):
                self.skip(rule, "the pool has no CIDRs, so no address is known to be outside it", family)

        self.rule = "describe"
        facts = self.call(f"describe({a})", lambda: source.describe(a))
        _expect(
            isinstance(facts, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in facts.items()),
            "describe",
            f"describe({a}) returned {facts!r}",
        )
        self.passed("describe", family)

        self.rule = "second-address"
        c = self.take("test/c", family)
        if c is None:
            self.skip("second-address", "the pool has no third free address of this family", family)
        else:
            self.give("test/c", c)
            moved = self.take("test/a", family, wanted=c)
            _expect(moved == c, "second-address", f"acquire('test/a', wanted={c}) returned {moved}")
            self.in_use(a, family, "second-address", "while test/a holds it and a second address")
            self.give("test/a", c)
            self.free_again(c, family, "second-address", "after test/a released its second address")
            self.in_use(a, family, "second-address", "while test/a still holds it (it released only its second)")
            self.passed("second-address", family)
        # same-owner, second part: one release of test/a must be enough (checked below).

        self.rule = "owners-counted"
        self.call(f"claim('test/b', {a})", lambda: source.claim("test/b", a))
        self.give("test/a", a)
        self.held.append(("test/b", a))
        self.in_use(a, family, "owners-counted", "after test/a released it, while test/b (by claim) holds it")
        self.give("test/b", a)
        if ordered:
            _expect(self.peek(family) == a, "order", f"peek({family}) is not {a}, the lowest free address")
        self.free_again(a, family, "owners-counted", "once its last owner released it (one release each)")
        self.passed("same-owner", family)
        self.passed("owners-counted", family)

        self.rule = "release-idempotent"
        for owner in ("test/a", "test/b", "test/nobody"):
            self.give(owner, a)
        if b is not None:
            self.call(f"release('test/nobody', {b})", lambda: source.release("test/nobody", b))
            self.in_use(b, family, "release-idempotent", "after test/nobody released it, while test/b holds it")
        if outside is not None:
            self.call(f"release('test/nobody', {outside})", lambda: source.release("test/nobody", outside))
        self.passed("release-idempotent", family)
        self.take("test/a", family, wanted=a)  # held again, like b, while the next checks run
        return a, b, ordered

    def missing_family(self, families: tuple[int, ...]) -> None:
        self.rule = "missing-family"
        spec = self.source.spec
        for other in (4, 6):
            if other in families or not spec.cidrs or other in spec.families():
                continue
            why = "of a pool without its CIDRs"
            self.refuses_acquire("missing-family", AllocationError, "test/d", other, None, why)
            self.passed("missing-family", other)

    def concurrent(self, family: int) -> None:
        self.rule = "concurrent"
        if not self.threads:
            self.skip("concurrent", "threads=0", family)
            return
        owners = [f"test/t{family}-{i}" for i in range(self.threads)]

        def one(owner: str) -> netaddr.IPAddress | Exception:
            try:
                return self.source.acquire(owner, family=family)
            except Exception as exc:  # noqa: BLE001 - judged below, after every thread is done
                return exc

        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            results = list(pool.map(one, owners))
        got = [(o, r) for o, r in zip(owners, results, strict=True) if isinstance(r, netaddr.IPAddress)]
        self.held.extend(got)
        errors = [r for r in results if isinstance(r, Exception)]
        other = [e for e in errors if not isinstance(e, PoolExhaustedError)]
        if other:
            raise ContractViolation(f"{RULES['concurrent']}: one raised {type(other[0]).__name__}: {other[0]}")
        ips = [ip for _, ip in got]
        held_before = {ip for o, ip in self.held if not o.startswith(f"test/t{family}-")}
        _expect(
            len(set(ips)) == len(ips) and not set(ips) & held_before,
            "concurrent",
            f"{self.threads} calls got {sorted(map(str, ips))} while the checker held {sorted(map(str, held_before))}",
        )
        if errors:
            why = f"after {len(errors)} of {self.threads} concurrent calls raised PoolExhaustedError"
            self.refuses_acquire("concurrent", PoolExhaustedError, "test/late", family, None, why)
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            list(pool.map(lambda pair: self.call(f"release{pair}", lambda: self.source.release(*pair)), got))
        for pair in got:
            self.held.remove(pair)
        if got:
            self.free_again(got[0][1], family, "concurrent", "after the concurrent releases")
        note = f" ({len(ips)} of {self.threads} got one: the pool ran out)" if errors else ""
        self.checks.append(f"IPv{family}: {RULES['concurrent']}{note}")

    def exhaust(self, family: int, ordered: bool) -> int:
        """Take every free address of *family*; returns how many were taken."""
        self.rule = "exhaustion"
        taken = 0
        while True:
            if taken >= self.limit:
                raise ContractPreconditionError(
                    f"the pool has more than limit={self.limit} free IPv{family} addresses: give the checker "
                    "a smaller pool, a larger limit, or exhaust=False"
                )
            ip = self.take(f"test/x{family}-{taken}", family)
            if ip is None:
                break
            owns = self.source.owns(ip)
            _expect(owns is True, "owns", f"owns({ip}) of an address acquire() handed out gave {owns!r}")
            taken += 1
        ips = [ip for _, ip in self.held]
        _expect(len(set(ips)) == len(ips), "distinct", "exhausting the pool handed an address out twice")
        if ordered:
            _expect(self.peek(family) is None, "exhaustion", f"peek({family}) of an exhausted pool is not None")
        owner, last = next((o, ip) for o, ip in reversed(self.held) if ip.version == family)
        self.give(owner, last)
        refill = self.take("test/refill", family)
        _expect(refill == last, "exhaustion", f"after the pool ran out, {last} was released; acquire() gave {refill}")
        self.passed("exhaustion", family)
        return taken

    def reconcile(self) -> None:
        self.rule = "reconcile"
        held: dict[netaddr.IPAddress, tuple[str, ...]] = {}
        for owner, ip in self.held:
            held[ip] = tuple(sorted({*held.get(ip, ()), owner}))
        report = self.call("reconcile(held)", lambda: self.source.reconcile(held))
        _expect(isinstance(report, ReconcileReport), "reconcile", f"returned {report!r}, not a ReconcileReport")
        if not report.supported:
            _expect(
                not report.released and not report.lost, "reconcile", f"supported=False but it did things: {report}"
            )
        else:
            _expect(not set(report.released) & set(held), "reconcile", f"released held addresses: {report.released}")
            _expect(not report.lost, "reconcile", f"reported held addresses lost: {report.lost}")
        self.checks.append(RULES["reconcile"] + ("" if report.supported else " (not supported)"))

    def restart(self, families: tuple[int, ...]) -> None:
        """close() on the first source, then the restart path on fresh ones, per family."""
        self.rule = "restart"
        self.close()
        for family in families:
            self.restart_one(family)
            self.passed("restart", family)

    def restart_one(self, family: int) -> None:
        first = self.factory()
        try:
            c = first.acquire("test/e", family=family)
        except Exception as exc:
            raise ContractViolation(f"{RULES['restart']}: acquire() on a second source raised {exc!r}") from exc
        finally:
            self.call("close()", first.close)
        self.source = after = self.factory()
        self.closed = False
        try:
            self.call(f"claim('test/e', {c})", lambda: after.claim("test/e", c))
            self.held.append(("test/e", c))
            self.in_use(c, family, "restart", "after a fresh source's claim('test/e')")
            if self.exhaust_pool:
                # Nothing else may get it: neither close() nor a lost claim() freed it in the backend.
                others: list[netaddr.IPAddress] = []
                while len(others) < self.limit and (ip := self.take(f"test/r{len(others)}", family)) is not None:
                    others.append(ip)
                _expect(c not in others, "restart", f"{c}, claimed by test/e, was handed out again")
            self.give("test/e", c)
            self.free_again(c, family, "restart", "after the claimed address was released")
        finally:
            self.release_all()
            self.close()


def _families(source: AddressSource, family: int | None) -> tuple[int, ...]:
    if family is not None:
        if family not in (4, 6) or isinstance(family, bool):
            raise ValueError(f'check_source_contract: argument "family": value {family!r}: must be 4, 6 or None')
        return (family,)
    found = sorted(source.spec.families()) if isinstance(getattr(source, "spec", None), PoolSpec) else []
    return tuple(found) or (4,)


@contextlib.contextmanager
def _closing(checker: _Checker) -> Iterator[None]:
    try:
        yield
    finally:
        checker.release_all()
        if not checker.closed:
            with contextlib.suppress(Exception):
                checker.source.close()


def check_source_contract(
    factory: Callable[[], AddressSource],
    *,
    family: int | None = None,
    exhaust: bool = True,
    limit: int = 1024,
    threads: int = 8,
) -> ContractReport:
    """Drive sources built by *factory* through every rule of the ``AddressSource`` contract.

    Preconditions (:class:`ContractPreconditionError` when they fail, never
    the source's own errors):

    - *factory* builds a new source for one pool each call; the sources it
      builds share one backend (the restart check closes one and takes its
      address over with another), which holds nothing for owners named
      ``test/...`` when the check starts.
    - The pool has a free address of every family checked. Tiny pools are
      fine: checks that need a second or third address, or more than the
      pool has for the concurrent calls, are skipped or scaled down, and
      listed in :attr:`ContractReport.skipped`.
    - With *exhaust*, each family runs out within *limit* addresses (and
      ``capacity()``, when known, is at most *limit*).

    Args:
        factory: builds a fresh source for the pool.
        family: 4 or 6 to check one family; None (the default) checks every
            family of the pool's CIDRs (IPv4 for a pool without CIDRs).
        exhaust: also take every address until ``PoolExhaustedError``, which
            makes ``capacity()`` checkable; use a small pool.
        limit: the most addresses of one family to take while exhausting.
        threads: concurrent ``acquire`` calls for distinct owners (0: skip).

    Returns:
        A :class:`ContractReport`. Raises :class:`ContractViolation` at the
        first broken rule, naming it (:data:`RULES` lists them). Everything
        taken is released before returning.
    """
    checker = _Checker(factory, threads=threads, limit=limit, exhaust=exhaust)
    with _closing(checker):
        checker.members()
        families = _families(checker.source, family)
        capacity = checker.read_capacity()
        if exhaust and capacity is not None and capacity > limit:
            raise ContractPreconditionError(
                f"capacity() is {capacity}, more than limit={limit}: give the checker a smaller pool, "
                "a larger limit, or exhaust=False"
            )
        ordered = False
        for fam in families:
            _, _, fam_ordered = checker.family_basics(fam)
            ordered = ordered or fam_ordered
        checker.missing_family(families)
        for fam in families:
            checker.concurrent(fam)
        exhausted_after: int | None = None
        if exhaust:
            for fam in families:
                checker.exhaust(fam, ordered)
            exhausted_after = len(checker.held)
            if capacity is None:
                checker.skip("capacity-exact", "capacity() is None (unknown)")
            elif set(families) < checker.source.spec.families():
                checker.skip("capacity-exact", "not every family of the pool was exhausted")
            else:
                _expect(
                    exhausted_after == capacity,
                    "capacity-exact",
                    f"capacity() is {capacity}, but the pool ran out after {exhausted_after} addresses "
                    f"of {'/'.join(f'IPv{f}' for f in families)}",
                )
                checker.passed("capacity-exact")
        else:
            checker.skip("exhaustion", "exhaust=False")
            checker.skip("capacity-exact", "exhaust=False")
        _expect(checker.read_capacity() == capacity, "capacity", "capacity() changed as addresses were taken")
        checker.passed("capacity")
        checker.reconcile()
        checker.release_all()
        checker.restart(families)
    return ContractReport(
        checks=tuple(checker.checks),
        skipped=tuple(checker.skipped),
        families=families,
        ordered=ordered,
        capacity=capacity,
        exhausted_after=exhausted_after,
    )
