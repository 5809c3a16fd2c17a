"""The web page: `GET /` (in the reader's language, from Accept-Language or ``?lang=``) and its
static assets under `/static/` (all served by the app; no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from medsight.serve.i18n import negotiate, render_index

WEB_DIR = Path(__file__).parent / "web"
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, lang: Annotated[str | None, Query(max_length=20)] = None) -> HTMLResponse:
    code = negotiate(request.headers.get("accept-language"), lang)
    page = render_index(code)
    if request.app.state.service.settings.local is not None:  # the page hides accounts
        page = page.replace("<body>", '<body data-mode="local">', 1)
    return HTMLResponse(page, headers={"Content-Language": code, "Vary": "Accept-Language"})


@router.get("/favicon.ico")
def favicon() -> RedirectResponse:
    return RedirectResponse("/static/favicon.svg", status_code=308)
