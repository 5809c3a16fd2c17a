"""`/v1/session`: the web page signs in with a password and gets an HttpOnly, SameSite=Strict
session cookie plus the CSRF token it must send on every unsafe request."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from medsight.serve.deps import ANY_ROLE, SESSION_COOKIE, Principal, service
from medsight.serve.schemas import Problem, SessionIn, SessionOut
from medsight.serve.service import Service, ServiceError

router = APIRouter(prefix="/v1/session", tags=["session"])


@router.post("", response_model=SessionOut,
             responses={c: {"model": Problem} for c in (400, 401, 422, 429)},
             summary="Sign in with a password")
def sign_in(request: Request, body: SessionIn, response: Response) -> dict[str, Any]:
    svc = service(request)
    request.state.user = body.username[:200]
    wait = svc.limiter.check(f"signin:{request.client.host if request.client else '-'}")
    if wait > 0:
        raise ServiceError(429, f"too many sign-in attempts; retry in {wait:.0f} s",
                           {"Retry-After": str(max(1, round(wait + 0.5)))})
    user = svc.store.check_password(body.username, body.password)
    if user is None:
        raise ServiceError(401, "wrong user name or password (or the account is disabled)")
    token, csrf = svc.store.create_session(user, ttl_s=int(svc.settings.session_hours * 3600))
    response.set_cookie(SESSION_COOKIE, token, max_age=int(svc.settings.session_hours * 3600),
                        httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path="/")
    return {"user": user.name, "role": user.role, "csrf_token": csrf, **_mode(svc)}


@router.get("", response_model=SessionOut, responses={401: {"model": Problem}},
            summary="Who is signed in")
def whoami(request: Request, who: Principal = Depends(ANY_ROLE)) -> dict[str, Any]:
    return {"user": who.user.name, "role": who.user.role, "csrf_token": who.csrf or "",
            **_mode(service(request))}


def _mode(svc: Service) -> dict[str, Any]:
    local = svc.settings.local
    if local is None:
        return {"mode": "service", "entitlement": None}
    return {"mode": "local", "entitlement": local.entitlement.describe()}


@router.delete("", status_code=204, responses={401: {"model": Problem}, 403: {"model": Problem}},
               summary="Sign out")
def sign_out(request: Request, who: Principal = Depends(ANY_ROLE)) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        service(request).store.end_session(token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
