"""Files metallb writes (standalone's state, the address service's leases): replaced whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["write_atomically"]


def write_atomically(path: str | os.PathLike[str], text: str, *, prefix: str = ".metallb-") -> None:
    """Replace *path* with *text* so that readers, and the file after a crash, hold the old or the new text.

    The text goes to a temporary file (named *prefix*...) in the same folder,
    is flushed to disk, then renamed over *path*; the folder is synced so the
    rename survives a crash too. Missing folders are created. The file is
    readable by its owner only (``mkstemp``'s mode 0600). On any failure the
    temporary file is removed and *path* is untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """fsync a folder, so a rename in it is durable; best effort (not every platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
