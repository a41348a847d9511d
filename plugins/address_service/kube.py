"""The bundled address service in Kubernetes: leases as ``AddressLease`` objects, one leader among replicas.

:class:`KubeLeaseStore` is a :class:`~.store.LeaseStore` whose leases live
in the API server, one namespaced ``AddressLease`` (``metallb.io/v1alpha1``)
per lease, named by its allocation id. It is written when a lease is bound,
released or lost, never on a renewal (a renewal only moves times the next
leader renews anyway). The MAC pool, when one is used, lives in a ConfigMap.

:class:`LeaderElection` (:class:`metallb.allocator.kube.LeaderLease`) holds a
``coordination.k8s.io/v1`` Lease; only its holder serves. A new leader loads
every AddressLease and renews each DHCP lease with the same MAC and client id,
so the DHCP server hands back the same address. Expiry of another holder is
judged on this process's monotonic clock from the moment its renewals stop
changing the Lease.

Only ``metallb address-service --kube-leases`` imports this module (it needs
the ``kubernetes`` package).
"""

from __future__ import annotations

import os
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from metallb.allocator.kube import LeaderLease
from metallb.plugins.address_service.api import Lease
from metallb.plugins.address_service.store import State

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "KubeLeaseStore", "LeaderElection", "api_client"]

GROUP, VERSION, PLURAL, KIND = "metallb.io", "v1alpha1", "addressleases", "AddressLease"
#: Label on every AddressLease, naming the service instance (several may share a namespace).
INSTANCE_LABEL = "metallb.io/address-service"
#: Lease fields a renewal changes; a change of only these is not written.
_RENEWAL_FIELDS = ("bound", "renew", "rebind", "expires")
_TIMEOUT = (3, 10)
Obj = dict[str, Any]


def api_client(kubeconfig: str = "") -> client.ApiClient:
    """An ApiClient from *kubeconfig*, ``KUBECONFIG``, or the pod's service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG", "")
    if path:
        return config.new_client_from_config(config_file=path)
    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise RuntimeError("no Kubernetes API found: pass --kubeconfig, set KUBECONFIG, or run in a pod") from exc
    return client.ApiClient()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def lease_object(lease: Lease, *, namespace: str, instance: str) -> Obj:
    """The AddressLease of *lease* (spec: the lease's fields, camelCase)."""
    spec = {_camel(k): (list(v) if isinstance(v, tuple) else v) for k, v in lease.to_json().items() if k != "id"}
    spec = {k: v for k, v in spec.items() if v is not None}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": lease.id, "namespace": namespace, "labels": {INSTANCE_LABEL: instance}},
        "spec": spec,
    }


def lease_of(obj: Obj) -> Lease:
    """The Lease an AddressLease holds."""
    spec = obj.get("spec") or {}
    data = {name: spec[_camel(name)] for name in Lease.from_json({"id": "", "service": "", "ip": ""}).to_json()
            if _camel(name) in spec}  # fmt: skip
    data["id"] = obj["metadata"]["name"]
    return Lease.from_json(data)


def _material(lease: Lease) -> Obj:
    data = lease.to_json()
    for name in _RENEWAL_FIELDS:
        data.pop(name, None)
    return data


class KubeLeaseStore:
    """Leases as AddressLease objects in *namespace*; the MAC pool in the ConfigMap ``<instance>-macs``.

    Args:
        api: the API client.
        namespace: where the objects live (the service's own namespace).
        instance: the service's name; labels its objects and names the ConfigMap.
    """

    def __init__(self, api: client.ApiClient, *, namespace: str, instance: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.instance = instance
        self._saved: dict[str, Obj] = {}  # lease id -> its material fields, as stored
        self._pool: tuple[frozenset[str], frozenset[str]] | None = None
        self.writes = 0

    def __repr__(self) -> str:
        return f"KubeLeaseStore({self.namespace}/{PLURAL}, instance={self.instance!r})"

    @property
    def _pool_name(self) -> str:
        return f"{self.instance}-macs"

    def load(self) -> State:
        """Every AddressLease of this instance, and the MAC pool."""
        found = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, label_selector=f"{INSTANCE_LABEL}={self.instance}",
            _request_timeout=_TIMEOUT,
        )  # fmt: skip
        leases = sorted((lease_of(obj) for obj in found.get("items") or ()), key=lambda lease: lease.bound)
        self._saved = {lease.id: _material(lease) for lease in leases}
        macs: frozenset[str] = frozenset()
        retired: frozenset[str] = frozenset()
        try:
            pool = self.core.read_namespaced_config_map(self._pool_name, self.namespace, _request_timeout=_TIMEOUT)
            data = pool.data or {}
            macs = frozenset(data.get("macs", "").split())
            retired = frozenset(data.get("retired", "").split())
        except ApiException as exc:
            if exc.status != 404:
                raise
        self._pool = (macs, retired)
        return State(leases=tuple(leases), macs=macs, retired=retired)

    def save(self, state: State) -> None:
        """Create, replace or delete the AddressLeases that changed other than by a renewal; the pool if it changed."""
        current = {lease.id: lease for lease in state.leases}
        for lease_id in [i for i in self._saved if i not in current]:
            try:
                self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, lease_id, _request_timeout=_TIMEOUT
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
            del self._saved[lease_id]
            self.writes += 1
        for lease_id, lease in current.items():
            material = _material(lease)
            known = self._saved.get(lease_id)
            if known == material:
                continue  # unchanged, or renewed only
            body = lease_object(lease, namespace=self.namespace, instance=self.instance)
            if known is None:
                self._create(body)
            else:
                self._replace(lease_id, body)
            self._saved[lease_id] = material
            self.writes += 1
        pool = (frozenset(state.macs), frozenset(state.retired))
        if pool != self._pool:
            self._save_pool(*pool)
            self._pool = pool

    def _create(self, body: Obj) -> None:
        try:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body, _request_timeout=_TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            self._replace(body["metadata"]["name"], body)  # written by us before a crash: take it over

    def _replace(self, name: str, body: Obj) -> None:
        current = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=_TIMEOUT
        )
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
        self.custom.replace_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, body, _request_timeout=_TIMEOUT
        )

    def _save_pool(self, macs: frozenset[str], retired: frozenset[str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self._pool_name,
                "namespace": self.namespace,
                "labels": {INSTANCE_LABEL: self.instance},
            },
            "data": {"macs": " ".join(sorted(macs)), "retired": " ".join(sorted(retired))},
        }
        try:
            self.core.replace_namespaced_config_map(self._pool_name, self.namespace, body, _request_timeout=_TIMEOUT)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespaced_config_map(self.namespace, body, _request_timeout=_TIMEOUT)


#: The leader election of ``--kube-leases``: the Lease the controller holds too.
LeaderElection = LeaderLease
