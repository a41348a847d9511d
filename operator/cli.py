"""The ``metallb`` command: one entry point, a subcommand per job.

The operator's own commands come from :mod:`metallb.operator.commands`; every
other command comes from a plugin's ``metallb_add_commands`` hook (``metallb
address-service`` is the address-service plugin's). Building the parser
imports no command's implementation: each command imports its own when it
runs, so ``metallb plugins`` never loads the Kubernetes client. A command
whose implementation needs a missing extra says which one to install.

Bad input is one line on standard error, never a traceback: a bad option is
argparse's error in one line (status 2), a command reports the errors it
expects, and :func:`main` turns anything else into ``metallb CMD: unexpected
error: ...`` (status 1) with the traceback logged at debug level.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, cast

import pluggy
from metallb.allocator import Hooks, default_plugin_manager
from metallb.operator.cmd_config import one_line
from metallb.operator.commands import COMMANDS, EPILOG, add_commands
from metallb.operator.logs import setup_logging

__all__ = ["COMMANDS", "CommandParser", "build_parser", "extras_providing", "main"]

DISTRIBUTION = "metallb"
log = logging.getLogger("metallb")


class CommandParser(argparse.ArgumentParser):
    """A parser whose descriptions and examples keep their line breaks, and whose errors are one line.

    An error names the command, the problem and where to look (``--help``), exit status 2;
    argparse's default prints the whole usage first.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        """Print one line (``metallb check-config: error: ...; see ...``) and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {one_line(message)}; see `{self.prog} --help`\n")


def _version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def _add_plugin_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], pm: pluggy.PluginManager
) -> None:
    """Every plugin's commands (``metallb_add_commands``); a broken plugin costs only its own, said on stderr."""
    for plugin, error in Hooks(pm).add_commands(subparsers).items():
        print(f"metallb: plugin {plugin!r} failed to add its commands, skipped: {error}", file=sys.stderr)


def build_parser(plugin_manager: pluggy.PluginManager | None = None) -> argparse.ArgumentParser:
    """The full argument parser: the operator's commands, then every plugin's (default: installed plugins)."""
    parser = CommandParser(
        prog="metallb",
        description="A load balancer for bare-metal Kubernetes: address pools and address services, "
        "announced by layer 2 (ARP/NDP) or BGP.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="log format (default: text)")
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="default: info"
    )
    # add_parser returns a CommandParser, which is an ArgumentParser: what hooks are promised.
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser),
    )
    add_commands(sub)
    _add_plugin_commands(sub, plugin_manager or default_plugin_manager())
    return parser


def _module_of(requirement: str) -> str:
    """The import name of a requirement's distribution (``prometheus-client`` -> ``prometheus_client``)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    return match.group().lower().replace("-", "_").replace(".", "_") if match else ""


def extras_providing(module: str) -> list[str]:
    """The extras of metallb's own metadata that install top-level *module* (``all`` left out)."""
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    found = set()
    for line in requires:
        requirement, _, marker = line.partition(";")
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if extra and extra.group(1) != "all" and _module_of(requirement) == module:
            found.add(extra.group(1))
    return sorted(found)


def missing_extra_message(command: str, exc: ModuleNotFoundError) -> str | None:
    """One line naming the extra to install, or None when *exc* is not about an optional dependency."""
    module = (exc.name or "").partition(".")[0]
    extras = extras_providing(module)
    if not extras:
        return None
    declared = next((c.extra for c in COMMANDS if c.name == command), "")
    if declared in extras:
        extras = [declared]
    install = " or ".join(f"pip install '{DISTRIBUTION}[{extra}]'" for extra in extras)
    return f"metallb {command}: needs the Python module {module!r}, which is not installed: {install}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``metallb`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    run = getattr(args, "run", None)
    if run is None:
        parser.error(f"command {args.command!r} has no run function (set_defaults(run=...) in its plugin)")
    setup_logging(fmt=args.log_format, level=args.log_level)
    try:
        return int(run(args))
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        message = missing_extra_message(args.command, exc)
        if message is None:
            return _unexpected(args.command, exc)
        print(message, file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last guard: one line for the user, the traceback at debug level
        return _unexpected(args.command, exc)


def _unexpected(command: str, exc: BaseException) -> int:
    """Report an exception no command handled: one line, and the traceback with ``--log-level debug``.

    Commands handle the errors they expect (bad input, unreachable services) with a message of
    their own; what reaches here is unexpected, maybe a bug, so it is named as such and its
    traceback is one flag away, never lost.
    """
    log.debug("metallb %s failed", command, exc_info=exc)
    hint = "" if log.isEnabledFor(logging.DEBUG) else " (run with --log-level debug for the traceback)"
    print(f"metallb {command}: unexpected error: {type(exc).__name__}: {one_line(exc)}{hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
