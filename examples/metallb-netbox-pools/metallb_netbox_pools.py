"""metallb-netbox-pools: pools whose addresses are recorded in a NetBox prefix.

A worked example of a third-party metallb plugin. It adds the config section
``netbox-pools`` and, for configurations made of resources, the pool kind
``NetBoxPool`` (group ``netbox.example.com``); each is a pool whose addresses come
from one NetBox prefix through NetBox's REST API::

    netbox-pools:
    - name: lab
      protocol: layer2
      url: https://netbox.example.com     # NetBox's base URL
      prefix-id: 42                       # /api/ipam/prefixes/42/
      cidrs: [192.0.2.0/24]               # the prefix again, so metallb can tell our addresses without asking
      token: 0123456789abcdef             # optional: an API token (Authorization: Token ...)
      timeout: 5                          # optional: seconds per request (default 5)

A dual-stack pool lists one prefix per family, ids and CIDRs in the same
order: ``prefix-id: [42, 43]`` with ``cidrs: [192.0.2.0/24, 2001:db8::/64]``.

    apiVersion: netbox.example.com/v1alpha1
    kind: NetBoxPool
    metadata: {name: lab, namespace: metallb-system}
    spec:
      url: https://netbox.example.com
      prefixIDs: [42]                      # one per CIDR for a dual-stack pool
      cidrs: [192.0.2.0/24]
      tokenSecret: {name: netbox-token}    # optional: a Secret with the API token (key "token")
      timeout: 5

Advertisements select a NetBoxPool by name or labels like any pool.

An allocation creates an IP address object in the prefix (``POST
.../available-ips/``, or ``POST /api/ipam/ip-addresses/`` for a requested
address) described ``metallb: <namespace/name>``; releasing the last owner
deletes it. Only objects with that description are ever deleted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import netaddr
from metallb.allocator import (
    AddressInUseError,
    AddressNotAllowedError,
    ConfigError,
    PoolEntry,
    PoolExhaustedError,
    PoolResource,
    PoolResourceKind,
    PoolSpec,
    ReconcileReport,
    SourceBase,
    SourceCapabilities,
    SourceUnavailableError,
    hookimpl,
    parse_pool_entry,
    parse_pool_resource,
    pool_resource,
)
from metallb.allocator.resources import resolve_secret

__all__ = ["KIND", "SECTION", "NetBoxSource"]

SECTION = "netbox-pools"
#: The same pools as resources; a group of our own, not metallb.io.
KIND = PoolResourceKind(kind="NetBoxPool", plural="netboxpools", section=SECTION, group="netbox.example.com")
#: Description prefix of the IP address objects this plugin creates (and may delete).
MARKER = "metallb: "
log = logging.getLogger(__name__)


# -- configuration -----------------------------------------------------------------------


def _text(value: object, where: str, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f'{where}: field "{field}": must be a single value, not a list or mapping')
    return value.strip()


def _url(value: object, where: str) -> str:
    text = _text(value, where, "url")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f'{where}: field "url": value "{text}": must be NetBox\'s base URL, like https://netbox.example.com'
        )
    return text.rstrip("/")


def _prefix_id(value: object, where: str) -> int | tuple[int, ...]:
    """One prefix id, or a list of them (one per CIDR of ``cidrs``)."""
    items = value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        text = _text(item, where, "prefix-id")
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f'{where}: field "prefix-id": value "{text}": must be the numeric id of a NetBox prefix')
        ids.append(int(text))
    return tuple(ids) if isinstance(value, list) else ids[0]


def prefixes_of(spec: PoolSpec) -> list[tuple[int, int]]:
    """(family, prefix id) pairs of a pool, in order: one id for all its CIDRs, or one per CIDR."""
    configured = spec.options["prefix-id"]
    ids = configured if isinstance(configured, tuple) else (int(configured),)  # type: ignore[call-overload]
    if len(ids) == 1:
        return [(spec.cidrs[0].version, ids[0])]
    return [(cidr.version, prefix) for cidr, prefix in zip(spec.cidrs, ids, strict=True)]


def _token(value: object, where: str) -> str:
    text = _text(value, where, "token")
    if any(c.isspace() for c in text):
        raise ConfigError(f'{where}: field "token": value "<set>": must not contain spaces or line breaks')
    return text


def _timeout(value: object, where: str) -> float:
    text = _text(value, where, "timeout") or "5"
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 300:
        raise ConfigError(f'{where}: field "timeout": value "{text}": must be seconds, above 0 and at most 300')
    return seconds


def _check_prefix_ids(spec: PoolSpec, where: str, field: str) -> None:
    """One prefix id for a single-family pool, or one per CIDR."""
    ids = spec.options["prefix-id"]
    count, shown = (len(ids), ", ".join(map(str, ids))) if isinstance(ids, tuple) else (1, str(ids))
    if count == 1 and len(spec.families()) > 1:
        raise ConfigError(
            f'{where}: field "{field}": value "{shown}": a NetBox prefix holds one address family; '
            "for a dual-stack pool list one prefix id per CIDR, in the order of cidrs"
        )
    if count not in (1, len(spec.cidrs)):
        raise ConfigError(
            f'{where}: field "{field}": value "{shown}": give one prefix id, or one per CIDR '
            f"of cidrs ({len(spec.cidrs)})"
        )


@hookimpl
def metallb_pool_sections() -> Sequence[str]:
    """NetBox pools live in ``netbox-pools``."""
    return [SECTION]


@hookimpl
def metallb_parse_pool(entry: PoolEntry) -> PoolSpec | None:
    """``netbox-pools`` entries: the common pool keys plus url, prefix-id, cidrs, token, timeout."""
    if entry.section != SECTION:
        return None
    spec = parse_pool_entry(
        entry,
        cidrs_key="cidrs",
        options={"url": _url, "prefix-id": _prefix_id, "token": _token, "timeout": _timeout},
        required=("url", "prefix-id"),
    )
    _check_prefix_ids(spec, entry.where(), "prefix-id")
    if spec.avoid_buggy_ips:
        raise ConfigError(
            f'{entry.where()}: field "avoid-buggy-ips": value "true": not supported: NetBox picks the addresses; '
            "mark .0 and .255 addresses as reserved in NetBox instead"
        )
    return spec


@hookimpl
def metallb_pool_resource_kinds() -> Sequence[PoolResourceKind]:
    """NetBox pools are ``NetBoxPool`` resources too."""
    return [KIND]


def _number(value: object, where: str) -> object:
    """JSON numbers as the text the section's converters read (``timeout: 2.5``, ``prefixIDs: [42, 43]``)."""
    if isinstance(value, list):
        return [_number(v, where) for v in value]
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _prefix_ids(value: object, where: str) -> int | tuple[int, ...]:
    """``prefixIDs``: a list of one id (any pool) or one per CIDR; the section's model (an int, or a tuple)."""
    ids = _prefix_id(_number(value if isinstance(value, list) else [value], where), where)
    assert isinstance(ids, tuple)
    return ids[0] if len(ids) == 1 else ids


@hookimpl
def metallb_parse_pool_resource(resource: PoolResource) -> PoolSpec | None:
    """``NetBoxPool``: url, prefixIDs and cidrs (required), tokenSecret, timeout, and the shared pool fields."""
    if resource.kind.kind != KIND.kind:
        return None
    where = resource.where()
    spec = parse_pool_resource(
        resource,
        cidrs_key="cidrs",
        options={
            "url": _url,
            "prefixIDs": _prefix_ids,
            "timeout": lambda v, w: _timeout(_number(v, w), w),
            "tokenSecret": lambda v, w: v,
        },
        required=("url", "prefixIDs"),
    )
    if spec.avoid_buggy_ips:
        raise ConfigError(
            f'{where}: field "spec.avoidBuggyIPs": value "true": not supported: NetBox picks the addresses'
        )
    token = ""
    ref = spec.options["tokenSecret"]
    if ref is not None:
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
            raise ConfigError(f'{where}: field "spec.tokenSecret": must be {{name: <Secret>, key: <key>}}')
        key = str(ref.get("key") or "token")
        value = resolve_secret(where, "spec.tokenSecret.name", ref["name"], key, resource.secrets)
        token = _token(value.decode(), where)
    options = {
        "url": spec.options["url"],
        "prefix-id": spec.options["prefixIDs"],
        "token": token,
        "timeout": spec.options["timeout"],
    }
    pool = PoolSpec(
        name=spec.name,
        kind=SECTION,
        cidrs=spec.cidrs,
        auto_assign=spec.auto_assign,
        options=options,
        service_allocation=spec.service_allocation,
        labels=spec.labels,
    )
    _check_prefix_ids(pool, where, "spec.prefixIDs")
    return pool


@hookimpl
def metallb_render_pool_resource(spec: PoolSpec, namespace: str) -> Sequence[dict[str, object]] | None:
    """A ``netbox-pools`` pool as a ``NetBoxPool``, its token in a Secret."""
    if spec.kind != SECTION:
        return None
    own: dict[str, object] = {
        "url": spec.options["url"],
        "prefixIDs": list(ids) if isinstance(ids := spec.options["prefix-id"], tuple) else [ids],
        "cidrs": [str(c) for c in spec.cidrs],
        "timeout": spec.options["timeout"],
    }
    objects: list[dict[str, object]] = []
    if spec.options["token"]:
        own["tokenSecret"] = {"name": f"{spec.name}-netbox-token"}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{spec.name}-netbox-token", "namespace": namespace},
                "type": "Opaque",
                "stringData": {"token": str(spec.options["token"])},
            }
        )
    return [pool_resource(spec, KIND, namespace, own), *objects]


@hookimpl
def metallb_make_source(spec: PoolSpec) -> NetBoxSource | None:
    """A NetBoxSource for ``netbox-pools`` pools (no I/O until the first allocation)."""
    return NetBoxSource(spec) if spec.kind == SECTION else None


@hookimpl
def metallb_pool_capabilities(section: str) -> SourceCapabilities | None:
    """Releases delete NetBox objects: Services carry metallb's finalizer, so none is missed."""
    return SourceCapabilities(remote_release=True) if section == SECTION else None


# -- the address source ------------------------------------------------------------------


class NetBoxSource(SourceBase):
    """Hands out the addresses of one NetBox prefix.

    Capacity is unknown (None): other NetBox users take addresses from the same
    prefix. Owners are counted locally; ``claim`` never does I/O, so after a
    restart the NetBox object id is looked up when the address is released.
    A release NetBox cannot take (it is down) is kept and retried on the next
    call, so none is lost.

    Args:
        spec: the pool.
        client: an ``httpx.Client`` to use instead of one built from the spec
            (tests pass one with a mock transport).
    """

    def __init__(self, spec: PoolSpec, *, client: httpx.Client | None = None) -> None:
        super().__init__(spec)
        self._prefixes = prefixes_of(spec)
        token = str(spec.options["token"])
        self._own_client = client is None
        self._http = client or httpx.Client(
            base_url=str(spec.options["url"]),
            headers={"Accept": "application/json", **({"Authorization": f"Token {token}"} if token else {})},
            timeout=float(spec.options["timeout"]),  # type: ignore[arg-type]
        )
        self._lock = threading.Lock()
        self._owners: dict[netaddr.IPAddress, set[str]] = {}
        self._ids: dict[netaddr.IPAddress, int] = {}
        self._unreleased: set[netaddr.IPAddress] = set()

    def __repr__(self) -> str:
        prefixes = ",".join(str(p) for _, p in self._prefixes)
        return f"<NetBoxSource({self.spec.name!r}, prefixes={prefixes}, held={len(self._owners)})>"

    # -- HTTP ------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; transport failures and 5xx become SourceUnavailableError."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise SourceUnavailableError(f'NetBox pool "{self.spec.name}": {type(exc).__name__}: {exc}') from None
        if response.status_code in (401, 403) or response.status_code >= 500:
            raise SourceUnavailableError(
                f'NetBox pool "{self.spec.name}": {method} {path} answered {response.status_code}: {_detail(response)}'
            )
        return response

    def _address(self, obj: Mapping[str, Any]) -> netaddr.IPAddress:
        try:
            return netaddr.IPNetwork(str(obj["address"])).ip
        except (KeyError, TypeError, netaddr.AddrFormatError) as exc:
            raise SourceUnavailableError(f'NetBox pool "{self.spec.name}": unexpected answer {obj!r}') from exc

    def _ours(self, cidr: netaddr.IPNetwork) -> Iterator[Mapping[str, Any]]:
        """Every IP address object this plugin created inside *cidr* (follows pagination)."""
        url: str | None = f"/api/ipam/ip-addresses/?parent={cidr}&limit=1000"
        while url:
            page = self._call("GET", url)
            if page.status_code != 200:
                raise SourceUnavailableError(f'NetBox pool "{self.spec.name}": listing {cidr}: {_detail(page)}')
            data = page.json()
            yield from (o for o in data.get("results", ()) if str(o.get("description", "")).startswith(MARKER))
            url = data.get("next")

    def _delete(self, ip: netaddr.IPAddress, known: int | None) -> None:
        """Delete our object for *ip*; already gone counts as done."""
        ids = [known] if known is not None else self._lookup(ip)
        for object_id in ids:
            response = self._call("DELETE", f"/api/ipam/ip-addresses/{object_id}/")
            if response.status_code not in (200, 204, 404):
                raise SourceUnavailableError(f'NetBox pool "{self.spec.name}": deleting {ip}: {_detail(response)}')

    def _find(self, ip: netaddr.IPAddress) -> list[Mapping[str, Any]]:
        """Every IP address object NetBox has for *ip*, ours or not."""
        response = self._call("GET", "/api/ipam/ip-addresses/", params={"address": str(ip)})
        if response.status_code != 200:
            raise SourceUnavailableError(f'NetBox pool "{self.spec.name}": looking up {ip}: {_detail(response)}')
        return list(response.json().get("results", ()))

    def _lookup(self, ip: netaddr.IPAddress) -> list[int]:
        return [int(o["id"]) for o in self._find(ip) if str(o.get("description", "")).startswith(MARKER)]

    def _retry_releases(self) -> None:
        with self._lock:
            pending = [ip for ip in self._unreleased if ip not in self._owners]
            self._unreleased.clear()
        for ip in pending:
            try:
                self._delete(ip, None)
            except SourceUnavailableError:
                with self._lock:
                    self._unreleased.add(ip)

    # -- AddressSource ---------------------------------------------------------------

    def acquire(
        self, owner: str, *, family: int, wanted: netaddr.IPAddress | None = None, uid: str | None = None
    ) -> netaddr.IPAddress:
        """Create an IP address object in a prefix of *family* (the next free one, or *wanted*); *uid* is unused."""
        self._retry_releases()
        if family not in self.spec.families():
            raise PoolExhaustedError(f'no available IPs in pool "{self.spec.name}" (it has no IPv{family} addresses)')
        description = f"{MARKER}{owner}"
        if wanted is None:
            return self._next_free(owner, family, description)
        if not self.spec.contains(wanted):
            raise AddressNotAllowedError(f'"{wanted}" is not allowed in pool "{self.spec.name}"')
        with self._lock:
            owners = self._owners.get(wanted)
            if owners is not None:
                if owner in owners:
                    return wanted
                raise AddressInUseError(f'"{wanted}" is already in use in pool "{self.spec.name}"')
            self._owners[wanted] = {owner}  # reserve locally while NetBox is asked
        try:
            if self._find(wanted):
                raise AddressInUseError(f'"{wanted}" is already recorded in NetBox (pool "{self.spec.name}")')
            length = next(c.prefixlen for c in self.spec.cidrs if wanted in c)
            response = self._call(
                "POST",
                "/api/ipam/ip-addresses/",
                json={"address": f"{wanted}/{length}", "status": "active", "description": description},
            )
            if response.status_code == 400:  # NetBox's uniqueness check lost a race
                raise AddressInUseError(f'"{wanted}" is already recorded in NetBox: {_detail(response)}')
            if response.status_code not in (200, 201):
                raise SourceUnavailableError(f'NetBox pool "{self.spec.name}": {_detail(response)}')
        except BaseException:
            with self._lock:
                self._owners.pop(wanted, None)
            raise
        with self._lock:
            self._ids[wanted] = int(response.json()["id"])
        return wanted

    def _next_free(self, owner: str, family: int, description: str) -> netaddr.IPAddress:
        """The next free address of the first prefix of *family* that has one."""
        full = ""
        for version, prefix in self._prefixes:
            if version != family:
                continue
            body = {"status": "active", "description": description}
            response = self._call("POST", f"/api/ipam/prefixes/{prefix}/available-ips/", json=body)
            if response.status_code == 409:
                full = _detail(response)
                continue
            if response.status_code not in (200, 201):
                raise SourceUnavailableError(f'NetBox pool "{self.spec.name}": {_detail(response)}')
            answer = response.json()
            obj = answer[0] if isinstance(answer, list) else answer
            ip = self._address(obj)
            if ip.version != family or not self.spec.contains(ip):
                self._delete(ip, int(obj["id"]))  # not ours to keep: a failed call holds nothing
                raise SourceUnavailableError(
                    f'NetBox pool "{self.spec.name}": prefix {prefix} handed out {ip}, which is not an IPv{family} '
                    "address of the pool's cidrs (do prefix-id and cidrs name the same prefixes?)"
                )
            with self._lock:
                self._owners[ip] = {owner}
                self._ids[ip] = int(obj["id"])
            return ip
        raise PoolExhaustedError(f'no available IPs in pool "{self.spec.name}": {full}')

    def claim(self, owner: str, ip: netaddr.IPAddress) -> None:
        """Record that *owner* holds *ip* (restart path, or a shared address). No I/O."""
        if not self.spec.contains(ip):
            raise AddressNotAllowedError(f'"{ip}" is not allowed in pool "{self.spec.name}"')
        with self._lock:
            self._owners.setdefault(ip, set()).add(owner)

    def release(self, owner: str, ip: netaddr.IPAddress) -> None:
        """Drop *owner*; delete the NetBox object when nobody holds *ip*. Idempotent."""
        with self._lock:
            owners = self._owners.get(ip)
            if owners is None or owner not in owners:
                return
            owners.discard(owner)
            if owners:
                return
            del self._owners[ip]
            known = self._ids.pop(ip, None)
        try:
            self._delete(ip, known)
        except SourceUnavailableError as exc:
            log.warning("NetBox pool %r: releasing %s failed, will retry: %s", self.spec.name, ip, exc)
            with self._lock:
                self._unreleased.add(ip)

    def describe(self, ip: netaddr.IPAddress) -> Mapping[str, str]:
        """The NetBox object id, when known."""
        with self._lock:
            known = self._ids.get(ip)
        return {} if known is None else {"netbox-id": str(known)}

    def reconcile(self, held: Mapping[netaddr.IPAddress, tuple[str, ...]]) -> ReconcileReport:
        """Delete our NetBox objects nobody holds; report held addresses NetBox lost."""
        self._retry_releases()
        found: dict[netaddr.IPAddress, int] = {}
        for cidr in self.spec.cidrs:
            for obj in self._ours(cidr):
                found[self._address(obj)] = int(obj["id"])
        with self._lock:
            local = set(self._owners)
            self._ids.update({ip: i for ip, i in found.items() if ip in local})
        released = []
        for ip, object_id in sorted(found.items()):
            if ip not in held and ip not in local:
                self._delete(ip, object_id)
                released.append(ip)
        lost = tuple((owner, ip) for ip, owners in sorted(held.items()) if ip not in found for owner in owners)
        return ReconcileReport(released=tuple(released), lost=lost)

    def close(self) -> None:
        """Close the HTTP client we built. Releases nothing."""
        if self._own_client:
            self._http.close()


def _detail(response: httpx.Response) -> str:
    """NetBox's error text (``{"detail": ...}`` or field errors), short."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if isinstance(body, dict) and "detail" in body:
        return f"HTTP {response.status_code}: {body['detail']}"
    return f"HTTP {response.status_code}: {str(body)[:200]}"
