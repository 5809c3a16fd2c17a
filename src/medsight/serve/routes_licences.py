"""`/v1/licences`: offline licences. A clinician gets a licence signed with the service's key for a
bundle this service serves (and signed), so `medsight` can run it with no network until it expires;
administrators list and revoke them, and a revoked licence is never renewed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from medsight.deploy.licence import issue_licence
from medsight.serve.deps import Principal, authenticate, require, service
from medsight.serve.schemas import LicenceIn, LicenceList, LicenceOut, Problem
from medsight.serve.served_model import ServedModel
from medsight.serve.service import Service, ServiceError

router = APIRouter(prefix="/v1/licences", tags=["licences"])
ADMINS = require("admin")
ACTION = "POST /v1/licences"


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Problem} for code in codes}


def clinician(principal: Principal = Depends(authenticate)) -> Principal:
    """The caller, who must be a clinician (403 otherwise, saying why)."""
    if principal.user.role != "clinician":
        raise ServiceError(403, "offline licences are issued to clinicians, the role that "
                                f"predicts; you are {principal.user.role}")
    return principal


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def licence_view(row: dict[str, Any]) -> dict[str, Any]:
    """A stored licence as the API answers it (`LicenceInfo`)."""
    return {"id": row["licence_id"], "user": row["user"], "role": row["role"],
            "bundle_uuid": row["bundle_uuid"], "manifest_sha256": row["manifest_sha256"],
            "model": {"name": row["model_name"], "version": row["model_version"],
                      "uuid": row["bundle_uuid"]},
            "machine": row["machine"], "issued": _iso(row["issued"]),
            "expires": _iso(row["expires"]), "renewed_from": row["renewed_from"],
            "revoked": _iso(row["revoked"])}


def served_bundle(svc: Service, bundle_uuid: str, manifest_sha256: str) -> ServedModel:
    """The served model of that bundle version, signed by a key of this service; 404 / 409."""
    same = [m for m in svc.models.values() if str(m.manifest["model"].get("uuid")) == bundle_uuid]
    if not same:
        raise ServiceError(404, f"this service does not serve a bundle with UUID {bundle_uuid}; "
                                "GET /v1/models lists what it serves")
    found = next((m for m in same if m.manifest.get("manifest_sha256") == manifest_sha256), None)
    if found is None:
        m = same[0]
        raise ServiceError(409, f"this service serves version {m.version} of the model (manifest "
                                f"{m.manifest.get('manifest_sha256')}); your bundle is another "
                                "version: get the current bundle")
    signature = found.predictor.bundle.signature
    if signature is None or signature.public_key not in set(svc.signing.public_keys()):
        raise ServiceError(409, "the served bundle is not signed by this service; an administrator "
                                f"signs it with `medsight bundle sign {found.predictor.bundle.path.name} "
                                "--data-dir <the service's data dir>` and restarts the service")
    return found


def _renewable(svc: Service, who: Principal, licence_id: str, bundle_uuid: str) -> dict[str, Any]:
    """The caller's licence `licence_id`, which may be renewed for `bundle_uuid`; 404/409/403."""
    old = svc.store.get_licence(licence_id)
    if old is None or old["user_id"] != who.user.id:  # another's licence: as if unknown
        raise ServiceError(404, f"no licence {licence_id} of yours to renew; activate without "
                                "--renew to get a new one")
    if old["bundle_uuid"] != bundle_uuid:
        raise ServiceError(409, f"licence {licence_id} is for bundle {old['bundle_uuid']}, not "
                                f"{bundle_uuid}; renew it with that bundle or activate this one "
                                "without --renew")
    if old["revoked"] is not None:
        raise ServiceError(403, f"licence {licence_id} was revoked by an administrator on "
                                f"{old['revoked']:%Y-%m-%d %H:%M} UTC; ask your administrator")
    return old


def _issue(svc: Service, who: Principal, body: LicenceIn) -> dict[str, Any]:
    if body.renew is not None:
        _renewable(svc, who, body.renew, body.bundle_uuid)
    model = served_bundle(svc, body.bundle_uuid, body.manifest_sha256)
    user = who.user
    doc = json.loads(issue_licence(svc.signing.current(), user=user.name, role=user.role,
                                   manifest=model.manifest, machine=body.machine,
                                   days=svc.settings.licence_days))
    terms = doc["licence"]
    detail = f"bundle {body.bundle_uuid} for " + (f"machine {body.machine}" if body.machine
                                                   else "any machine")
    if body.renew is not None:
        detail += f", renewal of {body.renew}"
    issued = datetime.fromisoformat(terms["issued"])
    row = svc.store.add_licence(
        {"licence_id": terms["licence_id"], "user_id": user.id, "bundle_uuid": terms["bundle_uuid"],
         "manifest_sha256": terms["manifest_sha256"], "model_name": model.key,
         "model_version": model.version, "machine": body.machine, "key_id": terms["key_id"],
         "issued": issued, "expires": datetime.fromisoformat(terms["expires"]),
         "renewed_from": body.renew},
        {"ts": issued, "user": user.name, "action": ACTION, "status": 201,
         "target": terms["licence_id"], "model_version": f"{model.key} {model.version}",
         "detail": detail})
    return {**licence_view(row), "licence": doc, "service_keys": svc.signing.ring()}


@router.post("", status_code=201, response_model=LicenceOut,
             responses=_errors(400, 401, 403, 404, 409, 422, 429),
             summary="An offline licence for a bundle this service serves (clinicians)")
async def create_licence(request: Request, body: LicenceIn,
                         who: Principal = Depends(clinician)) -> dict[str, Any]:
    svc = service(request)
    out = await run_in_threadpool(_issue, svc, who, body)
    request.state.audited = True  # its audit entry was committed with the licence
    return out


@router.get("", response_model=LicenceList, responses=_errors(401, 403, 422, 429),
            summary="List offline licences (administrators)")
def list_licences(
    request: Request,
    user: Annotated[str | None, Query(max_length=64, description="only this user's")] = None,
    active: Annotated[bool | None, Query(description="true: neither revoked nor expired; "
                                                     "false: revoked or expired")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    who: Principal = Depends(ADMINS),
) -> dict[str, Any]:
    rows, total = service(request).store.list_licences(user=user, active=active, limit=limit,
                                                       offset=offset)
    return {"items": [licence_view(r) for r in rows], "total": total}


@router.delete("/{licence_id}", status_code=204, response_class=Response,
               responses=_errors(401, 403, 404, 422, 429),
               summary="Revoke an offline licence (administrators): it cannot be renewed")
def revoke_licence(request: Request, licence_id: str, who: Principal = Depends(ADMINS)) -> Response:
    svc = service(request)
    request.state.target = licence_id
    audit = {"ts": datetime.now(UTC), "user": who.user.name, "action":
             "DELETE /v1/licences/{licence_id}", "status": 204, "target": licence_id,
             "detail": "revoked"}
    if svc.store.revoke_licence(licence_id, who.user, audit) is None:
        raise ServiceError(404, f"no licence {licence_id}; GET /v1/licences lists them")
    request.state.audited = True  # its audit entry was committed with the revocation
    return Response(status_code=204)
