"""Controller convergence of one Service: MetalLB's rules, as pure table tests."""

from __future__ import annotations

from pathlib import Path

import attrs
import netaddr
import pytest
from metallb.allocator import (
    Allocator,
    Hooks,
    PoolEntry,
    PoolSpec,
    Port,
    SourceCapabilities,
    get_plugin_manager,
    hookimpl,
    parse_config,
    parse_pool_entry,
)
from metallb.announcers.layer2 import plugin as layer2
from metallb.operator import converge as converge_module
from metallb.operator import service as service_module
from metallb.operator.converge import converge
from metallb.operator.service import POOL_ANNOTATION, read_service
from metallb.plugins import static_pool

CONFIG = """
address-pools:
- name: main
  protocol: layer2
  addresses: [192.0.2.0/30, 2001:db8::/126]
- name: manual
  protocol: layer2
  auto-assign: false
  addresses: [198.51.100.0/30]
"""


@pytest.fixture(name="alloc")
def _alloc():
    pm = get_plugin_manager(entry_points=False, plugins=[static_pool, layer2])
    return Allocator(plugin_manager=pm, config=parse_config(CONFIG, plugin_manager=pm))


def svc(name="a", *, annotations=None, status_ips=(), **spec):
    """A Service manifest with type LoadBalancer unless overridden."""
    body = {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], **spec}
    obj = {"metadata": {"name": name, "namespace": "ns", "annotations": annotations or {}}, "spec": body}
    if status_ips:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in status_ips]}}
    return obj


class TestReadService:
    def test_both_annotation_prefixes(self):
        """Annotations are read under metallb.io/ and the legacy metallb.universe.tf/."""
        a = read_service(
            svc(annotations={"metallb.universe.tf/address-pool": "manual", "metallb.io/allow-shared-ip": "k"})
        )
        assert (a.pool, a.sharing_key) == ("manual", "k")
        b = read_service(svc(annotations={"metallb.universe.tf/address-pool": "x", "metallb.io/address-pool": "y"}))
        assert b.pool == "y"

    def test_backend_key_from_policy_and_selector(self):
        """Local traffic policy keys on the sorted selector; Cluster has an empty key."""
        local = read_service(svc(externalTrafficPolicy="Local", selector={"b": "2", "a": "1"}))
        assert local.backend_key == "a=1,b=2"
        assert read_service(svc(selector={"a": "1"})).backend_key == ""

    def test_ports_default_to_tcp(self):
        """A port without protocol is TCP."""
        assert read_service(svc(ports=[{"port": 53}, {"port": 53, "protocol": "UDP"}])).ports == (
            Port("TCP", 53),
            Port("UDP", 53),
        )

    @pytest.mark.parametrize(
        ("spec", "families", "require_all"),
        [
            ({}, (4,), True),
            ({"ipFamilies": ["IPv6"]}, (6,), True),
            ({"clusterIP": "2001:db8::9"}, (6,), True),
            ({"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"}, (4, 6), True),
            ({"ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": "PreferDualStack"}, (6, 4), False),
            ({"loadBalancerIP": "2001:db8::1"}, (6,), True),
        ],
    )
    def test_families(self, spec, families, require_all):
        """Families come from ipFamilies, else clusterIPs, else the requested address, else IPv4."""
        intent = read_service(svc(**spec))
        assert (intent.families, intent.require_all) == (families, require_all)

    def test_both_requests_is_an_error(self):
        """spec.loadBalancerIP together with the loadBalancerIPs annotation is an error."""
        intent = read_service(svc(loadBalancerIP="192.0.2.1", annotations={"metallb.io/loadBalancerIPs": "192.0.2.2"}))
        assert "both set" in intent.error

    def test_hostname_ingress_is_not_an_address(self):
        """A hostname ingress entry means the status is not ours: start over."""
        obj = svc()
        obj["status"] = {"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": "192.0.2.1"}]}}
        assert read_service(obj).current == ()


class TestConverge:
    def test_allocates_and_reports_event(self, alloc):
        """A new LoadBalancer gets the first free address, an IPAllocated event and the pool annotation."""
        out = converge(read_service(svc()), alloc)
        assert out.ingress == ("192.0.2.0",)
        assert out.annotations[POOL_ANNOTATION] == "main"
        assert [(e.type, e.reason) for e in out.events] == [("Normal", "IPAllocated")]
        assert out.finalizer is False

    def test_not_a_load_balancer_releases(self, alloc):
        """Changing the type away from LoadBalancer releases the address and clears the status."""
        converge(read_service(svc()), alloc)
        out = converge(read_service(svc(type="NodePort", status_ips=["192.0.2.0"])), alloc)
        assert out.ingress == ()
        assert alloc.ips("ns/a") == ()

    def test_restart_keeps_status_address(self, alloc):
        """An address already in status is re-assigned, even before the first sync completes."""
        out = converge(read_service(svc(status_ips=["192.0.2.3"])), alloc, synced=False)
        assert out.ingress == ("192.0.2.3",)
        assert out.events == ()

    def test_nothing_new_before_sync(self, alloc):
        """Before the sync barrier, a Service without an address waits (retry, no allocation)."""
        out = converge(read_service(svc()), alloc, synced=False)
        assert out.ingress == () and out.retry
        assert alloc.ips("ns/a") == ()

    def test_requested_address_bypasses_auto_assign_and_annotation(self, alloc):
        """spec.loadBalancerIP may take from a non-auto-assign pool and wins over the pool annotation."""
        out = converge(
            read_service(svc(loadBalancerIP="198.51.100.2", annotations={"metallb.io/address-pool": "main"})), alloc
        )
        assert out.ingress == ("198.51.100.2",)
        again = converge(
            read_service(
                svc(
                    loadBalancerIP="198.51.100.2",
                    status_ips=["198.51.100.2"],
                    annotations={"metallb.io/address-pool": "main"},
                )
            ),
            alloc,
        )
        assert again.ingress == ("198.51.100.2",) and again.events == ()

    def test_pool_annotation_change_moves(self, alloc):
        """Changing the address-pool annotation moves the Service to the new pool."""
        converge(read_service(svc()), alloc)
        out = converge(
            read_service(svc(status_ips=["192.0.2.0"], annotations={"metallb.io/address-pool": "manual"})), alloc
        )
        assert out.ingress == ("198.51.100.0",)
        assert alloc.pool_of("ns/a") == "manual"

    def test_requested_outside_every_pool(self, alloc):
        """A requested address in no pool: the old address is released and a warning explains."""
        converge(read_service(svc()), alloc)
        out = converge(read_service(svc(loadBalancerIP="203.0.113.1", status_ips=["192.0.2.0"])), alloc)
        assert out.ingress == ()
        assert out.events[0].reason == "AllocationFailed"
        assert "not allowed in config" in out.events[0].message
        assert alloc.ips("ns/a") == ()

    def test_exhaustion_warns_and_retries(self, alloc):
        """When the pools are full the Service gets AllocationFailed and is retried later."""
        for i in range(4):
            converge(read_service(svc(f"s{i}")), alloc)
        out = converge(read_service(svc("late")), alloc)
        assert out.retry and out.ingress == ()
        assert out.events[0].reason == "AllocationFailed"
        assert 'Failed to allocate IP for "ns/late"' in out.events[0].message

    def test_dual_stack(self, alloc):
        """RequireDualStack gets one address per family from one pool."""
        out = converge(read_service(svc(ipFamilies=["IPv4", "IPv6"], ipFamilyPolicy="RequireDualStack")), alloc)
        assert out.ingress == ("192.0.2.0", "2001:db8::")

    def test_prefer_dual_stack_falls_back(self):
        """PreferDualStack falls back to one family when no pool has both."""
        pm = get_plugin_manager(entry_points=False, plugins=[static_pool, layer2])
        text = "address-pools:\n- name: v4\n  protocol: layer2\n  addresses: [192.0.2.0/30]\n"
        alloc = Allocator(plugin_manager=pm, config=parse_config(text, plugin_manager=pm))
        out = converge(read_service(svc(ipFamilies=["IPv4", "IPv6"], ipFamilyPolicy="PreferDualStack")), alloc)
        assert out.ingress == ("192.0.2.0",)
        again = converge(
            read_service(svc(ipFamilies=["IPv4", "IPv6"], ipFamilyPolicy="PreferDualStack", status_ips=["192.0.2.0"])),
            alloc,
        )
        assert again.ingress == ("192.0.2.0",) and again.events == ()

    def test_other_class_untouched(self, alloc):
        """A Service of another load-balancer class is not ours."""
        out = converge(read_service(svc(loadBalancerClass="other.io/lb")), alloc)
        assert out.ours is False and alloc.ips("ns/a") == ()
        mine = converge(read_service(svc(loadBalancerClass="other.io/lb")), alloc, lb_class="other.io/lb")
        assert mine.ingress == ("192.0.2.0",)

    def test_invalid_request_keeps_address(self, alloc):
        """Setting both request forms warns LoadBalancerFailed and keeps the current address."""
        converge(read_service(svc()), alloc)
        bad = svc(
            loadBalancerIP="192.0.2.1",
            status_ips=["192.0.2.0"],
            annotations={"metallb.io/loadBalancerIPs": "192.0.2.2"},
        )
        out = converge(read_service(bad), alloc)
        assert out.ingress == ("192.0.2.0",)
        assert out.events[0].reason == "LoadBalancerFailed"

    def test_sharing_services(self, alloc):
        """Two Services with the same allow-shared-ip and different ports share one address."""
        a = converge(
            read_service(
                svc("udp", annotations={"metallb.io/allow-shared-ip": "dns"}, ports=[{"port": 53, "protocol": "UDP"}])
            ),
            alloc,
        )
        b = converge(
            read_service(svc("tcp", annotations={"metallb.universe.tf/allow-shared-ip": "dns"}, ports=[{"port": 53}])),
            alloc,
        )
        assert a.ingress == b.ingress == ("192.0.2.0",)


class TestReviewedEdges:
    def test_invalid_request_after_restart_keeps_status_address(self, alloc):
        """After a restart, a Service with an invalid request still reserves the address in its status."""
        bad = svc(
            loadBalancerIP="192.0.2.1",
            status_ips=["192.0.2.3"],
            annotations={"metallb.io/loadBalancerIPs": "192.0.2.2"},
        )
        out = converge(read_service(bad), alloc, synced=False)
        assert out.ingress == ("192.0.2.3",)
        assert [str(ip) for ip in alloc.ips("ns/a")] == ["192.0.2.3"]
        other = converge(read_service(svc("b", loadBalancerIP="192.0.2.3")), alloc)
        assert other.ingress == () and out.events[0].reason == "LoadBalancerFailed"

    def test_dual_stack_request_wins_over_pool_annotation(self):
        """Requested addresses bypass the pool annotation for dual-stack Services too."""
        pm = get_plugin_manager(entry_points=False, plugins=[static_pool, layer2])
        text = (
            "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [192.0.2.0/30, 2001:db8::/126]\n"
            "- name: b\n  protocol: layer2\n  addresses: [198.51.100.0/30, 2001:db8:1::/126]\n"
        )
        alloc = Allocator(plugin_manager=pm, config=parse_config(text, plugin_manager=pm))
        intent = read_service(
            svc(
                ipFamilies=["IPv4", "IPv6"],
                ipFamilyPolicy="RequireDualStack",
                annotations={
                    "metallb.io/address-pool": "a",
                    "metallb.io/loadBalancerIPs": "198.51.100.1,2001:db8:1::1",
                },
            )
        )
        assert converge(intent, alloc).ingress == ("198.51.100.1", "2001:db8:1::1")

    def test_refused_sharing_moves_in_the_same_pass(self, alloc):
        """When a port change makes sharing impossible, the Service moves to a new address at once."""
        a = converge(read_service(svc("a", annotations={"metallb.io/allow-shared-ip": "k"})), alloc)
        dns = svc("b", annotations={"metallb.io/allow-shared-ip": "k"}, ports=[{"port": 53, "protocol": "UDP"}])
        assert converge(read_service(dns), alloc).ingress == a.ingress
        clash = svc("b", annotations={"metallb.io/allow-shared-ip": "k"}, status_ips=list(a.ingress))
        out = converge(read_service(clash), alloc)
        assert out.ingress and out.ingress != a.ingress
        assert out.events[0].reason == "IPAllocated"

    def test_unchanged_service_is_not_reassigned(self, alloc):
        """Converging an unchanged Service again fires no allocation notifications."""
        from metallb.allocator import hookimpl

        seen = []

        class Recorder:
            @hookimpl
            def metallb_address_allocated(self, service, ip, pool):
                seen.append(service)

        alloc.plugin_manager.register(Recorder())
        out = converge(read_service(svc()), alloc)
        again = svc(status_ips=list(out.ingress))
        converge(read_service(again), alloc)
        converge(read_service(again), alloc)
        assert seen == ["ns/a"]

    def test_non_numeric_port_is_a_clear_error(self, alloc):
        """A port that is not a number gives LoadBalancerFailed instead of a crash."""
        out = converge(read_service(svc(ports=[{"port": "http"}])), alloc)
        assert out.events[0].reason == "LoadBalancerFailed" and "invalid port" in out.events[0].message


TICKET = "example.com/ticket"


class TicketSource(static_pool.StaticSource):
    """A static pool pretending its addresses are tickets in a remote system."""

    def describe(self, ip: netaddr.IPAddress) -> dict[str, str]:
        return {"ticket": f"T-{ip}", "ignored": "x"}


class TicketPools:
    """The ``ticket-pools`` section: static pools built as TicketSource, declaring remote releases and a ticket."""

    @hookimpl
    def metallb_pool_sections(self) -> list[str]:
        return ["ticket-pools"]

    @hookimpl
    def metallb_parse_pool(self, entry: PoolEntry) -> PoolSpec | None:
        return parse_pool_entry(entry, cidrs_key="cidrs") if entry.section == "ticket-pools" else None

    @hookimpl
    def metallb_make_source(self, spec: PoolSpec) -> TicketSource | None:
        return TicketSource(spec) if spec.kind == "ticket-pools" else None

    @hookimpl
    def metallb_pool_capabilities(self, section: str) -> SourceCapabilities | None:
        return (
            SourceCapabilities(remote_release=True, annotations={"ticket": TICKET})
            if section == "ticket-pools"
            else None
        )


TICKET_POOL = "ticket-pools:\n- name: remote\n  protocol: layer2\n  cidrs: [203.0.113.0/30]\n"


def ticket_allocator(text: str) -> Allocator:
    """An allocator over *text*, with static and ticket pools installed."""
    pm = get_plugin_manager(entry_points=False, plugins=[static_pool, layer2, TicketPools()])
    return Allocator(plugin_manager=pm, config=parse_config(text, plugin_manager=pm))


class TestSourceCapabilities:
    """The operator follows what pool kinds declare; it knows no pool kind by name."""

    @pytest.fixture(name="tickets")
    def _tickets(self):
        return ticket_allocator(CONFIG + TICKET_POOL)

    def test_remote_release_gets_the_finalizer(self, tickets):
        """Addresses of a kind declaring remote releases carry the finalizer; static ones do not."""
        remote = converge(read_service(svc("r", annotations={"metallb.io/address-pool": "remote"})), tickets)
        local = converge(read_service(svc("l")), tickets)
        assert (remote.ingress, remote.finalizer) == (("203.0.113.0",), True)
        assert (local.ingress, local.finalizer) == (("192.0.2.0",), False)

    def test_declared_describe_keys_become_annotations(self, tickets):
        """The source's describe() facts its kind maps become annotations; other pools' Services get them removed."""
        remote = converge(read_service(svc("r", annotations={"metallb.io/address-pool": "remote"})), tickets)
        assert dict(remote.annotations) == {POOL_ANNOTATION: "remote", TICKET: "T-203.0.113.0"}
        local = converge(read_service(svc("l")), tickets)
        assert dict(local.annotations) == {POOL_ANNOTATION: "main", TICKET: None}
        gone = converge(read_service(svc("r", type="ClusterIP")), tickets)
        assert dict(gone.annotations) == {POOL_ANNOTATION: None, TICKET: None}

    def test_annotations_of_kinds_without_pools_are_removed(self):
        """An installed kind's annotations are removed even when the config has no pool of it (any more)."""
        alloc = ticket_allocator(CONFIG)
        assert set(alloc.pool_kinds()) == {"address-pools", "ticket-pools"}
        stale = svc("r", annotations={TICKET: "T-203.0.113.0"}, status_ips=["203.0.113.0"])
        out = converge(read_service(stale), alloc)
        assert out.ingress == ("192.0.2.0",)
        assert dict(out.annotations) == {POOL_ANNOTATION: "main", TICKET: None}

    def test_pool_removed_from_the_config_leaves_no_annotation(self):
        """After the last pool of a kind goes from the config, its Services lose the kind's annotation."""
        alloc = ticket_allocator(CONFIG + TICKET_POOL)
        held = converge(read_service(svc("r", annotations={"metallb.io/address-pool": "remote"})), alloc)
        assert held.annotations[TICKET] == "T-203.0.113.0"
        alloc.unassign("ns/r")  # the Service is moved off the pool so that the pool can go
        alloc.set_config(parse_config(CONFIG, plugin_manager=alloc.plugin_manager))
        moved = converge(read_service(svc("r", annotations={TICKET: "T-203.0.113.0"})), alloc)
        assert dict(moved.annotations) == {POOL_ANNOTATION: "main", TICKET: None} and not moved.finalizer

    def test_stale_address_service_lease_annotation_is_removed(self):
        """With the address-service plugin installed but no address-service pool, a leftover lease annotation goes."""
        from metallb.plugins.address_service import plugin as address_service

        pm = get_plugin_manager(entry_points=False, plugins=[static_pool, layer2, address_service])
        alloc = Allocator(plugin_manager=pm, config=parse_config(CONFIG, plugin_manager=pm))
        lease = "metallb.io/address-service-lease"
        stale = svc("a", annotations={lease: "0b5c"}, status_ips=["203.0.113.9"])
        out = converge(read_service(stale), alloc)
        assert dict(out.annotations) == {POOL_ANNOTATION: "main", lease: None}

    def test_static_pools_declare_nothing(self, alloc):
        """With only static pools installed, the pool annotation is all metallb writes."""
        out = converge(read_service(svc()), alloc)
        assert dict(out.annotations) == {POOL_ANNOTATION: "main"} and not out.finalizer
        assert alloc.pool_kinds() == {"address-pools": SourceCapabilities()}

    def test_address_service_keeps_its_annotation_and_finalizer(self):
        """The address-service kind declares the lease annotation and remote releases (today's names)."""
        assert Hooks(get_plugin_manager()).pool_capabilities("address-services") == SourceCapabilities(
            remote_release=True, annotations={"lease-id": "metallb.io/address-service-lease"}
        )

    def test_operator_names_no_pool_kind(self):
        """converge and service hold no plugin-specific names (sections, describe keys)."""
        for module in (converge_module, service_module):
            text = Path(str(module.__file__)).read_text()
            for name in ("address-pools", "address-services", "lease-id", "address-service-lease"):
                assert name not in text, (module.__name__, name)


class TestValues:
    def test_outcome_is_immutable(self, alloc):
        """Outcome and its annotations cannot be changed after convergence."""
        out = converge(read_service(svc()), alloc)
        with pytest.raises(TypeError):
            out.annotations[POOL_ANNOTATION] = "x"  # type: ignore[index]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            out.ingress = ()  # type: ignore[misc]

    def test_keyword_only(self):
        """Event, Outcome and ServiceIntent are built with keywords only."""
        for cls in (converge_module.Event, converge_module.Outcome, service_module.ServiceIntent):
            assert all(f.kw_only for f in attrs.fields(cls)), cls
