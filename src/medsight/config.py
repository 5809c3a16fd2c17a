"""Typed experiment configuration: YAML in, validated objects out.

Every CLI flag of ``medsight train`` has a twin here (``--data`` -> ``data.source``, ``--out`` ->
``output``). Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medsight.errors import InvalidConfig
from medsight.models.kinds import estimator_kinds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitConfig(_Strict):
    """How records are assigned to train/val/test (or folds)."""

    method: Literal["given", "holdout", "kfold"] = "given"
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    k: int = Field(5, ge=2)
    grouped: bool | None = None  # None: group by patient whenever patient ids exist
    seed: int = 0


class DataConfig(_Strict):
    """Where the data comes from and which class counts as positive."""

    source: str
    options: dict[str, Any] = Field(default_factory=dict)
    positive_class: str | int | None = None
    split: SplitConfig = Field(default_factory=SplitConfig)
    external: str | None = None
    external_options: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(None, ge=1, description="use only the first N records per split")
    cache_images: int = Field(512, ge=0, description="decoded images kept in memory (LRU)")


class ModelConfig(_Strict):
    """One estimator: ``kind`` picks the class, ``params`` are its constructor arguments."""

    name: str | None = None
    kind: str = "classical"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in estimator_kinds():
            raise ValueError(f"unknown model kind {kind!r}; known: {estimator_kinds()}")
        return kind

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        core = self.params.get("model") or self.params.get("network") or self.kind
        feats = self.params.get("features")
        return f"{'+'.join(feats)}+{core}" if feats else str(core)


class EvaluationConfig(_Strict):
    """Metrics, confidence intervals and the decision threshold."""

    ci: bool = True
    n_boot: int = Field(1000, ge=100)
    threshold: Literal["youden", "target_sensitivity", "fixed"] = "youden"
    target_sensitivity: float = Field(0.9, gt=0, lt=1)
    allow_leakage: bool = False
    select_by: str = "auc"  # detectors: map50 (what "auc" means for them) or map50_95


class ModelCardConfig(_Strict):
    """What a deployment bundle's model card says the model is for and where it falls short
    (``medsight bundle create`` uses a cautious default for what is left out)."""

    intended_use: str | None = None
    limitations: list[str] = Field(default_factory=list)


class ExperimentConfig(_Strict):
    """A whole run: data, one preprocessing chain, one model or candidates, evaluation, output."""

    name: str = "experiment"
    data: DataConfig
    preprocess: list[dict[str, Any]] = Field(default_factory=list)
    model: ModelConfig | None = None
    candidates: list[ModelConfig] = Field(default_factory=list)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    output: str = "runs/experiment"
    seed: int = 0
    model_card: ModelCardConfig = Field(default_factory=ModelCardConfig)

    @model_validator(mode="after")
    def _one_model_or_candidates(self) -> ExperimentConfig:
        if self.model is None and not self.candidates:
            raise ValueError("give `model:` or a list of `candidates:`")
        if self.model is not None and self.candidates:
            raise ValueError("give either `model:` or `candidates:`, not both")
        return self

    @property
    def models(self) -> list[ModelConfig]:
        return [self.model] if self.model is not None else list(self.candidates)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file; `overrides` maps dotted keys (``data.source``) to values.

    Relative data paths in the file are resolved against the file's folder when they exist there,
    so example configs work from any working directory.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidConfig(f"config file {p} not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidConfig(f"{p} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidConfig(f"{p} must hold a mapping at the top level")
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, key, value)
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("source", "external"):
            data[key] = _relative_to(p.parent, data.get(key))
        for key in ("options", "external_options"):
            if isinstance(data.get(key), dict):
                data[key] = {k: _relative_to(p.parent, v) for k, v in data[key].items()}
    return parse_config(raw, origin=str(p))


def _relative_to(folder: Path, value: Any) -> Any:
    """A relative path that exists next to the config file (and not in the working directory)
    is made absolute, so example configs run from any working directory."""
    if not isinstance(value, str) or value.startswith("phantom") or Path(value).is_absolute():
        return value
    candidate = (folder / value).resolve()
    if candidate.exists() and not Path(value).exists():
        return str(candidate)
    return value


def parse_config(raw: dict[str, Any], origin: str = "<config>") -> ExperimentConfig:
    """Validate a config mapping; errors list every bad field with its dotted location."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidConfig(f"{origin}: {problems}") from exc


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested mappings; a number indexes a list (``candidates.2.params.lr``)."""
    node: Any = raw
    *parents, leaf = dotted.split(".")
    for depth, key in enumerate([*parents, leaf]):
        last = depth == len(parents)
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise InvalidConfig(
                    f"--set {dotted}: {'.'.join(parents[:depth]) or '(top)'} is a list of "
                    f"{len(node)}; give an index 0..{len(node) - 1}, got {key!r}"
                )
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif not isinstance(node, dict):
            raise InvalidConfig(
                f"--set {dotted}: {'.'.join(parents[:depth])} is a value, not a mapping or list"
            )
        elif last:
            node[key] = value
        else:
            node = node.setdefault(key, {})
