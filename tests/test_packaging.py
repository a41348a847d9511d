"""Packaging: one `metallb` namespace from four folders, no shadowed stdlib, a bare install that works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What `pip install metallb` must not bring: each comes with an extra.
OPTIONAL = ("kubernetes", "prometheus_client", "httpx", "scapy")


class TestNamespace:
    def test_stdlib_operator_from_repo_root(self):
        """From the repo root (on sys.path, as with `python -c`), `import operator` is the stdlib."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; assert sys.path[0] == ''; import operator, collections; print(operator.__file__)",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.strip()
        assert not out.startswith(str(ROOT)), out
        assert out.endswith("operator.py")

    def test_metallb_operator_is_ours(self):
        """metallb.operator is this project's operator folder (a namespace portion)."""
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import metallb.operator.cli as c, metallb.allocator as a; print(c.__file__); print(a.__name__)",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out[0].endswith("operator/cli.py") and out[1] == "metallb.allocator"

    def test_operator_folder_has_no_init(self):
        """operator/ has no __init__.py, which would shadow the stdlib."""
        assert not (ROOT / "operator" / "__init__.py").exists()


@pytest.mark.slow
class TestWheel:
    def test_wheel_holds_only_the_metallb_namespace(self, tmp_path):
        """The built wheel's top level is `metallb/` with exactly the four subpackages."""
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(tmp_path),
                str(ROOT),
            ],
            check=True,
            capture_output=True,
            cwd=tmp_path,
        )
        (wheel,) = tmp_path.glob("metallb-*.whl")
        names = zipfile.ZipFile(wheel).namelist()
        top = {n.split("/")[0] for n in names}
        assert {t for t in top if not t.endswith(".dist-info")} == {"metallb"}
        subpackages = {n.split("/")[1] for n in names if n.startswith("metallb/") and n.count("/") >= 2}
        assert subpackages == {"allocator", "announcers", "operator", "plugins"}
        assert "metallb/__init__.py" not in names
        assert "metallb/operator/__init__.py" not in names
        for sub in subpackages:
            assert f"metallb/{sub}/py.typed" in names


class BareVenv:
    """A fresh virtual environment with the metallb wheel installed without extras."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = path / "bin" / "python"

    def run(self, *argv: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv (``metallb`` or ``python``) outside the repo, with nothing of ours on the path."""
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        return subprocess.run(
            [str(self.path / "bin" / argv[0]), *map(str, argv[1:])],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=120,
            cwd="/",
            env=env,
        )


@pytest.fixture(name="bare", scope="module")
def _bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BareVenv]:
    """Build the wheel from a clean copy of the sources and `pip install` it, bare, into a new venv."""
    tmp = tmp_path_factory.mktemp("bare")
    src = tmp / "src"  # a clean copy: stale build output in the checkout never reaches the wheel
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in ("allocator", "announcers", "operator", "plugins"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src],
        capture_output=True,
        text=True,
        cwd=tmp,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("metallb-*.whl")
    venv = BareVenv(tmp / "venv")
    created = subprocess.run([sys.executable, "-m", "venv", venv.path], capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    installed = venv.run("python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
    assert installed.returncode == 0, installed.stderr
    yield venv


@pytest.mark.slow
class TestBareInstall:
    def test_no_optional_dependency_installed(self, bare):
        """`pip install metallb` brings none of kubernetes, prometheus_client, httpx, scapy."""
        code = f"import importlib.util as u; print([m for m in {OPTIONAL!r} if u.find_spec(m)])"
        assert bare.run("python", "-c", code).stdout.strip() == "[]"

    def test_allocates_from_a_static_pool(self, bare):
        """The Python API allocates from a static pool."""
        code = """
from metallb.allocator import Allocator, parse_config
config = parse_config("address-pools: [{name: p, protocol: layer2, addresses: [192.0.2.8/30]}]")
alloc = Allocator(config=config)
print(alloc.allocate("default/web"), alloc.allocate("default/dns"), alloc.pool_of("default/web"))
"""
        result = bare.run("python", "-c", code)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["192.0.2.8", "192.0.2.9", "p"]

    def test_check_config_on_the_example(self, bare):
        """`metallb check-config examples/config.yaml` validates it."""
        result = bare.run("metallb", "check-config", "--quiet", ROOT / "examples" / "config.yaml")
        assert (result.returncode, result.stderr) == (0, "")

    def test_check_config_on_the_resource_example(self, bare):
        """`metallb check-config examples/resources.yaml` (every kind, AddressService too) needs only the base."""
        result = bare.run("metallb", "check-config", "--quiet", ROOT / "examples" / "resources.yaml")
        assert (result.returncode, result.stderr) == (0, "")

    def test_parses_every_built_in_kind(self, bare):
        """A config with layer-2, BGP and address-service pools parses: config hooks need only the base."""
        config = (
            "peers:\n- peer-address: 192.0.2.1\n  peer-asn: 64501\n  my-asn: 64500\n"
            "address-pools:\n- name: l2\n  protocol: layer2\n  addresses: [192.0.2.16/28]\n"
            "- name: routed\n  protocol: bgp\n  addresses: [198.51.100.0/24]\n"
            "  bgp-advertisements:\n  - aggregation-length: 32\n"
            "address-services:\n- name: leased\n  protocol: layer2\n  url: http://127.0.0.1:8000\n"
            "  cidrs: [203.0.113.0/24]\n"
        )
        result = bare.run("metallb", "check-config", "-", stdin=config)
        assert result.returncode == 0, result.stderr
        assert "valid: 3 pools, 1 peers" in result.stderr

    def test_every_built_in_plugin_loads(self, bare):
        """`metallb plugins` lists the four built-in plugins, none failed, and exits 0."""
        result = bare.run("metallb", "plugins", "--json")
        plugins = {p["name"]: p["error"] for p in json.loads(result.stdout)}
        assert plugins == {"static": "", "address-services": "", "layer2": "", "bgp": ""}, result.stderr
        assert result.returncode == 0

    def test_version(self, bare):
        """`metallb --version` works."""
        result = bare.run("metallb", "--version")
        assert (result.returncode, result.stdout.strip()) == (0, "metallb 0.1.0")

    @pytest.mark.parametrize(
        "argv",
        [
            ["controller"],
            ["speaker", "--node-name", "n1"],
            ["standalone", "--config", "c.yaml", "--services", "s.yaml"],
            ["status", "--kubeconfig", "/nonexistent"],
        ],
        ids=lambda argv: argv[0],
    )
    def test_operator_command_names_its_extra(self, bare, argv):
        """An operator command says in one line which extra to install, and exits 1 without a traceback."""
        result = bare.run("metallb", *argv)
        assert result.returncode == 1
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"metallb {argv[0]}: needs the Python module ")
        assert line.endswith("pip install 'metallb[operator]'")
