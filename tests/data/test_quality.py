"""Quality check: counts, unreadable files, exact/near duplicates, leakage, label conflicts."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image as PILImage
from scipy.ndimage import gaussian_filter

from medsight.cli.quality_report import quality_text
from medsight.data.dataset import Dataset, Record, Task
from medsight.data.quality import (
    assert_no_leakage,
    check_dataset,
    close_hash_pairs,
    hamming,
    near_groups,
    phash,
    pixel_hash,
)
from medsight.data.quality import duplicates as duplicates_module
from medsight.data.quality.duplicates import DEFAULT_PIXEL_TOLERANCE
from medsight.data.refs import register_scheme
from medsight.errors import LeakageError, UnreadableImage
from medsight.io.image import Image

_ARRAYS: dict[str, np.ndarray] = {}


def _resolve_qtest(rest: str, meta: dict) -> Image:
    if rest not in _ARRAYS:
        raise UnreadableImage(f"qtest:{rest}", "no such test image (deliberately broken)")
    return Image(_ARRAYS[rest][None], modality="US")


register_scheme("qtest", _resolve_qtest)


def _texture(seed: int, size: int = 48) -> np.ndarray:
    """A smooth random image (blurred noise, 0..200), so that different seeds look different."""
    t = gaussian_filter(np.random.default_rng(seed).random((size, size)), 4)
    return (t - t.min()) / (t.max() - t.min()) * 200.0


@pytest.fixture
def planted() -> Dataset:
    """Every defect once: exact copy across splits with other label, near copy across splits,
    one patient in two splits, one unreadable record, and clean records."""
    a, b = _texture(1), _texture(2)
    noisy_b = b + np.random.default_rng(9).normal(0, 2.0, b.shape)
    _ARRAYS.update(
        {
            "a": a,
            "a_copy": a.copy(),
            "b": b,
            "b_near": noisy_b,
            "c": _texture(3),
            "d": _texture(4),
            "e": _texture(5),
            "f": _texture(6),
        }
    )
    recs = [
        Record("qtest:a", 0, "p1", split="train"),
        Record("qtest:a_copy", 1, "p2", split="test"),
        Record("qtest:b", 0, "p3", split="train"),
        Record("qtest:b_near", 0, "p4", split="val"),
        Record("qtest:c", 1, "p5", split="train"),
        Record("qtest:d", 1, "p5", split="test"),
        Record("qtest:e", 0, "p6", split="val"),
        Record("qtest:f", 1, "p7", split="test"),
        Record("qtest:missing", 0, "p8", split="train"),
    ]
    return Dataset(recs, Task.BINARY, ["benign", "malignant"], name="planted")


def test_phash_is_stable_under_scaling_and_noise_and_separates_images():
    img = _texture(11)
    h = phash(img)
    assert 0 <= h < 2**64
    assert phash(img * 0.5 + 10) == h  # brightness/contrast change
    noisy = img + np.random.default_rng(0).normal(0, 2.0, img.shape)
    assert hamming(phash(noisy), h) <= 4
    small = img[::2, ::2]  # a rescaled copy
    assert hamming(phash(small), h) <= 4
    others = [hamming(phash(_texture(s)), h) for s in range(20, 30)]
    assert min(others) > 8
    assert phash(np.stack([img, img, img])) == h  # channels averaged
    assert pixel_hash(img) != pixel_hash(img.astype(np.float32))  # dtype is part of identity


def test_close_hash_pairs_matches_brute_force_across_blocks(monkeypatch):
    rng = np.random.default_rng(5)
    base = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    flips = (np.uint64(1) << rng.integers(0, 64, size=40).astype(np.uint64)).astype(np.uint64)
    hashes = np.concatenate([base, base ^ flips])  # 40 pairs at distance 1, plus chance pairs
    monkeypatch.setattr(duplicates_module, "_BLOCK_CELLS", 100)  # force many small blocks
    got = {(i, j): d for i, j, d in close_hash_pairs(hashes, 6)}
    want = {}
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            d = hamming(int(hashes[i]), int(hashes[j]))
            if d <= 6:
                want[(i, j)] = d
    assert got == want
    assert all((i, i + 40) in got for i in range(40))


def test_check_finds_every_planted_defect(planted):
    calls = []
    report = check_dataset(planted, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (9, 9) and len(calls) == 9

    assert report.split_counts == {"train": 4, "val": 2, "test": 3}
    assert report.class_counts["test"] == {"benign": 0, "malignant": 3, "unlabelled": 0}

    assert report.has_unreadable
    (bad,) = report.unreadable
    assert bad.record.ref == "qtest:missing" and "deliberately broken" in bad.reason

    (exact,) = report.exact_duplicates
    assert [m.ref for m in exact.members] == ["qtest:a", "qtest:a_copy"]
    assert exact.conflicting_labels and exact.splits == ["test", "train"]
    assert not exact.identical_bytes  # in-memory images have no file bytes
    assert [g.members[0].ref for g in report.label_conflicts] == ["qtest:a"]

    (near,) = report.near_duplicates
    assert [m.ref for m in near.members] == ["qtest:b", "qtest:b_near"]
    assert 0 < near.max_distance <= report.near_duplicate_threshold

    assert report.has_leakage
    kinds = {(f.kind, f.key if f.kind == "patient" else f.members[0].ref) for f in report.leakage}
    assert kinds == {
        ("patient", "p5"),
        ("exact_duplicate", "qtest:a"),
        ("near_duplicate", "qtest:b"),
    }
    assert [f.kind for f in report.possible_leakage] == ["near_duplicate"]
    patient = report.leakage_of("patient")[0]
    assert patient.splits == ["test", "train"]
    assert "patient 'p5' in test and train" in patient.describe()

    data = json.loads(json.dumps(report.to_dict()))
    assert data["verdict"] == {"has_leakage": True, "has_unreadable": True, "has_label_conflicts": True}
    assert data["summary"] == report.summary() == {
        "unreadable": 1,
        "exact_duplicate_groups": 1,
        "near_duplicate_groups": 1,
        "leakage": 2,
        "possible_leakage": 1,
        "label_conflicts": 1,
    }
    assert data["images"]["shapes"] == {"48x48": 8}
    assert data["images"]["modalities"] == {"US": 8}

    text = quality_text(report)
    for needle in ("LEAKAGE FOUND", "qtest:missing", "deliberately broken", "p5", "conflict"):
        assert needle in text


def test_near_duplicates_can_be_switched_off(planted):
    report = check_dataset(planted, near_duplicate_threshold=None)
    assert report.near_duplicates == []
    assert {f.kind for f in report.leakage} == {"patient", "exact_duplicate"}
    assert "not checked" in quality_text(report)


def test_assert_no_leakage_raises_names_and_can_be_allowed(planted):
    with pytest.raises(LeakageError) as err:
        assert_no_leakage(planted)
    message = str(err.value)
    assert "patient 'p5'" in message and "qtest:a_copy" in message and "allow=True" in message
    assert "near" not in message.split("\n")[0]  # near duplicates only when asked
    found = assert_no_leakage(planted, allow=True, near_duplicates=True)
    assert {f.kind for f in found} == {"patient", "exact_duplicate", "near_duplicate"}
    only_patients = assert_no_leakage(planted, allow=True, images=False)
    assert [f.key for f in only_patients] == ["p5"]
    clean = planted.subset([2, 4, 6, 7])
    assert assert_no_leakage(clean) == []


def test_files_random_bytes_reported_and_identical_files_flagged(tmp_path):
    arr = (_texture(7) % 256).astype(np.uint8)
    PILImage.fromarray(arr).save(tmp_path / "one.png")
    (tmp_path / "two.png").write_bytes((tmp_path / "one.png").read_bytes())
    PILImage.fromarray(arr).save(tmp_path / "three.png", optimize=True, compress_level=1)
    assert (tmp_path / "three.png").read_bytes() != (tmp_path / "one.png").read_bytes()
    (tmp_path / "noise.dcm").write_bytes(np.random.default_rng(0).bytes(4096))
    recs = [
        Record(str(tmp_path / "one.png"), 0, split="train"),
        Record(str(tmp_path / "two.png"), 0, split="train"),
        Record(str(tmp_path / "three.png"), 0, split="train"),
        Record(str(tmp_path / "noise.dcm"), 1, split="test"),
    ]
    report = check_dataset(Dataset(recs, Task.BINARY, ["a", "b"], name="files"))
    (bad,) = report.unreadable
    assert bad.record.ref.endswith("noise.dcm") and bad.reason
    (group,) = report.exact_duplicates
    assert len(group.members) == 3  # same pixels, whatever the encoding
    assert not group.identical_bytes  # three.png has other bytes
    report2 = check_dataset(Dataset(recs[:2], Task.BINARY, ["a", "b"], name="files"))
    assert report2.exact_duplicates[0].identical_bytes
    assert not report.has_leakage  # all copies are in train


def test_breastmnist_known_defect(breastmnist):
    from medsight.data.sources import from_medmnist

    ds = from_medmnist(breastmnist)
    report = check_dataset(ds)
    assert report.split_counts == {"train": 546, "val": 78, "test": 156}
    assert not report.has_unreadable
    (exact,) = report.exact_duplicates  # the only exact duplicate in the official set
    where = sorted((m.split, m.ref.rsplit("/", 1)[-1], m.label) for m in exact.members)
    assert where == [("test", "76", 1), ("train", "115", 0)]
    assert exact.conflicting_labels
    leaks = report.leakage_of("exact_duplicate")
    assert len(leaks) == 1 and leaks[0].conflicting_labels
    assert report.label_conflicts == [exact]
    assert report.leakage_of("patient") == []  # MedMNIST publishes no patient ids
    # BUSI holds re-captures of the same lesion: near duplicates across the official splits
    assert len(report.leakage_of("near_duplicate")) > 20
    with pytest.raises(LeakageError, match="identical image in test and train"):
        assert_no_leakage(ds, report=report)


def test_real_ct_exact_duplicate_files_and_ungrouped_split_leaks(shared_data):
    from medsight.data.sources import from_dicom_dir
    from medsight.data.splits import holdout

    root = shared_data / "ct_medical_images" / "dicom_dir"
    if not root.is_dir():
        pytest.skip(f"CT Medical Images not found at {root} (see shared/data/MANIFEST.md)")
    ds = from_dicom_dir(root)
    naive = holdout(ds, seed=0, group_by_patient=False)
    report = check_dataset(naive, near_duplicate_threshold=None)
    # the folder holds 6 pairs of identical images of one patient: 5 pairs are byte-identical
    # files (same SOP Instance UID), 1 pair has the same pixels under other study/series UIDs
    assert len(report.exact_duplicates) == 6
    assert sum(g.identical_bytes for g in report.exact_duplicates) == 5
    assert all(len({m.patient_id for m in g.members}) == 1 for g in report.exact_duplicates)
    assert report.leakage_of("patient"), "a split that ignores patients must leak on this set"
    assert report.images.spacing["2D"]["min"][0] == pytest.approx(0.541016, abs=1e-5)
    grouped = holdout(ds, seed=0)  # copies share a patient, so grouping also keeps them together
    assert assert_no_leakage(grouped, images=False) == []


def test_near_duplicates_alone_are_possible_not_confirmed_leakage(planted) -> None:
    """The same picture across splits is listed for review; --strict fails only on a shared
    patient or an identical image."""
    report = check_dataset(planted.subset([2, 3, 6, 7]))  # b (train) and its noisy copy (val)
    assert [f.kind for f in report.possible_leakage] == ["near_duplicate"]
    assert not report.has_leakage
    text = " ".join(quality_text(report).split())
    assert "1 near-duplicate groups across splits" in text
    assert "0 exact and 1 near duplicate groups" in text  # the counts of report.summary()


def test_distinct_phantoms_are_not_near_duplicates() -> None:
    """The demo's phantoms share one body template, so pHash sees most of them as close; none
    is the same picture as another, so there is no group (it used to be one of 236 images)."""
    from medsight.data.sources.phantom import make_phantoms

    ds = make_phantoms(n=240, size=64, seed=0)
    hashes = np.array([phash(ds.image(i).pixels) for i in range(len(ds))], dtype=np.uint64)
    assert len(list(close_hash_pairs(hashes, 8))) > 1000, "many pHash candidates to reject"
    report = check_dataset(ds)
    assert report.near_duplicates == [] and report.exact_duplicates == []
    assert report.summary()["near_duplicate_groups"] == 0


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    PILImage.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return np.asarray(PILImage.open(buf), dtype=np.float64)


def test_exact_and_re_encoded_noisy_copies_are_one_group_others_are_not() -> None:
    from medsight.data.sources.phantom import make_phantoms

    phantoms = make_phantoms(n=6, size=64, seed=3)
    planes = [phantoms.image(i).pixels[0].astype(np.float64) for i in range(6)]
    a = (planes[0] - planes[0].min()) / np.ptp(planes[0]) * 255
    noisy = _jpeg(a, 90) + np.random.default_rng(1).normal(0, 2.5, a.shape)  # ~1 % noise
    _ARRAYS.update({"ph_a": a, "ph_a_copy": a.copy(), "ph_a_jpeg_noisy": noisy})
    for i in range(1, 6):
        _ARRAYS[f"ph_{i}"] = planes[i]
    names = ["ph_a", "ph_1", "ph_a_copy", "ph_2", "ph_a_jpeg_noisy", "ph_3", "ph_4", "ph_5"]
    ds = Dataset([Record(f"qtest:{n}", 0, split="train") for n in names], Task.BINARY, ["a", "b"])
    report = check_dataset(ds)
    (exact,) = report.exact_duplicates
    assert [m.ref for m in exact.members] == ["qtest:ph_a", "qtest:ph_a_copy"]
    (near,) = report.near_duplicates
    assert [m.ref for m in near.members] == ["qtest:ph_a", "qtest:ph_a_copy", "qtest:ph_a_jpeg_noisy"]
    assert 0 < near.max_difference <= report.pixel_tolerance


def test_a_chain_of_similar_images_does_not_become_one_group() -> None:
    """A~B and B~C but A and C differ: complete linkage keeps A and C apart (pHashes all equal,
    so only the pixel check decides)."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=256).astype(np.float32)
    step = np.sign(rng.normal(size=256)).astype(np.float32) * 0.6 * DEFAULT_PIXEL_TOLERANCE
    thumbs = [base, base + step, base + 2 * step, base + 20 * step]  # A, B, C, far away D
    groups = near_groups(["a", "b", "c", "d"], [7, 7, 7, 7], thumbs, threshold=8)
    assert len(groups) == 1
    (group,) = groups
    assert group.indices in ([0, 1], [1, 2])
    assert group.max_difference == pytest.approx(0.6 * DEFAULT_PIXEL_TOLERANCE, rel=1e-3)
    # every pair within the tolerance: one group of three
    close = [base, base + step / 2, base + step]
    assert [g.indices for g in near_groups(["a", "b", "c"], [7, 7, 7], close, threshold=8)] == [[0, 1, 2]]


def test_html_report_and_terminal_show_the_same_counts(planted, tmp_path) -> None:
    """One source of truth: the run's report and `data check` both print `summary()`."""
    from medsight.evaluate.report import ReportData, render_report
    from medsight.experiment import _quality_summary

    quality = _quality_summary(planted, lambda message: None)
    data = ReportData(title="q", task="binary", class_names=["benign", "malignant"], positive_class=1,
                      model_label="m", threshold=None, splits=[], quality=quality)
    html = " ".join(render_report(data, tmp_path / "report.html").read_text().split())
    text = " ".join(quality_text(check_dataset(planted)).split())
    phrases = ("1 unreadable", "1 exact and 1 near duplicate groups", "1 near-duplicate groups across splits")
    for phrase in phrases:
        assert phrase in html and phrase in text, phrase
