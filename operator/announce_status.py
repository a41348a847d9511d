"""Per-Service announcement status, as MetalLB publishes it: ``ServiceL2Status`` and ``ServiceBGPStatus`` objects.

One object per (node, Service) that the node announces by layer 2
(:data:`L2`) or advertises by BGP (:data:`BGP`), in the speaker's namespace,
with MetalLB's labels and ``status`` fields (``node``, ``serviceName``,
``serviceNamespace``, and ``interfaces: [{name}]`` or ``peers: [name]``), so
tools written for MetalLB 0.14.8+ (0.15 for BGP) read ours. The announcing
speaker writes it when its announcement changes (never periodically) and
deletes it when it stops; a node writing a Service's object also deletes that
Service's objects of nodes no longer alive, and the first live node by name
deletes every object of a node that stops being alive. The name is derived from node and
Service (``l2-`` or ``bgp-`` and a hash) where MetalLB uses ``generateName``:
a restarted speaker finds its own objects again.

For BGP, ``peers`` names the peers the Service's routes are sent to now
(established sessions that hold them): ``BGPPeer`` names, and ``peer1``,
``peer2`` ... for ConfigMap peers (their position, as ``metallb config
convert`` names them). A node with no such peer has no object.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from metallb.operator.informer import Informer

__all__ = [
    "BGP",
    "BGP_KIND",
    "BGP_PLURAL",
    "GROUP",
    "L2",
    "L2_KIND",
    "L2_PLURAL",
    "LABEL_NAME",
    "LABEL_NAMESPACE",
    "LABEL_NODE",
    "VERSION",
    "AnnouncementStatus",
    "StatusKind",
    "bgp_status",
    "l2_status",
    "status_name",
    "status_object",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

GROUP = "metallb.io"
VERSION = "v1beta1"
L2_PLURAL = "servicel2statuses"
L2_KIND = "ServiceL2Status"
BGP_PLURAL = "servicebgpstatuses"
BGP_KIND = "ServiceBGPStatus"
LABEL_NODE = "metallb.io/node"
LABEL_NAME = "metallb.io/service-name"
LABEL_NAMESPACE = "metallb.io/service-namespace"
_TIMEOUT = (3, 10)


@attrs.frozen(kw_only=True)
class StatusKind:
    """One kind of announcement status: its resource, name prefix and list field.

    Attributes:
        kind: ``ServiceL2Status`` or ``ServiceBGPStatus``.
        plural: the resource's plural.
        prefix: the objects' name prefix (``l2-``, ``bgp-``).
        field: the ``status`` list naming where it is announced: ``interfaces``
            (``[{name}]``) or ``peers`` (``[name]``).
    """

    kind: str
    plural: str
    prefix: str
    field: str

    def entries(self, names: Iterable[str]) -> list[Any]:
        """The ``status`` list for *names* (sorted)."""
        ordered = sorted(names)
        return [{"name": n} for n in ordered] if self.field == "interfaces" else list(ordered)

    def names(self, obj: Obj) -> tuple[str, ...]:
        """The names the ``status`` list of *obj* holds, sorted."""
        items = (obj.get("status") or {}).get(self.field) or ()
        out = (i.get("name", "") if isinstance(i, dict) else i for i in items)
        return tuple(sorted(str(n) for n in out if n))


L2 = StatusKind(kind=L2_KIND, plural=L2_PLURAL, prefix="l2-", field="interfaces")
BGP = StatusKind(kind=BGP_KIND, plural=BGP_PLURAL, prefix="bgp-", field="peers")


def status_name(node: str, key: str, kind: StatusKind = L2) -> str:
    """The object's name for *node* announcing Service *key* (``namespace/name``)."""
    return kind.prefix + hashlib.sha256(f"{node}\0{key}".encode()).hexdigest()[:16]


def status_object(kind: StatusKind, node: str, key: str, names: Iterable[str], *, namespace: str) -> Obj:
    """A status object of *kind* for *node* announcing *key* on *names* (interfaces or peers)."""
    svc_namespace, _, svc_name = key.partition("/")
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind.kind,
        "metadata": {
            "name": status_name(node, key, kind),
            "namespace": namespace,
            "labels": {LABEL_NODE: node, LABEL_NAME: svc_name, LABEL_NAMESPACE: svc_namespace},
        },
        "status": {
            "node": node,
            "serviceName": svc_name,
            "serviceNamespace": svc_namespace,
            kind.field: kind.entries(names),
        },
    }


def l2_status(node: str, key: str, interfaces: Iterable[str], *, namespace: str) -> Obj:
    """A ``ServiceL2Status`` for *node* announcing *key* on *interfaces*."""
    return status_object(L2, node, key, interfaces, namespace=namespace)


def bgp_status(node: str, key: str, peers: Iterable[str], *, namespace: str) -> Obj:
    """A ``ServiceBGPStatus`` for *node* advertising *key* to *peers*."""
    return status_object(BGP, node, key, peers, namespace=namespace)


def _key(obj: Obj) -> tuple[str, str]:
    """(node, service key) of a status object, from its labels."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return str(labels.get(LABEL_NODE, "")), f"{labels.get(LABEL_NAMESPACE, '')}/{labels.get(LABEL_NAME, '')}"


class AnnouncementStatus:
    """This speaker's status objects of one kind (``ServiceL2Status`` by default), and every speaker's as last watched.

    :meth:`publish` converges this node's objects on what it announces now;
    :meth:`announcers` tells who announces a Service (for the drain and for
    conflict probing: a Service another node announced is a move).
    """

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        node_name: str,
        on_change: Callable[[str, Obj | None], None],
        wrote: Callable[[str, str], None],
        watch_timeout: int = 60,
        kind: StatusKind = L2,
        optional: bool = False,
    ) -> None:
        self.kind = kind
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.node_name = namespace, node_name
        self._wrote = wrote
        self._published: dict[str, tuple[str, ...]] | None = None  # key -> names; None until first publish
        self._was_live: frozenset[str] = frozenset()  # the live set of the last publish
        self._dead: frozenset[str] = frozenset()  # nodes that left it, their objects not deleted yet
        self._seen: set[str] = set()  # keys whose object of ours the informer has shown
        self.informer = Informer(
            kind.plural,
            self.custom.list_namespaced_custom_object,
            on_change,
            list_kwargs={"group": GROUP, "version": VERSION, "namespace": namespace, "plural": kind.plural},
            watch_timeout=watch_timeout,
            optional=optional,
        )

    def announcers(self) -> dict[str, frozenset[str]]:
        """Service key -> nodes whose status says they announce it on an interface or to a peer (ours included)."""
        out: dict[str, set[str]] = {}
        for obj in list(self.informer.cache.values()):
            node, key = _key(obj)
            if self.kind.names(obj):
                out.setdefault(key, set()).add(node)
        return {k: frozenset(v) for k, v in out.items()}

    def publish(self, wanted: Mapping[str, tuple[str, ...]], *, live: frozenset[str]) -> None:
        """Make this node's objects say exactly *wanted* (key -> interfaces or peers); delete dead nodes' objects.

        Only differences are written. A failed write is retried at the next call. Dead nodes' objects (of
        nodes not in *live*) are deleted by a node writing the same Service's object (a new owner), and
        all of them by the first live node by name when they leave *live* (a dead BGP node's: the others
        advertise already and write nothing). Neither while this node is not live itself: a node cut off
        from the others sees them all dead. An object of ours that disappears (another node took us for
        dead) is written again.
        """
        if self.informer.missing:
            return  # an optional kind whose CRD is not installed: nothing to write to
        if self._published is None:
            if not self.informer.synced.is_set():
                return  # our leftovers from a previous run are known only once listed
            self._published = {}
            for obj in list(self.informer.cache.values()):
                node, key = _key(obj)
                if node == self.node_name:
                    self._published[key] = self.kind.names(obj)
        published = self._published
        for key in list(published):  # ours deleted by another node (it took us for dead): written again
            if f"{self.namespace}/{status_name(self.node_name, key, self.kind)}" in self.informer.cache:
                self._seen.add(key)
            elif key in self._seen:
                self._seen.discard(key)
                del published[key]
        for key in [k for k in published if k not in wanted]:
            if self._delete(status_name(self.node_name, key, self.kind)):
                del published[key]
                self._seen.discard(key)
        for key, names in wanted.items():
            names = tuple(sorted(names))
            if published.get(key) == names:
                continue
            if self._write(key, names):
                published[key] = names
                self._seen.discard(key)  # until the informer shows it
                if self.node_name not in live:
                    continue
                for obj in list(self.informer.cache.values()):
                    node, other = _key(obj)
                    if other == key and node != self.node_name and node not in live:
                        self._delete(status_name(node, key, self.kind))
        if self.node_name in live:
            self._sweep(live)

    def _sweep(self, live: frozenset[str]) -> None:
        """The first live node by name deletes the objects of nodes that left *live* since the last call."""
        self._dead = (self._dead | (self._was_live - live)) - live
        self._was_live = live
        if not self._dead or self.node_name != min(live):
            return
        for obj in list(self.informer.cache.values()):
            node, _ = _key(obj)
            if node in self._dead and not self._delete(str((obj.get("metadata") or {}).get("name", ""))):
                return  # tried again at the next call
        self._dead = frozenset()

    def withdraw_all(self) -> None:
        """Delete every object of this node (a clean stop)."""
        self.publish({}, live=frozenset())

    def _write(self, key: str, names: tuple[str, ...]) -> bool:
        plural = self.kind.plural
        body = status_object(self.kind, self.node_name, key, names, namespace=self.namespace)
        name = body["metadata"]["name"]
        args = (GROUP, VERSION, self.namespace, plural)
        try:
            try:
                self._wrote(plural, "create")
                self.custom.create_namespaced_custom_object(*args, body, _request_timeout=_TIMEOUT)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            self._wrote(plural + "/status", "patch")
            self.custom.patch_namespaced_custom_object_status(
                *args, name, {"status": body["status"]}, _request_timeout=_TIMEOUT
            )
        except ApiException as exc:
            log.warning("announcement status of %s not written: %s %s", key, exc.status, exc.reason)
            return False
        except Exception as exc:  # noqa: BLE001 - the API unreachable: retried at the next change
            log.warning("announcement status of %s not written: %s", key, exc)
            return False
        return True

    def _delete(self, name: str) -> bool:
        try:
            self._wrote(self.kind.plural, "delete")
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, self.kind.plural, name, _request_timeout=_TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("announcement status %s not deleted: %s %s", name, exc.status, exc.reason)
                return False
        except Exception as exc:  # noqa: BLE001 - retried at the next change
            log.warning("announcement status %s not deleted: %s", name, exc)
            return False
        return True
