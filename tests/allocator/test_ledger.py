"""Ledger: the allocator's bookkeeping, used directly: no lock, no I/O, consistent indexes."""

from __future__ import annotations

import netaddr
import pytest
from metallb.allocator import (
    AddressInUseError,
    ConfigError,
    PoolSpec,
    Port,
    ReconcileReport,
    get_plugin_manager,
    parse_config,
)
from metallb.allocator.ledger import Ledger, Tenant
from metallb.announcers.layer2 import plugin as layer2
from metallb.plugins import static_pool
from metallb.plugins.static_pool import StaticSource

PM = get_plugin_manager(entry_points=False, plugins=[static_pool, layer2])
TWO_POOLS = (
    "address-pools:\n- name: p\n  protocol: layer2\n  addresses: [10.0.0.0/30]\n"
    "- name: q\n  protocol: layer2\n  auto-assign: false\n  addresses: [10.0.1.0/30]\n"
)


class _LocalOnly(StaticSource):
    """A static source that fails the test if anything that may block is called."""

    def __init__(self, spec: PoolSpec) -> None:
        super().__init__(spec)
        self.claims: list[tuple[str, netaddr.IPAddress]] = []

    def claim(self, owner: str, ip: netaddr.IPAddress) -> None:
        self.claims.append((owner, ip))
        super().claim(owner, ip)

    def acquire(
        self, owner: str, *, family: int, wanted: netaddr.IPAddress | None = None, uid: str | None = None
    ) -> netaddr.IPAddress:
        raise AssertionError("the ledger called acquire")

    def release(self, owner: str, ip: netaddr.IPAddress) -> None:
        raise AssertionError("the ledger called release")

    def reconcile(self, held: object) -> ReconcileReport:
        raise AssertionError("the ledger called reconcile")

    def describe(self, ip: netaddr.IPAddress) -> dict[str, str]:
        raise AssertionError("the ledger called describe")

    def close(self) -> None:
        raise AssertionError("the ledger called close")


def _ip(text: str) -> netaddr.IPAddress:
    return netaddr.IPAddress(text)


def _tenant(service: str, *ports: Port, key: str = "") -> Tenant:
    return Tenant(service=service, ports=frozenset(ports or (Port("TCP", 80),)), sharing_key=key, backend_key="")


@pytest.fixture(name="book")
def _book() -> Ledger:
    """A ledger over pools p (auto) and q (manual), with local-only sources."""
    config = parse_config(TWO_POOLS, plugin_manager=PM)
    book = Ledger()
    sources = {name: _LocalOnly(spec) for name, spec in config.pools.items()}
    book.adopt(config, dict(sources), book.moves(sources, sources.values()))
    return book


class TestLedger:
    def test_records_and_releases_without_io(self, book: Ledger) -> None:
        """Recording, replacing and forgetting return what to release instead of releasing it."""
        a = _tenant("ns/a")
        assert book.claim(a, "p", (_ip("10.0.0.1"),)) == []
        released = book.record(a, "p", (_ip("10.0.0.2"),))
        assert released == [(book.sources["p"], _ip("10.0.0.1"))]
        assert book.forget("ns/a") == [(book.sources["p"], _ip("10.0.0.2"))]
        assert book.in_use("p") == 0 and book.allocations() == []

    def test_auto_pools_follow_the_config(self, book: Ledger) -> None:
        """Without a plugin's choice, only auto-assign pools with the family are offered."""
        assert [p.name for p in book.auto_pools(4)] == ["p"]
        assert book.auto_pools(6) == []

    def test_shared_address_found_by_keys_not_by_scanning(self, book: Ledger) -> None:
        """join_first_fit finds an address held under the same keys, never one with clashing ports."""
        book.claim(_tenant("ns/a", key="k"), "p", (_ip("10.0.0.0"),))
        assert book.join_first_fit(_tenant("ns/x", key="other"), 4, "p", book.sources["p"]) is None
        assert book.join_first_fit(_tenant("ns/c", Port("TCP", 80), key="k"), 4, "p", book.sources["p"]) is None
        joined = book.join_first_fit(_tenant("ns/b", Port("UDP", 53), key="k"), 4, "p", book.sources["p"])
        assert joined == (_ip("10.0.0.0"), [])
        assert book.users(_ip("10.0.0.0")) == ("ns/a", "ns/b") and book.in_use("p") == 1

    def test_renew_refused_while_shared(self, book: Ledger) -> None:
        """A sharer cannot change its key under the others; nothing changes."""
        book.claim(_tenant("ns/a", key="k"), "p", (_ip("10.0.0.0"),))
        book.join(_tenant("ns/b", Port("UDP", 53), key="k"), "p", _ip("10.0.0.0"))
        with pytest.raises(AddressInUseError, match="does not match"):
            book.renew(_tenant("ns/b", Port("UDP", 53), key="j"))
        held = book.allocation("ns/b")
        assert held is not None and held.sharing_key == "k"

    def test_config_moves_follow_addresses(self, book: Ledger) -> None:
        """A renamed pool takes its allocations; an orphaning config raises and changes nothing."""
        book.claim(_tenant("ns/a"), "p", (_ip("10.0.0.1"),))
        renamed = parse_config(TWO_POOLS.replace("name: p", "name: r"), plugin_manager=PM)
        sources = {name: _LocalOnly(spec) for name, spec in renamed.pools.items()}
        sources["q"] = book.sources["q"]
        moves = book.moves(sources, [sources["r"]])
        assert moves == {"ns/a": "r"}
        book.adopt(renamed, sources, moves)
        assert book.held["ns/a"].pool == "r" and sources["r"].claims == [("ns/a", _ip("10.0.0.1"))]
        assert book.in_use("r") == 1 and book.owner(_ip("10.0.0.1")) == "r"
        orphaning = parse_config(TWO_POOLS.replace("10.0.0.0/30", "10.0.2.0/30"), plugin_manager=PM)
        other = {name: _LocalOnly(spec) for name, spec in orphaning.pools.items()}
        with pytest.raises(ConfigError, match='"ns/a" cannot own "10.0.0.1"'):
            book.moves(other, other.values())
        assert book.config is renamed
