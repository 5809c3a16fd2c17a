"""De-identified uploads on disk, named by their sha256 and written atomically (temporary file,
fsync, rename, fsync of the folder), so a stored record never points at a half-written image."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class ImageStore:
    """`images/<aa>/<sha256>.<ext>` under the data directory; identical images are stored once."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "images"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def relative(self, sha256: str, ext: str) -> str:
        return f"images/{sha256[:2]}/{sha256}.{ext}"

    def put(self, data: bytes, sha256: str, ext: str) -> str:
        """Store `data` (whose sha256 is `sha256`); returns its path relative to the data dir."""
        rel = self.relative(sha256, ext)
        path = self.data_dir / rel
        if path.exists() and path.stat().st_size == len(data):
            return rel
        path.parent.mkdir(exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return rel

    def get(self, rel: str) -> bytes:
        path = (self.data_dir / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"not an image of this store: {rel}")
        return path.read_bytes()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
