"""Show services, their addresses, pool, who announces them, and why a pending one is pending.

Reads a standalone state file (``--state``) or a running standalone instance
(``--url http://127.0.0.1:7472``), or a cluster (``--kubeconfig``/in-cluster)
where it lists LoadBalancer Services with their status, the metallb
annotations and the latest metallb Events.
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

from metallb.allocator.yamlload import shown
from metallb.operator.cmd_config import reason, shown_path
from metallb.operator.table import render_table

log = logging.getLogger(__name__)

__all__ = ["read_services", "run"]


def _text(value: object) -> str:
    """A cell: one line, short; lists joined by commas."""
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    return shown("" if value is None else str(value), limit=200)


def _rows(services: Mapping[str, Any]) -> list[tuple[str, ...]]:
    return [
        (
            _text(key),
            _text(s.get("addresses")) or "<pending>",
            _text(s.get("pool")) or "-",
            _text(s.get("announced")) or "-",
            _text(s.get("pending")),
        )
        for key, s in sorted(services.items())
    ]


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
        from metallb.operator.kube_status import cluster_status

        try:
            services = cluster_status(args.kubeconfig)
        except Exception as exc:  # a bad kubeconfig, an unreachable or refusing API: all read the same
            log.debug("reading the cluster failed", exc_info=True)
            print(f"metallb status: cannot read the cluster: {reason(exc)}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(services, indent=2))
    else:
        print(render_table(("SERVICE", "ADDRESSES", "POOL", "ANNOUNCED", "PENDING"), _rows(services)))
    return 0
