"""The documentation site builds with `mkdocs build --strict`, and a broken link fails it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """What CI runs: mkdocs build --strict (any warning fails)."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def nav_pages(nav: list) -> list[str]:
    pages = []
    for item in nav:
        for value in item.values():
            pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


class TestSite:
    def test_strict_build_has_every_page(self, tmp_path):
        """The site builds without a warning and has a page for every nav entry and every doc."""
        result = build(ROOT / "mkdocs.yml", tmp_path / "site")
        assert result.returncode == 0, result.stderr
        pages = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
        assert {p.name for p in (ROOT / "docs").glob("*.md")} == set(pages)
        for page in pages:
            html = "index.html" if page == "index.md" else f"{page.removesuffix('.md')}/index.html"
            assert (tmp_path / "site" / html).is_file(), html

    def test_broken_link_fails_the_build(self, tmp_path):
        """A link to a page that does not exist fails the strict build, naming it."""
        shutil.copytree(ROOT / "docs", tmp_path / "docs")
        shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
        page = tmp_path / "docs" / "quickstart.md"
        page.write_text(page.read_text() + "\nSee [nowhere](no-such-page.md).\n")
        result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
        assert result.returncode != 0
        assert "no-such-page.md" in result.stderr
