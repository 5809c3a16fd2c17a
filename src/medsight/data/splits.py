"""Seeded, reproducible train/val/test splits and k-fold indices, grouped by patient.

Honest evaluation needs every image of one patient on the same side of a split, so splits are
grouped by ``Record.patient_id`` whenever ids exist, and stratified by label so that small
classes appear in every part. Given splits (e.g. MedMNIST's official ones) are kept as they are.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)

from medsight.data.dataset import Dataset, Task
from medsight.errors import InvalidConfig, InvalidDataset

log = logging.getLogger(__name__)

DEFAULT_RATIOS = (0.7, 0.15, 0.15)
SPLIT_NAMES = {2: ("train", "test"), 3: ("train", "val", "test")}
_MAX_GROUP_FOLDS = 20  # granularity of grouped holdout ratios (5 % steps at most)

__all__ = [
    "DEFAULT_RATIOS",
    "ensure_splits",
    "has_patient_ids",
    "holdout",
    "kfold",
    "patient_groups",
    "stratification_labels",
]


def has_patient_ids(ds: Dataset) -> bool:
    """True when at least one record carries a patient id."""
    return any(r.patient_id is not None and str(r.patient_id) != "" for r in ds.records)


def patient_groups(ds: Dataset) -> np.ndarray:
    """One integer group per record: records of one patient share a group; no id -> own group."""
    codes: dict[str, int] = {}
    out = np.empty(len(ds), dtype=np.int64)
    for i, r in enumerate(ds.records):
        pid = r.patient_id
        key = f"p:{pid}" if pid is not None and str(pid) != "" else f"r:{i}"
        out[i] = codes.setdefault(key, len(codes))
    return out


def stratification_labels(ds: Dataset, min_count: int = 2) -> np.ndarray:
    """Integer classes to stratify on: the label (binary/multiclass/ordinal, -1 = unlabelled).

    Multilabel records are stratified on their label combination; when some combination has fewer
    than `min_count` members, on the first positive label instead (``len(classes)`` = none).
    Detection records are stratified on the rarest class (fewest boxes in `ds`) among their boxes,
    so images holding a rare class are spread over the splits (``len(classes)``: annotated with
    no box, -1: not annotated).
    """
    if ds.task is Task.DETECTION:
        return _rarest_box_class(ds)
    if ds.task is not Task.MULTILABEL:
        return ds.labels.astype(np.int64)
    lab = ds.labels
    combos = ["".join(map(str, row)) for row in lab.tolist()]
    counts = Counter(combos)
    if counts and min(counts.values()) >= min_count:
        order = {c: k for k, c in enumerate(sorted(counts))}
        return np.array([order[c] for c in combos], dtype=np.int64)
    n_labels = lab.shape[1] if lab.ndim == 2 else 0
    first = np.full(len(ds), n_labels, dtype=np.int64)
    for i, row in enumerate(lab):
        pos = np.flatnonzero(row == 1)
        if row.size and row[0] < 0:
            first[i] = -1
        elif pos.size:
            first[i] = pos[0]
    return first


def _rarest_box_class(ds: Dataset) -> np.ndarray:
    n = len(ds.classes)
    totals = np.array(list(ds.class_counts().values()), dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(totals, kind="stable")] = np.arange(n)  # 0 = rarest class
    out = np.full(len(ds), -1, dtype=np.int64)
    for i, r in enumerate(ds.records):
        if r.boxes is None:
            continue
        present = np.unique(r.boxes.label_array())
        out[i] = present[np.argmin(rank[present])] if present.size else n
    return out


def _resolve_grouped(ds: Dataset, grouped: bool | None) -> bool:
    ids = has_patient_ids(ds)
    if grouped is None:
        return ids
    if grouped and not ids:
        raise InvalidDataset(f"{ds.name}: grouping by patient was requested but no record has a patient id")
    return bool(grouped)


def _check_ratios(ratios: Sequence[float], names: Sequence[str] | None) -> tuple[list[float], list[str]]:
    r = [float(x) for x in ratios]
    if len(r) < 2 or any(x <= 0 for x in r):
        raise InvalidConfig(f"split ratios must be two or more positive numbers, got {tuple(ratios)}")
    total = sum(r)
    if abs(total - 1.0) > 1e-6:
        raise InvalidConfig(f"split ratios must sum to 1, got {tuple(ratios)} (sum {total:g})")
    if names is None:
        if len(r) not in SPLIT_NAMES:
            raise InvalidConfig(f"give split names for {len(r)} ratios")
        names = SPLIT_NAMES[len(r)]
    if len(names) != len(r) or len(set(names)) != len(names):
        raise InvalidConfig(f"split names {tuple(names)} must be unique, one per ratio {tuple(r)}")
    return r, list(names)


def _usable_strata(y: np.ndarray, n_first: int, n_second: int) -> np.ndarray | None:
    """Strata valid for train_test_split: rare classes merged; None when still impossible."""
    counts = Counter(y.tolist())
    if len(counts) < 2:
        return None
    rare = {c for c, n in counts.items() if n < 2}
    if rare:
        y = np.array([-2 if v in rare else v for v in y.tolist()], dtype=np.int64)
        counts = Counter(y.tolist())
        if min(counts.values()) < 2 or len(counts) < 2:
            return None
    if n_first < len(counts) or n_second < len(counts):
        return None
    return y


def _holdout_records(n: int, ratios: list[float], y: np.ndarray | None, seed: int) -> list[np.ndarray]:
    """Index arrays per ratio, carving the later parts off the rest one after the other."""
    parts: list[np.ndarray] = []
    rest = np.arange(n)
    for r in reversed(ratios[1:]):
        size = max(1, int(round(r * n)))
        if size >= len(rest):
            raise InvalidDataset(f"{n} records are too few for split ratios {tuple(ratios)}")
        strata = None
        if y is not None:
            strata = _usable_strata(y[rest], len(rest) - size, size)
        rest, part = train_test_split(rest, test_size=size, random_state=seed, shuffle=True, stratify=strata)
        parts.append(np.sort(part))
    parts.append(np.sort(rest))
    return parts[::-1]


def _fold_allocation(ratios: list[float], n_groups: int) -> tuple[int, list[int]]:
    """Number of grouped folds and how many folds each part gets, closest to the ratios."""
    best: tuple[float, int, list[int]] | None = None
    for n in range(len(ratios), min(_MAX_GROUP_FOLDS, n_groups) + 1):
        raw = [r * n for r in ratios]
        alloc = [max(1, int(np.floor(x))) for x in raw]
        while sum(alloc) < n:  # largest remainder
            k = int(np.argmax([x - a for x, a in zip(raw, alloc, strict=True)]))
            alloc[k] += 1
        while sum(alloc) > n:
            excess = [a - x if a > 1 else -np.inf for x, a in zip(raw, alloc, strict=True)]
            k = int(np.argmax(excess))
            alloc[k] -= 1
        err = max(abs(a / n - r) for a, r in zip(alloc, ratios, strict=True))
        if best is None or err < best[0] - 1e-9:
            best = (err, n, alloc)
    if best is None:
        raise InvalidDataset(f"{n_groups} patients are too few for {len(ratios)} splits grouped by patient")
    return best[1], best[2]


def _fold_splitter(k: int, seed: int, stratified: bool, grouped: bool):
    if grouped:
        if stratified:
            return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        try:
            return GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        except TypeError:  # scikit-learn < 1.6: no shuffling; groups are relabelled instead
            return GroupKFold(n_splits=k)
    if stratified:
        return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return KFold(n_splits=k, shuffle=True, random_state=seed)


def _fold_test_indices(
    y: np.ndarray, groups: np.ndarray | None, k: int, seed: int, stratified: bool
) -> list[np.ndarray]:
    """The k test folds (index arrays) from the right scikit-learn splitter."""
    n = len(y)
    if stratified and len(set(y.tolist())) < 2:
        stratified = False
    if stratified and groups is None and max(Counter(y.tolist()).values()) < k:
        stratified = False  # StratifiedKFold needs one class with at least k members
    splitter = _fold_splitter(k, seed, stratified, groups is not None)
    if groups is not None and not getattr(splitter, "shuffle", False):
        groups = np.random.default_rng(seed).permutation(int(groups.max()) + 1)[groups]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        folds = [np.sort(test) for _, test in splitter.split(np.zeros((n, 1)), y, groups)]
    return folds


def holdout(
    ds: Dataset,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    group_by_patient: bool = True,
    stratified: bool = True,
    names: Sequence[str] | None = None,
) -> Dataset:
    """A copy of `ds` with every record assigned to train/val/test (or `names`) by `ratios`.

    Grouped by patient when `group_by_patient` and ids exist (then ratios are met in whole
    patients, up to 5 % steps), stratified by label when `stratified`. Same seed, same split.
    """
    r, split_names = _check_ratios(ratios, names)
    if len(ds) < len(r):
        raise InvalidDataset(f"{ds.name}: {len(ds)} records cannot fill {len(r)} splits")
    y = stratification_labels(ds) if stratified else np.zeros(len(ds), dtype=np.int64)
    assigned: list[str | None] = [None] * len(ds)
    if group_by_patient and has_patient_ids(ds):
        groups = patient_groups(ds)
        n_groups = len(np.unique(groups))
        k, alloc = _fold_allocation(r, n_groups)
        folds = _fold_test_indices(y, groups, k, seed, stratified)
        order = np.random.default_rng(seed).permutation(k)
        start = 0
        for name, count in zip(split_names, alloc, strict=True):
            for f in order[start : start + count]:
                for i in folds[f]:
                    assigned[int(i)] = name
            start += count
    else:
        parts = _holdout_records(len(ds), r, y if stratified else None, seed)
        for name, idx in zip(split_names, parts, strict=True):
            for i in idx:
                assigned[int(i)] = name
    out = ds.with_splits(assigned)
    log.info("%s: holdout %s (seed %d) -> %s", ds.name, tuple(r), seed, out.split_counts())
    return out


def ensure_splits(
    ds: Dataset,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    group_by_patient: bool = True,
    stratified: bool = True,
) -> Dataset:
    """Keep the dataset's own splits when every record has one, else make a seeded holdout.

    A dataset where only some records carry a split is ambiguous and raises `InvalidDataset`.
    """
    given = [r.split for r in ds.records]
    n_given = sum(s is not None for s in given)
    if n_given == len(ds) and len(ds):
        return ds
    if n_given:
        raise InvalidDataset(
            f"{ds.name}: {n_given} of {len(ds)} records have a split and {len(ds) - n_given} "
            "do not; assign all of them or clear the splits and let medsight make a holdout"
        )
    return holdout(ds, ratios, seed=seed, group_by_patient=group_by_patient, stratified=stratified)


def kfold(
    ds: Dataset,
    k: int = 5,
    seed: int = 0,
    stratified: bool = True,
    grouped: bool | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train_idx, test_idx) pairs of record indices covering `ds`; each record tested once.

    `grouped=None` groups by patient when patient ids exist, so that no patient is in two
    folds; stratified by label (multilabel: combination or first label) when possible.
    """
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise InvalidConfig(f"k-fold needs k >= 2, got {k!r}")
    use_groups = _resolve_grouped(ds, grouped)
    groups = patient_groups(ds) if use_groups else None
    units = len(np.unique(groups)) if groups is not None else len(ds)
    if k > units:
        what = "patients" if groups is not None else "records"
        raise InvalidDataset(f"{ds.name}: cannot make {k} folds from {units} {what}")
    y = stratification_labels(ds, min_count=k) if stratified else np.zeros(len(ds), np.int64)
    tests = _fold_test_indices(y, groups, int(k), seed, stratified)
    everything = np.arange(len(ds))
    return [(np.setdiff1d(everything, t), t) for t in tests]
