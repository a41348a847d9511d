"""`metallb new-plugin NAME` writes a working plugin: installed with pip into a fresh venv, its tests pass."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from metallb.operator import newplugin

METALLB = [sys.executable, "-m", "metallb.operator"]


def new_plugin(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`metallb new-plugin ...` as a user runs it."""
    return subprocess.run([*METALLB, "new-plugin", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


class TestNames:
    @pytest.mark.parametrize(
        ("name", "dist", "module", "cls"),
        [
            ("file-pools", "metallb-file-pools", "metallb_file_pools", "FilePoolsSource"),
            ("ipam", "metallb-ipam", "metallb_ipam", "IpamSource"),
            ("cloud2-ips", "metallb-cloud2-ips", "metallb_cloud2_ips", "Cloud2IpsSource"),
        ],
    )
    def test_names_follow_from_the_section(self, name, dist, module, cls):
        """The distribution, module and class names derive from NAME."""
        assert newplugin.skeleton(name) == newplugin.Skeleton(name=name, dist=dist, module=module, cls=cls)

    @pytest.mark.parametrize("name", ["File", "file_pools", "-pools", "pools-", "2pools", "a--b", "", "x" * 41])
    def test_bad_names(self, name):
        """A NAME that cannot be a config section key is a ValueError naming the rule."""
        with pytest.raises(ValueError, match="must be lower-case letters and digits"):
            newplugin.skeleton(name)

    @pytest.mark.parametrize("name", ["file-pools", "ipam", "cloud2-ips"])
    def test_rendered_files_are_complete(self, name):
        """Every placeholder is filled and the Python files parse."""
        names = newplugin.skeleton(name)
        for target, template in names.files().items():
            text = newplugin.render((newplugin.TEMPLATES / template).read_text(), names)
            assert "{{" not in text and "}}" not in text, target
            if target.endswith(".py"):
                ast.parse(text)


class TestCommand:
    def test_writes_the_skeleton(self, tmp_path):
        """The files land in ./metallb-NAME, and the next steps are printed."""
        result = new_plugin("demo-pools", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        folder = tmp_path / "metallb-demo-pools"
        assert sorted(p.name for p in folder.iterdir()) == [
            "README.md",
            "metallb_demo_pools.py",
            "pyproject.toml",
            "setup.cfg",
            "test_metallb_demo_pools.py",
        ]
        assert "demo-pools = metallb_demo_pools" in (folder / "setup.cfg").read_text()
        assert "pip install ./metallb-demo-pools" in result.stdout

    def test_refusals_are_one_line(self, tmp_path):
        """A bad name, a section that exists, or a folder in use: one line on stderr, status 1, nothing written."""
        (tmp_path / "used").mkdir()
        (tmp_path / "used" / "keep.txt").write_text("mine")
        for args, words in [
            (("Bad_Name",), 'plugin name "Bad_Name": must be lower-case'),
            (("address-pools",), 'the config section "address-pools" already exists'),
            (("demo-pools", "--directory", "used"), '"used" exists and is not empty'),
        ]:
            result = new_plugin(*args, cwd=tmp_path)
            assert result.returncode == 1
            (line,) = result.stderr.splitlines()
            assert words in line
        assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]
        assert [p.name for p in (tmp_path / "used").iterdir()] == ["keep.txt"]

    def test_listed_in_help(self):
        """`metallb --help` lists new-plugin."""
        result = subprocess.run([*METALLB, "--help"], capture_output=True, text=True, timeout=60)
        assert "new-plugin" in result.stdout


@pytest.mark.slow
class TestInstalled:
    def test_generated_plugin_installs_and_passes_its_tests(self, fresh_venv, tmp_path):
        """In a fresh venv: pip install the skeleton, `metallb plugins` lists it, and its tests (pytest) pass."""
        assert new_plugin("demo-pools", cwd=tmp_path).returncode == 0
        steps = [
            "pip install ./metallb-demo-pools",
            "pip install pytest",
            "metallb plugins",
            "python -m pytest -q metallb-demo-pools",
        ]
        outputs = {}
        for step in steps:
            result = fresh_venv.run(step, cwd=tmp_path)
            assert result.returncode == 0, f"$ {step}\n{result.stdout}{result.stderr}"
            outputs[step] = result.stdout
        listed = [line.split() for line in outputs["metallb plugins"].splitlines()]
        assert ["demo-pools", "0.1.0", "metallb_demo_pools", "make_source,", "parse_pool,", "pool_sections"] in listed
        assert "4 passed" in outputs["python -m pytest -q metallb-demo-pools"]
