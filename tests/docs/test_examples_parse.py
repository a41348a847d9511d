"""Every example config in the repo and every config shown in the docs parses."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from metallb.allocator import Hooks, MetalLBError, get_plugin_manager, parse_config
from metallb.allocator.config import CORE_SECTIONS

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {"tests", "build", "dist", "site", "node_modules"}


def sections() -> set[str]:
    """Top-level keys a config may have: the core ones and those of every installed plugin."""
    return {*CORE_SECTIONS, *Hooks(get_plugin_manager()).pool_sections()}


def config_text(doc: object, *, known: set[str]) -> str | None:
    """The metallb config inside a YAML document, or None when it is not one.

    A ConfigMap with ``data.config``, or a bare mapping (not a Kubernetes
    object) with at least one config section.
    """
    if not isinstance(doc, dict):
        return None
    if doc.get("kind") == "ConfigMap":
        config = (doc.get("data") or {}).get("config")
        return config if isinstance(config, str) else None
    if "kind" not in doc and "apiVersion" not in doc and doc.keys() & known:
        return yaml.safe_dump(doc)
    return None


def yaml_files() -> list[Path]:
    """Every YAML file of the repo, outside tests, build output and hidden folders (such as .venv)."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(
            d for d in dirs if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
        )
        found.extend(Path(folder) / f for f in sorted(files) if f.endswith((".yaml", ".yml")))
    return found


def repo_configs() -> list[tuple[Path, int]]:
    """(file, document index) of every config file: bare configs and ConfigMap manifests."""
    known = sections()
    found = []
    for path in yaml_files():
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if config_text(doc, known=known) is not None:
                found.append((path, i))
    return found


def doc_blocks() -> list[tuple[str, str]]:
    """(page:line, text) of every ```yaml block in docs/ and the READMEs."""
    pages = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", *sorted(ROOT.glob("examples/*/README.md"))]
    out = []
    for page in pages:
        text = page.read_text()
        for match in re.finditer(r"^```ya?ml\n(.*?)^```", text, flags=re.M | re.S):
            line = text.count("\n", 0, match.start()) + 1
            out.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return out


@pytest.fixture(name="pm", scope="module")
def _pm(example_plugins):
    """Every installed plugin, the example plugins included."""
    return get_plugin_manager()


class TestRepoExamples:
    def test_known_examples_are_found(self, example_plugins):
        """The finder sees the bundled example config and the example plugin's config."""
        names = {path.relative_to(ROOT).as_posix() for path, _ in repo_configs()}
        assert {"examples/config.yaml", "examples/metallb-netbox-pools/config.yaml"} <= names

    def test_every_example_config_parses(self, pm):
        """Each example config file (and ConfigMap manifest) is valid for the installed plugins."""
        for path, index in repo_configs():
            doc = list(yaml.safe_load_all(path.read_text()))[index]
            text = path.read_text() if "kind" not in doc else config_text(doc, known=set())
            config = parse_config(str(text), plugin_manager=pm)
            assert config.pools or config.peers, f"{path}: an example config with nothing in it"


class TestDocBlocks:
    def test_every_config_block_parses(self, pm):
        """Each yaml block in the docs that is a metallb config (by its sections) parses."""
        known = sections()
        checked = []
        for where, text in doc_blocks():
            doc = yaml.safe_load(text)
            config = config_text(doc, known=known)
            if config is None:
                continue
            if "kind" not in doc:
                config = text  # the block itself: literal scalars, as the parser reads them
            try:
                parse_config(config, plugin_manager=pm)
            except MetalLBError as exc:
                pytest.fail(f"{where}: the config shown does not parse: {exc}")
            checked.append(where)
        assert any(w.startswith("docs/configuration.md") for w in checked), checked
        assert any(w.startswith("docs/writing-plugins.md") for w in checked), checked
