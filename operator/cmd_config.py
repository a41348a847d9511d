"""Validate a MetalLB configuration file and print it normalised.

The file is either the bare YAML that MetalLB keeps under ``data.config``, or
a whole ConfigMap manifest (its ``data.config`` is read). Exit status 0 when
valid (with a ``warning:`` line on standard error for each surprising value),
1 with one line naming the error (section, entry, field, value, rule) when not,
whatever the file holds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metallb.allocator import ConfigError, MetalLBError, dump_config, parse_config
from metallb.allocator.yamlload import load_yaml, shown

__all__ = ["config_text", "one_line", "read_config_text", "reason", "run", "shown_path"]


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


def run(args: argparse.Namespace) -> int:
    """Parse the file; print the normalised config (and warnings), or the error, on one line."""
    name = shown_path(args.file)
    try:
        config = parse_config(read_config_text(args.file))
    except MetalLBError as exc:
        print(f"{name}: invalid: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{name}: cannot read: {reason(exc)}", file=sys.stderr)
        return 1
    for warning in config.warnings:  # printed even with --quiet: the value is valid, but not what it seems
        print(f"{name}: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        sys.stdout.write(dump_config(config))
        print(f"# {name}: valid: {len(config.pools)} pools, {len(config.peers)} peers", file=sys.stderr)
    return 0
