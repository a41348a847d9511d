"""A stand-in for DHCPManager (kramergroup/dhcpmanager 22441f2b), for tests and benchmarks.

It answers as DHCPManager does (every handler 200, capitalised keys outside
the IP endpoints, no ``/v1/config``, 405 with an empty body, query strings
ignored, a POST that is never idempotent). With ``timing="original"`` it also
behaves as the real one was seen to at run time (etcd, dnsmasq 2.90), with
every duration multiplied by ``time_scale`` (0.01 turns its 3 s bind into 30 ms):

* one allocation is bound at a time, in order; a MAC new to the DHCP server
  takes ``bind_new`` (3 s: dnsmasq's ping check), a known one ``bind_known``
  (20 ms) and gets its old address back: MACs are taken lexicographically
  first and no DHCPRELEASE is sent, so a just-released address goes to the
  next caller;
* a POST waits ``request_timeout`` (10 s) and then answers
  ``{"ip": "", "id": <uuid>, "status": "timeout"}`` after deleting its
  allocation, which is bound later all the same (and renewed for ever);
* the IP index is written ``index_delay`` seconds after the POST is answered
  (not scaled: it is etcd's latency); a DELETE before then gets
  ``{"ip": ..., "id": "", "status": "error"}`` and releases nothing;
* ``GET /v1/status`` lists allocations in id order, in-flight ones with
  ``"State": 0, "Lease": null``, empty lists as ``[]``, leases with their 14
  fields; an allocation disappears when its lease expires (only after
  :meth:`stop_renewals`: the real one renews for ever).

With the default ``timing="instant"`` every POST is answered at once and
indexed at once, and faults are queued per request (``post_faults``,
``delete_faults``). Standard library and netaddr only.

Run ``python -m metallb.plugins.address_service.standin --time-scale 0.01`` to
serve one by hand; it prints ``listening on URL``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import netaddr

__all__ = ["DhcpManagerStandIn", "main"]

#: Where ``outside`` faults take addresses from (not in the default range).
OUTSIDE = "198.51.100.0/24"
_ZERO_TIME = "0001-01-01T00:00:00Z"


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class _Handler(BaseHTTPRequestHandler):
    server: _HTTP
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.owner.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.owner.handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.owner.handle(self, "DELETE")

    def do_PUT(self) -> None:
        self.server.owner.handle(self, "PUT")


class _HTTP(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    owner: DhcpManagerStandIn
    connections: set[socket.socket]

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        self.connections.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)


class DhcpManagerStandIn:
    """DHCPManager's API on 127.0.0.1, leasing from *cidr*.

    Args:
        cidr: the DHCP scope.
        has_status: serve ``GET /v1/status`` (else the router's 404).
        request_timeout: seconds a POST waits for a lease (scaled in original timing).
        port: where to listen (0 picks one).
        timing: ``"instant"`` or ``"original"`` (see the module docstring).
        time_scale: multiplies every duration of original timing.
        bind_new: seconds to bind a MAC the DHCP server has not seen.
        bind_known: seconds to bind a MAC it knows (same address again).
        index_delay: seconds after the POST answer until DELETE finds the address.
        lease_time: DHCP lease length in seconds (scaled).
        macs: size of the MAC pool (default: one per address of *cidr*).

    Attributes:
        allocations: id -> ``{"id", "ip", "hostname"}`` (plus timing fields); tests may edit it.
        post_faults: POST faults, one per request: ``500``, ``garbage``,
            ``wrong-json``, ``empty-ip``, ``outside`` (a lease outside the scope),
            ``lost`` (leased, connection closed unanswered), ``slow:S`` (answer
            after S seconds), ``timeout`` (no lease, DHCPManager's answer after
            the request timeout), ``twice`` (the first allocation's address again).
        delete_faults: DELETE faults: ``500``.
    """

    def __init__(
        self,
        cidr: str = "192.0.2.0/24",
        *,
        has_status: bool = True,
        request_timeout: float = 10.0,
        port: int = 0,
        timing: str = "instant",
        time_scale: float = 1.0,
        bind_new: float = 3.0,
        bind_known: float = 0.02,
        index_delay: float = 0.03,
        lease_time: float = 120.0,
        macs: int | None = None,
    ) -> None:
        if timing not in ("instant", "original"):
            raise ValueError(f'timing {timing!r}: must be "instant" or "original"')
        self.free = [str(ip) for ip in netaddr.IPNetwork(cidr).iter_hosts()]
        self.outside = [str(ip) for ip in netaddr.IPNetwork(OUTSIDE).iter_hosts()]
        self.has_status = has_status
        self.original = timing == "original"
        self.scale = time_scale
        self.request_timeout = request_timeout
        self.bind_new, self.bind_known = bind_new, bind_known
        self.index_delay = index_delay
        self.lease_time = lease_time
        self.allocations: dict[str, dict[str, Any]] = {}
        self.post_faults: list[str] = []
        self.delete_faults: list[str] = []
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self.bound = threading.Condition(self.lock)
        # The DHCP side: the free MAC pool, and what the DHCP server remembers of each MAC.
        count = macs if macs is not None else len(self.free)
        self.macs = {f"02:00:5e:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}" for n in range(count)}
        self.binding: dict[str, str] = {}
        self.renewing = True
        self.late_bindings = 0  # allocations bound after their POST had answered "timeout"
        self._queue: deque[tuple[str, str]] = deque()
        self._closing = False
        self._binding = False  # the binder is busy with an allocation it took off the queue
        self.httpd = _HTTP(("127.0.0.1", port), _Handler)
        self.httpd.owner = self
        self.httpd.connections = set()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self._binder: threading.Thread | None = None
        if self.original:
            self._binder = threading.Thread(target=self._bind_loop, name="standin-binder", daemon=True)
            self._binder.start()

    def __repr__(self) -> str:
        mode = f"original x{self.scale:g}" if self.original else "instant"
        return f"<DhcpManagerStandIn({self.url}, {mode}, allocations={len(self.allocations)})>"

    def close(self) -> None:
        """Stop like a killed server: the listener and every kept-alive connection go."""
        with self.lock:
            self._closing = True
            self.bound.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        for conn in list(self.httpd.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._binder is not None:
            self._binder.join(timeout=5)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.httpd.server_address[1])

    def _seconds(self, value: float) -> float:
        return value * self.scale if self.original else value

    # -- what tests read -----------------------------------------------------------------

    def held(self) -> dict[str, str]:
        """ip -> service (``namespace/name``) of every bound allocation."""
        with self.lock:
            self._expire()
            out = {}
            for a in self.allocations.values():
                if a.get("ip"):
                    name, _, namespace = a["hostname"].partition(".")
                    out[a["ip"]] = f"{namespace}/{name}"
            return out

    def count(self, method: str, path: str = "/v1/ip") -> int:
        """Requests seen with *method* on *path*."""
        with self.lock:
            return sum(1 for m, p, _, _ in self.requests if m == method and p == path)

    def bodies(self, method: str, path: str = "/v1/ip") -> list[bytes]:
        """Request bodies seen with *method* on *path*."""
        with self.lock:
            return [b for m, p, _, b in self.requests if m == method and p == path]

    def idle(self) -> bool:
        """Nothing waits to be bound."""
        with self.lock:
            return not self._queue and not self._binding

    def stop_renewals(self) -> None:
        """The DHCP server stops answering renewals: every lease disappears at its expiry."""
        with self.lock:
            self.renewing = False

    def lease(self, service: str, *, outside: bool = False) -> dict[str, Any]:
        """Make a bound allocation for *service* at once (tests: an orphan, say)."""
        namespace, _, name = service.partition("/")
        with self.lock:
            ip = (self.outside if outside else self.free).pop(0)
            now = time.time()
            entry: dict[str, Any] = {
                "id": str(uuid.uuid4()),
                "ip": ip,
                "hostname": f"{name}.{namespace}" if name else service,
                "state": 1,
                "bound": now,
                "expire": now + self._seconds(self.lease_time),
                "indexed": 0.0,
                "mac": "",
            }
            self.allocations[entry["id"]] = entry
        return entry

    # -- HTTP ----------------------------------------------------------------------------

    @staticmethod
    def reply(handler: BaseHTTPRequestHandler, code: int, body: bytes, content_type: str = "application/json") -> None:
        """Write one answer."""
        handler.send_response(code)
        if content_type:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()

    def json(self, handler: BaseHTTPRequestHandler, payload: Any) -> None:
        """200 with *payload* as Go's encoder writes it."""
        self.reply(handler, 200, json.dumps(payload).encode() + b"\n")

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        """Route one request as gorilla/mux does."""
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = urlsplit(handler.path).path  # mux matches the path; the query is ignored
        with self.lock:
            self.requests.append((method, path, dict(handler.headers), raw))
        routes = {"/v1/ip": ("POST", "DELETE"), "/v1/mac": ("POST", "DELETE"), "/v1/status": ("GET",)}
        if path not in routes or (path == "/v1/status" and not self.has_status):
            self.reply(handler, 404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        if method not in routes[path]:
            self.reply(handler, 405, b"", "")
            return
        if path == "/v1/status":
            self.json(handler, self.status())
        elif path == "/v1/mac":
            self.json(handler, {"Status": "success", "Rejected": None} if method == "POST" else {
                "Status": "success", "Unprocessed": None})  # fmt: skip
        elif method == "POST":
            self.post(handler, raw)
        else:
            self.delete(handler, raw)

    def status(self) -> dict[str, Any]:
        """``GET /v1/status``: allocations in id order, in-flight ones with a null Lease."""
        with self.lock:
            self._expire()
            allocations = [self._allocation(self.allocations[k]) for k in sorted(self.allocations)]
            macs = sorted(self.macs)
        return {"Allocations": allocations, "AvailableMACs": macs}

    def _allocation(self, a: dict[str, Any]) -> dict[str, Any]:
        mac = a.get("mac", "")
        bound = a.get("state", 1) == 1 and a.get("ip")
        interface = {"Index": 7 if bound else 0, "MTU": 1500 if bound else 0, "Name": "vf-abcdef" if bound else "",
                     "HardwareAddr": mac if bound else "", "Flags": 19 if bound else 0}  # fmt: skip
        lease = None
        if bound:
            start = float(a.get("bound") or time.time())
            expire = float(a.get("expire") or start + self._seconds(self.lease_time))
            length = expire - start
            lease = {
                "ServerID": "192.0.2.2",
                "FixedAddress": a["ip"],
                "Netmask": base64.b64encode(b"\xff\xff\xff\x00").decode(),
                "NextServer": "0.0.0.0",
                "Broadcast": "192.0.2.255",
                "Router": None,
                "DNS": None,
                "TimeServer": None,
                "DomainName": "",
                "MTU": 0,
                "Bound": _rfc3339(start),
                "Renew": _rfc3339(start + length / 2),
                "Rebind": _rfc3339(start + length * 0.875),
                "Expire": _rfc3339(expire),
            }
        return {"Interface": interface, "ID": a["id"], "Lease": lease, "Hostname": a["hostname"],
                "State": 1 if bound else 0}  # fmt: skip

    def _expire(self) -> None:
        """Drop allocations whose lease ran out (lock held): the etcd TTL. Renewed ones never run out."""
        now = time.time()
        for key, a in list(self.allocations.items()):
            if not a.get("ip"):
                continue
            if self.renewing:
                a["expire"] = now + self._seconds(self.lease_time)
            elif a.get("expire") and a["expire"] <= now:
                del self.allocations[key]
                if a.get("mac"):
                    self.macs.add(a["mac"])

    # -- POST ------------------------------------------------------------------------------

    def post(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        """``POST /v1/ip``: a fault, an instant lease, or the original's wait for the binder."""
        try:
            service = str(json.loads(raw).get("service", ""))
        except (ValueError, AttributeError):
            service = ""  # DHCPManager does not reject a bad body
        with self.lock:
            fault = self.post_faults.pop(0) if self.post_faults else ""
        if fault:
            self._fault(handler, fault, service)
        elif self.original:
            self._post_original(handler, service)
        else:
            entry = self.lease(service)
            self.json(handler, {"ip": entry["ip"], "id": entry["id"], "status": "success"})

    def _fault(self, handler: BaseHTTPRequestHandler, fault: str, service: str) -> None:
        if fault == "500":
            self.reply(handler, 500, b"<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html")
        elif fault == "garbage":
            self.reply(handler, 200, b"<html><body>upstream says hello</body></html>")
        elif fault == "wrong-json":
            self.json(handler, {"address": "192.0.2.77", "result": "ok"})
        elif fault == "empty-ip":
            self.json(handler, {"ip": "", "id": str(uuid.uuid4()), "status": "success"})
        elif fault == "timeout":
            time.sleep(self._seconds(self.request_timeout))
            self.json(handler, {"ip": "", "id": str(uuid.uuid4()), "status": "timeout"})
        elif fault == "lost":
            self.lease(service)
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
        elif fault.startswith("slow:"):
            entry = self.lease(service)
            time.sleep(float(fault.split(":")[1]))
            with contextlib.suppress(OSError):
                self.json(handler, {"ip": entry["ip"], "id": entry["id"], "status": "success"})
        elif fault == "twice":
            with self.lock:
                ip = next(iter(self.allocations.values()))["ip"]  # a confused server leases an address again
            self.json(handler, {"ip": ip, "id": str(uuid.uuid4()), "status": "success"})
        elif fault == "outside":
            entry = self.lease(service, outside=True)
            if self.original:
                entry["indexed"] = time.monotonic() + self.index_delay
            self.json(handler, {"ip": entry["ip"], "id": entry["id"], "status": "success"})
        else:
            raise ValueError(f"unknown POST fault {fault!r}")

    def _post_original(self, handler: BaseHTTPRequestHandler, service: str) -> None:
        """Write an unbound allocation, wait for the binder, and answer (or time out, deleting it)."""
        namespace, _, name = service.partition("/")
        key = str(uuid.uuid4())
        hostname = f"{name}.{namespace}" if name else service
        deadline = time.monotonic() + self._seconds(self.request_timeout)
        with self.lock:
            self.allocations[key] = {"id": key, "ip": "", "hostname": hostname, "state": 0, "mac": ""}
            self._queue.append((key, hostname))
            self.bound.notify_all()
            while not self._closing:
                entry = self.allocations.get(key)
                if entry is not None and entry.get("ip"):
                    # The index is written by another watcher, a little after this answer.
                    entry["indexed"] = time.monotonic() + self.index_delay
                    answer = {"ip": entry["ip"], "id": key, "status": "success"}
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    # The apiserver deletes its allocation; the controller binds it later all the same.
                    self.allocations.pop(key, None)
                    answer = {"ip": "", "id": key, "status": "timeout"}
                    break
                self.bound.wait(left)
            else:
                return
        with contextlib.suppress(OSError):
            self.json(handler, answer)

    def _bind_loop(self) -> None:
        """The controller: one allocation at a time, in order, from its watch."""
        while True:
            with self.lock:
                while not self._queue and not self._closing:
                    self.bound.wait(0.5)
                if self._closing:
                    return
                key, hostname = self._queue.popleft()
                mac = min(self.macs) if self.macs else ""
                if not mac:
                    self.allocations.pop(key, None)  # no MAC: the POST times out (the MAC and macvlan leak)
                    continue
                self.macs.discard(mac)
                self._binding = True
                known = mac in self.binding
                delay = self._seconds(self.bind_known if known else self.bind_new)
            time.sleep(delay)
            with self.lock:
                self._binding = False
                if mac not in self.binding:
                    if not self.free:
                        self.macs.add(mac)
                        self.allocations.pop(key, None)
                        continue
                    self.binding[mac] = self.free.pop(0)
                ip = self.binding[mac]
                entry = self.allocations.get(key)
                if entry is None:
                    # Deleted by the POST's timeout: the controller's write brings it back, bound.
                    self.late_bindings += 1
                    entry = {"id": key, "hostname": hostname}
                    self.allocations[key] = entry
                    entry["indexed"] = time.monotonic() + self.index_delay
                now = time.time()
                entry.update(ip=ip, mac=mac, state=1, bound=now, expire=now + self._seconds(self.lease_time))
                self.bound.notify_all()

    # -- DELETE ----------------------------------------------------------------------------

    def delete(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        """``DELETE /v1/ip``: by the IP index only; the MAC goes back to the pool, no DHCPRELEASE."""
        with self.lock:
            fault = self.delete_faults.pop(0) if self.delete_faults else ""
        if fault == "500":
            self.reply(handler, 500, b"<html>500 Internal Server Error</html>", "text/html")
            return
        try:
            text = json.loads(raw)["ip"]
            if not isinstance(text, str):
                raise TypeError(text)
            ip = str(netaddr.IPAddress(text, 4, flags=netaddr.INET_PTON))
        except (ValueError, KeyError, TypeError, netaddr.AddrFormatError):
            self.json(handler, {"ip": "invalid", "id": "", "status": "error"})
            return
        with self.lock:
            self._expire()
            now = time.monotonic()
            found = next(
                (a for a in self.allocations.values() if a.get("ip") == ip and a.get("indexed", 0.0) <= now), None
            )
            if found is not None:
                del self.allocations[found["id"]]
                if found.get("mac"):
                    self.macs.add(found["mac"])
        if found is None:
            self.json(handler, {"ip": ip, "id": "", "status": "error"})
        else:
            self.json(handler, {"ip": ip, "id": found["id"], "status": "success"})


def main(argv: list[str] | None = None) -> int:
    """Serve a stand-in until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="DHCPManager's API, as the original behaves (tests, benchmarks)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    parser.add_argument("--cidr", default="192.0.2.0/24", help="the DHCP scope (default: %(default)s)")
    parser.add_argument("--instant", action="store_true", help="answer at once instead of the original's timing")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply every duration (0.01: 3 s -> 30 ms)")
    parser.add_argument("--index-delay", type=float, default=0.03, help="seconds until DELETE finds a new address")
    args = parser.parse_args(argv)
    server = DhcpManagerStandIn(
        args.cidr,
        port=args.port,
        timing="instant" if args.instant else "original",
        time_scale=args.time_scale,
        index_delay=args.index_delay,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"listening on {server.url}", flush=True)
    while not stop.wait(1.0):
        pass
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
