"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

Readers see the old file or the new one, never a partial one, because the rename is atomic on
POSIX file systems when both names are in one folder. An interrupted write leaves no temporary
file behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def _new_file_mode() -> int:
    """Permissions that ``open`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _replace_atomically(path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``mkstemp`` creates its file readable by the owner only, so the mode is reset to what a
    plain ``open`` would give before the file takes its final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _new_file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    _replace_atomically(path, lambda f: f.write(text.encode("utf-8")))


def write_json_atomic(path, payload, indent: int = 2) -> None:
    """Write ``payload`` as JSON to ``path`` atomically. NaN is written as ``NaN``."""
    write_text_atomic(path, json.dumps(payload, indent=indent) + "\n")


def save_npz_atomic(path, arrays: dict) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz`` atomically."""
    _replace_atomically(path, lambda f: np.savez(f, **arrays))
