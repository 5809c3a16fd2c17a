"""`Service`: what the routes call. An upload is decoded, de-identified and prepared in a decode
worker, its image stored, then batched with other requests through the model's `Predictor`; the
records of a batch (and their audit entries) are committed in one transaction before any of its
requests is answered. Bounded: beyond `queue_size` predictions in flight it refuses (503).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from medsight.atomic import write_atomic
from medsight.deploy.prediction import Prediction
from medsight.errors import LicenceError, MedsightError, UnreadableImage
from medsight.io.decode_pool import DecodePool
from medsight.serve.db.store import Store, User
from medsight.serve.image_store import ImageStore
from medsight.serve.metrics import ServiceMetrics
from medsight.serve.rate_limit import rate_limiter
from medsight.serve.secrets import service_secret
from medsight.serve.served_model import ServedModel
from medsight.serve.settings import ServeSettings
from medsight.serve.signing_keys import SigningKeys
from medsight.serve.sources import source_view
from medsight.serve.upload_worker import UploadJob, UploadRejected, UploadResult, process_upload

log = logging.getLogger("medsight.serve")


class ServiceError(MedsightError):
    """A request the service refuses, with the HTTP status and a reason a person can act on."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


@dataclass
class _Pending:
    """One upload waiting for its batch: what the batch run needs to build and store its record."""

    upload: UploadResult
    user: User
    image_path: str
    upload_hmac: str
    duplicate_of: str | None
    action: str
    source: dict[str, Any] | None = None  # where the image came from (a PACS), if not an upload


class Service:
    """The running service: settings, store, decode pool, served models, metrics, rate limiter."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.secret = service_secret(settings.data_dir)
        self.signing = SigningKeys(settings.data_dir)
        self.signing.current()  # the signing key exists from the first start
        self._deid_secret = hmac.new(self.secret, b"medsight deid", hashlib.sha256).digest()
        self.metrics = ServiceMetrics()
        self.models: dict[str, ServedModel] = {}
        local = settings.local
        sources = [local.entitlement.bundle] if local else settings.bundles  # local: verified once
        for path in sources:  # opened (verified) first: a tampered bundle stops the start
            model = ServedModel(path, self._run_batch, settings.max_batch, settings.max_wait_ms,
                                on_batch=self._on_batch)
            if model.key in self.models:
                model.key = f"{model.name}@{model.version}"
            if model.key in self.models:
                raise MedsightError(f"two bundles are the same model {model.key}; serve one of them")
            self.models[model.key] = model
        self.default_model = next(iter(self.models))
        self.store = Store.open(settings.data_dir, settings.database_url)
        if local and self.store.get_user(local.user_name) is None:
            self.store.add_user(local.user_name, "clinician")  # no password: the link lets in
        self.images = ImageStore(settings.data_dir)
        self.derived = settings.data_dir / "derived"
        self.derived.mkdir(exist_ok=True, mode=0o700)
        self.pool = DecodePool(work=process_upload, workers=settings.decode_workers,
                               timeout_s=settings.decode_timeout_s,
                               memory_mb=settings.decode_memory_mb)
        self.pool.start()
        self.limiter = rate_limiter(self.store, settings.rate_per_minute)
        self.in_flight = 0

    def close(self) -> None:
        for model in self.models.values():
            model.close()
        self.pool.close()
        self.store.close()

    # -- models -------------------------------------------------------------------------------
    def model(self, key: str | None) -> ServedModel:
        if not key:
            return self.models[self.default_model]
        found = self.models.get(key)
        if found is None:
            raise ServiceError(404, f"no model named {key!r} is served here; GET /v1/models lists "
                                    f"them ({', '.join(self.models)})")
        return found

    def describe_models(self) -> list[dict[str, Any]]:
        return [m.describe(default=k == self.default_model) for k, m in self.models.items()]

    # -- predictions --------------------------------------------------------------------------
    async def predict(self, user: User, data: bytes, model_key: str | None, action: str,
                      source: dict[str, Any] | None = None) -> dict[str, Any]:
        """Decode, prepare, batch, predict and store one upload (or an image from `source`, a
        PACS); returns its record."""
        model = self.model(model_key)
        if self.settings.local is not None:
            try:
                self.settings.local.check()
            except LicenceError as exc:
                raise ServiceError(403, str(exc)) from exc
        if self.in_flight >= self.settings.queue_size:
            self.metrics.rejected.labels("503").inc()
            raise ServiceError(503, f"the service is busy ({self.in_flight} predictions in flight, "
                                    f"the limit is {self.settings.queue_size}); retry in a second",
                               {"Retry-After": "1"})
        self.in_flight += 1
        model.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        try:
            upload = await self._decode(UploadJob(model.predictor.plan, data, self._deid_secret,
                                                  self.settings.max_pixels))
            upload_hmac = hmac.new(self.secret, data, hashlib.sha256).hexdigest()
            path, earlier = await run_in_threadpool(self._store_image, upload, upload_hmac)
            pending = _Pending(upload, user, path, upload_hmac, earlier, action, source)
            return await asyncio.wrap_future(model.batcher.submit(pending))
        finally:
            self.in_flight -= 1
            model.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)

    async def _decode(self, job: UploadJob) -> UploadResult:
        result = await asyncio.wrap_future(self.pool.submit_future(job))
        stats = self.pool.stats
        self.metrics.decode_workers_lost.set(stats.crashed + stats.timed_out)
        if isinstance(result, UploadResult):
            return result
        if isinstance(result, UploadRejected):
            self.metrics.rejected.labels(str(result.status)).inc()
            raise ServiceError(result.status, result.reason)
        if isinstance(result, UnreadableImage):  # the worker died, timed out or ran out of memory
            self.metrics.rejected.labels("422").inc()
            raise ServiceError(422, f"the file could not be decoded: {result.reason}; it may be "
                                    "corrupt or crafted. Nothing was stored.")
        raise ServiceError(500, "unexpected decode result")

    def _store_image(self, upload: UploadResult, upload_hmac: str) -> tuple[str, str | None]:
        earlier = self.store.find_image(upload_hmac)
        path = self.images.put(upload.stored, upload.sha256, upload.stored_format)
        made = (earlier or {}).get("predictions") or []
        return path, made[0]["id"] if made else None

    def _run_batch(self, model: ServedModel, items: list[_Pending]) -> list[dict[str, Any]]:
        """The batcher thread: one pass through the runtime, then one transaction for the batch."""
        predictions = model.predictor.finish([p.upload.prepared for p in items])
        now = datetime.now(UTC)
        records, audits = [], []
        for p, pred in zip(items, predictions, strict=True):
            rec = self._record(model, p, pred, now)
            records.append(rec)
            audits.append({"ts": now, "user": p.user.name, "action": p.action, "status": 201,
                           "target": rec["id"], "model_version": f"{model.name} {model.version}",
                           "detail": None})
        self.store.add_predictions(records, audits)
        views = [self.view({**r, "user": p.user.name}, duplicate_of=p.duplicate_of)
                 for r, p in zip(records, items, strict=True)]
        if self.settings.local is not None:  # the local folder's results file, the licence's use
            self.settings.local.record(views, self.settings.data_dir)
        return views

    def _record(self, model: ServedModel, p: _Pending, pred: Prediction, now: datetime) -> dict[str, Any]:
        up = p.upload
        study = date.fromisoformat(up.study_date) if up.study_date else None
        return {
            "id": uuid.uuid4().hex, "user_id": p.user.id,
            "model_name": model.key, "model_version": model.version,
            "model_uuid": model.manifest["model"].get("uuid"),
            "label": pred.label, "probabilities": dict(pred.probabilities),
            "confidence": float(pred.confidence), "threshold": pred.threshold,
            "warnings": [*pred.warnings, *(self.settings.local.entitlement.warnings
                                           if self.settings.local else [])],
            "timings": {k: round(float(v), 3) for k, v in pred.timings_ms.items()},
            "input": {**pred.input, "format": up.format},
            "detections": {"boxes": pred.boxes, "counts": pred.counts} if pred.is_detection
            else None,
            "patient_pseudonym": up.patient_pseudonym, "study_date": study, "created": now,
            "source": p.source,
            "image": {"sha256": up.sha256, "path": p.image_path, "format": up.stored_format,
                      "size_bytes": len(up.stored), "upload_hmac": p.upload_hmac},
        }

    def _on_batch(self, key: str, size: int, seconds: float) -> None:
        self.metrics.batch_size.labels(key).observe(size)
        self.metrics.inference.labels(key).observe(seconds)
        self.metrics.queue_depth.labels(key).set(self.models[key].batcher.depth)

    # -- records ------------------------------------------------------------------------------
    def view(self, rec: dict[str, Any], duplicate_of: str | None = None) -> dict[str, Any]:
        """A record as the API answers it."""
        pid = rec["id"]
        image = rec.get("image") or {}
        study = rec.get("study_date")
        created = rec.get("created")
        base = f"/v1/predictions/{pid}"
        found = rec.get("detections")
        return {
            "id": pid,
            "model": {"name": rec.get("model_name"), "version": rec.get("model_version"),
                      "uuid": rec.get("model_uuid")},
            "label": rec.get("label"), "probabilities": rec.get("probabilities") or {},
            "confidence": rec.get("confidence"), "threshold": rec.get("threshold"),
            "warnings": rec.get("warnings") or [], "timings_ms": rec.get("timings") or {},
            "input": {**(rec.get("input") or {}), "sha256": image.get("sha256"),
                      "patient_pseudonym": rec.get("patient_pseudonym"),
                      "study_date": study.isoformat() if isinstance(study, date) else study},
            "user": rec.get("user"),
            "created": created.isoformat() if isinstance(created, datetime) else created,
            "heatmap_url": f"{base}/heatmap.png", "image_url": f"{base}/image.png",
            "report_url": f"{base}/report",
            "boxes": found["boxes"] if found else None,
            "counts": found["counts"] if found else None,
            "annotated_url": f"{base}/annotated.png" if found else None,
            "duplicate_of": duplicate_of if duplicate_of is not None else rec.get("duplicate_of"),
            "reviews": [_review_view(r) for r in rec.get("reviews") or []],
            "source": source_view(rec.get("source")),
        }

    def readable(self, user: User, pid: str) -> dict[str, Any]:
        """The record `pid` if `user` may read it (clinicians: their own), else 404."""
        rec = self.store.get_prediction(pid)
        if rec is None or (user.role == "clinician" and rec.get("user_id") != user.id):
            raise ServiceError(404, f"no prediction {pid} that you may read")
        return rec

    # -- heatmaps and reports -----------------------------------------------------------------
    async def _explanation(self, rec: dict[str, Any]) -> dict[str, Any]:
        """The record's heatmap overlay and image (PNGs; a detector's: the image with its boxes
        drawn, "annotated"), what the heatmap shows and its warnings: computed once from the
        stored image through the model that made the prediction, then read from `derived/`."""
        base = self.derived / rec["id"]
        info_path = base.with_suffix(".heatmap.json")
        if info_path.exists():
            def read() -> dict[str, Any]:
                out = json.loads(info_path.read_text())
                for name in _PICTURES:
                    png = base.with_suffix(f".{name}.png")
                    out[name] = png.read_bytes() if png.exists() else None
                return out
            return await run_in_threadpool(read)
        model = self.models.get(rec["model_name"])
        if model is None or model.version != rec.get("model_version"):
            raise ServiceError(409, f"the model that made this prediction ({rec['model_name']} "
                                    f"{rec.get('model_version')}) is not served now")
        image = rec["image"]
        data = await run_in_threadpool(self.images.get, image["path"])
        upload = await self._decode(UploadJob(model.predictor.plan, data, self._deid_secret,
                                              self.settings.max_pixels, mode="stored",
                                              stored_format=image["format"], keep_image=True))
        [pred] = await run_in_threadpool(model.predictor.finish, [upload.prepared], True)
        out = {"info": pred.heatmap_info, "heatmap": pred.heatmap_png, "image": pred.image_png,
               "annotated": pred.annotated_png,
               "warnings": [w for w in pred.warnings if w.startswith("heatmap:")]}

        def write() -> None:
            for name in _PICTURES:
                if out[name] is not None:
                    write_atomic(base.with_suffix(f".{name}.png"), out[name])
            write_atomic(info_path, json.dumps({"info": out["info"],
                                                "warnings": out["warnings"]}).encode())
        await run_in_threadpool(write)
        return out

    async def png(self, rec: dict[str, Any], which: str) -> bytes:
        """`which` = "heatmap" (the overlay), "image" or "annotated" (a detector's boxes drawn),
        computed on first request, then cached."""
        if which == "annotated" and not rec.get("detections"):
            raise ServiceError(409, "this prediction was made by a classifier: it has no boxes to "
                                    "draw (see heatmap.png)")
        if which == "heatmap" and rec.get("detections"):
            raise ServiceError(409, "this prediction was made by a detector: it has boxes, not a "
                                    "heatmap (see annotated.png)")
        out = (await self._explanation(rec))[which]
        if out is None:
            raise ServiceError(409, "no heatmap could be drawn for this prediction")
        return out

    async def report(self, rec: dict[str, Any], lang: str) -> str:
        """The printable report of a record, with its (cached) heatmap overlay."""
        from medsight.deploy.report import render_report

        shown = await self._explanation(rec)
        view = self.view(rec)
        pred = Prediction(source="upload", probabilities=view["probabilities"], label=view["label"],
                          confidence=view["confidence"], threshold=view["threshold"],
                          warnings=[*view["warnings"], *shown["warnings"]],
                          timings_ms=view["timings_ms"], input=view["input"], model=view["model"],
                          heatmap_png=shown["heatmap"], image_png=shown["image"],
                          heatmap_info=shown["info"], boxes=view["boxes"], counts=view["counts"],
                          annotated_png=shown.get("annotated"))
        record = {"id": rec["id"], "created": view["created"],
                  "patient_pseudonym": rec.get("patient_pseudonym"),
                  "study_date": view["input"]["study_date"], "user": rec.get("user"),
                  "reviews": view["reviews"], "source": view["source"]}
        model = self.models.get(rec["model_name"])
        if model is None:
            raise ServiceError(409, f"the model that made this prediction ({rec['model_name']}) is "
                                    "not served now; its card is needed for the report")
        page = render_report(pred, model.manifest, lang=lang, record=record)
        if self.settings.local is not None:  # kept in the local folder, next to results.jsonl
            await run_in_threadpool(write_atomic, self.settings.data_dir / "reports" /
                                    f"{rec['id']}.{lang}.html", page.encode("utf-8"))
        return page


_PICTURES = ("heatmap", "image", "annotated")


def _review_view(r: dict[str, Any]) -> dict[str, Any]:
    created = r.get("created")
    return {"reviewer": r.get("reviewer") or r.get("user"), "verdict": r.get("verdict"),
            "note": r.get("note") or "",
            "created": created.isoformat() if isinstance(created, datetime) else created}

