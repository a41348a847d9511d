"""``metallb status`` against a cluster: Services, addresses, pools, announcers, pending reasons."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from metallb.operator.kube import api_client
from metallb.operator.service import POOL_ANNOTATION

__all__ = ["cluster_status"]


def cluster_status(
    kubeconfig: str | None, *, context: str | None = None, namespace: str | None = None
) -> dict[str, dict[str, Any]]:
    """Every LoadBalancer Service (of *namespace*, default all) with its status, pool, announcing nodes and
    latest failure; also its requested address and class (``-o wide``)."""
    core = client.CoreV1Api(api_client(kubeconfig, context=context))
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
        out[key] = {
            "addresses": addresses,
            "pool": (svc.metadata.annotations or {}).get(POOL_ANNOTATION, ""),
            "announced": ", ".join(sorted(info["nodes"])),
            "pending": "" if addresses else (info["warning"] or "no address yet (is the controller running?)"),
            "requested": svc.spec.load_balancer_ip or "",
            "class": svc.spec.load_balancer_class or "",
        }
    return out
