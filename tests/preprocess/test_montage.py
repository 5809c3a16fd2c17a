"""split_montage / split_montages: planted panels are found with the right boxes, and panel
records keep their parent's labels and ids."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.data import refs
from medsight.data.dataset import Dataset, Record
from medsight.data.refs import register_scheme
from medsight.errors import InvalidConfig, UnreadableImage
from medsight.io.image import Image, ImageIds
from medsight.preprocess import split_montage, split_montages

PANELS = [(10, 15, 60, 65), (75, 12, 125, 70), (140, 20, 190, 60)]  # x0, y0, x1, y1


def montage(boxes=PANELS, shape=(80, 200), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(0.03, 0.01, shape)
    for x0, y0, x1, y1 in boxes:
        img[y0:y1, x0:x1] = 0.4 + 0.6 * rng.random((y1 - y0, x1 - x0))
    img[2, shape[1] // 2] = img[shape[0] - 5, 2] = 1.0  # specks in the gaps
    return img.astype(np.float32)


def test_split_recovers_three_panels():
    parent = Image(montage()[None], ids=ImageIds(patient_id="p1"), source="m.png",
                   metadata={"window_center": 1})
    parts = split_montage(parent)
    assert [box for _, box in parts] == PANELS
    for i, (img, (x0, y0, x1, y1)) in enumerate(parts):
        np.testing.assert_array_equal(img.pixels, parent.pixels[:, y0:y1, x0:x1])
        assert img.ids == parent.ids and img.metadata["window_center"] == 1
        assert img.metadata["montage"] == {"panel_index": i, "box": [x0, y0, x1, y1],
                                           "n_panels": 3, "parent_source": "m.png"}
        assert img.source == f"m.png[panel {i}]"


def test_split_grid_and_components():
    grid = [(5, 5, 45, 35), (60, 5, 95, 35), (5, 50, 45, 90), (60, 50, 95, 90)]
    img = Image(montage(grid, shape=(100, 100))[None])
    assert [b for _, b in split_montage(img)] == grid
    comps = [b for _, b in split_montage(Image(montage()[None]), method="components")]
    assert comps == PANELS


def test_single_image_is_not_split():
    img = Image(montage(PANELS[:1])[None])
    ((out, box),) = split_montage(img)
    assert box == (0, 0, 200, 80) and out.pixels.shape == img.pixels.shape
    with pytest.raises(InvalidConfig, match="2D"):
        split_montage(Image(np.zeros((1, 4, 8, 8))))


def test_split_montages_dataset_and_region_refs():
    store = {"a": montage(), "b": montage(PANELS[1:2], seed=3)}
    register_scheme("memtest", lambda key, meta: Image(store[key][None], source=f"memtest:{key}"))
    ds = Dataset(
        [Record("memtest:a", 1, "p1", "s1", "train", {"site": "x"}),
         Record("memtest:b", 0, "p2", "s2", "test")],
        task="binary", classes=["normal", "abnormal"], name="mont",
    )
    out = split_montages(ds)
    assert len(out) == 4
    assert out.records[3] == ds.records[1]  # single panel kept as is
    for i, (rec, box) in enumerate(zip(out.records[:3], PANELS, strict=True)):
        assert rec.ref == f"region:{','.join(map(str, box))}|memtest:a"
        assert (rec.label, rec.patient_id, rec.study_id, rec.split) == (1, "p1", "s1", "train")
        assert rec.meta["parent_ref"] == "memtest:a" and rec.meta["panel_index"] == i
        assert rec.meta["site"] == "x"
        img = out.image(i)
        x0, y0, x1, y1 = box
        np.testing.assert_array_equal(img.pixels[0], store["a"][y0:y1, x0:x1])
        assert img.metadata["montage"]["panel_index"] == i
    with pytest.raises(UnreadableImage, match="does not fit"):
        refs.resolve("region:0,0,500,10|memtest:a", {})
    with pytest.raises(UnreadableImage, match="x0,y0,x1,y1"):
        refs.resolve("region:1,2,3|memtest:a", {})
