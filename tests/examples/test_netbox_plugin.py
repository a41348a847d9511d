"""The example third-party plugin, examples/metallb-netbox-pools, installed with pip and used three ways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import netaddr
import pytest
from metallb.allocator import (
    AddressInUseError,
    Allocator,
    ConfigError,
    PoolExhaustedError,
    SourceCapabilities,
    SourceUnavailableError,
    TransientConfigError,
    get_plugin_manager,
    parse_config,
    parse_resources,
)
from metallb.allocator.testing import check_source_contract, wait_for

TOKEN = "0123456789abcdef"
METALLB = [sys.executable, "-m", "metallb.operator"]
HOOKS = {
    "metallb_pool_sections",
    "metallb_parse_pool",
    "metallb_make_source",
    "metallb_pool_capabilities",
    "metallb_pool_resource_kinds",
    "metallb_parse_pool_resource",
    "metallb_render_pool_resource",
}


def config_for(url: str, *, prefix: int = 7, cidrs: str = "192.0.2.0/28", extra: str = "") -> str:
    return (
        f"netbox-pools:\n- name: lab\n  protocol: layer2\n  url: {url}/\n  prefix-id: {prefix}\n"
        f"  cidrs: [{cidrs}]\n  token: {TOKEN}\n{extra}"
    )


def run_metallb(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The metallb command line in a subprocess, as a user runs it."""
    full_env = {**os.environ, "PYTHONSAFEPATH": "1", **(env or {})}
    return subprocess.run([*METALLB, *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd="/")


@pytest.fixture(name="pm")
def _pm(netbox_plugin):
    """Every installed plugin, the example included, loaded through entry points."""
    return get_plugin_manager()


@pytest.fixture(name="alloc")
def _alloc(pm, netbox):
    """An Allocator over one NetBox pool served by the stand-in."""
    allocator = Allocator(plugin_manager=pm, config=parse_config(config_for(netbox.api.url), plugin_manager=pm))
    yield allocator
    allocator.close()


class TestInstalled:
    def test_listed_by_metallb_plugins(self, netbox_plugin):
        """`metallb plugins --json` (a subprocess) lists the example with its version and hooks."""
        result = run_metallb("plugins", "--json")
        plugins = {p["name"]: p for p in json.loads(result.stdout)}
        assert netbox_plugin in plugins, result.stdout + result.stderr
        assert plugins[netbox_plugin]["version"] == "0.1.0"
        assert plugins[netbox_plugin]["module"] == "metallb_netbox_pools"
        assert set(plugins[netbox_plugin]["hooks"]) == HOOKS
        assert "netbox-pools" in run_metallb("plugins").stdout

    def test_metallb_itself_never_names_the_example(self):
        """No file of the metallb package mentions the example: it is a plugin like any other."""
        import metallb.allocator

        package = Path(metallb.allocator.__file__).resolve().parents[1]
        for folder in ("allocator", "announcers", "operator", "plugins"):
            for path in (package / folder).rglob("*.py"):
                assert "netbox" not in path.read_text().lower(), path


class TestCheckConfig:
    def test_valid_section_is_printed_normalised(self, netbox_plugin, tmp_path):
        """check-config accepts a netbox-pools section and hides the token."""
        path = tmp_path / "c.yaml"
        path.write_text(config_for("http://127.0.0.1:9"))
        result = run_metallb("check-config", str(path))
        assert result.returncode == 0, result.stderr
        assert "netbox-pools:" in result.stdout
        assert "prefix-id: 7" in result.stdout
        assert "url: http://127.0.0.1:9\n" in result.stdout
        assert TOKEN not in result.stdout and "token: <set>" in result.stdout

    def test_bad_value_names_entry_field_and_rule(self, netbox_plugin, tmp_path):
        """A bad prefix-id is an error naming the entry, field and value, exit status 1."""
        path = tmp_path / "c.yaml"
        path.write_text(config_for("http://127.0.0.1:9").replace("prefix-id: 7", "prefix-id: seven"))
        result = run_metallb("check-config", str(path))
        assert result.returncode == 1
        assert 'netbox pool #1 "lab": field "prefix-id": value "seven"' in result.stderr

    def test_blocked_by_name(self, netbox_plugin, tmp_path):
        """METALLB_DISABLE_PLUGINS=netbox-pools makes the section unknown."""
        path = tmp_path / "c.yaml"
        path.write_text(config_for("http://127.0.0.1:9"))
        result = run_metallb("check-config", str(path), env={"METALLB_DISABLE_PLUGINS": netbox_plugin})
        assert result.returncode == 1
        assert 'unknown top-level key "netbox-pools"' in result.stderr

    def test_required_keys_and_unsupported_options(self, pm):
        """url and prefix-id are required; avoid-buggy-ips is refused with the reason."""
        with pytest.raises(ConfigError, match='missing required field "prefix-id"'):
            parse_config(config_for("http://h").replace("  prefix-id: 7\n", ""), plugin_manager=pm)
        with pytest.raises(ConfigError, match="avoid-buggy-ips.*NetBox picks the addresses"):
            parse_config(config_for("http://h", extra="  avoid-buggy-ips: true\n"), plugin_manager=pm)
        with pytest.raises(ConfigError, match='field "url": value "ftp://h/"'):
            parse_config(config_for("ftp://h"), plugin_manager=pm)


def netbox_pool(url: str, **spec: object) -> list[dict[str, object]]:
    """A NetBoxPool with its token Secret and an L2Advertisement selecting it by label."""
    body = {"url": url, "prefixIDs": [7], "cidrs": ["192.0.2.0/28"], "tokenSecret": {"name": "nb"}, **spec}
    meta = {"name": "lab", "namespace": "metallb-system", "labels": {"source": "netbox"}}
    return [
        {"apiVersion": "netbox.example.com/v1alpha1", "kind": "NetBoxPool", "metadata": meta, "spec": body},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "nb", "namespace": "metallb-system"},
            "stringData": {"token": TOKEN},
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": "l2", "namespace": "metallb-system"},
            "spec": {"ipAddressPoolSelectors": [{"matchLabels": {"source": "netbox"}}]},
        },
    ]


class TestResourceKind:
    """The plugin's NetBoxPool kind: the same pools as the section, from resources."""

    def test_parses_to_the_sections_pool(self, pm):
        """A NetBoxPool gives the pool its section gives, token from the Secret, selected by an advertisement's labels."""
        from_resources = parse_resources(netbox_pool("http://h"), plugin_manager=pm).pools["lab"]
        from_section = parse_config(
            config_for("http://h").replace("url: http://h/", "url: http://h"), plugin_manager=pm
        ).pools["lab"]
        assert from_resources.kind == from_section.kind == "netbox-pools"
        assert dict(from_resources.options) == dict(from_section.options)
        assert from_resources.protocols == ("layer2",)

    def test_missing_token_secret_waits(self, pm):
        """A NetBoxPool whose token Secret does not exist yet waits for it."""
        objects = [o for o in netbox_pool("http://h") if o["kind"] != "Secret"]
        with pytest.raises(
            TransientConfigError, match='NetBoxPool "lab": field "spec.tokenSecret.name": value "nb": waiting'
        ):
            parse_resources(objects, plugin_manager=pm)

    def test_allocates_from_a_resource_pool(self, pm, netbox):
        """The controller's allocator serves a NetBoxPool like the section's pool."""
        config = parse_resources(netbox_pool(netbox.api.url), plugin_manager=pm)
        allocator = Allocator(plugin_manager=pm, config=config)
        try:
            assert str(allocator.allocate("default/web")) == "192.0.2.2"
        finally:
            allocator.close()


class TestAllocator:
    def test_allocates_and_releases_through_netbox(self, alloc, netbox):
        """Addresses come from the prefix in NetBox's order and are deleted there on release."""
        web = alloc.allocate("default/web")
        dns = alloc.allocate("default/dns")
        assert (str(web), str(dns)) == ("192.0.2.2", "192.0.2.3")
        assert netbox.addresses("metallb") == {"192.0.2.2": "metallb: default/web", "192.0.2.3": "metallb: default/dns"}
        assert alloc.stats("lab").total is None and alloc.stats("lab").in_use == 2
        assert alloc.describe("default/web")["netbox-id"].isdigit()
        assert alloc.unassign("default/web")
        assert alloc.unassign("default/web") is False
        assert netbox.addresses("metallb") == {"192.0.2.3": "metallb: default/dns"}
        assert netbox.addresses()["192.0.2.1"] == "gateway"

    def test_declares_remote_releases(self, alloc):
        """NetBox pools declare remote releases (their Services carry the finalizer) and no annotation."""
        assert alloc.capabilities("lab") == SourceCapabilities(remote_release=True)

    def test_requested_and_shared_addresses(self, alloc, netbox):
        """A requested address is created in NetBox; it is deleted when its last sharer goes."""
        ip = alloc.allocate("default/a", ip="192.0.2.9", sharing_key="k")
        assert str(ip) == "192.0.2.9"
        assert alloc.allocate("default/b", ip="192.0.2.9", sharing_key="k") == ip
        alloc.unassign("default/a")
        assert "192.0.2.9" in netbox.addresses("metallb")
        alloc.unassign("default/b")
        assert "192.0.2.9" not in netbox.addresses()

    def test_address_recorded_by_someone_else_is_refused(self, alloc, netbox):
        """An address NetBox already records is in use, and is never deleted by us."""
        with pytest.raises(AddressInUseError, match="already recorded in NetBox"):
            alloc.allocate("default/a", ip="192.0.2.1")
        assert netbox.addresses()["192.0.2.1"] == "gateway"

    def test_full_prefix_is_exhaustion(self, alloc):
        """NetBox's 409 for a full prefix is PoolExhaustedError."""
        for i in range(13):
            alloc.allocate(f"default/s{i}")
        with pytest.raises(PoolExhaustedError, match="insufficient number of IP addresses"):
            alloc.allocate("default/one-too-many")

    def test_outage_is_unavailable_and_releases_are_retried(self, alloc, netbox):
        """While NetBox is down allocation fails as unavailable, and a release is kept until it is back."""
        alloc.allocate("default/web")
        netbox.down = True
        with pytest.raises(SourceUnavailableError, match="503"):
            alloc.allocate("default/dns", pool="lab")
        assert alloc.unassign("default/web")
        netbox.down = False
        assert "192.0.2.2" in netbox.addresses("metallb")
        alloc.allocate("default/dns")  # the kept release goes first, so .2 is free again
        assert netbox.addresses("metallb") == {"192.0.2.2": "metallb: default/dns"}

    def test_wrong_token_is_unavailable(self, pm, netbox):
        """A token NetBox refuses makes the source unavailable, with NetBox's answer."""
        config = parse_config(config_for(netbox.api.url).replace(TOKEN, "wrong"), plugin_manager=pm)
        alloc = Allocator(plugin_manager=pm, config=config)
        with pytest.raises(SourceUnavailableError, match="403: Invalid token"):
            alloc.allocate("default/web", pool="lab")

    def test_reconcile_releases_orphans_and_reports_lost(self, alloc, netbox):
        """Our objects nobody holds are deleted; held addresses NetBox lost are reported."""
        held = alloc.allocate("default/web")
        netbox.record("192.0.2.12/28", "metallb: default/gone")
        netbox.ips.pop(next(i for i, o in netbox.ips.items() if o["address"].startswith(f"{held}/")))
        report = alloc.reconcile()["lab"]
        assert [str(ip) for ip in report.released] == ["192.0.2.12"]
        assert report.lost == (("default/web", held),)
        assert netbox.addresses("metallb") == {}

    def test_ipv6_prefix(self, pm, netbox):
        """An IPv6 prefix hands out IPv6 addresses."""
        config = parse_config(config_for(netbox.api.url, prefix=8, cidrs="2001:db8::/125"), plugin_manager=pm)
        alloc = Allocator(plugin_manager=pm, config=config)
        assert alloc.allocate("default/v6", family=6) == netaddr.IPAddress("2001:db8::1")


class TestSourceContract:
    @pytest.mark.parametrize(
        ("prefix", "cidrs", "families", "free"),
        [
            ("9", "192.0.2.16/30", (4,), 2),
            ("7", "192.0.2.0/28", (4,), 13),
            ("8", "2001:db8::/125", (6,), 7),
            ("[7, 8]", "192.0.2.0/28, 2001:db8::/125", (4, 6), 20),
        ],
        ids=["tiny", "ipv4", "ipv6", "dual-stack"],
    )
    def test_netbox_source_meets_the_contract(self, pm, netbox, prefix, cidrs, families, free):
        """metallb.allocator.testing's contract check passes against the stand-in NetBox, every family exercised."""
        from metallb_netbox_pools import NetBoxSource

        text = config_for(netbox.api.url, cidrs=cidrs).replace("prefix-id: 7", f"prefix-id: {prefix}")
        spec = parse_config(text, plugin_manager=pm).pools["lab"]
        report = check_source_contract(lambda: NetBoxSource(spec), threads=4)
        assert report.capacity is None and report.families == families
        assert report.exhausted_after == free  # NetBox hands out no network, broadcast or anycast address
        assert netbox.addresses("metallb") == {}

    def test_one_prefix_per_family(self, pm):
        """A dual-stack pool needs one prefix id per CIDR; the count must match."""
        dual = config_for("http://h", cidrs="192.0.2.0/28, 2001:db8::/125")
        with pytest.raises(ConfigError, match="a NetBox prefix holds one address family"):
            parse_config(dual, plugin_manager=pm)
        with pytest.raises(ConfigError, match='value "7, 8, 9": give one prefix id, or one per CIDR of cidrs \\(2\\)'):
            parse_config(dual.replace("prefix-id: 7", "prefix-id: [7, 8, 9]"), plugin_manager=pm)

    def test_dual_stack_allocates_both_families(self, pm, netbox):
        """allocate_dual takes one address from each prefix; check-config's output parses back."""
        from metallb.allocator import dump_config

        text = config_for(netbox.api.url, cidrs="192.0.2.0/28, 2001:db8::/125").replace("prefix-id: 7", "prefix-id: [7, 8]")
        config = parse_config(text, plugin_manager=pm)
        alloc = Allocator(plugin_manager=pm, config=config)
        assert [str(ip) for ip in alloc.allocate_dual("default/web")] == ["192.0.2.2", "2001:db8::1"]
        alloc.unassign("default/web")
        assert parse_config(dump_config(config, plugin_manager=pm), plugin_manager=pm).pools["lab"].cidrs == config.pools["lab"].cidrs


SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  ports: [{port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: default}
spec:
  type: LoadBalancer
  ports: [{port: 53, protocol: UDP}]
"""


class TestStandalone:
    def test_once_allocates_from_netbox_and_releases_removed_services(self, netbox_plugin, netbox, tmp_path):
        """`metallb standalone` gives each Service a NetBox address, and releases it when the Service goes."""
        config = tmp_path / "config.yaml"
        config.write_text(config_for(netbox.api.url))
        services = tmp_path / "services.yaml"
        services.write_text(SERVICES)
        state = tmp_path / "state.json"
        args = ["--config", str(config), "--services", str(services), "--node", "node-1", "--state", str(state)]
        first = run_metallb("standalone", *args, "--once")
        assert first.returncode == 0, first.stderr
        header = first.stdout.splitlines()[0].split()
        assert header[:3] == ["SERVICE", "ADDRESSES", "POOL"]
        rows = {line.split()[0]: line.split()[1:3] for line in first.stdout.splitlines()[1:] if line.strip()}
        assert rows["default/web"] == ["192.0.2.2", "lab"]
        assert rows["default/dns"] == ["192.0.2.3", "lab"]
        assert netbox.addresses("metallb") == {"192.0.2.2": "metallb: default/web", "192.0.2.3": "metallb: default/dns"}
        assert json.loads(state.read_text())["services"]["default/web"]["addresses"] == ["192.0.2.2"]
        first_written = state.stat().st_mtime

        # Running (not --once), it takes the state file's addresses back without asking NetBox, and
        # releases a Service's address in NetBox when the Service leaves the file.
        daemon = subprocess.Popen(
            [*METALLB, "standalone", *args, "--no-announce", "--metrics-port", "0", "--poll-interval", "0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONSAFEPATH": "1"},
            cwd="/",
        )
        try:
            wait_for(lambda: "default/dns" in state.read_text() and state.stat().st_mtime > first_written, timeout=20)
            # Replaced atomically, with an mtime the poll cannot miss, so no half-written file is read.
            staged = tmp_path / "services.new"
            staged.write_text(SERVICES.split("---\n")[0])
            os.utime(staged, (time.time() + 5, time.time() + 5))
            staged.replace(services)
            wait_for(lambda: "default/dns" not in json.loads(state.read_text())["services"], timeout=20)
            assert netbox.addresses("metallb") == {"192.0.2.2": "metallb: default/web"}
        finally:
            daemon.terminate()
            _, err = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, err
        assert "192.0.2.2" in netbox.addresses(), "stopping releases nothing"
