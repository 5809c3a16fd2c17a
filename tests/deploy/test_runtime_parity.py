"""The bundle's runtime reproduces `predict_proba` on the run's real test split, for every kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight.deploy import open_bundle

KINDS = ["classical_run", "cnn2d_run", "cnn3d_run", "ordinal_run", "ensemble_run"]


@pytest.mark.xdist_group("deploy_runs")
@pytest.mark.parametrize("kind", KINDS)
def test_runtime_matches_predict_proba_on_the_test_split(kind: str, request: pytest.FixtureRequest,
                                                         bundle_of, split_parity) -> None:
    run = request.getfixturevalue(kind)
    diff, same, bundle = split_parity(run, bundle_of(run))
    assert diff < 1e-5, f"{kind}: max |ONNX - predict_proba| = {diff:.3g}"
    assert same, f"{kind}: decisions differ"
    parity = bundle.manifest["runtime"]["parity"]
    assert parity["split"] == "test" and parity["max_abs_diff"] < 1e-5 and parity["decisions_identical"]


@pytest.mark.xdist_group("deploy_runs")
def test_cnn_bundle_exports_feature_maps_and_cam_weights(cnn2d_run: Path, bundle_of) -> None:
    bundle = open_bundle(bundle_of(cnn2d_run))
    runtime = bundle.runtime
    assert bundle.manifest["heatmap"]["method"] == "cam"
    assert bundle.manifest["runtime"]["tta_flips"] == [[], [-1]]  # the L-R flip view is in the graph
    x = np.random.default_rng(0).random((3, *runtime.input_shape), dtype=np.float32)
    out = runtime.forward(x)
    assert out.features is not None and out.features.shape[0] == 3
    k, f = runtime.cam_weights.shape
    assert k == len(bundle.classes) and f == out.features.shape[1]
    assert runtime.forward(x, with_features=False).features is None


@pytest.mark.xdist_group("deploy_runs")
@pytest.mark.parametrize("kind", ["ordinal_run", "ensemble_run", "classical_run"])
def test_models_without_a_linear_cam_head_fall_back_to_occlusion(kind: str, request, bundle_of) -> None:
    bundle = open_bundle(bundle_of(request.getfixturevalue(kind)))
    assert bundle.manifest["heatmap"]["method"] == "occlusion"
    assert bundle.runtime.cam_weights is None


@pytest.mark.xdist_group("deploy_runs")
def test_ensemble_is_averaged_inside_one_graph(ensemble_run: Path, bundle_of) -> None:
    manifest = open_bundle(bundle_of(ensemble_run)).manifest
    assert manifest["runtime"]["ensemble"]["members"] == 2
    assert "one ONNX graph" in manifest["runtime"]["ensemble"]["combination"]
    assert [n for n in manifest["files"] if n.endswith(".onnx")] == ["model.onnx"]


@pytest.mark.xdist_group("deploy_runs")
def test_one_session_is_shared_by_threads(cnn2d_run: Path, bundle_of) -> None:
    from concurrent.futures import ThreadPoolExecutor

    runtime = open_bundle(bundle_of(cnn2d_run)).runtime
    batches = [np.random.default_rng(i).random((5, *runtime.input_shape), dtype=np.float32)
               for i in range(8)]
    sequential = [runtime.forward(b).probabilities for b in batches]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda b: runtime.forward(b).probabilities, batches))
    for a, b in zip(sequential, threaded, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.xdist_group("deploy_runs")
def test_forward_refuses_a_tensor_of_the_wrong_shape(classical_run: Path, bundle_of) -> None:
    from medsight.errors import InvalidConfig

    runtime = open_bundle(bundle_of(classical_run)).runtime
    with pytest.raises(InvalidConfig, match="preprocessed tensors"):
        runtime.forward(np.zeros((2, 1, 8, 8), dtype=np.float32))
    empty = runtime.forward(np.zeros((0, *runtime.input_shape), dtype=np.float32))
    assert empty.probabilities.shape == (0, 2) and empty.features is None
