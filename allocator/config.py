"""Parse MetalLB's ConfigMap configuration (v0.12 rules) plus metallb's extensions.

The YAML is read the way MetalLB's Go decoder reads it: strict keys, duplicate
keys rejected, every scalar kept as its literal text (``1:30`` is a community,
not the base-60 number 90; ``name: no`` is the pool "no") and converted by the
field's type, YAML 1.1 booleans. Errors name the section, the entry, the field,
the value and the rule, and are raised in MetalLB's validation order.

Any input gives a ``Config`` or one ``ConfigError`` line, in time and memory bounded by its
size: the YAML reader (:mod:`~metallb.allocator.yamlload`) bounds aliases, nesting and tags;
values in errors are cut short (``shown``); numbers past 64 bits and durations past Go's are
range errors, never huge integers or floats; the checks across pools sort once (no pair of
pools is ever compared).

Pool sections belong to plugins (``metallb_pool_sections``/``metallb_parse_pool``),
and so do announcement protocols with the pool keys they own
(``metallb_announcer_protocols``/``metallb_parse_advertisements``); this module
owns ``peers`` and ``bgp-communities``, the keys every pool shares, and the
checks across pools.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import netaddr
import pluggy
import yaml
from metallb.allocator.errors import ConfigError, MetalLBError, PluginError
from metallb.allocator.model import (
    Community,
    Config,
    LabelExpression,
    LargeCommunity,
    NodeSelector,
    PeerSpec,
    PoolEntry,
    PoolSpec,
    ProtocolInfo,
)
from metallb.allocator.plugins import Hooks, default_plugin_manager
from metallb.allocator.yamlload import Quoted, load_yaml, shown

__all__ = [
    "COMMON_POOL_KEYS",
    "PEER_KEYS",
    "as_bool",
    "as_int",
    "as_list",
    "as_mapping",
    "as_str",
    "dump_config",
    "field_error",
    "first_overlap",
    "load_yaml",
    "parse_cidrs",
    "parse_community",
    "parse_config",
    "parse_duration_ns",
    "parse_node_selectors",
    "parse_pool_entry",
    "range_to_cidrs",
]

PEER_KEYS = (
    "my-asn",
    "peer-asn",
    "peer-address",
    "peer-port",
    "hold-time",
    "router-id",
    "source-address",
    "password",
    "node-selectors",
    "ebgp-multihop",
)
#: Keys of MetalLB v0.12's FRR mode that the native-style speaker does not do.
#: (``ebgp-multihop`` is accepted, as MetalLB v0.12 accepts it: see ``metallb check-config``'s warnings.)
UNSUPPORTED_PEER_KEYS = ("keepalive-time", "bfd-profile")
#: Keys every pool entry accepts, whatever its section (the announcement
#: protocols add the keys they own).
COMMON_POOL_KEYS = ("name", "protocol", "auto-assign", "avoid-buggy-ips", "node-selectors")
CORE_SECTIONS = ("peers", "bgp-communities")


# -- scalar conversions ------------------------------------------------------------------


def field_error(where: str, field: str, value: object, rule: str) -> ConfigError:
    """The error for one bad value: ``<where>: field "<field>": value "<value>": <rule>``.

    The value is shown on one line and cut to a short prefix (:func:`~metallb.allocator.yamlload.shown`),
    so a huge or multi-line value never makes a huge or multi-line message.
    """
    return ConfigError(f'{where}: field "{shown(field)}": value "{shown(value)}": {rule}')


def _quoted(value: object) -> str:
    """Text in double quotes, anything else as a bounded repr: how errors show a whole value."""
    return f'"{shown(value)}"' if isinstance(value, str) else shown(value)


def as_str(value: object, where: str, field: str) -> str:
    """A string field; null gives ""."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise field_error(where, field, value, "must be a string, not a list or mapping")
    return value


_TRUE = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
_FALSE = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}


def as_bool(value: object, where: str, field: str, *, default: bool) -> bool:
    """A YAML 1.1 boolean (true/false, yes/no, on/off and their case variants)."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise field_error(where, field, value, "must be a boolean (true or false), not a list or mapping")
    if value not in _TRUE and value not in _FALSE:
        raise field_error(where, field, value, "must be a boolean (true or false)")
    if isinstance(value, Quoted):  # Go's YAML decodes no quoted text into a boolean
        raise field_error(where, field, value, "must be a boolean (true or false), not quoted text")
    return value in _TRUE


_INTEGER = re.compile(r"[-+]?+(?=[0-9])0*+([0-9]*+)")  # group 1: the significant digits
_MAX_DIGITS = 20  # significant digits of the largest 64-bit number


def as_int(value: object, where: str, field: str, *, default: int, bits: int = 32, lo: int = 0) -> int:
    """An unsigned integer field of *bits* bits (decimal)."""
    if value is None:
        return default
    text = as_str(value, where, field).strip()
    match = _INTEGER.fullmatch(text)
    if match is None:
        raise field_error(where, field, value, "must be a whole number")
    if isinstance(value, Quoted):  # Go's YAML decodes no quoted text into a number: my-asn: "1" is refused
        raise field_error(where, field, value, "must be a number, not quoted text (remove the quotes)")
    out_of_range = field_error(where, field, value, f"must be between {lo} and {(1 << bits) - 1}")
    if len(match.group(1)) > _MAX_DIGITS:  # no field holds more; int() of thousands of digits is slow or refused
        raise out_of_range
    number = int(match.group(1) or "0") * (-1 if text[0] == "-" else 1)  # int() counts leading zeros too
    if number < lo or number >= 1 << bits:
        raise out_of_range
    return number


def as_list(value: object, where: str, field: str) -> list[Any]:
    """A list field; null gives []."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise field_error(where, field, value, "must be a list")
    return value


def as_mapping(value: object, where: str, *, keys: Iterable[str] = ()) -> dict[str, Any]:
    """A mapping (null gives {}); with *keys*, any other key is an error."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a mapping of keys to values, got {_quoted(value)}")
    allowed = tuple(keys)
    if allowed:
        for key in value:
            if key not in allowed:
                raise ConfigError(f'{where}: unknown field "{shown(key)}" (allowed: {", ".join(allowed)})')
    return dict(value)


# Go's time.ParseDuration, in integer nanoseconds as Go computes it (floats would round
# 2.9999999999s up to 3 s, which Go and MetalLB reject).
_NANOSECONDS = {
    "ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
}  # fmt: skip
# Possessive digits: no backtracking, so a long run of digits without a unit costs linear time.
_DURATION_PART = re.compile(r"([0-9]*+)(?:\.([0-9]*+))?(ns|us|µs|μs|ms|s|m|h)")
_GO_MAX = 1 << 63  # Go's bounds: no part above 2^63 ns, a total below it


def _go_fraction(digits: str) -> tuple[int, int]:
    """Go's leadingFraction: the digits as a number and its scale, ignoring digits past int64's precision."""
    value, scale = 0, 1
    for char in digits:
        if value > (_GO_MAX - 1) // 10 or value * 10 + int(char) > _GO_MAX:
            break  # Go skips every further digit once one would overflow
        value, scale = value * 10 + int(char), scale * 10
    return value, scale


def parse_duration_ns(text: str) -> int | None:
    """Go's ``time.ParseDuration`` for non-negative durations, in nanoseconds; None if Go rejects it.

    Exact: integer parts are summed as Go does, fractions through float64 as Go does, and any
    value beyond Go's largest duration (about 292 years) is invalid, never an overflow.
    """
    text = text.strip()
    if text in ("0", "+0"):
        return 0
    text = text.removeprefix("+")
    pos, total = 0, 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            return None
        whole, fraction, unit_name = match.groups()
        if not whole and not fraction:  # "s", ".s": Go wants a digit on one side of the dot
            return None
        digits = whole.lstrip("0")
        if len(digits) > 19 or (digits and int(digits) > _GO_MAX):
            return None
        unit = _NANOSECONDS[unit_name]
        value = int(digits or "0") * unit
        if value > _GO_MAX:
            return None
        if fraction:
            f, scale = _go_fraction(fraction)
            value += int(float(f) * (float(unit) / scale))
        total += value
        if value > _GO_MAX or total > _GO_MAX:
            return None
        pos = match.end()
    if not text or total >= _GO_MAX:
        return None
    return total


def _parse_ip(value: object, where: str, field: str, rule: str) -> netaddr.IPAddress:
    text = as_str(value, where, field).strip()
    try:
        return netaddr.IPAddress(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise field_error(where, field, value, rule) from None


# -- node selectors ----------------------------------------------------------------------

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_label_key(key: str, where: str) -> None:
    prefix, _, name = key.rpartition("/")
    ok = 0 < len(name) <= 63 and _LABEL_VALUE.match(name) is not None
    if prefix:
        ok = ok and len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix) is not None
    if not ok:
        raise ConfigError(f'{where}: parsing node selector: invalid label key "{shown(key)}"')


def _check_label_value(value: str, where: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ConfigError(f'{where}: parsing node selector: invalid label value "{shown(value)}"')


def parse_node_selectors(value: object, where: str) -> tuple[NodeSelector, ...]:
    """``node-selectors``: a list of ``{match-labels, match-expressions}``, ORed."""
    out = []
    for i, item in enumerate(as_list(value, where, "node-selectors"), 1):
        here = f"{where}: node selector #{i}"
        raw = as_mapping(item, here, keys=("match-labels", "match-expressions"))
        labels = []
        for key, val in as_mapping(raw.get("match-labels"), f"{here}: match-labels").items():
            text = as_str(val, here, f"match-labels.{key}")
            _check_label_key(key, here)
            _check_label_value(text, here)
            labels.append((key, text))
        exprs = []
        for j, expr in enumerate(as_list(raw.get("match-expressions"), here, "match-expressions"), 1):
            ehere = f"{here}: match expression #{j}"
            e = as_mapping(expr, ehere, keys=("key", "operator", "values"))
            key = as_str(e.get("key"), ehere, "key")
            op = as_str(e.get("operator"), ehere, "operator")
            values = tuple(as_str(v, ehere, "values") for v in as_list(e.get("values"), ehere, "values"))
            _check_label_key(key, ehere)
            if op in ("In", "NotIn"):
                if not values:
                    raise field_error(ehere, "values", "", f'operator "{op}" needs at least one value')
                for v in values:
                    _check_label_value(v, ehere)
            elif op in ("Exists", "DoesNotExist"):
                if values:
                    raise field_error(ehere, "values", ",".join(values), f'operator "{op}" takes no values')
            else:
                raise field_error(ehere, "operator", op, "must be one of In, NotIn, Exists, DoesNotExist (exact case)")
            exprs.append(LabelExpression(key=key, operator=op, values=values))
        out.append(NodeSelector(match_labels=tuple(sorted(labels)), match_expressions=tuple(exprs)))
    return tuple(out)


# -- peers -------------------------------------------------------------------------------


def _parse_peer(index: int, raw: object, warnings: list[str]) -> PeerSpec:
    where = f"peer #{index}"
    data = as_mapping(raw, where)
    for key in data:
        if key in UNSUPPORTED_PEER_KEYS:
            raise ConfigError(
                f'{where}: field "{shown(key)}" is not supported: it belongs to MetalLB\'s FRR mode; '
                f"remove it (metallb's own speaker negotiates timers from hold-time)"
            )
        if key not in PEER_KEYS:
            raise ConfigError(f'{where}: unknown field "{shown(key)}" (allowed: {", ".join(PEER_KEYS)})')
    my_asn = as_int(data.get("my-asn"), where, "my-asn", default=0)
    if my_asn == 0:
        raise ConfigError(f'{where}: missing local ASN: set "my-asn" to this cluster\'s AS number')
    peer_asn = as_int(data.get("peer-asn"), where, "peer-asn", default=0)
    if peer_asn == 0:
        raise ConfigError(f'{where}: missing peer ASN: set "peer-asn" to the router\'s AS number')
    address = _parse_ip(
        data.get("peer-address"), where, "peer-address", "invalid peer IP: must be an IPv4 or IPv6 address"
    )
    port = as_int(data.get("peer-port"), where, "peer-port", default=179, bits=16) or 179
    hold_text = as_str(data.get("hold-time"), where, "hold-time")
    hold = 90
    if hold_text:
        nanoseconds = parse_duration_ns(hold_text)
        if nanoseconds is None:
            raise field_error(
                where, "hold-time", hold_text, 'invalid hold time: write a duration with a unit, like "90s" or "3m"'
            )
        # MetalLB rounds to whole seconds first (Go: int(d.Seconds())), then checks.
        hold = int(float(nanoseconds // 10**9) + float(nanoseconds % 10**9) / 1e9)
        if hold != 0 and hold < 3:
            raise field_error(where, "hold-time", hold_text, "invalid hold time: must be 0 or >=3s")
        if nanoseconds and not hold:
            # MetalLB's verdict (accepted, and 0), but a surprising one: say what it does.
            warnings.append(
                f'{where}: field "hold-time": value "{shown(hold_text)}" is less than a second and rounds down to 0, '
                'which turns off the hold timer and keepalives; write "0s" to mean that, or at least "3s"'
            )
    router_id = None
    if data.get("router-id") not in (None, ""):
        router_id = _parse_ip(data.get("router-id"), where, "router-id", "invalid router ID: must be an IP address")
    selectors = parse_node_selectors(data.get("node-selectors"), where)
    source = None
    if data.get("source-address") not in (None, ""):
        source = _parse_ip(data.get("source-address"), where, "source-address", "must be an IP address of this node")
    multihop = as_bool(data.get("ebgp-multihop"), where, "ebgp-multihop", default=False)
    if multihop and my_asn == peer_asn:
        raise field_error(
            where, "ebgp-multihop", "true", "invalid ebgp-multihop parameter set for an ibgp peer (my-asn is peer-asn)"
        )
    return PeerSpec(
        my_asn=my_asn,
        peer_asn=peer_asn,
        peer_address=address,
        peer_port=port,
        hold_time=hold,
        router_id=router_id,
        source_address=source,
        password=as_str(data.get("password"), where, "password"),
        node_selectors=selectors,
        ebgp_multihop=multihop,
    )


# -- communities -------------------------------------------------------------------------


def _uint(text: str, most: int) -> int | None:
    """Go's ``strconv.ParseUint``: ASCII digits (leading zeros allowed) up to *most*; None otherwise."""
    match = _INTEGER.fullmatch(text)
    if match is None or text[0] in "+-" or len(match.group(1)) > _MAX_DIGITS:
        return None
    number = int(match.group(1) or "0")
    return number if number <= most else None


def parse_community(text: str) -> Community | LargeCommunity:
    """``a:b`` (16-bit halves) or ``large:a:b:c`` (32-bit parts); ValueError says why."""
    parts = text.split(":", 4)
    if parts[0] == "large":
        if len(parts) != 4:
            raise ValueError("a large community is written large:A:B:C")
        nums = []
        for name, part in zip(("first", "second", "third"), parts[1:], strict=True):
            number = _uint(part, (1 << 32) - 1)
            if number is None:
                raise ValueError(f"invalid {name} section '{shown(part)}': must be 0-4294967295")
            nums.append(number)
        return LargeCommunity(global_admin=nums[0], local1=nums[1], local2=nums[2])
    if len(parts) != 2:
        raise ValueError("invalid community string: write two 16-bit numbers as A:B, or large:A:B:C")
    nums = []
    for name, part in zip(("first", "second"), parts, strict=True):
        number = _uint(part, 0xFFFF)
        if number is None:
            raise ValueError(f"invalid {name} section '{shown(part)}': must be 0-65535")
        nums.append(number)
    return Community((nums[0] << 16) | nums[1])


def _parse_communities(raw: object) -> dict[str, Community | LargeCommunity]:
    out = {}
    for alias, value in as_mapping(raw, "bgp-communities").items():
        text = as_str(value, "bgp-communities", alias)
        try:
            out[alias] = parse_community(text)
        except ValueError as exc:
            raise ConfigError(
                f'bgp-communities: parsing community "{shown(alias)}": value "{shown(text)}": {exc}'
            ) from None
    return out


# -- pools -------------------------------------------------------------------------------


def range_to_cidrs(first: int, last: int, version: int) -> list[netaddr.IPNetwork]:
    """The minimal ascending list of CIDRs covering exactly *first* .. *last* (addresses as integers).

    What ``netaddr.iprange_to_cidrs`` returns, about four times faster: parsing a config of
    10 000 ranges spends most of its time here.
    """
    width = 32 if version == 4 else 128
    out = []
    while first <= last:
        aligned = (first & -first).bit_length() - 1 if first else width  # the block size first starts
        fits = (last - first + 1).bit_length() - 1  # the largest block that ends by last
        bits = min(aligned, fits)
        out.append(netaddr.IPNetwork((first, width - bits), version))
        first += 1 << bits
    return out


def parse_cidrs(values: object, where: str, field: str) -> tuple[netaddr.IPNetwork, ...]:
    """Parse CIDRs and ``start-end`` ranges, MetalLB's way, into CIDRs in file order.

    Ranges are expanded to the minimal ascending CIDR list covering exactly
    their ends; CIDRs are non-strict (host bits are cleared).
    """
    cidrs: list[netaddr.IPNetwork] = []
    for item in as_list(values, where, field):
        text = as_str(item, where, field).strip()
        if "-" in text:
            start_text, _, end_text = text.partition("-")
            try:
                start = netaddr.IPAddress(start_text.strip())
                end = netaddr.IPAddress(end_text.strip())
            except (netaddr.AddrFormatError, ValueError):
                raise field_error(where, field, text, "invalid IP range: both ends must be IP addresses") from None
            if start.version != end.version:
                raise field_error(where, field, text, "invalid IP range: start and end are of different IP families")
            if start > end:
                raise field_error(where, field, text, "invalid IP range: start is after end")
            cidrs.extend(range_to_cidrs(int(start), int(end), start.version))
            continue
        if "/" not in text:
            raise field_error(
                where, field, text, "invalid CIDR: write a prefix length (/32 or /128 for one address) or a range a-b"
            )
        try:
            cidrs.append(netaddr.IPNetwork(text).cidr)  # non-strict: host bits are cleared
        except (netaddr.AddrFormatError, ValueError, TypeError):
            raise field_error(where, field, text, "invalid CIDR") from None
    return tuple(cidrs)


_NO_PROTOCOL = "no announcement protocol is installed (run `metallb plugins` to see which plugins are loaded)"


def _protocol_rule(protocols: Mapping[str, ProtocolInfo]) -> str:
    if not protocols:
        return _NO_PROTOCOL
    return f"must be one of the installed announcement protocols: {', '.join(protocols)}"


def _hooks(entry: PoolEntry) -> Hooks:
    return entry.hooks if entry.hooks is not None else Hooks(default_plugin_manager())


def _protocol_keys(protocols: Mapping[str, ProtocolInfo], reserved: Iterable[str]) -> dict[str, str]:
    """Pool key -> the protocol owning it; a key clashing with a section's own keys is a plugin bug."""
    owners = {key: info.name for info in protocols.values() for key in info.pool_keys}
    clash = sorted(set(owners) & set(reserved))
    if clash:
        raise PluginError(
            f'protocol "{owners[clash[0]]}" claims the pool key "{clash[0]}", which the pool section uses itself'
        )
    return owners


def _empty(value: object) -> bool:
    return value in (None, "", [], {})


def parse_pool_entry(
    entry: PoolEntry,
    *,
    cidrs_key: str | None = "addresses",
    options: Mapping[str, Callable[[object, str], object]] | None = None,
    required: Iterable[str] = (),
) -> PoolSpec:
    """Parse the keys every pool shares, the protocol's own keys, and a section's own *options*.

    Args:
        entry: the raw entry.
        cidrs_key: the key holding the pool's CIDRs and ranges (``addresses``
            for static pools, ``cidrs`` for address services); None when the
            section has no address key: the spec's ``cidrs`` are then empty
            (a remote pool of any family), or the plugin fills them with
            ``attrs.evolve(spec, cidrs=...)`` so overlaps are checked. The
            spec records the key (``PoolSpec.cidrs_key``): ``dump_config``
            writes the CIDRs under it, and not at all when it is None, so
            its output parses back.
        options: own keys mapped to converters ``(value, where) -> parsed``;
            a converter raises :class:`ConfigError`. Keys missing from the entry
            are converted from None, so converters give defaults.
        required: own keys that must be present and non-empty.

    The ``protocol`` must be one an installed plugin declares
    (``metallb_announcer_protocols``); that plugin parses the keys it owns
    into the pool's advertisements (``metallb_parse_advertisements``). Keys
    of another protocol may be present only when empty.

    Checks run in MetalLB's order: unknown keys, name, addresses, protocol
    (with its keys), own options.
    """
    own = dict(options or {})
    hooks = _hooks(entry)
    protocols = hooks.protocols()
    cidrs_keys = (cidrs_key,) if cidrs_key else ()
    owners = _protocol_keys(protocols, (*COMMON_POOL_KEYS, *cidrs_keys, *own))
    where = entry.where()
    try:
        data = as_mapping(entry.data, where, keys=(*COMMON_POOL_KEYS, *owners, *cidrs_keys, *own))
    except ConfigError:
        declared = entry.data.get("protocol")
        if isinstance(declared, str) and declared and declared not in protocols:
            # The unknown keys are most likely the uninstalled protocol's: name the cause.
            raise field_error(where, "protocol", declared, f"unknown protocol: {_protocol_rule(protocols)}") from None
        raise
    name = as_str(data.get("name"), where, "name")
    if not name:
        raise ConfigError(f'{where}: missing pool name: every entry needs a unique "name"')
    cidrs: tuple[netaddr.IPNetwork, ...] = ()
    if cidrs_key:
        if not as_list(data.get(cidrs_key), where, cidrs_key):
            raise ConfigError(
                f'{where}: pool has no prefixes defined: list at least one CIDR or range in "{cidrs_key}"'
            )
        cidrs = parse_cidrs(data[cidrs_key], where, cidrs_key)
    protocol = as_str(data.get("protocol"), where, "protocol")
    if not protocol:
        hint = f'set "protocol" to one of {", ".join(protocols)}' if protocols else _NO_PROTOCOL
        raise ConfigError(f"{where}: address pool is missing the protocol field: {hint}")
    if protocol not in protocols:
        raise field_error(where, "protocol", protocol, f"unknown protocol: {_protocol_rule(protocols)}")
    for key, owner in owners.items():
        if owner != protocol and not _empty(data.get(key)):
            raise ConfigError(
                f"{where}: cannot have {key} configuration element in a {protocol} address pool "
                f'("{key}" applies to {owner} pools only)'
            )
    advertisements = hooks.parse_advertisements(protocol, entry, cidrs)
    selectors = parse_node_selectors(data.get("node-selectors"), where)
    parsed_options: dict[str, object] = {}
    for key in required:
        if _empty(data.get(key)):
            raise ConfigError(f'{where}: missing required field "{key}"')
    for key, convert in own.items():
        parsed_options[key] = convert(data.get(key), where)
    return PoolSpec(
        name=name,
        kind=entry.section,
        cidrs=cidrs,
        auto_assign=as_bool(data.get("auto-assign"), where, "auto-assign", default=True),
        avoid_buggy_ips=as_bool(data.get("avoid-buggy-ips"), where, "avoid-buggy-ips", default=False),
        advertisements=advertisements,
        node_selectors=selectors,
        options=parsed_options,
        cidrs_key=cidrs_key or None,
    )


def first_overlap(cidrs: Sequence[netaddr.IPNetwork]) -> tuple[int, int] | None:
    """The first overlap MetalLB's in-order check finds, as indexes ``(later, earlier)``; None if none.

    MetalLB compares each CIDR, in order, with every CIDR before it (the same pool's
    included) and reports the first earlier one it overlaps: the smallest ``later`` that
    overlaps anything before it, with the smallest such ``earlier``. That is quadratic; this
    sorts once and sweeps. CIDRs either nest or are disjoint, so the CIDRs overlapping
    one are its ancestors and descendants in the containment forest, which a sweep over
    the CIDRs sorted by (family, first address, size descending) walks with a stack.
    O(n log n).
    """
    spans = [(c.version, c.first, -c.last, k) for k, c in enumerate(cidrs)]  # netaddr's properties cost a call each
    spans.sort()
    # The usual case, no overlap at all: each CIDR starts after the one before it ends.
    if all(a[0] != b[0] or -a[2] < b[1] for a, b in itertools.pairwise(spans)):
        return None
    order = [k for *_, k in spans]
    spans.sort(key=lambda span: span[3])  # back in input order: spans[k] is cidrs[k]
    count = len(spans)
    ancestors = [count] * count  # smallest index among each CIDR's ancestors (count: none)
    descendants = [count] * count  # smallest index among its descendants
    subtree = list(range(count))  # smallest index in its subtree, itself included
    stack: list[int] = []  # the chain of CIDRs containing the current one, outermost first

    def pop() -> None:
        done = stack.pop()
        if stack:
            parent = stack[-1]
            descendants[parent] = min(descendants[parent], subtree[done])
            subtree[parent] = min(subtree[parent], subtree[done])

    for k in order:
        version, first, _, _ = spans[k]
        while stack and (spans[stack[-1]][0] != version or -spans[stack[-1]][2] < first):
            pop()
        if stack:  # the top contains this CIDR (they nest): so does every CIDR below it
            top = stack[-1]
            ancestors[k] = min(ancestors[top], top)
        stack.append(k)
    while stack:
        pop()
    for later in range(count):
        earlier = min(ancestors[later], descendants[later])
        if earlier < later:
            return later, earlier
    return None


# -- the whole document ------------------------------------------------------------------


def parse_config(text: str | bytes, *, plugin_manager: pluggy.PluginManager | None = None) -> Config:
    """Parse a configuration in either format into a :class:`Config`.

    The legacy format is the YAML MetalLB kept under the ConfigMap's
    ``data.config``; the other is a YAML stream of MetalLB's resources
    (``IPAddressPool``, ``BGPPeer`` ...; a ``kubectl get -o yaml`` List too),
    parsed by :func:`~metallb.allocator.parse_resources`. A stream is read as
    resources when its documents carry ``apiVersion`` and ``kind``.

    Any input gives a ``Config`` or a ``ConfigError``, in time and memory bounded by its
    size (:mod:`~metallb.allocator.yamlload` bounds the YAML; every check across pools is
    O(n log n)).

    Args:
        text: the YAML document or stream (bytes must be UTF-8).
        plugin_manager: the plugins that own pool sections and announcement
            protocols; by default every installed plugin
            (:func:`~metallb.allocator.default_plugin_manager`).

    Raises:
        ConfigError: the message names the section, entry, field, value and rule, on one line
            (:class:`~metallb.allocator.TransientConfigError` when resources
            refer to something that may appear later).
        PluginError: a plugin broke its hook's contract.
    """
    from metallb.allocator import resources  # imports this module

    if resources.looks_like_resources(text):
        found = resources.parse_resource_text(text, plugin_manager=plugin_manager)
        if found is not None:
            return found
    return _parse_legacy_config(text, plugin_manager=plugin_manager)


def _parse_legacy_config(text: str | bytes, *, plugin_manager: pluggy.PluginManager | None = None) -> Config:
    """:func:`parse_config` of the ConfigMap format only (a ConfigMap's ``data.config``).

    Never read as resources, so a ConfigMap nested in a ConfigMap's text does not recurse.
    """
    hooks = _ParseHooks(plugin_manager if plugin_manager is not None else default_plugin_manager())
    raw = load_yaml(text, quoted=True)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            "config must be a mapping of sections (peers, address-pools ...), not a single value or a list"
        )
    claimed = hooks.pool_sections()
    for key in raw:
        if key == "bfd-profiles":
            raise ConfigError(
                'section "bfd-profiles" is not supported: BFD exists only in MetalLB\'s FRR mode; remove the section '
                "(and any bfd-profile on peers)"
            )
        if key not in CORE_SECTIONS and key not in claimed:
            known = ", ".join(sorted({*CORE_SECTIONS, *claimed}))
            raise ConfigError(
                f'unknown top-level key "{shown(key)}": no installed plugin handles it (known: {known}); '
                f"check its spelling, or run `metallb plugins` to see which plugins are loaded"
            )
    warnings: list[str] = []
    peers: dict[PeerSpec, int] = {}  # peer -> its number, for the duplicate check
    for i, item in enumerate(as_list(raw.get("peers"), "peers", "peers"), 1):
        peer = _parse_peer(i, item, warnings)
        if peer in peers:
            raise ConfigError(f"peer #{i}: already exists: it repeats peer #{peers[peer]} exactly")
        peers[peer] = i
    communities = _parse_communities(raw.get("bgp-communities"))
    sections = tuple(k for k in raw if k in claimed)
    pools: dict[str, PoolSpec] = {}
    cidrs: list[netaddr.IPNetwork] = []  # every pool's CIDRs, in order
    owners: list[tuple[str, PoolEntry]] = []  # per CIDR: its pool's name and entry
    try:
        for section in sections:
            entries = raw[section]
            if entries is not None and not isinstance(entries, list):
                raise ConfigError(f'section "{section}": must be a list of pools')
            for i, item in enumerate(entries or (), 1):
                entry = PoolEntry(
                    section=section,
                    index=i,
                    data=item if isinstance(item, dict) else {},
                    communities=communities,
                    hooks=hooks,
                )
                if not isinstance(item, dict):
                    raise ConfigError(f"{entry.where()}: must be a mapping of fields to values")
                spec = hooks.parse_pool(entry)
                if spec.name in pools:
                    raise ConfigError(
                        f'{entry.where()}: duplicate definition of pool "{shown(spec.name)}": '
                        "pool names are unique across all sections"
                    )
                cidrs.extend(spec.cidrs)
                owners.extend([(spec.name, entry)] * len(spec.cidrs))
                pools[spec.name] = spec
    except MetalLBError:
        # MetalLB checks each pool's overlaps before it reads the next pool: an overlap
        # among the pools before this error is the error it reports.
        _check_overlaps(cidrs, owners)
        raise
    _check_overlaps(cidrs, owners)
    config = Config(
        pools=pools, peers=tuple(peers), communities=communities, sections=sections, warnings=tuple(warnings)
    )
    hooks.validate_config(config)
    return config


def _check_overlaps(cidrs: Sequence[netaddr.IPNetwork], owners: Sequence[tuple[str, PoolEntry]]) -> None:
    found = first_overlap(cidrs)
    if found is not None:
        later, earlier = found
        name, entry = owners[later]
        raise ConfigError(
            f'{entry.where()}: CIDR "{cidrs[later]}" in pool "{shown(name)}" overlaps with already defined '
            f'CIDR "{cidrs[earlier]}" (pool "{shown(owners[earlier][0])}")'
        )


def _default_hooks(plugin_manager: pluggy.PluginManager | None) -> Hooks:
    return Hooks(plugin_manager if plugin_manager is not None else default_plugin_manager())


class _ParseHooks(Hooks):
    """The hooks of one parse: the declared protocols are asked for once, not once per pool."""

    _protocols: dict[str, ProtocolInfo] | None = None

    def protocols(self) -> dict[str, ProtocolInfo]:
        if self._protocols is None:
            self._protocols = super().protocols()
        return dict(self._protocols)


def dump_config(config: Config, *, plugin_manager: pluggy.PluginManager | None = None) -> str:
    """The normalised configuration as YAML (what ``metallb check-config`` prints).

    The announcement protocols' plugins render their own pool keys
    (``metallb_dump_advertisements``); *plugin_manager* defaults to every
    installed plugin, as in :func:`parse_config`.
    """
    hooks = _default_hooks(plugin_manager)

    def selectors(sel: tuple[NodeSelector, ...]) -> list[dict[str, Any]]:
        return [
            {
                "match-labels": dict(s.match_labels),
                "match-expressions": [
                    {"key": e.key, "operator": e.operator, "values": list(e.values)} for e in s.match_expressions
                ],
            }
            for s in sel
        ]

    doc: dict[str, Any] = {}
    if config.peers:
        doc["peers"] = [
            {
                "my-asn": p.my_asn,
                "peer-asn": p.peer_asn,
                "peer-address": str(p.peer_address),
                "peer-port": p.peer_port,
                "hold-time": f"{p.hold_time}s",
                **({"router-id": str(p.router_id)} if p.router_id else {}),
                **({"source-address": str(p.source_address)} if p.source_address else {}),
                **({"password": "<set>"} if p.password else {}),
                **({"node-selectors": selectors(p.node_selectors)} if p.node_selectors else {}),
            }
            for p in config.peers
        ]
    if config.communities:
        doc["bgp-communities"] = {k: str(v) for k, v in config.communities.items()}
    for section in config.sections:
        entries = []
        for pool in config.pools.values():
            if pool.kind != section:
                continue
            item: dict[str, Any] = {"name": pool.name, "protocol": pool.protocol}
            if pool.cidrs and pool.cidrs_key:
                # Under the key the section parses them from; none when its plugin fills them itself.
                item[pool.cidrs_key] = [str(c) for c in pool.cidrs]
            item["auto-assign"] = pool.auto_assign
            item["avoid-buggy-ips"] = pool.avoid_buggy_ips
            for protocol in pool.protocols:
                rendered = hooks.dump_advertisements(protocol, pool.advertisements_of(protocol))
                item.update({key: _plain(value) for key, value in rendered.items()})
            if pool.node_selectors:
                item["node-selectors"] = selectors(pool.node_selectors)
            for key, value in pool.options.items():
                item[key] = "<set>" if "token" in key or "password" in key else _plain(value)
            entries.append(item)
        doc[section] = entries
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def _plain(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)
