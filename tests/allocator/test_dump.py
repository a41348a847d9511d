"""dump_config writes each pool's CIDRs under the key its section parses them from, so the output parses back."""

from __future__ import annotations

import attrs
import netaddr
import pytest
from metallb.allocator import ConfigError, PoolEntry, PoolSpec, dump_config, hookimpl, parse_config, parse_pool_entry
from metallb.allocator.testing import plugin_manager_with
from metallb.plugins import static_pool


class ListedPools:
    """A section without an address key: the plugin fills ``cidrs`` from its ``listed`` option."""

    @hookimpl
    def metallb_pool_sections(self) -> list[str]:
        return ["listed-pools", "prefix-pools"]

    @hookimpl
    def metallb_parse_pool(self, entry: PoolEntry) -> PoolSpec | None:
        if entry.section == "prefix-pools":
            return parse_pool_entry(entry, cidrs_key="prefixes")
        if entry.section != "listed-pools":
            return None
        spec = parse_pool_entry(entry, cidrs_key=None, options={"listed": lambda v, where: str(v or "")})
        addresses = [netaddr.IPNetwork(f"{a}/32") for a in str(spec.options["listed"]).split()]
        return attrs.evolve(spec, cidrs=tuple(addresses))


CONFIG = """\
listed-pools:
- name: files
  protocol: layer2
  listed: 192.0.2.1 192.0.2.2
prefix-pools:
- name: prefixed
  protocol: layer2
  prefixes: [198.51.100.0/30]
address-pools:
- name: static
  protocol: layer2
  addresses: [203.0.113.0/30]
"""


@pytest.fixture(name="pm")
def _pm():
    """The static-pool plugin and the two sections above."""
    return plugin_manager_with(static_pool, ListedPools())


class TestCidrsKey:
    def test_parse_records_the_key(self, pm):
        """PoolSpec.cidrs_key is parse_pool_entry's cidrs_key, None for a section without one."""
        config = parse_config(CONFIG, plugin_manager=pm)
        assert {p.name: p.cidrs_key for p in config} == {"files": None, "prefixed": "prefixes", "static": "addresses"}

    def test_filled_cidrs_are_checked_for_overlaps(self, pm):
        """CIDRs a plugin fills itself overlap-check like any others."""
        text = CONFIG.replace("listed: 192.0.2.1 192.0.2.2", "listed: 203.0.113.1")
        with pytest.raises(ConfigError, match=r'overlaps with already defined CIDR "203.0.113.1/32" \(pool "files"\)'):
            parse_config(text, plugin_manager=pm)

    def test_output_parses_back(self, pm):
        """The normalised output has no key the sections reject, and parses back to an equal config."""
        config = parse_config(CONFIG, plugin_manager=pm)
        text = dump_config(config, plugin_manager=pm)
        assert "cidrs" not in text
        assert "prefixes:\n  - 198.51.100.0/30" in text and "addresses:\n  - 203.0.113.0/30" in text
        again = parse_config(text, plugin_manager=pm)
        assert again == config
        assert dump_config(again, plugin_manager=pm) == text

    def test_default_key_follows_the_section(self):
        """A PoolSpec built in code writes address-pools CIDRs as addresses, others as cidrs."""
        cidrs = (netaddr.IPNetwork("192.0.2.0/30"),)
        assert PoolSpec(name="a", kind="address-pools", cidrs=cidrs).cidrs_key == "addresses"
        assert PoolSpec(name="b", kind="address-services", cidrs=cidrs).cidrs_key == "cidrs"
