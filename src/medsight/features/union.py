"""`make_features`: several registered extractors side by side as one scikit-learn FeatureUnion."""

from __future__ import annotations

from typing import Any

from sklearn.pipeline import FeatureUnion

from medsight.errors import InvalidConfig
from medsight.features.registry import feature_factory


def _split_params(names: list[str], params: dict[str, Any]):
    own: dict[str, dict[str, Any]] = {n: {} for n in names}
    shared: dict[str, Any] = {}
    for key, value in params.items():
        if key in own:
            if not isinstance(value, dict):
                raise InvalidConfig(
                    f"make_features: {key}= must be a dict of parameters, got {value!r}"
                )
            own[key].update(value)
        elif "__" in key:
            name, param = key.split("__", 1)
            if name not in own:
                raise InvalidConfig(
                    f"make_features: {key!r} names extractor {name!r}, not in {names}"
                )
            own[name][param] = value
        else:
            shared[key] = value
    return own, shared


def make_features(names: list[str] | str, **params: Any) -> FeatureUnion:
    """A FeatureUnion of the registered extractors `names` (e.g. ``["stats", "hog", "lbp"]``).

    Parameters reach extractors three ways: ``hog={"orientations": 12}`` (a dict per name),
    ``hog__orientations=12`` (scikit-learn style), or plainly, ``channels="per_channel"``, which
    goes to every extractor that has such a parameter (and must fit at least one). Output columns
    keep the extractors' own names (``stats_mean``, ``hog_0``, ...).
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise InvalidConfig("make_features: give at least one feature extractor name")
    if len(set(names)) != len(names):
        raise InvalidConfig(f"make_features: duplicate extractor names in {names}")
    own, shared = _split_params(names, params)
    used: set[str] = set()
    steps = []
    for name in names:
        factory = feature_factory(name)
        try:
            extractor = factory(**own[name])
        except TypeError as exc:
            raise InvalidConfig(f"make_features: bad parameters for {name!r}: {exc}") from None
        accepted = extractor.get_params(deep=False)
        extra = {k: v for k, v in shared.items() if k in accepted and k not in own[name]}
        extractor.set_params(**extra)
        used.update(extra)
        used.update(k for k in shared if k in own[name])
        steps.append((name, extractor))
    unused = sorted(set(shared) - used)
    if unused:
        raise InvalidConfig(
            f"make_features: no extractor among {names} takes parameter(s) {unused}"
        )
    return FeatureUnion(steps, verbose_feature_names_out=False)
