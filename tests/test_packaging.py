"""Packaging: one `metallb` namespace from four folders, and no shadowed stdlib."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
