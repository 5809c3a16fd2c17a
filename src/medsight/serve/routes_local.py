"""`GET /local/enter?token=T`: the local app's secret link (printed by `medsight app` and opened
in the browser) signs the browser in as the app's one user and goes to the page. 404 outside the
local app."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from medsight.serve.deps import SESSION_COOKIE, service
from medsight.serve.local_mode import LOCAL_SESSION_HOURS
from medsight.serve.service import ServiceError

router = APIRouter(include_in_schema=False)


@router.get("/local/enter")
def enter(request: Request, token: Annotated[str, Query(max_length=200)] = "") -> RedirectResponse:
    svc = service(request)
    local = svc.settings.local
    if local is None:
        raise ServiceError(404, "not found")
    if not local.admits(token):
        raise ServiceError(403, "this link's token is wrong; open the link `medsight app` printed")
    user = svc.store.get_user(local.user_name)
    assert user is not None  # made when the service started
    request.state.user = user.name
    session, _ = svc.store.create_session(user, ttl_s=LOCAL_SESSION_HOURS * 3600)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, session, max_age=LOCAL_SESSION_HOURS * 3600,
                        httponly=True, samesite="strict", path="/")
    return response
