"""docs/hooks.md documents every hook with its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from metallb.allocator import get_plugin_manager, hookspecs

DOC = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def _signature(name: str) -> str:
    func = getattr(hookspecs, name)
    sig = inspect.signature(func)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    ret = sig.return_annotation.replace("netaddr.", "")
    params = params.replace("netaddr.", "")
    return f"{name}({params}) -> {ret}"


class TestHookDocs:
    def test_every_hook_is_documented_with_its_signature(self):
        """Each hookspec appears in docs/hooks.md as a heading with its exact signature."""
        text = DOC.read_text()
        pm = get_plugin_manager(entry_points=False)
        names = [n for n in dir(pm.hook) if n.startswith("metallb_")]
        assert names, "no hooks found"
        for name in names:
            assert f"### `{_signature(name)}`" in text, f"docs/hooks.md lacks or misstates {_signature(name)}"

    def test_no_documented_hook_is_missing_from_the_specs(self):
        """Every hook heading in the docs names a real hook."""
        documented = re.findall(r"^### `(metallb_\w+)\(", DOC.read_text(), flags=re.M)
        assert documented
        for name in documented:
            assert hasattr(hookspecs, name), f"docs/hooks.md documents {name}, which is no hook"

    def test_every_hook_has_a_docstring(self):
        """Hookspecs carry a docstring each."""
        for name in dir(hookspecs):
            if name.startswith("metallb_"):
                assert (getattr(hookspecs, name).__doc__ or "").strip(), name
