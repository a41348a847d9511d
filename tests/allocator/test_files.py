"""metallb.allocator.files: the one way metallb replaces a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from metallb.allocator.files import write_atomically


class TestWriteAtomically:
    def test_writes_and_replaces(self, tmp_path: Path) -> None:
        """The file holds the new text, as a new inode renamed over the old one, with no temporary file left."""
        path = tmp_path / "state.json"
        write_atomically(path, "one\n")
        first = path.stat().st_ino
        write_atomically(str(path), "two\n")
        assert path.read_text() == "two\n" and path.stat().st_ino != first
        assert [p.name for p in tmp_path.iterdir()] == ["state.json"]

    def test_owner_only_and_folders_created(self, tmp_path: Path) -> None:
        """Missing folders are created; the file is readable by its owner only."""
        path = tmp_path / "a" / "b" / "state.json"
        write_atomically(path, "x")
        assert path.read_text() == "x" and path.stat().st_mode & 0o777 == 0o600

    def test_failure_leaves_the_old_file(self, tmp_path: Path) -> None:
        """A write that fails (text that cannot be encoded) keeps the old file and removes the temporary one."""
        path = tmp_path / "state.json"
        write_atomically(path, "old")
        with pytest.raises(UnicodeEncodeError):
            write_atomically(path, "\udcff", prefix=".test-")
        assert path.read_text() == "old"
        assert [p.name for p in tmp_path.iterdir()] == ["state.json"]

    def test_temporary_file_named_by_prefix(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The temporary file lives beside the target and starts with the prefix given."""
        seen: list[str] = []
        real = os.replace

        def spy(src: str, dst: str) -> None:
            seen.append(os.path.basename(src))
            real(src, dst)

        monkeypatch.setattr(os, "replace", spy)
        write_atomically(tmp_path / "s.json", "x", prefix=".mine-")
        assert len(seen) == 1 and seen[0].startswith(".mine-") and seen[0].endswith(".tmp")
