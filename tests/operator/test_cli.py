"""The `metallb` command line: operator commands, plugin commands, lazy imports, missing extras, --version."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from metallb.allocator import get_plugin_manager, hookimpl
from metallb.operator import cli, commands

ROOT = Path(__file__).resolve().parents[2]
THIRD_PARTY = ROOT / "tests" / "thirdparty" / "metallb-stride-pools"
CONFIG = ROOT / "examples" / "config.yaml"
RESOURCES = ROOT / "examples" / "resources.yaml"
METALLB = [sys.executable, "-m", "metallb.operator"]


def run_metallb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The metallb command line in a subprocess, as a user runs it."""
    full_env = {**os.environ, "PYTHONSAFEPATH": "1", **(env or {})}
    return subprocess.run([*METALLB, *args], capture_output=True, text=True, env=full_env, timeout=60, cwd="/")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """*code* in a fresh interpreter outside the repo."""
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd="/")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


class _Commands:
    """A plugin adding ``hello`` (and whatever else a test asks for)."""

    def __init__(self, *names: str, run_error: BaseException | None = None) -> None:
        self.names = names or ("hello",)
        self.run_error = run_error

    def _run(self, args: argparse.Namespace) -> int:
        if self.run_error is not None:
            raise self.run_error
        print(f"hello {args.who}")
        return 3

    @hookimpl
    def metallb_add_commands(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        for name in self.names:
            parser = subparsers.add_parser(name, help="say hello", epilog="examples:\n  metallb hello you\n")
            parser.add_argument("who")
            parser.set_defaults(run=self._run)


class _Broken:
    @hookimpl
    def metallb_add_commands(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        raise RuntimeError("boom")


class TestParser:
    def test_operator_commands_come_first(self):
        """The operator's own commands are there, in their order, without any plugin."""
        parser = cli.build_parser(get_plugin_manager(entry_points=False))
        assert list(subcommands(parser)) == [c.name for c in commands.COMMANDS]

    def test_every_command_has_examples(self):
        """Each command of the installed metallb, the plugins' included, shows examples in its --help."""
        found = subcommands(cli.build_parser())
        assert {c.name for c in commands.COMMANDS} <= found.keys()
        for name, parser in found.items():
            assert "examples:" in parser.format_help(), f"`metallb {name} --help` shows no examples"

    def test_examples_keep_their_lines(self):
        """A plugin's epilog keeps its line breaks, as the operator's do."""
        parser = cli.build_parser(get_plugin_manager(entry_points=False, plugins=[_Commands()]))
        assert "examples:\n  metallb hello you\n" in subcommands(parser)["hello"].format_help()

    def test_plugin_command_runs(self, capsys):
        """A plugin's command parses its options and runs its function, whose integer is the exit status."""
        parser = cli.build_parser(get_plugin_manager(entry_points=False, plugins=[_Commands()]))
        args = parser.parse_args(["hello", "world"])
        assert args.run(args) == 3
        assert capsys.readouterr().out == "hello world\n"

    def test_broken_plugin_costs_only_its_commands(self, capsys):
        """A plugin whose hook raises is reported in one line; every other command stays."""
        pm = get_plugin_manager(entry_points=False, plugins=[_Broken(), _Commands()])
        found = subcommands(cli.build_parser(pm))
        assert "hello" in found and "check-config" in found
        err = capsys.readouterr().err
        assert "failed to add its commands, skipped: RuntimeError: boom" in err

    def test_plugin_cannot_take_an_operator_command(self, capsys):
        """A plugin naming an existing command is skipped, and the operator's command is unchanged."""
        pm = get_plugin_manager(entry_points=False, plugins=[_Commands("plugins")])
        parser = cli.build_parser(pm)
        args = parser.parse_args(["plugins"])
        (own,) = [c for c in commands.COMMANDS if c.name == "plugins"]
        assert args.run is own.run
        assert "conflicting subparser: plugins" in capsys.readouterr().err

    def test_version(self):
        """`metallb --version` prints the installed distribution's version."""
        result = run_metallb("--version")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"metallb {importlib.metadata.version('metallb')}"


#: Prints the heavy modules loaded by one metallb command line, after it ran.
PROBE = """
import sys
from metallb.operator.cli import main
try:
    status = main({argv!r})
except SystemExit as exit:  # --help
    status = exit.code
print("LOADED", sorted(m for m in ("kubernetes", "httpx", "scapy") if m in sys.modules), status)
"""


class TestLazyImports:
    @pytest.mark.parametrize(
        "argv",
        [
            ["plugins"],
            ["check-config", "--quiet", str(CONFIG)],
            ["check-config", "--quiet", str(RESOURCES)],
            ["convert-config", str(CONFIG)],
            ["allocate", "--config", str(CONFIG), "default/web", "default/dns"],
            ["controller", "--help"],
        ],
        ids=["plugins", "check-config", "check-config-resources", "convert-config", "allocate", "controller-help"],
    )
    def test_light_commands_never_load_kubernetes(self, argv):
        """plugins, check-config, allocate (and any --help) run without importing the Kubernetes client."""
        result = run_python(PROBE.format(argv=argv))
        (line,) = [line for line in result.stdout.splitlines() if line.startswith("LOADED")]
        assert "kubernetes" not in line, result.stdout + result.stderr
        if argv[-1] != "--help":
            assert line.endswith(" 0"), result.stdout + result.stderr

    def test_probe_sees_kubernetes(self):
        """The probe works: the controller does import the client (and fails on a missing kubeconfig)."""
        result = run_python(PROBE.format(argv=["controller", "--kubeconfig", "/nonexistent/kubeconfig"]))
        assert "'kubernetes'" in result.stdout and result.stdout.strip().endswith(" 1"), result.stdout + result.stderr


#: Runs one command line with *module* unimportable, as on an install without its extra.
WITHOUT = """
import sys
sys.modules[{module!r}] = None
from metallb.operator.cli import main
sys.exit(main({argv!r}))
"""


class TestMissingExtra:
    def test_extras_come_from_the_metadata(self):
        """The extra naming each optional module is read from metallb's own package metadata."""
        assert cli.extras_providing("kubernetes") == ["operator"]
        assert cli.extras_providing("httpx") == ["address-services"]
        assert cli.extras_providing("scapy") == ["dhcp"]
        assert cli.extras_providing("prometheus_client") == ["address-services", "operator"]
        assert cli.extras_providing("yaml") == []

    @pytest.mark.parametrize("command", ["controller", "speaker"])
    def test_operator_command_names_its_extra(self, command):
        """Without kubernetes, an operator command prints one line naming the operator extra, exit status 1."""
        result = run_python(WITHOUT.format(module="kubernetes", argv=[command]))
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"metallb {command}: needs the Python module 'kubernetes', which is not installed: "
            "pip install 'metallb[operator]'"
        ]

    def test_shared_module_names_the_commands_extra(self):
        """prometheus_client is in two extras; an operator command names its own."""
        argv = ["standalone", "--config", str(CONFIG), "--services", "/dev/null", "--once"]
        result = run_python(WITHOUT.format(module="prometheus_client", argv=argv))
        assert result.returncode == 1
        assert "pip install 'metallb[operator]'" in result.stderr
        assert "Traceback" not in result.stderr

    def test_plugin_command_names_the_extra(self, capsys, monkeypatch):
        """A plugin command failing on httpx is told to install the address-services extra."""
        error = ModuleNotFoundError("No module named 'httpx'", name="httpx")
        pm = get_plugin_manager(entry_points=False, plugins=[_Commands(run_error=error)])
        monkeypatch.setattr(cli, "default_plugin_manager", lambda: pm)
        monkeypatch.setattr(cli, "setup_logging", lambda **_: None)
        assert cli.main(["hello", "you"]) == 1
        assert capsys.readouterr().err == (
            "metallb hello: needs the Python module 'httpx', which is not installed: "
            "pip install 'metallb[address-services]'\n"
        )

    def test_other_missing_modules_are_bugs(self, monkeypatch, capsys, caplog):
        """A module no extra provides is not hidden behind an install hint: an unexpected error, traceback at debug."""
        error = ModuleNotFoundError("No module named 'nosuch'", name="nosuch")
        pm = get_plugin_manager(entry_points=False, plugins=[_Commands(run_error=error)])
        monkeypatch.setattr(cli, "default_plugin_manager", lambda: pm)
        monkeypatch.setattr(cli, "setup_logging", lambda **_: None)
        with caplog.at_level("DEBUG", logger="metallb"):
            assert cli.main(["hello", "you"]) == 1
        assert capsys.readouterr().err == (
            "metallb hello: unexpected error: ModuleNotFoundError: No module named 'nosuch'\n"
        )
        (record,) = [r for r in caplog.records if r.exc_info]
        assert record.levelname == "DEBUG" and record.exc_info[1] is error


@pytest.fixture(name="stride_plugin", scope="module")
def _stride_plugin():
    """The third-party test plugin, installed into this environment with pip."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(THIRD_PARTY)],
        check=True,
        capture_output=True,
        cwd="/",
    )
    importlib.invalidate_caches()
    return "stride-pools"


class TestThirdPartyCommand:
    def test_help(self, stride_plugin):
        """`metallb stride-preview --help` comes from the installed plugin, with examples."""
        result = run_metallb("stride-preview", "--help")
        assert result.returncode == 0, result.stderr
        assert "examples:\n  metallb stride-preview 192.0.2.0/28 --stride 4" in result.stdout
        assert "stride-preview" in run_metallb("--help").stdout

    def test_runs(self, stride_plugin):
        """The plugin's command runs with its options and exits with its status."""
        result = run_metallb("stride-preview", "192.0.2.0/29", "--stride", "3")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["192.0.2.0", "192.0.2.3", "192.0.2.6"]

    def test_gone_when_disabled(self, stride_plugin):
        """Disabling the plugin by name removes its command."""
        result = run_metallb("stride-preview", "--help", env={"METALLB_DISABLE_PLUGINS": stride_plugin})
        assert result.returncode == 2
        assert "invalid choice: 'stride-preview'" in result.stderr


def command(*argv: str) -> argparse.Namespace:
    """The parsed command line, to call its own run() (not cli.main(), which reconfigures logging)."""
    return cli.build_parser().parse_args(list(argv))


POOL = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec: {addresses: [%s]}\n"


class TestConfigCommands:
    """check-config on both formats, convert-config."""

    def test_check_config_prints_resources_normalised(self, capsys):
        """Resources are printed as normalised resources; stderr says valid, the format and the counts."""
        args = command("check-config", str(RESOURCES))
        assert args.run(args) == 0
        out, err = capsys.readouterr()
        assert "kind: IPAddressPool" in out and "valid: 4 pools, 1 peers (resources)" in err

    def test_invalid_and_waiting_are_one_line(self, tmp_path, capsys):
        """An invalid object is one "invalid:" line naming it; a missing reference is a "waiting:" line."""
        path = tmp_path / "bad.yaml"
        path.write_text(POOL % "10.0.0.0/33")
        args = command("check-config", str(path))
        assert args.run(args) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert (
            line
            == f'{path}: invalid: IPAddressPool "p": field "spec.addresses[0]": value "10.0.0.0/33": invalid CIDR (write a prefix length, /32 for one address, or a range a-b)'
        )
        path.write_text(
            POOL % "10.0.0.0/24"
            + "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: b}\nspec: {communities: [no-export]}\n"
        )
        assert args.run(args) == 1
        assert capsys.readouterr().err.startswith(f'{path}: waiting: BGPAdvertisement "b"')

    def test_warnings_name_what_is_not_applied(self, tmp_path, capsys):
        """ebgp-multihop (accepted as MetalLB v0.12 does) is a warning: not applied yet."""
        path = tmp_path / "c.yaml"
        path.write_text(
            "peers:\n- my-asn: 64500\n  peer-asn: 64501\n  peer-address: 192.0.2.1\n  ebgp-multihop: true\n"
        )
        args = command("check-config", "-q", str(path))
        assert args.run(args) == 0
        assert (
            capsys.readouterr().err
            == f"{path}: warning: peer #1: ebgp-multihop: accepted, not applied yet; the session runs without them\n"
        )

    def test_mode(self, tmp_path, capsys):
        """--mode native applies MetalLB's native-mode checks."""
        path = tmp_path / "c.yaml"
        path.write_text("apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: b}\n")
        args = command("check-config", "--mode", "native", str(path))
        assert args.run(args) == 1
        assert "BFD profiles are not supported in native BGP mode" in capsys.readouterr().err

    def test_convert_config(self, tmp_path, capsys):
        """convert-config prints resources that check-config accepts, and refuses resources as input."""
        args = command("convert-config", str(CONFIG))
        assert args.run(args) == 0
        out = capsys.readouterr().out
        assert out.startswith("# MetalLB resources converted by `metallb convert-config`")
        converted = tmp_path / "converted.yaml"
        converted.write_text(out)
        again = command("check-config", "-q", str(converted))
        assert again.run(again) == 0
        refused = command("convert-config", str(RESOURCES))
        assert refused.run(refused) == 1
        assert "already holds resources" in capsys.readouterr().err
