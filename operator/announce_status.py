"""Per-Service announcement status, as MetalLB publishes it: ``ServiceL2Status`` objects.

One object per (node, Service) that the node announces by layer 2, in the
speaker's namespace, with MetalLB's labels and ``status`` fields (``node``,
``serviceName``, ``serviceNamespace``, ``interfaces: [{name}]``), so tools
written for MetalLB 0.14.8+ read ours. The announcing speaker writes it when
its announcement changes (never periodically) and deletes it when it stops;
the new owner of a Service also deletes the objects of nodes no longer alive.
The name is derived from node and Service (``l2-`` and a hash) where MetalLB
uses ``generateName``: a restarted speaker finds its own objects again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from metallb.operator.informer import Informer

__all__ = [
    "GROUP",
    "L2_KIND",
    "L2_PLURAL",
    "LABEL_NAME",
    "LABEL_NAMESPACE",
    "LABEL_NODE",
    "VERSION",
    "AnnouncementStatus",
    "l2_status",
    "status_name",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

GROUP = "metallb.io"
VERSION = "v1beta1"
L2_PLURAL = "servicel2statuses"
L2_KIND = "ServiceL2Status"
LABEL_NODE = "metallb.io/node"
LABEL_NAME = "metallb.io/service-name"
LABEL_NAMESPACE = "metallb.io/service-namespace"
_TIMEOUT = (3, 10)


def status_name(node: str, key: str) -> str:
    """The object's name for *node* announcing Service *key* (``namespace/name``)."""
    return "l2-" + hashlib.sha256(f"{node}\0{key}".encode()).hexdigest()[:16]


def l2_status(node: str, key: str, interfaces: Iterable[str], *, namespace: str) -> Obj:
    """A ``ServiceL2Status`` for *node* announcing *key* on *interfaces*."""
    svc_namespace, _, svc_name = key.partition("/")
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": L2_KIND,
        "metadata": {
            "name": status_name(node, key),
            "namespace": namespace,
            "labels": {LABEL_NODE: node, LABEL_NAME: svc_name, LABEL_NAMESPACE: svc_namespace},
        },
        "status": {
            "node": node,
            "serviceName": svc_name,
            "serviceNamespace": svc_namespace,
            "interfaces": [{"name": name} for name in sorted(interfaces)],
        },
    }


def _key(obj: Obj) -> tuple[str, str]:
    """(node, service key) of a status object, from its labels."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return str(labels.get(LABEL_NODE, "")), f"{labels.get(LABEL_NAMESPACE, '')}/{labels.get(LABEL_NAME, '')}"


class AnnouncementStatus:
    """This speaker's ``ServiceL2Status`` objects, and every speaker's as last watched.

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
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.node_name = namespace, node_name
        self._wrote = wrote
        self._published: dict[str, tuple[str, ...]] | None = None  # key -> interfaces; None until first publish
        self.informer = Informer(
            "servicel2statuses",
            self.custom.list_namespaced_custom_object,
            on_change,
            list_kwargs={"group": GROUP, "version": VERSION, "namespace": namespace, "plural": L2_PLURAL},
            watch_timeout=watch_timeout,
        )

    def announcers(self) -> dict[str, frozenset[str]]:
        """Service key -> nodes whose status says they announce it (ours included)."""
        out: dict[str, set[str]] = {}
        for obj in list(self.informer.cache.values()):
            node, key = _key(obj)
            out.setdefault(key, set()).add(node)
        return {k: frozenset(v) for k, v in out.items()}

    def publish(self, wanted: Mapping[str, tuple[str, ...]], *, live: frozenset[str]) -> None:
        """Make this node's objects say exactly *wanted* (key -> interfaces); delete dead nodes' objects of those keys.

        Only differences are written. A failed write is retried at the next call.
        """
        if self._published is None:
            if not self.informer.synced.is_set():
                return  # our leftovers from a previous run are known only once listed
            self._published = {}
            for obj in list(self.informer.cache.values()):
                node, key = _key(obj)
                if node == self.node_name:
                    names = tuple(i.get("name", "") for i in (obj.get("status") or {}).get("interfaces") or ())
                    self._published[key] = tuple(sorted(names))
        published = self._published
        for key in [k for k in published if k not in wanted]:
            if self._delete(status_name(self.node_name, key)):
                del published[key]
        for key, interfaces in wanted.items():
            interfaces = tuple(sorted(interfaces))
            if published.get(key) == interfaces:
                continue
            if self._write(key, interfaces):
                published[key] = interfaces
                for obj in list(self.informer.cache.values()):
                    node, other = _key(obj)
                    if other == key and node != self.node_name and node not in live:
                        self._delete(status_name(node, key))

    def withdraw_all(self) -> None:
        """Delete every object of this node (a clean stop)."""
        self.publish({}, live=frozenset())

    def _write(self, key: str, interfaces: tuple[str, ...]) -> bool:
        body = l2_status(self.node_name, key, interfaces, namespace=self.namespace)
        name = body["metadata"]["name"]
        args = (GROUP, VERSION, self.namespace, L2_PLURAL)
        try:
            try:
                self._wrote(L2_PLURAL, "create")
                self.custom.create_namespaced_custom_object(*args, body, _request_timeout=_TIMEOUT)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            self._wrote(L2_PLURAL + "/status", "patch")
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
            self._wrote(L2_PLURAL, "delete")
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, L2_PLURAL, name, _request_timeout=_TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("announcement status %s not deleted: %s %s", name, exc.status, exc.reason)
                return False
        except Exception as exc:  # noqa: BLE001 - retried at the next change
            log.warning("announcement status %s not deleted: %s", name, exc)
            return False
        return True
