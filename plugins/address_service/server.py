"""The bundled address service: an HTTP server that leases addresses to MetalLB pools.

This is ``metallb address-service``. It speaks DHCPManager's v1 protocol, so the kramergroup fork's client works
unchanged, plus optional extensions that our client uses when
``GET /v1/config`` lists them: idempotent ``POST /v1/ip`` per service (and
``uid``), a requested ``ip``, ``id``/``mac``/``expires`` in answers, owner
checked and idempotent ``DELETE``, meaningful HTTP codes (the body's
``status`` stays), and ``X-Auth-Token`` checking. Backends are plugins
(``metallb_make_backend``); ``memory`` and ``dhcp`` are built in.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import json
import logging
import os
import signal
import ssl
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import attrs
import netaddr
from metallb.plugins.address_service.api import (
    SERVICE_PATTERN,
    AddressTakenError,
    Backend,
    BackendError,
    Lease,
    LeaseRequest,
    LeaseTimeoutError,
    NoAddressError,
    derive_mac,
    normalise_mac,
    status_hostname,
)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "EXTENSIONS",
    "AddressService",
    "ApiError",
    "HttpServer",
    "add_arguments",
    "make_http_server",
    "run",
]

log = logging.getLogger(__name__)

#: What ``GET /v1/config`` advertises; clients use an extension only when listed.
EXTENSIONS = ("idempotent-post", "requested-ip", "owner-checked-delete", "lease-details", "status-service")
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as DHCPManager prints an unset time
_MAX_BODY = 64 * 1024


class ApiError(Exception):
    """An answer other than success: HTTP code plus the v1 body."""

    def __init__(self, code: int, body: Mapping[str, Any]) -> None:
        super().__init__(body.get("message", body.get("status", "")))
        self.code = code
        self.body = dict(body)


def _rfc3339(ts: float | None) -> str:
    if ts is None:
        return _ZERO_TIME
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _netmask_b64(netmask: str) -> str | None:
    """Go's IPMask is a byte slice: JSON carries it as base64 ("////AA==" for /24)."""
    if not netmask:
        return None
    return base64.b64encode(netaddr.IPAddress(netmask).packed).decode()


# -- metrics -------------------------------------------------------------------------------


class _Metrics:
    def __init__(self, registry: CollectorRegistry, service: AddressService) -> None:
        prefix = "metallb_address_service"
        self.requests = Counter(
            f"{prefix}_requests", "HTTP requests answered", ["method", "path", "code"], registry=registry
        )
        self.latency = Histogram(
            f"{prefix}_request_seconds",
            "HTTP request latency",
            ["method", "path"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 15),
            registry=registry,
        )
        self.lease_events = Counter(f"{prefix}_lease_events", "Lease changes", ["event"], registry=registry)
        leases = Gauge(f"{prefix}_leases", "Leases held", ["state"], registry=registry)
        leases.labels("bound").set_function(lambda: service.count(lost=False))
        leases.labels("lost").set_function(lambda: service.count(lost=True))
        macs = Gauge(f"{prefix}_available_macs", "MACs in the pool, free", registry=registry)
        macs.set_function(lambda: len(service.available_macs()))


# -- the service (no HTTP) -----------------------------------------------------------------


class AddressService:
    """The allocation table over a backend: idempotent obtain, owner-checked release, MACs, state.

    Args:
        backend: where addresses come from.
        state_file: JSON file rewritten atomically on every change, read at
            :meth:`start`; "" keeps state in memory only.
        macs: MACs put in the pool at start (kept with those in the state file).
        derive_macs: when the pool is empty, derive a locally administered MAC
            from the service name (and uid).
        request_timeout: how long ``POST /v1/ip`` waits for a lease (DHCPManager: 10 s).
        auth_token: required ``X-Auth-Token`` on ``/v1/*``; "" disables the check.
        registry: Prometheus registry for the metrics (tests pass their own).
    """

    def __init__(
        self,
        *,
        backend: Backend,
        state_file: str = "",
        macs: Sequence[str] = (),
        derive_macs: bool = False,
        request_timeout: float = 10.0,
        auth_token: str = "",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.backend = backend
        self.state_file = state_file
        self.derive_macs = derive_macs
        self.request_timeout = request_timeout
        self.auth_token = auth_token
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.RLock()
        self._serials: dict[str, list[Any]] = {}  # service -> [lock, users]
        self._leases: dict[str, Lease] = {}
        self._by_ip: dict[str, str] = {}
        self._by_service: dict[str, list[str]] = {}
        self._macs: set[str] = {normalise_mac(m) for m in macs}
        self._retired: set[str] = set()
        self._reserved: set[str] = set()  # pool MACs taken by an obtain still in progress
        self.metrics = _Metrics(self.registry, self)
        self.started = False

    def __repr__(self) -> str:
        return f"<AddressService(backend={self.backend.kind!r}, leases={len(self._leases)})>"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Load the state file, resume its leases, start the backend."""
        if self.state_file and os.path.exists(self.state_file):
            with open(self.state_file, encoding="utf-8") as fh:
                data = json.load(fh)
            self._macs |= set(data.get("macs", ()))
            self._retired = set(data.get("retired", ()))
            for raw in data.get("leases", ()):
                self._index(Lease.from_json(raw))
            log.info("state file %s: %d leases to resume", self.state_file, len(self._leases))
        self._macs -= {lease.mac for lease in self._leases.values()}
        self.backend.start(self._lease_changed)
        for lease in list(self._leases.values()):
            if not lease.lost:
                self.backend.resume(lease)
        self._save()
        self.started = True

    def close(self) -> None:
        """Stop the backend and save the state. Leases stay (they resume at the next start)."""
        self.backend.close()
        with self._lock:
            self._save()

    # -- bookkeeping (lock held) -----------------------------------------------------------

    def _index(self, lease: Lease) -> None:
        old = self._leases.get(lease.id)
        if old is not None and self._by_ip.get(old.ip) == old.id:
            del self._by_ip[old.ip]
        self._leases[lease.id] = lease
        self._by_ip[lease.ip] = lease.id
        ids = self._by_service.setdefault(lease.service, [])
        if lease.id not in ids:
            ids.append(lease.id)

    def _unindex(self, lease: Lease) -> None:
        self._leases.pop(lease.id, None)
        if self._by_ip.get(lease.ip) == lease.id:
            del self._by_ip[lease.ip]
        ids = self._by_service.get(lease.service, [])
        if lease.id in ids:
            ids.remove(lease.id)
        if not ids:
            self._by_service.pop(lease.service, None)
        if lease.mac_from_pool:
            if lease.mac in self._retired:
                self._retired.discard(lease.mac)
            else:
                self._macs.add(lease.mac)

    def _save(self) -> None:
        if not self.state_file:
            return
        data = {
            "version": 1,
            "leases": [lease.to_json() for lease in self._leases.values()],
            "macs": sorted(self._macs | self._reserved),
            "retired": sorted(self._retired),
        }
        folder = os.path.dirname(os.path.abspath(self.state_file))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".address-service-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_file)  # atomic: a crash leaves the old or the new file
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _lease_changed(self, lease: Lease) -> None:
        """Backend callback: a renewal or a loss."""
        with self._lock:
            old = self._leases.get(lease.id)
            if old is None:
                return  # released meanwhile
            lease = attrs.evolve(lease, mac_from_pool=old.mac_from_pool)  # the backend does not track it
            self._index(lease)
            self._save()
        self.metrics.lease_events.labels("lost" if lease.lost else "renewed").inc()
        if lease.lost:
            log.warning(
                "lease %s (%s for %s) is lost; the client must allocate again", lease.id, lease.ip, lease.service
            )
        else:
            log.info(
                "lease %s (%s for %s) renewed until %s", lease.id, lease.ip, lease.service, _rfc3339(lease.expires)
            )

    @contextlib.contextmanager
    def _serial(self, service: str) -> Iterator[None]:
        """One obtain or release per service at a time; other services never wait."""
        with self._lock:
            entry = self._serials.setdefault(service, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._serials[service]

    def _take_mac(self, service: str, uid: str) -> tuple[str, bool]:
        if self.backend.needs_mac and self._macs:
            mac = min(self._macs)  # DHCPManager's order: lexicographically first
            self._macs.discard(mac)
            return mac, True
        if self.derive_macs:
            used = {lease.mac for lease in self._leases.values()}
            salt = 0
            while (mac := derive_mac(service, uid, salt)) in used or mac in self._macs:
                salt += 1
            return mac, False
        if self.backend.needs_mac:
            raise NoAddressError(
                "no MAC available for a new lease: register some with POST /v1/mac, "
                "or start the server with --derive-macs"
            )
        return "", False

    # -- the API ------------------------------------------------------------------------

    def count(self, *, lost: bool) -> int:
        """Leases held, bound or lost."""
        with self._lock:
            return sum(1 for lease in self._leases.values() if lease.lost == lost)

    def available_macs(self) -> list[str]:
        """Free MACs of the pool, sorted."""
        with self._lock:
            return sorted(self._macs)

    def leases(self) -> list[Lease]:
        """Every lease, oldest first."""
        with self._lock:
            return list(self._leases.values())

    def obtain(self, service: str, *, uid: str = "", wanted: str = "") -> tuple[Lease, bool]:
        """The lease of *service* (and *uid*), or a new one; returns ``(lease, created)``."""
        with self._serial(service):
            stale: list[Lease] = []
            with self._lock:
                for lease_id in self._by_service.get(service, ()):
                    lease = self._leases[lease_id]
                    if uid and lease.uid and lease.uid != uid:
                        continue  # an older Service of the same name; reconciliation frees it
                    if lease.lost:
                        stale.append(lease)
                        continue
                    if wanted and wanted != lease.ip:
                        continue  # moving to another address: the old one is released after the move
                    return lease, False
                for lease in stale:
                    self._unindex(lease)
                if wanted and wanted in self._by_ip:
                    raise ApiError(409, _ip_body("", "", "error", f"{wanted} is already leased"))
                mac, from_pool = self._take_mac(service, uid)
                if from_pool:
                    self._reserved.add(mac)  # still saved as free: a crash now must not lose it
                self._save()
            for lease in stale:
                self._backend_release(lease)
            request = LeaseRequest(id=str(uuid.uuid4()), service=service, uid=uid, mac=mac, wanted=wanted)
            try:
                lease = self.backend.obtain(request, timeout=self.request_timeout)
            except BaseException:
                with self._lock:
                    self._reserved.discard(mac)
                    if from_pool:
                        self._macs.add(mac)
                raise
            lease = attrs.evolve(lease, mac_from_pool=from_pool)
            with self._lock:
                self._reserved.discard(mac)
                if lease.ip in self._by_ip:
                    clash = self._leases[self._by_ip[lease.ip]]
                    duplicate = lease
                else:
                    self._index(lease)
                    self._save()
                    duplicate = None
            if duplicate is not None:
                self._backend_release(duplicate)
                if from_pool:
                    with self._lock:
                        self._macs.add(mac)
                raise NoAddressError(f"the backend handed out {duplicate.ip}, which {clash.service} already holds")
            log.info("leased %s to %s (id %s, mac %s)", lease.ip, service, lease.id, lease.mac or "-")
            return lease, True

    def release(self, ip: str, *, service: str = "", lease_id: str = "") -> Lease:
        """Release the lease holding *ip*; ApiError 404 when none, 409 when owned by another."""
        with self._lock:
            found = self._by_ip.get(ip)
            lease = self._leases.get(found) if found else None
        if lease is None:
            raise ApiError(404, _ip_body(ip, "", "error", f"{ip} is not leased (already released?)"))
        with self._serial(lease.service):
            with self._lock:
                current = self._leases.get(lease.id)
                if current is None or self._by_ip.get(ip) != lease.id:
                    raise ApiError(404, _ip_body(ip, "", "error", f"{ip} is not leased (already released?)"))
                if service and current.service != service:
                    raise ApiError(409, _ip_body(ip, "", "error", f"{ip} is held by another service, not {service}"))
                if lease_id and current.id != lease_id:
                    raise ApiError(
                        409, _ip_body(ip, "", "error", f"{ip} is held under another lease id, not {lease_id}")
                    )
                self._unindex(current)
                self._save()
            self._backend_release(current)
        log.info("released %s of %s (id %s)", ip, current.service, current.id)
        return current

    def _backend_release(self, lease: Lease) -> None:
        try:
            self.backend.release(lease)
        except Exception:
            log.exception("backend failed to release %s", lease.ip)

    def add_macs(self, entries: Sequence[object]) -> tuple[list[str], dict[str, str]]:
        """Add MACs to the pool; returns (added, rejected entry -> reason)."""
        added: list[str] = []
        rejected: dict[str, str] = {}
        with self._lock:
            in_use = {lease.mac for lease in self._leases.values()}
            for entry in entries:
                text = str(entry)
                try:
                    mac = normalise_mac(text)
                except ValueError as exc:
                    rejected[text] = str(exc)
                    continue
                if mac in in_use:
                    rejected[text] = "in use by a lease"
                    continue
                self._macs.add(mac)
                self._retired.discard(mac)
                added.append(mac)
            self._save()
        return added, rejected

    def remove_macs(self, entries: Sequence[object]) -> dict[str, str]:
        """Remove MACs from the pool; in-use ones retire when their lease ends. Returns unprocessed."""
        unprocessed: dict[str, str] = {}
        with self._lock:
            in_use = {lease.mac for lease in self._leases.values() if lease.mac_from_pool}
            for entry in entries:
                text = str(entry)
                try:
                    mac = normalise_mac(text)
                except ValueError as exc:
                    unprocessed[text] = str(exc)
                    continue
                if mac in in_use:
                    self._retired.add(mac)
                    unprocessed[text] = "in use: removed from the pool when its lease ends"
                self._macs.discard(mac)
            self._save()
        return unprocessed

    def status(self) -> dict[str, Any]:
        """``GET /v1/status`` in DHCPManager's shape, plus ``Service``/``UID``/``MAC``/``Lost``."""
        with self._lock:
            leases = list(self._leases.values())
            macs = sorted(self._macs)
        return {"Allocations": [_allocation(lease) for lease in leases] or None, "AvailableMACs": macs or None}

    def config(self) -> dict[str, Any]:
        """``GET /v1/config``: the historical ``cidrs`` plus the extensions we speak."""
        return {"cidrs": list(self.backend.cidrs()), "backend": self.backend.kind, "extensions": list(EXTENSIONS)}


def _ip_body(ip: str, lease_id: str, status: str, message: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"ip": ip, "id": lease_id, "status": status}
    if message:
        body["message"] = message
    return body


def _lease_body(lease: Lease) -> dict[str, Any]:
    body = _ip_body(lease.ip, lease.id, "success")
    body["service"] = lease.service
    if lease.mac:
        body["mac"] = lease.mac
    if lease.expires is not None:
        body["expires"] = _rfc3339(lease.expires)
    return body


def _allocation(lease: Lease) -> dict[str, Any]:
    return {
        "Interface": {"Index": 0, "MTU": 0, "Name": lease.interface, "HardwareAddr": lease.mac, "Flags": 0},
        "ID": lease.id,
        "Lease": {
            "ServerID": lease.server_id,
            "FixedAddress": lease.ip,
            "Netmask": _netmask_b64(lease.netmask),
            "NextServer": "",
            "Broadcast": "",
            "Router": list(lease.routers) or None,
            "DNS": list(lease.dns) or None,
            "TimeServer": None,
            "DomainName": "",
            "MTU": 0,
            "Bound": _rfc3339(lease.bound),
            "Renew": _rfc3339(lease.renew),
            "Rebind": _rfc3339(lease.rebind),
            "Expire": _rfc3339(lease.expires),
        },
        "Hostname": status_hostname(lease.service),
        # DHCPManager's states: 1 Bound; 2 "Stale" fits a lease we could not renew.
        "State": 2 if lease.lost else 1,
        "Service": lease.service,
        "UID": lease.uid,
        "MAC": lease.mac,
        "ClientID": lease.client_id,
        "Lost": lease.lost,
    }


# -- HTTP ----------------------------------------------------------------------------------

Route = Callable[[AddressService, Any], tuple[int, Any]]


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise ApiError(400, {"status": "error", "message": "the body is not JSON"}) from None


def _post_ip(service: AddressService, raw: bytes) -> tuple[int, Any]:
    data = _parse_json(raw)
    if not isinstance(data, dict):
        raise ApiError(
            400, _ip_body("", "", "error", 'the body must be a JSON object like {"service": "namespace/name"}')
        )
    name = data.get("service")
    if not isinstance(name, str) or not SERVICE_PATTERN.match(name):
        raise ApiError(400, _ip_body("", "", "error", f'"service" must be "namespace/name", got {name!r}'))
    uid = data.get("uid") or ""
    wanted = data.get("ip") or ""
    if not isinstance(uid, str) or not isinstance(wanted, str):
        raise ApiError(400, _ip_body("", "", "error", '"uid" and "ip" must be strings'))
    if wanted:
        try:
            wanted = str(netaddr.IPAddress(wanted, 4))
        except (netaddr.AddrFormatError, ValueError):
            raise ApiError(400, _ip_body("", "", "error", f'"ip" must be an IPv4 address, got {wanted!r}')) from None
    try:
        lease, created = service.obtain(name, uid=uid, wanted=wanted)
    except LeaseTimeoutError as exc:
        raise ApiError(504, _ip_body("", "", "timeout", str(exc))) from None
    except AddressTakenError as exc:
        raise ApiError(409, _ip_body("", "", "error", str(exc))) from None
    except BackendError as exc:
        raise ApiError(503, _ip_body("", "", "error", str(exc))) from None
    return (201 if created else 200), _lease_body(lease)


def _delete_ip(service: AddressService, raw: bytes) -> tuple[int, Any]:
    data = _parse_json(raw)
    data = data if isinstance(data, dict) else {}
    text = data.get("ip")
    try:
        ip = str(netaddr.IPAddress(str(text).strip(), 4)) if isinstance(text, str) else ""
    except (netaddr.AddrFormatError, ValueError):
        ip = ""
    if not ip:
        raise ApiError(400, _ip_body("invalid", "", "error", '"ip" must be an IPv4 address'))
    owner, lease_id = data.get("service"), data.get("id")
    owner = owner if isinstance(owner, str) else ""
    lease_id = lease_id if isinstance(lease_id, str) else ""
    lease = service.release(ip, service=owner, lease_id=lease_id)
    return 200, _ip_body(ip, lease.id, "success")


def _mac_list(raw: bytes) -> list[Any]:
    data = _parse_json(raw)
    if isinstance(data, dict):
        for key, value in data.items():
            if key.lower() == "macs" and isinstance(value, list):  # Go matches the key without case
                return value
    raise ApiError(400, {"Status": "error", "message": 'the body must be {"macs": ["02:00:00:00:00:01", ...]}'})


def _post_mac(service: AddressService, raw: bytes) -> tuple[int, Any]:
    added, rejected = service.add_macs(_mac_list(raw))
    body = {"Status": "error" if rejected else "success", "Rejected": list(rejected) or None, "Reasons": rejected}
    return (400 if rejected and not added else 200), body


def _delete_mac(service: AddressService, raw: bytes) -> tuple[int, Any]:
    unprocessed = service.remove_macs(_mac_list(raw))
    return 200, {
        "Status": "error" if unprocessed else "success",
        "Unprocessed": list(unprocessed) or None,
        "Reasons": unprocessed,
    }


ROUTES: dict[str, dict[str, Route]] = {
    "/v1/ip": {"POST": _post_ip, "DELETE": _delete_ip},
    "/v1/mac": {"POST": _post_mac, "DELETE": _delete_mac},
    "/v1/status": {"GET": lambda s, _raw: (200, s.status())},
    "/v1/config": {"GET": lambda s, _raw: (200, s.config())},
    "/healthz": {"GET": lambda s, _raw: (200, {"status": "ok"})},
    "/readyz": {"GET": lambda s, _raw: (200 if s.started else 503, {"status": "ok" if s.started else "starting"})},
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection per client thread
    disable_nagle_algorithm = True  # else Nagle and delayed ACK add ~40 ms per answer
    wbufsize = 64 * 1024
    server: HttpServer
    server_version = "metallb-address-service/1"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        service = self.server.service
        routes = ROUTES.get(path)
        label = path if routes is not None or path == "/metrics" else "other"
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(400, {"status": "error", "message": "bad Content-Length header"})
            return
        if length > _MAX_BODY:
            self.close_connection = True
            self._send(413, {"status": "error", "message": "body too large"})
            return
        raw = self.rfile.read(length) if length else b""
        if path == "/metrics" and method == "GET":
            code = 200
            self._send_raw(200, generate_latest(service.registry), CONTENT_TYPE_LATEST)
        elif routes is None:
            code = 404
            self._send_raw(404, b"404 page not found\n", "text/plain; charset=utf-8")  # gorilla/mux's answer
        elif method not in routes:
            code = 405
            self._send_raw(405, b"", "")
        elif path.startswith("/v1/") and not self._authorised():
            code = 401
            self._send(401, {"status": "unauthorized", "message": "missing or wrong X-Auth-Token"})
        else:
            try:
                code, body = routes[method](service, raw)
            except ApiError as exc:
                code, body = exc.code, exc.body
            except Exception as exc:
                log.exception("%s %s failed", method, path)
                code, body = 500, {"status": "error", "message": f"internal error: {type(exc).__name__}"}
            self._send(code, body)
        service.metrics.requests.labels(method, label, str(code)).inc()
        service.metrics.latency.labels(method, label).observe(time.monotonic() - started)

    def _authorised(self) -> bool:
        token = self.server.service.auth_token
        if not token:
            return True
        given = self.headers.get("X-Auth-Token") or ""
        return hmac.compare_digest(given.encode(), token.encode())

    def _send(self, code: int, body: Any) -> None:
        # DHCPManager writes Go's encoder output: JSON plus a newline, no charset.
        self._send_raw(code, json.dumps(body).encode() + b"\n", "application/json")

    def _send_raw(self, code: int, payload: bytes, content_type: str) -> None:
        self.send_response(code)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


class HttpServer(ThreadingHTTPServer):
    """A threading HTTP(S) server bound to one :class:`AddressService`."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], service: AddressService, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.service = service
        super().__init__(address, _Handler)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if ssl_context is not None else "http"

    @property
    def url(self) -> str:
        """Where clients reach it, e.g. ``http://127.0.0.1:8000``."""
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"{self.scheme}://{name}:{port}"

    def start_thread(self) -> threading.Thread:
        """Serve in a daemon thread (tests, benchmarks); stop with ``shutdown()`` then ``server_close()``."""
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="address-service-http"
        )
        thread.start()
        return thread


def make_http_server(
    service: AddressService, *, host: str = "127.0.0.1", port: int = 0, tls_cert: str = "", tls_key: str = ""
) -> HttpServer:
    """Bind an :class:`HttpServer` (port 0 picks a free port; see ``.url``)."""
    context = None
    if tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key or None)
    return HttpServer((host, port), service, ssl_context=context)


# -- command line ----------------------------------------------------------------------------

EPILOG = """\
examples:
  # addresses from fixed ranges, for tests and small sites
  metallb address-service --backend memory --cidr 192.0.2.0/24 --state-file /var/lib/metallb/as.json

  # real DHCP leases on eth1, one derived MAC per service, token from a file
  metallb address-service --backend dhcp --interface eth1 --cidr 192.0.2.0/24 \\
      --derive-macs --state-file /var/lib/metallb/as.json --auth-token-file /etc/metallb/token \\
      --listen 0.0.0.0:8000

  # register MACs for leases (networks that allow only known MACs)
  curl -X POST -d '{"macs": ["02:00:5e:10:00:01"]}' http://127.0.0.1:8000/v1/mac

  # the token may also come from METALLB_ADDRESS_SERVICE_TOKEN
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``metallb address-service``."""
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8000",
        metavar="HOST:PORT",
        help="address to serve on (default: 127.0.0.1:8000; port 0 picks one)",
    )
    parser.add_argument(
        "--backend",
        default="memory",
        help="where addresses come from: memory, dhcp, or a plugin's backend (default: memory)",
    )
    parser.add_argument(
        "--cidr",
        action="append",
        default=[],
        help="network addresses come from (repeat; memory: required; dhcp: reported by /v1/config)",
    )
    parser.add_argument(
        "--state-file",
        default="",
        metavar="PATH",
        help="JSON file holding leases and MACs across restarts (put it on a volume)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long POST /v1/ip waits for a lease (default: 10)",
    )
    parser.add_argument(
        "--auth-token-file",
        default="",
        metavar="PATH",
        help="require this X-Auth-Token on /v1/* (else METALLB_ADDRESS_SERVICE_TOKEN, else none)",
    )
    parser.add_argument(
        "--tls-cert", default="", metavar="PATH", help="serve HTTPS with this certificate (PEM, chain included)"
    )
    parser.add_argument("--tls-key", default="", metavar="PATH", help="private key of --tls-cert")
    parser.add_argument("--mac", action="append", default=[], help="put this MAC in the pool at start (repeat)")
    parser.add_argument(
        "--derive-macs",
        action="store_true",
        help="when the MAC pool is empty, derive a locally administered MAC from each service name",
    )
    dhcp = parser.add_argument_group("dhcp backend")
    dhcp.add_argument("--interface", default="", help="interface to send DHCP on (required for dhcp)")
    dhcp.add_argument(
        "--netns",
        default="",
        help="open the DHCP socket in this network namespace (/run/netns/NAME); HTTP stays where the process runs",
    )
    dhcp.add_argument(
        "--offer-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="wait for a DHCPOFFER (default: 5, above the 3 s ping check of servers)",
    )
    dhcp.add_argument(
        "--renew-after",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="renew this long after each ACK instead of at T1 (tests; default: T1)",
    )


def _token(args: argparse.Namespace) -> str:
    if args.auth_token_file:
        with open(args.auth_token_file, encoding="utf-8") as fh:
            return fh.read().strip()
    return os.environ.get("METALLB_ADDRESS_SERVICE_TOKEN", "").strip()


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status."""
    from metallb.allocator import get_plugin_manager

    host, _, port_text = args.listen.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        print(f"--listen {args.listen!r}: write HOST:PORT", file=sys.stderr)
        return 2
    options = {
        "cidrs": list(args.cidr),
        "interface": args.interface,
        "netns": args.netns,
        "offer_timeout": args.offer_timeout,
        "renew_after": args.renew_after or None,
    }
    try:
        backend = get_plugin_manager().hook.metallb_make_backend(kind=args.backend, options=options)
    except ValueError as exc:
        print(f"backend {args.backend!r}: {exc}", file=sys.stderr)
        return 2
    if backend is None:
        print(f"unknown backend {args.backend!r}: built in are memory and dhcp; plugins may add more", file=sys.stderr)
        return 2
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    service = AddressService(
        backend=backend,
        registry=registry,
        state_file=args.state_file,
        macs=args.mac,
        derive_macs=args.derive_macs,
        request_timeout=args.request_timeout,
        auth_token=_token(args),
    )
    try:
        service.start()
    except OSError as exc:  # typically: no CAP_NET_RAW, or no such interface or namespace
        print(f"cannot start the {backend.kind} backend: {exc}", file=sys.stderr)
        return 1
    httpd = make_http_server(
        service, host=host.strip("[]") or "127.0.0.1", port=port, tls_cert=args.tls_cert, tls_key=args.tls_key
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    httpd.start_thread()
    log.info("address service (%s backend) listening on %s", backend.kind, httpd.url)
    print(f"listening on {httpd.url}", flush=True)  # readiness line for scripts and tests
    while not stop.wait(1.0):
        pass
    log.info("stopping: leases stay and resume at the next start")
    httpd.shutdown()
    httpd.server_close()
    service.close()
    return 0


def _standalone_logging(fmt: str, level: str) -> None:
    """Logging when run as ``python -m`` (the ``metallb`` CLI configures its own)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":

        class _Json(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                return json.dumps(
                    {
                        "ts": record.created,
                        "level": record.levelname.lower(),
                        "logger": record.name,
                        "msg": record.getMessage(),
                    }
                )

        handler.setFormatter(_Json())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(
        prog="metallb address-service", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    _parser.add_argument("--log-format", choices=("text", "json"), default="text", help="log format (default: text)")
    _parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info", help="default: info"
    )
    add_arguments(_parser)
    _args = _parser.parse_args()
    _standalone_logging(_args.log_format, _args.log_level)
    sys.exit(run(_args))
