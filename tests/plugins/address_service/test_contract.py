"""The address-service source meets the AddressSource contract, against the bundled server, on every pool shape."""

from __future__ import annotations

import pytest
from metallb.allocator import parse_config
from metallb.allocator.testing import check_source_contract
from metallb.plugins.address_service.client import AddressServiceSource


def source_factory(url: str, cidrs: str, helpers):
    """A factory of sources for one address-services pool over *cidrs*, quick to retry."""
    config = parse_config("address-services:\n" + helpers.pool_yaml("s", url, cidrs=cidrs))
    spec = helpers.with_options(config, backoff=0.01).pools["s"]
    return lambda: AddressServiceSource(spec)


class TestContract:
    @pytest.mark.parametrize(
        ("cidrs", "usable"),
        [("192.0.2.0/30", 2), ("192.0.2.0/29", 6), ("192.0.2.0/28", 14)],
        ids=["tiny", "small", "sixteen"],
    )
    def test_bundled_server(self, make_bundled, helpers, cidrs, usable):
        """Tiny and single-family pools pass; everything taken is given back to the server."""
        bundled = make_bundled(cidrs=(cidrs,))
        report = check_source_contract(source_factory(bundled.url, cidrs, helpers))
        assert report.families == (4,) and report.capacity is None and not report.ordered
        assert report.exhausted_after == usable  # the memory backend leases no network or broadcast address
        assert any(c.startswith("IPv6: acquire() of a family the pool has no CIDRs of") for c in report.checks)
        assert any(c.startswith("reconcile(held)") and "not supported" not in c for c in report.checks)
        assert helpers.wait_for(lambda: not bundled.held(), what="every lease released") is True

    def test_dual_stack_pool(self, make_bundled, helpers):
        """A pool of both families passes for each family against a server with the family extension."""
        cidrs = "192.0.2.0/29, 2001:db8::/125"
        bundled = make_bundled(cidrs=("192.0.2.0/29", "2001:db8::/125"))
        report = check_source_contract(source_factory(bundled.url, cidrs, helpers))
        assert report.families == (4, 6)
        assert helpers.wait_for(lambda: not bundled.held(), what="every lease released") is True
