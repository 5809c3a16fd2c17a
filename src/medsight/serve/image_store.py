"""De-identified uploads on disk, named by their sha256 and written atomically (`write_atomic`),
so a stored record never points at a half-written image."""

from __future__ import annotations

from pathlib import Path

from medsight.atomic import write_atomic


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
        write_atomic(path, data)
        return rel

    def get(self, rel: str) -> bytes:
        path = (self.data_dir / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"not an image of this store: {rel}")
        return path.read_bytes()

