"""A pool keeps its source across config changes that do not change which addresses it hands out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import netaddr
import pytest
from metallb.allocator import (
    Allocator,
    BgpAdvertisement,
    Config,
    NodeSelector,
    PoolSpec,
    ServiceAllocation,
    get_plugin_manager,
    hookimpl,
    parse_config,
)
from metallb.allocator.allocator import ALLOCATION_FIELDS
from metallb.announcers.bgp import plugin as bgp_protocol
from metallb.announcers.layer2 import plugin as layer2_protocol
from metallb.operator.converge import converge
from metallb.operator.service import read_service
from metallb.plugins import static_pool
from metallb.plugins.address_service import plugin as address_service
from metallb.plugins.address_service.http import HttpServer, make_http_server
from metallb.plugins.address_service.memory import MemoryBackend
from metallb.plugins.address_service.service import AddressService
from metallb.plugins.static_pool import StaticSource

#: How each PoolSpec field is changed below; the fields outside ALLOCATION_FIELDS only say how
#: addresses are announced (or whether they are offered unasked), so their change keeps the source.
CHANGES: dict[str, Any] = {
    "name": "renamed",
    "kind": "other-pools",
    "cidrs": (netaddr.IPNetwork("10.0.0.0/29"),),
    "avoid_buggy_ips": True,
    "options": {"note": "changed"},
    "auto_assign": False,
    "advertisements": (BgpAdvertisement(aggregation_length=24),),
    "node_selectors": (NodeSelector(match_labels=(("zone", "a"),)),),
    "service_allocation": ServiceAllocation(priority=3, namespaces=("web",)),
    "labels": {"zone": "b"},
    "cidrs_key": "prefixes",
}
#: Written by the controller from what the address-service source declares.
LEASE_ANNOTATION = "metallb.io/address-service-lease"
#: The announcement protocols every pool entry needs.
PROTOCOLS = [layer2_protocol, bgp_protocol]

STATIC = """
address-pools:
- name: p
  protocol: layer2
  addresses: [10.0.0.0/30]
"""


class _Builds:
    """Records every source a plugin builds."""

    def __init__(self) -> None:
        self.sources: list[Any] = []

    @hookimpl(wrapper=True)
    def metallb_make_source(self, spec: PoolSpec) -> Iterator[None]:
        source = yield
        self.sources.append(source)
        return source


class _OtherKind:
    """Builds static sources for the section ``other-pools`` too."""

    @hookimpl
    def metallb_make_source(self, spec: PoolSpec) -> StaticSource | None:
        return StaticSource(spec) if spec.kind == "other-pools" else None


def _with_pool(config: Config, old: str, spec: PoolSpec) -> Config:
    """*config* with pool *old* replaced by *spec* (which may have another name)."""
    pools = {spec.name if name == old else name: spec if name == old else p for name, p in config.pools.items()}
    return attrs.evolve(config, pools=pools)


@pytest.fixture(name="builds")
def _builds() -> _Builds:
    """A build recorder (register it in a plugin manager)."""
    return _Builds()


@pytest.fixture(name="static")
def _static(builds: _Builds) -> Allocator:
    """An allocator over one static pool p, 10.0.0.0/30, whose source builds are recorded."""
    pm = get_plugin_manager(entry_points=False, plugins=[static_pool, *PROTOCOLS, _OtherKind(), builds])
    return Allocator(plugin_manager=pm, config=parse_config(STATIC, plugin_manager=pm))


class TestStaticPool:
    def test_every_field_is_decided(self) -> None:
        """Each PoolSpec field is either an allocation field or one whose change keeps the source."""
        assert {f.name for f in attrs.fields(PoolSpec)} == set(CHANGES), (
            "a new PoolSpec field: add it to ALLOCATION_FIELDS in allocator/allocator.py if it changes "
            "which addresses a source hands out, and to CHANGES here either way"
        )
        assert set(ALLOCATION_FIELDS) == {"name", "kind", "cidrs", "avoid_buggy_ips", "options"}

    @pytest.mark.parametrize("field", sorted(CHANGES))
    def test_source_rebuilt_only_for_allocation_fields(self, static: Allocator, builds: _Builds, field: str) -> None:
        """Changing an allocation field builds a new source; any other change keeps it and hands it the spec."""
        held = static.allocate("ns/a", ip="10.0.0.1")
        before = builds.sources[-1]
        new = attrs.evolve(static.config.pools["p"], **{field: CHANGES[field]})
        static.set_config(_with_pool(static.config, "p", new))
        assert (builds.sources[-1] is not before) is (field in ALLOCATION_FIELDS)
        assert builds.sources[-1].spec == new
        assert static.ips("ns/a") == (held,) and static.pool_of("ns/a") == new.name
        # Whichever source serves the pool knows the address is taken.
        assert static.allocate("ns/b", pool=new.name) not in (held, None)

    def test_interfaces_change_keeps_source_and_allocations(self, builds: _Builds) -> None:
        """A layer-2 pool whose interfaces change keeps its source object, its allocations and its state."""
        pm = get_plugin_manager(entry_points=False, plugins=[static_pool, *PROTOCOLS, builds])
        alloc = Allocator(plugin_manager=pm, config=parse_config(STATIC + "  interfaces: [eth0]\n", plugin_manager=pm))
        first = alloc.allocate("ns/a")
        alloc.set_config(parse_config(STATIC + "  interfaces: [eth1, 'br*']\n", plugin_manager=pm))
        assert len(builds.sources) == 1 and builds.sources[0].spec == alloc.config.pools["p"]
        assert builds.sources[0].spec.l2_advertisements[0].interfaces == ("eth1", "br*")
        assert alloc.allocation("ns/a") is not None and alloc.ips("ns/a") == (first,)
        assert str(alloc.allocate("ns/b")) == "10.0.0.1"
        assert alloc.stats("p").in_use == 2

    def test_advertisements_change_keeps_source_and_allocations(self, builds: _Builds) -> None:
        """A BGP pool whose advertisements (and node selectors) change keeps its source and allocations."""
        bgp = "address-pools:\n- name: p\n  protocol: bgp\n  addresses: [10.0.0.0/30]\n"
        pm = get_plugin_manager(entry_points=False, plugins=[static_pool, *PROTOCOLS, builds])
        alloc = Allocator(plugin_manager=pm, config=parse_config(bgp, plugin_manager=pm))
        first = alloc.allocate("ns/a")
        changed = bgp + (
            "  bgp-advertisements:\n  - aggregation-length: 30\n    localpref: 100\n"
            "  node-selectors:\n  - match-labels: {zone: a}\n"
        )
        alloc.set_config(parse_config(changed, plugin_manager=pm))
        assert len(builds.sources) == 1
        assert builds.sources[0].spec.bgp_advertisements[0].localpref == 100
        assert alloc.ips("ns/a") == (first,)
        assert str(alloc.allocate("ns/b")) == "10.0.0.1"

    def test_read_only_spec_is_kept(self) -> None:
        """A source whose spec cannot be replaced keeps working with its old one."""

        class Frozen(StaticSource):
            @property  # type: ignore[override]
            def spec(self) -> PoolSpec:
                return self._spec

            @spec.setter
            def spec(self, value: PoolSpec) -> None:
                if hasattr(self, "_spec"):
                    raise AttributeError("read-only")
                self._spec = value

        class Plugin:
            @hookimpl(tryfirst=True)
            def metallb_make_source(self, spec: PoolSpec) -> StaticSource:
                return Frozen(spec)

        pm = get_plugin_manager(entry_points=False, plugins=[static_pool, *PROTOCOLS, Plugin()])
        alloc = Allocator(plugin_manager=pm, config=parse_config(STATIC, plugin_manager=pm))
        first = alloc.allocate("ns/a")
        alloc.set_config(parse_config(STATIC + "  interfaces: [eth1]\n", plugin_manager=pm))
        assert alloc.config.pools["p"].l2_advertisements[0].interfaces == ("eth1",)
        assert alloc.ips("ns/a") == (first,) and str(alloc.allocate("ns/b")) == "10.0.0.1"


# -- an address-service pool, against the bundled server (memory backend) over HTTP ---------


@pytest.fixture(name="server")
def _server() -> Iterator[HttpServer]:
    """The bundled address service on 127.0.0.1, leasing 192.0.2.0/24 from the memory backend."""
    service = AddressService(backend=MemoryBackend(cidrs=["192.0.2.0/24"]))
    service.start()
    httpd = make_http_server(service)
    httpd.start_thread()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    service.close()


def _address_pool(url: str, extra: str = "") -> str:
    """Config YAML of one address-service pool "as", with *extra* keys."""
    head = f"address-services:\n- name: as\n  url: {url}\n  protocol: layer2\n  cidrs: [192.0.2.0/24]\n"
    return head + "".join(f"  {line}\n" for line in extra.splitlines())


@pytest.fixture(name="leased")
def _leased(server: HttpServer) -> Iterator[tuple[Allocator, Any, str]]:
    """(allocator, plugin manager, url) over the bundled server's pool "as"; closed at teardown."""
    pm = get_plugin_manager(entry_points=False, plugins=[static_pool, *PROTOCOLS, address_service])
    alloc = Allocator(plugin_manager=pm, config=parse_config(_address_pool(server.url), plugin_manager=pm))
    yield alloc, pm, server.url
    alloc.close()


#: Changes of an address-service pool that only say how its addresses are announced.
ANNOUNCEMENT_CHANGES = [
    "interfaces: [eth1]",
    "node-selectors:\n- match-labels: {zone: a}",
    "auto-assign: false\ninterfaces: ['br*']",
]


class TestAddressServicePool:
    @pytest.mark.parametrize("extra", ANNOUNCEMENT_CHANGES)
    def test_announcement_change_keeps_lease_ids(self, leased: tuple[Allocator, Any, str], extra: str) -> None:
        """describe() still returns the lease id after a change of announcement fields."""
        alloc, pm, url = leased
        ip = alloc.allocate("ns/a")
        lease = alloc.describe("ns/a").get("lease-id")
        assert lease
        alloc.set_config(parse_config(_address_pool(url, extra), plugin_manager=pm))
        assert alloc.ips("ns/a") == (ip,)
        assert alloc.describe("ns/a").get("lease-id") == lease

    def test_controller_keeps_lease_annotation(self, leased: tuple[Allocator, Any, str]) -> None:
        """converge() keeps metallb.io/address-service-lease when the pool's interfaces change."""
        alloc, pm, url = leased
        manifest = {
            "metadata": {"name": "a", "namespace": "ns", "annotations": {}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
        }
        first = converge(read_service(manifest), alloc)
        lease = first.annotations[LEASE_ANNOTATION]
        assert lease and first.ingress
        alloc.set_config(parse_config(_address_pool(url, "interfaces: [eth1]"), plugin_manager=pm))
        manifest["status"] = {"loadBalancer": {"ingress": [{"ip": first.ingress[0]}]}}
        again = converge(read_service(manifest), alloc)
        assert again.ingress == first.ingress
        assert again.annotations[LEASE_ANNOTATION] == lease
