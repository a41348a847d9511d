"""docs/configuration.md documents every key the parser accepts, in the section (or resource kind) it belongs to."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from metallb.allocator import ConfigError, Hooks, PoolEntry, PoolResource, get_plugin_manager, parse_node_selectors
from metallb.allocator.config import COMMON_POOL_KEYS, CORE_SECTIONS, PEER_KEYS, UNSUPPORTED_PEER_KEYS
from metallb.allocator.resources import SPEC_FIELDS
from metallb.announcers.bgp.plugin import ADVERTISEMENT_KEYS

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
BOGUS = "zz-not-a-key"


def allowed(error: ConfigError) -> list[str]:
    """The keys listed in an 'unknown field ... (allowed: a, b)' error."""
    match = re.search(r'unknown field "' + BOGUS + r'" \(allowed: ([^)]*)\)', str(error))
    assert match, f"not an unknown-field error: {error}"
    return [k.strip() for k in match.group(1).split(",")]


@pytest.fixture(name="own_pm", scope="module")
def _own_pm():
    """metallb's own plugins only (its distribution's entry points): third-party sections document themselves."""
    eps = [ep for ep in importlib.metadata.distribution("metallb").entry_points if ep.group == "metallb"]
    return get_plugin_manager(entry_points=False, plugins=[ep.load() for ep in eps])


def section_keys(pm) -> dict[str, list[str]]:
    """Each pool section of the plugins and the keys its parser accepts, found by feeding it an unknown key."""
    out = {}
    hooks = Hooks(pm)
    for section in hooks.pool_sections():
        with pytest.raises(ConfigError) as info:
            hooks.parse_pool(PoolEntry(section=section, index=1, data={"name": "x", BOGUS: "1"}, hooks=hooks))
        out[section] = allowed(info.value)
    return out


def blocks() -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading."""
    parts = re.split(r"^(#{1,6} .*)$", DOC.read_text(), flags=re.M)
    return {parts[i].lstrip("#").strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def block(fragment: str) -> str:
    """The text under the first heading containing *fragment*."""
    found = [text for heading, text in blocks().items() if fragment in heading]
    assert found, f"docs/configuration.md has no heading containing {fragment!r}"
    return found[0]


def undocumented(keys, text: str) -> list[str]:
    return [k for k in keys if f"`{k}`" not in text]


class TestConfigurationReference:
    def test_every_section_has_a_heading(self, own_pm):
        """peers, bgp-communities and every pool section of metallb's plugins have their own heading."""
        sections = [*CORE_SECTIONS, *section_keys(own_pm)]
        assert "address-pools" in sections
        headings = " ".join(blocks())
        assert not [s for s in sections if f"`{s}" not in headings]

    def test_peer_keys(self):
        """Every peer key, and the rejected FRR-only ones, are in the peers section."""
        assert not undocumented((*PEER_KEYS, *UNSUPPORTED_PEER_KEYS), block("`peers[]`"))

    def test_node_selector_keys(self):
        """The keys of a node selector and of a match expression are in the node selectors section."""
        with pytest.raises(ConfigError) as outer:
            parse_node_selectors([{BOGUS: "1"}], "x")
        with pytest.raises(ConfigError) as inner:
            parse_node_selectors([{"match-expressions": [{BOGUS: "1"}]}], "x")
        keys = allowed(outer.value) + allowed(inner.value)
        assert "match-labels" in keys and "operator" in keys
        assert not undocumented(keys, block("Node selectors"))

    def test_common_pool_keys(self, own_pm):
        """The keys every pool accepts are in the pool sections' table, and every section accepts them."""
        assert not undocumented(COMMON_POOL_KEYS, block("Pool sections"))
        protocol_keys = [k for info in Hooks(own_pm).protocols().values() for k in info.pool_keys]
        for section, keys in section_keys(own_pm).items():
            assert set(COMMON_POOL_KEYS) | set(protocol_keys) <= set(keys), section

    def test_each_protocol_documents_its_pool_keys(self, own_pm):
        """Every protocol metallb ships, and each pool key it owns, is in the protocols section."""
        protocols = Hooks(own_pm).protocols()
        assert set(protocols) == {"layer2", "bgp"}
        text = block("Announcement protocols")
        for info in protocols.values():
            assert not undocumented((info.name, *info.pool_keys), text), info.name

    def test_each_pool_section_documents_its_own_keys(self, own_pm):
        """Keys a section adds (addresses, url, cidrs ...) are under that section's heading."""
        protocol_keys = {k for info in Hooks(own_pm).protocols().values() for k in info.pool_keys}
        for section, keys in section_keys(own_pm).items():
            own = [k for k in keys if k not in COMMON_POOL_KEYS and k not in protocol_keys]
            assert own, section
            assert not undocumented(own, block(f"`{section}[]`")), section

    def test_advertisement_keys(self, own_pm):
        """The bgp-advertisements keys the parser accepts are in their section."""
        entry = PoolEntry(
            section="address-pools",
            index=1,
            data={"name": "x", "protocol": "bgp", "addresses": ["192.0.2.0/24"], "bgp-advertisements": [{BOGUS: "1"}]},
            hooks=Hooks(own_pm),
        )
        with pytest.raises(ConfigError) as info:
            Hooks(own_pm).parse_pool(entry)
        assert allowed(info.value) == list(ADVERTISEMENT_KEYS)
        assert not undocumented(ADVERTISEMENT_KEYS, block("`bgp-advertisements[]`"))


def pool_kind_fields(pm) -> dict[str, list[str]]:
    """Each pool kind of the plugins and the spec fields its parser accepts, found by feeding it an unknown one."""
    out = {}
    hooks = Hooks(pm)
    for kind in hooks.pool_resource_kinds().values():
        resource = PoolResource(kind=kind, api_version=kind.api_versions[0], name="x", spec={BOGUS: 1}, hooks=hooks)
        with pytest.raises(ConfigError) as info:
            hooks.parse_pool_resource(resource)
        match = re.search(r'unknown field "spec\.' + BOGUS + r'" \(allowed: ([^)]*)\)', str(info.value))
        assert match, str(info.value)
        out[kind.kind] = [k.strip() for k in match.group(1).split(",")]
    return out


class TestResourceReference:
    def test_every_kind_has_a_heading_with_every_field(self, own_pm):
        """MetalLB's kinds, and every pool kind of metallb's plugins, list each spec field the loader reads."""
        kinds = {kind: list(fields) for (kind, _), fields in SPEC_FIELDS.items()}
        kinds.update(pool_kind_fields(own_pm))
        assert {"IPAddressPool", "AddressService", "BGPPeer"} <= set(kinds)
        for kind, fields in kinds.items():
            text = block(f"`{kind}`")
            assert not undocumented(fields, text), kind
