"""The HTTP(S) server of the bundled address service: sockets, threads, auth, metrics.

What is said on the wire is ``wire``'s business; this module reads a
request, asks ``wire`` for the answer, and writes it back.
"""

from __future__ import annotations

import hmac
import logging
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from metallb.plugins.address_service import wire
from metallb.plugins.address_service.metrics import Metrics
from metallb.plugins.address_service.service import AddressService
from prometheus_client import CollectorRegistry

__all__ = ["HttpServer", "make_http_server"]

log = logging.getLogger(__name__)


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
        answer = self._answer(method, path)
        self._send(answer)
        self.server.metrics.observe(
            method=method, path=wire.path_label(path), code=answer.code, seconds=time.monotonic() - started
        )

    def _answer(self, method: str, path: str) -> wire.Answer:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > wire.MAX_BODY:
            self.close_connection = True  # the body is not read: the connection cannot carry another request
            return wire.BAD_LENGTH if length < 0 else wire.TOO_LARGE
        body = self.rfile.read(length) if length else b""
        if path == "/metrics" and method == "GET":
            payload, content_type = self.server.metrics.exposition()
            return wire.Answer(code=200, body=payload, content_type=content_type)
        found = wire.route(method, path)
        if isinstance(found, wire.Answer):
            return found
        if wire.needs_token(path) and not self._authorised():
            return wire.UNAUTHORIZED
        return wire.call(found, self.server.service, body, what=f"{method} {path}")

    def _authorised(self) -> bool:
        token = self.server.auth_token
        if not token:
            return True
        given = self.headers.get("X-Auth-Token") or ""
        return hmac.compare_digest(given.encode(), token.encode())

    def _send(self, answer: wire.Answer) -> None:
        self.send_response(answer.code)
        if answer.content_type:
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)
        self.wfile.flush()


class HttpServer(ThreadingHTTPServer):
    """A threading HTTP(S) server bound to one :class:`AddressService`.

    Args:
        address: ``(host, port)`` to bind; port 0 picks a free one.
        service: the lease table it serves.
        metrics: where requests are counted (and what ``/metrics`` shows).
        auth_token: required ``X-Auth-Token`` on ``/v1/*``; "" disables the check.
        ssl_context: serve HTTPS with it.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        service: AddressService,
        *,
        metrics: Metrics,
        auth_token: str = "",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.auth_token = auth_token
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
    service: AddressService,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_cert: str = "",
    tls_key: str = "",
    auth_token: str = "",
    registry: CollectorRegistry | None = None,
) -> HttpServer:
    """Bind an :class:`HttpServer` with its :class:`Metrics` in *registry* (port 0 picks a free port; see ``.url``)."""
    context = None
    if tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key or None)
    metrics = Metrics(service, registry=registry)
    return HttpServer((host, port), service, metrics=metrics, auth_token=auth_token, ssl_context=context)
