"""What a Kubernetes Service asks of metallb, read from its manifest (a plain dict).

Pure: no client, no I/O. The controller and standalone mode both read Services
through :func:`read_service`, so they agree on every annotation and field.
Every annotation is read under both prefixes, ``metallb.io/`` (preferred) and
the legacy ``metallb.universe.tf/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import netaddr
from metallb.allocator import Port

__all__ = [
    "ANNOTATION_PREFIXES",
    "FINALIZER",
    "POOL_ANNOTATION",
    "ServiceIntent",
    "annotation",
    "read_service",
]

ANNOTATION_PREFIXES = ("metallb.io/", "metallb.universe.tf/")
#: Written by the controller: the pool the addresses came from. (Sources may
#: declare more annotations: ``SourceCapabilities.annotations``.)
POOL_ANNOTATION = "metallb.io/ip-allocated-from-pool"
#: Finalizer on Services holding addresses whose source releases them remotely
#: (``SourceCapabilities.remote_release``: address services, IPAMs), so a
#: deletion while the controller is down still releases them.
FINALIZER = "metallb.io/address-release"


def annotation(meta: Mapping[str, Any], name: str) -> str | None:
    """The value of annotation *name* under either prefix (``metallb.io/`` wins)."""
    annotations = meta.get("annotations") or {}
    for prefix in ANNOTATION_PREFIXES:
        value = annotations.get(prefix + name)
        if value is not None:
            return str(value)
    return None


@attrs.frozen(kw_only=True)
class ServiceIntent:
    """Everything the allocator needs to know about one Service.

    Attributes:
        key: ``namespace/name``.
        is_load_balancer: ``spec.type == LoadBalancer``.
        lb_class: ``spec.loadBalancerClass`` or None.
        families: IP families wanted, in order (4, 6).
        require_all: ``RequireDualStack``; ``PreferDualStack`` is False with
            two families.
        requested: addresses asked for (``spec.loadBalancerIP`` or the
            ``loadBalancerIPs`` annotation).
        pool: the ``address-pool`` annotation.
        sharing_key: the ``allow-shared-ip`` annotation.
        backend_key: "" for ``Cluster`` traffic policy, the sorted selector for ``Local``.
        local_traffic: ``externalTrafficPolicy: Local``.
        ports: (protocol, port) of every service port.
        current: addresses in ``status.loadBalancer.ingress``.
        error: why the Service's request is invalid (event ``LoadBalancerFailed``).
        labels: the Service's labels (pools' ``serviceAllocation`` selects by them).
        uid: ``metadata.uid`` ("" when absent); sources may key leases on it.
    """

    key: str
    is_load_balancer: bool = True
    lb_class: str | None = None
    families: tuple[int, ...] = (4,)
    require_all: bool = True
    requested: tuple[netaddr.IPAddress, ...] = ()
    pool: str | None = None
    sharing_key: str = ""
    backend_key: str = ""
    local_traffic: bool = False
    ports: tuple[Port, ...] = ()
    current: tuple[str, ...] = ()
    error: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    uid: str = ""


def _family(text: str) -> int | None:
    return {"IPv4": 4, "IPv6": 6}.get(text)


def read_service(obj: Mapping[str, Any]) -> ServiceIntent:
    """Read a Service manifest (as the API returns it, or written by hand)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    key = f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"
    error = ""
    requested: list[netaddr.IPAddress] = []
    lb_ip = (spec.get("loadBalancerIP") or "").strip()
    lb_ips = annotation(meta, "loadBalancerIPs")
    texts: list[str] = []
    if lb_ip and lb_ips:
        error = "spec.loadBalancerIP and the loadBalancerIPs annotation are both set; use only the annotation"
    elif lb_ips:
        texts = [t.strip() for t in lb_ips.split(",") if t.strip()]
    elif lb_ip:
        texts = [lb_ip]
    for text in texts:
        try:
            requested.append(netaddr.IPAddress(text))
        except (netaddr.AddrFormatError, ValueError):
            error = error or f'invalid requested address "{text}"'
    if len({ip.version for ip in requested}) != len(requested):
        error = error or "at most one requested address per IP family"
    families: list[int] = [f for f in (_family(x) for x in spec.get("ipFamilies") or ()) if f]
    if not families:
        cluster_ips = [*(spec.get("clusterIPs") or ()), spec.get("clusterIP") or ""]
        for text in cluster_ips:
            try:
                version = netaddr.IPAddress(text).version
            except (netaddr.AddrFormatError, ValueError, TypeError):
                continue
            if version not in families:
                families.append(version)
    if not families:
        families = [ip.version for ip in requested] or [4]
    policy = spec.get("ipFamilyPolicy") or "SingleStack"
    if policy == "SingleStack":
        families = families[:1]
    elif len(families) == 1:
        families = [families[0], 10 - families[0]]  # ask for both; PreferDualStack may fall back
    if requested and not error:
        wanted = {ip.version for ip in requested}
        if policy == "SingleStack" and wanted != set(families):
            error = f"requested address family IPv{requested[0].version} does not match the service's IPv{families[0]}"
        elif policy != "SingleStack":
            families = [f for f in families if f in wanted] if policy == "PreferDualStack" else families
    local = spec.get("externalTrafficPolicy") == "Local"
    selector = spec.get("selector") or {}
    backend = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) if local else ""
    ports: list[Port] = []
    for p in spec.get("ports") or ():
        try:
            ports.append(Port(str(p.get("protocol") or "TCP"), int(p["port"])))
        except (KeyError, TypeError, ValueError):
            error = error or f"invalid port {p!r}: each port needs a numeric port"
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    current = tuple(str(i["ip"]) for i in ingress if isinstance(i, Mapping) and i.get("ip"))
    if any(not (isinstance(i, Mapping) and i.get("ip")) for i in ingress):
        current = ()  # a hostname entry: not ours, start over as MetalLB does
    return ServiceIntent(
        key=key,
        is_load_balancer=spec.get("type") == "LoadBalancer",
        lb_class=spec.get("loadBalancerClass"),
        families=tuple(families),
        require_all=policy != "PreferDualStack",
        requested=tuple(requested),
        pool=annotation(meta, "address-pool"),
        sharing_key=annotation(meta, "allow-shared-ip") or "",
        backend_key=backend,
        local_traffic=local,
        ports=tuple(ports),
        current=current,
        error=error,
        labels=tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
        uid=str(meta.get("uid") or ""),
    )
