"""What a new user does first: build the wheel, install it in a fresh virtual environment, try the commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from metallb.allocator import Hooks, get_plugin_manager
from metallb.allocator.config import CORE_SECTIONS

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"tests", "build", "dist", "site", "node_modules"}
#: Never copied into the build: stale build output would leak deleted files into the wheel.
IGNORED = shutil.ignore_patterns(
    "build", "dist", "site", "*.egg-info", ".*", "__pycache__", "node_modules", "tests", "bench"
)


def run(*argv: str | Path, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, cwd=cwd or "/", env=env
    )
    return result


def wheel(source: Path, out: Path) -> Path:
    """Build *source*'s wheel from a clean copy, with this environment's pip."""
    copy = out / "src" / source.name
    shutil.copytree(source, copy, ignore=IGNORED)
    built = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", out, copy)
    assert built.returncode == 0, built.stderr
    name = source.name.replace("-", "_") if source != ROOT else "metallb"
    (found,) = out.glob(f"{name}-*.whl")
    return found


def example_configs() -> list[Path]:
    """Every config file shipped: bare configs (a mapping with a config section) and ConfigMap manifests."""
    known = {*CORE_SECTIONS, *Hooks(get_plugin_manager()).pool_sections()}
    paths = []
    for folder, dirs, files in os.walk(ROOT):  # pruned: never into .venv, build output or tests
        dirs[:] = sorted(
            d for d in dirs if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
        )
        paths.extend(Path(folder) / f for f in sorted(files) if f.endswith((".yaml", ".yml")))
    found = []
    for path in paths:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        bare = len(docs) == 1 and "kind" not in docs[0] and docs[0].keys() & known
        configmap = any(d.get("kind") == "ConfigMap" and "config" in (d.get("data") or {}) for d in docs)
        if bare or configmap:
            found.append(path)
    return found


@pytest.mark.slow
class TestNewcomer:
    def test_fresh_install_runs_every_command(self, tmp_path):
        """The wheel installs with every extra into a new venv; --help, check-config on every example config,
        and plugins work (tests/test_packaging.py checks the bare install)."""
        venv = tmp_path / "venv"
        created = run(sys.executable, "-m", "venv", venv)
        assert created.returncode == 0, created.stderr
        python, metallb = venv / "bin" / "python", venv / "bin" / "metallb"
        wheels = [f"{wheel(ROOT, tmp_path)}[all]"]
        # The example plugin, as a user trying it would add it (its config needs it).
        wheels += [wheel(p.parent, tmp_path) for p in sorted((ROOT / "examples").glob("*/setup.cfg"))]
        installed = run(python, "-m", "pip", "install", "-q", *wheels)
        assert installed.returncode == 0, installed.stderr

        imported = run(python, "-c", "from metallb.allocator.testing import JsonApiStub, check_source_contract")
        assert imported.returncode == 0, imported.stderr  # the test helpers ship in the wheel

        helped = run(metallb, "--help")
        assert helped.returncode == 0 and "examples:" in helped.stdout, helped.stderr
        version = run(metallb, "--version")
        assert version.stdout.startswith("metallb "), version.stderr

        configs = example_configs()
        assert ROOT / "examples" / "config.yaml" in configs
        for config in configs:
            checked = run(metallb, "check-config", config)
            assert checked.returncode == 0, f"{config}: {checked.stderr}"
            assert "valid" in checked.stderr

        plugins = run(metallb, "plugins", "--json")
        assert plugins.returncode == 0, plugins.stderr
        names = {p["name"] for p in json.loads(plugins.stdout)}
        assert {"static", "address-services", "layer2", "bgp", "netbox-pools"} <= names

        table = run(metallb, "plugins")
        assert table.stdout.splitlines()[0].split()[:2] == ["PLUGIN", "VERSION"]
