"""A detector served over real HTTP: an uploaded BCCD smear JPEG gets boxes (the bundle's own, in
original-image pixels) and counts through `POST /v1/predictions` and `POST /v1/detections`, the
record keeps them, `annotated.png` draws them, the printable report (en and zh-CN) shows the
annotated image and the counts, the OpenAPI schema documents boxes; a classifier keeps its
heatmap and is refused by `/v1/detections`."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from deploy.tiny_detector import smear_jpegs
from PIL import Image as PILImage

from medsight.deploy.predictor import Predictor
from medsight.deploy.report_i18n import strings

pytestmark = pytest.mark.xdist_group("serve")

DETECTOR, CLASSIFIER = "detector", "tiny_cnn"


@pytest.fixture(scope="module")
def smear() -> tuple[bytes, Path]:
    """A real test-split smear (JPEG bytes as a clinician would upload it)."""
    [path] = smear_jpegs(1)
    return path.read_bytes(), path


def test_an_uploaded_smear_gets_the_bundles_boxes_and_counts(detection_server, detector_bundle,
                                                             smear) -> None:
    data, path = smear
    expected = Predictor(detector_bundle).predict(str(path))
    with detection_server.client() as c:
        models = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
        assert models[DETECTOR]["task"] == "detection" and models[DETECTOR]["default"]
        r = c.post("/v1/predictions", files={"file": ("smear.jpg", data, "image/jpeg")})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["boxes"] == expected.boxes and len(body["boxes"]) > 0
        assert body["counts"] == expected.counts and body["label"] == expected.label
        assert body["probabilities"] == {} and body["threshold"] == pytest.approx(expected.threshold)
        assert body["annotated_url"] == f"/v1/predictions/{body['id']}/annotated.png"
        again = c.get(f"/v1/predictions/{body['id']}").json()  # stored, not recomputed
        assert again["boxes"] == body["boxes"] and again["counts"] == body["counts"]
        listed = c.get("/v1/predictions", params={"model": DETECTOR}).json()["items"]
        assert any(i["id"] == body["id"] and i["boxes"] == body["boxes"] for i in listed)

        png = c.get(body["annotated_url"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert PILImage.open(io.BytesIO(png.content)).size == (640, 480)
        assert c.get(body["image_url"]).status_code == 200
        heat = c.get(body["heatmap_url"])
        assert heat.status_code == 409 and "annotated.png" in heat.json()["detail"]

        for lang in ("en", "zh-CN"):
            words = strings(lang)
            page = c.get(body["report_url"], params={"lang": lang})
            assert page.status_code == 200
            assert f"<h2>{words['counts']}</h2>" in page.text
            assert f"<h2>{words['probabilities']}</h2>" not in page.text
            assert f'alt="{words["annotated_alt"]}"' in page.text
            for cls, n in body["counts"].items():
                assert f"<tr><td>{cls}</td><td>{n}</td></tr>" in page.text


def test_detections_endpoint_takes_detectors_only(detection_server, smear) -> None:
    data, _ = smear
    with detection_server.client() as c:
        r = c.post("/v1/detections", files={"file": ("smear.jpg", data, "image/jpeg")})
        assert r.status_code == 201, r.text
        assert r.json()["boxes"] is not None and r.json()["model"]["name"] == DETECTOR
        refused = c.post("/v1/detections", files={"file": ("smear.jpg", data, "image/jpeg")},
                         data={"model": CLASSIFIER})
        assert refused.status_code == 409 and "not a detector" in refused.json()["detail"]
        # the classifier's own answer is unchanged: probabilities and a heatmap, no boxes
        clf = c.post("/v1/predictions", files={"file": ("smear.jpg", data, "image/jpeg")},
                     data={"model": CLASSIFIER}).json()
        assert clf["boxes"] is None and clf["counts"] is None and clf["annotated_url"] is None
        assert len(clf["probabilities"]) == 2
        assert c.get(f"/v1/predictions/{clf['id']}/annotated.png").status_code == 409


def test_openapi_documents_boxes(detection_server) -> None:
    with detection_server.client(None) as c:
        spec = c.get("/openapi.json").json()
    assert "/v1/detections" in spec["paths"]
    box = spec["components"]["schemas"]["BoxOut"]
    assert set(box["properties"]) == {"label", "score", "box"}
    assert "pixel edges" in box["properties"]["box"]["description"]
    out = spec["components"]["schemas"]["PredictionOut"]["properties"]
    assert {"boxes", "counts", "annotated_url"} <= set(out)
