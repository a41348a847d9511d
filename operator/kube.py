"""Finding the Kubernetes API the way every client tool does.

``--kubeconfig``, else ``KUBECONFIG`` (or ``~/.kube/config``), else the
in-cluster service account. The only module, with its callers in operator/,
that imports the ``kubernetes`` client.
"""

from __future__ import annotations

import os
from typing import Any

from kubernetes import client, config
from metallb.allocator.kube import now_rfc3339

__all__ = ["api_client", "event_body", "now_rfc3339"]


def event_body(
    obj: dict[str, Any], *, reason: str, message: str, type_: str, component: str, host: str = ""
) -> dict[str, Any]:
    """A core/v1 Event about the Service *obj*, as controller and speaker record them."""
    meta = obj.get("metadata") or {}
    now = now_rfc3339()
    source = {"component": component, **({"host": host} if host else {})}
    return {
        "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "kind": "Service",
            "apiVersion": "v1",
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": source,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def api_client(kubeconfig: str | None = None, *, context: str | None = None) -> client.ApiClient:
    """An ApiClient for the cluster (*context* of the kubeconfig, default its current one); raises a clear
    error when none is found."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path or os.path.exists(os.path.expanduser("~/.kube/config")):
        return config.new_client_from_config(config_file=path, context=context)
    if context:
        raise RuntimeError(f"--context {context!r}: no kubeconfig to find it in: pass --kubeconfig or set KUBECONFIG")
    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise RuntimeError(
            "no Kubernetes API found: pass --kubeconfig, set KUBECONFIG, or run inside a cluster"
        ) from exc
    return client.ApiClient()
