"""MetalLB's custom resources (group ``metallb.io``) as a configuration, with MetalLB v0.15's loader rules.

:func:`parse_resources` turns already-decoded objects (``IPAddressPool``, ``L2Advertisement``,
``BGPAdvertisement``, ``BGPPeer`` v1beta2 and v1beta1, ``Community``, ``BFDProfile``, the pool
kinds plugins contribute such as metallb's ``AddressService``, and the cluster objects the
loader needs: ``Secret``, ``Node``, ``Namespace``) into the same :class:`~metallb.allocator.Config`
the ConfigMap format gives. :func:`load_resources` does the same and also says, per object,
whether it is valid and why not: the controller writes that into each object's status.

The checks and their order are MetalLB's (``internal/config``), with these deliberate
differences, each documented in docs/migration.md:

- inputs are sorted by name (MetalLB means to, but its sort is broken), so errors and the
  order of pools of equal priority are deterministic;
- every object is checked on its own, so each gets its own verdict; the first problem in
  MetalLB's order is the error of the whole set;
- without Node objects, advertisement node selectors stay selectors (matched against each
  node's labels when announcing) instead of selecting no node;
- a range mixing IPv4 and IPv6 is rejected; objects of several namespaces are rejected.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import attrs
import netaddr
import pluggy
from metallb.allocator.config import parse_community
from metallb.allocator.errors import ConfigError, PluginError, TransientConfigError
from metallb.allocator.model import (
    BfdProfile,
    BgpAdvertisement,
    Community,
    Config,
    L2Advertisement,
    LabelSelector,
    LargeCommunity,
    PeerSpec,
    PoolResource,
    PoolResourceKind,
    PoolSpec,
    ServiceAllocation,
)
from metallb.allocator.plugins import Hooks, default_plugin_manager
from metallb.allocator.resource_fields import (
    bad_value,
    json_value,
    label_selectors,
    selector_key,
    spec_bool,
    spec_duration,
    spec_int,
    spec_list,
    spec_mapping,
    spec_str,
    spec_strings,
)
from metallb.allocator.yamlload import load_yaml_all, shown

__all__ = [
    "CORE_KINDS",
    "GROUP",
    "MODES",
    "POOL_FIELDS",
    "SPEC_FIELDS",
    "ConfigKind",
    "LoadResult",
    "ObjectRef",
    "Verdict",
    "address_texts",
    "config_kinds",
    "load_resources",
    "looks_like_resources",
    "parse_addresses",
    "parse_pool_resource",
    "parse_resource_text",
    "parse_resources",
    "pool_resource",
    "read_resource_documents",
    "resolve_secret",
    "resource_field",
]

_T = TypeVar("_T")

GROUP = "metallb.io"
#: ``mode=`` values: MetalLB's validators for what only one BGP implementation supports.
MODES = ("native", "frr")


@attrs.frozen(kw_only=True)
class ConfigKind:
    """A resource kind of the configuration: MetalLB's own, or a plugin's pool kind.

    Attributes:
        kind: ``BGPPeer`` ...
        plural: the resource name in API paths (``bgppeers``).
        group: the API group.
        versions: served versions, the storage one (which metallb watches) first.
        pool: the plugin's :class:`PoolResourceKind` for a pool kind, else None.
    """

    kind: str
    plural: str
    group: str = GROUP
    versions: tuple[str, ...] = ("v1beta1",)
    pool: PoolResourceKind | None = None

    @property
    def version(self) -> str:
        """The storage version, which metallb lists and watches."""
        return self.versions[0]


#: MetalLB's kinds besides pools (pools come from plugins: ``IPAddressPool`` from the static pools).
CORE_KINDS = (
    ConfigKind(kind="BGPPeer", plural="bgppeers", versions=("v1beta2", "v1beta1")),
    ConfigKind(kind="BGPAdvertisement", plural="bgpadvertisements"),
    ConfigKind(kind="L2Advertisement", plural="l2advertisements"),
    ConfigKind(kind="Community", plural="communities"),
    ConfigKind(kind="BFDProfile", plural="bfdprofiles"),
)
#: metallb.io kinds that are status, not configuration: ignored in input.
_STATUS_KINDS = frozenset({"ServiceL2Status", "ServiceBGPStatus", "ConfigurationState"})
#: Core objects other than MetalLB's own that the loader reads.
_CLUSTER_KINDS = ("Secret", "Node", "Namespace")


def config_kinds(plugin_manager: pluggy.PluginManager | None = None) -> tuple[ConfigKind, ...]:
    """Every configuration kind: the plugins' pool kinds (by name), then MetalLB's others."""
    hooks = Hooks(plugin_manager if plugin_manager is not None else default_plugin_manager())
    pools = tuple(
        ConfigKind(kind=k.kind, plural=k.plural, group=k.group, versions=k.versions, pool=k)
        for k in hooks.pool_resource_kinds().values()
    )
    return pools + CORE_KINDS


@attrs.frozen(order=True)
class ObjectRef:
    """One configuration object: its kind and name."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f'{shown(self.kind)} "{shown(self.name)}"'


@attrs.frozen(kw_only=True)
class Verdict:
    """What the loader found about one object.

    Attributes:
        valid: no problem in this object (the set as a whole may still be rejected).
        reason: ``Valid``, ``Waiting`` (a reference that may resolve later), or
            what is wrong (``InvalidField``, ``Overlap``, ``Duplicate``,
            ``Conflict``, ``Unsupported``).
        message: one line: the field, the value and the rule.
    """

    valid: bool
    reason: str
    message: str


def _frozen_verdicts(value: Mapping[ObjectRef, Verdict]) -> Mapping[ObjectRef, Verdict]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class LoadResult:
    """A configuration, or why not, with a verdict per object.

    Attributes:
        config: the configuration, or None when the set is rejected.
        error: the first problem in MetalLB's order (a
            :class:`TransientConfigError` when it is a waiting reference), or None.
        verdicts: each configuration object's verdict.
        warnings: things worth knowing that do not reject the set (objects
            ignored, a peer replaced by a later one of the same name ...).
    """

    config: Config | None
    error: ConfigError | None
    verdicts: Mapping[ObjectRef, Verdict] = attrs.field(factory=dict, converter=_frozen_verdicts)
    warnings: tuple[str, ...] = ()

    def raise_for_error(self) -> Config:
        """The configuration, or raise its error."""
        if self.error is not None:
            raise self.error
        assert self.config is not None
        return self.config


# -- reading documents ------------------------------------------------------------------

_RESOURCE_HINT = re.compile(r"""["']?\bapiVersion["']?\s*:""")
_RESOURCE_HINT_BYTES = re.compile(rb"""["']?\bapiVersion["']?\s*:""")


def looks_like_resources(text: str | bytes) -> bool:
    """Whether *text* may be a stream of Kubernetes objects (the ConfigMap format never says ``apiVersion``)."""
    if isinstance(text, bytes):
        return _RESOURCE_HINT_BYTES.search(text) is not None
    return _RESOURCE_HINT.search(text) is not None


def _is_object(doc: object) -> bool:
    return isinstance(doc, Mapping) and isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str)


def read_resource_documents(text: str | bytes) -> list[dict[str, Any]]:
    """The objects of a YAML (or JSON) stream, as the API server would hold them (JSON types).

    ``kubectl get -o yaml`` Lists are expanded; empty documents are skipped.
    Raises ConfigError on bad YAML or a document that is no object.
    """
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(load_yaml_all(text, quoted=True), 1):
        if doc is None:
            continue
        value = json_value(doc)
        if not _is_object(value):
            raise ConfigError(
                f"document #{i}: must be a Kubernetes object (a mapping with apiVersion and kind), got {shown(value)}"
            )
        out.append(value)
    return _expand_lists(out)


def _expand_lists(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The objects with every List's items in its place, in order; Lists in Lists too, without recursion."""
    if isinstance(objects, str | bytes | Mapping) or not isinstance(objects, Iterable):
        raise ConfigError(f"objects: must be a list of Kubernetes objects, got {shown(objects)}")
    out: list[dict[str, Any]] = []
    # Open lists, innermost last: (their items, the List's kind or "" at the top, its apiVersion).
    stack: list[tuple[Iterator[tuple[int, Any]], str, object]] = [(enumerate(objects, 1), "", None)]
    while stack:
        items, parent, parent_version = stack[-1]
        step = next(items, None)
        if step is None:
            stack.pop()
            continue
        index, obj = step
        if parent:
            if not isinstance(obj, Mapping):
                raise ConfigError(f"{shown(parent)}: every item must be an object, got {shown(obj)}")
            obj = dict(obj)
            if parent != "List":  # an API list (IPAddressPoolList): items carry no kind
                obj.setdefault("kind", parent[: -len("List")])
                obj.setdefault("apiVersion", parent_version)
        if not isinstance(obj, Mapping) or not all(isinstance(obj.get(k), str | None) for k in ("apiVersion", "kind")):
            where = f"{shown(parent)} item #{index}" if parent else f"object #{index}"
            raise ConfigError(
                f"{where}: must be a Kubernetes object (a mapping with apiVersion and kind), got {shown(obj)}"
            )
        kind = str(obj.get("kind") or "")
        if kind.endswith("List") and isinstance(obj.get("items"), list):
            stack.append((enumerate(obj["items"], 1), kind, obj.get("apiVersion")))
        else:
            out.append(dict(obj))
    return out


def parse_resource_text(
    text: str | bytes, *, mode: str | None = None, plugin_manager: pluggy.PluginManager | None = None
) -> Config | None:
    """Parse a YAML stream of resources; None when its documents are not Kubernetes objects.

    A stream holding only a ConfigMap with ``data.config`` (``kubectl get cm
    config -o yaml``) is the ConfigMap format: its ``data.config`` is parsed.
    """
    try:
        objects = read_resource_documents(text)
    except ConfigError:
        if not any(_is_object(d) for d in _documents_quietly(text)):
            return None
        raise
    if not objects:
        return None
    configmaps = [o for o in objects if o.get("kind") == "ConfigMap" and o.get("apiVersion") == "v1"]
    legacy = [c for c in configmaps if isinstance((c.get("data") or {}).get("config"), str)]
    if legacy and len(legacy) == 1 and not any(_config_object(o) for o in objects):
        from metallb.allocator.config import _parse_legacy_config

        return _parse_legacy_config(str(legacy[0]["data"]["config"]), plugin_manager=plugin_manager)
    return parse_resources(objects, mode=mode, plugin_manager=plugin_manager)


def _documents_quietly(text: str | bytes) -> list[Any]:
    try:
        return [d for d in load_yaml_all(text) if d is not None]
    except ConfigError:
        return []


def _config_object(obj: Mapping[str, Any]) -> bool:
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    return group == GROUP and obj.get("kind") not in _STATUS_KINDS


# -- addresses, secrets, the shared pool fields (public: pool plugins use them) ---------


def _ip(text: str) -> netaddr.IPAddress | None:
    """An address as Go's net.ParseIP reads it (no zones, no leading zeros), or None."""
    if "%" in text:
        return None
    try:
        return netaddr.IPAddress(str(ipaddress.ip_address(text)))
    except ValueError:
        return None


def _cidr(text: str) -> netaddr.IPNetwork | None:
    """A CIDR as Go's net.ParseCIDR reads it (host bits dropped), or None."""
    address, slash, length = text.partition("/")
    if not slash or not length.isdigit() or len(length) > 3 or _ip(address) is None:
        return None
    try:
        return netaddr.IPNetwork(str(ipaddress.ip_network(text, strict=False)))
    except ValueError:
        return None


def parse_addresses(values: object, where: str, field: str) -> list[tuple[str, tuple[netaddr.IPNetwork, ...]]]:
    """MetalLB's address entries: CIDRs (untrimmed, host bits dropped) and ``start-end`` ranges (trimmed).

    Returns each entry's text with the CIDRs it covers (a range as its minimal
    ascending CIDRs). A range mixing IPv4 and IPv6 is rejected.
    """
    out: list[tuple[str, tuple[netaddr.IPNetwork, ...]]] = []
    for i, item in enumerate(spec_list(values, where, field)):
        here = f"{field}[{i}]"
        text = spec_str(item, where, here)
        if "-" not in text:
            cidr = _cidr(text)
            if cidr is None:
                raise bad_value(
                    where, here, text, "invalid CIDR (write a prefix length, /32 for one address, or a range a-b)"
                )
            out.append((text, (cidr,)))
            continue
        start_text, _, end_text = text.partition("-")
        start, end = _ip(start_text.strip()), _ip(end_text.strip())
        if start is None:
            raise bad_value(where, here, text, f'invalid IP range: invalid start IP "{shown(start_text.strip())}"')
        if end is None:
            raise bad_value(where, here, text, f'invalid IP range: invalid end IP "{shown(end_text.strip())}"')
        if start.version != end.version:
            raise bad_value(where, here, text, "invalid IP range: start and end are of different IP families")
        if start > end:
            raise bad_value(where, here, text, "invalid IP range: the start IP is after the end IP")
        out.append((text, tuple(netaddr.iprange_to_cidrs(start, end))))
    return out


def _secret_map(secrets: Mapping[str, object], name: str) -> Mapping[str, Any] | None:
    found = secrets.get(name)
    return found if isinstance(found, Mapping) else None


def resolve_secret(
    where: str,
    field: str,
    name: str,
    key: str,
    secrets: Mapping[str, object],
    *,
    secret_type: str | None = None,
) -> bytes:
    """The value of *key* in the Secret *name* of MetalLB's namespace.

    Raises :class:`TransientConfigError` when the Secret does not exist (yet),
    ConfigError when it has another type or lacks the key.
    """
    secret = _secret_map(secrets, name)
    if secret is None:
        raise TransientConfigError(
            f'{where}: field "{field}": value "{shown(name)}": waiting for the Secret "{shown(name)}" '
            "(not found in MetalLB's namespace)"
        )
    found_type = str(secret.get("type") or "Opaque")
    if secret_type is not None and found_type != secret_type:
        raise ConfigError(
            f'{where}: field "{field}": value "{shown(name)}": the Secret is of type "{shown(found_type)}", '
            f'must be "{secret_type}"'
        )
    data = secret.get("data") or {}
    if key not in data:
        raise ConfigError(f'{where}: field "{field}": value "{shown(name)}": the Secret has no key "{shown(key)}"')
    value = data[key]
    return value if isinstance(value, bytes) else str(value).encode()


_SERVICE_ALLOCATION_KEYS = ("priority", "namespaces", "namespaceSelectors", "serviceSelectors")


def _service_allocation(value: object, where: str, namespaces: Mapping[str, object]) -> ServiceAllocation | None:
    if value is None:
        return None
    field = "spec.serviceAllocation"
    raw = spec_mapping(value, where, field, keys=_SERVICE_ALLOCATION_KEYS)
    priority = spec_int(raw.get("priority"), where, f"{field}.priority", default=0, lo=-(1 << 31), hi=(1 << 31) - 1)
    names = spec_strings(raw.get("namespaces"), where, f"{field}.namespaces", unique="namespaces")
    if not names and not raw.get("namespaceSelectors") and not raw.get("serviceSelectors"):
        return ServiceAllocation(priority=priority)  # MetalLB v0.15: serves every Service
    ns_selectors = label_selectors(raw.get("namespaceSelectors"), where, f"{field}.namespaceSelectors")
    svc_selectors = label_selectors(raw.get("serviceSelectors"), where, f"{field}.serviceSelectors")
    selected = {
        name
        for name, labels in namespaces.items()
        if isinstance(labels, Mapping) and any(s.matches(labels) for s in ns_selectors)
    }
    return ServiceAllocation(
        priority=priority,
        namespaces=names,
        namespace_selectors=ns_selectors,
        service_selectors=svc_selectors,
        selected_namespaces=selected,
    )


#: The spec fields every pool kind shares.
POOL_FIELDS = ("autoAssign", "avoidBuggyIPs", "serviceAllocation")


def parse_pool_resource(
    resource: PoolResource,
    *,
    cidrs_key: str | None = "addresses",
    options: Mapping[str, Callable[[object, str], object]] | None = None,
    required: Iterable[str] = (),
) -> PoolSpec:
    """Parse the fields every pool kind shares, and a kind's own *options*, MetalLB's way.

    Args:
        resource: the pool resource.
        cidrs_key: the spec field with the pool's CIDRs and ranges
            (``addresses`` for ``IPAddressPool``, ``cidrs`` for ``AddressService``),
            required and non-empty; None when the kind has none.
        options: own spec fields mapped to converters ``(value, where) -> parsed``,
            stored in ``PoolSpec.options`` under the same name (absent fields are
            converted from None). A converter raises ConfigError.
        required: own fields that must be present and non-empty.

    Other spec fields are errors, as ``kubectl`` rejects them. The pool gets no
    advertisements here: the loader attaches those that select it.
    """
    where = resource.where()
    own = dict(options or {})
    keys = (*POOL_FIELDS, *((cidrs_key,) if cidrs_key else ()), *own)
    spec = spec_mapping(resource.spec, where, "spec", keys=keys)
    if not resource.name:
        raise ConfigError(f"{resource.kind.kind}: missing pool name (metadata.name)")
    cidrs: tuple[netaddr.IPNetwork, ...] = ()
    if cidrs_key:
        if not spec_list(spec.get(cidrs_key), where, f"spec.{cidrs_key}"):
            raise ConfigError(
                f'{where}: pool has no prefixes defined: list at least one CIDR or range in "spec.{cidrs_key}"'
            )
        cidrs = tuple(c for _, group in parse_addresses(spec[cidrs_key], where, f"spec.{cidrs_key}") for c in group)
    auto_assign = spec_bool(spec.get("autoAssign"), where, "spec.autoAssign", default=True)
    avoid = spec_bool(spec.get("avoidBuggyIPs"), where, "spec.avoidBuggyIPs", default=False)
    allocation = _service_allocation(spec.get("serviceAllocation"), where, resource.namespaces)
    for key in required:
        if spec.get(key) in (None, "", [], {}):
            raise ConfigError(f'{where}: missing required field "spec.{key}"')
    parsed = {key: convert(spec.get(key), where) for key, convert in own.items()}
    return PoolSpec(
        name=resource.name,
        kind=resource.kind.section,
        cidrs=cidrs,
        auto_assign=auto_assign,
        avoid_buggy_ips=avoid,
        options=parsed,
        service_allocation=allocation,
        labels=resource.labels,
    )


def _selectors_out(selectors: Sequence[LabelSelector]) -> list[dict[str, Any]]:
    out = []
    for s in selectors:
        item: dict[str, Any] = {}
        if s.match_labels:
            item["matchLabels"] = dict(s.match_labels)
        if s.match_expressions:
            item["matchExpressions"] = [
                {"key": e.key, "operator": e.operator, **({"values": list(e.values)} if e.values else {})}
                for e in s.match_expressions
            ]
        out.append(item)
    return out


def address_texts(cidrs: Sequence[netaddr.IPNetwork]) -> list[str]:
    """*cidrs* as address entries: a run of CIDRs that is exactly a range's expansion becomes ``start-end``."""
    out: list[str] = []
    i = 0
    while i < len(cidrs):
        j = i + 1
        while (
            j < len(cidrs)
            and cidrs[j].version == cidrs[i].version
            and cidrs[j].first == cidrs[j - 1].last + 1
            and list(netaddr.iprange_to_cidrs(cidrs[i][0], cidrs[j][-1])) == list(cidrs[i : j + 1])
        ):
            j += 1
        if j - i == 1:
            out.append(str(cidrs[i]))
        else:
            out.append(f"{cidrs[i][0]}-{cidrs[j - 1][-1]}")
        i = j
    return out


def pool_resource(spec: PoolSpec, kind: PoolResourceKind, namespace: str, own: Mapping[str, Any]) -> dict[str, Any]:
    """The resource of *spec*: the shared fields (addresses under the kind's own key in *own*) and *own*."""
    body: dict[str, Any] = dict(own)
    if not spec.auto_assign:
        body["autoAssign"] = False
    if spec.avoid_buggy_ips:
        body["avoidBuggyIPs"] = True
    allocation = spec.service_allocation
    if allocation is not None:
        rendered: dict[str, Any] = {}
        if allocation.priority:
            rendered["priority"] = allocation.priority
        if allocation.namespaces:
            rendered["namespaces"] = list(allocation.namespaces)
        if allocation.namespace_selectors:
            rendered["namespaceSelectors"] = _selectors_out(allocation.namespace_selectors)
        if allocation.service_selectors:
            rendered["serviceSelectors"] = _selectors_out(allocation.service_selectors)
        body["serviceAllocation"] = rendered
    meta: dict[str, Any] = {"name": spec.name, "namespace": namespace}
    if spec.labels:
        meta["labels"] = dict(spec.labels)
    return {"apiVersion": kind.api_versions[0], "kind": kind.kind, "metadata": meta, "spec": body}


# -- the loader -------------------------------------------------------------------------


@attrs.define(kw_only=True)
class _Obj:
    """One input object: where it was, what it is, its spec."""

    ref: ObjectRef
    index: int
    api_version: str
    labels: dict[str, str]
    spec: Any
    kind: ConfigKind


@attrs.define(kw_only=True)
class _PoolInfo:
    spec: PoolSpec
    entries: list[tuple[netaddr.IPNetwork, ...]]  # the CIDRs of each address entry
    obj: _Obj


_PEER_V1BETA2 = (
    "myASN",
    "peerASN",
    "dynamicASN",
    "peerAddress",
    "interface",
    "sourceAddress",
    "peerPort",
    "holdTime",
    "keepaliveTime",
    "connectTime",
    "routerID",
    "nodeSelectors",
    "password",
    "passwordSecret",
    "bfdProfile",
    "enableGracefulRestart",
    "ebgpMultiHop",
    "vrf",
    "disableMP",
    "dualStackAddressFamily",
)
_PEER_V1BETA1 = (
    "myASN",
    "peerASN",
    "peerAddress",
    "sourceAddress",
    "peerPort",
    "holdTime",
    "keepaliveTime",
    "routerID",
    "nodeSelectors",
    "password",
    "bfdProfile",
    "ebgpMultiHop",
)
_L2_KEYS = ("ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "interfaces")
_BGP_ADV_KEYS = (
    "aggregationLength",
    "aggregationLengthV6",
    "localPref",
    "communities",
    "ipAddressPools",
    "ipAddressPoolSelectors",
    "nodeSelectors",
    "peers",
)
_BFD_KEYS = (
    "receiveInterval",
    "transmitInterval",
    "detectMultiplier",
    "echoInterval",
    "echoMode",
    "passiveMode",
    "minimumTtl",
)
#: The spec fields the loader reads for MetalLB's kinds besides pools, per (kind, version); the CRDs
#: in operator/deploy/crds have exactly these (tests/operator/test_crds.py).
SPEC_FIELDS: Mapping[tuple[str, str], tuple[str, ...]] = MappingProxyType(
    {
        ("BGPPeer", "v1beta2"): _PEER_V1BETA2,
        ("BGPPeer", "v1beta1"): _PEER_V1BETA1,
        ("L2Advertisement", "v1beta1"): _L2_KEYS,
        ("BGPAdvertisement", "v1beta1"): _BGP_ADV_KEYS,
        ("Community", "v1beta1"): ("communities",),
        ("BFDProfile", "v1beta1"): _BFD_KEYS,
    }
)
#: Fields of later MetalLB releases, named in the unknown-field error.
_LATER = {"localASN": "v0.16", "serviceSelectors": "v0.16", "preferredNodeSelectors": "v0.16"}
_BASIC_AUTH = "kubernetes.io/basic-auth"


class _Loader:
    """One run of the loader over one set of objects."""

    def __init__(self, hooks: Hooks, *, mode: str | None, namespace: str | None) -> None:
        self.hooks = hooks
        self.mode = mode
        self.namespace = namespace
        self.kinds = {k.kind: k for k in config_kinds(hooks.plugin_manager)}
        self.objects: dict[str, list[_Obj]] = {k: [] for k in self.kinds}
        self.refs: list[ObjectRef] = []
        self.problems: list[tuple[ObjectRef | None, ConfigError, str]] = []
        self.bad: set[ObjectRef] = set()
        self.warnings: list[str] = []
        self.value_warnings: list[str] = []  # surprising values the set is valid with: Config.warnings too
        self.secrets: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, str]] | None = None
        self.namespaces: dict[str, dict[str, str]] = {}
        # the pools the advertisements select from: (pools, by label, position by name)
        self._index: tuple[Mapping[str, _PoolInfo], dict[tuple[str, str], list[str]], dict[str, int]] | None = None

    # -- bookkeeping -------------------------------------------------------------------

    def fail(self, ref: ObjectRef | None, error: ConfigError, reason: str = "InvalidField") -> None:
        """Record *error* against *ref* (its first problem only)."""
        if ref is not None:
            if ref in self.bad:
                return
            self.bad.add(ref)
        if isinstance(error, TransientConfigError):
            reason = "Waiting"
        self.problems.append((ref, error, reason))

    def run(self, ref: ObjectRef, step: Callable[..., _T], *args: Any) -> _T | None:
        """``step(*args)`` for one object; its ConfigError is recorded against *ref* and None returned."""
        try:
            return step(*args)
        except ConfigError as exc:
            self.fail(ref, exc)
            return None

    # -- input -------------------------------------------------------------------------

    def read(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Sort the objects by kind, keep the cluster objects, note what is ignored."""
        namespaces: set[str] = set()
        pending: list[tuple[Mapping[str, Any], ConfigKind, int]] = []
        by_api = {(k.group, k.kind): k for k in self.kinds.values()}
        for index, obj in enumerate(_expand_lists(objects), 1):
            api_version = str(obj.get("apiVersion") or "")
            kind = str(obj.get("kind") or "")
            group, _, version = api_version.rpartition("/")
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
            assert isinstance(meta, Mapping)
            name = meta.get("name") if isinstance(meta.get("name"), str) else ""
            obj_ns = str(meta.get("namespace")) if isinstance(meta.get("namespace"), str) else ""
            if api_version == "v1" and kind in _CLUSTER_KINDS:
                self._cluster_object(kind, str(name), obj_ns, obj, meta)
                continue
            known = by_api.get((group, kind))
            if known is None:
                if group == GROUP and kind not in _STATUS_KINDS:
                    mine = ", ".join(k.kind for k in self.kinds.values() if k.group == GROUP)
                    raise ConfigError(f'{shown(kind)} "{shown(name)}": unknown kind in {GROUP} (known: {mine})')
                quiet = kind in _STATUS_KINDS or (api_version == "v1" and kind == "ConfigMap" and name == "bgpextras")
                if not quiet:
                    self.warnings.append(
                        f'{shown(kind or "object")} "{shown(name)}" ({shown(api_version)}): ignored, not configuration'
                    )
                continue
            if version not in known.versions:
                raise ConfigError(
                    f'{shown(kind)} "{shown(name)}": apiVersion "{shown(api_version)}" is not served '
                    f"(use {', '.join(f'{known.group}/{v}' for v in known.versions)})"
                )
            if self.namespace is not None and obj_ns and obj_ns != self.namespace:
                self.warnings.append(
                    f'{shown(kind)} "{shown(name)}" in namespace "{shown(obj_ns)}": ignored, '
                    f'MetalLB reads only "{shown(self.namespace)}"'
                )
                continue
            if obj_ns:
                namespaces.add(obj_ns)
            pending.append((obj, known, index))
        if self.namespace is None and len(namespaces) > 1:
            raise ConfigError(
                f"configuration objects in several namespaces ({shown(', '.join(sorted(namespaces)), limit=200)}): "
                "MetalLB reads only its own namespace; keep them in one"
            )
        own_ns = self.namespace if self.namespace is not None else next(iter(namespaces), None)
        self.secrets = {n: s for n, s in self.secrets.items() if own_ns is None or s["namespace"] in ("", own_ns)}
        for item, item_kind, position in pending:
            self._config_object(item, item_kind, position)
        for objs in self.objects.values():
            objs.sort(key=lambda o: (o.ref.name, o.index))

    def _cluster_object(
        self, kind: str, name: str, namespace: str, obj: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> None:
        labels = meta.get("labels") if isinstance(meta.get("labels"), Mapping) else {}
        assert isinstance(labels, Mapping)
        text_labels = {str(k): str(v) for k, v in labels.items()}
        if kind == "Node":
            if self.nodes is None:
                self.nodes = {}
            self.nodes[name] = text_labels
        elif kind == "Namespace":
            self.namespaces[name] = text_labels
        else:
            self.secrets[name] = {"namespace": namespace, **_decode_secret(name, obj)}

    def _config_object(self, obj: Mapping[str, Any], kind: ConfigKind, index: int) -> None:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
        assert isinstance(meta, Mapping)
        name = meta.get("name")
        ref = ObjectRef(kind.kind, name if isinstance(name, str) else "")
        if not ref.name:
            what = "missing pool name" if kind.pool is not None else "missing name"
            raise ConfigError(f"{kind.kind} #{index}: {what}: set metadata.name")
        raw_labels = meta.get("labels") or {}
        if not isinstance(raw_labels, Mapping) or not all(isinstance(v, str) for v in raw_labels.values()):
            raise ConfigError(f"{ref}: metadata.labels must map names to strings")
        self.refs.append(ref)
        self.objects[kind.kind].append(
            _Obj(
                ref=ref,
                index=index,
                api_version=str(obj.get("apiVersion")),
                labels={str(k): str(v) for k, v in raw_labels.items()},
                spec=obj.get("spec"),
                kind=kind,
            )
        )

    def unique(self, kind: str) -> list[_Obj]:
        """The objects of *kind*, a repeated name an error (MetalLB: ``duplicate definition``)."""
        seen: dict[str, _Obj] = {}
        out = []
        for obj in self.objects.get(kind, ()):
            if obj.ref.name in seen:
                self.fail(
                    obj.ref,
                    ConfigError(f"{obj.ref}: duplicate definition: two {kind} objects have this name"),
                    "Duplicate",
                )
                continue
            seen[obj.ref.name] = obj
            out.append(obj)
        return out

    def spec(self, obj: _Obj, keys: Sequence[str]) -> dict[str, Any]:
        """The object's spec, an unknown field an error."""
        if obj.spec is not None and isinstance(obj.spec, Mapping):
            for key in obj.spec:
                if key in _LATER and key not in keys:
                    raise ConfigError(
                        f'{obj.ref}: unknown field "spec.{key}" (a MetalLB {_LATER[key]} field, not supported; '
                        f"allowed: {', '.join(keys)})"
                    )
        return spec_mapping(obj.spec, str(obj.ref), "spec", keys=keys)

    def _with_spec(self, parse: Callable[..., _T], obj: _Obj, keys: Sequence[str], *args: Any) -> _T:
        """``parse(obj, spec, *args)`` with the object's spec checked for unknown fields."""
        return parse(obj, self.spec(obj, keys), *args)

    def node_names(self, selectors: tuple[LabelSelector, ...]) -> frozenset[str] | None:
        """The nodes *selectors* select (none: all), when Node objects were given; else None."""
        if self.nodes is None:
            return None
        return frozenset(n for n, labels in self.nodes.items() if LabelSelector.any_match(selectors, labels))

    # -- the steps, in MetalLB's order -------------------------------------------------

    def load(self) -> Config | None:
        if self.mode is not None:
            _validate_mode(self)
        bfd = self.bfd_profiles()
        peers = self.peers(bfd)
        communities = self.communities()
        pools = self.pools()
        self.l2_advertisements(pools)
        self.bgp_advertisements(pools, communities)
        self.bfd_echo(pools, peers, bfd)
        if self.problems:
            return None
        config = Config(
            pools={name: info.spec for name, info in pools.items()},
            peers=tuple(peers.values()),
            communities=communities,
            bfd_profiles=bfd,
            warnings=tuple(self.value_warnings),
        )
        try:
            self.hooks.validate_config(config)
        except ConfigError as exc:
            self.fail(None, exc)
            return None
        return config

    def bfd_profiles(self) -> dict[str, BfdProfile]:
        out: dict[str, BfdProfile] = {}
        for obj in self.unique("BFDProfile"):
            profile = self.run(obj.ref, self._with_spec, _bfd_profile, obj, _BFD_KEYS)
            if profile is not None:
                out[profile.name] = profile
        return out

    def peers(self, bfd: Mapping[str, BfdProfile]) -> dict[str, PeerSpec]:
        out: dict[str, PeerSpec] = {}
        for obj in self.objects.get("BGPPeer", ()):
            keys = _PEER_V1BETA1 if obj.api_version.endswith("/v1beta1") else _PEER_V1BETA2
            peer = self.run(obj.ref, self._with_spec, _peer, obj, keys, self.secrets)
            if peer is None:
                continue
            if peer.bfd_profile and peer.bfd_profile not in bfd:
                self.fail(
                    obj.ref,
                    TransientConfigError(
                        f'{obj.ref}: field "spec.bfdProfile": value "{shown(peer.bfd_profile)}": '
                        f'waiting for the BFDProfile "{shown(peer.bfd_profile)}" (not defined)'
                    ),
                )
                continue
            if peer.name in out:
                if out[peer.name] == peer:
                    self.fail(
                        obj.ref,
                        ConfigError(f"{obj.ref}: peer already exists: a BGPPeer repeats it exactly"),
                        "Duplicate",
                    )
                    continue
                self.warnings.append(f"{obj.ref}: a later BGPPeer of the same name replaces an earlier one")
            out[peer.name] = peer
            if peer.hold_time == 0 and isinstance(obj.spec, Mapping):
                self._hold_rounded(obj, obj.spec)
        return out

    def _hold_rounded(self, obj: _Obj, spec: Mapping[str, Any]) -> None:
        """A hold time under a second is 0 (the timer off), as in MetalLB: valid, but said (issue 11)."""
        for field in ("holdTime", "keepaliveTime"):
            value = spec.get(field)
            if value is not None and spec_duration(value, "", "") not in (None, 0.0):
                warning = (
                    f'{obj.ref}: field "spec.{field}": value "{shown(value)}" gives a hold time under a second, '
                    'which rounds down to 0 and turns off the hold timer and keepalives; write "0s" to mean that, '
                    'or at least "3s"'
                )
                self.value_warnings.append(warning)
                self.warnings.append(warning)
                return

    def communities(self) -> dict[str, Community | LargeCommunity]:
        out: dict[str, Community | LargeCommunity] = {}
        for obj in self.unique("Community"):
            self.run(obj.ref, self._with_spec, _community_object, obj, ("communities",), out)
        return out

    def pools(self) -> dict[str, _PoolInfo]:
        parsed: list[_PoolInfo] = []
        for kind in (k for k in self.kinds.values() if k.pool is not None):
            for obj in self.unique(kind.kind):
                assert kind.pool is not None
                resource = PoolResource(
                    kind=kind.pool,
                    api_version=obj.api_version,
                    name=obj.ref.name,
                    labels=obj.labels,
                    spec=obj.spec if isinstance(obj.spec, Mapping) else ({} if obj.spec is None else {"": obj.spec}),
                    secrets=self.secrets,
                    namespaces=self.namespaces,
                    hooks=self.hooks,
                )
                if obj.spec is not None and not isinstance(obj.spec, Mapping):
                    self.fail(obj.ref, bad_value(str(obj.ref), "spec", obj.spec, "must be a mapping"))
                    continue
                spec = self.run(obj.ref, self.hooks.parse_pool_resource, resource)
                if spec is not None:
                    parsed.append(_PoolInfo(spec=spec, entries=_entries(obj, spec), obj=obj))
        parsed.sort(key=lambda p: (p.spec.name, p.obj.ref.kind))
        out: dict[str, _PoolInfo] = {}
        for info in parsed:
            if info.spec.name in out:
                other = out[info.spec.name].obj.ref
                self.fail(
                    info.obj.ref,
                    ConfigError(
                        f'{info.obj.ref}: duplicate definition of pool "{shown(info.spec.name)}": '
                        f"{other} has this name; "
                        "pool names are unique across pool kinds"
                    ),
                    "Duplicate",
                )
                continue
            out[info.spec.name] = info
        for later, earlier in _overlaps(list(out.values())):
            self.fail(
                later[0].obj.ref,
                ConfigError(
                    f'{later[0].obj.ref}: CIDR "{later[1]}" in pool "{shown(later[0].spec.name)}" '
                    f'overlaps with already defined CIDR "{earlier[1]}" (pool "{shown(earlier[0].spec.name)}")'
                ),
                "Overlap",
            )
        return {name: info for name, info in out.items() if info.obj.ref not in self.bad}

    def _selected_pools(
        self, obj: _Obj, names: tuple[str, ...], selectors: tuple[LabelSelector, ...], pools: Mapping[str, _PoolInfo]
    ) -> list[_PoolInfo]:
        """MetalLB: no names and no selectors select every pool; unknown names are ignored.

        In the pools' order. Names are looked up, and a selector's first label narrows it to
        the pools carrying that label (an index), so n advertisements of n pools cost about n,
        not n squared.
        """
        if not names and not selectors:
            return list(pools.values())
        index = self._pool_index(pools)
        chosen = {name for name in names if name in pools}
        for selector in selectors:
            if selector.match_labels:
                candidates: Iterable[str] = index.get(selector.match_labels[0], ())
            else:
                candidates = pools
            chosen.update(name for name in candidates if selector.matches(pools[name].spec.labels))
        order = self._pool_order(pools)
        return [pools[name] for name in sorted(chosen, key=order.__getitem__)]

    def _pool_index(self, pools: Mapping[str, _PoolInfo]) -> dict[tuple[str, str], list[str]]:
        """Pool names by each (label, value) they carry, built once per set of pools."""
        if self._index is None or self._index[0] is not pools:
            index: dict[tuple[str, str], list[str]] = {}
            for name, info in pools.items():
                for label in info.spec.labels.items():
                    index.setdefault(label, []).append(name)
            self._index = (pools, index, {name: i for i, name in enumerate(pools)})
        return self._index[1]

    def _pool_order(self, pools: Mapping[str, _PoolInfo]) -> dict[str, int]:
        self._pool_index(pools)
        assert self._index is not None
        return self._index[2]

    def l2_advertisements(self, pools: dict[str, _PoolInfo]) -> None:
        for obj in self.unique("L2Advertisement"):
            parsed = self.run(obj.ref, self._with_spec, _l2_advertisement, obj, _L2_KEYS, self)
            if parsed is None:
                continue
            adv, names, selectors = parsed
            for info in self._selected_pools(obj, names, selectors, pools):
                ads = info.spec.l2_advertisements
                if any(_l2_identity(a) == _l2_identity(adv) for a in ads):
                    continue  # MetalLB merges identical layer-2 advertisements
                info.spec = attrs.evolve(info.spec, advertisements=(*info.spec.advertisements, adv))

    def bgp_advertisements(
        self, pools: dict[str, _PoolInfo], communities: Mapping[str, Community | LargeCommunity]
    ) -> None:
        for obj in self.unique("BGPAdvertisement"):
            parsed = self.run(obj.ref, self._with_spec, _bgp_advertisement, obj, _BGP_ADV_KEYS, communities, self)
            if parsed is None:
                continue
            adv, names, selectors = parsed
            for info in self._selected_pools(obj, names, selectors, pools):
                if adv in info.spec.bgp_advertisements:
                    continue  # reached by name and by selector: attached once
                problem = _attach_check(obj, adv, info)
                if problem is not None:
                    self.fail(obj.ref, problem[0], problem[1])
                    break
                info.spec = attrs.evolve(info.spec, advertisements=(*info.spec.advertisements, adv))

    def bfd_echo(
        self, pools: Mapping[str, _PoolInfo], peers: Mapping[str, PeerSpec], bfd: Mapping[str, BfdProfile]
    ) -> None:
        """MetalLB: an IPv6 pool may not be advertised to a peer whose BFD profile uses echo mode."""
        echo = [p for p in peers.values() if p.bfd_profile in bfd and bfd[p.bfd_profile].echo_mode]
        if not echo:  # the usual case: no pool is checked at all
            return
        for info in pools.values():
            if 6 not in info.spec.families():
                continue
            for adv in info.spec.bgp_advertisements:
                reached = [p for p in echo if not adv.peers or p.name in adv.peers]
                for peer in reached:
                    profile = bfd.get(peer.bfd_profile)
                    if profile is not None:
                        self.fail(
                            ObjectRef("BGPPeer", peer.name),
                            ConfigError(
                                f'BGPPeer "{shown(peer.name)}": field "spec.bfdProfile": '
                                f'value "{shown(profile.name)}": the profile has echo mode on, which IPv6 pool '
                                f'"{shown(info.spec.name)}" (advertised to this peer) cannot use'
                            ),
                            "Conflict",
                        )

    # -- results -----------------------------------------------------------------------

    def result(self, config: Config | None) -> LoadResult:
        first = self.problems[0][1] if self.problems else None
        verdicts: dict[ObjectRef, Verdict] = {}
        by_ref = {ref: (error, reason) for ref, error, reason in reversed(self.problems) if ref is not None}
        for ref in self.refs:
            if ref in verdicts:
                continue
            if ref in by_ref:
                error, reason = by_ref[ref]
                verdicts[ref] = Verdict(valid=False, reason=reason, message=str(error))
            elif first is not None:
                waiting = isinstance(first, TransientConfigError)
                verdicts[ref] = Verdict(
                    valid=True,
                    reason="Valid",
                    message=f"valid; the configuration {'waits' if waiting else 'is not applied'}: {first}",
                )
            else:
                verdicts[ref] = Verdict(valid=True, reason="Valid", message="valid")
        return LoadResult(config=config, error=first, verdicts=verdicts, warnings=tuple(self.warnings))


def _decode_secret(name: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Secret's type and data as bytes (``stringData`` wins, as the API server merges it)."""
    data: dict[str, bytes] = {}
    for key, value in (obj.get("data") or {}).items() if isinstance(obj.get("data"), Mapping) else ():
        try:
            data[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f'Secret "{shown(name)}": field "data.{shown(key)}": not base64') from None
    for key, value in (obj.get("stringData") or {}).items() if isinstance(obj.get("stringData"), Mapping) else ():
        data[str(key)] = str(value).encode()
    return {"type": str(obj.get("type") or "Opaque"), "data": data}


def _entries(obj: _Obj, spec: PoolSpec) -> list[tuple[netaddr.IPNetwork, ...]]:
    """The pool's CIDRs grouped by address entry, for the per-entry aggregation check."""
    raw = obj.spec if isinstance(obj.spec, Mapping) else {}
    for key in ("addresses", "cidrs"):
        if isinstance(raw.get(key), list):
            try:
                groups = [g for _, g in parse_addresses(raw[key], str(obj.ref), key)]
            except ConfigError:
                continue
            if [c for g in groups for c in g] == list(spec.cidrs):
                return groups
    return [(c,) for c in spec.cidrs]


def _overlaps(
    pools: list[_PoolInfo],
) -> list[tuple[tuple[_PoolInfo, netaddr.IPNetwork], tuple[_PoolInfo, netaddr.IPNetwork]]]:
    """Overlapping CIDRs, as (later, earlier) in configuration order; one per later pool. O(n log n).

    CIDRs either nest or are disjoint: sorted by (family, first address, size
    descending), a CIDR overlaps an earlier one exactly when the innermost
    still-open CIDR contains it.
    """
    items = [(info, cidr, order, n) for order, info in enumerate(pools) for n, cidr in enumerate(info.spec.cidrs)]
    items.sort(key=lambda t: (t[1].version, t[1].first, -t[1].last, t[2], t[3]))
    stack: list[tuple[_PoolInfo, netaddr.IPNetwork, int, int]] = []
    found: dict[int, tuple[tuple[_PoolInfo, netaddr.IPNetwork], tuple[_PoolInfo, netaddr.IPNetwork]]] = {}
    for item in items:
        while stack and (stack[-1][1].version != item[1].version or stack[-1][1].last < item[1].first):
            stack.pop()
        if stack:
            outer = stack[-1]
            later, earlier = (item, outer) if (item[2], item[3]) > (outer[2], outer[3]) else (outer, item)
            if later[2] not in found:
                found[later[2]] = ((later[0], later[1]), (earlier[0], earlier[1]))
        stack.append(item)
    return [found[k] for k in sorted(found)]


# -- one object each ----------------------------------------------------------------------


def _bfd_profile(obj: _Obj, spec: Mapping[str, Any]) -> BfdProfile:
    where = str(obj.ref)
    ranges = (
        ("detectMultiplier", 2, 255),
        ("receiveInterval", 10, 60000),
        ("transmitInterval", 10, 60000),
        ("minimumTtl", 1, 254),
        ("echoInterval", 10, 60000),
    )
    values: dict[str, int | None] = {}
    for field, lo, hi in ranges:
        raw = spec.get(field)
        values[field] = None if raw is None else spec_int(raw, where, f"spec.{field}", default=0, lo=lo, hi=hi)
    return BfdProfile(
        name=obj.ref.name,
        receive_interval=values["receiveInterval"],
        transmit_interval=values["transmitInterval"],
        detect_multiplier=values["detectMultiplier"],
        echo_interval=values["echoInterval"],
        echo_mode=spec_bool(spec.get("echoMode"), where, "spec.echoMode", default=False),
        passive_mode=spec_bool(spec.get("passiveMode"), where, "spec.passiveMode", default=False),
        minimum_ttl=values["minimumTtl"],
    )


def _address(spec: Mapping[str, Any], where: str, field: str, rule: str) -> netaddr.IPAddress | None:
    text = spec_str(spec.get(field), where, f"spec.{field}")
    if not text:
        return None
    found = _ip(text)
    if found is None:
        raise bad_value(where, f"spec.{field}", text, rule)
    return found


def _timers(spec: Mapping[str, Any], where: str) -> tuple[int, float | None]:
    """MetalLB's hold and keepalive rules: one derives the other; hold is 0 or >= 3 s (truncated)."""
    hold = spec_duration(spec.get("holdTime"), where, "spec.holdTime")
    keepalive = spec_duration(spec.get("keepaliveTime"), where, "spec.keepaliveTime")
    if hold is None and keepalive is None:
        return 90, None
    if hold is None:
        assert keepalive is not None
        hold = 3 * keepalive
    seconds = int(hold)  # truncated toward zero, as Go's Duration / time.Second
    if seconds != 0 and seconds < 3:
        shown_hold = spec.get("holdTime") if spec.get("holdTime") is not None else f"{hold:g}s (3 x keepaliveTime)"
        raise bad_value(where, "spec.holdTime", shown_hold, "invalid hold time: must be 0 or >=3s")
    if keepalive is not None and keepalive > hold:
        raise bad_value(
            where,
            "spec.keepaliveTime",
            spec.get("keepaliveTime"),
            f"invalid keepaliveTime: must be lower than holdTime ({hold:g}s)",
        )
    return seconds, keepalive


def _peer(obj: _Obj, spec: Mapping[str, Any], secrets: Mapping[str, object]) -> PeerSpec:
    """A BGPPeer, with MetalLB v0.15's checks in its order (``peerFromCR``)."""
    where = str(obj.ref)
    v1beta1 = obj.api_version.endswith("/v1beta1")
    my_asn = spec_int(spec.get("myASN"), where, "spec.myASN", default=0)
    if my_asn == 0:
        raise ConfigError(f'{where}: missing local ASN: set "spec.myASN" to this cluster\'s AS number')
    peer_asn = spec_int(spec.get("peerASN"), where, "spec.peerASN", default=0)
    dynamic = spec_str(spec.get("dynamicASN"), where, "spec.dynamicASN")
    if peer_asn == 0 and not dynamic:
        raise ConfigError(f'{where}: missing peer ASN and dynamicASN: set "spec.peerASN" (or "spec.dynamicASN")')
    if peer_asn and dynamic:
        raise bad_value(where, "spec.dynamicASN", dynamic, "both peer ASN and dynamicASN specified: set only one")
    if dynamic and dynamic not in ("internal", "external"):
        raise bad_value(where, "spec.dynamicASN", dynamic, "invalid dynamicASN: must be internal or external")
    multihop = spec_bool(spec.get("ebgpMultiHop"), where, "spec.ebgpMultiHop", default=False)
    if multihop and peer_asn == my_asn:
        raise bad_value(where, "spec.ebgpMultiHop", True, "invalid ebgp-multihop parameter set for an ibgp peer")
    address_text = spec_str(spec.get("peerAddress"), where, "spec.peerAddress")
    interface = spec_str(spec.get("interface"), where, "spec.interface")
    if not address_text and not interface:
        raise ConfigError(f'{where}: peer has no Address or Interface specified: set "spec.peerAddress"')
    if address_text and interface:
        raise bad_value(where, "spec.interface", interface, "peer has both Address and Interface specified: set one")
    hold, keepalive = _timers(spec, where)
    address = _address(spec, where, "peerAddress", "invalid BGPPeer address: must be an IPv4 or IPv6 address")
    router_id = _address(spec, where, "routerID", "invalid router ID: must be an IP address")
    source = _address(spec, where, "sourceAddress", "invalid source IP: must be an IP address")
    selectors = label_selectors(spec.get("nodeSelectors"), where, "spec.nodeSelectors")
    port_default, port_lo = (179, 0) if v1beta1 else (179, 1)
    port = spec_int(spec.get("peerPort"), where, "spec.peerPort", default=port_default, lo=port_lo, hi=16384) or 179
    connect = spec_duration(spec.get("connectTime"), where, "spec.connectTime")
    if connect is not None and (connect != int(connect) or not 1 <= connect <= 65535):
        rule = (
            "connect time should contain a whole number of seconds"
            if connect != int(connect)
            else "connect time should be between 1 seconds to 65535"
        )
        raise bad_value(where, "spec.connectTime", spec.get("connectTime"), rule)
    password = spec_str(spec.get("password"), where, "spec.password")
    reference = spec_mapping(spec.get("passwordSecret"), where, "spec.passwordSecret", keys=("name", "namespace"))
    if password and reference:
        raise ConfigError(f"{where}: can not have both password and secret ref set in peer config: set one of them")
    if reference:
        secret = spec_str(reference.get("name"), where, "spec.passwordSecret.name")
        value = resolve_secret(where, "spec.passwordSecret.name", secret, "password", secrets, secret_type=_BASIC_AUTH)
        try:
            password = value.decode()
        except UnicodeDecodeError:
            raise bad_value(where, "spec.passwordSecret.name", secret, "the password is not UTF-8 text") from None
    return PeerSpec(
        name=obj.ref.name,
        my_asn=my_asn,
        peer_asn=peer_asn,
        peer_address=address,
        peer_port=port,
        hold_time=hold,
        keepalive_time=keepalive,
        connect_time=connect,
        router_id=router_id,
        source_address=source,
        password=password,
        node_selectors=selectors,
        interface=interface,
        ebgp_multihop=multihop,
        bfd_profile=spec_str(spec.get("bfdProfile"), where, "spec.bfdProfile"),
        enable_graceful_restart=spec_bool(
            spec.get("enableGracefulRestart"), where, "spec.enableGracefulRestart", default=False
        ),
        dynamic_asn=dynamic,
        disable_mp=spec_bool(spec.get("disableMP"), where, "spec.disableMP", default=False),
        dual_stack_address_family=spec_bool(
            spec.get("dualStackAddressFamily"), where, "spec.dualStackAddressFamily", default=False
        ),
        vrf=spec_str(spec.get("vrf"), where, "spec.vrf"),
    )


def _community_object(obj: _Obj, spec: Mapping[str, Any], out: dict[str, Community | LargeCommunity]) -> None:
    """One Community object's aliases into *out*; a bad value or a repeated alias is an error (never waiting)."""
    where = str(obj.ref)
    for i, item in enumerate(spec_list(spec.get("communities"), where, "spec.communities")):
        here = f"spec.communities[{i}]"
        entry = spec_mapping(item, where, here, keys=("name", "value"))
        name = spec_str(entry.get("name"), where, f"{here}.name")
        value = spec_str(entry.get("value"), where, f"{here}.value")
        try:
            parsed = parse_community(value)
        except ValueError as exc:
            raise bad_value(where, f"{here}.value", value, f'parsing community "{shown(name)}": {exc}') from None
        if name in out:
            raise bad_value(
                where, f"{here}.name", name, "duplicate definition of community (in this or another Community)"
            )
        out[name] = parsed


def _pool_choice(spec: Mapping[str, Any], where: str) -> tuple[tuple[str, ...], tuple[LabelSelector, ...]]:
    names = spec_strings(spec.get("ipAddressPools"), where, "spec.ipAddressPools", unique="ipAddressPools")
    selectors = label_selectors(spec.get("ipAddressPoolSelectors"), where, "spec.ipAddressPoolSelectors")
    return names, selectors


def _l2_advertisement(
    obj: _Obj, spec: Mapping[str, Any], loader: _Loader
) -> tuple[L2Advertisement, tuple[str, ...], tuple[LabelSelector, ...]]:
    where = str(obj.ref)
    names, selectors = _pool_choice(spec, where)
    nodes = label_selectors(spec.get("nodeSelectors"), where, "spec.nodeSelectors")
    interfaces = spec_strings(spec.get("interfaces"), where, "spec.interfaces")
    adv = L2Advertisement(interfaces=interfaces, node_selectors=nodes, nodes=loader.node_names(nodes))
    return adv, names, selectors


def _l2_identity(adv: L2Advertisement) -> tuple[object, ...]:
    """What MetalLB compares to merge layer-2 advertisements: interfaces as a set, the node set."""
    nodes: object = (
        adv.nodes if adv.nodes is not None else tuple(sorted(map(selector_key, adv.node_selectors), key=repr))
    )
    return (frozenset(adv.interfaces), nodes)


def _sort_key(community: Community | LargeCommunity) -> tuple[bool, int, int, int]:
    if isinstance(community, LargeCommunity):
        return (True, community.global_admin, community.local1, community.local2)
    return (False, community.value, 0, 0)


def _bgp_advertisement(
    obj: _Obj, spec: Mapping[str, Any], communities: Mapping[str, Community | LargeCommunity], loader: _Loader
) -> tuple[BgpAdvertisement, tuple[str, ...], tuple[LabelSelector, ...]]:
    """A BGPAdvertisement with MetalLB v0.15's checks in its order (``bgpAdvertisementFromCR``)."""
    where = str(obj.ref)
    names = spec_strings(spec.get("ipAddressPools"), where, "spec.ipAddressPools", unique="ipAddressPools")
    texts = spec_strings(spec.get("communities"), where, "spec.communities", unique="community")
    peers = spec_strings(spec.get("peers"), where, "spec.peers", unique="peers")
    selectors = label_selectors(spec.get("ipAddressPoolSelectors"), where, "spec.ipAddressPoolSelectors")
    node_selectors = label_selectors(spec.get("nodeSelectors"), where, "spec.nodeSelectors")
    agg = spec_int(
        spec.get("aggregationLength"), where, "spec.aggregationLength", default=32, lo=-(1 << 31), hi=(1 << 31) - 1
    )
    if agg > 32 or agg < 1:
        raise bad_value(where, "spec.aggregationLength", agg, "invalid aggregation length for IPv4: must be 1 to 32")
    agg6 = spec_int(
        spec.get("aggregationLengthV6"), where, "spec.aggregationLengthV6", default=128, lo=-(1 << 31), hi=(1 << 31) - 1
    )
    if agg6 > 128:
        raise bad_value(
            where, "spec.aggregationLengthV6", agg6, "invalid aggregation length for IPv6: must be at most 128"
        )
    localpref = spec_int(spec.get("localPref"), where, "spec.localPref", default=0)
    parsed: list[Community | LargeCommunity] = []
    for i, text in enumerate(texts):
        community = communities.get(text)
        if community is None:
            try:
                community = parse_community(text)
            except ValueError as exc:
                field = f"spec.communities[{i}]"
                parts = text.split(":")
                if len(parts) not in (2, 4):  # MetalLB: a format error may name a Community not created yet
                    raise TransientConfigError(
                        f'{where}: field "{field}": value "{shown(text)}": waiting for a Community alias of this name '
                        "(not defined; not a literal A:B or large:A:B:C either)"
                    ) from None
                raise bad_value(where, field, text, f"invalid community value: {exc}") from None
        if community not in parsed:
            parsed.append(community)
    adv = BgpAdvertisement(
        aggregation_length=agg,
        aggregation_length_v6=agg6,
        localpref=localpref,
        communities=tuple(sorted(parsed, key=_sort_key)),
        node_selectors=node_selectors,
        peers=peers,
        nodes=loader.node_names(node_selectors),
    )
    return adv, names, selectors


def _attach_check(obj: _Obj, adv: BgpAdvertisement, info: _PoolInfo) -> tuple[ConfigError, str] | None:
    """MetalLB's per-pool checks of a BGP advertisement: aggregation per entry, then localPref."""
    where = str(obj.ref)
    for entry in info.entries:
        if not entry:
            continue
        widest = min(entry, key=lambda c: c.prefixlen)
        limit, field = (
            (adv.aggregation_length, "spec.aggregationLength")
            if widest.version == 4
            else (adv.aggregation_length_v6, "spec.aggregationLengthV6")
        )
        if limit < widest.prefixlen:
            return (
                bad_value(
                    where,
                    field,
                    limit,
                    f'invalid aggregation length: prefix {widest.prefixlen} of pool "{info.spec.name}" '
                    f"({widest}) is more specific; use at least {widest.prefixlen}",
                ),
                "InvalidField",
            )
    families = {entry[0].version for entry in info.entries if entry}
    for other in info.spec.bgp_advertisements:
        if not _compatible(adv, other, families):
            return (
                bad_value(
                    where,
                    "spec.localPref",
                    adv.localpref,
                    f"invalid local preference: local preference {other.localpref} was already set for the same type "
                    f'of BGP update of pool "{info.spec.name}"; check the BGP advertisements of this pool with common '
                    "aggregation lengths, peers and nodes",
                ),
                "Conflict",
            )
    return None


def _compatible(new: BgpAdvertisement, old: BgpAdvertisement, families: set[int]) -> bool:
    """MetalLB: different localPrefs are fine when something keeps the two advertisements apart."""
    if new.localpref == old.localpref:
        return True
    v4 = new.aggregation_length != old.aggregation_length
    v6 = new.aggregation_length_v6 != old.aggregation_length_v6
    if (families == {4} and v4) or (families == {6} and v6) or (families == {4, 6} and v4 and v6):
        return True
    if new.peers and old.peers and not set(new.peers) & set(old.peers):
        return True
    if new.nodes is None or old.nodes is None:
        # Parsed without Node objects: no selectors means every node, so the two meet; with
        # selectors, which nodes they share cannot be known here (in a cluster it always is).
        return bool(new.node_selectors or old.node_selectors)
    return not new.nodes or not old.nodes or not (new.nodes & old.nodes)


# -- mode validators -------------------------------------------------------------------------


def _validate_mode(loader: _Loader) -> None:
    """MetalLB's ``DiscardFRROnly`` (native) or ``DiscardNativeOnly`` (frr), on the objects as written."""
    if loader.mode not in MODES:
        raise ConfigError(f'mode "{shown(loader.mode)}": must be one of {", ".join(MODES)}')
    peers = [(o, o.spec if isinstance(o.spec, Mapping) else {}) for o in loader.objects.get("BGPPeer", ())]
    if loader.mode == "native":
        _native(loader, peers)
    else:
        _frr(loader, peers)


def _unsupported(obj: _Obj, field: str, value: object, mode: str) -> ConfigError:
    return bad_value(str(obj.ref), field, value, f"not supported in {mode} BGP mode")


def _native(loader: _Loader, peers: list[tuple[_Obj, Mapping[str, Any]]]) -> None:
    checks: tuple[tuple[str, Callable[[object], bool]], ...] = (
        ("bfdProfile", bool),
        ("keepaliveTime", lambda v: v not in (None, "", "0", "0s") and _nonzero_duration(v)),
        ("vrf", bool),
        ("connectTime", lambda v: v is not None),
        ("enableGracefulRestart", bool),
        ("disableMP", bool),
        ("dualStackAddressFamily", bool),
        ("dynamicASN", bool),
        ("interface", bool),
    )
    for obj, spec in peers:
        for field, is_set in checks:
            if is_set(spec.get(field)):
                loader.fail(obj.ref, _unsupported(obj, f"spec.{field}", spec.get(field), "native"), "Unsupported")
                break
    for obj in loader.objects.get("BFDProfile", ()):
        loader.fail(
            obj.ref, ConfigError(f"{obj.ref}: BFD profiles are not supported in native BGP mode"), "Unsupported"
        )
    adverts = loader.objects.get("BGPAdvertisement", ())
    if adverts:
        pools = [o for k in loader.kinds.values() if k.pool is not None for o in loader.objects.get(k.kind, ())]
        for pool in pools:
            spec = pool.spec if isinstance(pool.spec, Mapping) else {}
            if not any(_raw_selects(a, pool) for a in adverts):
                continue
            for key in ("addresses", "cidrs"):
                for text in spec.get(key) or () if isinstance(spec.get(key), list) else ():
                    if isinstance(text, str) and ":" in text:
                        loader.fail(
                            pool.ref,
                            bad_value(
                                str(pool.ref),
                                f"spec.{key}",
                                text,
                                "native BGP mode does not support IPv6 pools advertised by BGP",
                            ),
                            "Unsupported",
                        )
    for obj in adverts:
        spec = obj.spec if isinstance(obj.spec, Mapping) else {}
        for text in spec.get("communities") or () if isinstance(spec.get("communities"), list) else ():
            if isinstance(text, str) and text.startswith("large:"):
                loader.fail(
                    obj.ref,
                    _unsupported(obj, "spec.communities", text, "native (only legacy communities)"),
                    "Unsupported",
                )
    for obj in loader.objects.get("Community", ()):
        spec = obj.spec if isinstance(obj.spec, Mapping) else {}
        for item in spec.get("communities") or () if isinstance(spec.get("communities"), list) else ():
            value = item.get("value") if isinstance(item, Mapping) else None
            if isinstance(value, str) and value.startswith("large:"):
                loader.fail(
                    obj.ref,
                    _unsupported(obj, "spec.communities", value, "native (only legacy communities)"),
                    "Unsupported",
                )


def _nonzero_duration(value: object) -> bool:
    try:
        return spec_duration(value, "", "") not in (None, 0.0)
    except ConfigError:
        return False  # the loader reports it


def _raw_selects(adv: _Obj, pool: _Obj) -> bool:
    spec = adv.spec if isinstance(adv.spec, Mapping) else {}
    names = spec.get("ipAddressPools") or []
    selectors = spec.get("ipAddressPoolSelectors") or []
    if not names and not selectors:
        return True
    if isinstance(names, list) and pool.ref.name in names:
        return True
    try:
        parsed = label_selectors(selectors, str(adv.ref), "spec.ipAddressPoolSelectors")
    except ConfigError:
        return False
    return any(s.matches(pool.labels) for s in parsed)


def _frr(loader: _Loader, peers: list[tuple[_Obj, Mapping[str, Any]]]) -> None:
    if len(peers) > 1:
        first = peers[0][1].get("routerID") or ""
        for obj, spec in peers[1:]:
            if (spec.get("routerID") or "") != first:
                loader.fail(
                    obj.ref,
                    bad_value(
                        str(obj.ref),
                        "spec.routerID",
                        spec.get("routerID") or "",
                        f'in FRR mode every BGPPeer has the same routerID ("{first}")',
                    ),
                    "Unsupported",
                )
    sessions: dict[tuple[str, str], ObjectRef] = {}
    asns: dict[str, object] = {}
    for obj, spec in peers:
        vrf = str(spec.get("vrf") or "")
        target = str(spec.get("peerAddress") or spec.get("interface") or "")
        if (target, vrf) in sessions:
            loader.fail(
                obj.ref,
                ConfigError(
                    f"{obj.ref}: peer already exists: {sessions[(target, vrf)]} has the same address and VRF; "
                    "FRR mode doesn't support duplicate BGPPeers"
                ),
                "Unsupported",
            )
        sessions.setdefault((target, vrf), obj.ref)
        if vrf in asns and asns[vrf] != spec.get("myASN"):
            loader.fail(
                obj.ref,
                bad_value(
                    str(obj.ref),
                    "spec.myASN",
                    spec.get("myASN"),
                    f'in FRR mode all myASN must be equal for the same VRF ("{vrf}")',
                ),
                "Unsupported",
            )
        asns.setdefault(vrf, spec.get("myASN"))


# -- model fields as resource fields ----------------------------------------------------------

#: Model field names whose resource spelling is not their camelCase.
_SPELLING = {
    "my_asn": "myASN",
    "peer_asn": "peerASN",
    "dynamic_asn": "dynamicASN",
    "router_id": "routerID",
    "ebgp_multihop": "ebgpMultiHop",
    "disable_mp": "disableMP",
    "bfd_profile": "bfdProfile",
    "password": "password",
    "keepalive_time": "keepaliveTime",
    "minimum_ttl": "minimumTtl",
    "localpref": "localPref",
    "aggregation_length_v6": "aggregationLengthV6",
}


def resource_field(field: str) -> str:
    """The resource field (``spec.ebgpMultiHop``) of a model field (``ebgp_multihop``); ``metadata.name`` for name."""
    if field == "name":
        return "metadata.name"
    spelled = _SPELLING.get(field)
    if spelled is None:
        head, *rest = field.split("_")
        spelled = head + "".join(part.capitalize() for part in rest)
    return f"spec.{spelled}"


# -- the public entry points -------------------------------------------------------------


def load_resources(
    objects: Iterable[Mapping[str, Any]],
    *,
    mode: str | None = None,
    namespace: str | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> LoadResult:
    """Load a configuration from resources, with a verdict per object.

    Args:
        objects: decoded objects (JSON types): MetalLB's kinds, the plugins'
            pool kinds, ``Secret``, ``Node`` and ``Namespace``; Lists are
            expanded; other objects are ignored (and named in ``warnings``).
        mode: ``"native"`` or ``"frr"`` adds MetalLB's validators of what only
            that BGP implementation supports.
        namespace: MetalLB's namespace: configuration objects and Secrets of
            other namespaces are ignored. None: they must all share one.
        plugin_manager: the plugins owning pool kinds (default: the installed ones).

    Never raises for bad input: the problems are in the result.
    """
    hooks = Hooks(plugin_manager if plugin_manager is not None else default_plugin_manager())
    loader = _Loader(hooks, mode=mode, namespace=namespace)
    try:
        loader.read(objects)
    except ConfigError as exc:
        return LoadResult(config=None, error=exc, verdicts={}, warnings=tuple(loader.warnings))
    try:
        config = loader.load()
    except PluginError:
        raise
    return loader.result(config)


def parse_resources(
    objects: Iterable[Mapping[str, Any]],
    *,
    mode: str | None = None,
    namespace: str | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Config:
    """Parse resources into a :class:`Config`, MetalLB v0.15's way.

    The arguments are :func:`load_resources`'s.

    Raises:
        TransientConfigError: a reference that may resolve later (a missing
            Secret or BFD profile, an unknown community name) was the first problem.
        ConfigError: the first problem, in MetalLB's order.
        PluginError: a plugin broke its hook's contract.
    """
    return load_resources(objects, mode=mode, namespace=namespace, plugin_manager=plugin_manager).raise_for_error()
