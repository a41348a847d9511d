"""Every example config in the repo and every config shown in the docs parses, in both formats; conversions round-trip."""

from __future__ import annotations

import os
import re
from pathlib import Path

import attrs
import pytest
import yaml
from metallb.allocator import Hooks, MetalLBError, get_plugin_manager, parse_config, parse_resources
from metallb.allocator.config import CORE_SECTIONS
from metallb.allocator.convert import config_to_resources, dump_resources

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
            docs = list(yaml.safe_load_all(text))
            if len(docs) != 1:
                continue  # a stream of resources: TestResourceExamples parses those
            doc = docs[0]
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


def comparable(config):
    """What a conversion must keep: pools by name (not their section), peers (not their names), communities, BFD.

    A ConfigMap pool's node-selectors (a metallb extension) become its advertisements' nodeSelectors as
    resources, with the same effect: compared after moving them there.
    """
    pools = {}
    for name, spec in config.pools.items():
        ads = tuple(
            attrs.evolve(a, node_selectors=a.node_selectors or spec.node_selectors)
            if hasattr(a, "node_selectors")
            else a
            for a in spec.advertisements
        )
        pools[name] = attrs.evolve(spec, kind="", advertisements=ads, node_selectors=())
    peers = sorted((attrs.evolve(p, name="") for p in config.peers), key=repr)
    return pools, peers, dict(config.communities), dict(config.bfd_profiles)


class TestConversion:
    def test_every_example_config_round_trips(self, pm):
        """convert-config's resources parse back to the same pools, peers, advertisements and communities."""
        checked = []
        for path, index in repo_configs():
            doc = list(yaml.safe_load_all(path.read_text()))[index]
            text = path.read_text() if "kind" not in doc else config_text(doc, known=set())
            original = parse_config(str(text), plugin_manager=pm)
            conversion = config_to_resources(original, plugin_manager=pm)
            again = parse_resources(list(conversion.objects), plugin_manager=pm)
            assert comparable(again) == comparable(original), path
            stream = parse_config(dump_resources(conversion.objects), plugin_manager=pm)  # as text, through YAML
            assert comparable(stream) == comparable(original), path
            checked.append(path.relative_to(ROOT).as_posix())
        assert {"examples/config.yaml", "examples/metallb-netbox-pools/config.yaml"} <= set(checked)


def resource_files() -> list[Path]:
    """Every YAML file of the repo holding MetalLB configuration resources."""
    found = []
    for path in yaml_files():
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        if any(str(d.get("apiVersion", "")).startswith("metallb.io/") for d in docs):
            found.append(path)
    return found


class TestResourceExamples:
    def test_every_resource_example_parses(self, pm):
        """Each example file of resources is a valid configuration for the installed plugins."""
        files = resource_files()
        assert ROOT / "examples" / "resources.yaml" in files
        for path in files:
            config = parse_config(path.read_text(), plugin_manager=pm)
            assert config.pools, f"{path}: a resource example without pools"

    def test_every_resource_block_in_the_docs_parses(self, pm):
        """Each yaml block in the docs holding MetalLB resources (with metallb.io kinds) parses as a whole."""
        checked = []
        for where, text in doc_blocks():
            docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
            if not any(str(d.get("apiVersion", "")).startswith("metallb.io/") for d in docs):
                continue
            if not any(d.get("kind") in ("IPAddressPool", "AddressService") for d in docs):
                continue  # a fragment (one advertisement): shown with its pools elsewhere
            try:
                parse_config(text, plugin_manager=pm)
            except MetalLBError as exc:
                pytest.fail(f"{where}: the resources shown do not parse: {exc}")
            checked.append(where)
        assert any(w.startswith("docs/configuration.md") for w in checked), checked
        assert any(w.startswith("docs/migration.md") for w in checked), checked
