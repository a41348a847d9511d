"""A Kubernetes API server emulator for tests: real HTTP on loopback, standard library only.

The official ``kubernetes`` client talks to it exactly as to a cluster::

    with KubeEmulator() as emu:                      # 127.0.0.1, random port; emu.url
        core = CoreV1Api(emu.api_client())           # or emu.write_kubeconfig(path)
        emu.faults.fail_next("PUT", r"/status$", 503)
        emu.faults.conflict_next_writes(1)
        emu.faults.drop_watches_after(3)             # abrupt=False: a clean end instead of a cut
        emu.faults.expire_resume(True)               # every resumed watch gets 410
        emu.faults.end_watches_at_once(True)         # every watch: an empty 200 (abrupt=True: a cut)
        emu.close_all_watches()
        emu.get("services", "default", "a")          # a copy, or None; also objects(), put_object()
        emu.clock.advance(30); emu.now()             # the server clock (timestamps, Date header)

What it serves: discovery, list (label and field selectors, limit/continue), watch (chunked JSON
lines, resourceVersion resume from a bounded per-resource history, 410 Expired, bookmarks,
timeoutSeconds), create/get/replace/delete with finalizers and deletionTimestamp, merge,
strategic-merge and JSON patch, status subresource isolation, uid/resourceVersion/generation,
and the service defaulting a controller reads (cluster IPs, families, port protocols).

Custom resources: creating an ``apiextensions.k8s.io/v1`` CustomResourceDefinition serves each
of its served versions (namespaced or cluster-scoped, with the status subresource when the
version declares it), and marks the CRD Established; all versions share one storage and answer
in the version asked for (conversion strategy None); deleting the CRD stops serving it and
drops its objects. ``add_resource`` does the same for one version without a CRD object.

Not emulated: authentication, admission beyond namespace existence, validation, server-side
apply (415), garbage collection, namespace termination, events.k8s.io/core event conversion,
resourceVersion on lists (always the latest state).

Run ``python tests/kube_emulator.py --port 8080`` to serve it by hand.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import math
import random
import re
import select
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qs, unquote, urlsplit

Obj = dict[str, Any]
Matcher = Callable[[Obj], bool]


@dataclass(frozen=True)
class Resource:
    """One servable resource type; adding a resource is adding one of these."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = False  # has a /status subresource, isolated from the main resource
    reset_status: bool = False  # create drops the body's status (Service, Pod), Node keeps it
    strategic: bool = True  # built-in types take strategic merge patch, custom resources answer 415
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, status=True, short_names=("ns",)),
    Resource("", "v1", "nodes", "Node", namespaced=False, status=True, short_names=("no",)),
    Resource("", "v1", "services", "Service", status=True, reset_status=True, short_names=("svc",)),
    Resource("", "v1", "endpoints", "Endpoints", short_names=("ep",)),
    Resource("", "v1", "pods", "Pod", status=True, short_names=("po",)),
    Resource("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "events", "Event", short_names=("ev",)),
    Resource("events.k8s.io", "v1", "events", "Event", short_names=("ev",)),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    Resource(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        status=True,
        strategic=False,
        short_names=("crd", "crds"),
    ),
)
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_REASONS = {
    400: "BadRequest", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict",
    410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}  # fmt: skip


def status_object(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A ``Status`` as the API server returns it for failures."""
    status: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    status.update(reason=reason, code=code)
    if details:
        status["details"] = details
    return status


class ApiError(Exception):
    """An HTTP error answered with a ``Status`` body."""

    def __init__(self, code: int, message: str, *, reason: str = "", details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.headers: dict[str, str] = {}

    def status(self) -> Obj:
        return status_object(self.code, self.reason, self.message, self.details)


def _details(res: Resource, name: str) -> Obj:
    details: Obj = {"name": name, "kind": res.plural}
    if res.group:
        details["group"] = res.group
    return details


def _conflict(res: Resource, name: str) -> ApiError:
    what = f"{res.plural}.{res.group}" if res.group else res.plural
    message = (
        f'Operation cannot be fulfilled on {what} "{name}": '
        "the object has been modified; please apply your changes to the latest version and try again"
    )
    return ApiError(409, message, details=_details(res, name))


# --- selectors -------------------------------------------------------------------------------

_LABEL_TERM = re.compile(
    r"^(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<op>==|!=|=)\s*(?P<value>[-A-Za-z0-9_.]*)|\s(?P<setop>in|notin)\s*\((?P<values>[^()]*)\))?$"
)
_FIELD_TERM = re.compile(r"^(?P<path>[A-Za-z0-9_.]+)\s*(?P<op>==|!=|=)\s*(?P<value>.*)$")


def _split_terms(text: str) -> list[str]:
    """Split a selector on the commas that are not inside ``in (...)`` value sets."""
    terms, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [term.strip() for term in terms if term.strip()]


def label_selector(text: str) -> Matcher:
    """Compile a label selector (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``)."""
    requirements: list[tuple[str, str, set[str]]] = []  # (key, exists | absent | in | notin, values)
    for term in _split_terms(text):
        m = _LABEL_TERM.match(term)
        if m is None or (m["neg"] and (m["op"] or m["setop"])):
            raise ApiError(400, f"unable to parse requirement: {term!r}")
        if m["setop"]:
            requirements.append((m["key"], m["setop"], {v.strip() for v in m["values"].split(",")}))
        elif m["op"]:
            requirements.append((m["key"], "notin" if m["op"] == "!=" else "in", {m["value"]}))
        else:
            requirements.append((m["key"], "absent" if m["neg"] else "exists", set()))

    def match(obj: Obj) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        for key, op, values in requirements:
            # As on the real server, "!=" and "notin" match objects without the key.
            ok = {"exists": key in labels, "absent": key not in labels, "in": labels.get(key) in values}.get(
                op, labels.get(key) not in values
            )
            if not ok:
                return False
        return True

    return match


def _field_text(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def field_selector(text: str) -> Matcher:
    """Compile a field selector; any dotted path is accepted (the real server allows a few per kind)."""
    terms: list[tuple[str, bool, str]] = []
    for term in _split_terms(text):
        m = _FIELD_TERM.match(term)
        if m is None:
            raise ApiError(400, f"invalid field selector: {term!r}")
        terms.append((m["path"], m["op"] != "!=", m["value"].strip()))
    return lambda obj: all((_field_text(obj, path) == value) == equal for path, equal, value in terms)


# --- patches ---------------------------------------------------------------------------------

# Merge keys of the lists strategic merge patch merges, by path suffix (longest suffix first).
# Kubernetes declares only "port" for Service ports; port+protocol is what those lists mean.
_MERGE_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("spec", "ports"): ("port", "protocol"),
    ("containers", "ports"): ("containerPort", "protocol"),
    ("initContainers", "ports"): ("containerPort", "protocol"),
    ("containers",): ("name",),
    ("initContainers",): ("name",),
    ("ephemeralContainers",): ("name",),
    ("conditions",): ("type",),
    ("env",): ("name",),
    ("volumes",): ("name",),
    ("volumeMounts",): ("mountPath",),
    ("ownerReferences",): ("uid",),
    ("imagePullSecrets",): ("name",),
}
_KEY_DEFAULTS = {"protocol": "TCP"}
_SET_LISTS = {"finalizers"}  # primitive lists with patchStrategy=merge: union


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def strategic_merge_patch(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Strategic merge patch: a merge patch whose known lists merge by key; returns None for ``$patch: delete``."""
    if not isinstance(patch, dict):
        return _strip_directives(copy.deepcopy(patch))
    if patch.get("$patch") == "replace":
        return _strip_directives(copy.deepcopy(patch))
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    removals: list[tuple[str, list[Any]]] = []
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            removals.append((key.split("/", 1)[1], value))
        elif key.startswith("$"):
            continue  # $setElementOrder and $retainKeys only order or prune; not needed here
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, (*path, key))
        else:
            merged = strategic_merge_patch(result.get(key), value, (*path, key))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    for key, values in removals:
        if isinstance(result.get(key), list):
            result[key] = [item for item in result[key] if item not in values]
    return result


def _merge_list(current: Any, items: list[Any], path: tuple[str, ...]) -> list[Any]:
    if path[-1] in _SET_LISTS:
        merged = list(current) if isinstance(current, list) else []
        return merged + [item for i, item in enumerate(items) if item not in merged and item not in items[:i]]
    keys = _MERGE_KEYS.get(path[-2:]) or _MERGE_KEYS.get(path[-1:])
    if keys is None or not all(isinstance(item, dict) for item in items):
        return list(_strip_directives(copy.deepcopy(items)))
    if any(item.get("$patch") == "replace" for item in items):
        return [_strip_directives(copy.deepcopy(item)) for item in items if item.get("$patch") != "replace"]

    def ident(item: Obj) -> tuple[Any, ...]:
        return tuple(item.get(key, _KEY_DEFAULTS.get(key)) for key in keys)

    result = [item for item in current if isinstance(item, dict)] if isinstance(current, list) else []
    for item in items:
        index = next((n for n, old in enumerate(result) if ident(old) == ident(item)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip_directives(copy.deepcopy(item)))
        else:
            result[index] = strategic_merge_patch(result[index], item, path)
    return result


def _pointer(text: Any) -> list[str]:
    if text == "":
        return []
    if not isinstance(text, str) or not text.startswith("/"):
        raise ApiError(422, f"invalid JSON pointer: {text!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in text[1:].split("/")]


def _index(items: list[Any], token: str, *, insert: bool) -> int:
    if insert and token == "-":
        return len(items)
    if not token.isdigit() or (token != "0" and token.startswith("0")) or int(token) >= len(items) + insert:
        raise ApiError(422, f"JSON patch: index {token!r} is out of range")
    return int(token)


def _resolve(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token, insert=False)]
        else:
            raise ApiError(422, f"JSON patch: path /{'/'.join(tokens)} does not exist")
    return doc


def _jp_add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _resolve(doc, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, insert=True), value)
    else:
        raise ApiError(422, f"JSON patch: cannot add below a scalar at /{'/'.join(tokens)}")
    return doc


def _jp_remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise ApiError(422, "JSON patch: cannot remove the whole document")
    parent, last = _resolve(doc, tokens[:-1]), tokens[-1]
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, insert=False))
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    raise ApiError(422, f"JSON patch: path /{'/'.join(tokens)} does not exist")


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test) applied to a copy of *doc*."""
    if not isinstance(operations, list):
        raise ApiError(400, "a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or op.get("op") not in ("add", "remove", "replace", "move", "copy", "test"):
            raise ApiError(400, f"unsupported JSON patch operation: {op!r}")
        name, tokens = op["op"], _pointer(op.get("path"))
        if name in ("add", "replace", "test") and "value" not in op:
            raise ApiError(422, f"JSON patch: {name} needs a value")
        if name == "test":
            if _resolve(doc, tokens) != op["value"]:
                raise ApiError(422, f"JSON patch: test failed at {op['path']}")
        elif name == "add":
            doc = _jp_add(doc, tokens, copy.deepcopy(op["value"]))
        elif name == "remove":
            _jp_remove(doc, tokens)
        elif name == "replace":
            if tokens:
                _jp_remove(doc, tokens)
            doc = _jp_add(doc, tokens, copy.deepcopy(op["value"]))
        elif name == "move":
            doc = _jp_add(doc, tokens, _jp_remove(doc, _pointer(op.get("from"))))
        else:
            doc = _jp_add(doc, tokens, copy.deepcopy(_resolve(doc, _pointer(op.get("from")))))
    return doc


# --- faults, clock, history ------------------------------------------------------------------


@dataclass
class _FailRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    retry_after: int | None


class Faults:
    """Misbehaviour to inject, as real API servers misbehave; :meth:`clear` turns it all off.

    Attributes:
        injected: how many faults have fired (failures, conflicts, dropped, expired and ended watches).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.injected = 0
        self.clear()

    def clear(self) -> None:
        """Remove every pending fault."""
        with self._lock:
            self._rules: list[_FailRule] = []
            self._conflicts = 0
            self._drop_after: int | None = None
            self._drop_abrupt = True
            self._expire = False
            self._end_at_once: bool | None = None

    def fail_next(
        self, method: str, path_regex: str, status: int, count: int = 1, *, retry_after: int | None = None
    ) -> None:
        """Answer the next *count* requests whose method (``"*"``: any) and path with query match, with *status*.

        *retry_after* adds a ``Retry-After`` header, as API priority and fairness does with 429. Note that
        the client's urllib3 then retries GET, PUT and DELETE answered 413, 429 or 503 by itself (3 times).
        """
        with self._lock:
            self._rules.append(_FailRule(method.upper(), re.compile(path_regex), status, count, retry_after))

    def conflict_next_writes(self, n: int = 1) -> None:
        """Answer the next *n* updates (PUT and PATCH of existing objects) with 409 Conflict."""
        with self._lock:
            self._conflicts = n

    def drop_watches_after(self, n_events: int | None, *, abrupt: bool = True) -> None:
        """End every watch stream after it delivered *n_events* events (bookmarks not counted); None: never.

        *abrupt* cuts the connection mid-stream (the client sees a protocol error); otherwise the
        stream ends cleanly, as after a server-side timeout.
        """
        with self._lock:
            self._drop_after, self._drop_abrupt = n_events, abrupt

    def end_watches_at_once(self, on: bool = True, *, abrupt: bool = False) -> None:
        """Answer every watch with 200 and end its stream before any event, until turned off.

        As an API server or a proxy in front of it may: an empty 200 (the final chunk at once) or,
        *abrupt*, the connection closed right after the headers.
        """
        with self._lock:
            self._end_at_once = abrupt if on else None

    def expire_resume(self, on: bool = True) -> None:
        """Answer every watch that resumes from a resourceVersion with 410 Expired."""
        with self._lock:
            self._expire = on

    def pending(self) -> int:
        """Failures and conflicts still to be injected."""
        with self._lock:
            return sum(rule.remaining for rule in self._rules) + self._conflicts

    def _take_failure(self, method: str, target: str) -> ApiError | None:
        with self._lock:
            for rule in self._rules:
                if rule.method in ("*", method) and rule.pattern.search(target):
                    rule.remaining -= 1
                    self._rules = [r for r in self._rules if r.remaining > 0]
                    self.injected += 1
                    error = ApiError(rule.status, f"injected fault: {rule.status} for {method} {target}")
                    if rule.retry_after is not None:
                        error.headers["Retry-After"] = str(rule.retry_after)
                        error.details = {"retryAfterSeconds": rule.retry_after}
                    return error
        return None

    def _take_conflict(self) -> bool:
        with self._lock:
            if self._conflicts <= 0:
                return False
            self._conflicts -= 1
            self.injected += 1
            return True

    def _take_expire(self) -> bool:
        with self._lock:
            self.injected += self._expire
            return self._expire

    def _end_now(self) -> bool | None:
        """None to serve the watch, else whether to end it at once abruptly."""
        with self._lock:
            self.injected += self._end_at_once is not None
            return self._end_at_once

    def _drop_now(self, sent: int) -> bool | None:
        """None to go on, else whether to drop abruptly."""
        with self._lock:
            if self._drop_after is None or sent < self._drop_after:
                return None
            self.injected += 1
            return self._drop_abrupt


class Clock:
    """The server's clock: wall time plus an offset that tests move forward with :meth:`advance`."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class RequestRecord(NamedTuple):
    """One request served: method, path with query, and the HTTP status answered."""

    method: str
    path: str
    status: int


@dataclass(frozen=True)
class _Event:
    rv: int
    type: str
    obj: Obj
    old: Obj | None = None


class _History:
    """The last *size* events of one resource type; older resourceVersions are expired (410)."""

    def __init__(self, size: int) -> None:
        self.size, self.events, self.dropped_upto = size, deque[_Event](), 0

    def append(self, event: _Event) -> None:
        if len(self.events) >= self.size:
            self.dropped_upto = self.events.popleft().rv
        self.events.append(event)

    def since(self, rv: int) -> list[_Event] | None:
        if rv < self.dropped_upto:
            return None
        newer: list[_Event] = []
        for event in reversed(self.events):
            if event.rv <= rv:
                break
            newer.append(event)
        return newer[::-1]


@dataclass
class _WatchRequest:
    res: Resource
    match: Matcher
    resume: int | None  # None: replay current objects as ADDED first
    timeout: float
    bookmarks: bool


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _prune(value: Any) -> Any:
    """Drop ``null`` members, as decoding into Go structs does."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


# --- the emulator ----------------------------------------------------------------------------


class KubeEmulator:
    """The emulated API server: an object store, an event history per resource, and an HTTP front.

    Attributes:
        faults: the fault injection switches (:class:`Faults`).
        clock: the server clock used for timestamps and the ``Date`` header (:class:`Clock`).
        requests: the last 100 000 requests served, in order (:class:`RequestRecord`).
        bookmark_interval: seconds between BOOKMARK events on watches that allow them.
        watch_timeout: how long a watch without ``timeoutSeconds`` lasts.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        history: int = 1000,
        bookmark_interval: float = 1.0,
        watch_timeout: float = 300.0,
    ) -> None:
        self.host, self.port = host, port
        self.history_size, self.bookmark_interval, self.watch_timeout = history, bookmark_interval, watch_timeout
        self.faults, self.clock = Faults(), Clock()
        self.requests = deque[RequestRecord](maxlen=100_000)  # bounded for long benchmark runs
        self._cond = threading.Condition(threading.RLock())
        self._resources: dict[tuple[str, str, str], Resource] = {}
        self._store: dict[Resource, dict[tuple[str, str], Obj]] = {}
        self._history: dict[Resource, _History] = {}
        self._rv = 0
        self._ips = 9
        self._epoch, self._close_abrupt, self._stopping, self._watches = 0, False, False, 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        for res in RESOURCES:
            self._register(res)
        for ns in DEFAULT_NAMESPACES:
            self.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # lifecycle

    def start(self) -> Self:
        """Serve in a background thread; after :meth:`stop` this serves again on the same port."""
        if self._server is None:
            self._stopping = False
            self._server = _Server((self.host, self.port), self)
            self.port = int(self._server.server_address[1])
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="kube-emulator", daemon=True
            )
            self._thread.start()
        return self

    def start_in_netns(self, netns: str) -> Self:
        """:meth:`start` with the listening socket in network namespace *netns* (a name under /run/netns)."""
        from metallb.announcers.layer2.netlink import enter_netns

        box: dict[str, BaseException] = {}

        def target() -> None:
            try:
                enter_netns(f"/run/netns/{netns}")  # this thread only; the server thread inherits its socket
                self.start()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                box["error"] = exc

        thread = threading.Thread(target=target)
        thread.start()
        thread.join(10)
        if "error" in box:
            raise box["error"]
        return self

    def stop(self) -> None:
        """Stop serving: end open watches, close every connection, free the port. Objects are kept."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(5)
        with self._cond:
            self._cond.wait_for(lambda: self._watches == 0, timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since the last start (keep-alive keeps this small)."""
        return self._server.accepted if self._server else 0

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig (JSON, which is YAML) whose current context points here."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {"token": "emulator"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
            "current-context": "emulator",
        }
        path = Path(path)
        path.write_text(json.dumps(config, indent=2))
        return path

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for this server (imported here: the module needs only the stdlib)."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)

    # direct access for tests

    def add_resource(
        self, group: str, version: str, plural: str, kind: str, *, namespaced: bool = True, status: bool = False
    ) -> None:
        """Serve a custom resource type (like an established CRD: no strategic merge patch)."""
        self._register(Resource(group, version, plural, kind, namespaced=namespaced, status=status, strategic=False))

    def now(self) -> datetime:
        """The server clock's current time (UTC), to compare lease renew times with."""
        return self.clock.now()

    @property
    def resource_version(self) -> int:
        """The current (latest) resourceVersion."""
        return self._rv

    @property
    def open_watches(self) -> int:
        """Watch streams being served right now."""
        return self._watches

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        """A copy of one stored object, or None; *kind* is a kind or plural, optionally ``.group``."""
        res = self._resource(kind)
        with self._cond:
            obj = self._store[res].get(((namespace or "") if res.namespaced else "", name))
            return copy.deepcopy(obj)

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """Copies of the stored objects of *kind*, in one namespace or all, sorted by namespace and name."""
        res = self._resource(kind)
        with self._cond:
            found = sorted(self._store[res].items())
            return [copy.deepcopy(obj) for (ns, _), obj in found if namespace is None or ns == namespace]

    def put_object(self, obj: Obj) -> Obj:
        """Create or overwrite an object (status included, no checks), emitting watch events; returns it.

        The object's ``apiVersion`` and ``kind`` choose the resource; a missing namespace is created.
        """
        res = self._resource_for(obj.get("apiVersion", ""), obj.get("kind", ""))
        meta = obj.get("metadata") or {}
        ns = (meta.get("namespace") or "default") if res.namespaced else ""
        with self._cond:
            if res.namespaced and ("", ns) not in self._store[self._resource("namespaces")]:
                self.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            old = self._store[res].get((ns, meta.get("name", "")))
            if old is None:
                return self._create(res, ns, obj, trusted=True)
            return self._update(res, ns, meta["name"], obj, sub=None, trusted=True)

    def delete_object(self, kind: str, namespace: str | None, name: str, *, force: bool = False) -> None:
        """Delete as a client would (finalizers respected), or with *force* remove it outright."""
        res = self._resource(kind)
        with self._cond:
            ns = (namespace or "") if res.namespaced else ""
            if force and (ns, name) in self._store[res]:
                old = self._store[res][(ns, name)]
                new = copy.deepcopy(old)
                new["metadata"]["finalizers"] = []
                self._commit(res, (ns, name), old, new)
            if (ns, name) in self._store[res]:
                self._delete(res, ns, name, None)

    def compact(self) -> None:
        """Forget all event history, as etcd compaction does: resuming from any older version gets 410."""
        with self._cond:
            for history in self._history.values():
                history.events.clear()
                history.dropped_upto = self._rv

    def close_all_watches(self, *, abrupt: bool = False) -> None:
        """End every open watch stream, cleanly or (*abrupt*) by cutting the connection."""
        with self._cond:
            self._epoch += 1
            self._close_abrupt = abrupt
            self._cond.notify_all()

    def request_count(self, method: str = "*", path_regex: str = "") -> int:
        """How many served requests match *method* (``"*"``: any) and *path_regex* (searched)."""
        pattern = re.compile(path_regex)
        return sum(1 for r in self.requests if method in ("*", r.method) and pattern.search(r.path))

    # resource table

    def _register(self, res: Resource) -> None:
        with self._cond:
            self._resources[(res.group, res.version, res.plural)] = res
            # Versions of one resource share their objects and their history, as one etcd key space.
            sibling = next(
                (r for r in self._store if (r.group, r.plural) == (res.group, res.plural) and r != res), None
            )
            if sibling is not None:
                self._store.setdefault(res, self._store[sibling])
                self._history.setdefault(res, self._history[sibling])
            self._store.setdefault(res, {})
            self._history.setdefault(res, _History(self.history_size))

    def _crd_changed(self, crd: Obj, *, deleted: bool = False) -> None:
        """Serve (or stop serving) the versions a CustomResourceDefinition declares."""
        spec = crd.get("spec") or {}
        group, names = spec.get("group", ""), spec.get("names") or {}
        plural, kind = names.get("plural", ""), names.get("kind", "")
        served = {} if deleted else {v.get("name"): v for v in spec.get("versions") or () if v.get("served", True)}
        for key, res in list(self._resources.items()):
            if (res.group, res.plural) == (group, plural) and res.version not in served:
                del self._resources[key]
                if not any((r.group, r.plural) == (group, plural) for r in self._resources.values()):
                    self._store[res].clear()
        for name, version in served.items():
            self._register(
                Resource(
                    group,
                    name,
                    plural,
                    kind,
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    status="status" in (version.get("subresources") or {}),
                    reset_status="status" in (version.get("subresources") or {}),  # create ignores status then
                    strategic=False,
                    short_names=tuple(names.get("shortNames") or ()),
                )
            )

    def _resource(self, name: str) -> Resource:
        for res in self._resources.values():
            names = {res.plural, res.kind, res.kind.lower(), *res.short_names}
            if name in names or name in {f"{n}.{res.group}" for n in names}:
                return res
        raise KeyError(name)

    def _resource_for(self, api_version: str, kind: str) -> Resource:
        group, _, version = api_version.rpartition("/")
        for res in self._resources.values():
            if (res.group, res.version, res.kind) == (group, version, kind):
                return res
        raise KeyError(f"{api_version} {kind}")

    # storage (callers hold no lock; every method takes it)

    def _emit(self, res: Resource, kind: str, obj: Obj, old: Obj | None) -> None:
        self._history[res].append(_Event(self._rv, kind, obj, old))
        self._cond.notify_all()

    def _next_rv(self, meta: Obj) -> None:
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)

    def _timestamp(self) -> str:
        return self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _create(self, res: Resource, ns: str, body: Any, *, trusted: bool = False) -> Obj:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise ApiError(400, "the request body must be an object with object metadata")
        obj: Obj = _prune(copy.deepcopy(body))
        meta = obj.setdefault("metadata", {})
        with self._cond:
            if res.namespaced:
                if meta.setdefault("namespace", ns) != ns:
                    raise ApiError(
                        400, "the namespace of the provided object does not match the namespace sent on the request"
                    )
                if ("", ns) not in self._store[self._resource("namespaces")]:
                    raise ApiError(404, f'namespaces "{ns}" not found', details={"name": ns, "kind": "namespaces"})
            else:
                meta.pop("namespace", None)
            if meta.get("resourceVersion") and not trusted:
                raise ApiError(400, "resourceVersion should not be set on objects to be created")
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise ApiError(422, "metadata.name: Required value: name or generateName is required")
                alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the real server's: no vowels, no look-alikes
                meta["name"] = meta["generateName"] + "".join(random.choices(alphabet, k=5))
            name = meta["name"]
            if (ns, name) in self._store[res]:
                raise ApiError(
                    409, f'{res.plural} "{name}" already exists', reason="AlreadyExists", details=_details(res, name)
                )
            obj.update(kind=res.kind, apiVersion=res.api_version)
            if res.reset_status and not trusted:
                obj.pop("status", None)
            self._defaults(res, obj, None)
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=self._timestamp(), generation=1)
            meta.pop("deletionTimestamp", None)
            self._next_rv(meta)
            self._store[res][(ns, name)] = obj
            self._emit(res, "ADDED", obj, None)
            if res.kind == "CustomResourceDefinition":
                self._crd_changed(obj)
            return copy.deepcopy(obj)

    def _defaults(self, res: Resource, obj: Obj, old: Obj | None) -> None:
        """The defaulting a controller relies on: namespace phase; service type, protocols, families, cluster IPs."""
        meta = obj["metadata"]
        for field in ("labels", "annotations", "finalizers", "ownerReferences"):
            if field in meta and not meta[field]:
                del meta[field]  # omitempty on the Go side
        if res.kind == "Namespace":
            obj.setdefault("status", {}).setdefault("phase", "Active")
        if res.kind == "CustomResourceDefinition":
            status = obj.setdefault("status", {})
            status["acceptedNames"] = (obj.get("spec") or {}).get("names") or {}
            status["storedVersions"] = [
                v["name"] for v in (obj.get("spec") or {}).get("versions") or () if v.get("storage")
            ]
            status["conditions"] = [
                {"type": t, "status": "True", "reason": r, "message": "", "lastTransitionTime": self._timestamp()}
                for t, r in (("NamesAccepted", "NoConflicts"), ("Established", "InitialNamesAccepted"))
            ]
        if res.kind != "Service" or res.group:
            return
        obj.setdefault("status", {}).setdefault("loadBalancer", {})  # Go never omits this struct
        spec = obj.setdefault("spec", {})
        for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if old and field in old.get("spec", {}):  # allocated once; an update that omits them keeps them
                spec.setdefault(field, old["spec"][field])
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        if spec["type"] == "ExternalName":
            return
        policy = spec.setdefault("ipFamilyPolicy", "SingleStack")
        families = spec.setdefault("ipFamilies", ["IPv4"] if policy == "SingleStack" else ["IPv4", "IPv6"])
        if not spec.get("clusterIP"):
            self._ips += 1
            n = self._ips
            spec["clusterIPs"] = [
                f"10.96.{n // 256}.{n % 256}" if f == "IPv4" else f"fd00:10:96::{n:x}" for f in families
            ]
            spec["clusterIP"] = spec["clusterIPs"][0]
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec["type"] in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")

    def _existing(self, res: Resource, ns: str, name: str) -> Obj:
        obj = self._store[res].get((ns, name))
        if obj is None:
            what = f"{res.plural}.{res.group}" if res.group else res.plural
            raise ApiError(404, f'{what} "{name}" not found', details=_details(res, name))
        return obj

    def _update(self, res: Resource, ns: str, name: str, body: Any, *, sub: str | None, trusted: bool = False) -> Obj:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise ApiError(400, "the request body must be an object with object metadata")
        new: Obj = _prune(copy.deepcopy(body))
        meta = new.setdefault("metadata", {})
        with self._cond:
            old = self._existing(res, ns, name)
            if not trusted:
                if meta.get("name", name) != name:
                    raise ApiError(
                        400, f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
                    )
                if self.faults._take_conflict():
                    raise _conflict(res, name)
                rv, uid = meta.get("resourceVersion"), meta.get("uid")
                if rv and rv != old["metadata"]["resourceVersion"]:
                    raise _conflict(res, name)
                if uid and uid != old["metadata"]["uid"]:
                    message = (
                        f"Precondition failed: UID in precondition: {uid}, UID in object meta: {old['metadata']['uid']}"
                    )
                    raise ApiError(409, message, details=_details(res, name))
                if res.status and sub == "status":
                    new = {**copy.deepcopy(old), "status": new.get("status")}
                elif res.status:
                    new["status"] = copy.deepcopy(old.get("status"))
            return self._commit(res, (ns, name), old, _prune(new))

    def _commit(self, res: Resource, key: tuple[str, str], old: Obj, new: Obj) -> Obj:
        """Store *new* over *old*: keep server-owned metadata, skip no-ops, bump generation on spec changes."""
        old_meta, meta = old["metadata"], new.setdefault("metadata", {})
        server_owned = (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        )
        for field in server_owned:
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        new.update(kind=res.kind, apiVersion=res.api_version)
        self._defaults(res, new, old)
        added = set(meta.get("finalizers", ())) - set(old_meta.get("finalizers", ()))
        if old_meta.get("deletionTimestamp") and added:
            message = (
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, "
                f"found new finalizers {sorted(added)}"
            )
            raise ApiError(422, message, details=_details(res, key[1]))
        if new == old:
            return copy.deepcopy(old)  # the real server neither bumps resourceVersion nor emits an event
        if _spec_part(new) != _spec_part(old):
            meta["generation"] = old_meta.get("generation", 1) + 1
        self._next_rv(meta)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self._store[res][key]
            self._emit(res, "DELETED", new, old)
        else:
            self._store[res][key] = new
            self._emit(res, "MODIFIED", new, old)
        if res.kind == "CustomResourceDefinition":
            self._crd_changed(new, deleted=key not in self._store[res])
        return copy.deepcopy(new)

    def _patch(self, res: Resource, ns: str, name: str, content_type: str, raw: bytes, sub: str | None) -> Obj:
        kind = content_type.split(";")[0].strip().lower()
        try:
            patch = json.loads(raw or b"null")
        except ValueError as err:
            raise ApiError(400, f"the patch is not JSON: {err}") from None
        with self._cond:
            old = self._existing(res, ns, name)
            appliers: dict[str, Callable[[Any, Any], Any]] = {
                "application/json-patch+json": json_patch,
                "application/merge-patch+json": merge_patch,
            }
            if res.strategic:  # custom resources have no patch strategies
                appliers["application/strategic-merge-patch+json"] = strategic_merge_patch
            if kind not in appliers:
                raise ApiError(415, f"{kind!r} is not one of the accepted media types: {', '.join(appliers)}")
            if kind != "application/json-patch+json" and not isinstance(patch, dict):
                raise ApiError(400, "a merge patch must be a JSON object")
            new = appliers[kind](old, patch)
            return self._update(res, ns, name, new, sub=sub)

    def _delete(self, res: Resource, ns: str, name: str, options: Any) -> Obj:
        with self._cond:
            old = self._existing(res, ns, name)
            meta = old["metadata"]
            pre = (options.get("preconditions") or {}) if isinstance(options, dict) else {}
            for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                if pre.get(field) and pre[field] != meta[field]:
                    message = f"Precondition failed: {label} in precondition: {pre[field]}, "
                    message += f"{label} in object meta: {meta[field]}"
                    raise ApiError(409, message, details=_details(res, name))
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return copy.deepcopy(old)
                new = copy.deepcopy(old)
                new["metadata"].update(deletionTimestamp=self._timestamp(), deletionGracePeriodSeconds=0)
                new["metadata"]["generation"] = meta.get("generation", 1) + 1
                self._next_rv(new["metadata"])
                self._store[res][(ns, name)] = new
                self._emit(res, "MODIFIED", new, old)
                return copy.deepcopy(new)
            gone = copy.deepcopy(old)
            del self._store[res][(ns, name)]
            self._next_rv(gone["metadata"])
            self._emit(res, "DELETED", gone, old)
            if res.kind == "CustomResourceDefinition":
                self._crd_changed(gone, deleted=True)
            details = {**_details(res, name), "uid": meta["uid"]}
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _select(self, ns: str | None, query: dict[str, str]) -> Matcher:
        labels = label_selector(query.get("labelSelector", ""))
        fields = field_selector(query.get("fieldSelector", ""))
        return lambda obj: (ns is None or obj["metadata"].get("namespace", "") == ns) and labels(obj) and fields(obj)

    def _list(self, res: Resource, ns: str | None, query: dict[str, str]) -> Obj:
        match = self._select(ns, query)
        limit = int(query.get("limit") or 0)
        start: list[str] = json.loads(base64.urlsafe_b64decode(query["continue"])) if query.get("continue") else []
        with self._cond:
            found = [(k, o) for k, o in sorted(self._store[res].items()) if list(k) > start and match(o)]
            meta: Obj = {"resourceVersion": str(self._rv)}
        if limit and len(found) > limit:
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(list(found[limit - 1][0])).encode()).decode()
            meta["remainingItemCount"] = len(found) - limit
            found = found[:limit]
        # List items carry no kind/apiVersion on a real server either.
        items = [{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")} for _, obj in found]
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": meta,
            "items": copy.deepcopy(items),
        }

    def _delete_collection(self, res: Resource, ns: str | None, query: dict[str, str]) -> Obj:
        with self._cond:
            listed = self._list(res, ns, query)
            for item in listed["items"]:
                self._delete(res, item["metadata"].get("namespace", ""), item["metadata"]["name"], None)
            return listed

    # HTTP routing

    def _handle(
        self, method: str, target: str, content_type: str, body: bytes
    ) -> tuple[int, Obj | str] | _WatchRequest:
        url = urlsplit(target)
        path = "/" + url.path.strip("/")
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if method == "GET" and (found := self._discovery(path)) is not None:
            return 200, found
        res, ns, name, sub = self._route(path)
        if method == "GET" and name:
            with self._cond:
                return 200, _as_version(self._existing(res, ns or "", name), res)
        if method == "GET" and _truthy(query.get("watch")):
            rv = query.get("resourceVersion", "")
            if not rv.isdigit():
                if rv:
                    raise ApiError(400, f"invalid resourceVersion {rv!r}")
                rv = "0"
            timeout = float(query.get("timeoutSeconds") or self.watch_timeout)
            match = self._select(ns, query)
            return _WatchRequest(res, match, int(rv) or None, timeout, _truthy(query.get("allowWatchBookmarks")))
        if method == "GET":
            return 200, self._list(res, ns, query)
        if method == "DELETE" and name is None:
            return 200, self._delete_collection(res, ns, query)
        if method == "PATCH" and name:
            return 200, self._patch(res, ns or "", name, content_type, body, sub)
        try:
            data = json.loads(body) if body else None
        except ValueError as err:
            raise ApiError(400, f"the request body is not JSON: {err}") from None
        if method == "POST" and name is None and ns is not None:
            return 201, self._create(res, ns, data)
        if method == "PUT" and name:
            return 200, self._update(res, ns or "", name, data, sub=sub)
        if method == "DELETE" and name:
            return 200, self._delete(res, ns or "", name, data)
        raise ApiError(405, f"{method} is not supported on {path}")

    def _route(self, path: str) -> tuple[Resource, str | None, str | None, str | None]:
        """Map a resource path to (resource, namespace, name, subresource); namespace None: all namespaces."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[0] == "api" and len(parts) > 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) > 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, f"the server could not find the requested resource ({path})")
        ns: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in self._resources:
            ns, rest = rest[1], rest[2:]
        res = self._resources.get((group, version, rest[0]))
        if res is None or len(rest) > 3 or (ns is not None and not res.namespaced):
            raise ApiError(404, f"the server could not find the requested resource ({path})")
        if len(rest) == 3 and not (rest[2] == "status" and res.status):
            raise ApiError(404, f"the server could not find the requested resource ({path})")
        if not res.namespaced:
            ns = ""
        return res, ns, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None

    def _discovery(self, path: str) -> Obj | str | None:
        if path in ("/healthz", "/readyz", "/livez"):
            return "ok"
        if path == "/version":
            return {
                "major": "1", "minor": "31", "gitVersion": "v1.31.0-emulator", "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2024-08-13T00:00:00Z", "goVersion": "go1.22.5",
                "compiler": "gc", "platform": "linux/amd64",
            }  # fmt: skip
        if path == "/api":
            cidrs = [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}]
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": cidrs}
        groups: dict[str, list[str]] = {}
        for group, version, _ in self._resources:
            if group and version not in groups.setdefault(group, []):
                groups[group].append(version)

        def group_info(name: str) -> Obj:
            versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in groups[name]]
            return {"name": name, "versions": versions, "preferredVersion": versions[0]}

        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_info(g) for g in groups]}
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2 and parts[1] in groups:
            return {"kind": "APIGroup", "apiVersion": "v1", **group_info(parts[1])}
        if path == "/api/v1" or (parts[0] == "apis" and len(parts) == 3):
            group, version = ("", "v1") if path == "/api/v1" else (parts[1], parts[2])
            listed: list[Obj] = []
            for res in self._resources.values():
                if (res.group, res.version) != (group, version):
                    continue
                entry = {
                    "name": res.plural,
                    "singularName": res.kind.lower(),
                    "namespaced": res.namespaced,
                    "kind": res.kind,
                }
                listed.append({**entry, "verbs": _VERBS, "shortNames": list(res.short_names)})
                if res.status:
                    listed.append(
                        {
                            **entry,
                            "name": f"{res.plural}/status",
                            "singularName": "",
                            "verbs": ["get", "patch", "update"],
                        }
                    )
            if listed:
                gv = f"{group}/{version}" if group else version
                return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": listed}
        return None

    # watch streaming

    def _serve_watch(self, out: _Handler, req: _WatchRequest) -> None:
        history = self._history[req.res]
        with self._cond:
            epoch, cursor = self._epoch, req.resume or self._rv
            pending = (
                [] if req.resume else [_Event(self._rv, "ADDED", o) for _, o in sorted(self._store[req.res].items())]
            )
            expired = req.resume is not None and (self.faults._take_expire() or req.resume < history.dropped_upto)
            self._watches += 1
        try:
            out.start_chunks()
            end_abrupt = self.faults._end_now()
            if end_abrupt is not None:
                out.end_stream(abrupt=end_abrupt)
                return
            if expired:
                out.chunk(self._expired(cursor, history))
                out.end_chunks()
                return
            self._pump(out, req, history, epoch, cursor, pending)
        except OSError:
            out.close_connection = True  # the client went away
        finally:
            with self._cond:
                self._watches -= 1
                self._cond.notify_all()

    def _pump(
        self, out: _Handler, req: _WatchRequest, history: _History, epoch: int, cursor: int, pending: list[_Event]
    ) -> None:
        deadline = time.monotonic() + req.timeout
        next_bookmark = time.monotonic() + self.bookmark_interval if req.bookmarks else math.inf
        sent = 0
        while True:
            for event in pending:
                visible = _visible(event, req.match)
                if visible is None:
                    continue
                if visible[0] != "BOOKMARK":
                    abrupt = self.faults._drop_now(sent)
                    if abrupt is not None:
                        out.end_stream(abrupt=abrupt)
                        return
                    sent += 1
                shown = visible[1] if visible[0] == "BOOKMARK" else _as_version(visible[1], req.res)
                out.chunk({"type": visible[0], "object": shown})
            with self._cond:
                state, pending = self._wait(out, req, history, epoch, cursor, deadline, next_bookmark)
            if state in ("events", "bookmark"):
                cursor = pending[-1].rv
                if state == "bookmark":
                    next_bookmark = time.monotonic() + self.bookmark_interval
                continue
            if state == "expired":
                out.chunk(self._expired(cursor, history))
            if state != "gone":
                out.end_stream(abrupt=state == "abrupt")
            return

    def _wait(
        self, out: _Handler, req: _WatchRequest, history: _History, epoch: int, cursor: int, *times: float
    ) -> tuple[str, list[_Event]]:
        """With the lock held, wait for what the stream does next; socket writes happen outside the lock."""
        deadline, next_bookmark = times
        while True:
            if self._stopping or epoch != self._epoch:
                return ("abrupt" if self._close_abrupt and not self._stopping else "closed"), []
            newer = history.since(cursor)
            if newer is None:
                return "expired", []
            if newer:
                return "events", newer
            now = time.monotonic()
            if now >= deadline:
                return "timeout", []
            if now >= next_bookmark:
                meta = {"resourceVersion": str(self._rv)}
                bookmark = {"kind": req.res.kind, "apiVersion": req.res.api_version, "metadata": meta}
                return "bookmark", [_Event(self._rv, "BOOKMARK", bookmark)]
            if out.peer_closed():
                return "gone", []
            self._cond.wait(min(deadline, next_bookmark, now + 0.25) - now)  # now and then: notice a gone client

    def _expired(self, cursor: int, history: _History) -> Obj:
        message = f"too old resource version: {cursor} ({history.dropped_upto + 1})"
        return {"type": "ERROR", "object": status_object(410, "Expired", message)}


def _as_version(obj: Obj, res: Resource) -> Obj:
    """A copy of *obj* in the version *res* serves (conversion strategy None: only apiVersion changes)."""
    out = copy.deepcopy(obj)
    if "apiVersion" in out:
        out["apiVersion"] = res.api_version
    return out


def _visible(event: _Event, match: Matcher) -> tuple[str, Obj] | None:
    """What a filtered watch sees: objects entering the selection are ADDED, objects leaving it DELETED."""
    if event.type == "BOOKMARK":
        return event.type, event.obj
    now = match(event.obj)
    if event.type != "MODIFIED":
        return (event.type, event.obj) if now else None
    before = event.old is not None and match(event.old)
    if now:
        return ("MODIFIED" if before else "ADDED"), event.obj
    if before and event.old is not None:
        gone = copy.deepcopy(event.old)
        gone["metadata"]["resourceVersion"] = event.obj["metadata"]["resourceVersion"]
        return "DELETED", gone
    return None


# --- HTTP ------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: KubeEmulator) -> None:
        self.emulator, self.accepted = emulator, 0
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        with self._lock:
            self._sockets.add(sock)
            self.accepted += 1
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client hanging up is no error
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Wake every handler blocked on a keep-alive or watch connection."""
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked transfer for watches
    disable_nagle_algorithm = True  # otherwise Nagle plus delayed ACK hold each answer 40-80 ms
    wbufsize = 1 << 16  # headers and body leave in one write
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is emulator.requests

    def date_time_string(self, timestamp: float | None = None) -> str:
        return super().date_time_string(self.server.emulator.clock.time() if timestamp is None else timestamp)

    def _dispatch(self, method: str) -> None:
        emulator = self.server.emulator
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers: dict[str, str] = {}
        try:
            failure = emulator.faults._take_failure(method, self.path)
            if failure is not None:
                raise failure
            result = emulator._handle(method, self.path, self.headers.get("Content-Type", ""), body)
            if isinstance(result, _WatchRequest):
                emulator.requests.append(RequestRecord(method, self.path, 200))
                emulator._serve_watch(self, result)
                return
            code, payload = result
        except ApiError as err:
            code, payload, headers = err.code, err.status(), err.headers
        except Exception as err:  # noqa: BLE001 - an emulator bug must reach the test as a 500, not a hang
            code, payload = 500, status_object(500, "InternalError", f"emulator error: {err!r}")
        emulator.requests.append(RequestRecord(method, self.path, code))
        text = payload if isinstance(payload, str) else json.dumps(payload)
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def start_chunks(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

    def chunk(self, payload: Obj) -> None:
        data = json.dumps(payload).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def end_stream(self, *, abrupt: bool) -> None:
        """End the stream with the final chunk or, *abrupt*, by cutting the connection mid-stream."""
        if not abrupt:
            self.end_chunks()
            return
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def peer_closed(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True


def main(argv: list[str] | None = None) -> int:
    """Serve the emulator until interrupted; print its URL first."""
    parser = argparse.ArgumentParser(description="Kubernetes API emulator for tests and benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--kubeconfig", type=Path, help="also write a kubeconfig pointing here")
    parser.add_argument("--history", type=int, default=1000, help="watch events kept per resource")
    parser.add_argument("--bookmark-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    emulator = KubeEmulator(args.host, args.port, history=args.history, bookmark_interval=args.bookmark_interval)
    with emulator:
        if args.kubeconfig:
            emulator.write_kubeconfig(args.kubeconfig)
        print(emulator.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
