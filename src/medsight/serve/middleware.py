"""One ASGI middleware for what every request goes through: the body-size limit (413 before the
body is read when Content-Length says so, and while reading otherwise), security headers,
Prometheus counts and latencies by route, and the audit entry of every request."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medsight.serve.local_mode import host_allowed

log = logging.getLogger("medsight.serve")

PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_UNAUDITED = ("/healthz", "/readyz", "/metrics", "/static/", "/favicon")
_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"), (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(self), microphone=(), geolocation=()")]


class TooLarge(HTTPException):
    """The request body is over the limit (raised while it is read)."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        said = f"the upload is {size / 2**20:.1f} MB" if size else "the upload is too large"
        super().__init__(413, f"{said}; this service accepts at most {limit / 2**20:.1f} MB per "
                              "request: send a smaller file (or fewer files per batch)")


class ServiceMiddleware:
    """Wraps the app; `service` is looked up on the app state at request time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        svc = scope["app"].state.service
        limit = svc.settings.max_upload_bytes + 256 * 1024  # multipart framing on top of the file
        started = time.perf_counter()
        status = {"code": 500}
        path: str = scope["path"]

        if svc.settings.local is not None and not host_allowed(scope.get("headers", [])):
            await _send_json(send, 403, "this local app answers only to http://127.0.0.1 (or "
                                        "localhost) on its own port; open the link medsight app printed")
            status["code"] = 403
            await self._after(scope, svc, path, status["code"], started)
            return

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_json(send, 413, TooLarge(svc.settings.max_upload_bytes, declared).detail)
            status["code"] = 413
            await self._after(scope, svc, path, status["code"], started)
            return

        seen = {"bytes": 0}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > limit:
                    raise TooLarge(svc.settings.max_upload_bytes)
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [h for h in _HEADERS if h[0] not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                if path.startswith("/v1/") and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        finally:
            await self._after(scope, svc, path, status["code"], started)

    async def _after(self, scope: Scope, svc: Any, path: str, code: int, started: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope["method"]
        elapsed = time.perf_counter() - started
        svc.metrics.requests.labels(template, method, str(code)).inc()
        svc.metrics.latency.labels(template, method).observe(elapsed)
        state = scope.get("state") or {}
        log.info("%s %s %d %.1f ms", method, template, code, elapsed * 1e3)
        if state.get("audited") or path.startswith(_UNAUDITED):
            return
        entry = {"ts": datetime.now(UTC), "user": state.get("user"), "action": f"{method} {template}",
                 "status": code, "target": state.get("target"),
                 "model_version": state.get("model_version"), "detail": state.get("detail")}
        try:
            await run_in_threadpool(svc.store.audit, entry)
        except Exception:  # the answer is already sent; never lose the fact silently
            log.exception("could not write the audit entry of %s %s (%d)", method, template, code)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *_HEADERS]})
    await send({"type": "http.response.body", "body": body})
