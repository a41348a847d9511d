"""``metallb drain NODE [--undo]``: set or remove the node annotation ``metallb.io/drain``.

The speakers do the rest (see :mod:`metallb.operator.speaker`): the others
stop counting the node as a candidate, the next node in election order
announces (layer 2; by BGP, the other nodes that can advertise a Service do),
and the drained node withdraws each Service once another node's announcement
status (``ServiceL2Status``, ``ServiceBGPStatus`` naming a peer) shows it, or
after 5 s.
"""

from __future__ import annotations

import argparse
import logging
import sys

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from metallb.operator.cmd_config import reason
from metallb.operator.kube import api_client

__all__ = ["DRAIN_ANNOTATION", "run"]

log = logging.getLogger(__name__)
#: The node annotation the speakers read (speaker.DRAIN_ANNOTATION).
DRAIN_ANNOTATION = "metallb.io/drain"


def run(args: argparse.Namespace) -> int:
    """Annotate (or with --undo, un-annotate) the node; 0 on success, 1 with one line otherwise."""
    value = None if args.undo else "true"
    body = {"metadata": {"annotations": {DRAIN_ANNOTATION: value}}}
    try:
        client.CoreV1Api(api_client(args.kubeconfig, context=args.context)).patch_node(
            args.node, body, _request_timeout=(5, 30)
        )
    except ApiException as exc:
        if exc.status == 404:
            print(f"metallb drain: node {args.node!r}: no such node", file=sys.stderr)
        else:
            print(f"metallb drain: node {args.node!r}: {exc.status} {exc.reason}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bad kubeconfig or an unreachable API read the same
        log.debug("draining failed", exc_info=True)
        print(f"metallb drain: cannot reach the cluster: {reason(exc)}", file=sys.stderr)
        return 1
    print(f"node {args.node}: {'drain ended' if args.undo else 'draining'}")
    return 0
