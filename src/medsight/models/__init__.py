"""Models: the estimator protocol (`clone`, `load_estimator`, kinds by name), classical pipelines,
the network registry, the fitted torch model and its inference (`torch_inference`)."""

from medsight.models.base import MedsightEstimator, clone, load_estimator
from medsight.models.kinds import estimator_class, estimator_kinds

__all__ = ["MedsightEstimator", "clone", "estimator_class", "estimator_kinds", "load_estimator"]
