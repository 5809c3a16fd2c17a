"""Schemathesis against the live service's own OpenAPI spec: generated requests (valid and invalid by
the spec) to every operation, as a clinician, and to the review endpoint as a reviewer (on a real
prediction too), must never get a 5xx, and must get only the
statuses and bodies the spec declares. Examples are bounded so the module runs in < 60 s.

Each operation's strategy is driven by Hypothesis here (`APIOperation.as_strategy`) rather than by
`schemathesis.pytest.from_fixture`, whose lazy loader reads a pytest node attribute that pytest 9
no longer has (``Function._nodeid``); the checks are schemathesis' own either way."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

pytestmark = pytest.mark.xdist_group("serve")

NO_5XX = [not_a_server_error]
CONFORMANCE = [status_code_conformance, response_schema_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 5}
REVIEWS = "/v1/predictions/{pid}/reviews"


@pytest.fixture(scope="module")
def api_schema(live_server: Any) -> Any:
    """The service's spec as it serves it (/openapi.json); requests go to the live server."""
    return schemathesis.openapi.from_url(live_server.url + "/openapi.json")


@pytest.fixture(scope="module")
def prediction_id(live_server: Any) -> str:
    """A real prediction of the clinician's (for the reviewer's pass)."""
    with live_server.client("clinician") as http:
        r = http.post("/v1/predictions", files={"file": ("ct.dcm", live_server.dicom_path.read_bytes())})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def operations(api_schema: Any) -> list[Any]:
    return [result.ok() for result in api_schema.get_all_operations()]


def fuzz(operation: Any, headers: dict[str, str], checks: list[Any],
         path_parameters: dict[str, str] | None = None) -> list[str]:
    """Run `checks` on generated cases of `operation`, valid and invalid ones; one entry per
    failing mode (empty: none). An operation with nothing to make invalid has no negative cases."""
    failures = []
    for mode, examples in EXAMPLES.items():
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

        @given(case=strategy)
        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=checks, timeout=60)

        try:
            run()
        except Unsatisfiable:
            continue  # e.g. GET /healthz: no parameter, no body, so no invalid request to make
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - schemathesis' FailureGroup; every operation is tried
            failures.append(f"{operation.label} ({mode.value}): {type(exc).__name__}: {exc}")
    return failures


def test_spec_lists_the_operations(api_schema: Any) -> None:
    labels = {op.label for op in operations(api_schema)}
    assert {"POST /v1/predictions", "GET /v1/predictions/{pid}", f"POST {REVIEWS}",
            "GET /v1/models", "POST /v1/session"} <= labels, labels


def all_failures(api_schema: Any, live_server: Any, prediction_id: str, checks: list[Any]) -> list[str]:
    """Every operation as a clinician; the review endpoint as a reviewer, on generated ids and on
    a real prediction."""
    ops = operations(api_schema)
    failures = [line for op in ops if op.path != REVIEWS
                for line in fuzz(op, live_server.auth("clinician"), checks)]
    [review] = [op for op in ops if op.path == REVIEWS]
    failures += fuzz(review, live_server.auth("reviewer"), checks)
    failures += fuzz(review, live_server.auth("reviewer"), checks, {"pid": prediction_id})
    return failures


def test_no_server_error(api_schema: Any, live_server: Any, prediction_id: str) -> None:
    failures = all_failures(api_schema, live_server, prediction_id, NO_5XX)
    assert not failures, "\n\n".join(failures)
    assert live_server.proc.poll() is None


def test_responses_match_the_spec(api_schema: Any, live_server: Any, prediction_id: str) -> None:
    failures = all_failures(api_schema, live_server, prediction_id, CONFORMANCE)
    assert not failures, "\n\n".join(failures)
