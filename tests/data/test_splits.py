"""Splits: seeded holdout and k-fold, stratified, never splitting a patient across parts."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from medsight.data.dataset import Dataset, Record, Task
from medsight.data.splits import (
    ensure_splits,
    holdout,
    kfold,
    patient_groups,
    stratification_labels,
)
from medsight.errors import InvalidConfig, InvalidDataset


def _dataset(labels, patients=None, splits=None, task=Task.BINARY, classes=("neg", "pos")):
    n = len(labels)
    patients = patients or [None] * n
    splits = splits or [None] * n
    recs = [
        Record(ref=f"mem:{i}", label=lab, patient_id=p, split=s)
        for i, (lab, p, s) in enumerate(zip(labels, patients, splits, strict=True))
    ]
    return Dataset(recs, task, list(classes), name="toy")


def _patients_dataset(n_patients=60, seed=1):
    """Patients with 1-4 images each; labels mostly per patient, some patients mixed."""
    rng = np.random.default_rng(seed)
    labels, pids = [], []
    for p in range(n_patients):
        base = int(rng.random() < 0.35)
        for _ in range(int(rng.integers(1, 5))):
            labels.append(base if p % 7 else int(rng.integers(0, 2)))
            pids.append(f"P{p:03d}")
    return _dataset(labels, pids)


def _parts_by_patient(ds: Dataset) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for r in ds.records:
        seen[r.patient_id].add(r.split)
    return seen


def test_holdout_exact_sizes_stratified_and_reproducible():
    labels = [1] * 60 + [0] * 140
    ds = _dataset(labels)
    a = holdout(ds, (0.7, 0.15, 0.15), seed=3)
    assert a.split_counts() == {"train": 140, "val": 30, "test": 30}
    for name, n in (("train", 140), ("val", 30), ("test", 30)):
        pos = sum(r.label for r in a.records if r.split == name)
        assert abs(pos - 0.3 * n) <= 1, (name, pos)
    b = holdout(ds, (0.7, 0.15, 0.15), seed=3)
    c = holdout(ds, (0.7, 0.15, 0.15), seed=4)
    assert a.splits == b.splits
    assert a.splits != c.splits
    assert ds.splits == [None] * 200  # the input dataset is not modified


def test_holdout_groups_patients_and_keeps_ratios_close():
    ds = _patients_dataset()
    out = holdout(ds, (0.7, 0.15, 0.15), seed=0)
    assert all(len(s) == 1 for s in _parts_by_patient(out).values())
    counts = out.split_counts()
    n_patients = len(set(ds.patient_ids))
    per_split_patients = Counter(next(iter(s)) for s in _parts_by_patient(out).values())
    for name, ratio in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        assert abs(per_split_patients[name] / n_patients - ratio) < 0.08, per_split_patients
        labels = {r.label for r in out.records if r.split == name}
        assert labels == {0, 1}, f"{name} lacks a class: {counts}"
    assert holdout(ds, seed=0).splits == out.splits


def test_holdout_two_way_and_group_opt_out():
    ds = _patients_dataset()
    two = holdout(ds, (0.8, 0.2), seed=0)
    assert set(two.split_counts()) == {"train", "test"}
    assert all(len(s) == 1 for s in _parts_by_patient(two).values())
    ungrouped = holdout(ds, (0.5, 0.5), seed=0, group_by_patient=False)
    half = round(len(ds) / 2)
    assert ungrouped.split_counts() == {"train": len(ds) - half, "test": half}
    assert any(len(s) > 1 for s in _parts_by_patient(ungrouped).values())


@pytest.mark.parametrize(
    "ratios",
    [(0.7, 0.3, 0.1), (0.5, -0.1, 0.6), (1.0,)],
)
def test_holdout_rejects_bad_ratios(ratios):
    with pytest.raises(InvalidConfig, match="ratios"):
        holdout(_dataset([0, 1] * 10), ratios)


def test_ensure_splits_keeps_given_assigns_missing_and_refuses_partial():
    given = _dataset([0, 1, 0, 1], splits=["train", "train", "val", "test"])
    assert ensure_splits(given) is given
    fresh = ensure_splits(_dataset([0, 1] * 20), seed=0)
    assert None not in fresh.splits
    partial = _dataset([0, 1, 0, 1], splits=["train", None, "test", None])
    with pytest.raises(InvalidDataset, match="2 of 4 records have a split"):
        ensure_splits(partial)


def test_kfold_stratified_covers_every_record_once():
    labels = [0] * 70 + [1] * 30
    folds = kfold(_dataset(labels), k=5, seed=0)
    assert len(folds) == 5
    tested = np.concatenate([t for _, t in folds])
    assert sorted(tested.tolist()) == list(range(100))
    y = np.array(labels)
    for train, test in folds:
        assert len(test) == 20 and len(train) == 80
        assert not set(train) & set(test)
        assert y[test].sum() == 6  # 30 positives spread evenly
    again = kfold(_dataset(labels), k=5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))


def test_kfold_grouped_by_default_when_patient_ids_exist():
    ds = _patients_dataset(n_patients=40)
    folds = kfold(ds, k=5, seed=2)
    pids = np.array(ds.patient_ids)
    fold_of: dict[str, int] = {}
    for f, (train, test) in enumerate(folds):
        assert not set(pids[train]) & set(pids[test])
        for p in pids[test]:
            assert fold_of.setdefault(p, f) == f, f"patient {p} in two folds"
    assert len(fold_of) == 40
    for train, test in kfold(ds, k=5, seed=2, stratified=False):  # GroupKFold path
        assert not set(pids[train]) & set(pids[test])
    ungrouped = kfold(ds, k=5, seed=2, grouped=False)
    leaks = sum(bool(set(pids[tr]) & set(pids[te])) for tr, te in ungrouped)
    assert leaks > 0


def test_kfold_multilabel_and_ordinal():
    flags = [(1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1)] * 10
    ml = _dataset(flags, task=Task.MULTILABEL, classes=("a", "b", "c"))
    folds = kfold(ml, k=5, seed=0)
    assert sorted(np.concatenate([t for _, t in folds]).tolist()) == list(range(40))
    codes = stratification_labels(ml)
    assert len(set(codes.tolist())) == 4  # every combination is frequent: one stratum each
    for _, test in folds:
        assert len(set(codes[test].tolist())) == 4
    rare = _dataset([(1, 0, 0)] * 9 + [(1, 1, 1)], task=Task.MULTILABEL, classes=("a", "b", "c"))
    assert stratification_labels(rare).tolist() == [0] * 10  # fallback: first positive label
    grades = [0, 1, 2, 3, 4] * 8
    ordinal = _dataset(grades, task=Task.ORDINAL, classes=[str(g) for g in range(5)])
    for _, test in kfold(ordinal, k=4, seed=0):
        assert sorted(np.array(grades)[test].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_kfold_errors_are_clear():
    ds = _dataset([0, 1] * 5, patients=[f"P{i % 3}" for i in range(10)])
    with pytest.raises(InvalidConfig, match="k >= 2"):
        kfold(ds, k=1)
    with pytest.raises(InvalidDataset, match="cannot make 4 folds from 3 patients"):
        kfold(ds, k=4)
    with pytest.raises(InvalidDataset, match="no record has a patient id"):
        kfold(_dataset([0, 1] * 5), k=2, grouped=True)


def test_patient_groups_give_records_without_id_their_own_group():
    ds = _dataset([0, 1, 0, 1], patients=["A", None, "A", None])
    g = patient_groups(ds)
    assert g[0] == g[2] and len(set(g.tolist())) == 3


def _ct_dataset(shared_data):
    from medsight.data.sources import from_dicom_dir

    root = shared_data / "ct_medical_images"
    if not (root / "overview.csv").exists():
        pytest.skip(f"CT Medical Images not found at {root} (see shared/data/MANIFEST.md)")
    return from_dicom_dir(
        root / "dicom_dir",
        labels_csv=root / "overview.csv",
        label_column="Contrast",
        path_column="dicom_name",
    )


def test_real_ct_grouped_kfold_and_holdout_never_split_a_patient(shared_data):
    ds = _ct_dataset(shared_data)
    pids = np.array(ds.patient_ids)
    labels = ds.labels
    assert len(set(pids)) == 54
    mixed = {p for p in set(pids) if len(set(labels[pids == p])) == 2}
    assert len(mixed) == 9  # patients with images of both labels (MANIFEST)
    folds = kfold(ds, k=5, seed=0)
    fold_of: dict[str, int] = {}
    for f, (train, test) in enumerate(folds):
        assert not set(pids[train]) & set(pids[test])
        for p in pids[test]:
            assert fold_of.setdefault(p, f) == f
        assert set(labels[test]) == {0, 1}
    assert len(fold_of) == 54
    split = holdout(ds, seed=0)
    assert all(len(s) == 1 for s in _parts_by_patient(split).values())
    assert set(split.split_counts()) == {"train", "val", "test"}
