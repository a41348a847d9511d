"""Show services, their addresses, pool, who announces them, and why a pending one is pending.

Reads a standalone state file (``--state``) or a running standalone instance
(``--url http://127.0.0.1:7472``), or a cluster (``--kubeconfig``, ``--context``,
in-cluster) where it lists LoadBalancer Services with their status, the metallb
annotations and the latest metallb Events. kubectl's habits: ``-n`` selects the
Services' namespace, ``-o table|wide|json|yaml`` the output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from metallb.allocator.yamlload import shown
from metallb.operator.cmd_config import reason, shown_path
from metallb.operator.table import render_table

log = logging.getLogger(__name__)

__all__ = ["read_services", "run"]


COLUMNS = ("addresses", "pool", "announced", "pending")


def _text(value: object, limit: int = 200) -> str:
    """A cell: one line, short; lists joined by commas."""
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    return shown("" if value is None else str(value), limit=limit)


def _extra(services: Mapping[str, Any]) -> list[str]:
    """The keys beyond the table's columns (``-o wide``), in the order first seen."""
    return list(dict.fromkeys(k for s in services.values() for k in s if k not in COLUMNS))


def _rows(services: Mapping[str, Any], *, wide: bool = False) -> list[tuple[str, ...]]:
    limit = 1000 if wide else 200
    extra = _extra(services) if wide else []
    return [
        (
            _text(key, limit),
            _text(s.get("addresses"), limit) or "<pending>",
            _text(s.get("pool"), limit) or "-",
            _text(s.get("announced"), limit) or "-",
            *(_text(s.get(k), limit) or "-" for k in extra),
            _text(s.get("pending"), limit),
        )
        for key, s in sorted(services.items())
    ]


def _in_namespace(services: Mapping[str, Any], namespace: str | None) -> dict[str, Any]:
    return {k: s for k, s in services.items() if namespace is None or k.split("/", 1)[0] == namespace}


def read_services(doc: object) -> dict[str, dict[str, Any]]:
    """The services of a state file or ``/status`` answer; ValueError when it has another shape."""
    if not isinstance(doc, dict):
        raise ValueError("not a metallb state: the JSON is not an object")
    services = doc.get("services") or {}
    if not isinstance(services, dict) or not all(isinstance(s, dict) for s in services.values()):
        raise ValueError('not a metallb state: "services" is not an object of objects')
    return services


def run(args: argparse.Namespace) -> int:
    """Print the status table."""
    if args.state or args.url:
        source = shown_path(args.state or args.url)
        try:
            if args.state:
                doc = json.loads(Path(args.state).read_bytes())
            else:
                with urllib.request.urlopen(args.url.rstrip("/") + "/status", timeout=5) as answer:
                    doc = json.loads(answer.read())
            services = read_services(doc)
        except OSError as exc:
            print(f"metallb status: cannot read {source}: {reason(exc)}", file=sys.stderr)
            return 1
        except (ValueError, RecursionError) as exc:  # JSON errors, not UTF-8, another shape; RecursionError: [[[[...
            print(f"metallb status: cannot read {source}: {reason(exc)}", file=sys.stderr)
            return 1
    else:
        from metallb.operator.explain import no_source_message
        from metallb.operator.kube_status import cluster_status

        if not args.kubeconfig and (message := no_source_message("status")):
            print(message, file=sys.stderr)
            return 1
        try:
            services = cluster_status(args.kubeconfig, context=args.context, namespace=args.namespace)
        except Exception as exc:  # a bad kubeconfig, an unreachable or refusing API: all read the same
            log.debug("reading the cluster failed", exc_info=True)
            print(f"metallb status: cannot read the cluster: {reason(exc)}", file=sys.stderr)
            return 1
    services = _in_namespace(services, args.namespace)
    if args.output == "json":
        print(json.dumps(services, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(services, sort_keys=False).rstrip() if services else "{}")
    else:
        wide = args.output == "wide"
        extra = [k.upper() for k in _extra(services)] if wide else []
        header = ("SERVICE", "ADDRESSES", "POOL", "ANNOUNCED", *extra, "PENDING")
        print(render_table(header, _rows(services, wide=wide)))
    return 0
