"""Fields of Kubernetes objects as the API server hands them out: JSON types, checked by field type.

A resource read from the API has numbers, booleans and strings already; one read from a
YAML file is first decoded the way ``kubectl`` decodes it (:func:`json_value`: YAML 1.1
booleans, numbers, quoted text stays text), so both reach the parsers alike. Every
converter raises :class:`~metallb.allocator.ConfigError` with one line naming the object,
the field path (``spec.addresses[2]``), the value and the rule.

Plugins parsing their own pool kinds (``metallb_parse_pool_resource``) use these too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from metallb.allocator.config import parse_duration_ns
from metallb.allocator.errors import ConfigError
from metallb.allocator.model import LabelExpression, LabelSelector
from metallb.allocator.yamlload import Quoted, shown

__all__ = [
    "bad_value",
    "json_value",
    "label_selectors",
    "selector_key",
    "spec_bool",
    "spec_duration",
    "spec_int",
    "spec_list",
    "spec_mapping",
    "spec_str",
    "spec_strings",
]

# -- YAML text to JSON types ------------------------------------------------------------

_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_INT = re.compile(r"[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|0o?[0-7_]+|[0-9][0-9_]*)")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?")
_SPECIAL_FLOATS = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}


def _plain_scalar(text: str) -> object:
    """A plain YAML scalar as Go's YAML (v2, which kubectl uses) resolves it for an untyped value."""
    if text in _BOOLS:
        return _BOOLS[text]
    if len(text) <= 40 and _INT.fullmatch(text):
        digits = text.replace("_", "")
        sign = -1 if digits.startswith("-") else 1
        body = digits.lstrip("+-")
        base = (
            2
            if body.startswith("0b")
            else 16
            if body.startswith("0x")
            else 8
            if body[:1] == "0" and body != "0"
            else 10
        )
        body = body[2:] if body[:2] in ("0b", "0x", "0o") else body
        try:
            return sign * int(body, base)
        except ValueError:
            return text
    if len(text) <= 40 and _FLOAT.fullmatch(text) and any(c.isdigit() for c in text):
        return float(text.replace("_", ""))
    if text.lower() in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text.lower()]
    return text


def json_value(value: object) -> Any:
    """A value read by :func:`~metallb.allocator.yamlload.load_yaml` (``quoted=True``) in JSON types.

    Quoted scalars stay strings; plain ones become booleans (YAML 1.1 words), numbers or
    strings, as ``kubectl`` sends them to the API server.
    """
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, Quoted):
        return str(value)
    if isinstance(value, str):
        return _plain_scalar(value)
    return value


# -- errors -----------------------------------------------------------------------------


def _show(value: object) -> str:
    if isinstance(value, str):
        return shown(value)
    try:
        return shown(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError):
        return shown(value)


def bad_value(where: str, field: str, value: object, rule: str) -> ConfigError:
    """``<where>: field "<field>": value "<value>": <rule>``, the value shown as JSON, short."""
    return ConfigError(f'{where}: field "{field}": value "{_show(value)}": {rule}')


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


# -- scalars and collections ------------------------------------------------------------


def spec_str(value: object, where: str, field: str) -> str:
    """A string field; absent (None) gives ""."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_value(where, field, value, f"must be a string, not {_kind(value)} (quote it)")
    return value


def spec_int(value: object, where: str, field: str, *, default: int, lo: int = 0, hi: int = (1 << 32) - 1) -> int:
    """An integer field between *lo* and *hi*; absent gives *default*."""
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer() and abs(value) < 1 << 63:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_value(where, field, value, f"must be a whole number, not {_kind(value)}")
    if not lo <= value <= hi:
        raise bad_value(where, field, value, f"must be between {lo} and {hi}")
    return value


def spec_bool(value: object, where: str, field: str, *, default: bool) -> bool:
    """A boolean field; absent gives *default*."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_value(where, field, value, f"must be true or false, not {_kind(value)}")
    return value


def spec_list(value: object, where: str, field: str) -> list[Any]:
    """A list field; absent gives []."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_value(where, field, value, f"must be a list, not {_kind(value)}")
    return value


def spec_strings(value: object, where: str, field: str, *, unique: str = "") -> tuple[str, ...]:
    """A list of strings; with *unique*, a repeated item is MetalLB's ``duplicate definition of <unique>``."""
    out: list[str] = []
    for i, item in enumerate(spec_list(value, where, field)):
        text = spec_str(item, where, f"{field}[{i}]")
        if unique and text in out:
            raise bad_value(where, f"{field}[{i}]", text, f"duplicate definition of {unique}")
        out.append(text)
    return tuple(out)


def spec_mapping(value: object, where: str, field: str, *, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """A mapping field (absent gives {}); with *keys*, any other key is an unknown field."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise bad_value(where, field, value, f"must be a mapping, not {_kind(value)}")
    if keys is not None:
        allowed = tuple(keys)
        for key in value:
            if key not in allowed:
                prefix = f"{field}." if field else ""
                raise ConfigError(
                    f'{where}: unknown field "{prefix}{shown(key)}" (allowed: {", ".join(allowed) or "none"})'
                )
    return dict(value)




def _duration(text: str) -> float | None:
    """Go's ``time.ParseDuration`` in seconds (negative included); None when Go refuses it.

    The ConfigMap parser's exact, bounded reading: one sign, Go's units, at most Go's
    largest duration (about 292 years).
    """
    nanoseconds = parse_duration_ns(text)
    return None if nanoseconds is None else nanoseconds / 1e9


def spec_duration(value: object, where: str, field: str) -> float | None:
    """A ``metav1.Duration`` (Go syntax: ``90s``, ``1m30s``) in seconds; absent gives None."""
    if value is None:
        return None
    text = spec_str(value, where, field)
    seconds = _duration(text)
    if seconds is None:
        raise bad_value(where, field, value, 'must be a duration with a unit, like "90s" or "3m"')
    return seconds


# -- label selectors --------------------------------------------------------------------

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _label_key(key: str, where: str, field: str) -> None:
    prefix, _, name = key.rpartition("/")
    ok = 0 < len(name) <= 63 and _LABEL_VALUE.match(name) is not None
    if prefix:
        ok = ok and len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix) is not None
    if not ok:
        raise bad_value(
            where, field, key, "invalid label key: a name of at most 63 characters, with an optional DNS prefix/"
        )


def _label_value(value: str, where: str, field: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise bad_value(
            where,
            field,
            value,
            "invalid label value: at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends",
        )


def selector_key(selector: LabelSelector) -> tuple[object, ...]:
    """What MetalLB compares to find duplicate selectors: labels (any order), expressions in order, values sorted."""
    return (
        tuple(sorted(selector.match_labels)),
        tuple((e.key, e.operator, tuple(sorted(e.values))) for e in selector.match_expressions),
    )


def label_selector(value: object, where: str, field: str) -> LabelSelector:
    """One ``metav1.LabelSelector``: ``matchLabels`` and ``matchExpressions``, ANDed; ``{}`` selects everything."""
    raw = spec_mapping(value, where, field, keys=("matchLabels", "matchExpressions"))
    labels = []
    for key, text in spec_mapping(raw.get("matchLabels"), where, f"{field}.matchLabels").items():
        here = f"{field}.matchLabels.{key}"
        _label_key(key, where, here)
        _label_value(spec_str(text, where, here), where, here)
        labels.append((key, str(text)))
    expressions: list[LabelExpression] = []
    for i, item in enumerate(spec_list(raw.get("matchExpressions"), where, f"{field}.matchExpressions")):
        here = f"{field}.matchExpressions[{i}]"
        expr = spec_mapping(item, where, here, keys=("key", "operator", "values"))
        key = spec_str(expr.get("key"), where, f"{here}.key")
        op = spec_str(expr.get("operator"), where, f"{here}.operator")
        values = spec_strings(expr.get("values"), where, f"{here}.values")
        _label_key(key, where, f"{here}.key")
        if op not in _OPERATORS:
            raise bad_value(where, f"{here}.operator", op, f"must be one of {', '.join(_OPERATORS)} (exact case)")
        if op in ("In", "NotIn"):
            if not values:
                raise bad_value(where, f"{here}.values", [], f'operator "{op}" needs at least one value')
            for value_text in values:
                _label_value(value_text, where, f"{here}.values")
        elif values:
            raise bad_value(where, f"{here}.values", list(values), f'operator "{op}" takes no values')
        if len(set(values)) != len(values):
            raise bad_value(where, f"{here}.values", list(values), "duplicate definition of match expression value")
        parsed = LabelExpression(key=key, operator=op, values=values)
        if any(
            selector_key(LabelSelector(match_expressions=(e,)))
            == selector_key(LabelSelector(match_expressions=(parsed,)))
            for e in expressions
        ):
            raise bad_value(where, here, expr, "duplicate definition of match expressions")
        expressions.append(parsed)
    return LabelSelector(match_labels=tuple(sorted(labels)), match_expressions=tuple(expressions))


def label_selectors(value: object, where: str, field: str) -> tuple[LabelSelector, ...]:
    """A list of label selectors (ORed); two equal ones are MetalLB's ``duplicate definition of <field>``."""
    out: list[LabelSelector] = []
    short = field.rpartition(".")[2]
    for i, item in enumerate(spec_list(value, where, field)):
        selector = label_selector(item, where, f"{field}[{i}]")
        if any(selector_key(s) == selector_key(selector) for s in out):
            raise bad_value(where, f"{field}[{i}]", item, f"duplicate definition of {short}")
        out.append(selector)
    return tuple(out)
