"""Which node announces a layer-2 service address: a pure function, as in MetalLB.

Every speaker computes the same answer from the same inputs; nothing is
stored or negotiated. The winner among the candidates is the node with the
lowest ``sha256(node + "#" + address)``, keyed by address (MetalLB v0.11+) so
that services sharing an address always pick the same node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import netaddr
from metallb.allocator.model import EXCLUDE_LB_LABEL, ClusterView, NodeInfo, NodeSelector, ServiceView

__all__ = [
    "candidates",
    "election_key",
    "rank",
    "reason_not_to_announce",
    "winner",
]


def election_key(service: ServiceView) -> str | None:
    """The address the election hashes: the service's first address, or None without one."""
    return str(service.ips[0]) if service.ips else None


def rank(address: str | netaddr.IPAddress, nodes: Iterable[str]) -> list[str]:
    """*nodes* in election order for *address*: the first one announces.

    Sorted by the sha256 digest bytes, then by name, so the order never depends
    on the order of the input.
    """
    key = str(address)
    return sorted(set(nodes), key=lambda n: (hashlib.sha256(f"{n}#{key}".encode()).digest(), n))


def winner(address: str | netaddr.IPAddress, nodes: Iterable[str]) -> str | None:
    """The node that announces *address* among candidate *nodes*, or None if there are none."""
    ordered = rank(address, nodes)
    return ordered[0] if ordered else None


def _labels(name: str, cluster: ClusterView) -> Mapping[str, str]:
    node: NodeInfo | None = cluster.node if name == cluster.node.name else cluster.nodes.get(name)
    return node.labels if node is not None else {}


def _eligible(name: str, service: ServiceView, cluster: ClusterView, ignore_exclude_lb: bool) -> str | None:
    """None if *name* may announce *service* at all, else the reason it may not."""
    labels = _labels(name, cluster)
    if not ignore_exclude_lb and EXCLUDE_LB_LABEL in labels:
        return "nodeExcluded"
    if not NodeSelector.any_match(service.pool.node_selectors, labels):
        return "nodeNotSelected"
    ads = service.pool.l2_advertisements
    if ads and not any(ad.selects(name, labels) for ad in ads):
        return "nodeNotSelected"  # MetalLB: no L2Advertisement of the pool selects this node
    return None


def _alive(cluster: ClusterView) -> frozenset[str]:
    # An empty set means liveness is not tracked: every known node counts as alive
    # (MetalLB 0.15's fix for memberlist-off; the 0.11 rule announced nothing then).
    if cluster.live_speakers:
        return cluster.live_speakers
    return frozenset(cluster.nodes) | {cluster.node.name}


def candidates(service: ServiceView, cluster: ClusterView, *, ignore_exclude_lb: bool = False) -> frozenset[str]:
    """The nodes that may announce *service*.

    ``Local``: live nodes with a ready endpoint of the service. ``Cluster``:
    every live speaker, if the service has a ready endpoint anywhere. Then
    nodes carrying the exclusion label (unless *ignore_exclude_lb*), nodes
    the pool's ``node-selectors`` do not select, and nodes no layer-2
    advertisement of the pool selects are removed.
    """
    ignore = ignore_exclude_lb or cluster.ignore_exclude_lb
    alive = _alive(cluster)
    if service.local_traffic:
        pool = service.ready_nodes & alive
    elif service.has_ready_endpoints or service.ready_nodes:
        pool = alive
    else:
        pool = frozenset()
    return frozenset(n for n in pool if _eligible(n, service, cluster, ignore) is None)


def reason_not_to_announce(
    service: ServiceView, cluster: ClusterView, *, ignore_exclude_lb: bool = False
) -> str | None:
    """None if this node (``cluster.node``) announces *service*, else MetalLB-style reason.

    Reasons: ``noIPAllocated``, ``noEndpoints``, ``nodeExcluded``,
    ``nodeNotSelected``, ``noLocalEndpoints``, ``notOwner``.
    """
    key = election_key(service)
    if key is None:
        return "noIPAllocated"
    if not service.has_ready_endpoints and not service.ready_nodes:
        return "noEndpoints"
    me = cluster.node.name
    why = _eligible(me, service, cluster, ignore_exclude_lb or cluster.ignore_exclude_lb)
    if why is not None:
        return why
    if service.local_traffic and me not in service.ready_nodes:
        return "noLocalEndpoints"
    if winner(key, candidates(service, cluster, ignore_exclude_lb=ignore_exclude_lb)) != me:
        return "notOwner"
    return None
