"""Pool selection for a Service that names no pool: serviceAllocation and priority, MetalLB v0.15's rules."""

from __future__ import annotations

from typing import Any

import pytest
from metallb.allocator import Allocator, PoolExhaustedError, PoolRequest, hookimpl, parse_resources
from metallb.allocator.testing import plugin_manager_with
from metallb.plugins import static_pool

NS = "metallb-system"


def pool(name: str, cidr: str, *, allocation: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"addresses": [cidr], **spec}
    if allocation is not None:
        body["serviceAllocation"] = allocation
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": NS},
        "spec": body,
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def allocator(*objects: dict[str, Any]) -> Allocator:
    pm = plugin_manager_with(static_pool)
    return Allocator(plugin_manager=pm, config=parse_resources(list(objects), plugin_manager=pm))


def pool_of(alloc: Allocator, service: str, **labels: str) -> str | None:
    alloc.allocate(service, labels=labels)
    return alloc.pool_of(service)


class TestPoolSelection:
    """Which pool an automatic allocation takes."""

    def test_namespace(self):
        """A pool for namespace "web" serves Services there, before any plain pool, and no other namespace."""
        alloc = allocator(
            pool("a-plain", "10.0.0.0/30"), pool("b-web", "10.1.0.0/30", allocation={"namespaces": ["web"]})
        )
        assert pool_of(alloc, "web/s") == "b-web"
        assert pool_of(alloc, "default/s") == "a-plain"

    def test_namespace_selector(self):
        """namespaceSelectors pick namespaces by their labels, resolved from the Namespace objects."""
        alloc = allocator(
            pool("a-plain", "10.0.0.0/30"),
            pool("b-team", "10.1.0.0/30", allocation={"namespaceSelectors": [{"matchLabels": {"team": "blue"}}]}),
            namespace("blue-1", team="blue"),
            namespace("red-1", team="red"),
        )
        assert pool_of(alloc, "blue-1/s") == "b-team"
        assert pool_of(alloc, "red-1/s") == "a-plain"

    def test_service_selector(self):
        """serviceSelectors pick Services by their own labels, in every namespace."""
        selector = {"serviceSelectors": [{"matchExpressions": [{"key": "tier", "operator": "In", "values": ["edge"]}]}]}
        alloc = allocator(pool("a-plain", "10.0.0.0/30"), pool("b-edge", "10.1.0.0/30", allocation=selector))
        assert pool_of(alloc, "x/edge", tier="edge") == "b-edge"
        assert pool_of(alloc, "x/other", tier="core") == "a-plain"

    def test_namespaces_and_service_selectors_are_anded(self):
        """A pool with namespaces and service selectors serves Services matching both."""
        allocation = {"namespaces": ["web"], "serviceSelectors": [{"matchLabels": {"tier": "edge"}}]}
        alloc = allocator(pool("a-plain", "10.0.0.0/30"), pool("b", "10.1.0.0/30", allocation=allocation))
        assert pool_of(alloc, "web/one", tier="edge") == "b"
        assert pool_of(alloc, "web/two", tier="core") == "a-plain"
        assert pool_of(alloc, "db/three", tier="edge") == "a-plain"

    def test_priority_lower_first_then_no_priority(self):
        """Priorities ascending (negatives first), then pools with a serviceAllocation but no priority."""
        alloc = allocator(
            pool("p-none", "10.0.0.0/32", allocation={}),
            pool("p-ten", "10.1.0.0/32", allocation={"priority": 10}),
            pool("p-one", "10.2.0.0/32", allocation={"priority": 1}),
            pool("p-neg", "10.3.0.0/32", allocation={"priority": -5}),
            pool("plain", "10.4.0.0/32"),
        )
        taken = [pool_of(alloc, f"ns/s{i}") for i in range(5)]
        assert taken == ["p-neg", "p-one", "p-ten", "p-none", "plain"]

    def test_priority_only_pool_before_plain_pools(self):
        """A priority-only serviceAllocation selects every Service, so its pool comes before plain ones (v0.15)."""
        alloc = allocator(pool("a-plain", "10.0.0.0/30"), pool("b-prio", "10.1.0.0/30", allocation={"priority": 0}))
        assert pool_of(alloc, "anything/s") == "b-prio"

    def test_equal_priorities_in_name_order(self):
        """Pools of equal priority are tried in configuration order: resource name order (MetalLB: random)."""
        alloc = allocator(
            pool("zeta", "10.0.0.0/32", allocation={"priority": 1}),
            pool("alpha", "10.1.0.0/32", allocation={"priority": 1}),
        )
        assert [pool_of(alloc, f"ns/s{i}") for i in range(2)] == ["alpha", "zeta"]

    def test_not_selected_pools_are_never_tried(self):
        """A Service no allocation selects gets only plain pools, and fails when there are none."""
        alloc = allocator(pool("web", "10.0.0.0/30", allocation={"namespaces": ["web"]}))
        with pytest.raises(PoolExhaustedError):
            alloc.allocate("db/s")

    def test_explicit_requests_still_win(self):
        """A named pool or a requested address is served whatever the serviceAllocation, as before."""
        alloc = allocator(pool("web", "10.0.0.0/30", allocation={"namespaces": ["web"]}), pool("plain", "10.1.0.0/30"))
        alloc.allocate("db/a", pool="web")
        assert alloc.pool_of("db/a") == "web"
        alloc.allocate("db/b", ip="10.0.0.3")
        assert alloc.pool_of("db/b") == "web"

    def test_dual_stack_follows_the_same_order(self):
        """allocate_dual tries the selected pools by priority too."""
        alloc = allocator(
            pool("a", "10.0.0.0/30", allocation={"priority": 2}),
            pool("b", "10.1.0.0/30", allocation={"priority": 1}),
        )
        alloc.allocate_dual("ns/s", families=(4,), labels={})
        assert alloc.pool_of("ns/s") == "b"

    def test_plugins_see_namespace_and_labels(self):
        """metallb_select_pools gets the Service's namespace and labels in the request."""
        seen: list[PoolRequest] = []

        class Recorder:
            @hookimpl
            def metallb_select_pools(self, request, pools):
                seen.append(request)

        pm = plugin_manager_with(static_pool, Recorder())
        alloc = Allocator(plugin_manager=pm, config=parse_resources([pool("a", "10.0.0.0/30")], plugin_manager=pm))
        alloc.allocate("web/s", labels={"tier": "edge"})
        assert (seen[0].namespace, dict(seen[0].labels)) == ("web", {"tier": "edge"})
