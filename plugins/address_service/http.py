"""The HTTP(S) server of the bundled address service: one event loop, llhttp, worker threads.

What is said on the wire is ``wire``'s business; this module reads requests,
asks ``wire`` for the answers, writes them back, and keeps slow, greedy and
silent clients from holding the server:

* **One event-loop thread owns every socket.** A connection costs a few
  objects, not a thread. Requests are parsed by llhttp (``httptools``),
  Node.js's HTTP/1.1 parser.
* **Answers that may wait run on worker threads** (a DHCP lease takes
  seconds, a state-file write an fsync), at most one per connection; threads
  are made on demand and leave after a minute without work, so threads never
  outnumber requests in progress. A service that never waits
  (``AddressService.blocking`` false: the memory backend without a state
  file) is answered on the loop, sparing two thread switches per request,
  except for ``/v1/status`` and ``/metrics``, which grow with the table.
* **Limits** (:class:`Limits`): a request must arrive whole within
  ``read_timeout`` and its answer be taken within it; a connection without a
  request in progress (a new one too) is closed after ``idle_timeout``; at
  ``max_connections`` a new connection closes the one idle the longest, or
  gets 503 when none is idle.
* **Descriptors.** The cap is lowered to what ``RLIMIT_NOFILE`` leaves (with
  room for the state file and the backend); should ``accept`` still fail with
  ``EMFILE``, the oldest idle connections are shed, and when none is idle,
  accepting pauses with backoff instead of spinning.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import functools
import hmac
import logging
import os
import queue
import resource
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import urlsplit

import attrs
import httptools
from metallb.allocator.retry import Backoff
from metallb.plugins.address_service import wire
from metallb.plugins.address_service.metrics import Metrics
from metallb.plugins.address_service.service import AddressService
from prometheus_client import CollectorRegistry

__all__ = ["HttpServer", "Limits", "descriptor_budget", "make_http_server"]

log = logging.getLogger(__name__)

#: Longest request head (request line and headers); longer ones get 431.
MAX_HEAD = 64 * 1024
#: Descriptors kept free for everything but connections: state file, backend sockets, /proc reads.
FD_RESERVE = 16
#: Connections accepted per wake-up, so reads of open connections are not starved by a flood.
ACCEPT_BATCH = 32
#: Out of descriptors, an idle connection younger than this is not shed: its request may be on its way.
SHED_GRACE = 0.02
#: How often deadlines are checked: timeouts are exact to within this.
SWEEP_INTERVAL = 0.1
#: How long a closing connection may take to read its last answer before it is cut.
CLOSE_GRACE = 1.0
#: Listen backlog (the kernel caps it at net.core.somaxconn).
BACKLOG = 1024
#: A worker thread without a job for this long leaves.
WORKER_IDLE_EXIT = 60.0
#: Answers always computed on the loop thread: they neither wait nor take the service's locks.
INLINE_PATHS = frozenset({"/healthz", "/readyz"})
#: Answers always computed on a worker: they grow with the lease table (milliseconds for thousands).
WORKER_PATHS = frozenset({"/v1/status", "/metrics"})

SERVER = b"metallb-address-service/1"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
SERVICE_UNAVAILABLE = wire.json_answer(503, {"status": "error", "message": "too many connections, try again"})
HEADERS_TOO_LARGE = wire.json_answer(431, {"status": "error", "message": "request headers too large"})


@attrs.frozen(kw_only=True)
class Limits:
    """What one client may hold.

    Attributes:
        read_timeout: seconds for a request to arrive whole (from its first
            byte) and for its answer to be taken; 408 and close otherwise.
        idle_timeout: seconds a connection may wait without a request in
            progress (keep-alive, or new and silent) before it is closed.
        max_connections: open connections at most; lowered to what the
            descriptor limit leaves.
    """

    read_timeout: float = 10.0
    idle_timeout: float = 5.0
    max_connections: int = 256

    def __attrs_post_init__(self) -> None:
        for name in ("read_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} {value!r}: must be more than 0 seconds")
        if self.max_connections < 1:
            raise ValueError(f"max_connections {self.max_connections!r}: must be at least 1")


def descriptor_budget() -> int | None:
    """Descriptors left for connections: the soft ``RLIMIT_NOFILE`` less those open and :data:`FD_RESERVE`."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = 3 * FD_RESERVE
    return int(soft) - used - FD_RESERVE


# -- answers as bytes --------------------------------------------------------------------------


_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_date_cache: tuple[int, bytes] = (0, b"")


def _server_and_date() -> bytes:
    """``Server`` and ``Date`` headers; the date is formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, b"Server: %s\r\nDate: %s\r\n" % (SERVER, formatdate(now, usegmt=True).encode()))
    return _date_cache[1]


def _encode(answer: wire.Answer, *, head_only: bool, close: bool, keep_alive_header: bool) -> bytes:
    parts = [_STATUS_LINES.get(answer.code) or b"HTTP/1.1 %d \r\n" % answer.code, _server_and_date()]
    if answer.content_type:
        parts.append(b"Content-Type: %s\r\n" % answer.content_type.encode())
    parts.append(b"Content-Length: %d\r\n" % len(answer.body))
    if close:
        parts.append(b"Connection: close\r\n")
    elif keep_alive_header:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(answer.body)
    return b"".join(parts)


def _parser_error(exc: Exception) -> wire.Answer:
    """The 400 for a request llhttp refused; a bad Content-Length keeps the server's historical answer."""
    text = str(exc)
    if "content-length" in text.lower():
        return wire.BAD_LENGTH
    return wire.json_answer(400, {"status": "error", "message": f"malformed HTTP request: {text[:200]}"})


def _timed_out(seconds: float) -> wire.Answer:
    return wire.json_answer(408, {"status": "error", "message": f"request not received within {seconds:g} s"})


# -- worker threads ------------------------------------------------------------------------------


class _Workers:
    """Daemon threads made on demand, up to *limit*; one leaves after :data:`WORKER_IDLE_EXIT` without work.

    Daemon threads, unlike ``ThreadPoolExecutor``'s, never hold up the exit
    of a process stopped while a backend waits for a lease.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)
        with self._lock:
            if self._idle:
                self._idle -= 1  # that worker takes it
                return
            if self._threads >= self.limit:
                return  # queued for the next worker that finishes
            self._threads += 1
        threading.Thread(target=self._work, daemon=True, name="address-service-worker").start()

    def stop(self) -> None:
        """Let every thread leave once its current job is done."""
        with self._lock:
            count, self.limit = self._threads, 0
        for _ in range(count):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=WORKER_IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if not self._idle:
                        continue  # counted as busy: a submit is about to hand us a job
                    self._idle -= 1
                    self._threads -= 1
                    return
            if job is None:
                with self._lock:
                    self._threads -= 1
                return
            try:
                job()
            except Exception:
                log.exception("address-service worker job failed")
            with self._lock:
                self._idle += 1


# -- connections ---------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class _Request:
    method: str
    target: bytes
    token: bytes | None
    body: bytes
    keep_alive: bool
    http10: bool


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, one at a time."""

    def __init__(self, server: HttpServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[_Request | wire.Answer] = collections.deque()
        self.since = 0.0  # when it entered its current tracked state
        self.where: collections.OrderedDict[_Connection, None] | None = None  # the server's set it is tracked in
        self.busy = False  # a request is being answered
        self.closing = False
        self.closed = False
        self.dropped = False  # dropped before its transport existed
        self.stopped = False  # the parser met something it cannot go on from: no more requests
        self.eof = False  # the client has closed its side
        self.reading_paused = False
        self.writing_paused = False
        # the request being parsed
        self.in_message = False
        self.head_done = False
        self.head_bytes = 0  # parsed so far: request line and headers
        self.head_chunks = 0  # received while the head was incomplete (what llhttp may be holding)
        self.url = b""
        self.token: bytes | None = None
        self.expect_continue = False
        self.content_length = 0
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.refused: wire.Answer | None = None

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.dropped:
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._forget(self)

    def pause_writing(self) -> None:
        self.writing_paused = True
        if not self.busy and not self.closing:
            self.server._track(self, self.server._writing)

    def resume_writing(self) -> None:
        self.writing_paused = False
        if not self.busy and not self.closing:
            self._go()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.closed or self.stopped:
            return
        if self.where is self.server._idle:
            self.server._track(self, self.server._reading)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._stop(None)  # no protocol upgrades: answer what came, then close
        except httptools.HttpParserError as exc:
            self._stop(_parser_error(exc))
        if self.in_message and not self.head_done:
            self.head_chunks += len(data)
            if self.head_chunks > MAX_HEAD:
                self.refused = HEADERS_TOO_LARGE
        if self.refused is not None and not self.stopped:
            self._stop(self.refused)
        if not self.busy:
            self._go()
        elif self.queue and not self.reading_paused and self.transport is not None:
            self.reading_paused = True  # pipelined requests wait in the socket, not here
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        """The client is done sending: answer what it asked for, then close (at once if nothing is asked)."""
        self.eof = True
        return self.busy or bool(self.queue)

    # -- llhttp callbacks

    def on_message_begin(self) -> None:
        self.in_message = True
        self.head_done = False
        self.head_bytes = 0
        self.head_chunks = 0
        self.url = b""
        self.token = None
        self.expect_continue = False
        self.content_length = 0
        self.body = []
        self.body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        lower = name.lower()
        if lower == b"x-auth-token":
            self.token = value
        elif lower == b"content-length":
            try:
                self.content_length = int(value)
            except ValueError:  # llhttp refuses these first; never trust that blindly
                self.refused = wire.BAD_LENGTH
        elif lower == b"expect":
            self.expect_continue = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        self.head_done = True
        if self.head_bytes > MAX_HEAD:
            self.refused = HEADERS_TOO_LARGE
        elif self.content_length > wire.MAX_BODY:
            self.refused = wire.TOO_LARGE  # answered without reading the body, then closed
        elif self.expect_continue and not self.busy and not self.queue and self.transport is not None:
            self.transport.write(CONTINUE)  # (never between a pipelined request and its answer)

    def on_body(self, body: bytes) -> None:
        if self.refused is not None:
            return
        self.body_bytes += len(body)
        if self.body_bytes > wire.MAX_BODY:  # chunked: no length up front
            self.refused = wire.TOO_LARGE
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.refused is not None:
            return
        self.queue.append(
            _Request(
                method=self.parser.get_method().decode("ascii", "replace"),
                target=self.url,
                token=self.token,
                body=b"".join(self.body),
                keep_alive=self.parser.should_keep_alive(),
                http10=self.parser.get_http_version() == "1.0",
            )
        )
        self.body = []

    # -- answering

    def _stop(self, answer: wire.Answer | None) -> None:
        """Parse no more: answer what is queued, then *answer* (if any), then close."""
        self.stopped = True
        if answer is not None:
            self.queue.append(answer)
        elif self.queue and isinstance(self.queue[-1], _Request):
            self.queue[-1].keep_alive = False
        else:
            self.queue.append(_parser_error(ValueError("protocol upgrades are not supported")))

    def _go(self) -> None:
        """Answer the queued requests in order (a worker's answer resumes here), then wait for the client."""
        server = self.server
        while self.queue and not self.busy and not self.closing and not self.writing_paused:
            item = self.queue.popleft()
            if isinstance(item, wire.Answer):  # refused: answer and close
                server.metrics.connections_closed.labels("bad-request").inc()
                self.write(item, head_only=False, close=True, keep_alive_header=False)
                return
            server._untrack(self)
            server._dispatch(self, item)  # answers through respond() now, or sets busy and a worker answers
        if self.busy or self.closing or self.closed:
            return
        if self.eof and not self.queue:
            self.close()
            return
        waiting = server._writing if self.writing_paused else server._reading if self.in_message else server._idle
        if self.where is not waiting:  # the clock of a request still arriving keeps running
            server._track(self, waiting)
        if self.writing_paused:
            return
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    def write(self, answer: wire.Answer, *, head_only: bool, close: bool, keep_alive_header: bool) -> None:
        if self.transport is None or self.closed:
            return
        self.transport.write(_encode(answer, head_only=head_only, close=close, keep_alive_header=keep_alive_header))
        if close:
            self.close()

    def respond(self, request: _Request, answer: wire.Answer, started: float, path: str) -> None:
        """Write the answer to *request* and count it; close if the request asked for it."""
        close = not request.keep_alive
        self.write(answer, head_only=request.method == "HEAD", close=close, keep_alive_header=request.http10)
        self.server.metrics.observe(
            method=request.method, path=wire.path_label(path), code=answer.code, seconds=time.monotonic() - started
        )

    def answered(self, request: _Request, answer: wire.Answer, started: float, path: str) -> None:
        """A worker's answer to *request*, on the loop thread: write it and go on with the next."""
        self.busy = False
        if self.closed or self.closing:
            return
        self.respond(request, answer, started, path)
        self._go()

    # -- closing

    def close(self) -> None:
        """Close after the last answer is taken (cut after :data:`CLOSE_GRACE`)."""
        if self.closing or self.closed:
            return
        self.closing = True
        self.queue.clear()
        if self.transport is None:
            self.drop()
            return
        self.server._track(self, self.server._closing)
        self.transport.close()

    def drop(self) -> None:
        """Close now, discarding anything unsent: the descriptor is free at the next loop iteration."""
        self.closing = True
        self.queue.clear()
        self.server._forget(self)
        if self.transport is not None:
            self.transport.abort()
        elif not self.dropped:
            self.dropped = True  # still in the TLS handshake (or not yet wrapped): end it
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# -- the server ----------------------------------------------------------------------------------


class HttpServer:
    """The HTTP(S) server of one :class:`AddressService`.

    Args:
        address: ``(host, port)`` to bind; port 0 picks a free one.
        service: the lease table it serves.
        metrics: where requests are counted (and what ``/metrics`` shows).
        auth_token: required ``X-Auth-Token`` on ``/v1/*``; "" disables the check.
        ssl_context: serve HTTPS with it.
        limits: timeouts and the connection cap.

    Serve with :meth:`serve_forever` (or :meth:`start_thread`); stop with
    :meth:`shutdown`, then :meth:`server_close`.
    """

    def __init__(
        self,
        address: tuple[str, int],
        service: AddressService,
        *,
        metrics: Metrics,
        auth_token: str = "",
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.auth_token = auth_token.encode()
        self.ssl_context = ssl_context
        self.limits = limits or Limits()
        self.scheme = "https" if ssl_context is not None else "http"
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(BACKLOG)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        budget = descriptor_budget()
        self.max_connections = max(1, min(self.limits.max_connections, budget if budget is not None else 1 << 30))
        if self.max_connections < self.limits.max_connections:
            log.warning(
                "serving at most %d connections, not %d: the descriptor limit (ulimit -n) leaves no more",
                self.max_connections,
                self.limits.max_connections,
            )
        self._workers = _Workers(self.max_connections)
        self._inline = not service.blocking
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._accepting = False
        self._accept_backoff = Backoff(initial=0.01, cap=1.0)
        self._conns: set[_Connection] = set()
        # Connections by state, oldest first: deadlines are checked from the front.
        self._idle: collections.OrderedDict[_Connection, None] = collections.OrderedDict()
        self._reading: collections.OrderedDict[_Connection, None] = collections.OrderedDict()
        self._writing: collections.OrderedDict[_Connection, None] = collections.OrderedDict()
        self._closing: collections.OrderedDict[_Connection, None] = collections.OrderedDict()
        metrics.connections.set_function(lambda: len(self._conns))

    @property
    def url(self) -> str:
        """Where clients reach it, e.g. ``http://127.0.0.1:8000``."""
        host, port = self.server_address
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    # -- running

    def serve_forever(self) -> None:
        """Serve on this thread until :meth:`shutdown`."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # this thread's
        self._loop = loop
        self._stopped.clear()
        try:
            self._start_accepting()
            loop.call_later(SWEEP_INTERVAL, self._sweep)
            loop.call_soon(self._serving.set)
            loop.run_forever()
            self._stop_accepting()
            for conn in list(self._conns):
                conn.drop()
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]  # TLS handshakes
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(asyncio.sleep(0))  # let the transports close their sockets
        finally:
            loop.close()
            asyncio.set_event_loop(None)
            self._loop = None
            self._serving.clear()
            self._stopped.set()

    def start_thread(self) -> threading.Thread:
        """Serve in a daemon thread (tests, the command); returns once it accepts connections."""
        thread = threading.Thread(target=self.serve_forever, daemon=True, name="address-service-http")
        thread.start()
        self._serving.wait(10)
        return thread

    def shutdown(self) -> None:
        """Stop serving (open connections are cut) and wait until :meth:`serve_forever` returns."""
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # closed meanwhile
                pass
        self._stopped.wait(10)

    def server_close(self) -> None:
        """Close the listening socket and let the worker threads leave."""
        self.socket.close()
        self._workers.stop()

    # -- accepting

    def _start_accepting(self) -> None:
        if self._loop is not None and not self._accepting and self.socket.fileno() >= 0:
            self._loop.add_reader(self.socket, self._accept)
            self._accepting = True

    def _stop_accepting(self) -> None:
        if self._loop is not None and self._accepting:
            self._loop.remove_reader(self.socket)
            self._accepting = False

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._out_of_descriptors(exc)
                else:
                    log.warning("accept failed: %s", exc)
                return
            self._accept_backoff.reset()
            if not self._admit(sock):
                return  # an eviction: its descriptor is free at the next iteration, so accept then

    def _out_of_descriptors(self, exc: OSError) -> None:
        """Shed the oldest idle connection (accept is retried at the next iteration), else pause accepting.

        Linux refuses ``accept`` with ``EMFILE`` before it looks for a
        connection, so first make sure one is waiting. One connection at a
        time, as at the cap, and only one idle for :data:`SHED_GRACE`: a
        connection accepted a moment ago is idle until its request is read.
        """
        poller = select.poll()  # no descriptor needed, unlike epoll
        poller.register(self.socket, select.POLLIN)
        if not poller.poll(0):
            return  # nobody waiting: the listening socket wakes us when someone comes
        oldest = next(iter(self._idle), None)
        if oldest is not None and time.monotonic() - oldest.since >= SHED_GRACE:
            self._closed_by_server(oldest, "shed", drop=True)
            return
        delay = self._accept_backoff.next()
        if self._accept_backoff.failures == 1:
            log.warning("cannot accept connections (%s) and none is idle: pausing accept", exc.strerror)
        self._stop_accepting()
        assert self._loop is not None
        self._loop.call_later(delay, self._start_accepting)

    def _admit(self, sock: socket.socket) -> bool:
        """Serve *sock*, or refuse it at the cap; False when a connection was evicted for it."""
        evicted = False
        if len(self._conns) >= self.max_connections:
            if not self._idle:
                self._reject(sock)
                return True
            self._closed_by_server(next(iter(self._idle)), "evicted", drop=True)
            evicted = True
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else Nagle and delayed ACK add ~40 ms
        except OSError:  # reset by the client already
            sock.close()
            return not evicted
        conn = _Connection(self, sock)
        self._conns.add(conn)
        self._track(conn, self._idle)
        assert self._loop is not None
        task = self._loop.create_task(self._wrap(conn, sock))
        task.add_done_callback(lambda t: self._wrapped(conn, t))
        return not evicted

    async def _wrap(self, conn: _Connection, sock: socket.socket) -> None:
        assert self._loop is not None
        await self._loop.connect_accepted_socket(
            lambda: conn,
            sock,
            ssl=self.ssl_context,
            ssl_handshake_timeout=self.limits.read_timeout if self.ssl_context is not None else None,
        )

    def _wrapped(self, conn: _Connection, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is not None:  # a failed TLS handshake, mostly
            if not task.cancelled():
                log.debug("connection not set up: %s", task.exception())
            conn.closed = True
            self._forget(conn)
            conn.sock.close()  # a transport made of it has closed it already: then this does nothing

    def _reject(self, sock: socket.socket) -> None:
        """503 to a connection over the cap (TLS ones are just closed: no handshake for a refusal)."""
        self.metrics.connections_closed.labels("rejected").inc()
        try:
            sock.setblocking(False)
            if self.ssl_context is None:
                sock.send(_encode(SERVICE_UNAVAILABLE, head_only=False, close=True, keep_alive_header=False))
                for _ in range(4):  # what the client sent already; unread data would turn the close into a reset
                    if not sock.recv(65536):
                        break
        except OSError:
            pass
        finally:
            sock.close()

    # -- requests

    def _dispatch(self, conn: _Connection, request: _Request) -> None:
        started = time.monotonic()
        target = request.target
        path = (
            target.partition(b"?")[0].decode("latin-1")
            if target.startswith(b"/")
            else urlsplit(target.decode("latin-1")).path
        )
        method = request.method
        compute: Callable[[], wire.Answer]
        if path == "/metrics" and method == "GET":
            compute = self._metrics_answer
        else:
            found = wire.route(method, path)
            if isinstance(found, wire.Answer):
                conn.respond(request, found, started, path)
                return
            if wire.needs_token(path) and not self._authorised(request.token):
                conn.respond(request, wire.UNAUTHORIZED, started, path)
                return
            compute = functools.partial(wire.call, found, self.service, request.body, what=f"{method} {path}")
        if path in INLINE_PATHS or (self._inline and path not in WORKER_PATHS):
            conn.respond(request, compute(), started, path)
            return
        conn.busy = True
        self._in_worker(conn, request, started, path, compute)

    def _in_worker(
        self,
        conn: _Connection,
        request: _Request,
        started: float,
        path: str,
        compute: Callable[[], wire.Answer],
    ) -> None:
        loop = self._loop
        assert loop is not None

        def job() -> None:
            try:
                answer = compute()
            except Exception as exc:  # wire.call answers its own errors; this is /metrics failing
                log.exception("%s %s failed", request.method, path)
                answer = wire.json_answer(500, {"status": "error", "message": f"internal error: {type(exc).__name__}"})
            try:
                loop.call_soon_threadsafe(conn.answered, request, answer, started, path)
            except RuntimeError:  # the loop has stopped: the server is shutting down
                pass

        self._workers.submit(job)

    def _metrics_answer(self) -> wire.Answer:
        payload, content_type = self.metrics.exposition()
        return wire.Answer(code=200, body=payload, content_type=content_type)

    def _authorised(self, given: bytes | None) -> bool:
        token = self.auth_token
        if not token:
            return True
        return hmac.compare_digest(given or b"", token)

    # -- connection states and deadlines

    def _track(self, conn: _Connection, where: collections.OrderedDict[_Connection, None]) -> None:
        """Put *conn* in state *where* (idle, reading, writing, closing) from now on."""
        if conn.where is not None:
            conn.where.pop(conn, None)
        if conn.closed or conn not in self._conns:
            conn.where = None
            return
        conn.where = where
        conn.since = time.monotonic()
        where[conn] = None

    def _untrack(self, conn: _Connection) -> None:
        if conn.where is not None:
            conn.where.pop(conn, None)
            conn.where = None

    def _forget(self, conn: _Connection) -> None:
        self._untrack(conn)
        self._conns.discard(conn)

    def _closed_by_server(self, conn: _Connection, reason: str, *, drop: bool = False) -> None:
        self.metrics.connections_closed.labels(reason).inc()
        if drop:
            conn.drop()
        else:
            conn.close()

    def _sweep(self) -> None:
        """Close connections past their deadline; runs every :data:`SWEEP_INTERVAL`."""
        loop = self._loop
        if loop is None:
            return
        now = time.monotonic()
        limits = self.limits
        for where, timeout in (
            (self._idle, limits.idle_timeout),
            (self._reading, limits.read_timeout),
            (self._writing, limits.read_timeout),
            (self._closing, CLOSE_GRACE),
        ):
            while where:
                conn = next(iter(where))
                if conn.since + timeout > now:
                    break
                if where is self._reading:
                    self.metrics.connections_closed.labels("read-timeout").inc()
                    conn.write(_timed_out(limits.read_timeout), head_only=False, close=True, keep_alive_header=False)
                    if conn.where is where:  # not moved on (no transport): cut it
                        conn.drop()
                elif where is self._idle:
                    self._closed_by_server(conn, "idle-timeout", drop=conn.transport is None)
                    if conn.where is where:
                        conn.drop()
                else:
                    if where is self._writing:
                        self.metrics.connections_closed.labels("write-timeout").inc()
                    conn.drop()
        loop.call_later(SWEEP_INTERVAL, self._sweep)


def make_http_server(
    service: AddressService,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_cert: str = "",
    tls_key: str = "",
    auth_token: str = "",
    registry: CollectorRegistry | None = None,
    limits: Limits | None = None,
) -> HttpServer:
    """Bind an :class:`HttpServer` with its :class:`Metrics` in *registry* (port 0 picks a free port; see ``.url``)."""
    context = None
    if tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key or None)
    metrics = Metrics(service, registry=registry)
    return HttpServer((host, port), service, metrics=metrics, auth_token=auth_token, ssl_context=context, limits=limits)
