"""Show services, their addresses, pool, who announces them, and why a pending one is pending.

Reads a standalone state file (``--state``) or a running standalone instance
(``--url http://127.0.0.1:7472``), or a cluster (``--kubeconfig``/in-cluster)
where it lists LoadBalancer Services with their status, the metallb
annotations and the latest metallb Events.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from metallb.operator.table import render_table


def _rows(services: dict[str, Any]) -> list[tuple[str, ...]]:
    return [
        (
            key,
            ",".join(s.get("addresses") or ()) or "<pending>",
            s.get("pool") or "-",
            s.get("announced") or "-",
            s.get("pending") or "",
        )
        for key, s in sorted(services.items())
    ]


def run(args: argparse.Namespace) -> int:
    """Print the status table."""
    if args.state or args.url:
        try:
            if args.state:
                doc = json.loads(Path(args.state).read_text())
            else:
                with urllib.request.urlopen(args.url.rstrip("/") + "/status", timeout=5) as answer:
                    doc = json.loads(answer.read())
        except (OSError, ValueError) as exc:
            print(f"metallb status: cannot read {args.state or args.url}: {exc}", file=sys.stderr)
            return 1
        services = doc.get("services") or {}
    else:
        from metallb.operator.kube_status import cluster_status

        services = cluster_status(args.kubeconfig)
    if args.json:
        print(json.dumps(services, indent=2))
    else:
        print(render_table(("SERVICE", "ADDRESSES", "POOL", "ANNOUNCED", "PENDING"), _rows(services)))
    return 0
