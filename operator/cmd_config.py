"""Validate a MetalLB configuration file and print it normalised.

The file is either the bare YAML that MetalLB keeps under ``data.config``, or
a whole ConfigMap manifest (its ``data.config`` is read). Exit status 0 when
valid, 1 with the error (section, entry, field, value, rule) when not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from metallb.allocator import ConfigError, MetalLBError, dump_config, parse_config


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


def run(args: argparse.Namespace) -> int:
    """Parse the file; print the normalised config or the error."""
    try:
        config = parse_config(read_config_text(args.file))
    except (MetalLBError, OSError) as exc:
        print(f"{args.file}: invalid: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        sys.stdout.write(dump_config(config))
        print(f"# {args.file}: valid: {len(config.pools)} pools, {len(config.peers)} peers", file=sys.stderr)
    return 0
