"""The operator's own ``metallb`` subcommands: their help, options and examples.

Light on purpose: building the parser imports this module (and the plugins'
``metallb_add_commands`` hooks), never a command's implementation. Each
``run`` imports its implementation module when the command runs, so
``metallb plugins`` or ``metallb check-config`` never load the Kubernetes
client, and work on a bare ``pip install metallb``.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

import attrs

__all__ = ["COMMANDS", "EPILOG", "Command", "add_commands", "port", "positive_int", "seconds"]

EPILOG = """\
examples:
  metallb check-config examples/config.yaml
  metallb convert-config examples/config.yaml
  metallb plugins
  metallb allocate --config examples/config.yaml default/web default/dns
  metallb standalone --config examples/config.yaml --services examples/services.yaml --node n1
  metallb status --state metallb-state.json
  metallb explain default/web
  metallb COMMAND --help          details and examples for one command
"""


@attrs.frozen(kw_only=True)
class Command:
    """One subcommand: its help, its options, how it runs, and the extra its implementation needs."""

    name: str
    help: str
    description: str
    epilog: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    #: The ``metallb[...]`` extra the implementation imports ("" for none).
    extra: str = ""


# -- option types: a bad value is argparse's one-line error (status 2), never a failure later -------


def port(text: str) -> int:
    """A TCP port, 0-65535 (0: none, or any free one, as the option says)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def seconds(text: str) -> float:
    """A duration in seconds: a finite number above 0 (nan, inf, 0 and negatives would spin or never wake)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds above 0 and at most {MAX_SECONDS:g}")
    return value


#: The longest interval an option takes (a year): threading waits refuse much more.
MAX_SECONDS = 365 * 24 * 3600.0


# -- check-config ---------------------------------------------------------------------


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", help="config file: resources (a YAML stream or List), bare YAML or a ConfigMap manifest; - for stdin"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing when the config is valid")
    parser.add_argument(
        "--mode",
        choices=("native", "frr"),
        help="also apply MetalLB's checks of what only that BGP implementation supports (resources only)",
    )


def _run_check_config(args: argparse.Namespace) -> int:
    from metallb.operator import cmd_config

    return cmd_config.run(args)


# -- convert-config -------------------------------------------------------------------


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a ConfigMap-format config (bare YAML or a ConfigMap manifest); - for stdin")
    parser.add_argument(
        "--namespace", default="metallb-system", help="namespace of the resources (default: %(default)s)"
    )


def _run_convert_config(args: argparse.Namespace) -> int:
    from metallb.operator import cmd_config

    return cmd_config.run_convert(args)


# -- plugins --------------------------------------------------------------------------


def _plugins_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run_plugins(args: argparse.Namespace) -> int:
    from metallb.operator import cmd_plugins

    return cmd_plugins.run(args)


# -- allocate -------------------------------------------------------------------------


def _allocate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config file (bare YAML or ConfigMap manifest)")
    parser.add_argument(
        "services", nargs="+", metavar="SERVICE", help="namespace/name[@pool][=address][#family][%%4,6]"
    )


def _run_allocate(args: argparse.Namespace) -> int:
    from metallb.operator import cmd_allocate

    return cmd_allocate.run(args)


# -- new-plugin -----------------------------------------------------------------------


def _new_plugin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the plugin and its config section, like file-pools")
    parser.add_argument("--directory", "-d", help="where to write it (default: ./metallb-NAME); must be new or empty")


def _run_new_plugin(args: argparse.Namespace) -> int:
    from metallb.operator import newplugin

    return newplugin.run(args)


# -- standalone -----------------------------------------------------------------------


def _standalone_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="MetalLB config (bare YAML or ConfigMap manifest)")
    parser.add_argument("--services", required=True, help="YAML file of Service manifests")
    parser.add_argument(
        "--node", default=os.environ.get("METALLB_NODE_NAME", os.uname().nodename), help="this node's name"
    )
    parser.add_argument(
        "--interfaces", action="append", default=[], help="layer-2 interfaces (names or patterns); repeatable"
    )
    parser.add_argument("--state", default="metallb-state.json", help="state file (default: %(default)s)")
    parser.add_argument(
        "--metrics-host", default="127.0.0.1", help="metrics/status listen address (default: %(default)s)"
    )
    parser.add_argument(
        "--metrics-port", type=port, default=7472, help="metrics/status port, 0 for none (default: %(default)s)"
    )
    parser.add_argument(
        "--poll-interval", type=seconds, default=1.0, help="seconds between file checks (default: %(default)s)"
    )
    parser.add_argument("--once", action="store_true", help="allocate, print the table, write the state, and exit")
    parser.add_argument("--no-announce", action="store_true", help="allocate only; do not answer ARP/NDP or speak BGP")


def _run_standalone(args: argparse.Namespace) -> int:
    from metallb.operator import standalone

    return standalone.run(args)


# -- controller -----------------------------------------------------------------------


def _controller_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then in-cluster)")
    parser.add_argument("--context", help="kubeconfig context (default: its current one)")
    parser.add_argument(
        "--namespace", default=os.environ.get("METALLB_NAMESPACE", "metallb-system"), help="default: %(default)s"
    )
    parser.add_argument("--config", default="config", help="name of the config ConfigMap (default: %(default)s)")
    parser.add_argument(
        "--lb-class", default=None, help="serve only Services of this loadBalancerClass (default: only those without)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=4, help="concurrent Service workers (default: %(default)s)"
    )
    parser.add_argument("--metrics-host", default="0.0.0.0", help="default: %(default)s")
    parser.add_argument(
        "--metrics-port", type=port, default=7472, help="metrics and /healthz, /readyz (default: %(default)s)"
    )
    parser.add_argument(
        "--reconcile-interval", type=seconds, default=300.0, help="seconds between address-service checks"
    )
    parser.add_argument("--lease-name", default="metallb-controller", help="leader Lease name (default: %(default)s)")
    parser.add_argument("--lease-duration", type=seconds, default=15.0, help="seconds (default: %(default)s)")


def _run_controller(args: argparse.Namespace) -> int:
    from metallb.operator import controller

    return controller.run(args)


# -- speaker --------------------------------------------------------------------------


def _port(text: str) -> int:
    """A TCP/UDP port number, for argparse (its errors are one line)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def _speaker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then in-cluster)")
    parser.add_argument("--context", help="kubeconfig context (default: its current one)")
    parser.add_argument(
        "--node-name", default=os.environ.get("METALLB_NODE_NAME"), help="this node (env METALLB_NODE_NAME)"
    )
    parser.add_argument(
        "--namespace", default=os.environ.get("METALLB_NAMESPACE", "metallb-system"), help="default: %(default)s"
    )
    parser.add_argument("--config", default="config", help="name of the config ConfigMap (default: %(default)s)")
    parser.add_argument(
        "--interfaces", action="append", default=[], help="limit layer 2 to these interfaces (repeatable)"
    )
    parser.add_argument(
        "--ignore-exclude-lb",
        action="store_true",
        help="announce even from nodes labelled exclude-from-external-load-balancers",
    )
    parser.add_argument(
        "--liveness",
        choices=("memberlist", "node", "lease"),
        default="memberlist",
        help="how speakers learn who is alive: gossip (no API writes), Node conditions, or a Lease per speaker"
        " (default: %(default)s; memberlist without a key falls back to node)",
    )
    env = os.environ.get
    parser.add_argument(
        "--ml-bindaddr",
        default=env("METALLB_ML_BIND_ADDR", ""),
        help="memberlist listen address (env METALLB_ML_BIND_ADDR; default: every address)",
    )
    parser.add_argument(
        "--ml-bindport",
        type=_port,
        default=env("METALLB_ML_BIND_PORT", "7946"),
        help="memberlist UDP and TCP port of every speaker (env METALLB_ML_BIND_PORT; default: %(default)s)",
    )
    parser.add_argument(
        "--ml-labels",
        default=env("METALLB_ML_LABELS", ""),
        help="label selector of the speaker Pods, the members (env METALLB_ML_LABELS; default: every Node)",
    )
    parser.add_argument(
        "--ml-namespace",
        default=env("METALLB_ML_NAMESPACE", ""),
        help="namespace of the speaker Pods (env METALLB_ML_NAMESPACE; default: --namespace)",
    )
    parser.add_argument(
        "--ml-secret-key-path",
        default=env("METALLB_ML_SECRET_KEY_PATH", "/etc/ml_secret_key"),
        help="the shared key: a file, or a directory holding secretkey (env METALLB_ML_SECRET_KEY_PATH;"
        " default: %(default)s)",
    )
    parser.add_argument(
        "--lease-renew",
        type=seconds,
        default=0.4,
        help="--liveness lease: seconds between Lease renewals (default: %(default)s)",
    )
    parser.add_argument(
        "--lease-duration",
        type=seconds,
        default=1.2,
        help="--liveness lease: a speaker is dead after this many seconds without renewal (default: %(default)s)",
    )
    parser.add_argument(
        "--no-conflict-probe",
        action="store_true",
        help="layer 2: answer for a newly assigned address at once, without first probing (ARP / DAD) for another host",
    )
    parser.add_argument("--metrics-host", default="0.0.0.0", help="default: %(default)s")
    parser.add_argument(
        "--metrics-port", type=port, default=7472, help="metrics, /healthz and /status (default: %(default)s)"
    )


def _run_speaker(args: argparse.Namespace) -> int:
    from metallb.operator import speaker

    return speaker.run(args)


# -- drain ----------------------------------------------------------------------------


def _drain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", help="the node to drain (its name in the cluster)")
    parser.add_argument("--undo", action="store_true", help="end the drain: the node may announce again")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then in-cluster)")
    parser.add_argument("--context", help="kubeconfig context (default: its current one)")


def _run_drain(args: argparse.Namespace) -> int:
    from metallb.operator import cmd_drain

    return cmd_drain.run(args)


# -- status ---------------------------------------------------------------------------


OUTPUTS = ("table", "wide", "json", "yaml")


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    """Where status and explain read from, and kubectl's -n, --context and -o."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--state", help="a standalone state file")
    source.add_argument("--url", help="a running standalone instance's metrics address")
    source.add_argument("--kubeconfig", help="a cluster (default: KUBECONFIG, then in-cluster)")
    parser.add_argument("--context", help="kubeconfig context (default: its current one)")
    parser.add_argument("-n", "--namespace", help="the Services' namespace (default: all; explain: default)")
    parser.add_argument(
        "-o", "--output", choices=OUTPUTS, default="table", help="table (default), wide, json or yaml"
    )


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    _source_arguments(parser)
    parser.add_argument("--json", dest="output", action="store_const", const="json", help="the same as -o json")


def _run_status(args: argparse.Namespace) -> int:
    from metallb.operator import cmd_status

    return cmd_status.run(args)


# -- explain --------------------------------------------------------------------------


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", metavar="NAMESPACE/SERVICE", help="the Service (or SERVICE with -n)")
    _source_arguments(parser)
    parser.add_argument("--config", help="standalone: the config file (for the selection steps)")
    parser.add_argument("--services", help="standalone: the services file (to replay the selection)")
    parser.add_argument(
        "--metallb-namespace",
        default=os.environ.get("METALLB_NAMESPACE", "metallb-system"),
        help="cluster: metallb's own namespace (default: %(default)s)",
    )
    parser.add_argument("--config-name", default="config", help="cluster: the config ConfigMap (default: config)")
    parser.add_argument("--lb-class", default=None, help="the loadBalancerClass the controller serves (default: none)")


def _run_explain(args: argparse.Namespace) -> int:
    from metallb.operator import explain

    return explain.run(args)


COMMANDS: tuple[Command, ...] = (
    Command(
        name="check-config",
        help="validate a MetalLB config file and print it normalised",
        description="Validate a MetalLB configuration file and print it normalised.",
        epilog="""\
examples:
  metallb check-config examples/config.yaml
  metallb check-config examples/resources.yaml           # MetalLB's resources
  metallb check-config operator/deploy/config.yaml      # a ConfigMap manifest
  kubectl -n metallb-system get ipaddresspools,l2advertisements,bgppeers -o yaml | metallb check-config -
""",
        add_arguments=_config_arguments,
        run=_run_check_config,
    ),
    Command(
        name="convert-config",
        help="print the MetalLB resources equivalent to a ConfigMap-format config",
        description="Print MetalLB's resources (IPAddressPool, BGPPeer ...) equivalent to a ConfigMap-format config.",
        epilog="""\
examples:
  metallb convert-config examples/config.yaml > resources.yaml
  metallb convert-config operator/deploy/config.yaml | kubectl apply -f -
  kubectl -n metallb-system get cm config -o yaml | metallb convert-config -
""",
        add_arguments=_convert_arguments,
        run=_run_convert_config,
    ),
    Command(
        name="plugins",
        help="list the loaded plugins, their versions and hooks",
        description="List the loaded plugins, their versions and the hooks each implements.",
        epilog="""\
examples:
  metallb plugins
  metallb plugins --json
  METALLB_DISABLE_PLUGINS=bgp metallb plugins
""",
        add_arguments=_plugins_arguments,
        run=_run_plugins,
    ),
    Command(
        name="allocate",
        help="allocate addresses for service names from a config (dry run)",
        description="Allocate addresses for services from a config, without a cluster (a dry run).",
        epilog="""\
examples:
  metallb allocate --config examples/config.yaml default/web default/dns
  metallb allocate --config examples/config.yaml default/web@production default/db=192.0.2.10
  metallb allocate --config examples/config.yaml 'default/v6#6' 'default/dual%4,6'
""",
        add_arguments=_allocate_arguments,
        run=_run_allocate,
    ),
    Command(
        name="new-plugin",
        help="write a working pool plugin skeleton to start from",
        description="Write a working pool plugin: its packaging, the hooks and the address source (addresses\n"
        "listed in a text file), a test using metallb's contract checker, and a README.",
        epilog="""\
examples:
  metallb new-plugin file-pools                  # writes ./metallb-file-pools
  metallb new-plugin ipam-pools -d ~/src/ipam    # anywhere new or empty
  pip install ./metallb-file-pools && python -m pytest metallb-file-pools
""",
        add_arguments=_new_plugin_arguments,
        run=_run_new_plugin,
    ),
    Command(
        name="standalone",
        help="controller and speaker for one host, without Kubernetes",
        description="Controller and speaker for one host, without Kubernetes.",
        epilog="""\
examples:
  metallb standalone --config examples/config.yaml --services examples/services.yaml --node $(hostname)
  metallb standalone --config c.yaml --services s.yaml --node n1 --interfaces eth1 --state /var/lib/metallb/state.json
  metallb standalone --config c.yaml --services s.yaml --node n1 --once     # allocate, print, exit
  metallb status --state /var/lib/metallb/state.json                        # the table, from another shell
""",
        add_arguments=_standalone_arguments,
        run=_run_standalone,
        extra="operator",
    ),
    Command(
        name="controller",
        help="allocate addresses for LoadBalancer Services in a cluster",
        description="Allocate addresses for LoadBalancer Services in a cluster.",
        epilog="""\
examples:
  metallb controller --kubeconfig ~/.kube/config
  metallb controller --namespace metallb-system --config config --lb-class example.com/metallb
  metallb controller --log-format json --metrics-port 7472 --workers 8
""",
        add_arguments=_controller_arguments,
        run=_run_controller,
        extra="operator",
    ),
    Command(
        name="speaker",
        help="announce service addresses from this node (layer 2 or BGP)",
        description="Announce service addresses from one node.",
        epilog="""\
examples:
  metallb speaker --node-name $(hostname) --kubeconfig ~/.kube/config
  METALLB_NODE_NAME=node-a metallb speaker --interfaces eth1 --ml-secret-key-path /etc/ml_secret_key
  metallb speaker --node-name n1 --ml-labels app.kubernetes.io/component=speaker --ml-bindaddr 192.0.2.1
  metallb speaker --node-name n1 --liveness lease --lease-renew 0.5 --lease-duration 1.5
  metallb speaker --node-name n1 --ignore-exclude-lb          # single-node clusters
""",
        add_arguments=_speaker_arguments,
        run=_run_speaker,
        extra="operator",
    ),
    Command(
        name="drain",
        help="move every address a node announces to other nodes, make-before-break",
        description="Annotate a node metallb.io/drain: the next node in election order announces each of its\n"
        "addresses, and the drained node withdraws once that node's announcement status shows it (at most 5 s).",
        epilog="""\
examples:
  metallb drain node-a                        # before maintenance
  metallb drain node-a --undo                 # after it
  kubectl annotate node node-a metallb.io/drain=true      # the same, by hand
""",
        add_arguments=_drain_arguments,
        run=_run_drain,
        extra="operator",
    ),
    Command(
        name="status",
        help="show services, addresses, pools, announcers and why pending",
        description="Show services, their addresses, pool, who announces them, and why a pending one is pending.",
        epilog="""\
examples:
  metallb status --state metallb-state.json
  metallb status --url http://127.0.0.1:7472 -o wide
  metallb status --kubeconfig ~/.kube/config --context prod -n default -o yaml
""",
        add_arguments=_status_arguments,
        run=_run_status,
        extra="operator",
    ),
    Command(
        name="explain",
        help="why a Service has its address, or why it has none, and who announces it",
        description="Explain one Service: which pool and why (the selection steps), why it is pending (what\n"
        "each pool answered), who announces it and how (node, interfaces, peers and their sessions),\n"
        "and its last events.",
        epilog="""\
examples:
  metallb explain default/web                                  # the cluster of KUBECONFIG
  metallb explain web -n default --context prod -o wide
  metallb explain default/web --state state.json --config c.yaml --services s.yaml
  metallb explain default/web --url http://127.0.0.1:7472 --config c.yaml -o json
""",
        add_arguments=_explain_arguments,
        run=_run_explain,
        extra="operator",
    ),
)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operator's commands, the way plugins add theirs through ``metallb_add_commands``."""
    for command in COMMANDS:
        parser = subparsers.add_parser(
            command.name, help=command.help, description=command.description, epilog=command.epilog
        )
        command.add_arguments(parser)
        parser.set_defaults(run=command.run)
