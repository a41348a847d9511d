"""Fixtures for the documentation tests: the repo's paths and the example plugins installed."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(name="example_plugins", scope="session")
def _example_plugins():
    """Install every example plugin package (examples/*/setup.cfg) with pip, so their configs parse."""
    packages = sorted(p.parent for p in (ROOT / "examples").glob("*/setup.cfg"))
    for package in packages:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(package)],
            check=True,
            capture_output=True,
            cwd="/",
        )
    importlib.invalidate_caches()
    return packages
