"""Phantoms: byte-for-byte regeneration, correct lesion boxes, balance, patient-grouped splits."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from medsight.data.dataset import Task
from medsight.data.refs import resolve
from medsight.data.sources.phantom import make_phantoms, phantom_image
from medsight.errors import InvalidConfig, UnreadableImage


@pytest.fixture(scope="module")
def phantoms():
    return make_phantoms(n=200, size=64, seed=0)


def test_dataset_is_binary_balanced_and_lazy(phantoms) -> None:
    assert phantoms.task is Task.BINARY
    assert phantoms.classes == ["normal", "lesion"] and phantoms.positive_class == 1
    assert phantoms.class_counts() == {"normal": 100, "lesion": 100}
    assert phantoms.records[7].ref == "phantom:seed=0;size=64;index=7"


def test_same_pixels_every_time(phantoms) -> None:
    for i in (0, 1, 57):
        a = phantoms.image(i).pixels
        b = resolve(phantoms.records[i].ref).pixels
        c, label, boxes = phantom_image(0, i, 64)
        assert a.tobytes() == b.tobytes() == c.pixels.tobytes()
        assert label == phantoms.records[i].label and boxes == phantoms.records[i].meta["boxes"]
    assert make_phantoms(n=200, seed=0).records == phantoms.records
    assert (
        phantom_image(1, 0, 64)[0].pixels.tobytes() != phantom_image(0, 0, 64)[0].pixels.tobytes()
    )


def test_image_format() -> None:
    image, _, _ = phantom_image(3, 4, 48)
    assert image.pixels.shape == (1, 48, 48) and image.pixels.dtype == np.float32
    assert 0 <= image.pixels.min() and image.pixels.max() <= 255
    assert np.array_equal(image.pixels, np.round(image.pixels))


def test_boxes_hold_the_lesions_and_only_them(phantoms) -> None:
    n_boxes = Counter()
    for i, r in enumerate(phantoms.records):
        boxes = r.meta["boxes"]
        n_boxes[len(boxes)] += 1
        if r.label == 0:
            assert boxes == []
            continue
        assert 1 <= len(boxes) <= 3
        with_lesions, _, _ = phantom_image(0, i, 64)
        healthy_twin, _, _ = phantom_image(0, i, 64, draw_lesions=False)
        diff = with_lesions.pixels[0] - healthy_twin.pixels[0]
        inside = np.zeros(diff.shape, bool)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            box = (
                slice(int(np.floor(y0)), int(np.ceil(y1))),
                slice(int(np.floor(x0)), int(np.ceil(x1))),
            )
            inside[box] = True
            assert diff[box].max() >= 10  # every box holds a visibly brighter nodule
            assert with_lesions.pixels[0][box].mean() > healthy_twin.pixels[0][box].mean()
        assert np.all(diff[~inside] == 0)  # no lesion signal outside the boxes
        assert np.all(diff >= 0)
    assert n_boxes[1] and n_boxes[2] and n_boxes[3]


def test_some_lesions_are_small_or_faint(phantoms) -> None:
    widths = [b[2] - b[0] for r in phantoms.records for b in r.meta["boxes"]]
    contrasts = [c for r in phantoms.records for c in r.meta["contrast"]]
    assert min(widths) < 4.5 and max(widths) > 7
    assert min(contrasts) < 0.2 and max(contrasts) > 0.4


def test_patients_with_two_images_share_anatomy_and_one_split(phantoms) -> None:
    per_patient = Counter(phantoms.patient_ids)
    assert set(per_patient.values()) == {1, 2}
    assert 15 <= sum(v == 2 for v in per_patient.values()) <= 50
    assert phantoms.patient_ids[0] == "PH0001"
    splits = defaultdict(set)
    for r in phantoms.records:
        splits[r.patient_id].add(r.split)
    assert all(len(s) == 1 for s in splits.values())
    counts = phantoms.split_counts()
    assert (
        130 <= counts["train"] <= 150 and 20 <= counts["val"] <= 40 and 20 <= counts["test"] <= 40
    )
    # two images of one patient look alike far more than images of two patients
    ids = phantoms.patient_ids
    pair = next(i for i in range(1, len(ids)) if ids[i] == ids[i - 1])

    def twin(i: int) -> np.ndarray:
        return phantom_image(0, i, 64, draw_lesions=False)[0].pixels.ravel()

    same = np.corrcoef(twin(pair - 1), twin(pair))[0, 1]
    others = [
        np.corrcoef(twin(pair), twin(j))[0, 1]
        for j in range(pair + 2, pair + 8)
        if ids[j] != ids[pair]
    ]
    assert same > max(others)


def test_lesion_fraction_is_kept_in_the_reference() -> None:
    ds = make_phantoms(n=200, seed=2, lesion_fraction=0.3, splits=None)
    assert ds.class_counts() == {"normal": 140, "lesion": 60}
    assert set(ds.splits) == {None}
    ref = ds.records[5].ref
    assert ref.endswith(";lesion_fraction=0.3")
    assert resolve(ref).pixels.tobytes() == phantom_image(2, 5, 64, 0.3)[0].pixels.tobytes()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 8},
        {"lesion_fraction": 1.5},
        {"splits": (0.5, 0.5)},
        {"splits": (0.7, 0.2, 0.2)},
        {"n": 0},
    ],
)
def test_bad_arguments_are_rejected(kwargs) -> None:
    with pytest.raises(InvalidConfig):
        make_phantoms(**kwargs)


def test_bad_reference_is_unreadable() -> None:
    with pytest.raises(UnreadableImage, match="missing"):
        resolve("phantom:seed=0;size=64")
