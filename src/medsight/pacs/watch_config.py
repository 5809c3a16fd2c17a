"""`WatchConfig`: the PACS watcher's YAML (which PACS, how to poll it, which model runs on which
series, what is written back), validated with errors that name the offending key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medsight.pacs.config import PacsConfig, beside, read_mapping, validated

__all__ = ["ModelRule", "Receive", "Rules", "WatchConfig", "WatchSettings", "Write"]

Write = Literal["sr", "sc"]
Orientation = Literal["axial", "sagittal", "coronal"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rules(_Strict):
    """Which series a model runs on; every rule given must hold (an empty list means any)."""

    modality: list[str] = Field(default_factory=list, description="allowed Modality values")
    body_part: list[str] = Field(default_factory=list, description="allowed BodyPartExamined values")
    image_type: list[str] = Field(default_factory=list,
                                  description="ImageType values that must all be present")
    orientation: Orientation | None = Field(None, description="slice plane from ImageOrientationPatient")
    orientation_tolerance_deg: float = Field(20.0, gt=0, lt=45,
                                             description="how far the normal may tilt from the axis")
    min_slices: int = Field(1, ge=1, description="fewest instances in the series")
    max_slices: int | None = Field(None, ge=1, description="most instances in the series")
    series_description: str | None = Field(None, description="regex searched in SeriesDescription")

    @field_validator("modality", "body_part", "image_type")
    @classmethod
    def _upper(cls, values: list[str]) -> list[str]:
        return [v.strip().upper() for v in values]

    @field_validator("series_description")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _slices(self) -> Rules:
        if self.max_slices is not None and self.max_slices < self.min_slices:
            raise ValueError(f"max_slices {self.max_slices} < min_slices {self.min_slices}")
        return self


class ModelRule(_Strict):
    """One served model (its bundle name) and the series it runs on."""

    model: str = Field(min_length=1, description="the served model's name (the bundle's name)")
    rules: Rules = Field(default_factory=Rules)
    write: list[Write] | None = Field(None, description="overrides watch.write for this model")


class WatchSettings(_Strict):
    """How to poll: the QIDO window and query, retries, settling, and what is written back."""

    poll_s: float = Field(60.0, gt=0, description="seconds between polls")
    lookback_days: int | None = Field(2, ge=0, description="StudyDate from today minus N days "
                                      "(null: no date restriction)")
    query: dict[str, str] = Field(default_factory=dict, description="extra QIDO series keys")
    max_attempts: int = Field(3, ge=1, description="tries of a failing series before it stays failed")
    settle_s: float = Field(0.0, ge=0, description="a series must keep its instance count this long")
    pause_s: float = Field(0.0, ge=0, description="seconds to wait after each instance predicted, "
                           "to spare a busy PACS or a shared CPU")
    write: list[Write] = Field(default_factory=lambda: ["sr", "sc"])
    sc_max: int = Field(3, ge=0, description="most suspicious instances given a secondary capture")
    viewer_url: str | None = Field(None, description="study link template with {study_uid}")

    @field_validator("query", mode="before")
    @classmethod
    def _plain_query(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("viewer_url")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.format(study_uid="x")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"only {{study_uid}} may be used in viewer_url ({exc})") from None
        return value


class Receive(_Strict):
    """Also receive series pushed by C-STORE to medsight's storage SCP (watched instead of QIDO)."""

    ae_title: str = Field("MEDSIGHT", min_length=1, max_length=16, description="the SCP's AE title")
    host: str = Field("127.0.0.1", description="address the SCP binds")
    port: int = Field(ge=1, le=65535, description="port the SCP listens on")
    allowed_aes: list[str] | None = Field(None, description="calling AE titles let in (else any)")


class WatchConfig(_Strict):
    """The whole file: `pacs:`, `watch:`, `models:` and optionally `receive:`."""

    pacs: PacsConfig
    watch: WatchSettings = Field(default_factory=WatchSettings)
    receive: Receive | None = None
    models: list[ModelRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_models(self) -> WatchConfig:
        names = [m.model for m in self.models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"models listed twice: {', '.join(twice)}")
        return self

    def writes(self, rule: ModelRule) -> list[Write]:
        """What is written back for `rule`'s model."""
        return list(rule.write if rule.write is not None else self.watch.write)

    def study_url(self, study_uid: str) -> str:
        """The link to a study: the viewer template, else the DICOMweb study URL."""
        if self.watch.viewer_url:
            return self.watch.viewer_url.format(study_uid=study_uid)
        if self.pacs.url:
            return f"{self.pacs.url}/studies/{study_uid}"
        return f"{self.pacs.display} study {study_uid}"

    @classmethod
    def of(cls, values: dict[str, Any], where: str = "watcher configuration") -> WatchConfig:
        """Validated from a mapping; the message names `where` and each bad key."""
        return validated(cls, values, where, top="top level")

    @classmethod
    def from_yaml(cls, path: Path | str) -> WatchConfig:
        """Read a watcher YAML; `pacs.password_file` is relative to the file's folder."""
        path = Path(path)
        doc = read_mapping(path, "watcher configuration (pacs, watch and models)")
        if isinstance(doc.get("pacs"), dict):
            doc = {**doc, "pacs": beside(doc["pacs"], path)}
        return cls.of(doc, where=str(path))
