"""The address-service protocol on the wire: request bodies in, answers out, no sockets.

Byte-compatible with DHCPManager (kramergroup/dhcpmanager) for its clients:
JSON bodies as Go's encoder writes them (a trailing newline, no charset),
lower-case keys on ``/v1/ip`` and Go's capitalised field names elsewhere,
gorilla/mux's text 404 and empty 405; plus our extensions, which
``GET /v1/config`` lists. Any HTTP server can serve it: find the route with
:func:`route`, check the token where :func:`needs_token` says so, then
:func:`call` it.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import netaddr
from metallb.plugins.address_service.api import (
    SERVICE_PATTERN,
    AddressTakenError,
    BackendError,
    Lease,
    LeaseTimeoutError,
    rfc3339,
    status_hostname,
)
from metallb.plugins.address_service.service import AddressService, NotOwnerError, UnknownLeaseError

__all__ = [
    "BAD_LENGTH",
    "EXTENSIONS",
    "MAX_BODY",
    "MAX_DEPTH",
    "METHOD_NOT_ALLOWED",
    "NOT_FOUND",
    "TOO_LARGE",
    "UNAUTHORIZED",
    "Answer",
    "ApiError",
    "Route",
    "call",
    "json_answer",
    "needs_token",
    "path_label",
    "route",
]

log = logging.getLogger(__name__)

#: What ``GET /v1/config`` advertises; clients use an extension only when listed.
EXTENSIONS = ("idempotent-post", "requested-ip", "owner-checked-delete", "lease-details", "status-service", "family")
#: Longest request body read; longer ones get :data:`TOO_LARGE`.
MAX_BODY = 64 * 1024
#: Deepest nesting of arrays and objects a body may have (ours have 2); deeper is a 400.
MAX_DEPTH = 32
#: Longest value quoted back in an error message.
MAX_QUOTE = 64
#: A Service's ``metadata.uid`` (a UUID), or anything of its kind: printable ASCII, no spaces.
UID_PATTERN = re.compile(r"[!-~]{1,128}")

Json = dict[str, Any]


@attrs.frozen(kw_only=True)
class Answer:
    """One HTTP answer: status code, body bytes, ``Content-Type`` ("" sends none)."""

    code: int
    body: bytes
    content_type: str = "application/json"


def json_answer(code: int, body: Mapping[str, Any]) -> Answer:
    """*body* as DHCPManager writes JSON: Go's encoder output, a newline, no charset."""
    return Answer(code=code, body=json.dumps(body).encode() + b"\n")


NOT_FOUND = Answer(code=404, body=b"404 page not found\n", content_type="text/plain; charset=utf-8")  # as gorilla/mux
METHOD_NOT_ALLOWED = Answer(code=405, body=b"", content_type="")
UNAUTHORIZED = json_answer(401, {"status": "unauthorized", "message": "missing or wrong X-Auth-Token"})
BAD_LENGTH = json_answer(400, {"status": "error", "message": "bad Content-Length header"})
TOO_LARGE = json_answer(413, {"status": "error", "message": "body too large"})


class ApiError(Exception):
    """An answer other than success: HTTP code plus the v1 body."""

    def __init__(self, code: int, body: Json) -> None:
        super().__init__(body.get("message", body.get("status", "")))
        self.code = code
        self.body = body


# -- bodies ------------------------------------------------------------------------------


def _ip_body(ip: str, lease_id: str, status: str, message: str = "") -> Json:
    body: Json = {"ip": ip, "id": lease_id, "status": status}
    if message:
        body["message"] = message
    return body


def _lease_body(lease: Lease) -> Json:
    body = _ip_body(lease.ip, lease.id, "success")
    body["service"] = lease.service
    if lease.mac:
        body["mac"] = lease.mac
    if lease.expires is not None:
        body["expires"] = rfc3339(lease.expires)
    return body


def _netmask_b64(netmask: str) -> str | None:
    """Go's IPMask is a byte slice: JSON carries it as base64 ("////AA==" for /24)."""
    if not netmask:
        return None
    return base64.b64encode(netaddr.IPAddress(netmask).packed).decode()


def _allocation(lease: Lease) -> Json:
    """One ``GET /v1/status`` entry: DHCPManager's Allocation plus our ``Service``, ``UID``, ``MAC``, ``Lost`` ..."""
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
            "Bound": rfc3339(lease.bound),
            "Renew": rfc3339(lease.renew),
            "Rebind": rfc3339(lease.rebind),
            "Expire": rfc3339(lease.expires),
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


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in *value*, counted without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _bad_body(message: str) -> ApiError:
    return ApiError(400, {"status": "error", "message": message})


def _parse_json(raw: bytes) -> Any:
    """The body as JSON; anything else (not JSON, too deep, a number Python will not convert) is a 400."""
    try:
        data = json.loads(raw or b"null")
    except RecursionError:
        raise _bad_body(f"the body nests arrays or objects deeper than {MAX_DEPTH} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _bad_body("the body is not JSON") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise _bad_body(f"the body holds a number that cannot be read: {exc}"[:200]) from None
    # Counting brackets first keeps the walk off the path of every ordinary body.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(data) > MAX_DEPTH:
        raise _bad_body(f"the body nests arrays or objects deeper than {MAX_DEPTH} levels")
    return data


def _quote(value: Any) -> str:
    """*value* as it appears in an error message: its ``repr``, cut to :data:`MAX_QUOTE` characters."""
    text = repr(value)
    return text if len(text) <= MAX_QUOTE else f"{text[:MAX_QUOTE]}... ({len(text)} characters)"


# -- routes ------------------------------------------------------------------------------

Route = Callable[[AddressService, bytes], tuple[int, Json]]


def _post_ip(service: AddressService, raw: bytes) -> tuple[int, Json]:
    data = _parse_json(raw)
    if not isinstance(data, dict):
        raise ApiError(
            400, _ip_body("", "", "error", 'the body must be a JSON object like {"service": "namespace/name"}')
        )
    name = data.get("service")
    if not isinstance(name, str) or not SERVICE_PATTERN.match(name):
        raise ApiError(400, _ip_body("", "", "error", f'"service" must be "namespace/name", got {_quote(name)}'))
    uid = data.get("uid") or ""
    wanted = data.get("ip") or ""
    if not isinstance(uid, str) or not isinstance(wanted, str):
        raise ApiError(400, _ip_body("", "", "error", '"uid" and "ip" must be strings'))
    # Our extension: "family": 6 asks for an IPv6 lease; DHCPManager's clients send none (IPv4).
    family = data.get("family", 6 if ":" in wanted else 4)
    if family not in (4, 6) or isinstance(family, bool):
        raise ApiError(400, _ip_body("", "", "error", f'"family" must be 4 or 6, got {_quote(family)}'))
    if uid and not UID_PATTERN.fullmatch(uid):
        message = f'"uid" must be up to 128 printable ASCII characters without spaces, got {_quote(uid)}'
        raise ApiError(400, _ip_body("", "", "error", message))
    if wanted:
        try:
            wanted = str(netaddr.IPAddress(wanted, family))
        except (netaddr.AddrFormatError, ValueError):
            message = f'"ip" must be an IPv{family} address, got {_quote(wanted)}'
            raise ApiError(400, _ip_body("", "", "error", message)) from None
    try:
        lease, created = service.obtain(name, uid=uid, wanted=wanted, family=family)
    except LeaseTimeoutError as exc:
        raise ApiError(504, _ip_body("", "", "timeout", str(exc))) from None
    except AddressTakenError as exc:
        raise ApiError(409, _ip_body("", "", "error", str(exc))) from None
    except BackendError as exc:
        raise ApiError(503, _ip_body("", "", "error", str(exc))) from None
    return (201 if created else 200), _lease_body(lease)


def _delete_ip(service: AddressService, raw: bytes) -> tuple[int, Json]:
    data = _parse_json(raw)
    data = data if isinstance(data, dict) else {}
    text = data.get("ip")
    try:
        ip = str(netaddr.IPAddress(str(text).strip(), flags=netaddr.INET_PTON)) if isinstance(text, str) else ""
    except (netaddr.AddrFormatError, ValueError):
        ip = ""
    if not ip:
        raise ApiError(400, _ip_body("invalid", "", "error", '"ip" must be an IPv4 or IPv6 address'))
    owner, lease_id = data.get("service"), data.get("id")
    try:
        lease = service.release(
            ip,
            service=owner if isinstance(owner, str) else "",
            lease_id=lease_id if isinstance(lease_id, str) else "",
        )
    except UnknownLeaseError as exc:
        raise ApiError(404, _ip_body(ip, "", "error", str(exc))) from None
    except NotOwnerError as exc:
        raise ApiError(409, _ip_body(ip, "", "error", str(exc))) from None
    return 200, _ip_body(ip, lease.id, "success")


def _mac_list(raw: bytes) -> list[Any]:
    data = _parse_json(raw)
    if isinstance(data, dict):
        for key, value in data.items():
            if key.lower() == "macs" and isinstance(value, list):  # Go matches the key without case
                return value
    raise ApiError(400, {"Status": "error", "message": 'the body must be {"macs": ["02:00:00:00:00:01", ...]}'})


def _post_mac(service: AddressService, raw: bytes) -> tuple[int, Json]:
    added, rejected = service.add_macs(_mac_list(raw))
    body = {"Status": "error" if rejected else "success", "Rejected": list(rejected) or None, "Reasons": rejected}
    return (400 if rejected and not added else 200), body


def _delete_mac(service: AddressService, raw: bytes) -> tuple[int, Json]:
    unprocessed = service.remove_macs(_mac_list(raw))
    return 200, {
        "Status": "error" if unprocessed else "success",
        "Unprocessed": list(unprocessed) or None,
        "Reasons": unprocessed,
    }


def _status(service: AddressService, _raw: bytes) -> tuple[int, Json]:
    leases, macs = service.snapshot()
    return 200, {"Allocations": [_allocation(lease) for lease in leases] or None, "AvailableMACs": macs or None}


def _config(service: AddressService, _raw: bytes) -> tuple[int, Json]:
    """The historical ``cidrs`` plus the extensions we speak."""
    backend = service.backend
    return 200, {"cidrs": list(backend.cidrs()), "backend": backend.kind, "extensions": list(EXTENSIONS)}


def _healthz(_service: AddressService, _raw: bytes) -> tuple[int, Json]:
    return 200, {"status": "ok"}


def _readyz(service: AddressService, _raw: bytes) -> tuple[int, Json]:
    return (200, {"status": "ok"}) if service.started else (503, {"status": "starting"})


ROUTES: dict[str, dict[str, Route]] = {
    "/v1/ip": {"POST": _post_ip, "DELETE": _delete_ip},
    "/v1/mac": {"POST": _post_mac, "DELETE": _delete_mac},
    "/v1/status": {"GET": _status},
    "/v1/config": {"GET": _config},
    "/healthz": {"GET": _healthz},
    "/readyz": {"GET": _readyz},
}


def route(method: str, path: str) -> Route | Answer:
    """The route for *method* on *path* (without query), or the router's 404 or 405 answer."""
    routes = ROUTES.get(path)
    if routes is None:
        return NOT_FOUND
    found = routes.get(method)
    return METHOD_NOT_ALLOWED if found is None else found


def needs_token(path: str) -> bool:
    """Whether the auth token guards *path* (the API; health checks and metrics stay open)."""
    return path.startswith("/v1/")


def path_label(path: str) -> str:
    """*path* as a metrics label: known paths as they are, anything else ``other`` (bounded cardinality)."""
    return path if path in ROUTES or path == "/metrics" else "other"


#: What a replica that does not lead (or has not loaded its leases yet) answers on ``/v1/*``.
NOT_SERVING = json_answer(503, {"status": "error", "message": "not serving yet: another replica leads, or starting"})


def call(found: Route, service: AddressService, body: bytes, *, what: str) -> Answer:
    """Run a route; an error becomes its answer, a bug a 500 (logged with *what*, e.g. ``POST /v1/ip``)."""
    if not service.serving and found not in (_healthz, _readyz):
        return NOT_SERVING  # a standby's empty table must never look like "no leases"
    try:
        code, payload = found(service, body)
    except ApiError as exc:
        code, payload = exc.code, exc.body
    except Exception as exc:
        log.exception("%s failed", what)
        code, payload = 500, {"status": "error", "message": f"internal error: {type(exc).__name__}"}
    return json_answer(code, payload)
