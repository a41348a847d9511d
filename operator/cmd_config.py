"""Validate a MetalLB configuration file and print it normalised; convert a ConfigMap to resources.

The file is either MetalLB's resources (a YAML stream of ``IPAddressPool``,
``BGPPeer`` ... with the Secrets, Nodes and Namespaces they refer to; a
``kubectl get -o yaml`` List too), or the legacy format: the bare YAML that
MetalLB kept under ``data.config``, or a whole ConfigMap manifest (its
``data.config`` is read). Exit status 0 when valid, 1 with the error (object or
section, field, value, rule) when not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
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


def read_config_text(path: str) -> str:
    """The config YAML in *path* (``-`` for stdin), unwrapping a ConfigMap manifest."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # let the strict parser report the YAML error with its position
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        data = doc.get("data") or {}
        if "config" not in data:
            raise ConfigError(f'{path}: the ConfigMap has no "config" key under data')
        return str(data["config"])
    return text


def _resources(text: str, mode: str | None) -> tuple[Config | None, list[str]]:
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
            out.append(f'BGPPeer "{item.name}": {fields}: accepted, not applied yet; {item.effect}')
        elif item.kind == "BGPPeer":
            fields = ", ".join(f.replace("_", "-") for f in item.fields)
            out.append(f"peer #{item.index}: {fields}: accepted, not applied yet; {item.effect}")
        else:
            out.append(f'{item.kind} "{item.name}": accepted, not applied yet; {item.effect}')
    return out


def run(args: argparse.Namespace) -> int:
    """Parse the file; print the normalised config or the error."""
    warnings: list[str] = []
    mode = getattr(args, "mode", None)
    try:
        text = read_config_text(args.file)
        resources = looks_like_resources(text) and not _legacy_manifest(text)
        if resources:
            config, warnings = _resources(text, mode)
        else:
            config = parse_config(text)
    except TransientConfigError as exc:
        print(f"{args.file}: waiting: {exc}", file=sys.stderr)
        return 1
    except (MetalLBError, OSError) as exc:
        print(f"{args.file}: invalid: {exc}", file=sys.stderr)
        return 1
    assert config is not None
    warnings += unapplied_warnings(config)
    for warning in warnings:
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        if resources:
            sys.stdout.write(dump_resources(config_to_resources(config).objects))
        else:
            sys.stdout.write(dump_config(config))
        kind = "resources" if resources else "ConfigMap format"
        print(f"# {args.file}: valid: {len(config.pools)} pools, {len(config.peers)} peers ({kind})", file=sys.stderr)
    return 0


def _legacy_manifest(text: str) -> bool:
    """A stream that is only a ConfigMap with data.config: the legacy format (parse_config unwraps it)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        return False
    return len(docs) == 1 and isinstance(docs[0], dict) and docs[0].get("kind") == "ConfigMap"


def run_convert(args: argparse.Namespace) -> int:
    """``metallb convert-config``: print the resources equivalent to a ConfigMap-format configuration."""
    try:
        text = read_config_text(args.file)
        if looks_like_resources(text) and not _legacy_manifest(text):
            raise ConfigError("the file already holds resources; convert-config reads the ConfigMap format")
        config = parse_config(text)
        conversion = config_to_resources(config, namespace=args.namespace)
    except (MetalLBError, OSError) as exc:
        print(f"{args.file}: cannot convert: {exc}", file=sys.stderr)
        return 1
    for note in conversion.notes + tuple(unapplied_warnings(config)):
        print(f"{args.file}: note: {note}", file=sys.stderr)
    print(f"# MetalLB resources converted by `metallb convert-config` from {args.file}")
    sys.stdout.write(dump_resources(conversion.objects))
    return 0
