"""What the bundled address service and its backends share: leases, errors, names, MACs.

A backend turns a :class:`LeaseRequest` into a :class:`Lease` (the ``memory``
backend from configured CIDRs, the ``dhcp`` backend from a real DHCP server)
and keeps it alive; the service (``service``) owns the allocation table, the
MAC pool and the lease store, ``wire`` and ``http`` the HTTP API. Only base
dependencies here: the plugin's entry module imports this one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = [
    "SERVICE_PATTERN",
    "FamilyBackends",
    "backend_families",
    "AddressTakenError",
    "Backend",
    "BackendError",
    "BackendOptions",
    "Lease",
    "LeaseListener",
    "LeaseRequest",
    "LeaseTimeoutError",
    "NoAddressError",
    "client_id_for",
    "derive_mac",
    "normalise_mac",
    "rfc3339",
    "status_hostname",
    "wire_hostname",
]

#: ``namespace/name`` as Kubernetes spells both (no dots, so ``name.namespace`` maps back).
SERVICE_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class BackendError(Exception):
    """The backend cannot hand out an address now (HTTP 503)."""


class NoAddressError(BackendError):
    """Nothing is free: range exhausted, no MAC left, or the DHCP server stays silent."""


class LeaseTimeoutError(BackendError):
    """No lease within the request's wait (HTTP 504, body status ``timeout`` as DHCPManager)."""


class AddressTakenError(BackendError):
    """The requested address cannot be had (HTTP 409)."""


@attrs.frozen(kw_only=True)
class LeaseRequest:
    """What the server asks a backend for.

    Attributes:
        id: the allocation id (UUID) the answer carries.
        service: ``namespace/name``.
        uid: the Service's ``metadata.uid`` when the client sent one.
        mac: the hardware address to lease with ("" when the backend needs none).
        wanted: a particular address (of *family*), or "".
        family: 4 or 6 (the ``family`` extension of ``POST /v1/ip``).
    """

    id: str
    service: str
    uid: str = ""
    mac: str = ""
    wanted: str = ""
    family: int = 4


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    """JSON gives lists; a frozen lease keeps tuples."""
    return tuple(values)


@attrs.frozen(kw_only=True)
class Lease:
    """One address held for one service. Times are Unix seconds; None means never.

    Attributes:
        id: allocation id.
        service: ``namespace/name``.
        uid: Service uid, or "".
        ip: the address (dotted quad).
        mac: hardware address the lease is bound to, or "".
        mac_from_pool: the MAC came from the ``/v1/mac`` pool and goes back there.
        client_id: DHCP option 61 as hex, or "".
        server_id: DHCP server identifier, or "".
        server_mac: the DHCP server's hardware address (for DHCPRELEASE), or "".
        netmask: dotted quad, or "".
        routers: DHCP option 3.
        dns: DHCP option 6.
        interface: where the lease lives (``dhcp``), or "".
        bound: when the current lease was granted.
        renew: T1, or None.
        rebind: T2, or None.
        expires: end of the lease unless renewed, or None.
        lost: the backend could not keep it (NAK, expiry); the client must re-allocate.
    """

    id: str
    service: str
    uid: str = ""
    ip: str
    mac: str = ""
    mac_from_pool: bool = False
    client_id: str = ""
    server_id: str = ""
    server_mac: str = ""
    netmask: str = ""
    routers: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    dns: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    interface: str = ""
    bound: float = 0.0
    renew: float | None = None
    rebind: float | None = None
    expires: float | None = None
    lost: bool = False

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the state file."""
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lease:
        """Rebuild a lease from :meth:`to_json` output; unknown keys are ignored."""
        names = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


#: Called by a backend when a lease changed on its own (renewed, lost).
LeaseListener = Callable[[Lease], None]


@attrs.frozen(kw_only=True)
class BackendOptions:
    """The backend options of ``metallb address-service``, as ``metallb_make_backend`` receives them.

    Attributes:
        cidrs: ``--cidr``: the networks addresses come from (``memory``: required;
            ``dhcp``: what ``GET /v1/config`` reports).
        interface: ``--interface``: where DHCP goes.
        netns: ``--netns``: the named network namespace of *interface* ("" = the process's own).
        offer_timeout: ``--offer-timeout``: seconds to wait for a DHCPOFFER before repeating.
        renew_after: ``--renew-after``: renew this many seconds after each ACK instead of at T1.
    """

    cidrs: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    interface: str = ""
    netns: str = ""
    offer_timeout: float = 5.0
    renew_after: float | None = None


@runtime_checkable
class Backend(Protocol):
    """Where the bundled server's addresses come from. Built by ``metallb_make_backend``.

    ``obtain`` may block up to *timeout* seconds and is called from many
    threads at once; the backend protects its own state. A backend may name
    the address families it serves in a ``families`` attribute (a tuple;
    ``(4,)`` when absent); requests of another family never reach it.
    """

    kind: str
    #: Whether each lease needs its own MAC (``dhcp``); the server then refuses without one.
    needs_mac: bool

    def cidrs(self) -> Sequence[str]:
        """The networks addresses come from, for ``GET /v1/config``."""
        ...

    def start(self, listener: LeaseListener) -> None:
        """Begin background work; report lease changes to *listener*."""
        ...

    def obtain(self, request: LeaseRequest, *, timeout: float) -> Lease:
        """Lease an address; raise a :class:`BackendError` subclass on failure."""
        ...

    def resume(self, lease: Lease) -> None:
        """Take over a lease found in the state file (renew it now when it can expire)."""
        ...

    def release(self, lease: Lease) -> None:
        """Give the address back (DHCPRELEASE). Best effort, never raises for a gone lease."""
        ...

    def close(self) -> None:
        """Stop background work. Releases nothing: leases stay for the next start."""
        ...


def backend_families(backend: Backend) -> tuple[int, ...]:
    """The families *backend* serves (its ``families``, else IPv4 only)."""
    return tuple(getattr(backend, "families", (4,)))


def _family_of(ip: str) -> int:
    return 6 if ":" in ip else 4


class FamilyBackends:
    """One backend per address family behind the server (``--backend dhcp --backend dhcpv6``).

    Args:
        backends: each serves the families it names; the first to name a family serves it.
    """

    def __init__(self, backends: Sequence[Backend]) -> None:
        self.backends = tuple(backends)
        self.kind = "+".join(b.kind for b in self.backends)
        self.needs_mac = any(b.needs_mac for b in self.backends)
        self.families = tuple(sorted({f for b in self.backends for f in backend_families(b)}))
        self.blocking = any(getattr(b, "blocking", True) for b in self.backends)  # see AddressService.blocking
        self._by_family: dict[int, Backend] = {}
        for backend in self.backends:
            for family in backend_families(backend):
                self._by_family.setdefault(family, backend)

    def __repr__(self) -> str:
        return f"<FamilyBackends({', '.join(map(repr, self.backends))})>"

    def _for(self, family: int) -> Backend:
        backend = self._by_family.get(family)
        if backend is None:
            raise NoAddressError(f"no backend of this server hands out IPv{family} addresses")
        return backend

    def cidrs(self) -> Sequence[str]:
        """Every backend's networks."""
        return [c for b in self.backends for c in b.cidrs()]

    def start(self, listener: LeaseListener) -> None:
        """Start every backend."""
        for backend in self.backends:
            backend.start(listener)

    def obtain(self, request: LeaseRequest, *, timeout: float) -> Lease:
        """The backend of the request's family leases."""
        return self._for(request.family).obtain(request, timeout=timeout)

    def resume(self, lease: Lease) -> None:
        """The backend of the lease's family resumes it."""
        self._for(_family_of(lease.ip)).resume(lease)

    def release(self, lease: Lease) -> None:
        """The backend of the lease's family releases it."""
        self._for(_family_of(lease.ip)).release(lease)

    def close(self) -> None:
        """Close every backend."""
        for backend in self.backends:
            backend.close()


_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as DHCPManager prints an unset time


def rfc3339(ts: float | None) -> str:
    """Unix seconds as Go prints a ``time.Time`` in JSON; None is Go's zero time."""
    if ts is None:
        return _ZERO_TIME
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def status_hostname(service: str) -> str:
    """``namespace/name`` -> ``name.namespace``, as DHCPManager reports it in /v1/status."""
    namespace, sep, name = service.partition("/")
    return f"{name}.{namespace}" if sep else service


def wire_hostname(service: str) -> str:
    """The DHCP hostname option: ``name-namespace``, one DNS label (no dots, at most 63)."""
    namespace, sep, name = service.partition("/")
    text = f"{name}-{namespace}" if sep else service
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "service"
    if len(label) > 63:
        # Keep it unique: a hash of the full name replaces the tail.
        label = f"{label[:54].rstrip('-')}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return label


def client_id_for(service: str, uid: str = "") -> bytes:
    """DHCP option 61: type 0 (opaque) and the service (and uid), so a reused MAC gets no old lease."""
    text = f"metallb/{service}" + (f"/{uid}" if uid else "")
    return b"\x00" + text.encode()[:250]


_MAC_FORMS = (
    re.compile(r"^([0-9a-f]{2})" + r":([0-9a-f]{2})" * 5 + "$"),
    re.compile(r"^([0-9a-f]{2})" + r"-([0-9a-f]{2})" * 5 + "$"),
)
_MAC_DOTTED = re.compile(r"^([0-9a-f]{4})\.([0-9a-f]{4})\.([0-9a-f]{4})$")


def normalise_mac(text: str) -> str:
    """A 48-bit unicast MAC in any of Go's spellings -> ``aa:bb:cc:dd:ee:ff``; ValueError says why."""
    value = text.strip().lower()
    octets: Sequence[str] | None = None
    for form in _MAC_FORMS:
        match = form.match(value)
        if match:
            octets = match.groups()
    dotted = _MAC_DOTTED.match(value)
    if dotted:
        joined = "".join(dotted.groups())
        octets = [joined[i : i + 2] for i in range(0, 12, 2)]
    if octets is None:
        raise ValueError("not a 48-bit MAC (write aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabb.ccdd.eeff)")
    if int(octets[0], 16) & 0x01:
        raise ValueError("a multicast MAC cannot hold a lease")
    return ":".join(octets)


def derive_mac(service: str, uid: str = "", salt: int = 0) -> str:
    """A stable, locally administered unicast MAC for *service* (bit 0x02 set, 0x01 clear)."""
    digest = bytearray(hashlib.sha256(f"{service}/{uid}/{salt}".encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)
