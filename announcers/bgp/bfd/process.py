"""BFD in a child process of its own: nothing the speaker's process does can delay a BFD packet.

A thread is not enough. Loading 100 000 routes, the speaker's interpreter runs
garbage collections over millions of objects, each holding the interpreter
lock for tens to hundreds of milliseconds: measured with BFD on a thread, gaps
between our packets reached 390 ms at 100 ms x 3 and the session flapped; in a
process of its own the largest gap was 101 ms (``bench/bfd.py``). The child
has its own interpreter lock and collector, and holds a few hundred objects.

:class:`BfdProcess` has the interface of
:class:`~metallb.announcers.bgp.bfd.service.BfdService`, which runs inside the
child (``python -m metallb.announcers.bgp.bfd.process``). They talk in JSON
lines over the child's stdin and stdout: configuration and status requests one
way; state changes, status replies, log records and metric updates the other
(packet counters are summed and sent every 100 ms). The child starts from the
thread that creates the :class:`BfdProcess`, so it lives in that thread's
network namespace. If it dies, the parent logs why, starts a new one (with
backoff) and configures it again; when the parent goes, even killed, the
child sees its stdin close, sends AdminDown and exits: RFC 5882 has routers
treat AdminDown as no path failure, so one that does graceful restart keeps
our routes while the speaker restarts.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import itertools
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO, Any

import attrs
import netaddr
from metallb.allocator.model import BfdProfile
from metallb.allocator.retry import Backoff
from metallb.announcers.bgp.bfd.auth import AuthKey
from metallb.announcers.bgp.bfd.machine import Transition
from metallb.announcers.bgp.bfd.packet import AuthType, State
from metallb.announcers.bgp.bfd.service import BfdService, BfdStatus, Listener, MetricsSink, SessionSpec

__all__ = ["BfdProcess", "main"]

log = logging.getLogger(__name__)
_MODULE = "metallb.announcers.bgp.bfd.process"
_FLUSH = 0.1  # seconds between the child's packet-counter updates
_NICE = -10  # the child's scheduling priority, when allowed


def _key_text(spec: SessionSpec) -> str:
    return f"{spec.peer}|{spec.local or ''}|{int(spec.multihop)}"


def _spec_json(spec: SessionSpec) -> dict[str, Any]:
    auth = spec.auth
    return {
        "peer": str(spec.peer),
        "local": str(spec.local) if spec.local is not None else None,
        "multihop": spec.multihop,
        "profile": attrs.asdict(spec.profile),
        "auth": None if auth is None else {"type": int(auth.type), "key_id": auth.key_id, "secret": auth.secret.hex()},
    }


def _spec_from_json(data: dict[str, Any]) -> SessionSpec:
    auth = data["auth"]
    return SessionSpec(
        peer=netaddr.IPAddress(data["peer"]),
        local=netaddr.IPAddress(data["local"]) if data["local"] else None,
        multihop=bool(data["multihop"]),
        profile=BfdProfile(**data["profile"]),
        auth=None
        if auth is None
        else AuthKey(type=AuthType(auth["type"]), key_id=auth["key_id"], secret=bytes.fromhex(auth["secret"])),
    )


# -- parent side -------------------------------------------------------------------------------


class BfdProcess:
    """BFD sessions run by a child process; every method may be called from any thread.

    Args:
        metrics: where the child's metric updates land; None for no metrics.
        listener: called with each state change, on a thread of this object's;
            it must hand work to its own thread and return at once.
    """

    def __init__(self, *, metrics: MetricsSink | None = None, listener: Listener | None = None) -> None:
        self._metrics = metrics
        self._listener = listener
        self._lock = threading.Lock()  # guards the child's stdin and the fields below
        self._specs: dict[str, SessionSpec] = {}
        self._pending: dict[int, concurrent.futures.Future[list[BfdStatus]]] = {}
        self._ids = itertools.count()
        self._closed = False
        self._backoff = Backoff(initial=1.0, cap=30.0)
        self._proc = self._spawn()

    def __repr__(self) -> str:
        return f"<BfdProcess(pid={self._proc.pid}, sessions={len(self._specs)})>"

    @property
    def pid(self) -> int:
        """The child's process ID."""
        return self._proc.pid

    def configure(self, specs: Iterable[SessionSpec]) -> None:
        """Run exactly these sessions (see :meth:`BfdService.configure`); returns at once."""
        wanted: dict[str, SessionSpec] = {}
        for spec in specs:
            try:
                spec.check()
            except ValueError as exc:
                log.error("%s", exc)
                continue
            wanted[_key_text(spec)] = spec
        with self._lock:
            self._specs = wanted
            self._send({"t": "configure", "specs": [_spec_json(s) for s in wanted.values()]})

    def sessions(self) -> list[BfdStatus]:
        """Every session's state, from the child; [] while it is not running."""
        future: concurrent.futures.Future[list[BfdStatus]] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                return []
            ident = next(self._ids)
            self._pending[ident] = future
            self._send({"t": "status", "id": ident})
        try:
            return future.result(timeout=10)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            return []
        finally:
            with self._lock:
                self._pending.pop(ident, None)

    def close(self) -> None:
        """Tell every peer AdminDown (the child does) and wait for the child to exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            proc = self._proc
            self._send({"t": "close"})
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.warning("BFD process %d did not exit; killing it", proc.pid)
            proc.kill()
            proc.wait()

    # -- the child ---------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        level = logging.getLogger("metallb.announcers.bgp.bfd").getEffectiveLevel()
        # From the calling thread, so the child shares its network namespace. cwd "/": a checkout's
        # folders must not shadow the installed package (or the standard library's "operator").
        proc = subprocess.Popen(
            [sys.executable, "-m", _MODULE, str(level)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd="/",
            close_fds=True,
            start_new_session=True,  # a terminal's Ctrl-C goes to the speaker, which then closes us in order
        )
        threading.Thread(target=self._read, args=(proc,), name=f"metallb-bfd-{proc.pid}", daemon=True).start()
        return proc

    def _send(self, msg: dict[str, Any]) -> None:
        """Write one message to the child (caller holds the lock); a dead child's restart resends the config."""
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(msg).encode() + b"\n")
            stdin.flush()
        except (OSError, ValueError):
            pass

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                self._dispatch(json.loads(line))
            except Exception:  # a bad line or a listener's bug must not stop the reader
                log.exception("BFD: cannot handle a message from the BFD process")
        code = proc.wait()
        with self._lock:
            for future in self._pending.values():
                future.cancel()
            if self._closed:
                return
        delay = self._backoff.next()
        log.error("BFD process %d exited with status %s; starting another in %.1f s", proc.pid, code, delay)
        if self._metrics is not None:
            for spec in self._specs.values():
                self._metrics.forget(str(spec.peer))
        time.sleep(delay)
        with self._lock:
            if self._closed:
                return
            self._proc = self._spawn()
            self._send({"t": "configure", "specs": [_spec_json(s) for s in self._specs.values()]})

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg["t"]
        metrics = self._metrics
        if kind == "log":
            logging.getLogger(msg["name"]).log(msg["level"], "%s", msg["msg"])
        elif kind == "transition":
            spec = self._specs.get(msg["key"])
            transition = Transition(
                old=State(msg["old"]), new=State(msg["new"]), diag=msg["diag"], remote_admin_down=msg["admin"]
            )
            if transition.new == State.UP:
                self._backoff.reset()
            if spec is not None and self._listener is not None:
                self._listener(spec, transition)
        elif kind == "metric" and metrics is not None:
            if msg["m"] == "start":
                metrics.start(msg["peer"])
            elif msg["m"] == "session_up":
                metrics.session_up(msg["peer"], msg["up"])
            elif msg["m"] == "forget":
                metrics.forget(msg["peer"])
        elif kind == "counts" and metrics is not None:
            for peer, (rx, tx, refused, discarded) in msg["c"].items():
                for count, record in (
                    (rx, metrics.received),
                    (tx, metrics.sent),
                    (refused, metrics.send_error),
                    (discarded, metrics.discarded),
                ):
                    if count:
                        record(peer, count)
        elif kind == "status":
            with self._lock:
                future = self._pending.get(msg["id"])
            if future is not None and not future.done():
                future.set_result([BfdStatus(**s) for s in msg["sessions"]])


# -- child side -------------------------------------------------------------------------------------


class _Writer:
    """Messages to the parent, written by a thread of their own so the BFD loop never waits on the pipe."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._counts: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="bfd-writer", daemon=True)
        self._thread.start()

    def send(self, msg: dict[str, Any]) -> None:
        self._queue.put(msg)

    def count(self, peer: str, index: int, n: int) -> None:
        with self._lock:
            self._counts.setdefault(peer, [0, 0, 0, 0])[index] += n

    def _flush_counts(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
        if counts:
            self._write({"t": "counts", "c": counts})

    def _write(self, msg: dict[str, Any]) -> None:
        self._stream.write(json.dumps(msg).encode() + b"\n")
        self._stream.flush()

    def _run(self) -> None:
        try:
            while True:
                try:
                    msg = self._queue.get(timeout=_FLUSH)
                except queue.Empty:
                    self._flush_counts()
                    continue
                self._flush_counts()  # counters before a state change, as they happened
                if msg is None:
                    return
                self._write(msg)
        except (OSError, ValueError):  # the parent is gone
            return

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)


class _ForwardMetrics:
    """The child's metrics: events go to the parent, packet counts are summed first."""

    def __init__(self, out: _Writer) -> None:
        self._out = out

    def start(self, peer: str) -> None:
        self._out.send({"t": "metric", "m": "start", "peer": peer})

    def session_up(self, peer: str, up: bool) -> None:
        self._out.send({"t": "metric", "m": "session_up", "peer": peer, "up": up})

    def received(self, peer: str, count: int = 1) -> None:
        self._out.count(peer, 0, count)

    def sent(self, peer: str, count: int = 1) -> None:
        self._out.count(peer, 1, count)

    def send_error(self, peer: str, count: int = 1) -> None:
        self._out.count(peer, 2, count)

    def discarded(self, peer: str, count: int = 1) -> None:
        self._out.count(peer, 3, count)

    def forget(self, peer: str) -> None:
        self._out.send({"t": "metric", "m": "forget", "peer": peer})


class _ForwardLogs(logging.Handler):
    def __init__(self, out: _Writer) -> None:
        super().__init__()
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self._out.send({"t": "log", "level": record.levelno, "name": record.name, "msg": text})
        except Exception:  # noqa: BLE001 - logging must never raise; handleError reports it
            self.handleError(record)


def main(argv: list[str] | None = None) -> None:
    """The child: run a :class:`BfdService` as the parent's messages on stdin say."""
    args = sys.argv[1:] if argv is None else argv
    out = _Writer(sys.stdout.buffer)
    root = logging.getLogger()
    root.handlers[:] = [_ForwardLogs(out)]
    root.setLevel(int(args[0]) if args else logging.INFO)

    def changed(spec: SessionSpec, t: Transition) -> None:
        out.send({"t": "transition", "key": _key_text(spec), "old": t.old, "new": t.new, "diag": t.diag,
                  "admin": t.remote_admin_down})  # fmt: skip

    with contextlib.suppress(OSError):  # needs CAP_SYS_NICE; without it the default priority has to do
        os.setpriority(os.PRIO_PROCESS, 0, _NICE)  # the CPU at once when a timer fires, even on a busy node
    service = BfdService(metrics=_ForwardMetrics(out), listener=changed)
    gc.freeze()  # what exists now lives for ever: later collections scan only the little that is new
    try:
        for line in sys.stdin.buffer:
            msg = json.loads(line)
            if msg["t"] == "configure":
                service.configure(_spec_from_json(s) for s in msg["specs"])
            elif msg["t"] == "status":
                sessions = [attrs.asdict(s) for s in service.sessions()]
                out.send({"t": "status", "id": msg["id"], "sessions": sessions})
            elif msg["t"] == "close":
                break
    finally:
        service.close()
        out.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
