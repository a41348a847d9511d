"""Finding the Kubernetes API the way every client tool does.

``--kubeconfig``, else ``KUBECONFIG`` (or ``~/.kube/config``), else the
in-cluster service account. The only module, with its callers in operator/,
that imports the ``kubernetes`` client.
"""

from __future__ import annotations

import os

from kubernetes import client, config

__all__ = ["api_client"]


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An ApiClient for the cluster; raises a clear error when none is found."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path or os.path.exists(os.path.expanduser("~/.kube/config")):
        return config.new_client_from_config(config_file=path)
    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise RuntimeError(
            "no Kubernetes API found: pass --kubeconfig, set KUBECONFIG, or run inside a cluster"
        ) from exc
    return client.ApiClient()
