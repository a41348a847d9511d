"""The controller's metrics: per-pool gauges read from the allocator at scrape time."""

from __future__ import annotations

import pytest
from metallb.allocator import Port, parse_config
from metallb.allocator.testing import allocator_for
from metallb.operator.metrics import ControllerMetrics
from prometheus_client import CollectorRegistry, generate_latest

CONFIG = """
address-pools:
- name: main
  protocol: layer2
  addresses: [192.0.2.10-192.0.2.13]
- name: other
  protocol: layer2
  addresses: [198.51.100.0/30]
"""
GAUGES = (
    "metallb_allocator_addresses_total",
    "metallb_allocator_addresses_in_use_total",
    "metallb_allocator_services_allocated_total",
)


def scrape():
    allocator = allocator_for(CONFIG, entry_points=True)
    registry = CollectorRegistry()
    ControllerMetrics(registry, allocator)
    return allocator, registry


class TestPoolGauges:
    def test_values_per_pool(self):
        """Capacity, distinct addresses in use (a shared one counts once) and services, per pool."""
        allocator, registry = scrape()
        allocator.allocate("ns/a", pool="main", ports=[Port("TCP", 80)], sharing_key="k")
        allocator.allocate("ns/b", pool="main", ports=[Port("TCP", 443)], sharing_key="k")
        allocator.allocate("ns/c", pool="other")
        value = registry.get_sample_value
        assert [value(name, {"pool": "main"}) for name in GAUGES] == [4.0, 1.0, 2.0]
        assert [value(name, {"pool": "other"}) for name in GAUGES] == [4.0, 1.0, 1.0]

    def test_names_types_and_help_as_before(self):
        """Each family is a gauge with MetalLB's name, help text and one "pool" label."""
        _, registry = scrape()
        text = generate_latest(registry).decode()
        assert "# HELP metallb_allocator_addresses_total Number of usable IP addresses, per pool" in text
        for name in GAUGES:
            assert f"# TYPE {name} gauge" in text
            assert f'{name}{{pool="main"}}' in text

    def test_removed_pool_vanishes(self):
        """A pool dropped from the config has no series at the next scrape."""
        allocator, registry = scrape()
        allocator.set_config(parse_config(CONFIG.split("- name: other")[0]))
        assert registry.get_sample_value(GAUGES[0], {"pool": "other"}) is None
        assert registry.get_sample_value(GAUGES[0], {"pool": "main"}) == 4.0

    def test_registered_once(self):
        """The collector describes its families, so registering a second one on the same registry fails loudly."""
        allocator, registry = scrape()
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            ControllerMetrics(registry, allocator)
