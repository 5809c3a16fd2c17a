"""A detector's training images in the memory-mapped disk cache: the rows and boxes of the
in-memory cache, reused by a later run, re-decoded only for an edited annotation, and a training
on it that is the in-memory training, weight for weight."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import shared_path

from medsight.boxes import Boxes
from medsight.data.dataset import Dataset, Record, Task
from medsight.data.sources import from_voc
from medsight.errors import InvalidConfig
from medsight.models.torch_detector import TorchDetector
from medsight.preprocess import Preprocess
from medsight.train.detection_data import DetectionImages, build_detection_images

pytestmark = pytest.mark.usefixtures("two_torch_threads")
CLASSES = ["RBC", "WBC", "Platelets"]
# a crop that cuts boxes near the border (some are lost) and a resize that moves the rest
CHAIN = [{"center_crop": {"size": [400, 560]}}, {"resize": {"size": [48, 64]}}]


@pytest.fixture(scope="module")
def smears() -> Dataset:
    return from_voc(shared_path("bccd"), classes=CLASSES).split("train").subset(range(6),
                                                                                name="six")


def _chain() -> Preprocess:
    return Preprocess.from_config(CHAIN)


def _same(a: DetectionImages, b: DetectionImages) -> None:
    assert a.cache.mode == b.cache.mode and np.array_equal(a.index, b.index)
    rows = np.arange(len(a.cache))
    assert torch.equal(a.cache.batch(rows), b.cache.batch(rows))
    assert len(a.boxes) == len(b.boxes) == len(a.cache)
    for x, y in zip(a.boxes, b.boxes, strict=True):
        assert torch.equal(x, y)
    for x, y in zip(a.labels, b.labels, strict=True):
        assert torch.equal(x, y)
    assert a.boxes_lost == b.boxes_lost and a.errors == b.errors


def test_the_disk_cache_holds_the_memory_caches_rows_and_boxes_and_is_reused(smears, tmp_path):
    gone = Record(str(tmp_path / "gone.jpg"), None, boxes=Boxes.from_arrays(
        np.array([[1.0, 1.0, 9.0, 9.0]]), np.array([0])))
    ds = Dataset([*smears.records[:3], gone, *smears.records[3:]], Task.DETECTION, CLASSES,
                 name="seven")
    memory = build_detection_images(ds, _chain())
    first = build_detection_images(ds, _chain(), cache="disk", cache_dir=tmp_path / "c")
    second = build_detection_images(ds, _chain(), cache="disk", cache_dir=tmp_path / "c")
    assert memory.boxes_lost > 0  # the crop cut some boxes off
    assert [r for r, _ in memory.errors] == [gone.ref]
    _same(first, memory)
    _same(second, memory)
    # only the unreadable one is read again (a codec installed since may read it)
    assert (first.cache.decoded, second.cache.decoded) == (7, 1)
    # the pixels stay on disk, paged in when touched
    assert _mapped_file(second.cache.data.data_ptr()).endswith("/pixels.npy")
    assert not _mapped_file(memory.cache.data.data_ptr()).endswith("/pixels.npy")
    segment = next((tmp_path / "c").glob("*/seg-*"))
    meta = json.loads((segment / "index.json").read_text())
    assert len(meta["extras"]) == len(meta["keys"]) == 6
    assert sorted(meta["extras"][0]) == ["boxes", "labels", "lost"]


def test_an_edited_annotation_is_decoded_again_and_the_classifier_pools_stay_apart(smears,
                                                                                    tmp_path):
    build_detection_images(smears, _chain(), cache="disk", cache_dir=tmp_path)
    record = smears.records[2]
    moved = Boxes.from_arrays(record.boxes.array()[:1] + 5.0, record.boxes.label_array()[:1])
    edited = Dataset([*smears.records[:2], replace(record, boxes=moved), *smears.records[3:]],
                     Task.DETECTION, CLASSES, name="edited")
    again = build_detection_images(edited, _chain(), cache="disk", cache_dir=tmp_path)
    assert again.cache.decoded == 1
    _same(again, build_detection_images(edited, _chain()))
    from medsight.train.data import cache_images

    images = cache_images(smears, _chain(), cache="disk", cache_dir=tmp_path)
    assert images.decoded == 6  # a classifier's rows are not a detector's: another pool
    assert len(list(tmp_path.glob("*/seg-*"))) == 3


def _mapped_file(address: int) -> str:
    """The file mapped at `address` in this process ("" for anonymous memory)."""
    for line in open("/proc/self/maps"):
        span, _, _, _, _, *path = line.split()
        lo, hi = (int(x, 16) for x in span.split("-"))
        if lo <= address < hi:
            return path[0] if path else ""
    return ""


def _params(**kw):
    base = dict(preprocess=[{"resize": {"size": [48, 64], "anti_aliasing": False}}],
                network_params={"width": 8, "neck": 16}, epochs=2, batch_size=3,
                augment="detection", lr=3e-3, schedule="constant", score_threshold=0.3,
                device="cpu", threads=2, deterministic=True)
    return {**base, **kw}


def test_a_detector_trained_on_the_disk_cache_is_the_memory_trained_one(smears, tmp_path):
    reference = TorchDetector(**_params()).fit(smears)
    on_disk = TorchDetector(**_params(cache="disk", cache_dir=str(tmp_path))).fit(smears)
    ref, disk = reference.model_.state_dict(), on_disk.model_.state_dict()
    for key in ref:
        assert torch.equal(ref[key], disk[key]), key
    assert [h["loss"] for h in on_disk.history_] == [h["loss"] for h in reference.history_]


def test_a_detector_refuses_streaming_with_a_clear_error(smears):
    with pytest.raises(InvalidConfig, match="memory.*disk.*streaming is for classifiers"):
        TorchDetector(**_params(cache="stream")).fit(smears)
