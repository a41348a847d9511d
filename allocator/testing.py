"""Test helpers for plugin authors, shipped with metallb so plugins can import them.

::

    from metallb.allocator.testing import JsonApiStub, allocator_for, check_source_contract

- :func:`plugin_manager_with` and :func:`allocator_for` build hermetic plugin
  managers and allocators, with only the plugins a test names (and metallb's
  own announcement protocols).
- :func:`check_source_contract` drives any :class:`~metallb.allocator.AddressSource`
  through the documented contract (:data:`RULES`) and raises
  :class:`ContractViolation` naming the rule that broke (implemented in
  :mod:`metallb.allocator.contract`).
- :class:`JsonApiStub` is a small threaded JSON REST server on 127.0.0.1, a
  stand-in for the API a remote pool source talks to.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeAlias
from urllib.parse import parse_qs, urlsplit

import attrs
from metallb.allocator.allocator import Allocator
from metallb.allocator.config import parse_config
from metallb.allocator.contract import (
    RULES,
    ContractPreconditionError,
    ContractReport,
    ContractViolation,
    check_source_contract,
)
from metallb.allocator.model import frozen_mapping
from metallb.allocator.plugins import ENTRY_POINT_GROUP, PluginManager, get_plugin_manager

__all__ = [
    "RULES",
    "ContractPreconditionError",
    "ContractReport",
    "ContractViolation",
    "Handler",
    "JsonApiStub",
    "StubRequest",
    "allocator_for",
    "builtin_protocol_plugins",
    "check_source_contract",
    "plugin_manager_with",
    "wait_for",
]


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll *predicate* until it returns something truthy, and return that.

    Raises AssertionError naming *what* after *timeout* seconds. Exceptions of
    the types in *ignore* (say ``OSError`` while a server starts) count as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# -- plugin managers and allocators ----------------------------------------------------


def builtin_protocol_plugins() -> list[object]:
    """metallb's own announcement-protocol plugins (``layer2``, ``bgp``), from its entry points.

    Their entry modules are light (no announcer is built until asked), so
    loading them costs little and needs only the base dependencies.
    """
    try:
        eps = importlib.metadata.distribution("metallb").entry_points
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - metallb runs installed
        return []
    loaded = (ep.load() for ep in eps if ep.group == ENTRY_POINT_GROUP)
    return [plugin for plugin in loaded if hasattr(plugin, "metallb_announcer_protocols")]


def plugin_manager_with(*plugins: object, entry_points: bool = False, protocols: bool = True) -> PluginManager:
    """A plugin manager with *plugins* (modules or objects with ``@hookimpl``).

    Installed plugins are left out unless ``entry_points=True``, so a test sees
    only what it names and never depends on what else is installed, except
    metallb's own announcement protocols (``layer2``, ``bgp``; see
    :func:`builtin_protocol_plugins`), which every install has and which a pool
    entry's ``protocol`` needs; ``protocols=False`` leaves them out too.
    """
    pm = get_plugin_manager(entry_points=entry_points)
    for plugin in [*(builtin_protocol_plugins() if protocols else ()), *plugins]:
        if not pm.is_registered(plugin):  # already loaded through its entry point
            pm.register(plugin)
    pm.check_pending()
    return pm


def allocator_for(config_text: str, *plugins: object, entry_points: bool = False, protocols: bool = True) -> Allocator:
    """Parse *config_text* with *plugins* (see :func:`plugin_manager_with`) and return an :class:`Allocator`.

    Raises :class:`~metallb.allocator.ConfigError` as ``parse_config`` does.
    """
    pm = plugin_manager_with(*plugins, entry_points=entry_points, protocols=protocols)
    return Allocator(plugin_manager=pm, config=parse_config(config_text, plugin_manager=pm))


# -- a stand-in JSON REST API -----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StubRequest:
    """One request the stub received.

    Attributes:
        method: ``GET``, ``POST`` ...
        path: the path without the query string.
        query: query parameters (the last value of each).
        headers: request headers, names in lower case.
        body: the decoded JSON body, or None.
        params: named groups of the route pattern that matched.
    """

    method: str
    path: str
    query: Mapping[str, str] = attrs.field(factory=frozen_mapping, converter=frozen_mapping, eq=False)  # type: ignore[arg-type]
    headers: Mapping[str, str] = attrs.field(factory=frozen_mapping, converter=frozen_mapping, eq=False)  # type: ignore[arg-type]
    body: Any = None
    params: Mapping[str, str] = attrs.field(factory=frozen_mapping, converter=frozen_mapping, eq=False)  # type: ignore[arg-type]


#: A route handler: takes the request, returns (status, JSON body or None for no body).
Handler: TypeAlias = Callable[[StubRequest], tuple[int, Any]]


class JsonApiStub:
    """A threaded JSON REST API on 127.0.0.1 (a free port), for tests.

    Routes are a method and a regular expression matched against the whole
    path; named groups reach the handler as ``request.params``. Unmatched
    requests get 404, a handler that raises gets 500. Every request is kept in
    :attr:`requests`.

    Example::

        with JsonApiStub() as api:
            api.add("GET", r"/items/(?P<id>\\d+)/", lambda r: (200, {"id": int(r.params["id"])}))
            httpx.get(f"{api.url}/items/7/").json()   # {"id": 7}
    """

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.Lock()
        self.requests: list[StubRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.url if self._server else "stopped"
        return f"<JsonApiStub({state}, routes={len(self._routes)}, requests={len(self.requests)})>"

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Answer *method* requests whose path fully matches *pattern* with *handler*."""
        with self._lock:
            self._routes.append((method.upper(), re.compile(pattern), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`."""

        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler

        return register

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; only while started."""
        if self._server is None:
            raise RuntimeError("the stub is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> JsonApiStub:
        """Listen on a free loopback port and serve in a daemon thread."""
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
            self._server.daemon_threads = True
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="json-api-stub", daemon=True
            )  # a short poll interval makes stop() quick
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> JsonApiStub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def dispatch(self, request: StubRequest) -> tuple[int, Any]:
        """Answer *request* through the first matching route (used by the server thread)."""
        with self._lock:
            routes = list(self._routes)
        for method, pattern, handler in routes:
            match = pattern.fullmatch(request.path)
            if method == request.method and match is not None:
                request = attrs.evolve(request, params=match.groupdict())
                with self._lock:
                    self.requests.append(request)
                try:
                    return handler(request)
                except Exception as exc:  # noqa: BLE001 - the test sees a 500 with the reason
                    return 500, {"detail": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            self.requests.append(request)
        return 404, {"detail": f"no route for {request.method} {request.path}"}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    self._send(400, {"detail": "body is not JSON"})
                    return
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = StubRequest(method=self.command, path=parts.path, query=query, headers=headers, body=body)
                self._send(*stub.dispatch(request))

            def _send(self, status: int, payload: Any) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read :attr:`JsonApiStub.requests` instead."""

        return _Handler
