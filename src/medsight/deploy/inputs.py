"""What a Predictor can be given to read: files, bytes, DICOM series, and the walk of the paths a
user names (files, folders recursively, a folder's DICOM slices grouped into series, manifests). The DICOM
series functions (pydicom) are imported only when a series is met, so PNG inputs never load them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsight.deploy.manifest_inputs import ManifestRow, common_fields, is_manifest, read_manifest
from medsight.io import read_image, sniff_format
from medsight.io.image import Image

_HEAD = 132  # enough bytes to recognise DICOM by its "DICM" at offset 128
#: documents that sit next to images in dataset folders; skipped (and counted) in folder walks
DOCUMENT_SUFFIXES = {".txt", ".csv", ".tsv", ".json", ".md", ".xml", ".html", ".htm", ".yaml",
                     ".yml", ".pdf", ".py", ".log"}


@dataclass(frozen=True)
class SeriesInput:
    """The files of one DICOM series, read as one volume; `label` names it in results."""

    files: tuple[str, ...]
    label: str


Input = str | os.PathLike[str] | bytes | Image | SeriesInput


def source_label(item: Input) -> str:
    """How results name an input: its path, the series folder and UID, or ``<bytes>``."""
    if isinstance(item, Image):
        return item.source
    if isinstance(item, SeriesInput):
        return item.label
    if isinstance(item, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(item)


def read_input(item: Input) -> Image:
    """Read one input (the decode pool's work function: top level, picklable)."""
    if isinstance(item, Image):
        return item
    if isinstance(item, SeriesInput):
        from medsight.io.dicom_series import read_dicom_series

        return read_dicom_series(list(item.files))
    return read_image(item)


def gather_inputs(paths: Iterable[str | os.PathLike[str]], volumes: bool,
                  on_skip: Callable[[str], None] | None = None,
                  fields: dict[int, dict[str, Any]] | None = None) -> Iterator[Input]:
    """The inputs under `paths`, lazily, in a stable order: files as given, folders walked
    recursively (sorted; hidden entries and documents such as ``.csv``/``.txt`` files skipped,
    each passed to `on_skip`), and a ``.csv`` file given explicitly read as a manifest
    (`medsight.deploy.manifest_inputs`): its rows' files in manifest order, a row naming a
    folder walked as a folder is. With `volumes` (a 3D model) the DICOM files of each folder
    (of each run of manifest rows in one folder) are grouped by SeriesInstanceUID and each series
    is one input; a file that is missing is still yielded so that reading it reports why.

    Manifests are read (and a bad one refused) when this is called, before any input is
    yielded. With `fields`, the results fields of each manifest input (``source``: its manifest row
    and DICOM UIDs) are put in it under the input's ordinal as the input is yielded."""
    paths = [Path(p) for p in paths]
    manifests = {i: read_manifest(p) for i, p in enumerate(paths) if is_manifest(p)}
    return _gather(paths, manifests, volumes, on_skip, fields)


def _gather(paths: list[Path], manifests: dict[int, list[ManifestRow]], volumes: bool,
            on_skip: Callable[[str], None] | None,
            fields: dict[int, dict[str, Any]] | None) -> Iterator[Input]:
    ordinal = 0
    for i, path in enumerate(paths):
        if i not in manifests:
            for item in _walk(path, volumes, on_skip):
                yield item
                ordinal += 1
            continue
        for item, extra in _manifest_inputs(manifests[i], volumes, on_skip):
            if fields is not None:
                fields[ordinal] = extra
            yield item
            ordinal += 1


def _walk(path: Path, volumes: bool, on_skip: Callable[[str], None] | None) -> Iterator[Input]:
    if not path.is_dir():
        yield str(path)
        return
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        full = []
        for name in sorted(f for f in files if not f.startswith(".")):
            if Path(name).suffix.lower() in DOCUMENT_SUFFIXES:
                if on_skip is not None:
                    on_skip(str(Path(folder) / name))
                continue
            full.append(str(Path(folder) / name))
        yield from (_series(folder, full) if volumes else full)


def _manifest_inputs(rows: list[ManifestRow], volumes: bool,
                     on_skip: Callable[[str], None] | None
                     ) -> Iterator[tuple[Input, dict[str, Any]]]:
    """``(input, results fields)`` of a manifest's rows; with `volumes`, each run of rows naming
    files of one folder is grouped into series as a folder's files are."""
    run: list[ManifestRow] = []

    def flush() -> Iterator[tuple[Input, dict[str, Any]]]:
        by_path = {row.path: row for row in run}
        for item in _series(str(Path(run[0].path).parent), list(by_path)):
            if isinstance(item, SeriesInput):
                yield item, common_fields([by_path[f] for f in item.files])
            else:
                yield item, by_path[str(item)].fields()
        run.clear()

    for row in rows:
        if Path(row.path).is_dir():
            if run:
                yield from flush()
            for item in _walk(Path(row.path), volumes, on_skip):
                yield item, row.fields()
        elif not volumes:
            yield row.path, row.fields()
        else:
            if run and Path(run[-1].path).parent != Path(row.path).parent:
                yield from flush()
            run.append(row)
    if run:
        yield from flush()


def _series(folder: str, files: list[str]) -> Iterator[Input]:
    from medsight.io.dicom_series import group_series

    dicom, other = [], []
    for f in files:
        (dicom if _is_dicom(f) else other).append(f)
    bad: list[str] = []
    groups = group_series(dicom, on_error=lambda p, _exc: bad.append(str(p)))
    for uid, members in groups.items():
        if len(members) == 1:
            yield str(members[0])
        else:
            yield SeriesInput(tuple(str(m) for m in members), f"{folder} (series {uid})")
    yield from sorted(other + bad)


def _is_dicom(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return sniff_format(fh.read(_HEAD)) == "dicom"
    except OSError:
        return False


