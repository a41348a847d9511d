"""docs/api.md names every public name of metallb.allocator and its testing, retry and files modules."""

from __future__ import annotations

from pathlib import Path

import metallb.allocator
import metallb.allocator.files
import metallb.allocator.retry
import metallb.allocator.testing

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


class TestApiReference:
    def test_every_exported_name_is_documented(self):
        """Each name in the modules' __all__ appears in docs/api.md as code."""
        text = DOC.read_text()
        modules = (metallb.allocator, metallb.allocator.testing, metallb.allocator.retry, metallb.allocator.files)
        names = [name for module in modules for name in module.__all__]
        assert "Allocator" in names and "check_source_contract" in names
        assert not [n for n in names if f"`{n}" not in text]


class TestContractDocumented:
    def test_every_rule_is_in_writing_plugins(self):
        """Each rule of the contract checker is stated, in its own words, in docs/writing-plugins.md."""
        from metallb.allocator.testing import RULES

        text = (DOC.parent / "writing-plugins.md").read_text()
        assert not [rule for rule, words in RULES.items() if f"| {rule} | {words} |" not in text]
