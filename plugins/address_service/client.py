"""The client side of an address service: the :class:`AddressServiceSource` of one pool.

It speaks DHCPManager's v1 protocol (``POST``/``DELETE /v1/ip``) and uses our
extensions only when the server lists them in ``GET /v1/config``. Every
answer is checked (2xx, JSON, ``status: success``, an IPv4 ``ip`` inside the
pool); a lease we cannot use is given back at once. A POST whose answer was
lost is never repeated blindly: the server's idempotent POST or its
``/v1/status`` proves no lease was made for the service first. DELETEs that
fail are retried by a background thread (``releases``) until the server
confirms them. Quick retries go through :func:`metallb.allocator.retry.retrying`.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import httpx
import netaddr
from metallb.allocator import (
    AddressInUseError,
    AddressNotAllowedError,
    AllocationError,
    ConfigError,
    PoolExhaustedError,
    PoolSpec,
    ReconcileReport,
    SourceBase,
    SourceUnavailableError,
)
from metallb.allocator.retry import Attempt, Retryable, retrying
from metallb.plugins.address_service.releases import ReleaseError, ReleaseQueue

__all__ = ["ATTEMPTS", "AddressServiceSource", "LeaseRecord", "service_of_hostname"]

log = logging.getLogger(__name__)

#: POSTs per allocation at most (the fork recursed without limit).
ATTEMPTS = 3
#: Longer than DHCPManager's own 10 s wait for a lease, so its "timeout" answer arrives.
TOTAL_TIMEOUT = 15.0
CONNECT_TIMEOUT = 3.0
BACKOFF = 0.25
MAX_BACKOFF = 30.0
#: How long the extension list of ``GET /v1/config`` is trusted.
EXTENSIONS_TTL = 300.0
_SNIPPET = 120


@attrs.frozen(kw_only=True)
class LeaseRecord:
    """What we know of one address obtained from the service.

    Attributes:
        ip: the address.
        service: the service it was POSTed for ("" when only claimed at restart).
        id: the server's allocation id, or "".
        mac: the lease's hardware address, or "".
        expires: the server's ``expires`` text, or "".
    """

    ip: netaddr.IPAddress
    service: str = ""
    id: str = ""
    mac: str = ""
    expires: str = ""


class _Answer(Exception):
    """One POST outcome that is not a usable lease; says whether to try again."""

    def __init__(
        self,
        message: str,
        *,
        retry: bool,
        ambiguous: bool = False,
        kind: type[AllocationError] = SourceUnavailableError,
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.ambiguous = ambiguous  # the server may have made a lease we never heard of
        self.kind = kind

    @staticmethod
    def retryable(exc: Exception) -> bool:
        """For :func:`retrying`: try again after this?"""
        return isinstance(exc, _Answer) and exc.retry

    def final(self) -> _Answer:
        """The same outcome, not to be retried."""
        return _Answer(str(self), retry=False, ambiguous=self.ambiguous, kind=self.kind)


def service_of_hostname(hostname: str) -> str:
    """``name.namespace`` (DHCPManager's Hostname) -> ``namespace/name``; "" if it is not one."""
    name, sep, namespace = hostname.partition(".")
    return f"{namespace}/{name}" if sep and name and namespace and "." not in namespace else ""


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET else flat[:_SNIPPET] + "..."


def _failure(code: int, status: object, message: str, *, leased: bool) -> _Answer:
    """A POST answer that gave no usable lease, classified: what it means and whether to try again."""
    if code == 409:
        return _Answer(message, retry=False, kind=AddressInUseError)
    if code == 503 or (code < 300 and status == "error"):
        return _Answer(message, retry=True, kind=PoolExhaustedError if code == 503 else SourceUnavailableError)
    if code == 504 or status == "timeout":
        # The server already waited its full lease time; the caller requeues with backoff.
        return _Answer(message, retry=False)
    if code >= 500:
        return _Answer(message, retry=True, ambiguous=not leased)
    return _Answer(message, retry=code < 400)


class AddressServiceSource(SourceBase):
    """Addresses of one ``address-services`` pool, leased over HTTP.

    Args:
        spec: the pool; ``spec.options`` holds ``url`` (normalised), and
            optionally ``auth-token``, ``ca-file``, and the programmatic
            ``timeout``, ``connect-timeout`` and ``backoff`` (seconds; not
            accepted in YAML, for tests and embedding).
        transport: an httpx transport to use instead of the network.
    """

    def __init__(self, spec: PoolSpec, *, transport: httpx.BaseTransport | None = None) -> None:
        self.spec = spec
        self.url = str(spec.options["url"])
        self._label = f'address service "{spec.name}" ({self.url})'
        self.timeout = float(spec.options.get("timeout", TOTAL_TIMEOUT))  # type: ignore[arg-type]
        self.connect_timeout = min(self.timeout, float(spec.options.get("connect-timeout", CONNECT_TIMEOUT)))  # type: ignore[arg-type]
        self.backoff = float(spec.options.get("backoff", BACKOFF))  # type: ignore[arg-type]
        headers = {"Accept": "application/json", "User-Agent": "metallb-address-service-client/1"}
        token = str(spec.options.get("auth-token") or "")
        if token:
            headers["X-Auth-Token"] = token
        verify: ssl.SSLContext | bool = True
        ca_file = str(spec.options.get("ca-file") or "")
        if ca_file:
            try:
                verify = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f'address service "{spec.name}": field "ca-file": value "{ca_file}": cannot load: {exc}'
                ) from None
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            verify=verify,
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            follow_redirects=False,  # a redirect would turn POST into GET, as it did in the fork
            transport=transport,
        )
        self._lock = threading.Lock()
        self._owners: dict[netaddr.IPAddress, set[str]] = {}
        self._leases: dict[netaddr.IPAddress, LeaseRecord] = {}
        self._inflight: dict[str, int] = {}
        self._extensions: frozenset[str] | None = None
        self._extensions_until = 0.0
        self._releases: ReleaseQueue[LeaseRecord] = ReleaseQueue(
            send=self._delete,
            held=self._holds,
            label=self._label,
            first_delay=max(self.backoff, 0.05) * 2**ATTEMPTS,
            max_delay=MAX_BACKOFF,
            thread_name=f"address-service-{spec.name}-delete",
        )

    def __repr__(self) -> str:
        held, pending = len(self._owners), len(self._releases)
        return f"<AddressServiceSource({self.spec.name!r}, url={self.url!r}, held={held}, pending={pending})>"

    # -- helpers ---------------------------------------------------------------------------

    def _where(self, what: str) -> str:
        return f"{self._label}: {what}"

    def _request(
        self, method: str, path: str, *, body: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> httpx.Response:
        # httpx's delete() takes no body: DELETE /v1/ip carries JSON, so use request().
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["content"] = json.dumps(body).encode() + b"\n"  # what Go's encoder sends
            kwargs["headers"] = {"Content-Type": "application/json"}
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=min(timeout, self.connect_timeout))
        return self._http.request(method, path, **kwargs)

    def _retrying(self, on: Retryable) -> Iterator[Attempt]:
        """:func:`retrying` with this source's bounds: :data:`ATTEMPTS` tries, waits from ``backoff`` seconds up."""
        return retrying(
            on=on,
            attempts=ATTEMPTS,
            timeout=ATTEMPTS * self.timeout + MAX_BACKOFF,
            wait_initial=self.backoff,
            wait_max=MAX_BACKOFF,
        )

    def extensions(self) -> frozenset[str]:
        """The protocol extensions the server lists in ``GET /v1/config`` (cached; empty for DHCPManager)."""
        if self._extensions is not None and time.monotonic() < self._extensions_until:
            return self._extensions
        try:
            resp = self._request("GET", "/v1/config", timeout=min(self.timeout, 5.0))
        except httpx.HTTPError as exc:
            log.debug("%s", self._where(f"GET /v1/config failed: {exc}"))
            return self._extensions or frozenset()  # the last answer, or unknown: ask again next time
        found: frozenset[str] = frozenset()
        if resp.status_code == 200:
            try:
                data = resp.json()
                found = frozenset(str(e) for e in data.get("extensions") or ())
                self._check_cidrs(data.get("cidrs"))
            except (ValueError, AttributeError, TypeError):
                log.warning("%s", self._where(f"GET /v1/config answered unreadable JSON: {_snippet(resp.text)!r}"))
        elif resp.status_code >= 500:
            return self._extensions or frozenset()
        self._extensions = found  # 404/405: DHCPManager, which has no /v1/config
        self._extensions_until = time.monotonic() + EXTENSIONS_TTL  # the server may be replaced or upgraded
        return found

    def _check_cidrs(self, cidrs: object) -> None:
        if not isinstance(cidrs, list):
            return
        try:
            theirs = netaddr.IPSet(netaddr.IPNetwork(str(c)) for c in cidrs if "-" not in str(c))
        except (netaddr.AddrFormatError, ValueError, TypeError):
            return
        ours = netaddr.IPSet(self.spec.cidrs)
        if theirs and not theirs.issuperset(ours) and not ours.issuperset(theirs):
            log.warning(
                "%s",
                self._where(
                    f"the service hands out {cidrs} but the pool's cidrs are {[str(c) for c in self.spec.cidrs]}"
                ),
            )
        elif theirs and not ours.issuperset(theirs):
            log.warning(
                "%s",
                self._where(
                    f"the service hands out {cidrs}, wider than the pool's cidrs; answers outside them are given back"
                ),
            )

    # -- acquire ---------------------------------------------------------------------------

    def acquire(self, owner: str, *, family: int, wanted: netaddr.IPAddress | None = None) -> netaddr.IPAddress:
        """POST ``/v1/ip`` for *owner*; at most :data:`ATTEMPTS` tries, a rejected lease is given back."""
        if family != 4 or 4 not in self.spec.families():
            raise PoolExhaustedError(self._where("address services hand out IPv4 addresses only"))
        if wanted is not None:
            if not self.spec.contains(wanted):
                raise AddressNotAllowedError(self._where(f'"{wanted}" is not allowed in this pool'))
            with self._lock:
                if owner in self._owners.get(wanted, ()):
                    return wanted  # already the owner's: nothing to ask the service
        self._retry_pending_of(owner)
        extensions = self.extensions()
        if wanted is not None and "requested-ip" not in extensions:
            if self._extensions is None:
                raise SourceUnavailableError(
                    self._where(f"cannot ask for {wanted}: GET /v1/config, which says whether that is offered, failed")
                )
            raise AllocationError(
                self._where(
                    f"cannot ask for {wanted}: the service does not offer requested addresses; "
                    "remove spec.loadBalancerIP"
                )
            )
        with self._lock:
            self._inflight[owner] = self._inflight.get(owner, 0) + 1
        try:
            return self._acquire(owner, wanted, extensions)
        finally:
            with self._lock:
                self._inflight[owner] -= 1
                if not self._inflight[owner]:
                    del self._inflight[owner]

    def _acquire(self, owner: str, wanted: netaddr.IPAddress | None, extensions: frozenset[str]) -> netaddr.IPAddress:
        problems: list[str] = []
        try:
            for attempt in self._retrying(_Answer.retryable):
                with attempt:
                    record = self._attempt(owner, wanted, extensions, problems)
        except _Answer as last:
            detail = problems[0] if len(problems) == 1 else f"{len(problems)} problems: " + "; ".join(problems)
            raise last.kind(detail) from None
        return self._take(owner, record)

    def _attempt(
        self, owner: str, wanted: netaddr.IPAddress | None, extensions: frozenset[str], problems: list[str]
    ) -> LeaseRecord:
        """One POST; after a lost answer, the lease it may have made. Problems are appended to *problems*."""
        try:
            return self._post(owner, wanted)
        except _Answer as answer:
            problems.append(str(answer))
            if not answer.ambiguous or "idempotent-post" in extensions:
                raise
            # The server may have made a lease: find it before any repeat, or do not repeat.
            try:
                found = self._find_lease(owner)
            except _Answer as lookup:
                problems.append(str(lookup))
                raise answer.final() from None
            except SourceUnavailableError as exc:
                problems.append(f"{exc}; the POST is not repeated (it could leak a lease)")
                raise answer.final() from None
            if found is None:
                raise answer
            log.info("%s", self._where(f"adopted lease {found.ip} made for {owner} by a POST whose answer was lost"))
            return found

    def _holds(self, ip: netaddr.IPAddress) -> bool:
        with self._lock:
            return ip in self._owners

    def _take(self, owner: str, record: LeaseRecord) -> netaddr.IPAddress:
        with self._lock:
            # Being handed this address again proves its earlier release happened: a
            # still-queued DELETE for it would now release the new owner's lease.
            self._releases.discard(record.ip)
            self._leases[record.ip] = record
            self._owners.setdefault(record.ip, set()).add(owner)
        return record.ip

    def _post(self, owner: str, wanted: netaddr.IPAddress | None) -> LeaseRecord:
        """One POST; a usable lease or an :class:`_Answer` saying why not."""
        body: dict[str, Any] = {"service": owner}
        if wanted is not None:
            body["ip"] = str(wanted)
        what = f'POST /v1/ip for "{owner}"'
        try:
            resp = self._request("POST", "/v1/ip", body=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # nothing sent: safe to repeat
            raise _Answer(self._where(f"{what}: cannot connect: {exc or type(exc).__name__}"), retry=True) from None
        except httpx.TimeoutException as exc:
            # Not repeated: a slow server would only make the caller wait again.
            raise _Answer(
                self._where(f"{what}: no answer within {self.timeout:g} s ({type(exc).__name__})"),
                retry=False,
                ambiguous=True,
            ) from None
        except httpx.HTTPError as exc:
            raise _Answer(
                self._where(f"{what}: connection failed: {exc or type(exc).__name__}"), retry=True, ambiguous=True
            ) from None
        return self._judge(owner, wanted, resp, what)

    def _judge(self, owner: str, wanted: netaddr.IPAddress | None, resp: httpx.Response, what: str) -> LeaseRecord:
        """The usable lease in a POST's answer, or an :class:`_Answer`; an unusable lease is given back."""
        code = resp.status_code
        head = self._where(f"{what}: HTTP {code}")
        snippet = f'body "{_snippet(resp.text)}"'
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            # A proxy's error page or garbage; a 5xx proxy answer may hide a lease made upstream.
            raise _Answer(
                f"{head}: the answer is not a JSON object; {snippet}",
                retry=code >= 500 or code < 300,
                ambiguous=code >= 500,
            )
        ip = _parse_ipv4(data.get("ip"))
        problem = self._problem(code, data, ip, wanted)
        if ip is None:
            raise _failure(code, data.get("status"), f"{head}: {problem}; {snippet}", leased=False)
        record = LeaseRecord(
            ip=ip,
            service=owner,
            id=str(data.get("id") or ""),
            mac=str(data.get("mac") or ""),
            expires=str(data.get("expires") or ""),
        )
        if not problem:
            return record
        if self._holds(record.ip):  # a confused server: giving it back would release another's address
            problem += f"; {record.ip} is held here by another service, so it is not given back"
        else:
            self._give_back(record)
            problem += f"; gave {record.ip} back"
        raise _failure(code, data.get("status"), f"{head}: {problem}; {snippet}", leased=True)

    def _problem(
        self, code: int, data: Mapping[str, Any], ip: netaddr.IPAddress | None, wanted: netaddr.IPAddress | None
    ) -> str:
        """Why the answer *data* is no usable lease, or "" when it is one."""
        status = data.get("status")
        message = f" ({data['message']})" if isinstance(data.get("message"), str) and data["message"] else ""
        if not 200 <= code < 300:
            return f'status "{status}"{message}'
        if status != "success":
            said = f'status "{status}"' if isinstance(status, str) else 'no "status"'
            return f'{said} instead of "success"{message}'
        if ip is None:
            return f'"ip" {data.get("ip")!r} is not an IPv4 address'
        if not self.spec.contains(ip):
            rule = (
                "avoid-buggy-ips"
                if any(ip in c for c in self.spec.cidrs)
                else f"cidrs {', '.join(map(str, self.spec.cidrs))}"
            )
            return f"{ip} is outside the pool ({rule})"
        if wanted is not None and ip != wanted:
            return f"asked for {wanted}, got {ip}"
        if self._holds(ip):
            return f"{ip} is already held here (the service leased it twice)"
        return ""

    def _find_lease(self, owner: str) -> LeaseRecord | None:
        """After a lost answer: a lease the server made for *owner* that we do not hold, if any."""
        allocations = self._status()
        if allocations is None:
            raise _Answer(
                self._where(
                    f'the answer to a POST for "{owner}" was lost and the service has no /v1/status to check for '
                    "a lease already made, so the POST is not repeated (it could leak a lease)"
                ),
                retry=False,
            )
        found = []
        with self._lock:
            for entry in allocations:
                if entry.service == owner and entry.ip is not None and not entry.lost and entry.ip not in self._owners:
                    found.append(entry)
        usable = [e for e in found if self.spec.contains(e.ip)]  # type: ignore[arg-type]
        for extra in [e for e in found if e not in usable[:1]]:
            self._give_back(LeaseRecord(ip=extra.ip, service=owner, id=extra.id))  # type: ignore[arg-type]
        if not usable:
            return None
        best = usable[0]
        return LeaseRecord(ip=best.ip, service=owner, id=best.id, mac=best.mac)  # type: ignore[arg-type]

    # -- status --------------------------------------------------------------------------------

    def _status(self) -> list[_Entry] | None:
        """``GET /v1/status`` as entries (a few tries); None when the server has none (404/405)."""
        try:
            for attempt in self._retrying(_Answer.retryable):
                with attempt:
                    entries = self._status_once()
        except _Answer as failure:
            raise SourceUnavailableError(self._where(str(failure))) from None
        return entries

    def _status_once(self) -> list[_Entry] | None:
        try:
            resp = self._request("GET", "/v1/status")
        except httpx.HTTPError as exc:
            raise _Answer(f"GET /v1/status: {type(exc).__name__}: {exc}", retry=True) from None
        if resp.status_code in (404, 405):
            return None
        if resp.status_code == 200:
            try:
                return _entries(resp.json())
            except (ValueError, AttributeError, TypeError, KeyError):
                raise _Answer(
                    f'GET /v1/status: HTTP 200 but unreadable: body "{_snippet(resp.text)}"', retry=False
                ) from None
        raise _Answer(
            f'GET /v1/status: HTTP {resp.status_code}: body "{_snippet(resp.text)}"', retry=resp.status_code >= 500
        )

    # -- release ----------------------------------------------------------------------------

    def claim(self, owner: str, ip: netaddr.IPAddress) -> None:
        """Record *owner* as a user of *ip* (restart, or a shared address). No I/O."""
        if not self.spec.contains(ip):
            raise AddressNotAllowedError(self._where(f'"{ip}" is not allowed in this pool'))
        with self._lock:
            self._owners.setdefault(ip, set()).add(owner)

    def release(self, owner: str, ip: netaddr.IPAddress) -> None:
        """Drop *owner*; the last user's release sends DELETE, retried until the server confirms."""
        with self._lock:
            owners = self._owners.get(ip)
            if owners is None:
                return
            owners.discard(owner)
            if owners:
                return  # shared: others still use it
            del self._owners[ip]
            record = self._leases.pop(ip, None) or LeaseRecord(ip=ip)
        self._give_back(record)

    def _give_back(self, record: LeaseRecord) -> None:
        """DELETE now (a few quick tries); if that fails, queue it for the background worker."""
        try:
            for attempt in self._retrying(ReleaseError):
                with attempt:
                    self._delete(record)
        except ReleaseError as exc:
            log.warning("%s", self._where(f"DELETE of {record.ip} failed ({exc}); retrying in the background"))
            self._releases.add(record, error=str(exc), attempts=ATTEMPTS)
            return
        self._releases.discard(record.ip)

    def _delete(self, record: LeaseRecord) -> None:
        """One DELETE; :class:`ReleaseError` unless done. Unknown (404, DHCPManager's "error" with no id) is done."""
        body: dict[str, Any] = {"ip": str(record.ip)}
        if record.service:
            body["service"] = record.service  # extra fields are harmless to DHCPManager
        if record.id:
            body["id"] = record.id
        try:
            resp = self._request("DELETE", "/v1/ip", body=body)
        except (httpx.HTTPError, RuntimeError) as exc:  # RuntimeError: the client was closed meanwhile
            raise ReleaseError(f"{type(exc).__name__}: {exc}") from None
        code = resp.status_code
        try:
            data = resp.json()
        except ValueError:
            data = None
        status = data.get("status") if isinstance(data, dict) else None
        if 200 <= code < 300 and status == "success":
            return
        if code == 404 or (code == 200 and status == "error" and isinstance(data, dict) and not data.get("id")):
            return  # already released, or never known
        if code == 409:
            log.warning(
                "%s", self._where(f"DELETE of {record.ip}: the service says another owner holds it now; not released")
            )
            return
        raise ReleaseError(f'HTTP {code}: body "{_snippet(resp.text)}"')

    def _retry_pending_of(self, owner: str) -> None:
        """Before a new POST for *owner*: an idempotent server would hand back a lease we are deleting."""
        for record in self._releases.records_of(owner):
            try:
                self._delete(record)
            except ReleaseError as exc:
                raise SourceUnavailableError(
                    self._where(f"the previous address {record.ip} of {owner} is not returned yet ({exc})")
                ) from None
            self._releases.discard(record.ip)

    def pending_releases(self) -> dict[netaddr.IPAddress, str]:
        """Addresses whose DELETE has not succeeded yet, with the last error."""
        return self._releases.pending()

    def flush(self, timeout: float) -> bool:
        """Wait until no DELETE is pending (tests, shutdown); True if none is left."""
        return self._releases.flush(timeout)

    # -- the rest of the AddressSource protocol -----------------------------------------------

    def describe(self, ip: netaddr.IPAddress) -> Mapping[str, str]:
        """``address-service``, and ``lease-id``/``lease-mac``/``lease-expires`` when known."""
        with self._lock:
            record = self._leases.get(ip)
        out = {"address-service": self.spec.name}
        if record is not None:
            for key, value in (("lease-id", record.id), ("lease-mac", record.mac), ("lease-expires", record.expires)):
                if value:
                    out[key] = value
        return out

    def reconcile(self, held: Mapping[netaddr.IPAddress, tuple[str, ...]]) -> ReconcileReport:
        """Compare *held* with ``/v1/status``: give orphans back, report addresses the service lost."""
        allocations = self._status()
        if allocations is None:
            return ReconcileReport(supported=False)
        by_ip = {e.ip: e for e in allocations if e.ip is not None}
        released = self._release_orphans(by_ip, held)
        lost: list[tuple[str, netaddr.IPAddress]] = []
        for ip, owners in held.items():
            known = by_ip.get(ip)
            with self._lock:
                still = ip in self._owners
                if still and known is not None and not known.lost and ip not in self._leases:
                    # Learned after a restart: later DELETEs carry the owner and id.
                    self._leases[ip] = LeaseRecord(ip=ip, service=known.service, id=known.id, mac=known.mac)
            if still and (known is None or known.lost):
                lost.extend((owner, ip) for owner in owners)
        return ReconcileReport(released=tuple(released), lost=tuple(lost), supported=True)

    def _release_orphans(
        self, by_ip: Mapping[netaddr.IPAddress, _Entry], held: Mapping[netaddr.IPAddress, tuple[str, ...]]
    ) -> list[netaddr.IPAddress]:
        """Give back the service's leases in this pool that nobody here holds or is waiting for."""
        released: list[netaddr.IPAddress] = []
        with self._lock:
            ours = set(self._owners)
            busy = set(self._inflight)
        for ip, entry in by_ip.items():
            if ip in held or ip in ours or entry.service in busy or not self.spec.contains(ip):
                continue  # ours, being allocated right now, or another pool's business
            try:
                self._delete(LeaseRecord(ip=ip, service=entry.service, id=entry.id))
            except ReleaseError as exc:
                log.warning("%s", self._where(f"could not release orphan {ip}: {exc}"))
                continue
            self._releases.discard(ip)
            released.append(ip)
            log.info(
                "%s",
                self._where(f"released orphan {ip} (held at the service for {entry.service or '?'}, by nobody here)"),
            )
        return released

    def close(self) -> None:
        """Stop the DELETE worker and close connections (pending DELETEs are logged, not sent)."""
        left = self._releases.close()
        if left:
            log.warning(
                "%s", self._where(f"closing with {len(left)} DELETEs not confirmed: {', '.join(map(str, left))}")
            )
        self._http.close()


@attrs.frozen(kw_only=True)
class _Entry:
    ip: netaddr.IPAddress | None
    service: str
    id: str
    mac: str
    lost: bool


def _parse_ipv4(text: object) -> netaddr.IPAddress | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        ip = netaddr.IPAddress(text.strip(), 4, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None
    return ip


def _entries(data: Any) -> list[_Entry]:
    """DHCPManager's status (``Allocations`` with ``Lease.FixedAddress``), plus our ``Service``/``Lost``."""
    out = []
    for item in data.get("Allocations") or ():
        lease = item.get("Lease") or {}
        service = item.get("Service") or service_of_hostname(str(item.get("Hostname") or ""))
        state = item.get("State")
        out.append(
            _Entry(
                ip=_parse_ipv4(lease.get("FixedAddress")),
                service=str(service),
                id=str(item.get("ID") or ""),
                mac=str(item.get("MAC") or (item.get("Interface") or {}).get("HardwareAddr") or ""),
                lost=bool(item.get("Lost")) or state == 2,
            )
        )
    return out
