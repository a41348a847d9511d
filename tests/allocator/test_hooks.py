"""The typed facade over pm.hook (Hooks), and the value types' construction rules."""

from __future__ import annotations

import argparse
import logging
from types import MappingProxyType

import attrs
import netaddr
import pytest
from metallb.allocator import (
    Allocator,
    AnnouncerBase,
    AnnouncerSettings,
    BgpAdvertisement,
    Config,
    ConfigError,
    Hooks,
    PluginError,
    PoolEntry,
    PoolRequest,
    PoolSpec,
    Port,
    ProtocolInfo,
    SourceCapabilities,
    hookimpl,
    parse_config,
    parse_pool_entry,
)
from metallb.allocator.testing import plugin_manager_with
from metallb.plugins import static_pool

POOL = "address-pools:\n- name: p\n  protocol: layer2\n  addresses: [192.0.2.0/28]\n"
ODD = "odd-pools:\n- name: o\n  protocol: layer2\n  cidrs: [198.51.100.0/28]\n"


def hooks_with(*plugins: object) -> Hooks:
    """Hooks over static pools, metallb's protocols and *plugins*."""
    return Hooks(plugin_manager_with(static_pool, *plugins))


class OddPools:
    """Claims the odd-pools section; what its hooks return is set per test."""

    def __init__(self, *, spec: object = "parse", source: object = None) -> None:
        self.spec, self.source = spec, source

    @hookimpl
    def metallb_pool_sections(self) -> list[str]:
        return ["odd-pools"]

    @hookimpl
    def metallb_parse_pool(self, entry: PoolEntry) -> object:
        if entry.section != "odd-pools":
            return None
        return parse_pool_entry(entry, cidrs_key="cidrs") if self.spec == "parse" else self.spec

    @hookimpl
    def metallb_make_source(self, spec: PoolSpec) -> object:
        return self.source if spec.kind == "odd-pools" else None


class Protocol:
    """Declares protocol *name* with *keys*; parse and dump answer what the test sets."""

    def __init__(self, name: str, keys: tuple[str, ...] = (), *, parsed: object = None, dumped: object = None) -> None:
        self.name, self.keys, self.parsed, self.dumped = name, keys, parsed, dumped

    @hookimpl
    def metallb_announcer_protocols(self) -> list[ProtocolInfo]:
        return [ProtocolInfo(name=self.name, pool_keys=self.keys)]

    @hookimpl
    def metallb_parse_advertisements(self, protocol: str) -> object:
        return self.parsed if protocol == self.name else None

    @hookimpl
    def metallb_dump_advertisements(self, protocol: str) -> object:
        return self.dumped if protocol == self.name else None


@attrs.frozen
class TunnelAdvertisement:
    protocol = "tunnel"  # a plain class attribute: attrs leaves it out of the fields
    mtu: int = 1400


class TestConfigurationHooks:
    def test_parse_pool_answered_by_nobody_or_wrongly(self):
        """A claimed section whose parser answers None, or not a PoolSpec, is a PluginError naming it."""
        with pytest.raises(PluginError, match='no plugin parsed odd pool #1 "o" of section "odd-pools"'):
            parse_config(ODD, plugin_manager=hooks_with(OddPools(spec=None)).plugin_manager)
        with pytest.raises(PluginError, match="for section 'odd-pools' returned dict, not a PoolSpec"):
            parse_config(ODD, plugin_manager=hooks_with(OddPools(spec={"name": "o"})).plugin_manager)

    def test_pool_sections_must_be_a_list_of_names(self):
        """A plugin returning one string instead of a list of sections is caught, not split into letters."""

        class Stringy:
            @hookimpl
            def metallb_pool_sections(self) -> str:
                return "my-pools"

        with pytest.raises(PluginError, match="metallb_pool_sections returned 'my-pools', not a list"):
            hooks_with(Stringy()).pool_sections()

    def test_protocol_declared_twice_or_key_claimed_twice(self):
        """Two plugins declaring one protocol, or two protocols claiming one key, are plugin errors."""
        with pytest.raises(PluginError, match='two plugins declare the announcement protocol "layer2"'):
            hooks_with(Protocol("layer2")).protocols()
        with pytest.raises(PluginError, match='protocols "layer2" and "tunnel" both claim the pool key "interfaces"'):
            hooks_with(Protocol("tunnel", ("interfaces",))).protocols()

    def test_protocol_key_clashing_with_a_section_key(self):
        """A protocol claiming a key a pool section uses itself is a plugin error."""
        with pytest.raises(PluginError, match='protocol "tunnel" claims the pool key "addresses"'):
            parse_config(POOL, plugin_manager=hooks_with(Protocol("tunnel", ("addresses",))).plugin_manager)

    @pytest.mark.parametrize(
        ("parsed", "error"),
        [
            (None, 'protocol "tunnel" is declared, but no plugin answers metallb_parse_advertisements'),
            ([], "not a non-empty list of advertisements"),
            ([BgpAdvertisement()], 'not an advertisement of "tunnel"'),
            ([object()], 'not an advertisement of "tunnel"'),
        ],
    )
    def test_parse_advertisements_results_are_checked(self, parsed, error):
        """The protocol's parser must answer a non-empty list of its own advertisements."""
        pm = hooks_with(Protocol("tunnel", parsed=parsed)).plugin_manager
        with pytest.raises(PluginError, match=error):
            parse_config(POOL.replace("layer2", "tunnel"), plugin_manager=pm)

    def test_advertisements_must_be_hashable(self):
        """An unhashable advertisement is refused: pools are compared and hashed."""

        @attrs.define(eq=True)
        class Mutable:
            protocol = "tunnel"

        pm = hooks_with(Protocol("tunnel", parsed=[Mutable()])).plugin_manager
        with pytest.raises(PluginError, match="which is unhashable: make it a frozen attrs class"):
            parse_config(POOL.replace("layer2", "tunnel"), plugin_manager=pm)

    def test_dump_advertisements_results_are_checked(self):
        """No renderer, a non-mapping, or a key the protocol does not own are plugin errors."""
        adv = (TunnelAdvertisement(),)
        with pytest.raises(PluginError, match='no plugin answers metallb_dump_advertisements for protocol "tunnel"'):
            hooks_with(Protocol("tunnel")).dump_advertisements("tunnel", adv)
        with pytest.raises(PluginError, match="not a mapping of pool keys"):
            hooks_with(Protocol("tunnel", dumped=["mtu"])).dump_advertisements("tunnel", adv)
        with pytest.raises(PluginError, match="keys the protocol does not own: name"):
            hooks_with(Protocol("tunnel", ("mtu",), dumped={"name": "x"})).dump_advertisements("tunnel", adv)
        assert hooks_with(Protocol("tunnel", ("mtu",), dumped={"mtu": 9000})).dump_advertisements("tunnel", adv) == {
            "mtu": 9000
        }

    def test_validate_config_passes_config_errors_through(self):
        """A plugin's ConfigError from metallb_validate_config reaches the caller unchanged."""

        class Strict:
            @hookimpl
            def metallb_validate_config(self, config: Config) -> None:
                raise ConfigError("no pools named p, please")

        with pytest.raises(ConfigError, match="no pools named p, please"):
            parse_config(POOL, plugin_manager=hooks_with(Strict()).plugin_manager)


class TestAllocationHooks:
    def spec(self) -> PoolSpec:
        return parse_config(ODD, plugin_manager=hooks_with(OddPools()).plugin_manager).pools["o"]

    def test_make_source_answered_by_nobody_or_wrongly(self):
        """No source for a pool's kind, or an object that is no AddressSource, is a PluginError naming the pool."""
        spec = self.spec()
        with pytest.raises(PluginError, match='pool "o": no installed plugin builds pools of section "odd-pools"'):
            hooks_with().make_source(spec)
        with pytest.raises(PluginError, match='pool "o": metallb_make_source returned object, which lacks members'):
            hooks_with(OddPools(source=object())).make_source(spec)
        source = static_pool.StaticSource(spec)
        assert hooks_with(OddPools(source=source)).make_source(spec) is source

    def test_select_pools(self):
        """None when no plugin chooses; the chosen pools when they are configured; PluginError otherwise."""
        pools = [self.spec()]
        request = PoolRequest(service="ns/a", family=4)
        assert hooks_with().select_pools(request, pools) is None

        class Picker:
            def __init__(self, answer: object) -> None:
                self.answer = answer

            @hookimpl
            def metallb_select_pools(self) -> object:
                return self.answer

        assert hooks_with(Picker(list(pools))).select_pools(request, pools) == tuple(pools)
        stranger = attrs.evolve(pools[0], name="stranger")
        with pytest.raises(PluginError, match="which is not a configured pool"):
            hooks_with(Picker([stranger])).select_pools(request, pools)
        with pytest.raises(PluginError, match="not a list of pools"):
            hooks_with(Picker(pools[0])).select_pools(request, pools)

    def test_notifications_never_raise(self, caplog):
        """A plugin raising in a notification is logged and does not reach the caller."""

        class Broken:
            @hookimpl
            def metallb_address_allocated(self) -> None:
                raise RuntimeError("boom")

        with caplog.at_level(logging.ERROR, logger="metallb.allocator.plugins"):
            hooks_with(Broken()).address_allocated("ns/a", netaddr.IPAddress("192.0.2.1"), "p")
        assert "metallb_address_allocated hook raised" in caplog.text


class TestAnnouncementAndCommandHooks:
    def test_make_announcer_answered_by_nobody_or_wrongly(self):
        """No announcer for a protocol, or an object that is no Announcer, is a PluginError naming the protocol."""
        settings = AnnouncerSettings(node_name="n")
        with pytest.raises(PluginError, match='no plugin announces protocol "tunnel"'):
            hooks_with().make_announcer("tunnel", settings)

        class Half:
            @hookimpl
            def metallb_make_announcer(self, protocol: str) -> object:
                return AnnouncerBase() if protocol == "tunnel" else None

        with pytest.raises(PluginError, match='for "tunnel" returned AnnouncerBase, which lacks members of Announcer'):
            hooks_with(Half()).make_announcer("tunnel", settings)

    def test_add_commands(self):
        """Plugins add their subcommands through the facade; one that raises is reported and costs only its own."""

        class Hello:
            @hookimpl
            def metallb_add_commands(self, subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
                subparsers.add_parser("hello").set_defaults(run=lambda args: 0)

        class Broken:
            @hookimpl
            def metallb_add_commands(self) -> None:
                raise RuntimeError("boom")

        parser = argparse.ArgumentParser()
        hooks = hooks_with(Hello())
        broken = Broken()
        hooks.plugin_manager.register(broken, name="broken")
        assert hooks.add_commands(parser.add_subparsers()) == {"broken": "RuntimeError: boom"}
        assert parser.parse_args(["hello"]).run(None) == 0


class Declares:
    """Answers metallb_pool_capabilities for odd-pools with what the test sets."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    @hookimpl
    def metallb_pool_capabilities(self, section: str) -> object:
        return self.answer if section == "odd-pools" else None


class TestPoolCapabilities:
    def test_defaults_and_declared(self):
        """A section no plugin answers for declares nothing; a mapping of annotations becomes ordered pairs."""
        assert hooks_with(OddPools()).pool_capabilities("odd-pools") == SourceCapabilities()
        declared = SourceCapabilities(remote_release=True, annotations={"lease-id": "example.com/lease"})
        assert declared.annotations == (("lease-id", "example.com/lease"),)
        assert hooks_with(OddPools(), Declares(declared)).pool_capabilities("odd-pools") is declared

    def test_wrong_type_is_a_plugin_error(self):
        """An answer that is not a SourceCapabilities is refused, naming the hook and the section."""
        with pytest.raises(PluginError, match='metallb_pool_capabilities for section "odd-pools" returned'):
            hooks_with(OddPools(), Declares(("remote_release",))).pool_capabilities("odd-pools")

    def test_allocator_knows_every_installed_kind(self):
        """pool_kinds() lists every installed section, configured or not; capabilities() gives a pool's kind's."""
        declared = SourceCapabilities(remote_release=True)
        pm = hooks_with(OddPools(source=None), Declares(declared)).plugin_manager
        alloc = Allocator(plugin_manager=pm, config=parse_config(POOL, plugin_manager=pm))
        assert dict(alloc.pool_kinds()) == {"address-pools": SourceCapabilities(), "odd-pools": declared}
        assert alloc.capabilities("p") == SourceCapabilities() == alloc.capabilities("unknown")

    def test_a_wrong_answer_rejects_the_config(self):
        """set_config fails, changing nothing, when a plugin declares capabilities wrongly."""
        pm = hooks_with(OddPools(), Declares("remote")).plugin_manager
        alloc = Allocator(plugin_manager=pm)
        with pytest.raises(PluginError, match="not a SourceCapabilities"):
            alloc.set_config(parse_config(POOL, plugin_manager=pm))
        assert not alloc.config.pools


class TestValueObjects:
    """(Every attrs class of the package is checked in tests/test_value_objects.py.)"""

    def test_positional_construction_is_refused(self):
        """Building a spec positionally fails loudly instead of mixing up fields."""
        with pytest.raises(TypeError):
            PoolSpec("p", "address-pools", ())  # type: ignore[misc]
        assert Port("TCP", 80).port == 80

    def test_no_mutable_mappings_inside_frozen_values(self):
        """Mappings held by values are read-only views, so a frozen value cannot change."""
        spec = parse_config(POOL, plugin_manager=hooks_with().plugin_manager).pools["p"]
        entry = PoolEntry(section="s", index=1, data={"a": "1"})
        for mapping in (spec.options, entry.data, Config(pools={"p": spec}).pools):
            assert isinstance(mapping, MappingProxyType)
