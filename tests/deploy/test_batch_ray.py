"""`medsight predict --engine ray` on a real local Ray cluster of 2 CPUs: the CLI joining it with
`--address` gives the local engine's rows (same inputs, exactly equal probabilities, same errors) in
the same Parquet layout, a detector's boxes too; exactly one row per input when an actor is
SIGKILLed mid-job; a clear
message when Ray is not installed, and no Ray import until the engine runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import shared_path
from deploy.run_pngs import write_test_pngs
from typer.testing import CliRunner

from medsight.cli import app
from medsight.deploy.batch import predict_paths
from medsight.deploy.batch_ray import INSTALL_HINT, SINGLE_NODE_ENV, predict_paths_ray

pytestmark = pytest.mark.xdist_group("deploy_runs")
os.environ.setdefault(SINGLE_NODE_ENV, "0")  # before Ray is imported: a loopback-only cluster
ray = pytest.importorskip("ray", reason="Ray is a dev dependency (medsight[ray])")


@pytest.fixture(scope="module")
def ray_address() -> str:
    """A local Ray cluster of 2 CPUs (loopback, no dashboard) for this module; its GCS address."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    context = ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                       object_store_memory=256 << 20, logging_level="WARNING")
    assert context.address_info["address"].startswith("127.0.0.1:")
    yield context.address_info["address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(classical_run, tmp_path_factory) -> list[Path]:
    """The classical run's test split as PNGs, a truncated DICOM from the shared corpus and a
    file that is no image at all (the last two: error rows)."""
    folder = tmp_path_factory.mktemp("ray_inputs")
    write_test_pngs(classical_run, folder / "pngs")
    (folder / "pngs" / "notes.bin").write_bytes(b"not an image, just bytes\n" * 4)
    return [folder / "pngs", shared_path("dicom", "edge_cases", "MR_truncated.dcm")]


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _without_timings(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "timings_ms"} for r in rows]


def _cli_on_cluster(address: str, bundle: Path, inputs: list[Path], out: Path
                    ) -> subprocess.CompletedProcess:
    """`medsight predict --engine ray --address ADDRESS` in a new process: a second driver that
    joins the running cluster."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "medsight", "predict", "-b", str(bundle), *map(str, inputs),
         "--out", str(out), "--engine", "ray", "--address", address, "--batch-size", "3",
         "--allow-unsigned"], capture_output=True, text=True, env=env, timeout=180)


def test_ray_gives_the_local_engines_rows(ray_address, classical_run, bundle_of, inputs,
                                          tmp_path) -> None:
    """The CLI on the running cluster (--address) and the local engine: the same rows, in the
    same order, with exactly equal probabilities and the same errors; exit 1 for the failures."""
    bundle = bundle_of(classical_run)
    local = predict_paths(bundle, inputs, out=tmp_path / "local.parquet", batch_size=4)
    predict_paths(bundle, inputs, out=tmp_path / "local.json", batch_size=4)
    done = _cli_on_cluster(ray_address, bundle, inputs, tmp_path / "ray.parquet")
    n_png = len(list((inputs[0]).glob("*.png")))
    assert done.returncode == 1, done.stdout + done.stderr  # two inputs could not be predicted
    assert f"{n_png} predicted, 2 failed" in done.stdout and "MR_truncated.dcm" in done.stderr
    local_rows, ray_rows = _rows(tmp_path / "local.parquet"), _rows(tmp_path / "ray.parquet")
    assert len(ray_rows) == len(local_rows) == local.n == n_png + 2
    assert [r["path"] for r in ray_rows] == [r["path"] for r in local_rows]  # same order too
    errors = {r["path"]: r["error"] for r in ray_rows if r["error"] is not None}
    assert set(errors) == {str(inputs[0] / "notes.bin"), str(inputs[1])}
    assert errors == {r["path"]: r["error"] for r in local_rows if r["error"] is not None}
    assert all(e.startswith("cannot read image") for e in errors.values())
    for mine, theirs in zip(ray_rows, local_rows, strict=True):
        assert mine["probabilities"] == theirs["probabilities"]  # exactly equal floats
        assert mine["label"] == theirs["label"] and mine["confidence"] == theirs["confidence"]
        assert mine["input"] == theirs["input"] and mine["model"] == theirs["model"]
        if mine["error"] is None:  # the unsigned run says so, as the local CLI does
            assert mine["warnings"][-1].startswith("unsigned bundle")
            assert mine["warnings"][:-1] == theirs["warnings"]
    # the Parquet rows hold the JSON output's fields and values (missing ones as nulls)
    as_json = json.loads((tmp_path / "local.json").read_text())
    for row, obj in zip(_without_timings(local_rows), as_json, strict=True):
        assert {k: row[k] for k in obj if k != "timings_ms"} == {
            k: v for k, v in obj.items() if k != "timings_ms"}
        assert all(row[k] is None for k in set(row) - set(obj))
    predicted = next(r for r in local_rows if r["error"] is None)
    assert set(predicted["timings_ms"]) >= {"read", "preprocess", "inference", "total"}
    assert not list(tmp_path.glob(".*.tmp"))  # written under a temporary name, then renamed


def _actor_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"_PredictActor" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_a_killed_actor_loses_no_row_and_duplicates_none(ray_address, cnn2d_run, bundle_of,
                                                         inputs, tmp_path) -> None:
    """240 inputs in batches of 4 over 2 actors; one actor is SIGKILLed once 12 rows are written:
    its batch is re-run on a new actor and every input still has exactly one row, with the very
    probabilities of the local engine (a CNN here, whose local batches hold 32 images)."""
    pngs = sorted(inputs[0].glob("*.png"))
    folder = tmp_path / "many"
    folder.mkdir()
    copies = {}
    for k in range(240):
        src = pngs[k % len(pngs)]
        dst = folder / f"{k:04d}_{src.name}"
        shutil.copyfile(src, dst)
        copies[str(dst)] = str(src)
    bundle = bundle_of(cnn2d_run)
    reference = {r["path"]: r for r in _rows(_local(bundle, inputs[0], tmp_path))}
    killed: list[tuple[list[int], int]] = []
    earlier = set(_actor_pids())  # an earlier job's actors may still be shutting down

    def kill_one(done: int, total: int | None) -> None:
        if not killed and done >= 12:
            pids = sorted(set(_actor_pids()) - earlier)  # this job's actors
            if pids:  # (none seen: try again at the next row)
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids, done))

    out = tmp_path / "many.parquet"
    predict_paths_ray(bundle, [folder], out, batch_size=4, progress=kill_one)
    assert killed and killed[0][1] < 240, killed  # an actor was killed in the middle of the job
    rows = _rows(out)
    assert len(rows) == 240 and sorted(r["path"] for r in rows) == sorted(copies)  # once each
    for r in rows:
        assert r["error"] is None, r
        assert r["probabilities"] == reference[copies[r["path"]]]["probabilities"], r


def _local(bundle: Path, folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "reference.parquet"
    predict_paths(bundle, [folder], out=out)
    return out


def test_a_detectors_boxes_and_counts_are_the_local_engines(ray_address, detector_run, bundle_of,
                                                            tmp_path) -> None:
    from deploy.tiny_detector import smear_jpegs

    bundle, inputs = bundle_of(detector_run), [*smear_jpegs(2), tmp_path / "missing.png"]
    predict_paths(bundle, inputs, out=tmp_path / "local.parquet")
    predict_paths_ray(bundle, inputs, tmp_path / "ray.parquet")
    local, remote = (_without_timings(_rows(tmp_path / f"{n}.parquet")) for n in ("local", "ray"))
    assert remote == local and len(remote) == 3 and remote[0]["boxes"]
    assert remote[2]["error"].startswith("cannot read image")


def test_without_ray_the_message_says_how_to_install_it(classical_run, bundle_of,
                                                        tmp_path) -> None:
    code = ("import sys; sys.modules['ray'] = None; from medsight.cli import main; "
            "sys.argv = ['medsight', *sys.argv[1:]]; main()")  # `import ray` raises ImportError
    done = subprocess.run(
        [sys.executable, "-c", code, "predict", "-b", str(bundle_of(classical_run)),
         str(tmp_path), "-o", str(tmp_path / "r.parquet"), "--engine", "ray", "--allow-unsigned"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and INSTALL_HINT in " ".join(done.stderr.split()), done.stderr
    assert not (tmp_path / "r.parquet").exists()


def test_the_ray_engine_wants_one_parquet_file(classical_run, bundle_of, tmp_path) -> None:
    """Refused before any cluster starts: no --out, reports, or a results file not .parquet."""
    base = ["predict", "-b", str(bundle_of(classical_run)), str(tmp_path), "--engine", "ray",
            "--allow-unsigned"]
    for extra in ([], ["-o", str(tmp_path / "r.parquet"), "--report-dir", str(tmp_path / "rep")]):
        result = CliRunner().invoke(app, [*base, *extra])
        said = " ".join(result.output.replace("│", " ").split())
        assert result.exit_code == 2 and "give --out results.parquet" in said
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "r.json")])
    assert "the Ray engine writes Parquet" in str(result.exception)
    assert not list(tmp_path.iterdir())


def test_importing_medsight_and_the_ray_engine_does_not_import_ray() -> None:
    code = ("import sys, medsight, medsight.cli.predict, medsight.deploy.batch_ray; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
