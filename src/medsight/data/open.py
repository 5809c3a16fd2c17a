"""Open any supported dataset source from one string: what the CLI and configs accept.

``phantom`` (or ``phantom:n=200,size=64,seed=0``; ``phantom:task=detection`` for lesion boxes), a
MedMNIST ``.npz``, a CSV/Parquet manifest, a CIFAR-10 python folder, a folder of DICOM files, or a
class-per-folder tree; for detection a Pascal VOC folder (``Annotations/`` + ``JPEGImages/``), a
COCO instances ``.json`` or a box CSV (``path,x1,y1,x2,y2,label``). The kind is decided by content,
and a path that fits none gets an error listing what is accepted.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medsight.data.dataset import Dataset
from medsight.errors import InvalidDataset

ACCEPTED = (
    "'phantom[:n=..,size=..,seed=..,task=detection]', a MedMNIST .npz file, a .csv/.parquet "
    "manifest, a box CSV (path,x1,y1,x2,y2,label), a COCO .json, a Pascal VOC folder (Annotations/ "
    "and JPEGImages/), a CIFAR-10 python folder, a folder of DICOM files, or a folder with one "
    "sub-folder per class"
)


def open_source(spec: str | Path, **options: Any) -> Dataset:
    """Build the Dataset that `spec` names; `options` go to the underlying source function (an
    option it does not take is an `InvalidDataset` naming the ones it does)."""
    text = str(spec)
    if text == "phantom" or text.startswith("phantom:"):
        from medsight.data.sources.phantom import make_phantoms

        params = {**_parse_params(text.partition(":")[2]), **options}
        _check_options(make_phantoms, params, text, takes_path=False)
        return make_phantoms(**params)
    path = Path(text).expanduser()
    if not path.exists():
        raise InvalidDataset(f"data source {text!r} does not exist; expected {ACCEPTED}")
    source = _source_function(path)
    _check_options(source, options, text)
    return source(path, **options)


def _source_function(path: Path) -> Callable[..., Dataset]:
    """The source function that reads `path`, decided by its suffix or content."""
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npz":
            from medsight.data.sources.medmnist import from_medmnist

            return from_medmnist
        if suffix == ".json":
            from medsight.data.sources.coco import from_coco

            return from_coco
        from medsight.data.sources.box_csv import from_box_csv, is_box_csv

        if is_box_csv(path):
            return from_box_csv
        if suffix in (".csv", ".parquet", ".pq"):
            from medsight.data.sources.manifest import from_manifest

            return from_manifest
        raise InvalidDataset(f"{path} is a {suffix or 'extension-less'} file; expected {ACCEPTED}")
    from medsight.data.sources.voc import from_voc, is_voc_folder

    if is_voc_folder(path):
        return from_voc
    if (path / "data_batch_1").exists() or (path / "test_batch").exists():
        from medsight.data.sources.cifar import from_cifar10

        return from_cifar10
    if _looks_like_dicom_dir(path):
        from medsight.data.sources.dicom_dir import from_dicom_dir

        return from_dicom_dir
    from medsight.data.sources.folder import from_class_folders

    return from_class_folders


def _check_options(
    source: Callable[..., Dataset], options: dict[str, Any], spec: str, takes_path: bool = True
) -> None:
    params = list(inspect.signature(source).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = sorted(p.name for p in params[1 if takes_path else 0:])
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InvalidDataset(f"{spec} is read by {source.__name__}, which takes no option(s) "
                             f"{unknown}; it takes {known}")


def _looks_like_dicom_dir(root: Path, probe: int = 20) -> bool:
    """True when the first files found carry the DICM preamble (no class sub-folders needed)."""
    seen = 0
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        seen += 1
        try:
            with p.open("rb") as fh:
                head = fh.read(132)
        except OSError:
            continue
        if head[128:132] == b"DICM" or p.name == "DICOMDIR":
            return True
        if seen >= probe:
            break
    return False


def _parse_params(text: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidDataset(f"bad phantom option {item!r}: use key=value, e.g. phantom:n=200")
        params[key.strip()] = _number_or_text(value.strip())
    return params


def _number_or_text(value: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return value
