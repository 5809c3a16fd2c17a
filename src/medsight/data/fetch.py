"""Download MedMNIST subsets from their official Zenodo record into a local cache, MD5-checked.

Files go to ``$MEDSIGHT_CACHE`` (default ``~/.cache/medsight``) under ``medmnist/``. A download is
written to a temporary file, verified, then renamed into place, so the cache never holds a
partial or corrupt file under the final name; a cached file with the right MD5 is reused
without touching the network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from medsight.data.sources.medmnist_info import lookup
from medsight.errors import MedsightError

log = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$MEDSIGHT_CACHE`` when set, else ``~/.cache/medsight``."""
    env = os.environ.get("MEDSIGHT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medsight"


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _open_url(url: str, timeout: float) -> IO[bytes]:
    """Open a URL for reading (the one place that touches the network)."""
    request = urllib.request.Request(url, headers={"User-Agent": "medsight"})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (https URL we build)


def fetch_medmnist(
    name: str,
    size: int = 28,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    md5: str | None = None,
    allow_unverified: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Return the local path of MedMNIST subset `name` at `size` px, downloading it if needed.

    The MD5 is checked against the official table (or `md5` when given). Without a known MD5
    the call is refused unless ``allow_unverified=True``. `progress(bytes_done, bytes_total)` is
    called while downloading (total is None when the server does not say).
    """
    info = lookup(name)
    if size not in info.sizes:
        raise MedsightError(f"{info.flag} is published at sizes {list(info.sizes)}, not {size}")
    expected = (md5 or info.md5.get(size) or "").lower() or None
    if expected is None and not allow_unverified:
        raise MedsightError(
            f"no official MD5 is known for {info.file_name(size)}; pass md5='...' to verify the "
            "download, or allow_unverified=True to accept it unchecked"
        )
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = folder / "medmnist" / info.file_name(size)
    url = info.url(size)

    if target.is_file():
        if expected is None:
            log.warning("using cached %s without an MD5 check", target)
            return target
        actual = file_md5(target)
        if actual == expected:
            return target
        log.warning("cached %s has MD5 %s, not %s; downloading again", target, actual, expected)
        target.unlink()

    target.parent.mkdir(parents=True, exist_ok=True)
    _download(url, target, expected, progress, timeout)
    return target


def _download(
    url: str, target: Path, expected: str | None, progress: Progress | None, timeout: float
) -> None:
    """Stream `url` into a temp file next to `target`, verify the MD5, then rename atomically."""
    digest = hashlib.md5(usedforsecurity=False)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out, _open_url(url, timeout) as response:
                total = _content_length(response)
                done = 0
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MedsightError(
                f"cannot download {url}: {reason}. Without network access, place the file at "
                f"{target} (it is checked against the official MD5)"
            ) from exc
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise MedsightError(
                f"checksum mismatch for {url}: MD5 {actual}, expected {expected}; the download "
                "is corrupt or not the official file, so it was discarded"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _content_length(response: IO[bytes]) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value and str(value).isdigit() else None
