"""Predictions of images from the PACS: the store filters them (SQLite and PostgreSQL), the API
answers their `source` (study, series, instance, results written back) and filters by it, a
hostile study URL never becomes a link, and the printable report names the PACS study."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from serve import postgres
from serve.pacs_records import HOSTILE_URL, SC, SR, add_pacs_copies, pacs_source, upload
from serve.test_store_predictions import audit_for, record

from medsight.errors import InvalidConfig
from medsight.serve.sources import source_view

postgres_server, db_url, store = postgres.postgres_server, postgres.db_url, postgres.store


def test_the_store_keeps_and_filters_the_pacs_source(store) -> None:
    alice = store.add_user("alice", "clinician")
    src = pacs_source()
    up, none, pacs = (record(alice.id, name, created=datetime(2026, 3, 1, 12, i, tzinfo=UTC))
                      for i, name in enumerate(("upload", "explicit-none", "pacs")))
    none["source"], pacs["source"] = None, src
    store.add_predictions([up, none, pacs], [audit_for(r) for r in (up, none, pacs)])
    assert store.get_prediction(pacs["id"])["source"] == src
    assert "source" not in store.get_prediction(up["id"])
    assert "source" not in store.get_prediction(none["id"])
    assert [r["id"] for r in store.list_predictions(source="pacs")[0]] == [pacs["id"]]
    assert store.list_predictions(source="upload") == (
        [store.get_prediction(i) for i in (none["id"], up["id"])], 2)
    assert store.list_predictions()[1] == 3
    assert store.list_predictions(source="pacs", label="benign") == ([], 0)
    with pytest.raises(InvalidConfig, match="'pacs' or 'upload'"):
        store.list_predictions(source="dicom")


@pytest.mark.parametrize("url", [HOSTILE_URL, " javascript:alert(1)", "JAVASCRIPT:alert(1)",
                                 "data:text/html,<script>alert(1)</script>", "//evil.example/x",
                                 'http://h/"><script>alert(1)</script>', "ORTHANC@h:4242 study 1.2",
                                 "", None])
def test_only_an_http_study_url_is_answered(url) -> None:
    assert source_view({**pacs_source(), "study_url": url})["study_url"] is None


def test_the_view_of_a_source() -> None:
    src = pacs_source("https://viewer.example/ohif?StudyInstanceUIDs=1.2")
    view = source_view(src)
    assert view["study_url"] == src["study_url"]
    assert {k: view[k] for k in ("kind", "pacs", "study_uid", "series_uid", "sop_uid")} == \
        {k: src[k] for k in ("kind", "pacs", "study_uid", "series_uid", "sop_uid")}
    assert [r["name"] for r in view["results"]] == ["Comprehensive SR Storage",
                                                    "Secondary Capture Image Storage"]
    assert source_view(None) is None and source_view({}) is None


@pytest.mark.xdist_group("serve")
def test_the_api_answers_filters_and_reports_the_pacs_source(live_server) -> None:
    made = upload(live_server)
    assert made["source"] is None
    good, hostile = pacs_source(), pacs_source(HOSTILE_URL, written=False)
    pacs_id, hostile_id = add_pacs_copies(live_server, made["id"], [good, hostile])
    with live_server.client("clinician") as api:
        got = api.get(f"/v1/predictions/{pacs_id}").json()
        assert got["source"] == {**good, "results": [
            {"sop_class": SR, "sop_instance": good["results"][0]["sop_instance"],
             "name": "Comprehensive SR Storage"},
            {"sop_class": SC, "sop_instance": good["results"][1]["sop_instance"],
             "name": "Secondary Capture Image Storage"}]}
        assert got["label"] == made["label"] and got["probabilities"] == made["probabilities"]
        bad = api.get(f"/v1/predictions/{hostile_id}").json()["source"]
        assert bad["study_url"] is None and bad["study_uid"] == hostile["study_uid"]
        assert bad["results"] == []

        pacs = api.get("/v1/predictions", params={"source": "pacs", "limit": 200}).json()
        ids = [i["id"] for i in pacs["items"]]
        assert {pacs_id, hostile_id} <= set(ids) and made["id"] not in ids
        assert all(i["source"]["kind"] == "pacs" for i in pacs["items"])
        uploads = api.get("/v1/predictions", params={"source": "upload", "limit": 200}).json()
        assert made["id"] in {i["id"] for i in uploads["items"]}
        assert all(i["source"] is None for i in uploads["items"])
        everything = api.get("/v1/predictions", params={"limit": 1}).json()["total"]
        assert pacs["total"] + uploads["total"] == everything
        refused = api.get("/v1/predictions", params={"source": "dicom"})
        assert refused.status_code == 422

        page = api.get(f"/v1/predictions/{pacs_id}/report", params={"lang": "en"})
        assert page.status_code == 200, page.text
        html = page.text
        assert "Source: PACS" in html and good["study_uid"] in html and good["series_uid"] in html
        assert good["sop_uid"] in html
        links = re.findall(r'<a href="([^"]+)" target="_blank" rel="noopener noreferrer">', html)
        assert links == [good["study_url"]]
        assert "Comprehensive SR Storage" in html and good["results"][0]["sop_instance"] in html
        assert "Secondary Capture Image Storage" in html
        zh = api.get(f"/v1/predictions/{pacs_id}/report", params={"lang": "zh-CN"}).text
        assert "来源：PACS" in zh and good["study_uid"] in zh

        hostile_page = api.get(f"/v1/predictions/{hostile_id}/report").text
        assert hostile["study_uid"] in hostile_page and "<a " not in hostile_page
        assert "javascript:" not in hostile_page.lower() and "none yet" in hostile_page
        plain = api.get(f"/v1/predictions/{made['id']}/report").text
        assert "Source: PACS" not in plain

    schema = live_server.client(None).get("/openapi.json").json()
    params = {p["name"] for p in schema["paths"]["/v1/predictions"]["get"]["parameters"]}
    assert "source" in params
    assert "study_url" in schema["components"]["schemas"]["SourceOut"]["properties"]
