"""Box sources: Pascal VOC (BCCD and synthetic), COCO in and out, box CSV; the import report
counts and names every box it clipped or dropped; round trips keep boxes identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image as PILImage

from medsight.boxes import Boxes
from medsight.data.box_import import import_report
from medsight.data.dataset import Task
from medsight.data.open import open_source
from medsight.data.sources import from_box_csv, from_coco, from_voc, make_phantoms, to_coco
from medsight.errors import InvalidDataset

BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def _image(path: Path, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", size, (200, 120, 90)).save(path)


def _xml(folder: Path, stem: str, objects: list[tuple[str, tuple[int, int, int, int]]],
         filename: str | None = None, size=(40, 30)) -> None:
    body = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects
    )
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    (folder / "Annotations" / f"{stem}.xml").write_text(
        f"<annotation><filename>{filename or stem + '.png'}</filename><size><width>{size[0]}</width>"
        f"<height>{size[1]}</height><depth>3</depth></size>{body}</annotation>"
    )


def _voc(tmp_path: Path) -> Path:
    root = tmp_path / "voc"
    for stem in ("a", "b", "c", "d"):
        _image(root / "JPEGImages" / f"{stem}.png")
    _xml(root, "a", [("cell", (2, 3, 12, 13)), ("cell", (30, 20, 45, 35)), ("blob", (5, 5, 5, 9))])
    _xml(root, "b", [("blob", (0, 0, 10, 10)), ("alien", (1, 1, 4, 4))])
    _xml(root, "c", [])  # annotated: nothing there
    _xml(root, "gone", [("cell", (1, 1, 5, 5))])  # its image is missing
    # "d" has no annotation at all
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("a\nb\nd\n")
    (main / "val.txt").write_text("c\n")
    (main / "test.txt").write_text("gone\n")
    return root


def test_bccd_official_split_classes_and_the_two_zero_area_boxes():
    root = shared_path("bccd")
    ds = from_voc(root, classes=BCCD_CLASSES)
    assert ds.task is Task.DETECTION and ds.classes == BCCD_CLASSES and len(ds) == 364
    assert ds.split_counts() == {"val": 87, "train": 205, "test": 72}
    assert ds.class_counts() == {"RBC": 4155 - 2, "WBC": 372, "Platelets": 361}
    report = import_report(ds)
    assert report is not None and report.counts()["zero_area"] == 2
    assert sorted(Path(i.image).stem for i in report.of("zero_area")) == [
        "BloodImage_00338", "BloodImage_00343"]
    assert {i.box for i in report.of("zero_area")} == {(504, 337, 504, 337), (181, 329, 181, 329)}
    assert report.counts()["clipped"] == 0 and not report.missing_images and not report.unannotated
    rec = ds.records[0]
    assert rec.label is None and rec.patient_id is None and rec.meta["width"] == 640
    assert ds.image(0).pixels.shape == (3, 480, 640)  # the ref is the image path
    # default class order is sorted, not order of appearance; open_source finds the VOC folder
    plain = open_source(root)
    assert plain.classes == ["Platelets", "RBC", "WBC"]
    assert plain.class_counts() == {"Platelets": 361, "RBC": 4153, "WBC": 372}


def test_voc_report_clips_drops_and_names_everything(tmp_path: Path):
    root = _voc(tmp_path)
    with pytest.raises(InvalidDataset, match="'alien' .* not one of the classes"):
        from_voc(root, classes=["cell", "blob"])
    ds = from_voc(root, classes=["cell", "blob"], unknown="drop")
    report = import_report(ds)
    by_stem = {Path(r.ref).stem: r for r in ds.records}
    assert sorted(by_stem) == ["a", "b", "c", "d"]
    assert by_stem["a"].boxes == Boxes(((2, 3, 12, 13), (30, 20, 40, 30)), (0, 0))  # clipped to 40x30
    assert by_stem["b"].boxes == Boxes(((0, 0, 10, 10),), (1,))
    assert by_stem["c"].boxes == Boxes() and by_stem["d"].boxes is None
    assert [by_stem[s].split for s in "abcd"] == ["train", "train", "val", "train"]
    c = report.counts()
    assert (c["images"], c["boxes"], c["clipped"], c["zero_area"], c["unknown_label"]) == (4, 3, 1, 1, 1)
    assert report.of("clipped")[0].box == (30, 20, 45, 35)
    assert report.of("unknown_label")[0].label == "alien"
    assert [Path(p).stem for p in report.empty_images] == ["c"]
    assert [Path(p).stem for p in report.unannotated] == ["d"]
    assert len(report.missing_images) == 1 and "gone.png" in report.missing_images[0]
    assert "1 clipped" in report.describe() and "1 missing images" in report.describe()
    assert len(ds.labelled()) == 3
    # an annotation declaring entities is refused rather than parsed
    (root / "Annotations" / "a.xml").write_text('<!DOCTYPE x [<!ENTITY e "boom">]><annotation/>')
    with pytest.raises(InvalidDataset, match="entities"):
        from_voc(root, unknown="drop")


def test_voc_to_coco_and_back_keeps_boxes_splits_and_classes(tmp_path: Path):
    ds = from_voc(_voc(tmp_path), classes=["cell", "blob"], unknown="drop")
    path = to_coco(ds, tmp_path / "voc" / "coco.json")
    doc = json.loads(path.read_text())
    assert doc["categories"] == [{"id": 1, "name": "cell", "supercategory": ""},
                                 {"id": 2, "name": "blob", "supercategory": ""}]
    assert doc["images"][0]["file_name"].startswith("JPEGImages/")  # relative to the json
    assert doc["annotations"][1]["bbox"] == [30.0, 20.0, 10.0, 10.0]
    back = open_source(path)
    assert back.classes == ds.classes and back.task is Task.DETECTION
    assert [r.ref for r in back.records] == [r.ref for r in ds.records]
    assert [r.boxes for r in back.records] == [r.boxes for r in ds.records]
    assert back.splits == ds.splits
    assert import_report(back).counts()["unannotated"] == 1


def test_bccd_coco_round_trip_is_exact(tmp_path: Path):
    ds = from_voc(shared_path("bccd"), classes=BCCD_CLASSES)
    back = from_coco(to_coco(ds, tmp_path / "bccd.json"))
    assert back.classes == BCCD_CLASSES and back.splits == ds.splits
    assert [r.boxes for r in back.records] == [r.boxes for r in ds.records]
    assert import_report(back).counts()["clipped"] == 0


def test_coco_category_ids_map_in_id_order_and_crowds_are_counted(tmp_path: Path):
    _image(tmp_path / "img" / "x.png")
    doc = {
        "images": [{"id": 10, "file_name": "img/x.png", "width": 40, "height": 30, "split": "valid"}],
        "categories": [{"id": 7, "name": "wbc"}, {"id": 3, "name": "rbc"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 2, 10, 5]},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [20, 10, 30, 30]},  # leaves image
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [0, 0, 40, 30], "iscrowd": 1},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    ds = from_coco(tmp_path / "ann.json")
    assert ds.classes == ["rbc", "wbc"] and ds.splits == ["val"]
    assert ds.records[0].boxes == Boxes(((1, 2, 11, 7), (20, 10, 40, 30)), (1, 0))
    assert import_report(ds).counts()["crowd"] == 1 and import_report(ds).counts()["clipped"] == 1
    assert from_coco(tmp_path / "ann.json", classes=["wbc", "rbc"]).records[0].boxes.labels == (0, 1)
    doc["annotations"][0]["image_id"] = 99
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(InvalidDataset, match=r"annotations\[0\]: image_id 99"):
        from_coco(tmp_path / "bad.json")
    (tmp_path / "notcoco.json").write_text("[]")
    with pytest.raises(InvalidDataset, match="not a COCO instances file"):
        open_source(tmp_path / "notcoco.json")


def test_csv_to_dataset_to_coco_and_back(tmp_path: Path):
    for name in ("a.png", "b.png", "c.png"):
        _image(tmp_path / "img" / name)
    csv = tmp_path / "boxes.csv"
    csv.write_text(
        "path,x1,y1,x2,y2,label,split,patient_id\n"
        "img/a.png,1.5,2.25,10.5,12,wbc,train,P1\n"
        "img/a.png,20,5,30,15.75,rbc,train,P1\n"
        "img/b.png,,,,,,test,P2\n"
        "img/c.png,3,3,3,8,rbc,train,P1\n"
        "img/missing.png,3,3,9,8,rbc,train,P3\n"
    )
    ds = open_source(csv)  # recognised by its columns, not read as a classification manifest
    assert ds.task is Task.DETECTION and ds.classes == ["rbc", "wbc"]
    assert [Path(r.ref).name for r in ds.records] == ["a.png", "b.png", "c.png"]
    assert ds.records[0].boxes == Boxes(((1.5, 2.25, 10.5, 12), (20, 5, 30, 15.75)), (1, 0))
    assert ds.records[1].boxes == Boxes() and ds.records[2].boxes == Boxes()
    assert ds.splits == ["train", "test", "train"] and ds.patient_ids == ["P1", "P2", "P1"]
    c = import_report(ds).counts()
    assert (c["zero_area"], c["empty_images"], c["missing_images"]) == (1, 1, 1)
    back = from_coco(to_coco(ds, tmp_path / "out" / "boxes.json"))
    assert [r.boxes for r in back.records] == [r.boxes for r in ds.records]
    assert back.splits == ds.splits and back.patient_ids == ds.patient_ids
    assert [r.ref for r in back.records] == [r.ref for r in ds.records]


@pytest.mark.parametrize(("row", "message"), [
    ("img/a.png,1,2,,4,rbc,train", "must all be given, or all be empty"),
    ("img/a.png,1,2,x,4,rbc,train", "must be numbers"),
    ("img/a.png,1,2,3,4,rbc,test", "differ from row 2"),
])
def test_csv_errors_name_the_row(tmp_path: Path, row: str, message: str):
    _image(tmp_path / "img" / "a.png")
    csv = tmp_path / "boxes.csv"
    csv.write_text(f"path,x1,y1,x2,y2,label,split\nimg/a.png,1,1,5,5,rbc,train\n{row}\n")
    with pytest.raises(InvalidDataset, match=message) as err:
        from_box_csv(csv)
    assert "row 3" in str(err.value)


def test_a_classification_manifest_still_opens_as_one(tmp_path: Path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")
    (tmp_path / "m.csv").write_text("path,label\na.png,normal\nb.png,lesion\n")
    assert open_source(tmp_path / "m.csv").task is Task.BINARY


def test_phantoms_as_a_detection_task_carry_their_exact_lesion_boxes():
    binary = make_phantoms(n=40, size=64, seed=1)
    ds = open_source("phantom:n=40,size=64,seed=1,task=detection")
    assert ds.task is Task.DETECTION and ds.classes == ["lesion"]
    assert [r.ref for r in ds.records] == [r.ref for r in binary.records]
    assert ds.splits == binary.splits and ds.patient_ids == binary.patient_ids
    for b, d in zip(binary.records, ds.records, strict=True):
        assert d.label is None
        np.testing.assert_array_equal(d.boxes.array(), np.asarray(b.meta["boxes"], np.float32).reshape(-1, 4))
        assert len(d.boxes) == 0 if b.label == 0 else len(d.boxes) >= 1
    assert ds.class_counts()["lesion"] == sum(len(r.meta["boxes"]) for r in binary.records)
    with pytest.raises(Exception, match="binary or a detection"):
        make_phantoms(n=4, task="multiclass")


def test_open_source_names_the_options_a_source_takes(tmp_path: Path):
    with pytest.raises(InvalidDataset, match=r"from_voc, which takes no option\(s\) \['clases'\]"):
        open_source(_voc(tmp_path), clases=["cell"])
    with pytest.raises(InvalidDataset, match="make_phantoms.*'task'"):
        open_source("phantom:n=4", classes=["lesion"])
