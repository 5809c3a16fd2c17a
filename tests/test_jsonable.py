"""The one JSON converter (`medsight.jsonable`) and the writers that use it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medsight.errors import InvalidConfig
from medsight.jsonable import jsonable
from medsight.preprocess.base import to_plain


def test_numpy_paths_and_non_finite_numbers_become_strict_json():
    value = {1: (np.int64(3), np.float32(0.5)), "a": np.array([[1, 2]]), "p": Path("/x/y"),
             "nan": float("nan"), "inf": np.float64(np.inf), "b": np.bool_(True), "n": None}
    out = jsonable(value)
    assert out == {"1": [3, 0.5], "a": [[1, 2]], "p": "/x/y", "nan": None, "inf": None,
                   "b": True, "n": None}
    json.dumps(out, allow_nan=False)
    assert type(out["b"]) is bool and type(out["1"][0]) is int
    marker = object()
    assert jsonable([marker])[0] is marker  # lenient by default
    with pytest.raises(TypeError, match="not JSON data"):
        jsonable({"x": marker}, strict=True)


def test_preprocessing_configs_use_the_strict_converter():
    assert to_plain({"size": (np.int64(8), 8)}) == {"size": [8, 8]}
    with pytest.raises(InvalidConfig, match="preprocessing config"):
        to_plain({"fn": print})


def test_saved_estimator_metadata_is_strict_json(tmp_path):
    from medsight.data.sources import make_phantoms
    from medsight.models.classical import ClassicalClassifier

    ds = make_phantoms(n=24, size=16)
    clf = ClassicalClassifier("logistic_regression", features=["stats"],
                              model_params={"C": np.float64(2.0), "tol": float("nan")})
    clf.model_params["tol"] = 1e-4  # fit with a valid value, then record a NaN to save
    clf.fit(ds.split("train"))
    clf.model_params["tol"] = float("nan")
    folder = clf.save(tmp_path / "m")
    for name in ("estimator.json", "classical.json"):
        json.loads((folder / name).read_text(), parse_constant=lambda c: pytest.fail(c))
