"""Validate a MetalLB configuration file and print it normalised; convert a ConfigMap to resources.

The file is either MetalLB's resources (a YAML stream of ``IPAddressPool``,
``BGPPeer`` ... with the Secrets, Nodes and Namespaces they refer to; a
``kubectl get -o yaml`` List too), or the legacy format: the bare YAML that
MetalLB kept under ``data.config``, or a whole ConfigMap manifest (its
``data.config`` is read). Exit status 0 when valid (with a ``warning:`` line on
standard error for each surprising value or field not applied), 1 with one line
naming the error (object or section, field, value, rule) when not, whatever the
file holds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metallb.allocator import (
    Config,
    ConfigError,
    Hooks,
    MetalLBError,
    TransientConfigError,
    default_plugin_manager,
    dump_config,
    load_resources,
    parse_config,
)
from metallb.allocator.convert import config_to_resources, dump_resources
from metallb.allocator.resources import looks_like_resources, read_resource_documents, resource_field
from metallb.allocator.yamlload import load_yaml, load_yaml_all, shown

__all__ = [
    "config_text",
    "one_line",
    "read_config_text",
    "reason",
    "run",
    "run_convert",
    "shown_path",
    "unapplied_warnings",
]


def shown_path(path: str) -> str:
    """A file name for a message: one line, and long enough for deep paths."""
    return shown(path, limit=300)


def one_line(value: object) -> str:
    """*value* (an exception, say) as one line of at most 500 characters."""
    return shown(str(value), limit=500)


def reason(exc: BaseException) -> str:
    """Why *exc* happened, on one line: an OS error's reason (the caller names the file), else its message."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return shown(text, limit=500)


def read_config_text(path: str) -> str | bytes:
    """The config YAML in *path* (``-`` for stdin), unwrapping a ConfigMap manifest.

    Bytes are returned as read (``parse_config`` checks they are UTF-8); ``OSError`` when the
    file cannot be read, ``ConfigError`` when a ConfigMap has no text under ``data.config``.
    """
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    try:
        doc = load_yaml(data)  # the same bounded reader as parse_config
    except ConfigError:
        return data  # let parse_config report the YAML error with its position
    if not (isinstance(doc, dict) and doc.get("kind") == "ConfigMap"):
        return data
    where = f"{shown_path(path)}: the ConfigMap"
    config_data = doc.get("data")
    if config_data is None:
        config_data = {}
    if not isinstance(config_data, dict):
        raise ConfigError(f'{where}\'s "data" must be a mapping of keys to text, not a {_kind(config_data)}')
    if "config" not in config_data:
        raise ConfigError(f'{where} has no "config" key under data')
    text = config_data["config"]
    if not isinstance(text, str):
        raise ConfigError(
            f'{where}\'s data.config must be text (the config YAML, written after "config: |"), not a {_kind(text)}'
        )
    return text


def config_text(obj: Mapping[str, Any], namespace: str, name: str) -> str:
    """The config YAML of a ConfigMap as the API returns it; ConfigError when ``data.config`` is not text."""
    data = obj.get("data")
    text = data.get("config") if isinstance(data, dict) else None
    if not isinstance(text, str):
        raise ConfigError(f'configmap {namespace}/{name} has no "config" key with the config YAML under data')
    return text


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "list"
    return "mapping" if isinstance(value, dict) else "string" if isinstance(value, str) else "null"



def _resources(text: str | bytes, mode: str | None) -> tuple[Config | None, list[str]]:
    """Load a resource stream; returns the configuration (or None) and warnings, or raises its error."""
    result = load_resources(read_resource_documents(text), mode=mode)
    if result.error is not None:
        raise result.error
    return result.config, list(result.warnings)


def unapplied_warnings(config: Config) -> list[str]:
    """What the announcers accept but do not apply yet, one line each (``NotApplied`` in a cluster)."""
    out = []
    for item in Hooks(default_plugin_manager()).unapplied(config):
        if item.kind == "BGPPeer" and item.name:
            fields = ", ".join(resource_field(f) for f in item.fields)
            out.append(f'BGPPeer "{shown(item.name)}": {fields}: accepted, not applied yet; {item.effect}')
        elif item.kind == "BGPPeer":
            fields = ", ".join(f.replace("_", "-") for f in item.fields)
            out.append(f"peer #{item.index}: {fields}: accepted, not applied yet; {item.effect}")
        else:
            out.append(f'{item.kind} "{shown(item.name)}": accepted, not applied yet; {item.effect}')
    return out


def run(args: argparse.Namespace) -> int:
    """Parse the file; print the normalised config (and warnings), or the error, on one line."""
    name = shown_path(args.file)
    mode = getattr(args, "mode", None)
    warnings: list[str] = []
    try:
        text = read_config_text(args.file)
        resources = looks_like_resources(text) and not _legacy_manifest(text)
        if resources:
            config, warnings = _resources(text, mode)
        else:
            config = parse_config(text)
    except TransientConfigError as exc:
        print(f"{name}: waiting: {one_line(exc)}", file=sys.stderr)
        return 1
    except MetalLBError as exc:
        print(f"{name}: invalid: {one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{name}: cannot read: {reason(exc)}", file=sys.stderr)
        return 1
    assert config is not None
    # printed even with --quiet: the value is valid, but not what it seems
    for warning in dict.fromkeys([*config.warnings, *warnings, *unapplied_warnings(config)]):
        print(f"{name}: warning: {one_line(warning)}", file=sys.stderr)
    if not args.quiet:
        if resources:
            sys.stdout.write(dump_resources(config_to_resources(config).objects))
        else:
            sys.stdout.write(dump_config(config))
        kind = "resources" if resources else "ConfigMap format"
        print(f"# {name}: valid: {len(config.pools)} pools, {len(config.peers)} peers ({kind})", file=sys.stderr)
    return 0


def _legacy_manifest(text: str | bytes) -> bool:
    """A stream that is only a ConfigMap with data.config: the legacy format (parse_config unwraps it)."""
    try:
        docs = [d for d in load_yaml_all(text) if d is not None]
    except ConfigError:
        return False
    return len(docs) == 1 and isinstance(docs[0], dict) and docs[0].get("kind") == "ConfigMap"


def run_convert(args: argparse.Namespace) -> int:
    """``metallb convert-config``: print the resources equivalent to a ConfigMap-format configuration."""
    name = shown_path(args.file)
    try:
        text = read_config_text(args.file)
        if looks_like_resources(text) and not _legacy_manifest(text):
            raise ConfigError("the file already holds resources; convert-config reads the ConfigMap format")
        config = parse_config(text)
        conversion = config_to_resources(config, namespace=args.namespace)
    except MetalLBError as exc:
        print(f"{name}: cannot convert: {one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{name}: cannot read: {reason(exc)}", file=sys.stderr)
        return 1
    for note in dict.fromkeys([*config.warnings, *conversion.notes, *unapplied_warnings(config)]):
        print(f"{name}: note: {one_line(note)}", file=sys.stderr)
    print(f"# MetalLB resources converted by `metallb convert-config` from {name}")
    sys.stdout.write(dump_resources(conversion.objects))
    return 0
