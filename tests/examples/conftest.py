"""Fixtures for the example plugins: pip-installed packages and a stand-in NetBox."""

from __future__ import annotations

import importlib
import ipaddress
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from metallb.allocator.testing import JsonApiStub, StubRequest

ROOT = Path(__file__).resolve().parents[2]
NETBOX_EXAMPLE = ROOT / "examples" / "metallb-netbox-pools"
TOKEN = "0123456789abcdef"


@pytest.fixture(name="netbox_plugin", scope="session")
def _netbox_plugin():
    """Install the example package into this test environment with pip, as a user would."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(NETBOX_EXAMPLE)],
        check=True,
        capture_output=True,
        cwd="/",
    )
    importlib.invalidate_caches()
    return "netbox-pools"


class FakeNetBox:
    """Just enough of NetBox's IPAM REST API: prefixes, available IPs, IP addresses.

    Token authentication, globally unique addresses (400 on a duplicate), 409
    when a prefix is full, paginated lists, and ``down`` to answer 503.
    """

    def __init__(self, api: JsonApiStub, prefixes: dict[int, str]) -> None:
        self.api = api
        self.prefixes = {pid: ipaddress.ip_network(cidr) for pid, cidr in prefixes.items()}
        self.ips: dict[int, dict[str, Any]] = {}
        self.down = False
        self._next_id = 100
        self._lock = threading.Lock()
        api.add("GET", r"/api/ipam/prefixes/(?P<pid>\d+)/", self._guard(self._prefix))
        api.add("POST", r"/api/ipam/prefixes/(?P<pid>\d+)/available-ips/", self._guard(self._take_available))
        api.add("GET", r"/api/ipam/ip-addresses/", self._guard(self._list))
        api.add("POST", r"/api/ipam/ip-addresses/", self._guard(self._create))
        api.add("DELETE", r"/api/ipam/ip-addresses/(?P<id>\d+)/", self._guard(self._delete))

    def _guard(self, handler):
        def guarded(request: StubRequest) -> tuple[int, Any]:
            if self.down:
                return 503, {"detail": "Service Unavailable"}
            if request.headers.get("authorization") != f"Token {TOKEN}":
                return 403, {"detail": "Invalid token"}
            with self._lock:
                return handler(request)

        return guarded

    def record(self, address: str, description: str) -> int:
        """Record an IP address object directly, as another NetBox user would."""
        with self._lock:
            return self._add(address, description)

    def addresses(self, marker: str = "") -> dict[str, str]:
        """Recorded addresses (without mask) and their descriptions."""
        with self._lock:
            return {
                o["address"].split("/")[0]: o["description"] for o in self.ips.values() if marker in o["description"]
            }

    def _add(self, address: str, description: str) -> int:
        self._next_id += 1
        iface = ipaddress.ip_interface(address)
        self.ips[self._next_id] = {
            "id": self._next_id,
            "address": str(iface),
            "family": {"value": iface.version},
            "status": {"value": "active"},
            "description": description,
        }
        return self._next_id

    def _used(self) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return {ipaddress.ip_interface(o["address"]).ip for o in self.ips.values()}

    def _prefix(self, request: StubRequest) -> tuple[int, Any]:
        net = self.prefixes.get(int(request.params["pid"]))
        if net is None:
            return 404, {"detail": "No Prefix matches the given query."}
        return 200, {"id": int(request.params["pid"]), "prefix": str(net), "family": {"value": net.version}}

    def _take_available(self, request: StubRequest) -> tuple[int, Any]:
        net = self.prefixes.get(int(request.params["pid"]))
        if net is None:
            return 404, {"detail": "No Prefix matches the given query."}
        used = self._used()
        hosts = net.hosts() if net.prefixlen < net.max_prefixlen - 1 else iter(net)
        free = next((ip for ip in hosts if ip not in used), None)
        if free is None:
            return 409, {
                "detail": f"An insufficient number of IP addresses are available within prefix {net} "
                "(1 requested, 0 available)"
            }
        body = request.body or {}
        new = self._add(f"{free}/{net.prefixlen}", str(body.get("description", "")))
        return 201, self.ips[new]

    def _list(self, request: StubRequest) -> tuple[int, Any]:
        found = list(self.ips.values())
        if "address" in request.query:
            want = ipaddress.ip_interface(request.query["address"]).ip
            found = [o for o in found if ipaddress.ip_interface(o["address"]).ip == want]
        if "parent" in request.query:
            parent = ipaddress.ip_network(request.query["parent"])
            found = [o for o in found if ipaddress.ip_interface(o["address"]).ip in parent]
        limit = int(request.query.get("limit") or 50) or 1000
        offset = int(request.query.get("offset") or 0)
        page = found[offset : offset + limit]
        more = offset + limit < len(found)
        params = "&".join(f"{k}={v}" for k, v in request.query.items() if k not in ("limit", "offset"))
        nxt = f"{self.api.url}{request.path}?{params}&limit={limit}&offset={offset + limit}" if more else None
        return 200, {"count": len(found), "next": nxt, "previous": None, "results": page}

    def _create(self, request: StubRequest) -> tuple[int, Any]:
        body = request.body or {}
        iface = ipaddress.ip_interface(str(body.get("address", "")))
        if iface.ip in self._used():
            return 400, {"address": [f"Duplicate IP address found in global table: {iface}"]}
        new = self._add(str(iface), str(body.get("description", "")))
        return 201, self.ips[new]

    def _delete(self, request: StubRequest) -> tuple[int, Any]:
        if self.ips.pop(int(request.params["id"]), None) is None:
            return 404, {"detail": "No IPAddress matches the given query."}
        return 204, None


@pytest.fixture(name="netbox")
def _netbox():
    """A stand-in NetBox on 127.0.0.1: prefix 7 is 192.0.2.0/28 with .1 taken by a gateway, prefix 8 is
    2001:db8::/125, prefix 9 the tiny 192.0.2.16/30."""
    with JsonApiStub() as api:
        fake = FakeNetBox(api, {7: "192.0.2.0/28", 8: "2001:db8::/125", 9: "192.0.2.16/30"})
        fake.record("192.0.2.1/28", "gateway")
        yield fake
