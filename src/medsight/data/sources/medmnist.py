"""MedMNIST npz files as datasets, keeping the official train/val/test splits.

Only the small label arrays are decompressed when the table is built; image arrays are checked
by their ``.npy`` headers and read on demand through ``npz:<file>#<split>_images/<i>`` refs.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.dataset import Dataset, Record, Task
from medsight.data.refs import register_scheme
from medsight.data.sources.medmnist_info import MedMNISTInfo, lookup
from medsight.errors import InvalidDataset, UnreadableImage
from medsight.io.image import Image

SPLITS = ("train", "val", "test")
_NAME = re.compile(r"^(?P<flag>[a-z]+mnist(?:3d)?)(?:_(?P<size>\d+))?$")


def parse_file_name(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(flag, size) from an official file name: ``breastmnist_64.npz`` -> ("breastmnist", 64)."""
    stem = Path(path).name.lower().removesuffix(".npz")
    match = _NAME.match(stem)
    if match is None:
        raise InvalidDataset(
            f"cannot tell which MedMNIST subset {path} is from its name; pass name=..., "
            "e.g. from_medmnist(path, name='breastmnist')"
        )
    return match["flag"], int(match["size"] or 28)


def from_medmnist(npz_path: str | os.PathLike[str], name: str | None = None) -> Dataset:
    """Build a dataset from an official MedMNIST ``.npz`` (any size: 28/64/128/224).

    Task, class names and positive class come from the MedMNIST catalogue (``name`` or the file
    name, e.g. ``adrenalmnist3d_64.npz``). Records carry ``npz:`` refs; patient ids are unknown
    (MedMNIST does not publish them).
    """
    path = Path(npz_path).expanduser().resolve()
    if not path.is_file():
        raise InvalidDataset(f"MedMNIST file {path} does not exist")
    if name is None:
        flag, _ = parse_file_name(path)
    else:
        flag = name
    info = lookup(flag)

    records: list[Record] = []
    try:
        with zipfile.ZipFile(path) as archive, np.load(path, allow_pickle=False) as arrays:
            members = set(arrays.files)
            present = [s for s in SPLITS if f"{s}_images" in members]
            if not present:
                raise InvalidDataset(
                    f"{path} holds no MedMNIST splits (expected train_images/train_labels, ...; "
                    f"found {sorted(members)})"
                )
            for split in present:
                if f"{split}_labels" not in members:
                    raise InvalidDataset(f"{path} has {split}_images but no {split}_labels")
                shape = _npy_shape(archive, f"{split}_images.npy", path)
                labels = np.asarray(arrays[f"{split}_labels"])
                _check_split(info, path, split, shape, labels)
                records.extend(_records(path, split, labels, info, shape))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidDataset(f"{path} is not a readable npz file: {exc}") from exc

    return Dataset(
        records,
        info.task,
        list(info.labels),
        name=path.stem,
        positive_class=info.positive_class,
    )


def _npy_shape(archive: zipfile.ZipFile, member: str, path: Path) -> tuple[int, ...]:
    """Shape of an array inside the npz, read from its header (the data is not decompressed)."""
    with archive.open(member) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, _ = np.lib.format.read_array_header_2_0(fp)
        else:
            raise InvalidDataset(f"{path}:{member} has unsupported .npy version {version}")
    return tuple(int(s) for s in shape)


def _check_split(
    info: MedMNISTInfo, path: Path, split: str, shape: tuple[int, ...], labels: np.ndarray
) -> None:
    spatial = 3 if info.is_3d else 2
    ndim_ok = len(shape) == 1 + spatial or (not info.is_3d and len(shape) == 4 and shape[3] == 3)
    if not ndim_ok:
        raise InvalidDataset(
            f"{path}: {split}_images has shape {shape}, not a stack of "
            f"{'3D volumes' if info.is_3d else '2D images'} as {info.flag} should be"
        )
    n_label_cols = len(info.labels) if info.task is Task.MULTILABEL else 1
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.shape != (shape[0], n_label_cols):
        raise InvalidDataset(
            f"{path}: {split}_labels has shape {labels.shape}; expected ({shape[0]}, "
            f"{n_label_cols}) to match {split}_images {shape}"
        )


def _records(
    path: Path, split: str, labels: np.ndarray, info: MedMNISTInfo, shape: tuple[int, ...]
) -> list[Record]:
    key = f"{split}_images"
    size = shape[1]
    if labels.ndim == 1:
        labels = labels[:, None]
    if info.task is Task.MULTILABEL:
        values: list[Any] = [tuple(int(v) for v in row) for row in labels]
    else:
        values = [int(v) for v in labels[:, 0]]
    return [
        Record(
            ref=f"npz:{path}#{key}/{i}",
            label=v,
            split=split,
            meta={"index": i, "subset": info.flag, "size": size, "modality": info.modality},
        )
        for i, v in enumerate(values)
    ]


def parse_npz_ref(rest: str) -> tuple[str, str, int]:
    """``/abs/file.npz#train_images/12`` -> (path, array key, index)."""
    file, sep, member = rest.rpartition("#")
    key, slash, index = member.rpartition("/")
    if not sep or not slash or not index.isdigit() or not key:
        raise UnreadableImage(f"npz:{rest}", "reference must look like npz:<file>#<array>/<index>")
    return file, key, int(index)


def _resolve_npz(rest: str, meta: dict[str, Any]) -> Image:
    from medsight.io import read_npz_image

    file, key, index = parse_npz_ref(rest)
    return read_npz_image(file, key, index)


register_scheme("npz", _resolve_npz)
