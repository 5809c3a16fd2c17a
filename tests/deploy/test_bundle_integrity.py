"""Bundles are verified: one changed byte anywhere, an extra, missing or pickled file is refused."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from deploy.tamper import flip, members

from medsight.deploy import open_bundle
from medsight.deploy.bundle_archive import bundle_bytes, read_bundle
from medsight.deploy.manifest import canonical_json, seal
from medsight.errors import BundleIntegrityError


def _write(path: Path, files: dict[str, bytes]) -> Path:
    path.write_bytes(bundle_bytes(files))
    return path


@pytest.mark.xdist_group("deploy_runs")
@pytest.mark.parametrize("kind", ["cnn2d_run", "classical_run"])
def test_one_changed_byte_in_each_kind_of_file_is_refused_naming_it(
        kind: str, request: pytest.FixtureRequest, bundle_of, tmp_path: Path) -> None:
    original = bundle_of(request.getfixturevalue(kind))
    files = members(original)
    assert {"manifest.json", "preprocess.json", "model.onnx", "model_card.html"} <= set(files)
    for name, data in files.items():
        # the member rewritten with a valid zip CRC: only the sha256 can catch it
        tampered = _write(tmp_path / f"{name}.msb", {**files, name: flip(data, len(data) // 2)})
        with pytest.raises(BundleIntegrityError, match=name.replace(".", r"\.")):
            open_bundle(tampered)
        # the same byte flipped inside the zip file: the zip's CRC names the member
        raw = original.read_bytes()
        with zipfile.ZipFile(original) as zf:
            info = zf.getinfo(name)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        flipped = tmp_path / f"raw_{name}.msb"
        flipped.write_bytes(flip(raw, start + info.file_size // 2))
        with pytest.raises(BundleIntegrityError, match=name.replace(".", r"\.")):
            open_bundle(flipped)


@pytest.mark.xdist_group("deploy_runs")
def test_a_changed_byte_anywhere_in_the_container_is_refused(classical_run: Path, bundle_of,
                                                             tmp_path: Path) -> None:
    raw = bundle_of(classical_run).read_bytes()
    positions = sorted({*range(0, 64), *range(len(raw) - 200, len(raw)),
                        *np.linspace(0, len(raw) - 1, 200).astype(int).tolist()})
    for at in positions:
        bad = tmp_path / "bad.msb"
        bad.write_bytes(flip(raw, at))
        with pytest.raises(BundleIntegrityError):
            open_bundle(bad)


@pytest.mark.xdist_group("deploy_runs")
def test_manifest_edits_extra_and_missing_files_are_refused(classical_run: Path, bundle_of,
                                                            tmp_path: Path) -> None:
    files = members(bundle_of(classical_run))
    manifest = json.loads(files["manifest.json"])
    edited = {**manifest, "threshold": {**manifest["threshold"], "value": 0.01}}
    with pytest.raises(BundleIntegrityError, match="manifest.json was edited"):
        open_bundle(_write(tmp_path / "edited.msb", {**files, "manifest.json": canonical_json(edited)}))
    reformatted = json.dumps(manifest).encode()  # same content, other bytes
    with pytest.raises(BundleIntegrityError, match="manifest.json"):
        open_bundle(_write(tmp_path / "spaces.msb", {**files, "manifest.json": reformatted}))
    with pytest.raises(BundleIntegrityError, match="extra.json.*not listed"):
        open_bundle(_write(tmp_path / "extra.msb", {**files, "extra.json": b"{}"}))
    missing = {k: v for k, v in files.items() if k != "preprocess.json"}
    with pytest.raises(BundleIntegrityError, match="preprocess.json.*missing"):
        open_bundle(_write(tmp_path / "missing.msb", missing))


@pytest.mark.xdist_group("deploy_runs")
def test_a_bundle_holding_pickled_content_is_refused(classical_run: Path, bundle_of,
                                                     tmp_path: Path) -> None:
    files = members(bundle_of(classical_run))
    manifest = json.loads(files["manifest.json"])
    payload = pickle.dumps({"harmless": "but pickled"})
    resealed = {**files, "model.pkl": payload}
    resealed["manifest.json"] = seal(manifest, resealed)  # hashes are right: only the kind is wrong
    with pytest.raises(BundleIntegrityError, match="model.pkl.*pickle"):
        open_bundle(_write(tmp_path / "pkl.msb", resealed))
    # pickle bytes disguised under an allowed name are caught by their magic
    disguised = {**files, "model.onnx": payload}
    disguised["manifest.json"] = seal(manifest, disguised)
    with pytest.raises(BundleIntegrityError, match="model.onnx.*pickled"):
        open_bundle(_write(tmp_path / "disguised.msb", disguised))
    # a joblib file next to a bundle folder is refused as well
    folder = tmp_path / "folder_bundle"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    open_bundle(folder)
    import joblib

    joblib.dump({"a": 1}, folder / "model.joblib")
    with pytest.raises(BundleIntegrityError, match="model.joblib.*pickle"):
        open_bundle(folder)


@pytest.mark.xdist_group("deploy_runs")
def test_cam_weights_must_be_a_plain_array(cnn2d_run: Path, bundle_of, tmp_path: Path) -> None:
    files = members(bundle_of(cnn2d_run))
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    manifest = json.loads(files["manifest.json"])
    bad = {**files, "cam_weights.npy": buf.getvalue()}
    bad["manifest.json"] = seal(manifest, bad)
    with pytest.raises(BundleIntegrityError, match="cam_weights.npy"):
        open_bundle(_write(tmp_path / "objects.msb", bad))


@pytest.mark.xdist_group("deploy_runs")
def test_directory_form_round_trips_and_detects_a_changed_byte(cnn2d_run: Path, bundle_of,
                                                               tmp_path: Path) -> None:
    from medsight.deploy import create_bundle

    folder = create_bundle(cnn2d_run, tmp_path / "bundle_dir")
    zipped = members(bundle_of(cnn2d_run))
    assert folder.is_dir() and read_bundle(folder).keys() == zipped.keys()
    for name in ("model.onnx", "preprocess.json", "cam_weights.npy"):  # uuid/time differ elsewhere
        assert (folder / name).read_bytes() == zipped[name]
    open_bundle(folder)
    weights = folder / "cam_weights.npy"
    weights.write_bytes(flip(weights.read_bytes(), len(weights.read_bytes()) - 3))
    with pytest.raises(BundleIntegrityError, match="cam_weights.npy"):
        open_bundle(folder)


@pytest.mark.xdist_group("deploy_runs")
def test_create_refuses_to_overwrite_silently(classical_run: Path, bundle_of, tmp_path: Path) -> None:
    from medsight.deploy import create_bundle
    from medsight.errors import InvalidConfig

    out = tmp_path / "model.msb"
    shutil.copy(bundle_of(classical_run), out)
    with pytest.raises(InvalidConfig, match="already exists"):
        create_bundle(classical_run, out)
    assert create_bundle(classical_run, out, overwrite=True) == out
    assert members(out).keys() == members(bundle_of(classical_run)).keys()
    assert list(members(out)) == sorted(members(out))  # deterministic member order


_NO_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch' (blocked by the test)")
sys.meta_path.insert(0, _Block())
import numpy as np
from medsight.deploy import open_bundle
for path in sys.argv[1:]:
    bundle = open_bundle(path)
    x = np.zeros((2, *bundle.runtime.input_shape), dtype=np.float32)
    out = bundle.runtime.forward(x)
    assert out.probabilities.shape == (2, len(bundle.classes))
assert "torch" not in sys.modules
print("no torch")
"""


@pytest.mark.xdist_group("deploy_runs")
def test_opening_and_running_bundles_never_imports_torch(classical_run: Path, cnn2d_run: Path,
                                                         cnn3d_run: Path, bundle_of) -> None:
    paths = [str(bundle_of(r)) for r in (classical_run, cnn2d_run, cnn3d_run)]
    done = subprocess.run([sys.executable, "-c", _NO_TORCH, *paths], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "no torch" in done.stdout
