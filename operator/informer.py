"""Watching Kubernetes objects, and a keyed work queue: the controller's plumbing.

An :class:`Informer` lists, then watches from the returned resourceVersion,
relists on 410 Gone, reconnects with backoff, and bounds every request with a
server-side ``timeoutSeconds`` and a client read timeout so a stalled stream
cannot hang. A watch that ends at once with no event counts as a failure and
backs off too. Objects are kept as plain dicts (the API's JSON).

A :class:`WorkQueue` hands keys to worker threads: a key is processed by one
worker at a time, repeated adds collapse, and failed keys come back after an
exponential backoff.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from metallb.allocator.retry import Backoff

__all__ = ["SHORT_WATCH", "Informer", "WorkQueue", "obj_key"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

#: A watch that ends sooner than this (seconds) without one event failed, as client-go's reflector
#: judges: an API server or proxy answering with an empty stream must not be re-watched at once.
SHORT_WATCH = 1.0


def obj_key(obj: Obj) -> str:
    """``namespace/name`` (or just the name for cluster-scoped objects)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


class Informer:
    """List-then-watch one resource kind, keeping a cache and calling back on changes.

    Args:
        name: for logs.
        list_func: a kubernetes client list method (for example
            ``CoreV1Api.list_service_for_all_namespaces``).
        on_event: called with ("ADDED"|"MODIFIED"|"DELETED", obj) for every
            change, and with ("SYNCED", None) after each full list.
        list_kwargs: selectors and namespace arguments for *list_func*.
        watch_timeout: server-side timeout of each watch request (seconds).
        optional: the resource may not be served (a custom resource whose CRD
            is not installed): a 404 counts as an empty list, logged once, and
            the list is tried again every ``missing_retry`` seconds.
        missing_retry: seconds between lists of a resource that is not served.
    """

    def __init__(
        self,
        name: str,
        list_func: Callable[..., Any],
        on_event: Callable[[str, Obj | None], None],
        *,
        list_kwargs: dict[str, Any] | None = None,
        watch_timeout: int = 60,
        optional: bool = False,
        missing_retry: float = 30.0,
    ) -> None:
        self.name = name
        self.list_func = list_func
        self.on_event = on_event
        self.list_kwargs = dict(list_kwargs or {})
        self.watch_timeout = watch_timeout
        self.cache: dict[str, Obj] = {}
        self.synced = threading.Event()
        self.resource_version = ""
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._delivered = 0  # events of the current watch
        self._backoff = Backoff(initial=0.2, cap=30.0)
        self._thread = threading.Thread(target=self._run, name=f"informer-{name}", daemon=True)
        self.relists = 0
        self.optional = optional
        self.missing_retry = missing_retry
        #: True while the resource is not served (an optional informer's 404).
        self.missing = False

    def start(self) -> Informer:
        """Start listing and watching in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (the current request is abandoned)."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _list(self) -> None:
        response = self.list_func(**self.list_kwargs, _preload_content=False, _request_timeout=(5, 60))
        if self.missing:
            log.info("%s: served now; watching it", self.name)
            self.missing = False
        body = json.loads(response.data)
        items = {obj_key(o): o for o in body.get("items") or ()}
        self.resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        gone = [k for k in self.cache if k not in items]
        old = self.cache
        self.cache = items
        for key in gone:
            self.on_event("DELETED", old[key])
        for key, obj in items.items():
            previous = old.get(key)
            if previous is None:
                self.on_event("ADDED", obj)
            elif (previous.get("metadata") or {}).get("resourceVersion") != (obj.get("metadata") or {}).get(
                "resourceVersion"
            ):
                self.on_event("MODIFIED", obj)
        self.relists += 1
        self.synced.set()
        self.on_event("SYNCED", None)

    def _stream(self) -> Iterator[dict[str, Any]]:
        self._watch = watch.Watch()

        def watch_func(**kwargs: Any) -> Any:
            # Without the list function's docstring the client keeps each event's object as JSON:
            # we only read raw_object, and an object its models cannot build (say data: [...]
            # from a lax server) would otherwise fail the stream before we see it, again at every resume.
            return self.list_func(**kwargs)

        return self._watch.stream(  # type: ignore[no-any-return]
            watch_func,
            **self.list_kwargs,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout,
            _request_timeout=(5, self.watch_timeout + 15),
        )

    def _watch_events(self) -> None:
        """Apply one watch stream's events to the cache, counting them (bookmarks too) in ``_delivered``."""
        for event in self._stream():
            if self._stop.is_set():
                return
            self._delivered += 1
            if self._delivered == 1:
                self._healthy()
            kind = event.get("type")
            obj = event.get("raw_object") or {}
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if rv:
                self.resource_version = rv
            if kind == "BOOKMARK":
                continue
            key = obj_key(obj)
            if kind == "DELETED":
                self.cache.pop(key, None)
            elif kind in ("ADDED", "MODIFIED"):
                self.cache[key] = obj
            else:
                continue
            self.on_event(str(kind), obj)

    def _run(self) -> None:
        need_list = True
        while not self._stop.is_set():
            listed, watching, problem, expired = need_list, 0.0, "", False
            self._delivered = 0
            try:
                if need_list:
                    self._list()
                    need_list = False
                watching = time.monotonic()
                self._watch_events()
            except ApiException as exc:
                if exc.status == 404 and self.optional and need_list:
                    self._not_served()
                    continue
                expired = exc.status == 410
                need_list = need_list or expired or exc.status is None
                problem = f"API error {exc.status} {exc.reason}"
            except Exception as exc:  # noqa: BLE001 - dropped connections, timeouts: reconnect
                problem = f"watch interrupted ({type(exc).__name__}: {exc})"
            if self._stop.is_set():
                return
            # client-go's reflector rule: a watch that brought events or lasted a while was healthy.
            healthy = self._delivered > 0 or (watching > 0 and time.monotonic() - watching >= SHORT_WATCH)
            if healthy:
                self._healthy()
            if expired and (healthy or not listed):  # a 410 at once after a fresh list is no ordinary expiry
                log.info("%s: resourceVersion %s expired; listing again", self.name, self.resource_version)
            elif problem or not healthy:
                self._failed(problem or "the watch ended at once with no events")

    def _not_served(self) -> None:
        """An optional resource is not served: it has no objects; look again later."""
        if not self.missing:
            log.info("%s: not served by the API (is its CRD installed?); treating it as empty", self.name)
            self.missing = True
        gone, self.cache = self.cache, {}
        for obj in gone.values():
            self.on_event("DELETED", obj)
        self.synced.set()
        self.on_event("SYNCED", None)
        self._stop.wait(self.missing_retry)

    def _failed(self, problem: str) -> None:
        """Wait before the next attempt; only the first failure of a streak is a warning."""
        delay = self._backoff.next()
        failures = self._backoff.failures
        if failures == 1:
            log.warning("%s: %s; retrying in %.1fs, backing off while it lasts", self.name, problem, delay)
        else:
            log.debug("%s: %s (failure %d); retrying in %.1fs", self.name, problem, failures, delay)
        self._stop.wait(delay)

    def _healthy(self) -> None:
        """The watch works: the next failure starts a new streak from the first delay."""
        if self._backoff.failures > 1:
            log.info("%s: watching again after %d failed attempts", self.name, self._backoff.failures)
        self._backoff.reset()


class WorkQueue:
    """Keys for workers: deduplicated, one worker per key, delayed retries."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: deque[str] = deque()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: list[tuple[float, str]] = []
        self._backoff: dict[str, Backoff] = {}
        self._closed = False

    def add(self, key: str) -> None:
        """Queue *key* now (a key being processed is queued again when done)."""
        with self._cond:
            if key in self._active:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        """Queue *key* after *delay* seconds."""
        with self._cond:
            heapq.heappush(self._delayed, (time.monotonic() + delay, key))
            self._cond.notify()

    def retry(self, key: str, *, base: float = 0.5, cap: float = 60.0) -> float:
        """Queue *key* again after its next backoff delay; returns the delay."""
        with self._cond:
            backoff = self._backoff.setdefault(key, Backoff(initial=base, cap=cap))
            delay = backoff.next()
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """*key* succeeded: its next failure starts the backoff over."""
        with self._cond:
            self._backoff.pop(key, None)

    def get(self, timeout: float | None = None) -> str | None:
        """The next key (marked active), or None on timeout or when closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, key = heapq.heappop(self._delayed)
                    if key not in self._queued and key not in self._active:
                        self._queued.add(key)
                        self._ready.append(key)
                    elif key in self._active:
                        self._dirty.add(key)
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._active.add(key)
                    return key
                if self._closed:
                    return None
                wait = None if deadline is None else deadline - now
                if self._delayed:
                    until = self._delayed[0][0] - now
                    wait = until if wait is None else min(wait, until)
                if wait is not None and wait <= 0:
                    if deadline is not None and now >= deadline:
                        return None
                    continue
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        """The worker finished *key*; queue it again if it changed meanwhile."""
        with self._cond:
            self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                if key not in self._queued:
                    self._queued.add(key)
                    self._ready.append(key)
                    self._cond.notify()

    def close(self) -> None:
        """Wake every waiting worker; get() returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)
