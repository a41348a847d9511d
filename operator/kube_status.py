"""``metallb status`` against a cluster: Services, addresses, pools, announcers, pending reasons.

A Service whose pool no advertisement selects is allocated but not announced: the
controller says so in the pool resource's ``Announced`` condition, and the table says
so in the ANNOUNCED column.
"""

from __future__ import annotations

import os
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from metallb.allocator import default_plugin_manager
from metallb.allocator.resources import config_kinds
from metallb.operator import announce_status
from metallb.operator.kube import api_client
from metallb.operator.service import POOL_ANNOTATION

__all__ = ["announcing_nodes", "cluster_status", "unannounced_pools"]

#: Warnings shown even for a Service that has its address: it is not announced (or not alone: another host
#: claimed the address while a node announced it), until a later ``nodeAssigned`` supersedes them.
_PROBLEMS = ("AddressConflict",)


def announcing_nodes(api: client.ApiClient) -> dict[str, set[str]] | None:
    """Service key -> nodes announcing it now, from the ServiceL2Status objects and the ServiceBGPStatus objects
    that name a peer; None when neither kind can be read."""
    custom = client.CustomObjectsApi(api)
    out: dict[str, set[str]] = {}
    read = False
    for kind in (announce_status.L2, announce_status.BGP):
        try:
            found = custom.list_cluster_custom_object(announce_status.GROUP, announce_status.VERSION, kind.plural)
        except ApiException:
            continue  # the CRD is not installed, or no permission: the other kind, or the events
        read = True
        for obj in found.get("items") or ():
            status = obj.get("status") or {}
            key = f"{status.get('serviceNamespace', '')}/{status.get('serviceName', '')}"
            if status.get("node") and (kind is announce_status.L2 or kind.names(obj)):
                out.setdefault(key, set()).add(str(status["node"]))
    return out if read else None


def unannounced_pools(api: client.ApiClient, namespace: str) -> dict[str, str]:
    """Pool name -> the message of its ``Announced=False`` condition, for every pool resource that has one."""
    custom = client.CustomObjectsApi(api)
    out: dict[str, str] = {}
    for kind in config_kinds(default_plugin_manager()):
        if kind.pool is None:
            continue
        try:
            listed = custom.list_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural)
        except ApiException as exc:
            if exc.status in (403, 404):  # not installed, or not ours to read
                continue
            raise
        for item in listed.get("items") or ():
            for condition in (item.get("status") or {}).get("conditions") or ():
                if condition.get("type") == "Announced" and condition.get("status") == "False":
                    out[str((item.get("metadata") or {}).get("name"))] = str(condition.get("message") or "")
    return out


def cluster_status(
    kubeconfig: str | None, *, context: str | None = None, namespace: str | None = None
) -> dict[str, dict[str, Any]]:
    """Every LoadBalancer Service (of *namespace*, default all) with its status, pool, announcing nodes and
    latest failure; also its requested address and class (``-o wide``)."""
    api = api_client(kubeconfig, context=context)
    core = client.CoreV1Api(api)
    silent = unannounced_pools(api, os.environ.get("METALLB_NAMESPACE", "metallb-system"))
    announcing = announcing_nodes(api)
    if namespace is None:
        services = core.list_service_for_all_namespaces().items
        events = core.list_event_for_all_namespaces().items
    else:
        services = core.list_namespaced_service(namespace).items
        events = core.list_namespaced_event(namespace).items
    latest: dict[str, dict[str, Any]] = {}
    for event in sorted(
        events, key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp or "")
    ):
        obj = event.involved_object
        if obj is None or obj.kind != "Service":
            continue
        key = f"{obj.namespace}/{obj.name}"
        entry = latest.setdefault(key, {"nodes": set(), "warning": ""})
        if event.reason == "nodeAssigned":
            entry["nodes"].add((event.message or "").rsplit(" ", 1)[-1].strip('"'))
            if entry["warning"].startswith(_PROBLEMS):
                entry["warning"] = ""  # announced after the conflict: it was resolved
        elif event.type == "Warning":
            entry["warning"] = f"{event.reason}: {event.message}"
        elif event.reason == "IPAllocated":
            entry["warning"] = ""
    out: dict[str, dict[str, Any]] = {}
    for svc in services:
        if svc.spec.type != "LoadBalancer":
            continue
        key = f"{svc.metadata.namespace}/{svc.metadata.name}"
        ingress = (svc.status.load_balancer.ingress if svc.status and svc.status.load_balancer else None) or []
        addresses = [i.ip for i in ingress if i.ip]
        info = latest.get(key, {"nodes": set(), "warning": ""})
        # Who announces now (ServiceL2Status, ServiceBGPStatus); a Service without one, or without the CRDs: the events.
        nodes = announcing[key] if announcing and key in announcing else info["nodes"]
        warning = info["warning"]
        if addresses:
            pending = warning if warning.startswith(_PROBLEMS) else ""
        else:
            pending = warning or "no address yet (is the controller running?)"
        pool = (svc.metadata.annotations or {}).get(POOL_ANNOTATION, "")
        announced = ", ".join(sorted(nodes))
        if pool in silent and not announced:
            announced = f'not announced: pool "{pool}": {silent[pool]}'
        out[key] = {
            "addresses": addresses,
            "pool": pool,
            "announced": announced,
            "pending": pending,
            "requested": svc.spec.load_balancer_ip or "",
            "class": svc.spec.load_balancer_class or "",
        }
    return out
