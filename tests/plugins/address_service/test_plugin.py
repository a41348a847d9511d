"""The plugin's entry module: the command it contributes, the backend hook it defines, and what it imports."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

import pluggy
import pytest
from metallb.allocator import PluginError, get_plugin_manager, hookimpl
from metallb.plugins.address_service import command, plugin
from metallb.plugins.address_service.api import Backend, BackendOptions
from metallb.plugins.address_service.memory import MemoryBackend


def parser_with_hook() -> argparse.ArgumentParser:
    """A ``metallb``-like parser whose commands come from metallb_add_commands, as the CLI builds it."""
    parser = argparse.ArgumentParser(prog="metallb")
    subparsers = parser.add_subparsers(dest="command")
    get_plugin_manager().hook.metallb_add_commands(subparsers=subparsers)
    return parser


class TestCommandHook:
    """``metallb address-service`` comes from the plugin through metallb_add_commands."""

    def test_registered_with_its_run(self) -> None:
        """The hook adds address-service; parsing its options selects command.run."""
        args = parser_with_hook().parse_args(
            ["address-service", "--backend", "dhcp", "--interface", "eth1", "--cidr", "192.0.2.0/24", "--derive-macs"]
        )
        assert args.run is command.run
        assert (args.backend, args.interface, args.cidr, args.derive_macs) == (["dhcp"], "eth1", ["192.0.2.0/24"], True)
        assert (args.listen, args.request_timeout, args.state_file) == ("127.0.0.1:8000", 10.0, "")

    def test_help_has_examples(self, capsys) -> None:
        """--help explains the command and shows examples, as written (no re-wrapping)."""
        with pytest.raises(SystemExit):
            parser_with_hook().parse_args(["address-service", "--help"])
        out = capsys.readouterr().out
        assert "The bundled address service" in out and "examples:" in out
        assert "  metallb address-service --backend dhcp --interface eth1 --cidr 192.0.2.0/24 \\\n" in out

    def test_help_without_server_dependencies(self) -> None:
        """Building the parser imports none of the server's or client's dependencies."""
        assert probe("parser") == {"httpx": False, "prometheus_client": False, "scapy": False}


class TestBackendHook:
    """metallb_make_backend: specified by this plugin (historic metallb_add_hookspecs), implemented by any."""

    def test_spec_comes_with_the_plugin(self) -> None:
        """With the plugin loaded the hook has its firstresult spec; without it the hook does not exist."""
        loaded = get_plugin_manager(entry_points=False, plugins=[plugin])
        assert loaded.hook.metallb_make_backend.spec.opts["firstresult"] is True
        assert not hasattr(get_plugin_manager(entry_points=False).hook, "metallb_make_backend")

    def test_backend_plugin_registered_first(self) -> None:
        """A backend plugin registered before the address-service plugin is still called (the spec is historic)."""

        class Plugin:
            @hookimpl
            def metallb_make_backend(self, kind: str, options: BackendOptions) -> Backend | None:
                return MemoryBackend(cidrs=["198.51.100.0/30"]) if kind == "mine" else None

        pm = get_plugin_manager(entry_points=False, plugins=[Plugin(), plugin])
        backend = command.make_backend("mine", BackendOptions(), plugin_manager=pm)
        assert list(backend.cidrs()) == ["198.51.100.0/30"]
        assert (
            command.make_backend("memory", BackendOptions(cidrs=["192.0.2.0/30"]), plugin_manager=pm).kind == "memory"
        )

    def test_optional_hook_loads_without_the_plugin(self) -> None:
        """Marked optionalhook, a backend plugin loads with the address-service plugin disabled; unmarked it cannot."""

        class Optional:
            @hookimpl(optionalhook=True)
            def metallb_make_backend(self, kind: str, options: BackendOptions) -> Backend | None:
                return None

        class Required:
            @hookimpl
            def metallb_make_backend(self, kind: str, options: BackendOptions) -> Backend | None:
                return None

        get_plugin_manager(entry_points=False, plugins=[Optional()])
        with pytest.raises(pluggy.PluginValidationError, match="unknown hook 'metallb_make_backend'"):
            get_plugin_manager(entry_points=False, plugins=[Required()])

    def test_unknown_kind_and_wrong_result(self) -> None:
        """make_backend names an unknown kind, and refuses a plugin's result that is no Backend."""

        class Wrong:
            @hookimpl
            def metallb_make_backend(self, kind: str) -> object:
                return object() if kind == "wrong" else None

        pm = get_plugin_manager(entry_points=False, plugins=[plugin, Wrong()])
        with pytest.raises(PluginError, match="unknown backend 'nope': built in are memory, dhcp and dhcpv6"):
            command.make_backend("nope", BackendOptions(), plugin_manager=pm)
        with pytest.raises(PluginError, match="backend 'wrong': the plugin returned a object, not a Backend"):
            command.make_backend("wrong", BackendOptions(), plugin_manager=pm)

    def test_options_are_frozen_and_typed(self) -> None:
        """BackendOptions is an immutable value; cidrs become a tuple."""
        options = BackendOptions(cidrs=["192.0.2.0/24"], interface="eth1", renew_after=2.0)
        assert options.cidrs == ("192.0.2.0/24",) and options.offer_timeout == 5.0
        with pytest.raises(AttributeError):
            options.interface = "eth2"  # type: ignore[misc]


PROBE = textwrap.dedent(
    """
    import argparse, json, sys
    for name in sys.argv[2:]:
        sys.modules[name] = None  # as if not installed: importing it raises ImportError
    from metallb.allocator import MetalLBError, get_plugin_manager, parse_config
    from metallb.plugins.address_service.api import BackendOptions

    pm = get_plugin_manager()
    what = sys.argv[1]
    try:
        if what == "parser":
            parser = argparse.ArgumentParser()
            pm.hook.metallb_add_commands(subparsers=parser.add_subparsers())
            parse_config("address-services:\\n- {name: a, url: http://x, protocol: layer2, cidrs: [192.0.2.0/24]}\\n")
        elif what == "source":
            config = parse_config("address-services:\\n- {name: a, url: http://x, protocol: layer2, cidrs: [192.0.2.0/24]}\\n")
            pm.hook.metallb_make_source(spec=config.pools["a"])
        elif what == "dhcp":
            pm.hook.metallb_make_backend(kind="dhcp", options=BackendOptions(interface="eth1"))
        elif what == "run":
            parser = argparse.ArgumentParser()
            pm.hook.metallb_add_commands(subparsers=parser.add_subparsers())
            args = parser.parse_args(["address-service", "--cidr", "192.0.2.0/24"])
            print(json.dumps({"status": args.run(args)}))
            sys.exit(0)
    except MetalLBError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        sys.exit(0)
    print(json.dumps({name: name in sys.modules and sys.modules[name] is not None for name in ("httpx", "prometheus_client", "scapy")}))
    """
)


def probe(what: str, *missing: str) -> dict[str, object]:
    """Run *what* in a fresh interpreter where the packages *missing* cannot be imported; its JSON report."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, what, *missing],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        # Other plugins have their own imports; layer2 (a light module) declares the protocol the pools name.
        env={**os.environ, "METALLB_PLUGINS": "address-services,layer2"},
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    if proc.stderr.strip():
        report["stderr"] = proc.stderr.strip().splitlines()[-1]
    return report


class TestBareInstall:
    """Without the extras the plugin still loads and parses its pools; using them names the extra to install."""

    def test_pools_parse_without_extras(self) -> None:
        """With httpx, prometheus-client and scapy missing, the plugin loads and address-services pools parse."""
        assert probe("parser", "httpx", "prometheus_client", "scapy") == {
            "httpx": False,
            "prometheus_client": False,
            "scapy": False,
        }

    def test_client_without_httpx(self) -> None:
        """Building an address-services pool's source without httpx is a one-line config error naming the extra."""
        assert probe("source", "httpx") == {
            "error": "ConfigError",
            "message": 'pool "a": address-services pools need httpx, which is not installed: '
            "pip install 'metallb[address-services]'",
        }

    def test_dhcp_backend_without_scapy(self) -> None:
        """The dhcp backend without scapy is a plugin error naming metallb[dhcp]."""
        assert probe("dhcp", "scapy") == {
            "error": "PluginError",
            "message": "the dhcp backend needs scapy, which is not installed: pip install 'metallb[dhcp]'",
        }

    def test_server_without_prometheus_client(self) -> None:
        """metallb address-service without prometheus-client exits 1 with one line naming the extra."""
        report = probe("run", "prometheus_client")
        assert report["status"] == 1
        assert report["stderr"] == (
            "metallb address-service: needs the Python module 'prometheus_client', which is not installed: "
            "pip install 'metallb[address-services]'"
        )
