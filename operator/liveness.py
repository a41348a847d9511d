"""Which speakers are alive, for the layer-2 election and BGP node selectors: three ways, one interface.

- ``memberlist`` (the default): gossip between the speakers (SWIM with
  Lifeguard, :mod:`metallb.operator.membership`) on port 7946, encrypted with
  the ``memberlist`` Secret's key. Kubernetes says who may be a member (the
  speaker Pods matching ``--ml-labels``, or every Node's InternalIP); gossip
  says who is alive. No API writes at all.
- ``node``: the Node's ``Ready`` condition and its kubelet Lease in
  ``kube-node-lease``. No writes of our own; as slow as the kubelet (a Lease
  renewed every 10 s, 40 s to expire). The fallback when memberlist has no
  key or cannot bind its port.
- ``lease``: every speaker renews its own Lease ``metallb-speaker-<node>``
  every 0.4 s and watches everyone's: about one-second failover for
  nodes / 0.4 writes per second cluster-wide, and every speaker receives every
  renewal.

A live set holds this node, except while a memberlist speaker that was cut
off from the others holds itself down on its return. A node that comes back
from the dead is counted again only after a hold-down (memberlist and node
modes), so a flapping node cannot move addresses back and forth.

Each mode also tells every speaker the MACs of the others' announcing
interfaces (:meth:`Liveness.peer_macs`), so that their gratuitous ARPs,
unsolicited Neighbor Advertisements and probe answers are never taken for a
conflict, with no steady-state write:

- ``memberlist``: in the gossip's member meta (:func:`macs_meta`, at most
  :data:`MAX_MACS` MACs), gossiped under a new incarnation when the set changes;
- ``lease``: in the annotation :data:`MACS_ANNOTATION` of the Lease the
  speaker renews anyway;
- ``node``: in the same annotation on a Lease ``metallb-speaker-macs-<node>``
  labelled :data:`MACS_COMPONENT`, written when the set changes (at start-up
  and when an interface comes or goes), never renewed: zero writes in steady
  state, and no permission the speaker did not already have.

A member's MACs count as long as Kubernetes names it, up or down: a speaker
returning from the dead (a failover back) is still one of ours.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from metallb.operator.cmd_config import one_line
from metallb.operator.informer import Informer
from metallb.operator.kube import now_rfc3339
from metallb.operator.membership.crypto import Keyring, SecretError, read_secret
from metallb.operator.membership.messages import Status
from metallb.operator.membership.node import GossipNode
from metallb.operator.membership.state import Params
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = [
    "LEASE_PREFIX",
    "MACS_ANNOTATION",
    "MACS_COMPONENT",
    "MACS_PREFIX",
    "MAX_MACS",
    "MODES",
    "NODE_LEASE_NAMESPACE",
    "ApiLoad",
    "LeaseLiveness",
    "Liveness",
    "MemberlistLiveness",
    "MemberlistOptions",
    "NodeLiveness",
    "annotation_macs",
    "macs_meta",
    "make_liveness",
    "meta_macs",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
MODES = ("memberlist", "node", "lease")
LEASE_PREFIX = "metallb-speaker-"
LEASE_LABELS = {"app.kubernetes.io/name": "metallb", "app.kubernetes.io/component": "speaker"}
#: Where kubelets renew their node Leases.
NODE_LEASE_NAMESPACE = "kube-node-lease"
#: The kubelet's default leaseDurationSeconds, for a node Lease that does not say.
NODE_LEASE_DURATION = 40.0
#: Longest sleep of the decision loop when nothing is expected to expire.
IDLE = 5.0
#: Where the lease and node modes publish a speaker's MACs: ``02:00:00:00:00:01,...``.
MACS_ANNOTATION = "metallb.io/speaker-macs"
#: Node mode: the Lease carrying the MACs is ``MACS_PREFIX + node``, with this component label.
MACS_PREFIX = "metallb-speaker-macs-"
MACS_COMPONENT = "speaker-macs"
#: The most MACs a speaker publishes, and takes from another (a hostile member stores no more).
MAX_MACS = 32
_META_MACS = 1  # the meta's format byte: a list of 6-byte MACs
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
#: The command that makes a random key, as MetalLB documents it.
SECRET_COMMAND = (
    'kubectl create secret generic -n metallb-system memberlist --from-literal=secretkey="$(openssl rand -base64 128)"'
)


def _bounded(macs: frozenset[str]) -> list[str]:
    valid = sorted(m.lower() for m in macs if _MAC.match(m.lower()))
    if len(valid) > MAX_MACS:
        log.warning("%d interface MACs: only the first %d are published", len(valid), MAX_MACS)
    return valid[:MAX_MACS]


def macs_meta(macs: frozenset[str]) -> bytes:
    """The gossip meta for *macs* (``aa:bb:...``): a format byte, then 6 bytes per MAC, at most :data:`MAX_MACS`."""
    return bytes((_META_MACS,)) + b"".join(bytes.fromhex(m.replace(":", "")) for m in _bounded(macs))


def meta_macs(meta: bytes | None) -> frozenset[str]:
    """The MACs in a member's gossip meta; nothing for a meta of another format (or none)."""
    if not meta or meta[0] != _META_MACS:
        return frozenset()
    raw = meta[1 : 1 + 6 * MAX_MACS]
    return frozenset(":".join(f"{b:02x}" for b in raw[i : i + 6]) for i in range(0, len(raw) - 5, 6))


def annotation_macs(obj: Obj) -> frozenset[str]:
    """The MACs in an object's :data:`MACS_ANNOTATION` (the valid ones, at most :data:`MAX_MACS`)."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(MACS_ANNOTATION)
    if not isinstance(value, str):
        return frozenset()
    return frozenset(_bounded(frozenset(v.strip() for v in value[: 18 * MAX_MACS].split(","))))


class ApiLoad:
    """What the speaker costs the API server: writes and watch events received, as counters and rates."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._writes = Counter(
            "metallb_speaker_api_writes",
            "API writes this speaker made (create, update, patch, delete), per resource and verb",
            ["resource", "verb"],
            registry=registry,
        )
        self._events = Counter(
            "metallb_speaker_watch_events",
            "Objects this speaker received from its lists and watches, per resource",
            ["resource"],
            registry=registry,
        )
        self._started = time.monotonic()
        self.writes = 0
        self.watch_events = 0

    def wrote(self, resource: str, verb: str) -> None:
        """Count one API write."""
        self.writes += 1
        self._writes.labels(resource, verb).inc()

    def received(self, resource: str) -> None:
        """Count one object received from a list or watch of *resource*."""
        self.watch_events += 1
        self._events.labels(resource).inc()

    def counted(self, resource: str, callback: Callable[[str, Obj | None], None]) -> Callable[[str, Obj | None], None]:
        """*callback* for an :class:`Informer`, counting every object it delivers."""

        def on_event(kind: str, obj: Obj | None) -> None:
            if obj is not None:
                self.received(resource)
            callback(kind, obj)

        return on_event

    def rates(self) -> dict[str, float]:
        """Writes and watch events per second since the speaker started."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return {"writes_per_second": self.writes / elapsed, "watch_events_per_second": self.watch_events / elapsed}


class Liveness:
    """The interface the speaker uses; each mode fills it in."""

    mode = ""

    def __init__(self, *, node_name: str, wake: Callable[[], None]) -> None:
        self.node_name = node_name
        self.wake = wake
        #: Called with a node each time its speaker is suspected dead (``SpeakerMetrics.suspect``).
        self.suspect: Callable[[str], None] = lambda node: None
        self._judge_lock = threading.Lock()
        self._last_live: frozenset[str] = frozenset()

    def _judged(self, live: set[str] | frozenset[str], known: set[str] | frozenset[str]) -> None:
        """A suspicion for each node live at the last judgement, not now, yet still *known* (no clean leave)."""
        with self._judge_lock:
            lost = self._last_live - live
            self._last_live = frozenset(live)
        for node in sorted(lost & known):
            self.suspect(node)

    def informers(self) -> tuple[Informer, ...]:
        """Informers this mode needs (the speaker starts and stops them with its own)."""
        return ()

    def on_node(self, kind: str, obj: Obj | None) -> None:
        """A Node event from the speaker's Node informer."""

    def start(self) -> None:
        """Start whatever runs in the background."""

    def stop(self) -> None:
        """Stop it, telling the others when the mode can."""

    def live(self) -> frozenset[str]:
        """Node names whose speaker counts as alive now: this node too, unless it holds itself down."""
        return frozenset({self.node_name})

    def ready(self) -> bool:
        """True once the live set means something (the speaker announces nothing before)."""
        return True

    def next_check(self) -> float:
        """Seconds until the live set may change with no event (an expiry); the speaker re-decides then."""
        return IDLE

    def status(self) -> dict[str, Any]:
        """For the speaker's ``/status``."""
        return {"mode": self.mode}

    def advertise_macs(self, macs: frozenset[str]) -> None:
        """This speaker's announcing interfaces have *macs*: tell the others (nothing is done if unchanged)."""

    def peer_macs(self) -> frozenset[str]:
        """The MACs of the other speakers' announcing interfaces, as they published them."""
        return frozenset()


class _HoldDown:
    """A node that comes back after being gone counts as live only after *hold_down* seconds."""

    def __init__(self, hold_down: float) -> None:
        self.hold_down = hold_down
        self._was: set[str] = set()
        self._ever: set[str] = set()
        self._until: dict[str, float] = {}

    def apply(self, raw: set[str], now: float) -> set[str]:
        for name in raw - self._was:
            if name in self._ever:
                self._until[name] = now + self.hold_down
            self._ever.add(name)
        self._was = set(raw)
        return {n for n in raw if self._until.get(n, 0.0) <= now}

    def next_end(self, now: float) -> float:
        return min([t - now for t in self._until.values() if t > now] + [IDLE])


# -- lease ---------------------------------------------------------------------------------


class LeaseLiveness(Liveness):
    """Every speaker renews a Lease named after its node; a Lease unchanged for a lease duration is dead.

    Expiry is measured on this process's monotonic clock from the moment a
    change was observed, so no two machines' clocks are ever compared. A
    cleanly stopped speaker deletes its Lease, so the others take over at once.
    """

    mode = "lease"

    def __init__(
        self,
        api: client.ApiClient,
        *,
        node_name: str,
        namespace: str,
        wake: Callable[[], None],
        load: ApiLoad,
        renew: float = 0.4,
        duration: float = 1.2,
        watch_timeout: int = 60,
    ) -> None:
        super().__init__(node_name=node_name, wake=wake)
        self.coord = client.CoordinationV1Api(api)
        self.namespace, self.renew, self.duration, self.load = namespace, renew, duration, load
        self._seen: dict[str, tuple[str, float]] = {}  # node -> (lease renewTime, monotonic time seen)
        self._macs: frozenset[str] = frozenset()  # ours, sent with every renewal
        self._peers: dict[str, frozenset[str]] = {}  # theirs, from their Leases' annotation
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leases = Informer(
            "leases",
            self.coord.list_namespaced_lease,
            load.counted("leases", self._on_lease),
            list_kwargs={"namespace": namespace, "label_selector": "app.kubernetes.io/component=speaker"},
            watch_timeout=watch_timeout,
        )

    @property
    def lease_name(self) -> str:
        """This speaker's Lease."""
        return LEASE_PREFIX + self.node_name

    def informers(self) -> tuple[Informer, ...]:
        return (self.leases,)

    def _on_lease(self, kind: str, obj: Obj | None) -> None:
        if obj is None:
            self.wake()
            return
        node = ((obj.get("spec") or {}).get("holderIdentity")) or ""
        was_live = node in self.live()
        seen = dict(self._seen)  # copy-on-write: the sync thread reads _seen without a lock
        peers = dict(self._peers)
        if kind == "DELETED":
            seen.pop(node, None)
            peers.pop(node, None)
        else:
            peers[node] = annotation_macs(obj)
            renew = str((obj.get("spec") or {}).get("renewTime") or "")
            if seen.get(node, ("", 0.0))[0] != renew:
                seen[node] = (renew, time.monotonic())
        self._seen = seen
        self._peers = peers
        # A renewal of a live speaker changes nothing; expiries are timed by next_check.
        if was_live != (node in self.live()):
            self.wake()

    def live(self) -> frozenset[str]:
        """Nodes whose speaker Lease changed within the lease duration (this node always)."""
        now = time.monotonic()
        seen = self._seen
        live = {n for n, (_, at) in seen.items() if now - at <= self.duration}
        self._judged(live, frozenset(seen))  # a deleted Lease is a clean leave
        return frozenset(live | {self.node_name})

    def ready(self) -> bool:
        return self.leases.synced.is_set()

    def next_check(self) -> float:
        """Seconds until the next live speaker's Lease would expire (at most one renew interval)."""
        now = time.monotonic()
        waits = [seen + self.duration - now for n, (_, seen) in self._seen.items() if n != self.node_name]
        return max(0.005, min([w for w in waits if w > 0] + [self.renew]))

    def renew_lease(self) -> None:
        """Create or renew this node's Lease (one write)."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.lease_name,
                "namespace": self.namespace,
                "labels": LEASE_LABELS,
                "annotations": {MACS_ANNOTATION: ",".join(_bounded(self._macs))},
            },
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": max(1, round(self.duration)),
                "renewTime": now_rfc3339(),
            },
        }
        try:
            self.load.wrote("leases", "update")
            self.coord.replace_namespaced_lease(self.lease_name, self.namespace, body, _request_timeout=(2, 5))
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.load.wrote("leases", "create")
            self.coord.create_namespaced_lease(self.namespace, body, _request_timeout=(2, 5))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.renew_lease()
            except Exception as exc:  # noqa: BLE001 - keep renewing; others will see us as dead meanwhile
                log.warning("renewing lease %s failed: %s", self.lease_name, exc)
            self._stop.wait(self.renew)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and delete this node's Lease, so the others take over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.load.wrote("leases", "delete")
            self.coord.delete_namespaced_lease(self.lease_name, self.namespace, _request_timeout=(2, 5))
        except Exception as exc:  # noqa: BLE001 - best effort: the lease expires anyway
            log.debug("deleting lease: %s", exc)

    def status(self) -> dict[str, Any]:
        return {"mode": self.mode, "renew": self.renew, "duration": self.duration}

    def advertise_macs(self, macs: frozenset[str]) -> None:
        """Carried by the next renewal: no write of its own."""
        self._macs = macs

    def peer_macs(self) -> frozenset[str]:
        return frozenset().union(*(m for n, m in self._peers.items() if n != self.node_name))


# -- node ----------------------------------------------------------------------------------


class NodeLiveness(Liveness):
    """A node is alive while its ``Ready`` condition is True and its kubelet Lease is fresh.

    The kubelet Lease (``kube-node-lease/<node>``) is judged as the speaker
    Leases are: unchanged for its ``leaseDurationSeconds`` (40 s by default),
    measured on this process's clock. Not a single write of our own.
    """

    mode = "node"

    def __init__(
        self,
        api: client.ApiClient,
        *,
        node_name: str,
        wake: Callable[[], None],
        load: ApiLoad,
        namespace: str = "metallb-system",
        hold_down: float = 5.0,
        watch_timeout: int = 60,
    ) -> None:
        super().__init__(node_name=node_name, wake=wake)
        self.coord = client.CoordinationV1Api(api)
        self.namespace, self.load = namespace, load
        self._macs: frozenset[str] | None = None  # as last written to our MAC Lease
        self._peers: dict[str, frozenset[str]] = {}
        self.mac_leases = Informer(
            "speaker-mac-leases",
            self.coord.list_namespaced_lease,
            load.counted("leases", self._on_mac_lease),
            list_kwargs={"namespace": namespace, "label_selector": f"app.kubernetes.io/component={MACS_COMPONENT}"},
            watch_timeout=watch_timeout,
        )
        self._lock = threading.Lock()
        self._ready: dict[str, bool] = {}
        self._leases: dict[str, tuple[str, float, float]] = {}  # node -> (renewTime, seen, duration)
        self._hold = _HoldDown(hold_down)
        self.node_leases = Informer(
            "node-leases",
            client.CoordinationV1Api(api).list_namespaced_lease,
            load.counted("leases", self._on_lease),
            list_kwargs={"namespace": NODE_LEASE_NAMESPACE},
            watch_timeout=watch_timeout,
        )

    def informers(self) -> tuple[Informer, ...]:
        return (self.node_leases, self.mac_leases)

    def _on_mac_lease(self, kind: str, obj: Obj | None) -> None:
        if obj is None:
            return
        node = str((obj.get("spec") or {}).get("holderIdentity") or "")
        peers = dict(self._peers)  # copy-on-write: read without a lock
        if kind == "DELETED":
            peers.pop(node, None)
        else:
            peers[node] = annotation_macs(obj)
        self._peers = peers

    def advertise_macs(self, macs: frozenset[str]) -> None:
        """Write our MAC Lease when the set changed since the last write (at start-up, on an interface change)."""
        if macs == self._macs:
            return
        name = MACS_PREFIX + self.node_name
        labels = {**LEASE_LABELS, "app.kubernetes.io/component": MACS_COMPONENT}
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": labels,
                "annotations": {MACS_ANNOTATION: ",".join(_bounded(macs))},
            },
            "spec": {"holderIdentity": self.node_name},
        }
        try:
            try:
                self.load.wrote("leases", "update")
                self.coord.replace_namespaced_lease(name, self.namespace, body, _request_timeout=(2, 5))
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.load.wrote("leases", "create")
                self.coord.create_namespaced_lease(self.namespace, body, _request_timeout=(2, 5))
        except Exception as exc:  # noqa: BLE001 - tried again at the next decision
            log.warning("publishing this speaker's MACs in Lease %s failed: %s", name, one_line(exc))
            return
        self._macs = macs

    def peer_macs(self) -> frozenset[str]:
        """The MACs the other speakers' MAC Leases name, for Nodes that exist."""
        with self._lock:
            known = set(self._ready)
        return frozenset().union(*(m for n, m in self._peers.items() if n != self.node_name and n in known))

    def on_node(self, kind: str, obj: Obj | None) -> None:
        if obj is None:
            return
        name = str((obj.get("metadata") or {}).get("name") or "")
        conditions = (obj.get("status") or {}).get("conditions") or ()
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        with self._lock:
            if kind == "DELETED":
                self._ready.pop(name, None)
            else:
                self._ready[name] = ready

    def _on_lease(self, kind: str, obj: Obj | None) -> None:
        if obj is None:
            return
        name = str((obj.get("metadata") or {}).get("name") or "")
        spec = obj.get("spec") or {}
        expired = False
        with self._lock:
            if kind == "DELETED":
                self._leases.pop(name, None)
            else:
                renew = str(spec.get("renewTime") or "")
                duration = float(spec.get("leaseDurationSeconds") or NODE_LEASE_DURATION)
                old, now = self._leases.get(name), time.monotonic()
                expired = old is None or now - old[1] > old[2]
                if old is None or old[0] != renew:
                    self._leases[name] = (renew, now, duration)
        # A renewal of a fresh Lease changes nothing; expiries are timed by next_check.
        if kind != "MODIFIED" or expired:
            self.wake()

    def live(self) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            raw = {
                name
                for name, ready in self._ready.items()
                if ready and (name not in self._leases or now - self._leases[name][1] <= self._leases[name][2])
            }
            live = self._hold.apply(raw, now)
            known = frozenset(self._ready)
        self._judged(raw, known)  # a deleted Node is no suspicion
        return frozenset(live | {self.node_name})

    def ready(self) -> bool:
        return self.node_leases.synced.is_set()

    def next_check(self) -> float:
        now = time.monotonic()
        with self._lock:
            waits = [seen + duration - now for _, seen, duration in self._leases.values()]
            hold = self._hold.next_end(now)
        return max(0.005, min([w for w in waits if w > 0] + [hold, IDLE]))

    def status(self) -> dict[str, Any]:
        return {"mode": self.mode, "ready_nodes": sorted(n for n, r in self._ready.items() if r)}


# -- memberlist ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class MemberlistOptions:
    """The ``--ml-*`` options: where to listen, who the members are, where the key is."""

    #: Address to listen on ("" for every address; the DaemonSet passes the node's, as MetalLB does).
    bind_addr: str = ""
    bind_port: int = 7946
    #: Label selector of the speaker Pods; empty: every Node, at its InternalIP.
    labels: str = ""
    #: Namespace of the speaker Pods (default: the speaker's).
    namespace: str = ""
    #: A file, or a directory holding ``secretkey`` (the mounted Secret).
    secret_key_path: str = ""
    params: Params = attrs.field(factory=Params)


def _internal_ip(node: Obj) -> str:
    for address in (node.get("status") or {}).get("addresses") or ():
        if address.get("type") == "InternalIP" and address.get("address"):
            return str(address["address"])
    return ""


class MemberlistLiveness(Liveness):
    """Gossip decides who is alive among the members Kubernetes names (the speaker Pods, or the Nodes)."""

    mode = "memberlist"

    def __init__(
        self,
        api: client.ApiClient,
        *,
        node_name: str,
        namespace: str,
        options: MemberlistOptions,
        keyring: Keyring,
        wake: Callable[[], None],
        load: ApiLoad,
        registry: CollectorRegistry,
        watch_timeout: int = 60,
    ) -> None:
        super().__init__(node_name=node_name, wake=wake)
        self.options = options
        # Binds the port now: a taken port is reported to make_liveness, which falls back.
        self.gossip = GossipNode(
            node_name, keyring=keyring, bind=(options.bind_addr, options.bind_port), params=options.params,
            on_change=wake, on_suspect=lambda node: self.suspect(node),
        )  # fmt: skip
        self._addresses: dict[str, str] | None = None  # None until Kubernetes named the members
        self._node_addresses: dict[str, str] = {}
        self._nodes_listed = False
        self.pods: Informer | None = None
        if options.labels:
            self.pods = Informer(
                "speaker-pods",
                client.CoreV1Api(api).list_namespaced_pod,
                load.counted("pods", self._on_pod),
                list_kwargs={"namespace": options.namespace or namespace, "label_selector": options.labels},
                watch_timeout=watch_timeout,
            )
        registry.register(_MembershipCollector(self))

    def informers(self) -> tuple[Informer, ...]:
        return () if self.pods is None else (self.pods,)

    def _members(self, members: dict[str, str]) -> None:
        if members != self._addresses:
            self._addresses = members
            self.gossip.set_members(members)

    def on_node(self, kind: str, obj: Obj | None) -> None:
        if self.pods is not None:
            return
        if obj is None:
            self._nodes_listed = self._nodes_listed or kind == "SYNCED"
        else:
            name = str((obj.get("metadata") or {}).get("name") or "")
            address = _internal_ip(obj)
            if kind == "DELETED" or not address:
                self._node_addresses.pop(name, None)
            else:
                self._node_addresses[name] = address
        if self._nodes_listed:  # the whole list at once: a join then asks about every member
            self._members(dict(self._node_addresses))

    def _on_pod(self, kind: str, obj: Obj | None) -> None:
        assert self.pods is not None
        # One pod per node: a running one that is not being deleted wins, then the newest.
        best: dict[str, tuple[tuple[bool, str], str]] = {}
        for pod in list(self.pods.cache.values()):
            spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod.get("metadata") or {}
            node, ip = spec.get("nodeName"), status.get("podIP")
            if not node or not ip or status.get("phase") not in (None, "Running"):
                continue
            rank = (not meta.get("deletionTimestamp"), str(meta.get("creationTimestamp") or ""))
            if node not in best or rank > best[node][0]:
                best[node] = (rank, str(ip))
        self._members({node: ip for node, (_, ip) in best.items()})

    def live(self) -> frozenset[str]:
        """The live members; without this node while it holds itself down after being cut off."""
        return self.gossip.live()

    def advertise_macs(self, macs: frozenset[str]) -> None:
        """In the member meta: a new incarnation gossiped at once when the set changed, nothing otherwise.

        Until the first call the meta is None, which the others take as "not told": a restarted speaker
        keeps the MACs its previous process published until it publishes its own.
        """
        self.gossip.set_meta(macs_meta(macs))

    def peer_macs(self) -> frozenset[str]:
        """The MACs in every member's meta (members up or down: Kubernetes names them all)."""
        return frozenset().union(*(meta_macs(m) for m in self.gossip.metas().values()))

    def ready(self) -> bool:
        return self.gossip.ready()

    def next_check(self) -> float:
        return IDLE if self.ready() else 0.1

    def start(self) -> None:
        self.gossip.start()

    def stop(self) -> None:
        """Say goodbye: the others take over at once instead of after a suspicion timeout."""
        self.gossip.stop(leave=True)

    def status(self) -> dict[str, Any]:
        members = self.gossip.members()
        return {
            "mode": self.mode,
            "port": self.gossip.port,
            "members": {n: m.status.name.lower() for n, m in sorted(members.items())},
            "member_macs": {n: sorted(meta_macs(m.meta)) for n, m in sorted(members.items()) if m.meta},
            "health": self.gossip.swim.health,
        }


class _MembershipCollector:
    """The gossip's metrics, read from the running member at scrape time."""

    def __init__(self, liveness: MemberlistLiveness) -> None:
        self._liveness = liveness

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        # Literal names in the constructors: the docs test reads them from the source.
        return {
            "members": GaugeMetricFamily(
                "metallb_memberlist_members", "Members by state as this speaker sees them", labels=["state"]
            ),
            "live": GaugeMetricFamily(
                "metallb_memberlist_members_alive", "Members counted live for the election, itself included"
            ),
            "health": GaugeMetricFamily(
                "metallb_memberlist_health_score", "Lifeguard local health: 0 healthy, timeouts times score+1"
            ),
            "probes": CounterMetricFamily(
                "metallb_memberlist_probes", "Probes this speaker ran, by result", labels=["result"]
            ),
            "indirect": CounterMetricFamily(
                "metallb_memberlist_indirect_probes", "Indirect probes requested from other members"
            ),
            "suspicions": CounterMetricFamily(
                "metallb_memberlist_suspicions", "Members this speaker suspected after a failed probe"
            ),
            "refutations": CounterMetricFamily(
                "metallb_memberlist_refutations", "Times this speaker refuted a suspicion of itself"
            ),
            "deaths": CounterMetricFamily("metallb_memberlist_deaths", "Members this speaker declared dead"),
            "bytes": CounterMetricFamily(
                "metallb_memberlist_bytes", "Gossip bytes on the wire (encrypted)", labels=["direction"]
            ),
            "packets": CounterMetricFamily("metallb_memberlist_packets", "Gossip packets", labels=["direction"]),
            "dropped": CounterMetricFamily(
                "metallb_memberlist_packets_dropped", "Packets dropped unread, by reason", labels=["reason"]
            ),
        }

    def describe(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        """The families without samples."""
        return list(self._families().values())

    def collect(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        """One scrape."""
        f = self._families()
        gossip = self._liveness.gossip
        stats = gossip.swim.stats
        counts = dict.fromkeys((s.name.lower() for s in Status), 0)
        counts["alive"] = 1  # this speaker
        for member in gossip.members().values():
            counts[member.status.name.lower()] += 1
        for state, count in counts.items():
            f["members"].add_metric([state], count)
        f["live"].add_metric([], len(gossip.live()))
        f["health"].add_metric([], gossip.swim.health)
        f["probes"].add_metric(["ok"], stats.probes - stats.probe_failures)
        f["probes"].add_metric(["failed"], stats.probe_failures)
        f["indirect"].add_metric([], stats.indirect_probes)
        f["suspicions"].add_metric([], stats.suspicions)
        f["refutations"].add_metric([], stats.refutations)
        f["deaths"].add_metric([], stats.deaths)
        f["bytes"].add_metric(["sent"], gossip.bytes_sent)
        f["bytes"].add_metric(["received"], gossip.bytes_received)
        f["packets"].add_metric(["sent"], gossip.packets_sent)
        f["packets"].add_metric(["received"], gossip.packets_received)
        for reason, count in gossip.dropped.items():
            f["dropped"].add_metric([reason], count)
        return list(f.values())


# -- choosing ------------------------------------------------------------------------------


def make_liveness(
    mode: str,
    api: client.ApiClient,
    *,
    node_name: str,
    namespace: str,
    wake: Callable[[], None],
    load: ApiLoad,
    registry: CollectorRegistry,
    suspect: Callable[[str], None] | None = None,
    memberlist: MemberlistOptions | None = None,
    lease_renew: float = 0.4,
    lease_duration: float = 1.2,
    watch_timeout: int = 60,
) -> Liveness:
    """The liveness of *mode*; memberlist without a key, or unable to bind, falls back to ``node`` (one log line)."""
    if mode not in MODES:
        raise ValueError(f"liveness {mode!r}: must be one of {', '.join(MODES)}")
    liveness: Liveness | None = None
    if mode == "memberlist":
        options = memberlist or MemberlistOptions()
        why = ""
        try:
            if not options.secret_key_path:
                raise SecretError("no secret key path (--ml-secret-key-path, METALLB_ML_SECRET_KEY_PATH)")
            keyring = Keyring([read_secret(options.secret_key_path)])
            liveness = MemberlistLiveness(
                api, node_name=node_name, namespace=namespace, options=options, keyring=keyring, wake=wake,
                load=load, registry=registry, watch_timeout=watch_timeout,
            )  # fmt: skip
        except SecretError as exc:
            why = f"{exc}; create the Secret: {SECRET_COMMAND}"
        except OSError as exc:
            why = f"cannot listen on {options.bind_addr or '*'}:{options.bind_port}: {exc.strerror or exc}"
        if liveness is None:
            log.warning("memberlist not started (%s): liveness falls back to Node conditions (--liveness node)", why)
            mode = "node"
    if mode == "node":
        liveness = NodeLiveness(
            api, node_name=node_name, namespace=namespace, wake=wake, load=load, watch_timeout=watch_timeout
        )
    elif mode == "lease":
        liveness = LeaseLiveness(
            api, node_name=node_name, namespace=namespace, wake=wake, load=load, renew=lease_renew,
            duration=lease_duration, watch_timeout=watch_timeout,
        )  # fmt: skip
    assert liveness is not None
    if suspect is not None:
        liveness.suspect = suspect
    Gauge("metallb_speaker_liveness", "1 for the liveness mode in use", ["mode"], registry=registry).labels(
        liveness.mode
    ).set(1)
    return liveness
