"""The estimator protocol itself: clone, get/set_params, validation in fit, NotFittedError, kinds."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.config import parse_config
from medsight.data.sources import make_phantoms
from medsight.errors import InvalidConfig, MedsightError, NotFittedError
from medsight.experiment import build_estimator
from medsight.models import MedsightEstimator, clone, estimator_class, estimator_kinds
from medsight.models.classical import ClassicalClassifier
from medsight.models.torch_ensemble import TorchEnsemble


def test_clone_copies_parameters_not_state():
    clf = ClassicalClassifier("logistic_regression", features=["stats"],
                              model_params={"C": 2.0}, seed=4)
    clf.fit(make_phantoms(n=30, size=16).split("train"))
    twin = clone(clf)
    assert type(twin) is ClassicalClassifier and twin.get_params() == clf.get_params()
    assert twin.model_params is not clf.model_params  # containers copied
    assert not hasattr(twin, "pipeline_")


def test_set_params_returns_self_and_refuses_unknown_names():
    clf = ClassicalClassifier()
    assert clf.set_params(model="knn", seed=3) is clf
    assert clf.model == "knn" and clf.seed == 3
    with pytest.raises(InvalidConfig, match="no parameter"):
        clf.set_params(trees=10)


def test_get_params_raises_for_a_parameter_never_stored():
    class Forgetful(ClassicalClassifier):
        def __init__(self, model: str = "knn", lost: int = 1):
            super().__init__(model)

    with pytest.raises(AttributeError, match="lost"):
        Forgetful().get_params()


def test_constructors_store_and_fit_validates():
    ens = TorchEnsemble(n_folds=1)  # no error until fit
    assert ens.n_folds == 1
    with pytest.raises(InvalidConfig, match="n_folds"):
        ens.fit(make_phantoms(n=10, size=16).split("train"))


def test_not_fitted_is_a_medsight_error():
    assert issubclass(NotFittedError, MedsightError)
    with pytest.raises(NotFittedError, match="fit"):
        ClassicalClassifier().predict_proba(make_phantoms(n=4, size=16))
    with pytest.raises(NotFittedError):
        ClassicalClassifier().decide(np.zeros((1, 2)))


def test_one_registry_of_kinds_serves_config_loading_and_experiments():
    assert estimator_kinds()[:3] == ["classical", "torch", "torch_ensemble"]
    for kind in estimator_kinds():
        cls = estimator_class(kind)
        assert issubclass(cls, MedsightEstimator) and cls.kind == kind
    with pytest.raises(InvalidConfig, match="known"):
        estimator_class("xgboost")
    with pytest.raises(InvalidConfig, match="unknown model kind"):
        parse_config({"data": {"source": "phantom:n=10"}, "model": {"kind": "xgboost"}})
    cfg = parse_config({"data": {"source": "phantom:n=10"},
                        "model": {"kind": "torch_ensemble", "params": {"n_folds": 3}}})
    spec = cfg.models[0]
    est = build_estimator(spec, [{"minmax": {}}], seed=5, evaluation=cfg.evaluation)
    assert isinstance(est, TorchEnsemble) and est.seed == 5
    assert est.params["preprocess"] == [{"minmax": {}}]
    bad = parse_config({"data": {"source": "phantom:n=10"},
                        "model": {"kind": "torch", "params": {"optimizer": "rmsprop"}}})
    with pytest.raises(InvalidConfig, match="rmsprop"):  # checked when the run is built
        build_estimator(bad.models[0], [], seed=0)


def test_one_threshold_choice_for_every_kind_and_the_ensemble_keeps_target_sensitivity():
    from medsight.models.threshold import choose_threshold, validation_threshold

    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    p = np.array([0.1, 0.3, 0.35, 0.4, 0.8, 0.9, 0.7, np.nan])  # NaN: an unreadable image
    want = choose_threshold(y[:7], p[:7], "target_sensitivity", target=0.75)
    assert validation_threshold(y, p, "target_sensitivity", 0.75) == want == 0.7
    assert validation_threshold(y, p, "youden") == choose_threshold(y[:7], p[:7], "youden")
    assert validation_threshold(y[:3], p[:3], "youden") == 0.5  # one class only
    assert validation_threshold(y, p, None) == 0.5
    ens = TorchEnsemble(threshold_method="target_sensitivity", target_sensitivity=0.75)
    assert ens.get_params()["target_sensitivity"] == 0.75
    with pytest.raises(InvalidConfig, match="threshold_method"):
        TorchEnsemble(threshold_method="f1").validate_params()
