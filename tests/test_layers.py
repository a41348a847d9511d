"""The layer contracts of setup.cfg (import-linter): the installed tree keeps them, and each one fails when broken."""

from __future__ import annotations

import ast
import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import metallb.allocator
import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The installed ``metallb`` folder (site-packages), which CI lints.
INSTALLED = Path(metallb.allocator.__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def contracts() -> dict[str, str]:
    """Contract id -> name, from setup.cfg."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    prefix = "importlinter:contract:"
    return {s.removeprefix(prefix): parser[s]["name"] for s in parser.sections() if s.startswith(prefix)}


def lint(tree: Path, tmp_path: Path) -> dict[str, str]:
    """Run lint-imports with setup.cfg's contracts on the ``metallb`` folder under *tree*: name -> KEPT/BROKEN."""
    config = tmp_path / "contracts.cfg"
    source, out = configparser.ConfigParser(), configparser.ConfigParser()
    source.read(ROOT / "setup.cfg")
    for section in source.sections():
        if section.startswith("importlinter"):
            out[section] = dict(source[section])
    with config.open("w") as fh:
        out.write(fh)
    # lint-imports puts its working directory first on sys.path: *tree* shadows the installed portion.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config)],
        capture_output=True,
        text=True,
        cwd=tree,
        env=env,
        timeout=120,
    )
    statuses = {}
    for line in result.stdout.splitlines():
        # "<name> KEPT", or "<name> KEPT (1 ignored import)" for a contract with ignore_imports.
        found = re.fullmatch(r"(.+) (KEPT|BROKEN)(?: \(\d+ ignored imports?\))?", line)
        if found:
            statuses[found[1]] = found[2]
    assert statuses, result.stdout + result.stderr
    assert result.returncode == (1 if "BROKEN" in statuses.values() else 0), result.stdout + result.stderr
    return statuses


#: (contract id, module written into a copy of the installed tree, its source).
VIOLATIONS = [
    ("layers", "allocator/_violation.py", "import metallb.plugins.static_pool\n"),
    ("layers", "plugins/_violation.py", "from metallb.operator import table\n"),
    ("operator-through-hooks", "operator/_violation.py", "import metallb.plugins.static_pool\n"),
    # An import inside a function counts too: laziness is no way around a contract.
    ("operator-through-hooks", "operator/_violation.py", "def f():\n    import metallb.announcers.election\n"),
    ("plugins-below-operator", "plugins/_violation.py", "import metallb.operator.table\n"),
    ("plugins-below-operator", "announcers/_violation.py", "from metallb.operator.logs import setup_logging\n"),
    ("pools-announcers-independent", "plugins/_violation.py", "import metallb.announcers.election\n"),
    ("pools-announcers-independent", "announcers/_violation.py", "from metallb.plugins import static_pool\n"),
    ("membership-pure", "operator/membership/_violation.py", "import kubernetes\n"),
    ("membership-pure", "operator/membership/_violation.py", "from metallb.operator import kube\n"),
    ("allocator-light", "allocator/_violation.py", "import kubernetes\n"),
    ("allocator-light", "allocator/_violation.py", "import httpx\n"),
    ("allocator-light", "allocator/_violation.py", "from scapy.packet import Packet\n"),
    ("allocator-light", "allocator/_violation.py", "import prometheus_client\n"),
    ("allocator-light", "allocator/kube_violation.py", "import kubernetes\n"),
    # The Kubernetes helpers may import kubernetes, but no other allocator module may reach them.
    ("kube-helpers-apart", "allocator/_violation.py", "from metallb.allocator.kube import LeaderLease\n"),
    ("kube-helpers-apart", "allocator/_violation.py", "def f():\n    import metallb.allocator.kube\n"),
]


class TestContracts:
    def test_installed_tree_keeps_every_contract(self, tmp_path):
        """The installed package keeps every contract of setup.cfg."""
        statuses = lint(INSTALLED.parent, tmp_path)
        assert statuses == {name: "KEPT" for name in contracts().values()}

    def test_every_contract_is_tested(self):
        """Each contract in setup.cfg has at least one violation below that must break it."""
        assert {cid for cid, _, _ in VIOLATIONS} == set(contracts())

    @pytest.mark.parametrize(("contract", "path", "code"), VIOLATIONS, ids=[f"{c}-{p}" for c, p, _ in VIOLATIONS])
    def test_violation_breaks_the_contract(self, tmp_path, contract, path, code):
        """A module that imports across a boundary makes lint-imports report that contract broken."""
        tree = tmp_path / "tree"
        shutil.copytree(INSTALLED, tree / "metallb", ignore=shutil.ignore_patterns("__pycache__"))
        (tree / "metallb" / path).write_text(code)
        statuses = lint(tree, tmp_path)
        assert statuses[contracts()[contract]] == "BROKEN", statuses


def _module_strings(path: Path) -> list[str]:
    """String constants in *path* that name a plugin or announcer module (as importlib would take them)."""
    return [
        node.value
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith(("metallb.plugins", "metallb.announcers"))
    ]


class TestNoHiddenImports:
    def test_operator_names_no_plugin_module(self):
        """No operator module names a plugin or announcer module in a string, which import-linter cannot see."""
        named = {str(p.relative_to(ROOT)): _module_strings(p) for p in sorted((ROOT / "operator").glob("*.py"))}
        assert {path: names for path, names in named.items() if names} == {}

    def test_scanner_finds_an_importlib_string(self, tmp_path):
        """The scan above sees ``importlib.import_module("metallb.plugins...")``."""
        sample = tmp_path / "sample.py"
        sample.write_text('import importlib\nimportlib.import_module("metallb.plugins.address_service.server")\n')
        assert _module_strings(sample) == ["metallb.plugins.address_service.server"]
