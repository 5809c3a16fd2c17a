"""The bundle container: a deterministic zip (or a folder) of named files, read back strictly.

Members are stored uncompressed in sorted order with fixed timestamps and attributes, so the same
files always give the same bytes. Reading rebuilds the archive from its members and compares it
byte for byte with the file: one changed byte anywhere (a member, a header, the directory) is
refused with `BundleIntegrityError`. Pickled content (by extension or magic bytes) is refused
before anything else looks at it.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

from medsight.atomic import write_atomic
from medsight.errors import BundleIntegrityError, InvalidConfig

MANIFEST = "manifest.json"
ZIP_SUFFIXES = (".msb", ".zip")  # any other path is written as a folder
MAX_BUNDLE_BYTES = 4 << 30  # a bundle declaring more than this is refused before reading
_DATE = (1980, 1, 1, 0, 0, 0)
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".sav", ".dill")
#: the kinds of file a bundle may hold (checked by suffix; each kind is parsed strictly later)
ALLOWED_SUFFIXES = (".json", ".onnx", ".npy", ".skops", ".html")


def bundle_bytes(files: Mapping[str, bytes]) -> bytes:
    """The zip bytes of `files`: sorted names, stored, fixed date and attributes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return buf.getvalue()


def write_bundle(files: Mapping[str, bytes], out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write `files` as a zip at `out` (``.msb``/``.zip``) or else as a folder of plain files.

    An existing bundle is replaced only with ``overwrite=True``; the zip is written to a temporary
    file and moved into place, so a crash never leaves half a bundle under the final name.
    """
    path = Path(out)
    as_zip = path.suffix.lower() in ZIP_SUFFIXES
    for name in files:
        check_member_name(name)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise InvalidConfig(f"{path} already exists; choose another path or allow overwriting "
                                "(medsight bundle create --force)")
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                if not child.is_file():
                    raise InvalidConfig(f"{path} holds {child.name!r}, not a bundle file: not "
                                        "overwriting it")
                child.unlink()
        else:
            path.unlink()
    if not as_zip:
        path.mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            (path / name).write_bytes(files[name])
        return path
    return write_atomic(path, bundle_bytes(files))


def check_member_name(name: str) -> None:
    """Refuse nested, absolute or unexpected member names and pickled kinds of file."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or name != name.strip():
        raise BundleIntegrityError(f"bundle member {name!r}: only plain file names are allowed")
    lower = name.lower()
    if lower.endswith(_PICKLE_SUFFIXES):
        raise BundleIntegrityError(
            f"bundle member {name!r} is a pickle/joblib/torch file; bundles never hold pickled "
            "content (it could run code when loaded)")
    if not lower.endswith(ALLOWED_SUFFIXES):
        raise BundleIntegrityError(
            f"bundle member {name!r} is not a kind of file a bundle holds {ALLOWED_SUFFIXES}")


def refuse_pickle_content(name: str, data: bytes) -> None:
    """BundleIntegrityError when `data` is a pickle (protocol 2+ magic) or a torch/joblib zip."""
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        raise BundleIntegrityError(f"bundle member {name!r} holds pickled data; refused")
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                inner_names = inner.namelist()
        except zipfile.BadZipFile as exc:
            raise BundleIntegrityError(f"bundle member {name!r} is a damaged zip: {exc}") from exc
        pickled = [n for n in inner_names if n.lower().endswith(_PICKLE_SUFFIXES)]
        if pickled:
            raise BundleIntegrityError(
                f"bundle member {name!r} holds pickled data ({pickled[0]}); refused")


def read_bundle(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every member of the bundle at `path` (zip or folder), checked as the module says."""
    p = Path(path)
    if p.is_dir():
        return _read_folder(p)
    if not p.is_file():
        raise BundleIntegrityError(f"bundle {p} not found")
    raw = p.read_bytes()
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except Exception as exc:  # a damaged directory raises BadZipFile, ValueError, EOFError ...
        raise BundleIntegrityError(f"{p} is not a readable bundle (zip): {exc}") from exc
    files: dict[str, bytes] = {}
    with zf:
        infos = zf.infolist()
        if sum(i.file_size for i in infos) > MAX_BUNDLE_BYTES:
            raise BundleIntegrityError(f"{p} declares more than {MAX_BUNDLE_BYTES} bytes; refused")
        for info in infos:
            check_member_name(info.filename)
            if info.filename in files:
                raise BundleIntegrityError(f"{p}: member {info.filename!r} appears twice")
            try:
                files[info.filename] = zf.read(info)
            except Exception as exc:  # bad CRC, header mismatch, "encrypted" flag, bad method ...
                raise BundleIntegrityError(
                    f"{p}: member {info.filename!r} is damaged ({exc})") from exc
            refuse_pickle_content(info.filename, files[info.filename])
    if bundle_bytes(files) != raw:
        raise BundleIntegrityError(
            f"{p}: the zip container was altered (headers, order or extra bytes differ from what "
            "medsight writes); rebuild the bundle with `medsight bundle create`")
    return files


def _read_folder(p: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for child in sorted(p.iterdir()):
        if not child.is_file() or child.is_symlink():
            raise BundleIntegrityError(f"{p}: {child.name!r} is not a plain file; refused")
        check_member_name(child.name)
        files[child.name] = child.read_bytes()
        refuse_pickle_content(child.name, files[child.name])
    return files
