"""The address-service source meets the AddressSource contract, against the bundled server, on every pool shape."""

from __future__ import annotations

import pytest
from metallb.allocator import ConfigError, parse_config
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

    def test_dual_stack_is_refused_by_the_parser(self, bundled, helpers):
        """Address services hand out IPv4 only, so a dual-stack pool never reaches the source."""
        text = "address-services:\n" + helpers.pool_yaml("s", bundled.url, cidrs="192.0.2.0/28, 2001:db8::/124")
        with pytest.raises(ConfigError, match="address services hand out IPv4 addresses only"):
            parse_config(text)
