"""Run-only settings (device, precision, threads, checkpoints...) are not saved with a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_nets

from medsight.data.sources import make_phantoms
from medsight.models.base import META_FILE, load_estimator
from medsight.models.torch_classifier import TorchClassifier
from medsight.models.torch_ensemble import TorchEnsemble

tiny_nets()
pytestmark = pytest.mark.usefixtures("two_torch_threads")

GPU_RUN = {"device": "cuda", "precision": "fp16", "threads": 3, "checkpoint_dir": "/gpu/ckpt",
           "resume": True, "load_workers": 4, "num_workers": 2, "eval_batch_size": 512}


def test_a_model_trained_on_a_gpu_loads_and_predicts_on_the_cpu(tmp_path):
    ds = make_phantoms(n=30, size=16, seed=1)
    clf = TorchClassifier(network="tiny_cnn_test", epochs=1, batch_size=16, device="cpu",
                          threads=2).fit(ds.split("train"))
    expected = clf.predict_proba(ds)
    clf.set_params(**GPU_RUN)  # as recorded by a GPU training run
    folder = clf.save(tmp_path / "m")
    saved = json.loads((folder / META_FILE).read_text())["params"]
    assert not set(GPU_RUN) & set(saved) and saved["network"] == "tiny_cnn_test"

    meta = json.loads((folder / META_FILE).read_text())  # a file that still records them
    meta["params"].update(GPU_RUN)
    (folder / META_FILE).write_text(json.dumps(meta))
    again = load_estimator(folder)
    assert again.device == "auto" and again.checkpoint_dir is None and not again.resume
    again.set_params(device="cpu")  # this test machine may have a GPU: compare on the CPU
    np.testing.assert_allclose(again.predict_proba(ds), expected, atol=1e-6)


def test_ensemble_members_run_settings_are_not_saved(tmp_path):
    ds = make_phantoms(n=30, size=16, seed=2)
    member = TorchClassifier(network="tiny_cnn_test", epochs=1, batch_size=16, device="cpu",
                             threads=2).fit(ds.split("train"))
    ens = TorchEnsemble.from_members([member])
    ens.set_params(params={**ens.params, **GPU_RUN})
    saved = json.loads((ens.save(tmp_path / "e") / META_FILE).read_text())["params"]
    assert not set(GPU_RUN) & set(saved["params"]) and saved["params"]["epochs"] == 1
