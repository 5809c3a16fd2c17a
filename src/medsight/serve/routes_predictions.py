"""`/v1/predictions`: upload an image and get its report JSON (one or several files), read
predictions back (paginated, filtered), their image, heatmap overlay (a detector's: the image
with its boxes drawn) and printable report, and the reviewer's verdict. `POST /v1/detections` is
the same upload, refused for a model that is not a detector."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from medsight.serve.deps import ANY_ROLE, PREDICTORS, REVIEWERS, Principal, service
from medsight.serve.i18n import negotiate
from medsight.serve.schemas import BatchOut, PredictionList, PredictionOut, Problem
from medsight.serve.service import Service, ServiceError

router = APIRouter(prefix="/v1/predictions", tags=["predictions"])
detections_router = APIRouter(prefix="/v1/detections", tags=["predictions"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)}


async def _read(upload: UploadFile, svc: Service) -> bytes:
    data = await upload.read(svc.settings.max_upload_bytes + 1)
    if len(data) > svc.settings.max_upload_bytes:
        raise ServiceError(413, f"the file is over {svc.settings.max_upload_mb:g} MB, the most this "
                                "service accepts; send a smaller file")
    return data


@router.post("", status_code=201, response_model=PredictionOut, responses=_ERRORS,
             summary="Predict one uploaded image")
async def create_prediction(
    request: Request,
    file: Annotated[UploadFile, File(description="DICOM, PNG/JPEG/TIFF, NIfTI, or a zip of one "
                                                 "DICOM series")],
    model: Annotated[str | None, Form(description="model name (GET /v1/models); "
                                                  "default: the first served")] = None,
    who: Principal = Depends(PREDICTORS),
) -> dict[str, Any]:
    svc = service(request)
    data = await _read(file, svc)
    record = await svc.predict(who.user, data, model, "POST /v1/predictions")
    request.state.audited = True  # its audit entry was committed with the record
    return record


@detections_router.post("", status_code=201, response_model=PredictionOut, responses=_ERRORS,
                        summary="Find and count objects in one uploaded image (a detector)")
async def create_detection(
    request: Request,
    file: Annotated[UploadFile, File(description="PNG/JPEG/TIFF, DICOM or NIfTI image")],
    model: Annotated[str | None, Form(description="a detector's name (GET /v1/models, task "
                                                  "'detection'); default: the first served")] = None,
    who: Principal = Depends(PREDICTORS),
) -> dict[str, Any]:
    svc = service(request)
    served = svc.model(model)
    if served.predictor.detection is None:
        raise ServiceError(409, f"model {served.key!r} is a {served.manifest.get('task')} "
                                "classifier, not a detector; use POST /v1/predictions or name a "
                                "detection model (GET /v1/models)")
    data = await _read(file, svc)
    record = await svc.predict(who.user, data, served.key, "POST /v1/detections")
    request.state.audited = True
    return record


@router.post("/batch", status_code=201, response_model=BatchOut, responses=_ERRORS,
             summary="Predict several uploaded images")
async def create_predictions(
    request: Request,
    files: Annotated[list[UploadFile], File(description="the images, one per part")],
    model: Annotated[str | None, Form()] = None,
    who: Principal = Depends(PREDICTORS),
) -> dict[str, Any]:
    import asyncio

    svc = service(request)
    if len(files) > svc.settings.batch_files:
        raise ServiceError(413, f"{len(files)} files in one batch; this service takes at most "
                                f"{svc.settings.batch_files} per request")
    svc.model(model)  # an unknown model fails the whole batch at once

    async def one(upload: UploadFile) -> dict[str, Any]:
        try:
            data = await _read(upload, svc)
            return await svc.predict(who.user, data, model, "POST /v1/predictions/batch")
        except ServiceError as exc:
            if exc.status == 503:
                raise
            return {"error": exc.reason, "status": exc.status}

    items = await asyncio.gather(*(one(f) for f in files))
    request.state.detail = f"{len(items)} files, {sum('error' in i for i in items)} refused"
    return {"items": items}


@router.get("", response_model=PredictionList, responses=_ERRORS, summary="List predictions")
def list_predictions(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    pseudonym: Annotated[str | None, Query(max_length=80)] = None,
    date_from: date | None = None,
    date_to: date | None = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    label: Annotated[str | None, Query(max_length=200)] = None,
    source: Annotated[Literal["pacs", "upload"] | None,
                      Query(description="only predictions of images from the PACS, or only "
                                        "uploads")] = None,
    who: Principal = Depends(ANY_ROLE),
) -> dict[str, Any]:
    svc = service(request)
    rows, total = svc.store.list_predictions(
        user_id=who.user.id if who.user.role == "clinician" else None, pseudonym=pseudonym,
        date_from=date_from, date_to=date_to, model=model, label=label, source=source,
        limit=limit, offset=offset)
    return {"items": [svc.view(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.get("/{pid}", response_model=PredictionOut, responses=_ERRORS, summary="One prediction")
def get_prediction(request: Request, pid: str, who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    svc = service(request)
    request.state.target = pid
    return svc.view(svc.readable(who.user, pid))


async def _png(request: Request, pid: str, who: Principal, which: str) -> Response:
    svc = service(request)
    request.state.target = pid
    rec = await run_in_threadpool(svc.readable, who.user, pid)
    return Response(await svc.png(rec, which), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{pid}/heatmap.png", response_class=Response, responses=_ERRORS,
            summary="The heatmap overlay (where the model looked), on the image")
async def heatmap_png(request: Request, pid: str, who: Principal = Depends(ANY_ROLE)) -> Response:
    return await _png(request, pid, who, "heatmap")


@router.get("/{pid}/annotated.png", response_class=Response, responses=_ERRORS,
            summary="A detector's prediction: the image with the counted boxes drawn")
async def annotated_png(request: Request, pid: str, who: Principal = Depends(ANY_ROLE)) -> Response:
    return await _png(request, pid, who, "annotated")


@router.get("/{pid}/image.png", response_class=Response, responses=_ERRORS,
            summary="The (de-identified) image as the model saw it before preprocessing")
async def image_png(request: Request, pid: str, who: Principal = Depends(ANY_ROLE)) -> Response:
    return await _png(request, pid, who, "image")


@router.get("/{pid}/report", response_class=HTMLResponse, responses=_ERRORS,
            summary="The printable report (English or Simplified Chinese)")
async def report(request: Request, pid: str,
                 lang: Annotated[str | None, Query(max_length=20)] = None,
                 who: Principal = Depends(ANY_ROLE)) -> HTMLResponse:
    from medsight.deploy.report import REPORT_CSP

    svc = service(request)
    request.state.target = pid
    rec = await run_in_threadpool(svc.readable, who.user, pid)
    html = await svc.report(rec, negotiate(request.headers.get("accept-language"), lang))
    return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP})


class ReviewIn(BaseModel):
    verdict: Literal["agree", "disagree"]
    note: str = Field("", max_length=4000)


@router.post("/{pid}/reviews", status_code=201, responses=_ERRORS,
             summary="A reviewer agrees or disagrees with a prediction")
def add_review(request: Request, pid: str, body: ReviewIn,
               who: Principal = Depends(REVIEWERS)) -> dict[str, Any]:
    svc = service(request)
    request.state.target = pid
    svc.readable(who.user, pid)
    review = svc.store.add_review(pid, who.user, body.verdict, body.note)
    return {"reviewer": who.user.name, "verdict": review.get("verdict", body.verdict),
            "note": review.get("note", body.note), "created": str(review.get("created"))}
