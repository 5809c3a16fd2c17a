"""The `medsight` command as a user runs it: real process, real files, exit codes scripts rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
from conftest import shared_path
from pydicom.data import get_testdata_file

MEDSIGHT = [sys.executable, "-m", "medsight.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run([*MEDSIGHT, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def test_help_everywhere_exits_zero() -> None:
    for args in ([], ["data"], ["data", "check"], ["data", "deid"], ["datasets", "fetch"],
                 ["models"], ["preprocess", "preview"], ["train"], ["compare"], ["demo"],
                 ["cache"], ["cache", "list"], ["cache", "prune"]):
        done = run(*args, "--help")
        assert done.returncode == 0, (args, done.stderr)
        assert "Usage" in done.stdout


def test_usage_error_exits_two() -> None:
    assert run("no-such-command").returncode == 2
    assert run("data", "check").returncode == 2  # missing argument


def test_missing_source_is_a_failure_with_a_clear_message(tmp_path: Path) -> None:
    done = run("data", "check", str(tmp_path / "nowhere"))
    assert done.returncode == 1
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_data_check_breastmnist_counts_and_strict_leakage(tmp_path: Path) -> None:
    npz = shared_path("medmnist", "breastmnist.npz")
    out = tmp_path / "check.json"
    done = run("data", "check", str(npz), "--json", "--output", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["split_counts"] == {"train": 546, "val": 78, "test": 156}
    # the official set holds one image twice, in train and test, with opposite labels
    strict = run("data", "check", str(npz), "--strict")
    assert strict.returncode == 1
    assert "LEAKAGE" in strict.stdout


def test_data_check_phantoms_is_clean_under_strict() -> None:
    done = run("data", "check", "phantom:n=60,size=32", "--strict")
    assert done.returncode == 0, done.stdout + done.stderr


def test_info_reads_a_ct_in_hounsfield_units() -> None:
    done = run("info", get_testdata_file("CT_small.dcm"))
    assert done.returncode == 0, done.stderr
    assert "CT" in done.stdout and "(1, 128, 128)" in done.stdout


def test_info_on_random_bytes_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "noise.dcm"
    bad.write_bytes(os.urandom(4096))
    done = run("info", str(bad))
    assert done.returncode == 1
    assert "noise.dcm" in done.stderr and "Traceback" not in done.stderr


def test_deid_cli_writes_clean_copies_and_leaves_input(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    original = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (src / "ct.dcm").write_bytes(original)
    done = run("data", "deid", str(src), str(tmp_path / "out"), "--secret", "s3cret")
    assert done.returncode == 0, done.stderr
    assert (src / "ct.dcm").read_bytes() == original
    outs = list((tmp_path / "out").rglob("*.dcm"))
    assert len(outs) == 1
    ds = pydicom.dcmread(outs[0])
    before = pydicom.dcmread(src / "ct.dcm")
    assert ds.PatientID != before.PatientID and str(ds.PatientName) != str(before.PatientName)
    assert ds.PatientIdentityRemoved == "YES"


def test_datasets_fetch_unknown_name_fails_cleanly(tmp_path: Path) -> None:
    done = run("datasets", "fetch", "nosuchmnist", "--cache-dir", str(tmp_path))
    assert done.returncode == 1
    assert "nosuchmnist" in done.stderr


def test_preprocess_preview_writes_a_before_after_grid(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    cfg = tmp_path / "pre.yaml"
    cfg.write_text("- crop_foreground: {}\n- resize: {size: [48, 48]}\n- minmax: {}\n")
    out = tmp_path / "grid.png"
    done = run("preprocess", "preview", "phantom:n=20,size=64", "-c", str(cfg), "-o", str(out),
               "--n", "3")
    assert done.returncode == 0, done.stderr
    with PILImage.open(out) as im:
        assert im.format == "PNG"
        w, h = im.size
    assert h > w, "three rows of before/after pairs"
    assert "crop_foreground" in done.stdout


def test_preprocess_preview_unknown_step_names_it(tmp_path: Path) -> None:
    cfg = tmp_path / "pre.yaml"
    cfg.write_text("- sharpen_magic: {}\n")
    done = run("preprocess", "preview", "phantom:n=10,size=32", "-c", str(cfg))
    assert done.returncode == 1 and "sharpen_magic" in done.stderr


def test_entry_point_is_the_cli_package_and_the_library_does_not_render() -> None:
    """`medsight = medsight.cli:main`; the data check returns data, only the cli imports rich."""
    from importlib.metadata import entry_points

    from medsight.cli import main

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "medsight"]
    assert ep.value == "medsight.cli:main" and ep.load() is main
    code = ("import sys, medsight.data.quality, medsight.data.open, medsight.preprocess; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich' "
            "or m.startswith('medsight.cli')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
