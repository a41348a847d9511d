"""docs/writing-plugins.md's first plugin works as written: every block of the section is run, in a fresh venv.

A block of the section is either a file (its first line is a comment naming
it: ``# metallb-file-pools/setup.cfg``), written where it says, or a
``console`` session: ``$ command`` lines, run in order, each followed by the
output it must print. In the output, whitespace runs count as one space, a
line ``...`` stands for any lines, and ``...`` inside a line for any text.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest
from metallb.operator import newplugin

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "writing-plugins.md"
HEADING = "## Your first plugin"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
FILE_COMMENT = re.compile(r"# (?P<path>[^\s:]+)")


@attrs.frozen
class Block:
    """One fenced block of the section: a file to write, or a console session."""

    lang: str
    body: str
    line: int

    @property
    def path(self) -> str | None:
        """The file the block is, from its first-line comment; None for a console session."""
        match = FILE_COMMENT.match(self.body.partition("\n")[0])
        return None if self.lang == "console" or match is None else match.group("path")

    def session(self) -> list[tuple[str, list[str]]]:
        """(command, expected output lines) pairs of a console block."""
        steps: list[tuple[str, list[str]]] = []
        for text in self.body.splitlines():
            if text.startswith("$ "):
                steps.append((text[2:], []))
            else:
                assert steps, f"line {self.line}: output before the first $ command"
                steps[-1][1].append(text)
        return steps


def section_blocks() -> list[Block]:
    """Every fenced block between the first plugin's heading and the next heading of its level."""
    text = DOC.read_text()
    start = text.index(HEADING)
    end = text.index("\n## ", start + len(HEADING))
    return [
        Block(lang=m.group("lang"), body=m.group("body"), line=text.count("\n", 0, start + m.start()) + 1)
        for m in FENCE.finditer(text, start, end)
    ]


def _norm(line: str) -> str:
    return " ".join(line.split())


def _line_matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in _norm(expected).split("..."))
    return re.fullmatch(pattern, _norm(actual)) is not None


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Whether the *expected* lines appear in *actual*, in order and together; a ``...`` line skips any lines."""

    def at(e: int, a: int) -> bool:
        if e == len(expected):
            return True
        if expected[e].strip() == "...":
            return any(at(e + 1, k) for k in range(a, len(actual) + 1))
        return a < len(actual) and _line_matches(expected[e], actual[a]) and at(e + 1, a + 1)

    return any(at(0, start) for start in range(len(actual) + 1))


class TestSection:
    def test_every_block_is_a_file_or_a_session(self):
        """Each block names its file or is a console session, so the test below runs all of them."""
        blocks = section_blocks()
        files = [b.path for b in blocks if b.path]
        sessions = [b for b in blocks if b.lang == "console"]
        assert len(files) + len(sessions) == len(blocks), [b.line for b in blocks if not b.path and b not in sessions]
        assert set(files) >= {
            "metallb-file-pools/pyproject.toml",
            "metallb-file-pools/setup.cfg",
            "metallb-file-pools/metallb_file_pools.py",
            "metallb-file-pools/test_metallb_file_pools.py",
            "config.yaml",
        }
        for path in files:
            assert not Path(path).is_absolute() and ".." not in Path(path).parts, path
        commands = [command for block in sessions for command, _ in block.session()]
        for needed in ("pip install ./metallb-file-pools", "metallb plugins", "metallb check-config", "metallb allocate"):
            assert any(c.startswith(needed) for c in commands), needed
        assert any("pytest" in c for c in commands)

    def test_plugin_files_are_what_new_plugin_writes(self):
        """`metallb new-plugin file-pools` writes exactly the plugin's files shown."""
        names = newplugin.skeleton("file-pools")
        shown = {b.path: b.body for b in section_blocks() if b.path}
        for target, template in names.files().items():
            path = f"{names.dist}/{target}"
            if path in shown:
                assert shown[path] == newplugin.render((newplugin.TEMPLATES / template).read_text(), names), path
        assert sum(1 for p in shown if p.startswith(f"{names.dist}/")) == 4

    def test_output_matching(self):
        """The matcher: whitespace runs are one space, `...` lines skip lines, `...` in a line is any text."""
        assert output_matches(["a  b", "...", "d ... f"], ["x", "a b", "c", "c", "d e f", "y"])
        assert not output_matches(["a", "b"], ["a", "c", "b"])
        assert output_matches(["...", "b"], ["b"])


@pytest.mark.slow
class TestAsWritten:
    def test_every_block_runs(self, fresh_venv, tmp_path):
        """In an empty folder and a fresh venv: write each file, run each command, see the output shown."""
        work = tmp_path / "work"
        work.mkdir()
        for block in section_blocks():
            if block.path:
                target = work / block.path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.body)
                continue
            for command, expected in block.session():
                result = fresh_venv.run(command, cwd=work)
                output = result.stdout + result.stderr
                where = f"docs/writing-plugins.md line {block.line}: $ {command}"
                assert result.returncode == 0, f"{where}: exit status {result.returncode}\n{output}"
                assert output_matches(expected, output.splitlines()), (
                    f"{where}: the output shown is not what it prints\nshown:\n" + "\n".join(expected) + f"\nprinted:\n{output}"
                )
