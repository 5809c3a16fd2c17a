"""Who is asking: a Bearer API key or the web page's session cookie (with its CSRF token on every
unsafe request), the roles an endpoint needs, and the per-client rate limit."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Depends, Request

from medsight.serve.auth import parse_api_key
from medsight.serve.db.store import User
from medsight.serve.service import Service, ServiceError

SESSION_COOKIE = "medsight_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the user, how they signed in, and the rate-limit bucket."""

    user: User
    via: str  # "key" or "session"
    client: str
    csrf: str | None = None


def service(request: Request) -> Service:
    return request.app.state.service


def _unauthorized(reason: str) -> ServiceError:
    return ServiceError(401, reason, {"WWW-Authenticate": 'Bearer realm="medsight"'})


def authenticate(request: Request) -> Principal:
    """The caller, or 401; 403 for a session request without its CSRF token; 429 over the rate."""
    svc = service(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <API key>'")
        user = svc.store.user_for_key(key.strip())
        if user is None:
            raise _unauthorized("the API key is not valid (unknown, revoked, or its user is "
                                "disabled); ask an administrator for a new one")
        parsed = parse_api_key(key.strip())
        principal = Principal(user, "key", f"key:{parsed[0] if parsed else user.id}")
    else:
        token = request.cookies.get(SESSION_COOKIE)
        found = svc.store.session_user(token) if token else None
        if found is None:
            raise _unauthorized("sign in first: send 'Authorization: Bearer <API key>' or sign in "
                                "on the web page")
        user, csrf = found
        if request.method not in _SAFE:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), csrf.encode()):
                raise ServiceError(403, f"missing or wrong {CSRF_HEADER} header for this session; "
                                        "reload the page")
        principal = Principal(user, "session", f"user:{user.id}", csrf)
    request.state.user = principal.user.name
    wait = svc.limiter.check(principal.client)
    if wait > 0:
        raise ServiceError(429, f"too many requests from this client; retry in {wait:.1f} s",
                           {"Retry-After": str(max(1, round(wait + 0.5)))})
    return principal


def require(*roles: str):
    """A dependency: the caller, who must have one of `roles` (403 otherwise)."""

    def check(principal: Principal = Depends(authenticate)) -> Principal:
        if principal.user.role not in roles:
            raise ServiceError(403, f"this needs the role {' or '.join(roles)}; you are "
                                    f"{principal.user.role}")
        return principal

    return check


ANY_ROLE = require("clinician", "reviewer", "admin")
PREDICTORS = require("clinician")
REVIEWERS = require("reviewer", "admin")
