"""Value objects across the installed metallb package: keyword-only construction, nothing mutable when frozen."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from types import ModuleType

import attrs
import pytest

PACKAGES = ("metallb.allocator", "metallb.plugins", "metallb.announcers", "metallb.operator")

#: The documented exceptions: built positionally, as the Allocator contract and
#: docs/api.md show them (``Port("TCP", 80)``, ``PoolStats(total, in_use)`` ...).
POSITIONAL = {
    "metallb.allocator.values.Port",
    "metallb.allocator.model.PoolStats",
    "metallb.allocator.model.Community",
    "metallb.allocator.model.NodeSelector",
    "metallb.allocator.model.NodeInfo",
    "metallb.allocator.interfaces.ReconcileReport",
    "metallb.allocator.ledger.Allocation",
}

#: Field types that can change under a frozen value.
MUTABLE = re.compile(r"\b(dict|list|set|bytearray|Dict|List|Set|MutableMapping|MutableSequence|MutableSet)\b")


def modules() -> Iterator[ModuleType]:
    """Every module of the installed package (``__main__`` left out: importing it runs the command line)."""
    for name in PACKAGES:
        package = importlib.import_module(name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            if not info.name.endswith(".__main__"):
                yield importlib.import_module(info.name)


def attrs_classes() -> list[type]:
    """Every attrs class defined at module level in the package, private ones included."""
    found: dict[str, type] = {}
    for module in modules():
        for value in vars(module).values():
            if isinstance(value, type) and attrs.has(value) and value.__module__ == module.__name__:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


CLASSES = attrs_classes()


def is_frozen(cls: type) -> bool:
    return getattr(cls.__setattr__, "__name__", "") == "_frozen_setattrs"


class TestValueObjects:
    def test_the_walk_finds_every_layer(self):
        """The walk reaches classes of the allocator, the plugins, the announcers and the operator."""
        names = {qualified(c) for c in CLASSES}
        for expected in (
            "metallb.allocator.model.PoolSpec",
            "metallb.plugins.address_service.api.Lease",
            "metallb.announcers.bgp.policy.Route",
            "metallb.operator.converge.Outcome",
        ):
            assert expected in names
        assert names >= POSITIONAL, POSITIONAL - names

    @pytest.mark.parametrize("cls", CLASSES, ids=qualified)
    def test_more_than_two_fields_means_keywords_only(self, cls):
        """An attrs class with more than two fields is built with keywords only, except the documented ones."""
        fields = [f for f in attrs.fields(cls) if f.init]
        if qualified(cls) in POSITIONAL:
            assert not any(f.kw_only for f in fields), f"{qualified(cls)} is documented as positional"
        elif len(fields) > 2:
            positional = [f.name for f in fields if not f.kw_only]
            assert not positional, f"{qualified(cls)} takes {', '.join(positional)} positionally"

    @pytest.mark.parametrize("cls", [c for c in CLASSES if is_frozen(c)], ids=qualified)
    def test_frozen_values_hold_nothing_mutable(self, cls):
        """A frozen class declares no dict, list or set field (mappings are read-only views, sequences tuples)."""
        for field in attrs.fields(cls):
            assert not MUTABLE.search(str(field.type)), f"{qualified(cls)}.{field.name}: {field.type}"
