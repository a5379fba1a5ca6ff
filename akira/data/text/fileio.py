"""Small file helpers: content hashes; atomic writes come from `akira.atomic` (re-exported here)."""
from __future__ import annotations

import hashlib
import os

from akira.atomic import atomic_write_bytes, atomic_write_json, commit, fsync_dir, temp_path

__all__ = ["atomic_write_bytes", "atomic_write_json", "commit", "file_sha256", "fsync_dir", "temp_path"]


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in `block`-byte pieces (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()
