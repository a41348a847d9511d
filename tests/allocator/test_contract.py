"""check_source_contract: it passes correct sources on every pool shape, and each of its rules can fail."""

from __future__ import annotations

import threading
import time

import netaddr
import pytest
from metallb.allocator import (
    AddressInUseError,
    AddressNotAllowedError,
    PoolExhaustedError,
    PoolSpec,
    ReconcileReport,
    SourceBase,
    SourceUnavailableError,
    parse_config,
)
from metallb.allocator.contract import RULES
from metallb.allocator.testing import (
    ContractPreconditionError,
    ContractViolation,
    check_source_contract,
    plugin_manager_with,
)
from metallb.plugins import static_pool
from metallb.plugins.static_pool import StaticSource


def spec_of(cidrs: str, *, extra: str = "") -> PoolSpec:
    """A static pool over *cidrs* (comma-separated), parsed as a user writes it."""
    text = f"address-pools:\n- name: p\n  protocol: layer2\n  addresses: [{cidrs}]\n{extra}"
    return parse_config(text, plugin_manager=plugin_manager_with(static_pool)).pools["p"]


class Backend:
    """What a remote pool keeps (an IPAM, say): which addresses are taken. Shared by every Toy built over it."""

    def __init__(self, spec: PoolSpec) -> None:
        self.lock = threading.Lock()
        self.order = [ip for c in spec.cidrs for ip in c]
        self.taken: set[netaddr.IPAddress] = set()


class Toy(SourceBase):
    """A correct source over a shared Backend, like a remote pool: no order, owners counted locally.

    ``breaks`` names one rule of the contract to break, the way a plugin author might.
    """

    def __init__(self, spec: PoolSpec, backend: Backend, breaks: str = "") -> None:
        super().__init__(spec)
        self.backend = backend
        self.breaks = breaks
        self._lock = threading.Lock()
        self._owners: dict[netaddr.IPAddress, list[str]] = {}
        self._mine: set[netaddr.IPAddress] = set()

    # -- the backend ------------------------------------------------------------------------

    def _take(self, family: int, wanted: netaddr.IPAddress | None) -> netaddr.IPAddress | None:
        with self.backend.lock:
            for ip in self.backend.order:
                if ip.version == family and ip not in self.backend.taken and wanted in (None, ip):
                    if self.breaks == "concurrent":
                        self.backend.lock.release()  # a check-then-act race
                        time.sleep(0.01)
                        self.backend.lock.acquire()
                    self.backend.taken.add(ip)
                    return ip
        return None

    def _free(self, ip: netaddr.IPAddress) -> None:
        with self.backend.lock:
            self.backend.taken.discard(ip)
        self._mine.discard(ip)

    # -- AddressSource ----------------------------------------------------------------------

    def owns(self, ip: netaddr.IPAddress) -> bool:
        return True if self.breaks == "owns" else self.spec.contains(ip)

    def capacity(self) -> int | None:
        if self.breaks == "capacity":
            return -1
        if self.breaks == "capacity-stable":
            return len(self.backend.order) - len(self.backend.taken)
        if self.breaks == "capacity-exact":
            return len(self.backend.order) + 1
        return None

    def acquire(self, owner: str, *, family: int, wanted: netaddr.IPAddress | None = None) -> netaddr.IPAddress:
        if wanted is not None:
            if not self.spec.contains(wanted) and self.breaks != "wanted-outside":
                raise AddressNotAllowedError(f"{wanted} is not in the pool")
            with self._lock:
                owners = self._owners.get(wanted)
                if owners is not None:
                    if owner in owners:
                        if self.breaks == "same-owner":
                            raise AddressInUseError(f"{wanted} is taken")
                        if self.breaks == "same-owner-twice":
                            owners.append(owner)
                        return wanted
                    if self.breaks != "in-use":
                        raise AddressInUseError(f"{wanted} is taken")
                    owners.append(owner)
                    return wanted
            if self.breaks == "second-address":
                for ip, others in list(self._owners.items()):
                    if owner in others:
                        self.release(owner, ip)
            if self.breaks != "wanted-outside" and self._take(wanted.version, wanted) is None:
                raise AddressInUseError(f"{wanted} is taken by someone else")
            with self._lock:
                self._owners[wanted] = [owner]
                self._mine.add(wanted)
            return wanted
        if family not in self.spec.families():
            if self.breaks == "missing-family":
                return netaddr.IPAddress("2001:db8::1")
            raise PoolExhaustedError(f"the pool has no IPv{family} addresses")
        if self.breaks == "distinct" and self._owners:
            return next(iter(self._owners))
        ip = self._take(family, None)
        if ip is None:
            if self.breaks == "exhaustion":
                raise SourceUnavailableError("the IPAM says: prefix full")
            raise PoolExhaustedError("no free address")
        with self._lock:
            self._owners[ip] = [owner]
            self._mine.add(ip)
        return str(ip) if self.breaks == "acquire" else ip  # type: ignore[return-value]

    def claim(self, owner: str, ip: netaddr.IPAddress) -> None:
        if not self.spec.contains(ip) and self.breaks != "claim-outside":
            raise AddressNotAllowedError(f"{ip} is not in the pool")
        with self._lock:
            owners = self._owners.setdefault(ip, [])
            if owner not in owners:
                owners.append(owner)

    def release(self, owner: str, ip: netaddr.IPAddress) -> None:
        with self._lock:
            owners = self._owners.get(ip)
            if owners is None:
                return
            if owner in owners:
                owners.remove(owner)
            elif self.breaks == "release-idempotent":
                owners.clear()  # a stranger's release frees it
            else:
                return
            if owners and self.breaks != "owners-counted":
                return
            del self._owners[ip]
        self._free(ip)

    def describe(self, ip: netaddr.IPAddress) -> dict[str, str]:
        return {"id": 5} if self.breaks == "describe" else {"id": str(ip)}  # type: ignore[dict-item]

    def reconcile(self, held):
        if self.breaks == "reconcile":
            return ReconcileReport(lost=tuple((owners[0], ip) for ip, owners in held.items()))
        return ReconcileReport(released=(), lost=(), supported=True)

    def close(self) -> None:
        if self.breaks == "restart":
            for ip in list(self._mine):
                self._free(ip)


def toy(cidrs: str = "192.0.2.0/28", breaks: str = ""):
    """A factory of Toy sources sharing one backend."""
    spec = spec_of(cidrs)
    backend = Backend(spec)
    return lambda: Toy(spec, backend, breaks)


class TestBuiltinStatic:
    @pytest.mark.parametrize(
        ("cidrs", "capacity", "families"),
        [
            ("192.0.2.0/32", 1, (4,)),
            ("192.0.2.0/31", 2, (4,)),
            ("192.0.2.0/30", 4, (4,)),
            ("192.0.2.0/28", 16, (4,)),
            ("2001:db8::/124", 16, (6,)),
            ("192.0.2.0/28, 2001:db8::/124", 32, (4, 6)),
            ("192.0.2.0/30, 2001:db8::/127", 6, (4, 6)),
            ("192.0.2.0/30, 2001:db8::/128, 198.51.100.7/32", 6, (4, 6)),
        ],
        ids=lambda v: str(v).replace(" ", ""),
    )
    def test_every_pool_shape(self, cidrs, capacity, families):
        """The static source passes on tiny, single-family and dual-stack pools, exactly exhausted."""
        spec = spec_of(cidrs)
        report = check_source_contract(lambda: StaticSource(spec))
        assert report.families == families and report.ordered
        assert report.capacity == report.exhausted_after == capacity
        assert any("capacity(), when an int, is exactly" in c for c in report.checks)
        for family in families:
            assert any(c.startswith(f"IPv{family}: concurrent acquire()") for c in report.checks)

    def test_smaller_than_its_threads(self):
        """On a /30 with 8 threads the concurrent check scales down and says so, never crashing."""
        spec = spec_of("192.0.2.0/30")
        report = check_source_contract(lambda: StaticSource(spec), threads=8)
        (line,) = [c for c in report.checks if "concurrent" in c]
        assert line.endswith("(2 of 8 got one: the pool ran out)")

    def test_avoid_buggy_ips(self):
        """A pool avoiding .0 and .255 hands out and counts exactly its other addresses."""
        spec = spec_of("192.0.2.254/31, 192.0.3.0/30", extra="  avoid-buggy-ips: true\n")
        report = check_source_contract(lambda: StaticSource(spec))
        assert report.capacity == report.exhausted_after == 4

    def test_one_family_of_a_dual_stack_pool(self):
        """family=6 checks only IPv6, and then cannot judge capacity's exactness (skipped, said why)."""
        spec = spec_of("192.0.2.0/30, 2001:db8::/126")
        report = check_source_contract(lambda: StaticSource(spec), family=6)
        assert report.families == (6,) and report.exhausted_after == 4
        assert any("not every family of the pool was exhausted" in s for s in report.skipped)

    def test_tiny_pools_skip_what_they_cannot_check(self):
        """A one-address pool passes, listing the checks that need a second or third address as skipped."""
        spec = spec_of("192.0.2.7/32")
        report = check_source_contract(lambda: StaticSource(spec))
        assert any("distinct owners" in s and "one free address" in s for s in report.skipped)
        assert any("acquire(wanted=other)" in s for s in report.skipped)


class TestUnorderedSources:
    def test_a_correct_remote_like_source_passes(self):
        """A source without order or capacity passes; what it cannot be checked on is listed."""
        report = check_source_contract(toy())
        assert not report.ordered and report.capacity is None and report.exhausted_after == 16
        assert any("declares no order" in s for s in report.skipped)
        assert any("capacity() is None (unknown)" in s for s in report.skipped)
        assert any(c.startswith("reconcile(held)") for c in report.checks)

    def test_everything_is_released(self):
        """After the check the backend holds nothing."""
        factory = toy("192.0.2.0/29")
        check_source_contract(factory)
        assert factory().backend.taken == set()


class TestPreconditions:
    def test_no_free_address(self):
        """A pool with nothing free is a precondition error, not the source's PoolExhaustedError."""
        factory = toy("192.0.2.0/30")
        factory().backend.taken.update(netaddr.IPNetwork("192.0.2.0/30"))
        with pytest.raises(ContractPreconditionError, match="no free IPv4 address to check with"):
            check_source_contract(factory)

    def test_capacity_above_limit(self):
        """A known capacity above limit asks for a smaller pool, a larger limit or exhaust=False."""
        spec = spec_of("192.0.2.0/24")
        with pytest.raises(ContractPreconditionError, match="capacity\\(\\) is 256, more than limit=100"):
            check_source_contract(lambda: StaticSource(spec), limit=100)
        assert check_source_contract(lambda: StaticSource(spec), exhaust=False).exhausted_after is None

    def test_unknown_capacity_above_limit(self):
        """An unknown capacity that outlasts limit is found while exhausting."""
        with pytest.raises(ContractPreconditionError, match="more than limit=20 free IPv4 addresses"):
            check_source_contract(toy("192.0.2.0/27"), limit=20)

    def test_family_argument(self):
        """family must be 4, 6 or None."""
        with pytest.raises(ValueError, match='argument "family": value 5'):
            check_source_contract(toy(), family=5)

    def test_precondition_errors_are_contract_violations(self):
        """Callers catching ContractViolation see preconditions too."""
        assert issubclass(ContractPreconditionError, ContractViolation)


#: One source per rule that breaks exactly it, and the words the violation must contain.
BROKEN_TOYS = {
    "capacity": "capacity() is None or a non-negative int",
    "capacity-stable": "capacity() is None or a non-negative int, the same before and after",
    "acquire": "acquire(family=F) returns an IPvF netaddr.IPAddress",
    "owns": "False outside the pool's CIDRs",
    "distinct": "distinct owners get distinct addresses",
    "in-use": "raises AddressInUseError while another owner holds ip",
    "same-owner": "acquire(wanted=ip) by the owner already holding ip returns ip",
    "same-owner-twice": "free again only when its last owner releases it",
    "second-address": "the owner holds both and releases each on its own",
    "wanted-outside": "of an address outside the pool raises AddressNotAllowedError",
    "claim-outside": "claim() of an address outside the pool raises AddressNotAllowedError",
    "owners-counted": "claim() adds an owner; an address is free again only when its last owner releases it",
    "release-idempotent": "a non-owner's release frees nothing",
    "missing-family": "acquire() of a family the pool has no CIDRs of raises an AllocationError",
    "describe": "describe() returns a mapping of str to str",
    "concurrent": "concurrent acquire() calls for distinct owners get distinct addresses",
    "exhaustion": "acquire() raises PoolExhaustedError when nothing is free",
    "capacity-exact": "capacity(), when an int, is exactly",
    "reconcile": "reports none lost while the backend keeps them",
    "restart": "close() releases nothing",
}


class _NoPeek(StaticSource):
    def peek(self, family: int) -> None:
        return None


class _Backwards(StaticSource):
    def rank(self, ip: netaddr.IPAddress) -> int | None:
        rank = super().rank(ip)
        return None if rank is None else -rank


class _WrongPeek(StaticSource):
    def peek(self, family: int) -> netaddr.IPAddress | None:
        return netaddr.IPAddress(self.spec.cidrs[0].last, family)


class _LeakyExhaustion(StaticSource):
    """Holds the address a failed acquire looked at last: a failed call that holds something."""

    def acquire(self, owner, *, family, wanted=None):
        try:
            return super().acquire(owner, family=family, wanted=wanted)
        except PoolExhaustedError:
            self._leak = family in self.spec.families()
            raise

    def release(self, owner, ip):
        if getattr(self, "_leak", False):
            self._leak = False
            return  # the first release after running out is lost
        super().release(owner, ip)


class TestEveryRuleCanFail:
    def test_the_table_covers_every_rule(self):
        """Each rule of RULES has a broken source below (order and members too)."""
        covered = {k.removesuffix("-stable").removesuffix("-twice") for k in BROKEN_TOYS} | {"order", "members"}
        assert covered == set(RULES)

    @pytest.mark.parametrize("breaks", sorted(BROKEN_TOYS))
    def test_broken_toy(self, breaks):
        """A source breaking one rule is a ContractViolation naming that rule (not a crash, not a precondition)."""
        with pytest.raises(ContractViolation, match=None) as info:
            check_source_contract(toy(breaks=breaks), threads=4)
        assert not isinstance(info.value, ContractPreconditionError)
        assert BROKEN_TOYS[breaks] in str(info.value)

    @pytest.mark.parametrize(
        ("cls", "words"),
        [
            (_NoPeek, "peek(4) gave None, then acquire() returned 192.0.2.0"),
            (_Backwards, "first fit hands out lower ranks first"),
            (_WrongPeek, "peek(4) gave 192.0.2.15, then acquire() returned 192.0.2.0"),
        ],
    )
    def test_broken_order(self, cls, words):
        """rank() without peek(), ranks that shrink, or a peek() that lies break the order rule."""
        spec = spec_of("192.0.2.0/28")
        with pytest.raises(ContractViolation) as info:
            check_source_contract(lambda: cls(spec))
        assert RULES["order"] in str(info.value) and words in str(info.value)

    def test_leaky_exhaustion(self):
        """A release lost after the pool ran out breaks the exhaustion rule."""
        spec = spec_of("192.0.2.0/29")
        with pytest.raises(ContractViolation, match="holds nothing"):
            check_source_contract(lambda: _LeakyExhaustion(spec), threads=2)

    def test_not_a_source(self):
        """A factory building something without the members is named."""
        with pytest.raises(ContractViolation, match="the factory built object, which lacks some of owns, acquire"):
            check_source_contract(object)  # type: ignore[arg-type]

    def test_spec_of_the_wrong_type(self):
        """spec must be a PoolSpec."""
        spec = spec_of("192.0.2.0/30")

        class Unspecified(StaticSource):
            def __init__(self) -> None:
                super().__init__(spec)
                self.spec = spec.name  # type: ignore[assignment]

        with pytest.raises(ContractViolation, match="its spec is a PoolSpec: spec is 'p'"):
            check_source_contract(Unspecified)
