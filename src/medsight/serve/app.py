"""`create_app(settings)`: the FastAPI application of the online diagnostic service. Opening it
verifies every bundle (a tampered one stops the start), upgrades the database schema and starts
the decode workers; routes live in `routes_*` modules."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from medsight import __version__
from medsight.serve import (
    routes_licences,
    routes_local,
    routes_ops,
    routes_predictions,
    routes_session,
    routes_web,
)
from medsight.serve.middleware import ServiceMiddleware
from medsight.serve.service import Service, ServiceError
from medsight.serve.settings import SETTINGS_ENV, ServeSettings

log = logging.getLogger("medsight.serve")


def create_app(settings: ServeSettings, service: Service | None = None) -> FastAPI:
    """The app; the `Service` is created now (so start-up errors surface before serving) unless
    one is given, and closed when the app shuts down."""
    svc = service or Service(settings)
    watcher = None
    if settings.watch_pacs is not None:  # its configuration is checked now, before serving
        from medsight.serve.pacs_watch import PacsWatchThread

        watcher = PacsWatchThread(svc, settings.watch_pacs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if watcher is not None:
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                watcher.stop()
            svc.close()

    app = FastAPI(title="medsight diagnostic service", version=__version__, lifespan=lifespan,
                  description="Upload a medical image and get the model's finding, its confidence, "
                              "a heatmap of where the model looked and a printable report. "
                              "Decision support, not a diagnosis.")
    app.state.service = svc
    app.state.pacs_watch = watcher
    app.add_middleware(ServiceMiddleware)
    app.include_router(routes_ops.router)
    app.include_router(routes_session.router)
    app.include_router(routes_predictions.router)
    app.include_router(routes_predictions.detections_router)
    app.include_router(routes_licences.router)
    app.include_router(routes_local.router)
    app.include_router(routes_web.router)
    app.mount("/static", StaticFiles(directory=routes_web.WEB_DIR), name="static")
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    return app


def app_from_environment() -> FastAPI:
    """The app of one worker process of `medsight serve --processes N` (a uvicorn factory): the
    settings come from $MEDSIGHT_SERVE_SETTINGS, written by the parent process, and the worker
    ends with its parent, even a killed one (a worker left behind would hold the port)."""
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise RuntimeError(f"${SETTINGS_ENV} is not set: start the service with `medsight serve`")
    _end_with_parent()
    return create_app(ServeSettings.from_json(text))


def _end_with_parent() -> None:
    """SIGTERM this process when its parent dies (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse({"detail": exc.reason}, status_code=exc.status, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's list of errors as one sentence (which field, what is wrong)."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return JSONResponse({"detail": "invalid request: " + "; ".join(parts)}, status_code=422)
