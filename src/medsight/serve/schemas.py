"""Pydantic schemas of the service's answers: what the OpenAPI page documents and what every
response is checked against."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """Every refusal: one sentence saying what was wrong and what to do."""

    detail: str = Field(examples=["the upload is 80.0 MB; this service accepts at most 64.0 MB"])


class ModelRef(BaseModel):
    name: str | None
    version: str | None
    uuid: str | None


class ReviewOut(BaseModel):
    reviewer: str | None
    verdict: str
    note: str = ""
    created: str | None = None


class BoxOut(BaseModel):
    """One box a detector found: its class, score and corners in original-image pixels."""

    label: str = Field(examples=["WBC"])
    score: float = Field(ge=0, le=1, examples=[0.93])
    box: list[float] = Field(min_length=4, max_length=4, examples=[[212.0, 140.5, 318.0, 251.0]],
                             description="[x1, y1, x2, y2]: pixel edges of the image as uploaded "
                                         "(x to the right, y down; (0, 0, 1, 1) is the top-left "
                                         "pixel)")


class ResultRef(BaseModel):
    """A DICOM object medsight wrote back to the PACS for this prediction."""

    sop_class: str | None = Field(examples=["1.2.840.10008.5.1.4.1.1.88.33"])
    sop_instance: str | None
    name: str | None = Field(None, examples=["Comprehensive SR Storage"],
                             description="the SOP class's name")


class SourceOut(BaseModel):
    """Where the image came from when the PACS watcher fetched it (``null`` for an upload)."""

    kind: str = Field(examples=["pacs"])
    pacs: str | None = Field(description="the PACS, as configured",
                             examples=["http://pacs.example:8042/dicom-web"])
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None = Field(description="the instance (null: the series as one volume)")
    study_url: str | None = Field(description="the study in the viewer or on DICOMweb; only an "
                                              "http(s) URL, else null",
                                  examples=["http://pacs.example:8042/dicom-web/studies/1.2.3"])
    results: list[ResultRef] = Field(description="the SR / SC written back (empty until written)")


class PredictionOut(BaseModel):
    """A prediction: the finding, its confidence, warnings, the model, links to the image, its
    heatmap overlay and the printable report.

    A detector's prediction also has ``boxes`` (every box above the model's floor score, highest
    first), ``counts`` (boxes per class at or above ``threshold``, the model's score threshold),
    ``label`` the counts as one line (``"12 RBC, 1 WBC, 0 Platelets"``), ``confidence`` the top
    counted score, empty ``probabilities`` and ``annotated_url`` (the image with the counted boxes
    drawn) instead of a heatmap."""

    id: str
    model: ModelRef
    label: str
    probabilities: dict[str, float]
    confidence: float
    threshold: float | None
    warnings: list[str]
    timings_ms: dict[str, float]
    input: dict[str, Any]
    user: str | None = None
    created: str | None = None
    heatmap_url: str
    image_url: str
    report_url: str
    duplicate_of: str | None = None
    reviews: list[ReviewOut] = []
    boxes: list[BoxOut] | None = Field(None, description="detectors only")
    counts: dict[str, int] | None = Field(None, description="detectors only: boxes per class at "
                                                            "the threshold")
    annotated_url: str | None = Field(None, description="detectors only")
    source: SourceOut | None = Field(None, description="the PACS study the image came from; null "
                                                       "for an upload")


class BatchError(BaseModel):
    error: str
    status: int


class BatchOut(BaseModel):
    items: list[PredictionOut | BatchError]


class PredictionList(BaseModel):
    items: list[PredictionOut]
    total: int
    limit: int
    offset: int


class ModelOut(BaseModel):
    name: str
    version: str
    uuid: str | None = None
    task: str | None = None
    classes: list[str]
    threshold: float | None = None
    default: bool
    modality: Any = None
    volume: bool
    input: dict[str, Any]
    intended_use: Any = None


class ModelList(BaseModel):
    models: list[ModelOut]


class SessionIn(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class SessionOut(BaseModel):
    user: str
    role: str
    csrf_token: str
    mode: str = Field("service", description="'service', or 'local' in `medsight app`")
    entitlement: str | None = Field(None, description="local app: what entitles this use "
                                                      "(the licence, or an unsigned bundle)")


class LicenceIn(BaseModel):
    """What a clinician asks an offline licence for: the bundle they hold (its UUID and manifest
    hash), the machine it is bound to (optional) and, to renew, the licence it replaces."""

    model_config = {"extra": "forbid"}

    bundle_uuid: str = Field(min_length=1, max_length=64)
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    machine: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")
    renew: str | None = Field(None, min_length=1, max_length=64,
                              description="the id of the licence this one renews")


class ServiceKey(BaseModel):
    """One public key of the service's signing key ring (current and retired)."""

    key_id: str
    public_key: str
    created: str | None = None
    retired: str | None = None


class LicenceInfo(BaseModel):
    """An offline licence as stored (the list item): who, which bundle, which machine, when."""

    id: str
    user: str
    role: str
    bundle_uuid: str
    manifest_sha256: str
    model: ModelRef
    machine: str | None
    issued: str
    expires: str
    renewed_from: str | None
    revoked: str | None


class LicenceOut(LicenceInfo):
    """A licence just issued: its facts, the signed document the offline client keeps, and the
    service's public keys it checks the licence (and the bundle) with."""

    licence: dict[str, Any]
    service_keys: list[ServiceKey]


class LicenceList(BaseModel):
    items: list[LicenceInfo]
    total: int
