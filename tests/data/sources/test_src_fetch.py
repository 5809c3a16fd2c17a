"""MedMNIST download cache: reuse without network, MD5 checks, atomic replacement (no network)."""

from __future__ import annotations

import io
import shutil
import urllib.error
from pathlib import Path

import pytest

from medsight.data import fetch
from medsight.data.fetch import fetch_medmnist, file_md5
from medsight.data.sources import medmnist_info
from medsight.errors import MedsightError

BREAST_MD5 = "750601b1f35ba3300ea97c75c52ff8f6"


class _Response(io.BytesIO):
    """What urlopen returns, as far as fetch uses it: a byte stream with headers."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def _no_network(url: str, timeout: float) -> io.BytesIO:
    raise AssertionError(f"network used for {url}")


def _serve(data: bytes, seen: list[str]):  # noqa: ANN202 - a tiny test double
    def opener(url: str, timeout: float) -> _Response:
        seen.append(url)
        return _Response(data)

    return opener


def test_cached_file_with_right_md5_is_reused_without_network(
    breastmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = tmp_path / "medmnist" / "breastmnist.npz"
    cached.parent.mkdir()
    shutil.copyfile(breastmnist, cached)
    monkeypatch.setattr(fetch, "_open_url", _no_network)
    assert fetch_medmnist("breastmnist", cache_dir=tmp_path) == cached


def test_cache_dir_defaults_to_env(
    breastmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "medmnist").mkdir()
    shutil.copyfile(breastmnist, tmp_path / "medmnist" / "breastmnist.npz")
    monkeypatch.setenv("MEDSIGHT_CACHE", str(tmp_path))
    monkeypatch.setattr(fetch, "_open_url", _no_network)
    assert fetch_medmnist("breast").parent.parent == tmp_path


def test_download_is_verified_and_reported(
    breastmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    monkeypatch.setattr(fetch, "_open_url", _serve(breastmnist.read_bytes(), seen))
    calls: list[tuple[int, int | None]] = []
    path = fetch_medmnist(
        "breastmnist", cache_dir=tmp_path, progress=lambda d, t: calls.append((d, t))
    )
    assert seen == ["https://zenodo.org/records/10519652/files/breastmnist.npz?download=1"]
    assert file_md5(path) == BREAST_MD5
    assert calls[-1] == (559580, 559580)
    assert [p.name for p in path.parent.iterdir()] == ["breastmnist.npz"]  # no temp left


def test_wrong_cached_file_is_fetched_again_and_bad_download_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = tmp_path / "medmnist" / "breastmnist.npz"
    cached.parent.mkdir()
    cached.write_bytes(b"truncated")
    seen: list[str] = []
    monkeypatch.setattr(fetch, "_open_url", _serve(b"not the official file", seen))
    with pytest.raises(MedsightError, match="checksum mismatch.*expected 750601b1"):
        fetch_medmnist("breastmnist", cache_dir=tmp_path)
    assert len(seen) == 1
    assert list(cached.parent.iterdir()) == []  # neither the stale file nor a partial download


def test_size_url_and_explicit_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"pretend volume"
    seen: list[str] = []
    monkeypatch.setattr(fetch, "_open_url", _serve(payload, seen))
    import hashlib

    md5 = hashlib.md5(payload).hexdigest()
    path = fetch_medmnist("adrenalmnist3d", size=64, cache_dir=tmp_path, md5=md5)
    assert path.name == "adrenalmnist3d_64.npz" and path.read_bytes() == payload
    assert seen == ["https://zenodo.org/records/10519652/files/adrenalmnist3d_64.npz?download=1"]


def test_unknown_md5_is_refused_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = medmnist_info.INFO["retinamnist"]
    monkeypatch.setitem(entry.md5, 128, "")  # pretend the catalogue lacks this checksum
    monkeypatch.setattr(fetch, "_open_url", _serve(b"data", []))
    with pytest.raises(MedsightError, match="no official MD5.*allow_unverified"):
        fetch_medmnist("retinamnist", size=128, cache_dir=tmp_path)
    path = fetch_medmnist("retinamnist", size=128, cache_dir=tmp_path, allow_unverified=True)
    assert path.read_bytes() == b"data"


def test_unpublished_size_and_unknown_subset(tmp_path: Path) -> None:
    with pytest.raises(MedsightError, match=r"sizes \[28, 64\]"):
        fetch_medmnist("adrenalmnist3d", size=128, cache_dir=tmp_path)
    with pytest.raises(MedsightError, match="unknown MedMNIST subset"):
        fetch_medmnist("kneemnist", cache_dir=tmp_path)


def test_network_failure_says_where_to_put_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, timeout: float) -> io.BytesIO:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(fetch, "_open_url", offline)
    with pytest.raises(MedsightError, match="cannot download .*place the file at"):
        fetch_medmnist("breastmnist", cache_dir=tmp_path)
    assert list((tmp_path / "medmnist").iterdir()) == []
