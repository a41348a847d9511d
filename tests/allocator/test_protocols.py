"""Announcement protocols through the hooks: the built-in layer2 and bgp, and a third-party one end to end."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import netaddr
import pytest
from metallb.allocator import (
    Allocator,
    AnnouncerSettings,
    BgpAdvertisement,
    ConfigError,
    Hooks,
    L2Advertisement,
    ProtocolInfo,
    ServiceView,
    dump_config,
    parse_config,
)
from metallb.allocator.testing import plugin_manager_with
from metallb.plugins import static_pool

ROOT = Path(__file__).resolve().parents[2]
VXLAN_PACKAGE = ROOT / "tests" / "thirdparty" / "metallb-vxlan-protocol"
METALLB = [sys.executable, "-m", "metallb.operator"]
VXLAN = "address-pools:\n- name: overlay\n  protocol: vxlan\n  addresses: [192.0.2.0/28]\n  vni: 4096\n"
LAYER2 = "address-pools:\n- name: lan\n  protocol: layer2\n  addresses: [198.51.100.0/28]\n"


@pytest.fixture(name="vxlan", scope="module")
def _vxlan():
    """Install the third-party protocol package with pip, as a user would, and import it."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(VXLAN_PACKAGE)],
        check=True,
        capture_output=True,
        cwd="/",
    )
    importlib.invalidate_caches()
    return importlib.import_module("metallb_vxlan_protocol")


@pytest.fixture(name="pm")
def _pm(vxlan):
    """Static pools, metallb's protocols and the vxlan protocol; nothing else."""
    return plugin_manager_with(static_pool, vxlan)


def run_metallb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The metallb command line in a subprocess, with every installed plugin."""
    full_env = {**os.environ, "PYTHONSAFEPATH": "1", **(env or {})}
    return subprocess.run([*METALLB, *args], capture_output=True, text=True, env=full_env, timeout=60, cwd="/")


class TestThirdPartyProtocol:
    def test_pool_of_the_protocol_parses_into_its_advertisements(self, pm, vxlan):
        """protocol: vxlan and its own keys parse into the plugin's advertisement type."""
        pool = parse_config(VXLAN + "  flood-to: [198.51.100.7]\n", plugin_manager=pm).pools["overlay"]
        assert (pool.protocol, pool.protocols) == ("vxlan", ("vxlan",))
        assert pool.advertisements == (
            vxlan.VxlanAdvertisement(vni=4096, flood_to=(netaddr.IPAddress("198.51.100.7"),)),
        )
        assert pool.l2_advertisements == () and pool.bgp_advertisements == ()

    def test_its_own_rules_apply(self, pm):
        """The plugin's errors name the entry, field, value and rule."""
        with pytest.raises(ConfigError, match='address pool #1 "overlay": missing required field "vni"'):
            parse_config(VXLAN.replace("  vni: 4096\n", ""), plugin_manager=pm)
        with pytest.raises(ConfigError, match='field "vni": value "0": must be a VXLAN network identifier'):
            parse_config(VXLAN.replace("4096", "0"), plugin_manager=pm)
        with pytest.raises(ConfigError, match='field "flood-to": value "vtep-1": must be the IP address'):
            parse_config(VXLAN + "  flood-to: [vtep-1]\n", plugin_manager=pm)

    def test_keys_belong_to_their_protocol(self, pm):
        """A protocol's keys are rejected on pools of another protocol, unless empty."""
        with pytest.raises(ConfigError, match="cannot have vni configuration element in a layer2 address pool"):
            parse_config(LAYER2 + "  vni: 7\n", plugin_manager=pm)
        with pytest.raises(ConfigError, match=r'in a vxlan address pool \("interfaces" applies to layer2 pools only\)'):
            parse_config(VXLAN + "  interfaces: [eth0]\n", plugin_manager=pm)
        assert parse_config(VXLAN + "  interfaces: []\n  bgp-advertisements: []\n", plugin_manager=pm).pools

    def test_errors_list_the_installed_protocols(self, pm):
        """An unknown or missing protocol names every installed protocol, the third-party one included."""
        with pytest.raises(ConfigError) as unknown:
            parse_config(VXLAN.replace("vxlan", "gre"), plugin_manager=pm)
        assert str(unknown.value) == (
            'address pool #1 "overlay": field "protocol": value "gre": unknown protocol: '
            "must be one of the installed announcement protocols: bgp, layer2, vxlan"
        )
        with pytest.raises(
            ConfigError, match='missing the protocol field: set "protocol" to one of bgp, layer2, vxlan'
        ):
            parse_config(VXLAN.replace("  protocol: vxlan\n", ""), plugin_manager=pm)

    def test_unknown_key_lists_every_protocol_key(self, pm):
        """The allowed keys of a pool entry include every installed protocol's keys."""
        with pytest.raises(ConfigError, match="unknown field") as info:
            parse_config(VXLAN + "  vnii: 1\n", plugin_manager=pm)
        for key in ("vni", "flood-to", "interfaces", "bgp-advertisements", "addresses"):
            assert key in str(info.value)

    def test_dump_parses_back_to_the_same_config(self, pm):
        """dump_config asks the plugin for its keys, and the output parses back equal."""
        config = parse_config(VXLAN + "  flood-to: [198.51.100.7]\n" + LAYER2.split("\n", 1)[1], plugin_manager=pm)
        text = dump_config(config, plugin_manager=pm)
        assert "protocol: vxlan" in text and "vni: 4096" in text and "- 198.51.100.7" in text
        assert parse_config(text, plugin_manager=pm) == config

    def test_allocated_and_announced_through_the_hooks(self, pm):
        """Its pools allocate like any other, and its announcer is built by the typed facade."""
        config = parse_config(VXLAN, plugin_manager=pm)
        alloc = Allocator(plugin_manager=pm, config=config)
        ip = alloc.allocate("ns/a")
        announcer = Hooks(pm).make_announcer("vxlan", AnnouncerSettings(node_name="n"))
        announcer.announce(ServiceView(key="ns/a", ips=(ip,), pool=config.pools["overlay"]))
        assert announcer.announced["ns/a"] == config.pools["overlay"].advertisements  # type: ignore[attr-defined]

    def test_check_config_from_the_command_line(self, vxlan, tmp_path):
        """`metallb check-config` (a subprocess, plugins from entry points) prints the protocol's keys."""
        path = tmp_path / "config.yaml"
        path.write_text(VXLAN)
        result = run_metallb("check-config", str(path))
        assert result.returncode == 0, result.stderr
        assert "protocol: vxlan" in result.stdout and "vni: 4096" in result.stdout
        blocked = run_metallb("check-config", str(path), env={"METALLB_DISABLE_PLUGINS": "vxlan"})
        assert blocked.returncode == 1
        assert 'value "vxlan": unknown protocol: must be one of the installed announcement protocols: bgp, layer2' in (
            blocked.stderr
        )


class TestBuiltinProtocols:
    def test_declared_with_the_keys_they_own(self):
        """layer2 owns interfaces and bgp owns bgp-advertisements, declared through the hook."""
        assert Hooks(plugin_manager_with()).protocols() == {
            "bgp": ProtocolInfo(name="bgp", pool_keys=("bgp-advertisements",)),
            "layer2": ProtocolInfo(name="layer2", pool_keys=("interfaces",)),
        }

    def test_layer2_and_bgp_pools_get_core_advertisements(self):
        """A layer2 pool gets one L2Advertisement; a bgp pool without advertisements one default BgpAdvertisement."""
        text = LAYER2 + "  interfaces: [eth0]\n- name: routed\n  protocol: bgp\n  addresses: [203.0.113.0/28]\n"
        pools = parse_config(text, plugin_manager=plugin_manager_with(static_pool)).pools
        assert pools["lan"].advertisements == (L2Advertisement(interfaces=("eth0",)),)
        assert pools["routed"].advertisements == (BgpAdvertisement(),)
        assert (pools["lan"].protocol, pools["routed"].protocol) == ("layer2", "bgp")

    def test_parsing_imports_no_announcer(self):
        """Parsing every built-in protocol imports neither the announcers nor any optional dependency."""
        code = textwrap.dedent(
            """
            import sys
            from metallb.allocator import get_plugin_manager, parse_config
            pm = get_plugin_manager(allow=["static", "layer2", "bgp"])
            config = parse_config(
                "address-pools:\\n- {name: a, protocol: layer2, addresses: [192.0.2.0/28], interfaces: [eth0]}\\n"
                "- {name: b, protocol: bgp, addresses: [198.51.100.0/28], bgp-advertisements: [{localpref: 7}]}\\n",
                plugin_manager=pm,
            )
            assert config.pools["b"].bgp_advertisements[0].localpref == 7
            heavy = ["prometheus_client", "kubernetes", "httpx", "scapy",
                     "metallb.announcers.layer2.announcer", "metallb.announcers.bgp.announcer"]
            print(",".join(m for m in heavy if m in sys.modules))
            """
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == ""
