"""The protocol on the wire, byte for byte: what DHCPManager's clients (and ours) read from the bundled server.

The answers below were recorded from the server before its split into
``service``, ``wire`` and ``http``; the server must keep giving exactly
these bytes (status, ``Content-Type``, body) for the same exchange. Lease
ids are random, so they are numbered by first appearance before comparing.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
from collections.abc import Iterator

import attrs
import pytest
from metallb.plugins.address_service import wire
from metallb.plugins.address_service.api import Lease, LeaseRequest, LeaseTimeoutError, NoAddressError
from metallb.plugins.address_service.http import HttpServer, make_http_server
from metallb.plugins.address_service.service import AddressService


class FixedBackend:
    """192.0.2.1, .2 ... (or the wanted address); ``ns/rich-*`` leases carry every DHCP detail.

    ``ns/slow`` times out, ``ns/none`` finds nothing free, ``ns/boom`` is a bug.
    """

    kind = "fixed"
    needs_mac = False

    def __init__(self) -> None:
        self.next = 1

    def cidrs(self) -> list[str]:
        return ["192.0.2.0/24"]

    def start(self, listener) -> None:
        pass

    def obtain(self, request: LeaseRequest, *, timeout: float) -> Lease:
        if request.service == "ns/slow":
            raise LeaseTimeoutError("no DHCPOFFER on eth1 within 10 s (scope exhausted or no server)")
        if request.service == "ns/none":
            raise NoAddressError("nothing left")
        if request.service == "ns/boom":
            raise RuntimeError("boom")
        ip = request.wanted or f"192.0.2.{self.next}"
        self.next += 0 if request.wanted else 1
        if not request.service.startswith("ns/rich"):
            return Lease(
                id=request.id, service=request.service, uid=request.uid, ip=ip, mac=request.mac, bound=1700000000.0
            )
        return Lease(
            id=request.id, service=request.service, uid=request.uid, ip=ip, mac=request.mac, client_id="006d65",
            server_id="192.0.2.2", server_mac="02:00:00:00:00:02", netmask="255.255.255.0", routers=("192.0.2.1",),
            dns=("192.0.2.53", "192.0.2.54"), interface="eth1", bound=1700000000.25, renew=1700000060.0,
            rebind=1700000105.0, expires=1700000120.0,
        )  # fmt: skip

    def resume(self, lease: Lease) -> None:
        pass

    def release(self, lease: Lease) -> None:
        pass

    def close(self) -> None:
        pass


TOKEN = {"X-Auth-Token": "s3cret"}
#: (name, server, method, path, body, headers); a name "LOSE ns/x" marks that lease lost instead.
EXCHANGE = [
    ("post-new", "open", "POST", "/v1/ip", {"service": "ns/a"}, None),
    ("post-replay", "open", "POST", "/v1/ip", {"service": "ns/a"}, None),
    ("post-wanted", "open", "POST", "/v1/ip", {"service": "ns/b", "ip": "192.0.2.99"}, None),
    ("post-wanted-taken", "open", "POST", "/v1/ip", {"service": "ns/c", "ip": "192.0.2.99"}, None),
    ("post-not-json", "open", "POST", "/v1/ip", b"not json", None),
    ("post-not-object", "open", "POST", "/v1/ip", b"[1]", None),
    ("post-bad-service", "open", "POST", "/v1/ip", {"service": "bad"}, None),
    ("post-bad-uid", "open", "POST", "/v1/ip", {"service": "ns/d", "uid": 5}, None),
    ("post-bad-ip", "open", "POST", "/v1/ip", {"service": "ns/d", "ip": "x"}, None),
    ("post-timeout", "open", "POST", "/v1/ip", {"service": "ns/slow"}, None),
    ("post-nothing-free", "open", "POST", "/v1/ip", {"service": "ns/none"}, None),
    ("post-internal-error", "open", "POST", "/v1/ip", {"service": "ns/boom"}, None),
    ("status", "open", "GET", "/v1/status", None, None),
    ("config", "open", "GET", "/v1/config", None, None),
    ("delete-invalid", "open", "DELETE", "/v1/ip", {"ip": "nonsense"}, None),
    ("delete-not-object", "open", "DELETE", "/v1/ip", b"7", None),
    ("delete-other-service", "open", "DELETE", "/v1/ip", {"ip": "192.0.2.99", "service": "ns/x"}, None),
    ("delete-other-id", "open", "DELETE", "/v1/ip", {"ip": "192.0.2.99", "id": "old"}, None),
    ("delete", "open", "DELETE", "/v1/ip", {"ip": "192.0.2.99"}, None),
    ("delete-again", "open", "DELETE", "/v1/ip", {"ip": "192.0.2.99"}, None),
    ("mac-add", "open", "POST", "/v1/mac", {"MACs": ["02-00-5E-10-00-01", "03:00:00:00:00:01"]}, None),
    ("mac-add-none", "open", "POST", "/v1/mac", {"macs": ["zz"]}, None),
    ("mac-add-in-use", "open", "POST", "/v1/mac", {"macs": ["ca:b1:97:2c:f3:53"]}, None),
    ("mac-bad-body", "open", "POST", "/v1/mac", {"nope": 1}, None),
    ("status-with-macs", "open", "GET", "/v1/status", None, None),
    ("mac-delete", "open", "DELETE", "/v1/mac", {"macs": ["02:00:5e:10:00:01", "bad"]}, None),
    ("status-after", "open", "GET", "/v1/status", None, None),
    ("unknown-path", "open", "GET", "/v2/ip", None, None),
    ("query-string", "open", "GET", "/v1/config?x=1", None, None),
    ("wrong-method", "open", "GET", "/v1/ip", None, None),
    ("put", "open", "PUT", "/v1/ip", b"{}", None),
    ("metrics-post", "open", "POST", "/metrics", b"", None),
    ("healthz", "open", "GET", "/healthz", None, None),
    ("readyz", "open", "GET", "/readyz", None, None),
    ("bad-length", "open", "POST", "/v1/ip", None, {"Content-Length": "-1"}),
    ("too-large", "open", "POST", "/v1/ip", None, {"Content-Length": "70000"}),
    ("no-token", "token", "POST", "/v1/ip", {"service": "ns/a"}, None),
    ("wrong-token", "token", "GET", "/v1/status", None, {"X-Auth-Token": "nope"}),
    ("rich-post", "token", "POST", "/v1/ip", {"service": "ns/rich-a", "uid": "u-1"}, TOKEN),
    ("rich-post-b", "token", "POST", "/v1/ip", {"service": "ns/rich-b"}, TOKEN),
    ("LOSE ns/rich-b", "token", "", "", None, None),
    ("rich-status", "token", "GET", "/v1/status", None, TOKEN),
    ("rich-config", "token", "GET", "/v1/config", None, TOKEN),
    ("healthz-without-token", "token", "GET", "/healthz", None, None),
]

#: Recorded from the server before it was split into service, wire and http (main at b7fa1ea).
EXPECTED = {
    "post-new": (
        201,
        "application/json",
        b'{"ip": "192.0.2.1", "id": "<id1>", "status": "success", "service": "ns/a", "mac": "ca:b1:97:2c:f3:53"}\n',
    ),
    "post-replay": (
        200,
        "application/json",
        b'{"ip": "192.0.2.1", "id": "<id1>", "status": "success", "service": "ns/a", "mac": "ca:b1:97:2c:f3:53"}\n',
    ),
    "post-wanted": (
        201,
        "application/json",
        b'{"ip": "192.0.2.99", "id": "<id2>", "status": "success", "service": "ns/b", "mac": "4e:30:0c:69:7d:78"}\n',
    ),
    "post-wanted-taken": (
        409,
        "application/json",
        b'{"ip": "", "id": "", "status": "error", "message": "192.0.2.99 is already leased"}\n',
    ),
    "post-not-json": (400, "application/json", b'{"status": "error", "message": "the body is not JSON"}\n'),
    "post-not-object": (
        400,
        "application/json",
        b'{"ip": "", "id": "", "status": "error", "message": "the body must be a JSON object like {\\"service\\": \\"namespace/name\\"}"}\n',
    ),
    "post-bad-service": (
        400,
        "application/json",
        b'{"ip": "", "id": "", "status": "error", "message": "\\"service\\" must be \\"namespace/name\\", got \'bad\'"}\n',
    ),
    "post-bad-uid": (
        400,
        "application/json",
        b'{"ip": "", "id": "", "status": "error", "message": "\\"uid\\" and \\"ip\\" must be strings"}\n',
    ),
    "post-bad-ip": (
        400,
        "application/json",
        b'{"ip": "", "id": "", "status": "error", "message": "\\"ip\\" must be an IPv4 address, got \'x\'"}\n',
    ),
    "post-timeout": (
        504,
        "application/json",
        b'{"ip": "", "id": "", "status": "timeout", "message": "no DHCPOFFER on eth1 within 10 s (scope exhausted or no server)"}\n',
    ),
    "post-nothing-free": (
        503,
        "application/json",
        b'{"ip": "", "id": "", "status": "error", "message": "nothing left"}\n',
    ),
    "post-internal-error": (
        500,
        "application/json",
        b'{"status": "error", "message": "internal error: RuntimeError"}\n',
    ),
    "status": (
        200,
        "application/json",
        b'{"Allocations": [{"Interface": {"Index": 0, "MTU": 0, "Name": "", "HardwareAddr": "ca:b1:97:2c:f3:53", "Flags": 0}, "ID": "<id1>", "Lease": {"ServerID": "", "FixedAddress": "192.0.2.1", "Netmask": null, "NextServer": "", "Broadcast": "", "Router": null, "DNS": null, "TimeServer": null, "DomainName": "", "MTU": 0, "Bound": "2023-11-14T22:13:20Z", "Renew": "0001-01-01T00:00:00Z", "Rebind": "0001-01-01T00:00:00Z", "Expire": "0001-01-01T00:00:00Z"}, "Hostname": "a.ns", "State": 1, "Service": "ns/a", "UID": "", "MAC": "ca:b1:97:2c:f3:53", "ClientID": "", "Lost": false}, {"Interface": {"Index": 0, "MTU": 0, "Name": "", "HardwareAddr": "4e:30:0c:69:7d:78", "Flags": 0}, "ID": "<id2>", "Lease": {"ServerID": "", "FixedAddress": "192.0.2.99", "Netmask": null, "NextServer": "", "Broadcast": "", "Router": null, "DNS": null, "TimeServer": null, "DomainName": "", "MTU": 0, "Bound": "2023-11-14T22:13:20Z", "Renew": "0001-01-01T00:00:00Z", "Rebind": "0001-01-01T00:00:00Z", "Expire": "0001-01-01T00:00:00Z"}, "Hostname": "b.ns", "State": 1, "Service": "ns/b", "UID": "", "MAC": "4e:30:0c:69:7d:78", "ClientID": "", "Lost": false}], "AvailableMACs": null}\n',
    ),
    "config": (
        200,
        "application/json",
        b'{"cidrs": ["192.0.2.0/24"], "backend": "fixed", "extensions": ["idempotent-post", "requested-ip", "owner-checked-delete", "lease-details", "status-service", "family"]}\n',
    ),
    "delete-invalid": (
        400,
        "application/json",
        b'{"ip": "invalid", "id": "", "status": "error", "message": "\\"ip\\" must be an IPv4 or IPv6 address"}\n',
    ),
    "delete-not-object": (
        400,
        "application/json",
        b'{"ip": "invalid", "id": "", "status": "error", "message": "\\"ip\\" must be an IPv4 or IPv6 address"}\n',
    ),
    "delete-other-service": (
        409,
        "application/json",
        b'{"ip": "192.0.2.99", "id": "", "status": "error", "message": "192.0.2.99 is held by another service, not ns/x"}\n',
    ),
    "delete-other-id": (
        409,
        "application/json",
        b'{"ip": "192.0.2.99", "id": "", "status": "error", "message": "192.0.2.99 is held under another lease id, not old"}\n',
    ),
    "delete": (200, "application/json", b'{"ip": "192.0.2.99", "id": "<id2>", "status": "success"}\n'),
    "delete-again": (
        404,
        "application/json",
        b'{"ip": "192.0.2.99", "id": "", "status": "error", "message": "192.0.2.99 is not leased (already released?)"}\n',
    ),
    "mac-add": (
        200,
        "application/json",
        b'{"Status": "error", "Rejected": ["03:00:00:00:00:01"], "Reasons": {"03:00:00:00:00:01": "a multicast MAC cannot hold a lease"}}\n',
    ),
    "mac-add-none": (
        400,
        "application/json",
        b'{"Status": "error", "Rejected": ["zz"], "Reasons": {"zz": "not a 48-bit MAC (write aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabb.ccdd.eeff)"}}\n',
    ),
    "mac-add-in-use": (
        400,
        "application/json",
        b'{"Status": "error", "Rejected": ["ca:b1:97:2c:f3:53"], "Reasons": {"ca:b1:97:2c:f3:53": "in use by a lease"}}\n',
    ),
    "mac-bad-body": (
        400,
        "application/json",
        b'{"Status": "error", "message": "the body must be {\\"macs\\": [\\"02:00:00:00:00:01\\", ...]}"}\n',
    ),
    "status-with-macs": (
        200,
        "application/json",
        b'{"Allocations": [{"Interface": {"Index": 0, "MTU": 0, "Name": "", "HardwareAddr": "ca:b1:97:2c:f3:53", "Flags": 0}, "ID": "<id1>", "Lease": {"ServerID": "", "FixedAddress": "192.0.2.1", "Netmask": null, "NextServer": "", "Broadcast": "", "Router": null, "DNS": null, "TimeServer": null, "DomainName": "", "MTU": 0, "Bound": "2023-11-14T22:13:20Z", "Renew": "0001-01-01T00:00:00Z", "Rebind": "0001-01-01T00:00:00Z", "Expire": "0001-01-01T00:00:00Z"}, "Hostname": "a.ns", "State": 1, "Service": "ns/a", "UID": "", "MAC": "ca:b1:97:2c:f3:53", "ClientID": "", "Lost": false}], "AvailableMACs": ["02:00:5e:10:00:01"]}\n',
    ),
    "mac-delete": (
        200,
        "application/json",
        b'{"Status": "error", "Unprocessed": ["bad"], "Reasons": {"bad": "not a 48-bit MAC (write aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabb.ccdd.eeff)"}}\n',
    ),
    "status-after": (
        200,
        "application/json",
        b'{"Allocations": [{"Interface": {"Index": 0, "MTU": 0, "Name": "", "HardwareAddr": "ca:b1:97:2c:f3:53", "Flags": 0}, "ID": "<id1>", "Lease": {"ServerID": "", "FixedAddress": "192.0.2.1", "Netmask": null, "NextServer": "", "Broadcast": "", "Router": null, "DNS": null, "TimeServer": null, "DomainName": "", "MTU": 0, "Bound": "2023-11-14T22:13:20Z", "Renew": "0001-01-01T00:00:00Z", "Rebind": "0001-01-01T00:00:00Z", "Expire": "0001-01-01T00:00:00Z"}, "Hostname": "a.ns", "State": 1, "Service": "ns/a", "UID": "", "MAC": "ca:b1:97:2c:f3:53", "ClientID": "", "Lost": false}], "AvailableMACs": null}\n',
    ),
    "unknown-path": (404, "text/plain; charset=utf-8", b"404 page not found\n"),
    "query-string": (
        200,
        "application/json",
        b'{"cidrs": ["192.0.2.0/24"], "backend": "fixed", "extensions": ["idempotent-post", "requested-ip", "owner-checked-delete", "lease-details", "status-service", "family"]}\n',
    ),
    "wrong-method": (405, None, b""),
    "put": (405, None, b""),
    "metrics-post": (404, "text/plain; charset=utf-8", b"404 page not found\n"),
    "healthz": (200, "application/json", b'{"status": "ok"}\n'),
    "readyz": (200, "application/json", b'{"status": "ok"}\n'),
    "bad-length": (400, "application/json", b'{"status": "error", "message": "bad Content-Length header"}\n'),
    "too-large": (413, "application/json", b'{"status": "error", "message": "body too large"}\n'),
    "no-token": (401, "application/json", b'{"status": "unauthorized", "message": "missing or wrong X-Auth-Token"}\n'),
    "wrong-token": (
        401,
        "application/json",
        b'{"status": "unauthorized", "message": "missing or wrong X-Auth-Token"}\n',
    ),
    "rich-post": (
        201,
        "application/json",
        b'{"ip": "192.0.2.1", "id": "<id3>", "status": "success", "service": "ns/rich-a", "mac": "b6:c4:8a:05:38:ac", "expires": "2023-11-14T22:15:20Z"}\n',
    ),
    "rich-post-b": (
        201,
        "application/json",
        b'{"ip": "192.0.2.2", "id": "<id4>", "status": "success", "service": "ns/rich-b", "mac": "2a:52:73:86:e0:d8", "expires": "2023-11-14T22:15:20Z"}\n',
    ),
    "rich-status": (
        200,
        "application/json",
        b'{"Allocations": [{"Interface": {"Index": 0, "MTU": 0, "Name": "eth1", "HardwareAddr": "b6:c4:8a:05:38:ac", "Flags": 0}, "ID": "<id3>", "Lease": {"ServerID": "192.0.2.2", "FixedAddress": "192.0.2.1", "Netmask": "////AA==", "NextServer": "", "Broadcast": "", "Router": ["192.0.2.1"], "DNS": ["192.0.2.53", "192.0.2.54"], "TimeServer": null, "DomainName": "", "MTU": 0, "Bound": "2023-11-14T22:13:20.250000Z", "Renew": "2023-11-14T22:14:20Z", "Rebind": "2023-11-14T22:15:05Z", "Expire": "2023-11-14T22:15:20Z"}, "Hostname": "rich-a.ns", "State": 1, "Service": "ns/rich-a", "UID": "u-1", "MAC": "b6:c4:8a:05:38:ac", "ClientID": "006d65", "Lost": false}, {"Interface": {"Index": 0, "MTU": 0, "Name": "eth1", "HardwareAddr": "2a:52:73:86:e0:d8", "Flags": 0}, "ID": "<id4>", "Lease": {"ServerID": "192.0.2.2", "FixedAddress": "192.0.2.2", "Netmask": "////AA==", "NextServer": "", "Broadcast": "", "Router": ["192.0.2.1"], "DNS": ["192.0.2.53", "192.0.2.54"], "TimeServer": null, "DomainName": "", "MTU": 0, "Bound": "2023-11-14T22:13:20.250000Z", "Renew": "2023-11-14T22:14:20Z", "Rebind": "2023-11-14T22:15:05Z", "Expire": "2023-11-14T22:15:20Z"}, "Hostname": "rich-b.ns", "State": 2, "Service": "ns/rich-b", "UID": "", "MAC": "2a:52:73:86:e0:d8", "ClientID": "006d65", "Lost": true}], "AvailableMACs": null}\n',
    ),
    "rich-config": (
        200,
        "application/json",
        b'{"cidrs": ["192.0.2.0/24"], "backend": "fixed", "extensions": ["idempotent-post", "requested-ip", "owner-checked-delete", "lease-details", "status-service", "family"]}\n',
    ),
    "healthz-without-token": (200, "application/json", b'{"status": "ok"}\n'),
}

UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def ask(httpd: HttpServer, method: str, path: str, body: object, headers: dict[str, str] | None):
    """One request on its own connection: (code, Content-Type, body bytes)."""
    conn = http.client.HTTPConnection(*httpd.server_address[:2], timeout=10)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    answer = (resp.status, resp.getheader("Content-Type"), resp.read())
    conn.close()
    return answer


@attrs.define
class Servers:
    open: tuple[AddressService, HttpServer]
    token: tuple[AddressService, HttpServer]


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Two servers over FixedBackend with derived MACs: one open, one requiring the token ``s3cret``."""
    made = []
    for token in ("", "s3cret"):
        service = AddressService(backend=FixedBackend(), derive_macs=True)
        service.start()
        httpd = make_http_server(service, auth_token=token)
        httpd.start_thread()
        made.append((service, httpd))
    yield Servers(open=made[0], token=made[1])
    for service, httpd in made:
        httpd.shutdown()
        httpd.server_close()
        service.close()


class TestByteCompatibility:
    """The whole protocol, answer by answer, against the recording."""

    def test_every_answer_is_unchanged(self, servers: Servers, caplog) -> None:
        """Each request of the exchange gets the recorded status, Content-Type and body bytes."""
        caplog.set_level(logging.CRITICAL, logger="metallb.plugins.address_service.wire")  # the ns/boom traceback
        ids: dict[bytes, bytes] = {}
        seen = []
        for name, server, method, path, body, headers in EXCHANGE:
            service, httpd = getattr(servers, server)
            if name.startswith("LOSE "):
                lease = next(x for x in service.leases() if x.service == name.split()[1])
                service._lease_changed(attrs.evolve(lease, lost=True))  # what a backend reports after a NAK
                continue
            code, content_type, payload = ask(httpd, method, path, body, headers)
            for found in UUID.findall(payload):
                ids.setdefault(found, f"<id{len(ids) + 1}>".encode())
            for text, label in ids.items():
                payload = payload.replace(text, label)
            assert (code, content_type, payload) == EXPECTED[name], name
            seen.append(name)
        assert seen == list(EXPECTED)


class TestRouting:
    """route, needs_token, path_label and call without a socket."""

    def test_unknown_path_and_wrong_method(self) -> None:
        """An unknown path is gorilla/mux's text 404; a known path with another method an empty 405."""
        assert wire.route("GET", "/v2/ip") == wire.Answer(
            code=404, body=b"404 page not found\n", content_type="text/plain; charset=utf-8"
        )
        assert wire.route("GET", "/v1/ip") == wire.Answer(code=405, body=b"", content_type="")
        assert callable(wire.route("POST", "/v1/ip"))

    def test_token_guards_the_api_only(self) -> None:
        """The auth token guards /v1/*; health checks and metrics stay open."""
        assert wire.needs_token("/v1/status") and wire.needs_token("/v1/ip")
        assert not any(wire.needs_token(p) for p in ("/healthz", "/readyz", "/metrics"))

    def test_metric_labels_are_bounded(self) -> None:
        """Known paths label themselves; any other path is "other", so scanners cannot grow the metrics."""
        assert [wire.path_label(p) for p in ("/v1/ip", "/metrics", "/v1/../etc", "/x" * 40)] == [
            "/v1/ip",
            "/metrics",
            "other",
            "other",
        ]

    def test_call_turns_errors_into_answers(self, caplog) -> None:
        """An ApiError is answered with its code and body; a bug with a logged 500 naming the exception type."""

        def refuse(service, raw):
            raise wire.ApiError(409, {"status": "error", "message": "taken"})

        def broken(service, raw):
            raise KeyError("x")

        service = AddressService(backend=FixedBackend())
        assert wire.call(refuse, service, b"", what="POST /v1/ip") == wire.json_answer(
            409, {"status": "error", "message": "taken"}
        )
        answer = wire.call(broken, service, b"", what="POST /v1/ip")
        assert answer == wire.Answer(code=500, body=b'{"status": "error", "message": "internal error: KeyError"}\n')
        assert "POST /v1/ip failed" in caplog.text
