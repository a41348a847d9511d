"""What the controller writes on MetalLB's resources: conditions, Events, and pool counters.

Validation is reported the Kubernetes way, without a webhook: every configuration
object gets ``status.conditions`` and, when a condition changes, an Event.

- ``Valid``: ``True`` (reason ``Valid``), or ``False`` with the reason (``InvalidField``,
  ``Overlap``, ``Duplicate``, ``Conflict``, ``Unsupported``, or ``Waiting`` for a reference
  that may resolve later) and a message naming the field, the value and the rule.
- ``NotApplied`` (BGPPeer, BFDProfile): ``True`` when fields are accepted that the BGP
  speaker does not apply yet, naming them; ``False`` otherwise.
- ``Announced`` (pools): ``False`` (``NoAdvertisement``) when no advertisement selects
  the pool, whose addresses are then allocated but not announced.

Pools of the kinds with counters (``IPAddressPool``, ``AddressService``) also get
MetalLB's ``assignedIPv4``/``assignedIPv6`` and, where the capacity is known,
``availableIPv4``/``availableIPv6``. Only the controller writes any of this.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import netaddr
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from metallb.allocator import Allocator, Config, PoolSpec, Unapplied
from metallb.allocator.model import buggy_count
from metallb.allocator.resources import ConfigKind, ObjectRef, resource_field
from metallb.operator.config_watch import RESOURCES, ConfigState
from metallb.operator.kube import now_rfc3339

__all__ = [
    "ANNOUNCED",
    "COUNTED_KINDS",
    "NOT_APPLIED",
    "VALID",
    "ConfigStatusWriter",
    "desired_conditions",
    "merge_conditions",
    "pool_counters",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

VALID, NOT_APPLIED, ANNOUNCED = "Valid", "NotApplied", "Announced"
#: Pool kinds whose status has MetalLB's address counters (``available*`` only where capacity is known).
COUNTED_KINDS = {"IPAddressPool": True, "AddressService": False}
_INT64_MAX = (1 << 63) - 1


def _condition(type_: str, ok: bool, reason: str, message: str) -> Obj:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def desired_conditions(
    ref: ObjectRef, state: ConfigState, unapplied: Mapping[ObjectRef, Unapplied], applied: Config | None
) -> list[Obj]:
    """The conditions *ref* should carry after the load *state*.

    *applied* is the configuration in force (the last good one when *state*
    is rejected): ``Announced`` describes what is announced now.
    """
    out: list[Obj] = []
    verdict = state.result.verdicts.get(ref) if state.result is not None else None
    if verdict is not None:
        out.append(_condition(VALID, verdict.valid, verdict.reason, verdict.message))
    if ref.kind in ("BGPPeer", "BFDProfile"):
        found = unapplied.get(ref)
        if found is None:
            out.append(_condition(NOT_APPLIED, False, "AllApplied", "every field set is applied"))
        else:
            fields = ", ".join(resource_field(f) for f in found.fields) if ref.kind == "BGPPeer" else "the profile"
            message = f"{fields}: accepted, not applied by metallb's BGP speaker yet; {found.effect}"
            out.append(_condition(NOT_APPLIED, True, "UnsupportedFields", message))
    if applied is not None and ref.name in applied.pools and _is_pool(ref, applied):
        pool = applied.pools[ref.name]
        if pool.protocols:
            out.append(_condition(ANNOUNCED, True, "Advertised", f"announced by {', '.join(pool.protocols)}"))
        else:
            message = (
                "no L2Advertisement or BGPAdvertisement selects this pool: "
                "its addresses are allocated but not announced"
            )
            out.append(_condition(ANNOUNCED, False, "NoAdvertisement", message))
    return out


def _is_pool(ref: ObjectRef, config: Config) -> bool:
    return ref.kind not in ("BGPPeer", "BFDProfile", "Community", "L2Advertisement", "BGPAdvertisement")


def merge_conditions(current: Sequence[Obj], desired: Sequence[Obj], now: str, generation: object) -> list[Obj]:
    """*desired* with ``lastTransitionTime`` kept where a condition's status did not change."""
    previous = {c.get("type"): c for c in current if isinstance(c, Mapping)}
    out = []
    for condition in desired:
        before = previous.get(condition["type"])
        unchanged = before is not None and before.get("status") == condition["status"]
        stamp = before.get("lastTransitionTime") if unchanged and before is not None else now
        full = {**condition, "lastTransitionTime": stamp}
        if isinstance(generation, int):
            full["observedGeneration"] = generation
        out.append(full)
    return out


def _capacity(spec: PoolSpec, family: int) -> int:
    total = sum(
        int(c.size) - (buggy_count(c) if spec.avoid_buggy_ips else 0) for c in spec.cidrs if c.version == family
    )
    return min(total, _INT64_MAX)


def pool_counters(spec: PoolSpec, held: Iterable[netaddr.IPAddress], *, available: bool) -> dict[str, int]:
    """MetalLB's ``IPAddressPool.status``: distinct addresses assigned per family, and what is left."""
    distinct = set(held)
    out: dict[str, int] = {}
    for family in (4, 6):
        assigned = sum(1 for ip in distinct if ip.version == family)
        out[f"assignedIPv{family}"] = assigned
        if available:
            out[f"availableIPv{family}"] = max(0, _capacity(spec, family) - assigned)
    return out


def _same(a: Sequence[Obj], b: Sequence[Obj]) -> bool:
    def strip(items: Sequence[Obj]) -> list[Obj]:
        return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in items]

    return strip(a) == strip(b)


class ConfigStatusWriter:
    """Writes conditions, Events and pool counters on the configuration objects (the controller's).

    Args:
        api: the API client.
        namespace: MetalLB's namespace.
        kinds: the configuration kinds (group, version and plural of each).
    """

    def __init__(self, api: client.ApiClient, *, namespace: str, kinds: Sequence[ConfigKind]) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.kinds = {k.kind: k for k in kinds}
        # What was last written per object, so a write the informer has not shown yet is not repeated.
        self._written: dict[ObjectRef, Obj] = {}

    def write(
        self,
        state: ConfigState,
        objects: Mapping[ObjectRef, Obj],
        unapplied: Sequence[Unapplied],
        applied: Config | None,
        allocator: Allocator,
    ) -> int:
        """Bring every object's status in line; returns how many objects were written.

        *objects* are the objects as last seen (their current status is compared,
        so nothing is written twice).
        """
        if state.source != RESOURCES:
            return 0
        for gone in set(self._written) - set(objects):
            del self._written[gone]
        by_ref = {ObjectRef(u.kind, u.name): u for u in unapplied if u.name}
        held: dict[str, list[netaddr.IPAddress]] = {}
        for allocation in allocator.allocations():
            held.setdefault(allocation.pool, []).extend(allocation.ips)
        written = 0
        for ref, obj in objects.items():
            kind = self.kinds.get(ref.kind)
            if kind is None:
                continue
            status = {**dict(obj.get("status") or {}), **self._written.get(ref, {})}
            current = [dict(c) for c in status.get("conditions") or () if isinstance(c, Mapping)]
            desired = desired_conditions(ref, state, by_ref, applied)
            new_status: Obj = {}
            if not _same(current, desired) or any(c.get("observedGeneration") != _generation(obj) for c in current):
                new_status["conditions"] = merge_conditions(current, desired, now_rfc3339(), _generation(obj))
            if ref.kind in COUNTED_KINDS and applied is not None and ref.name in applied.pools:
                counters = pool_counters(
                    applied.pools[ref.name], held.get(ref.name, ()), available=COUNTED_KINDS[ref.kind]
                )
                if any(status.get(k) != v for k, v in counters.items()):
                    new_status.update(counters)
            if not new_status:
                continue
            try:
                self.custom.patch_namespaced_custom_object_status(
                    kind.group,
                    kind.version,
                    self.namespace,
                    kind.plural,
                    ref.name,
                    {"status": new_status},
                    _request_timeout=(3, 10),
                )
            except ApiException as exc:
                if exc.status != 404:  # deleted meanwhile: nothing to report on
                    log.warning("%s: writing its status failed: %s %s", ref, exc.status, exc.reason)
                continue
            written += 1
            self._written[ref] = {**self._written.get(ref, {}), **new_status}
            if "conditions" in new_status:
                self._events(obj, ref, kind, current, new_status["conditions"])
        return written

    def _events(self, obj: Obj, ref: ObjectRef, kind: ConfigKind, before: Sequence[Obj], after: Sequence[Obj]) -> None:
        """An Event for each condition whose status, reason or message changed."""
        previous = {c.get("type"): c for c in before}
        for condition in after:
            old = previous.get(condition["type"])
            if old is not None and all(old.get(k) == condition[k] for k in ("status", "reason", "message")):
                continue
            good = (condition["status"] == "True") == (condition["type"] != NOT_APPLIED)
            if old is None and good and condition["type"] != VALID:
                continue  # an object that is fine needs one event, not one per condition
            reason = condition["reason"] if condition["type"] != VALID or not good else "ConfigurationValid"
            self._event(obj, ref, kind, reason=reason, message=condition["message"], warning=not good)

    def _event(self, obj: Obj, ref: ObjectRef, kind: ConfigKind, *, reason: str, message: str, warning: bool) -> None:
        meta = obj.get("metadata") or {}
        now = now_rfc3339()
        body = {
            "metadata": {"generateName": f"{ref.name}.", "namespace": self.namespace},
            "involvedObject": {
                "kind": ref.kind,
                "apiVersion": f"{kind.group}/{kind.version}",
                "name": ref.name,
                "namespace": self.namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "metallb-controller"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(self.namespace, body, _request_timeout=(2, 3))
        except ApiException as exc:
            log.warning("could not record event %s on %s: %s", reason, ref, exc.reason)


def _generation(obj: Obj) -> object:
    return (obj.get("metadata") or {}).get("generation")
