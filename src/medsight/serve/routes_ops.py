"""Operations: `/healthz` (alive), `/readyz` (models loaded, database reachable), `/metrics`
(Prometheus), and `/v1/models` (what is served)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from medsight.serve.deps import ANY_ROLE, Principal, service
from medsight.serve.schemas import ModelList, Problem

router = APIRouter()


@router.get("/healthz", tags=["operations"], summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"], summary="Models loaded and the database reachable",
            responses={503: {"model": Problem}})
def readyz(request: Request) -> Any:
    svc = service(request)
    try:
        svc.store.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return JSONResponse({"detail": f"the database is not reachable: {type(exc).__name__}"},
                            status_code=503)
    return {"status": "ready", "models": list(svc.models), "database": svc.store.url_for_display}


@router.get("/metrics", tags=["operations"], summary="Prometheus metrics",
            response_class=Response)
def metrics(request: Request) -> Response:
    svc = service(request)
    svc.metrics.in_flight.set(svc.in_flight)
    return Response(svc.metrics.render(), media_type=svc.metrics.content_type)


@router.get("/v1/models", tags=["models"], response_model=ModelList,
            responses={401: {"model": Problem}}, summary="The models served here")
def models(request: Request, who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    return {"models": service(request).describe_models()}
