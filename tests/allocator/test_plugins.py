"""The plugin host: entry points, allow and block lists, failures, third-party sections."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest
from metallb.allocator import Allocator, ConfigError, get_plugin_manager, hookimpl, list_plugins, parse_config

ROOT = Path(__file__).resolve().parents[2]
THIRD_PARTY = ROOT / "tests" / "thirdparty" / "metallb-stride-pools"
METALLB = [sys.executable, "-m", "metallb.operator"]
STRIDE_CONFIG = "stride-pools:\n- name: odd\n  protocol: layer2\n  stride: 2\n  cidrs: [192.0.2.0/28]\n"


@pytest.fixture(name="third_party", scope="session")
def _third_party():
    """Install the tiny third-party plugin package into this test environment with pip."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(THIRD_PARTY)],
        check=True,
        capture_output=True,
        cwd="/",
    )
    importlib.invalidate_caches()
    return "stride-pools"


def run_metallb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the metallb command line in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONSAFEPATH": "1", **(env or {})}
    return subprocess.run([*METALLB, *args], capture_output=True, text=True, env=full_env, timeout=60, cwd="/")


class TestEntryPoints:
    def test_builtin_plugins_load_through_entry_points(self):
        """The static pool plugin is found through the metallb entry-point group."""
        names = {name for name, _ in get_plugin_manager().list_name_plugin()}
        assert "static" in names

    def test_block_list(self, monkeypatch):
        """METALLB_DISABLE_PLUGINS blocks a plugin by name, like pytest's -p no:."""
        monkeypatch.setenv("METALLB_DISABLE_PLUGINS", "static")
        pm = get_plugin_manager()
        assert pm.is_blocked("static")
        with pytest.raises(ConfigError, match='unknown top-level key "address-pools"'):
            parse_config("address-pools: []", plugin_manager=pm)

    def test_allow_list(self, monkeypatch):
        """METALLB_PLUGINS loads only the named plugins."""
        monkeypatch.setenv("METALLB_PLUGINS", "static")
        names = {info.name for info in list_plugins(get_plugin_manager())}
        assert names == {"static"}

    def test_failing_plugin_is_logged_and_skipped(self, monkeypatch, caplog):
        """A plugin whose import fails is skipped with a warning; the others load."""
        broken = importlib.metadata.EntryPoint(name="broken", value="metallb_no_such_module", group="metallb")
        real = importlib.metadata.entry_points(group="metallb")
        monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [broken, *real])
        with caplog.at_level(logging.WARNING):
            pm = get_plugin_manager()
        assert pm.has_plugin("static")
        assert "metallb_no_such_module" in pm.failures["broken"]
        assert "plugin 'broken'" in caplog.text
        assert any(i.name == "broken" and i.error for i in list_plugins(pm))

    def test_misspelt_hook_is_rejected(self):
        """check_pending catches an implementation that matches no hook."""

        class Typo:
            @hookimpl
            def metallb_make_sauce(self, spec):
                return None

        with pytest.raises(pluggy.PluginValidationError, match="metallb_make_sauce"):
            get_plugin_manager(entry_points=False, plugins=[Typo()])


class TestThirdPartyPlugin:
    def test_listed_by_metallb_plugins(self, third_party):
        """`metallb plugins` (a subprocess) lists the installed plugin, its version and hooks."""
        result = run_metallb("plugins", "--json")
        plugins = {p["name"]: p for p in json.loads(result.stdout)}
        assert third_party in plugins, result.stdout + result.stderr
        assert plugins[third_party]["version"] == "0.3.1"
        assert set(plugins[third_party]["hooks"]) == {
            "metallb_pool_sections",
            "metallb_parse_pool",
            "metallb_make_source",
            "metallb_add_commands",
        }
        table = run_metallb("plugins").stdout
        assert "stride-pools" in table and "0.3.1" in table

    def test_allocates_through_its_own_section(self, third_party):
        """Its config section parses, and Allocator hands out its addresses."""
        pm = get_plugin_manager()
        config = parse_config(STRIDE_CONFIG, plugin_manager=pm)
        assert config.pools["odd"].kind == "stride-pools"
        assert config.pools["odd"].options["stride"] == 2
        alloc = Allocator(plugin_manager=pm, config=config)
        got = [str(alloc.allocate(f"ns/{i}")) for i in range(3)]
        assert got == ["192.0.2.0", "192.0.2.2", "192.0.2.4"]
        assert alloc.stats("odd").total == 8
        assert alloc.unassign("ns/0")

    def test_its_errors_read_like_ours(self, third_party):
        """A bad value in the plugin's section names the entry, field and rule."""
        with pytest.raises(ConfigError, match='stride pool #1 "odd": field "stride": value "0"'):
            parse_config(STRIDE_CONFIG.replace("stride: 2", "stride: 0"), plugin_manager=get_plugin_manager())

    def test_disabled_by_name(self, third_party, tmp_path):
        """Blocking it by name makes its section unknown to check-config."""
        path = tmp_path / "c.yaml"
        path.write_text(STRIDE_CONFIG)
        assert run_metallb("check-config", str(path)).returncode == 0
        blocked = run_metallb("check-config", str(path), env={"METALLB_DISABLE_PLUGINS": third_party})
        assert blocked.returncode == 1
        assert 'unknown top-level key "stride-pools"' in blocked.stderr


class TestCheckConfigCommand:
    def test_valid_config_prints_normalised(self, tmp_path):
        """check-config prints the normalised config and exits 0."""
        path = tmp_path / "c.yaml"
        path.write_text("address-pools:\n- name: p\n  protocol: layer2\n  addresses: [10.0.0.1-10.0.0.2]\n")
        result = run_metallb("check-config", str(path))
        assert result.returncode == 0, result.stderr
        assert "10.0.0.1/32" in result.stdout and "10.0.0.2/32" in result.stdout

    def test_invalid_config_exits_1_with_the_reason(self, tmp_path):
        """check-config prints the error naming entry, field and value and exits 1."""
        path = tmp_path / "c.yaml"
        path.write_text("address-pools:\n- name: edge\n  protocol: layer2\n  addresses: [10.0.0.0/33]\n")
        result = run_metallb("check-config", str(path))
        assert result.returncode == 1
        assert 'address pool #1 "edge": field "addresses": value "10.0.0.0/33"' in result.stderr

    def test_reads_a_configmap_manifest(self, tmp_path):
        """A whole ConfigMap manifest is accepted; its data.config is checked."""
        path = tmp_path / "cm.yaml"
        path.write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\n"
            "data:\n  config: |\n    address-pools:\n    - name: p\n      protocol: layer2\n      addresses: [10.0.0.0/30]\n"
        )
        assert run_metallb("check-config", "-q", str(path)).returncode == 0

    def test_every_command_has_help_with_examples(self):
        """`metallb --help` and each command's --help show examples."""
        from metallb.operator.cli import COMMANDS

        assert "examples:" in run_metallb("--help").stdout
        for name in (command.name for command in COMMANDS):
            out = run_metallb(name, "--help")
            assert out.returncode == 0, name
            assert "examples:" in out.stdout, f"`metallb {name} --help` shows no examples"
