"""Fixtures for the allocator tests: hermetic plugin managers and quick configs."""

from __future__ import annotations

import pytest
from metallb.allocator import Allocator, get_plugin_manager, parse_config
from metallb.announcers.bgp import plugin as bgp
from metallb.announcers.layer2 import plugin as layer2
from metallb.plugins import static_pool


@pytest.fixture(name="pm")
def _pm():
    """A plugin manager with only the static-pool plugin and the layer2 and bgp protocols (no entry points)."""
    return get_plugin_manager(entry_points=False, plugins=[static_pool, layer2, bgp])


@pytest.fixture(name="make")
def _make(pm):
    """Build an Allocator from config YAML, with the hermetic plugin manager."""

    def make(text: str) -> Allocator:
        return Allocator(plugin_manager=pm, config=parse_config(text, plugin_manager=pm))

    return make


@pytest.fixture(name="parse")
def _parse(pm):
    """parse_config bound to the hermetic plugin manager."""
    return lambda text: parse_config(text, plugin_manager=pm)
