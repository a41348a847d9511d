"""The ``metallb`` command: one entry point, a subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so
``metallb plugins`` never loads the Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from metallb.operator.logs import setup_logging

#: name -> (module, one-line help). The module provides add_arguments and run.
COMMANDS: dict[str, tuple[str, str]] = {
    "check-config": ("metallb.operator.cmd_config", "validate a MetalLB config file and print it normalised"),
    "plugins": ("metallb.operator.cmd_plugins", "list the loaded plugins, their versions and hooks"),
    "allocate": ("metallb.operator.cmd_allocate", "allocate addresses for service names from a config (dry run)"),
    "standalone": ("metallb.operator.standalone", "controller and speaker for one host, without Kubernetes"),
    "controller": ("metallb.operator.controller", "allocate addresses for LoadBalancer Services in a cluster"),
    "speaker": ("metallb.operator.speaker", "announce service addresses from this node (layer 2 or BGP)"),
    "address-service": (
        "metallb.plugins.address_service.server",
        "run the bundled address service (memory or dhcp backend)",
    ),
    "status": ("metallb.operator.cmd_status", "show services, addresses, pools, announcers and why pending"),
}

EPILOG = """\
examples:
  metallb check-config examples/config.yaml
  metallb plugins
  metallb allocate --config examples/config.yaml default/web default/dns
  metallb standalone --config examples/config.yaml --services examples/services.yaml --node n1
  metallb status --state metallb-state.json
  metallb COMMAND --help          details and examples for one command
"""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (imports each command module for its options)."""
    parser = argparse.ArgumentParser(
        prog="metallb",
        description="A load balancer for bare-metal Kubernetes: address pools and address services, "
        "announced by layer 2 (ARP/NDP) or BGP.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="log format (default: text)")
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="default: info"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or help_text).strip()
        command = sub.add_parser(
            name,
            help=help_text,
            description=doc.split("\n\n", 1)[0],
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``metallb`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    setup_logging(fmt=args.log_format, level=args.log_level)
    try:
        return int(args._module.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
