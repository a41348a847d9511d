"""The client side of an address service: the :class:`AddressServiceSource` of one pool.

It speaks DHCPManager's v1 protocol (``POST``/``DELETE /v1/ip``) and uses our
extensions only when the server lists them in ``GET /v1/config``. Every
answer is checked (2xx, JSON, ``status: success``, an ``ip`` of the asked
family inside the pool); a lease we cannot use is given back at once. A POST
whose answer was lost is never repeated blindly: the server's idempotent POST
or its ``/v1/status`` proves no lease was made for the service first.

DHCPManager's answers are not taken at their word where they are ambiguous:
a DELETE answered ``error`` with an empty id may only mean its IP index lags
behind the POST, so ``/v1/status`` must confirm the lease is gone; a POST
answered ``timeout`` may still be bound later, so that allocation id is looked
for in ``/v1/status`` for a while and released when it shows up. DELETEs that
are not confirmed are retried by a background thread (``releases``) until they
are. Quick retries go through :func:`metallb.allocator.retry.retrying`.
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
from metallb.plugins.address_service.releases import LateLeases, ReleaseError, ReleaseQueue

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
#: How long to look for a late binding after a POST answered "timeout" (DHCPManager binds one
#: allocation at a time, ~3 s each, so a queue of them binds long after its 10 s answer).
LATE_LEASE_WAIT = 60.0
#: How often ``/v1/status`` is read while late bindings are looked for.
LATE_LEASE_POLL = 1.0
#: Without ``/v1/status``, a DELETE answered "error" this soon after the POST is tried again
#: (DHCPManager's IP index lags the POST's answer by tens of milliseconds).
INDEX_GRACE = 2.0
#: Addresses given back as unusable that reconciliation still looks for, at most.
RETURNED_MAX = 1024
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
        obtained: when the answer came (monotonic seconds; 0 when not from a POST).
    """

    ip: netaddr.IPAddress
    service: str = ""
    id: str = ""
    mac: str = ""
    expires: str = ""
    obtained: float = attrs.field(default=0.0, eq=False)


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
            optionally ``auth-token``, ``ca-file`` or ``ca-data`` (the PEM
            text, from an ``AddressService``'s CA Secret), and the programmatic
            ``timeout``, ``connect-timeout``, ``backoff``, ``late-lease-wait``
            and ``late-lease-poll`` (seconds; not accepted in YAML, for tests
            and embedding).
        transport: an httpx transport to use instead of the network.
    """

    def __init__(self, spec: PoolSpec, *, transport: httpx.BaseTransport | None = None) -> None:
        self.spec = spec
        self.url = str(spec.options["url"])
        self._label = f'address service "{spec.name}" ({self.url})'
        self.timeout = float(spec.options.get("timeout", TOTAL_TIMEOUT))  # type: ignore[arg-type]
        self.connect_timeout = min(self.timeout, float(spec.options.get("connect-timeout", CONNECT_TIMEOUT)))  # type: ignore[arg-type]
        self.backoff = float(spec.options.get("backoff", BACKOFF))  # type: ignore[arg-type]
        self.late_wait = float(spec.options.get("late-lease-wait", LATE_LEASE_WAIT))  # type: ignore[arg-type]
        late_poll = float(spec.options.get("late-lease-poll", LATE_LEASE_POLL))  # type: ignore[arg-type]
        headers = {"Accept": "application/json", "User-Agent": "metallb-address-service-client/1"}
        token = str(spec.options.get("auth-token") or "")
        if token:
            headers["X-Auth-Token"] = token
        verify: ssl.SSLContext | bool = True
        ca_file = str(spec.options.get("ca-file") or "")
        ca_data = str(spec.options.get("ca-data") or "")
        if ca_file:
            try:
                verify = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f'address service "{spec.name}": field "ca-file": value "{ca_file}": cannot load: {exc}'
                ) from None
        elif ca_data:
            try:
                verify = ssl.create_default_context(cadata=ca_data)
            except (ssl.SSLError, ValueError) as exc:
                raise ConfigError(
                    f'address service "{spec.name}": field "caSecret": the CA certificate cannot be loaded: {exc}'
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
        # Unusable leases given back (outside cidrs ...): reconciliation releases them if they linger.
        self._returned: dict[str, LeaseRecord] = {}
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
        self._late = LateLeases(
            find=self._bound_by_id,
            give_back=self._give_back_late,
            interval=late_poll,
            label=self._label,
            thread_name=f"address-service-{spec.name}-late",
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

    def acquire(
        self, owner: str, *, family: int, wanted: netaddr.IPAddress | None = None, uid: str | None = None
    ) -> netaddr.IPAddress:
        """POST ``/v1/ip`` for *owner*; at most :data:`ATTEMPTS` tries, a rejected lease is given back.

        *uid* (the Service's ``metadata.uid``) goes to servers with an
        idempotent POST, which then tell a recreated Service from the old one;
        IPv6 needs a server that lists the ``family`` extension.
        """
        if family not in self.spec.families():
            raise PoolExhaustedError(self._where(f"the pool's cidrs have no IPv{family} addresses"))
        if wanted is not None:
            if not self.spec.contains(wanted):
                raise AddressNotAllowedError(self._where(f'"{wanted}" is not allowed in this pool'))
            with self._lock:
                if owner in self._owners.get(wanted, ()):
                    return wanted  # already the owner's: nothing to ask the service
        self._retry_pending_of(owner)
        extensions = self.extensions()
        if family != 4 and "family" not in extensions:
            raise PoolExhaustedError(
                self._where(
                    f'the service hands out IPv4 addresses only (GET /v1/config lists no "family"), not IPv{family}'
                )
            )
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
        request = _Request(owner=owner, family=family, wanted=wanted, uid=uid or "")
        try:
            return self._acquire(request, extensions)
        finally:
            with self._lock:
                self._inflight[owner] -= 1
                if not self._inflight[owner]:
                    del self._inflight[owner]

    def _acquire(self, request: _Request, extensions: frozenset[str]) -> netaddr.IPAddress:
        problems: list[str] = []
        try:
            for attempt in self._retrying(_Answer.retryable):
                with attempt:
                    record = self._attempt(request, extensions, problems)
        except _Answer as last:
            detail = problems[0] if len(problems) == 1 else f"{len(problems)} problems: " + "; ".join(problems)
            raise last.kind(detail) from None
        return self._take(request.owner, record)

    def _attempt(self, request: _Request, extensions: frozenset[str], problems: list[str]) -> LeaseRecord:
        """One POST; after a lost answer, the lease it may have made. Problems are appended to *problems*."""
        owner = request.owner
        try:
            return self._post(request, extensions)
        except _Answer as answer:
            problems.append(str(answer))
            if not answer.ambiguous or "idempotent-post" in extensions:
                raise
            # The server may have made a lease: find it before any repeat, or do not repeat.
            try:
                found = self._find_lease(owner, request.family)
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

    def _post(self, request: _Request, extensions: frozenset[str]) -> LeaseRecord:
        """One POST; a usable lease or an :class:`_Answer` saying why not."""
        owner, wanted = request.owner, request.wanted
        # DHCPManager gets exactly the fork's body; our extensions only where the server lists them.
        body: dict[str, Any] = {"service": owner}
        if wanted is not None:
            body["ip"] = str(wanted)
        if request.uid and "idempotent-post" in extensions:
            body["uid"] = request.uid
        if request.family != 4:
            body["family"] = request.family
        what = f'POST /v1/ip for "{owner}"' + (f" (IPv{request.family})" if request.family != 4 else "")
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
        return self._judge(request, resp, what)

    def _judge(self, request: _Request, resp: httpx.Response, what: str) -> LeaseRecord:
        """The usable lease in a POST's answer, or an :class:`_Answer`; an unusable lease is given back."""
        owner = request.owner
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
        ip = _parse_ip(data.get("ip"), request.family)
        problem = self._problem(code, data, ip, request)
        if ip is None:
            lease_id = data.get("id")
            if data.get("status") == "timeout" and isinstance(lease_id, str) and lease_id:
                # DHCPManager deleted the allocation, but its controller often binds it later all the same.
                self._late.watch(lease_id, owner, wait=self.late_wait)
            raise _failure(code, data.get("status"), f"{head}: {problem}; {snippet}", leased=False)
        record = LeaseRecord(
            ip=ip,
            service=owner,
            id=str(data.get("id") or ""),
            mac=str(data.get("mac") or ""),
            expires=str(data.get("expires") or ""),
            obtained=time.monotonic(),
        )
        if not problem:
            return record
        if self._holds(record.ip):  # a confused server: giving it back would release another's address
            problem += f"; {record.ip} is held here by another service, so it is not given back"
        else:
            self._remember_returned(record)
            self._give_back(record)
            problem += f"; gave {record.ip} back"
        raise _failure(code, data.get("status"), f"{head}: {problem}; {snippet}", leased=True)

    def _problem(self, code: int, data: Mapping[str, Any], ip: netaddr.IPAddress | None, request: _Request) -> str:
        """Why the answer *data* is no usable lease, or "" when it is one."""
        wanted = request.wanted
        status = data.get("status")
        message = f" ({data['message']})" if isinstance(data.get("message"), str) and data["message"] else ""
        if not 200 <= code < 300:
            return f'status "{status}"{message}'
        if status != "success":
            said = f'status "{status}"' if isinstance(status, str) else 'no "status"'
            return f'{said} instead of "success"{message}'
        if ip is None:
            return f'"ip" {data.get("ip")!r} is not an IPv{request.family} address'
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

    def _find_lease(self, owner: str, family: int) -> LeaseRecord | None:
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
                ip = entry.ip
                mine = entry.service == owner and not entry.lost
                if mine and ip is not None and ip.version == family and ip not in self._owners:
                    found.append(entry)
        usable = [e for e in found if self.spec.contains(e.ip)]  # type: ignore[arg-type]
        for extra in [e for e in found if e not in usable[:1]]:
            record = LeaseRecord(ip=extra.ip, service=owner, id=extra.id)  # type: ignore[arg-type]
            if not self.spec.contains(record.ip):
                self._remember_returned(record)
            self._give_back(record)
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
            log.warning("%s", self._where(f"DELETE of {record.ip} not confirmed ({exc}); retrying in the background"))
            self._releases.add(record, error=str(exc), attempts=ATTEMPTS)
            return
        self._releases.discard(record.ip)

    def _remember_returned(self, record: LeaseRecord) -> None:
        """An unusable lease given back: reconciliation releases it should it linger (it is in no pool's cidrs)."""
        with self._lock:
            self._returned[record.id or str(record.ip)] = record
            while len(self._returned) > RETURNED_MAX:
                del self._returned[next(iter(self._returned))]

    def _delete(self, record: LeaseRecord) -> None:
        """One DELETE; :class:`ReleaseError` unless done.

        404 (our server) means unknown: done. DHCPManager's ``error`` with an
        empty id means unknown *or not indexed yet*: done only once
        ``/v1/status`` no longer lists the lease (by id, else by address and
        service), or, for a server without ``/v1/status``, once
        :data:`INDEX_GRACE` has passed since the lease was obtained.
        """
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
        if code == 404:
            return  # our server: already released, or never known
        if code == 200 and status == "error" and isinstance(data, dict) and not data.get("id"):
            listed = self._still_listed(record)
            if listed:
                raise ReleaseError(
                    'status "error" with no id, but GET /v1/status still lists the lease (its index lags)'
                )
            if listed is None and time.monotonic() - record.obtained < INDEX_GRACE:
                raise ReleaseError(
                    'status "error" with no id, and no /v1/status to tell a lagging index from a gone lease'
                )
            return  # really unknown: already released, or never known
        if code == 409:
            log.warning(
                "%s", self._where(f"DELETE of {record.ip}: the service says another owner holds it now; not released")
            )
            return
        raise ReleaseError(f'HTTP {code}: body "{_snippet(resp.text)}"')

    def _still_listed(self, record: LeaseRecord) -> bool | None:
        """Whether ``/v1/status`` lists *record*'s lease (by id; else by address, with its service); None: no status."""
        try:
            entries = self._status()
        except SourceUnavailableError as exc:
            raise ReleaseError(f"cannot confirm the release through GET /v1/status: {exc}") from None
        if entries is None:
            return None
        if record.id:
            return any(e.id == record.id for e in entries)
        return any(e.ip == record.ip and (not record.service or e.service in ("", record.service)) for e in entries)

    def _bound_by_id(self) -> dict[str, LeaseRecord] | None:
        """For :class:`LateLeases`: every bound allocation of ``/v1/status`` by id; None when there is no status."""
        entries = self._status()
        if entries is None:
            return None
        return {
            e.id: LeaseRecord(ip=e.ip, service=e.service, id=e.id, mac=e.mac)
            for e in entries
            if e.id and e.ip is not None and not e.lost
        }

    def _give_back_late(self, record: LeaseRecord) -> None:
        """A lease bound after its POST had answered "timeout": nobody uses it, so it goes back."""
        if self._holds(record.ip):
            log.warning("%s", self._where(f"late lease {record.ip} (id {record.id}) is held here; not given back"))
            return
        log.info("%s", self._where(f"releasing {record.ip}: bound for {record.service} after its POST timed out"))
        if not self.spec.contains(record.ip):
            self._remember_returned(record)
        self._give_back(record)

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

    def late_leases(self) -> list[str]:
        """Allocation ids answered "timeout" that are still looked for in ``/v1/status``."""
        return self._late.pending()

    def flush_late(self, timeout: float) -> bool:
        """Wait until no late binding is looked for (tests); True if none is left."""
        return self._late.flush(timeout)

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
        released += self._release_returned(allocations, held)
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

    def _release_returned(
        self, allocations: list[_Entry], held: Mapping[netaddr.IPAddress, tuple[str, ...]]
    ) -> list[netaddr.IPAddress]:
        """Release leases we gave back as unusable (outside cidrs ...) that the service still lists."""
        with self._lock:
            returned = dict(self._returned)
            ours = set(self._owners)
        listed = {e.id or str(e.ip): e for e in allocations if e.ip is not None}
        released: list[netaddr.IPAddress] = []
        for key in returned:
            entry = listed.get(key)
            if entry is None:
                with self._lock:
                    self._returned.pop(key, None)  # gone: done
                continue
            if entry.ip in held or entry.ip in ours or entry.ip is None or self.spec.contains(entry.ip):
                continue  # in use here, or an ordinary orphan (handled above)
            try:
                self._delete(LeaseRecord(ip=entry.ip, service=entry.service, id=entry.id))
            except ReleaseError as exc:
                log.warning("%s", self._where(f"could not release {entry.ip}, given back earlier: {exc}"))
                continue
            with self._lock:
                self._returned.pop(key, None)
            released.append(entry.ip)
            log.info("%s", self._where(f"released {entry.ip} again: given back as unusable, still leased"))
        return released

    def close(self) -> None:
        """Stop the background threads and close connections (pending DELETEs are logged, not sent)."""
        self._late.close()
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


@attrs.frozen(kw_only=True)
class _Request:
    """One allocation as asked of the service."""

    owner: str
    family: int
    wanted: netaddr.IPAddress | None
    uid: str


def _parse_ip(text: object, family: int | None = None) -> netaddr.IPAddress | None:
    """An address of *family* (any when None), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        ip = netaddr.IPAddress(text.strip(), flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None
    return ip if family is None or ip.version == family else None


def _entries(data: Any) -> list[_Entry]:
    """DHCPManager's status (``Allocations`` with ``Lease.FixedAddress``), plus our ``Service``/``Lost``."""
    out = []
    for item in data.get("Allocations") or ():
        lease = item.get("Lease") or {}
        service = item.get("Service") or service_of_hostname(str(item.get("Hostname") or ""))
        state = item.get("State")
        out.append(
            _Entry(
                ip=_parse_ip(lease.get("FixedAddress")),
                service=str(service),
                id=str(item.get("ID") or ""),
                mac=str(item.get("MAC") or (item.get("Interface") or {}).get("HardwareAddr") or ""),
                lost=bool(item.get("Lost")) or state == 2,
            )
        )
    return out
