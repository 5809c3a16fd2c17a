"""The service over real HTTP on loopback: every format gives 201 and a stored record, bad and
hostile uploads get the right 4xx and never take the server down, auth, roles, rate limit,
overload, reports and heatmaps, and identical re-uploads recognised."""

from __future__ import annotations

import gzip
import io
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import shared_path
from hostile import aborting_j2k
from PIL import Image as PILImage
from serve.files import series_zip

pytestmark = pytest.mark.xdist_group("serve")

BREAST_PNG_SIZE = 28


def _png(mode: str = "L", size: int = 28, fmt: str = "PNG") -> bytes:
    """A real BreastMNIST test image as PNG / JPEG / TIFF bytes."""
    images = np.load(shared_path("medmnist", "breastmnist.npz"))["test_images"]
    img = PILImage.fromarray(images[3]).convert(mode).resize((size, size))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _nifti_slice() -> bytes:
    """One axial slice of a real NIfTI volume, as a 2D NIfTI file."""
    vol = nib.load(shared_path("nifti", "anatomical.nii"))
    data = np.asarray(vol.dataobj)[:, :, vol.shape[2] // 2]
    return nib.Nifti1Image(data[:, :, None].astype(np.int16), vol.affine).to_bytes()


def _post(server, data: bytes, name: str = "upload.bin", role: str = "clinician", **form) -> httpx.Response:
    with server.client(role) as c:
        return c.post("/v1/predictions", files={"file": (name, data)}, data=form or None)


def test_each_format_is_predicted_and_stored(live_server) -> None:
    dicom = live_server.dicom_path.read_bytes()
    cases = {"dicom": dicom, "png": _png(), "jpeg": _png("RGB", 64, "JPEG"),
             "tiff": _png("L", 40, "TIFF"), "nifti": _nifti_slice(),
             "nifti-gz": gzip.compress(_nifti_slice())}
    with live_server.client() as c:
        for fmt, data in cases.items():
            r = c.post("/v1/predictions", files={"file": (f"x.{fmt}", data)})
            assert r.status_code == 201, (fmt, r.text)
            body = r.json()
            assert set(body["probabilities"]) == {"malignant", "normal, benign"}
            assert abs(sum(body["probabilities"].values()) - 1) < 1e-6
            assert body["label"] in body["probabilities"]
            assert body["input"]["format"] == fmt.replace("-gz", "")
            stored = c.get(f"/v1/predictions/{body['id']}")
            assert stored.status_code == 200 and stored.json()["probabilities"] == body["probabilities"]
            assert stored.json()["input"]["sha256"] == body["input"]["sha256"]
        # a DICOM's record carries its pseudonym and shifted date, never the original values
        r = c.post("/v1/predictions", files={"file": ("ct.dcm", dicom)}).json()
        ds = pydicom.dcmread(io.BytesIO(dicom))
        assert r["input"]["patient_pseudonym"].startswith("ANON-")
        assert r["input"]["study_date"] is not None
        assert r["input"]["study_date"].replace("-", "") != str(ds.StudyDate)


def test_a_dicom_series_zip_goes_to_the_3d_model(series_server) -> None:
    data = series_zip()
    with series_server.client() as c:
        models = c.get("/v1/models").json()["models"]
        assert {m["name"] for m in models} == {"tiny_cnn", "cnn3d"}
        assert [m["volume"] for m in models] == [False, True]
        r = c.post("/v1/predictions", files={"file": ("series.zip", data)}, data={"model": "cnn3d"})
        assert r.status_code == 201, r.text
        assert r.json()["model"]["name"] == "cnn3d" and r.json()["input"]["format"] == "dicom-zip"
        assert len(r.json()["input"]["shape"]) == 4
        # the same zip for the 2D model: a clear 422, not a crash
        r = c.post("/v1/predictions", files={"file": ("series.zip", data)})
        assert r.status_code == 422 and "cannot be given to this model" in r.json()["detail"]
        r = c.post("/v1/predictions", files={"file": ("x.png", _png())}, data={"model": "nope"})
        assert r.status_code == 404 and "GET /v1/models" in r.json()["detail"]


def _truncated_png() -> bytes:
    return _png(size=64)[:200]


def _dicom_declaring_huge(dicom: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(dicom))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 50
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + chunk(b"IEND", b"")


def _nifti_gz_bomb() -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape((2048, 2048, 2048))
    header.set_data_dtype(np.uint8)
    return gzip.compress(header.binaryblock + bytes(4)) + gzip.compress(bytes(16 << 20)) * 8


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.dcm", bytes(600 << 20))
    return buf.getvalue()


def test_bad_and_hostile_uploads_get_the_right_4xx_and_the_server_goes_on(live_server) -> None:
    dicom = live_server.dicom_path.read_bytes()
    cases = {
        "text": (b"patient notes, not an image", 415, "unsupported file type"),
        "empty": (b"", 422, "empty"),
        "npz": (_npz(), 415, "not an image upload"),
        "truncated png": (_truncated_png(), 422, "truncated"),
        "truncated dicom": (dicom[: len(dicom) // 3], 422, "truncated"),
        "corrupt dicom header": (dicom[:132] + b"\xff" * 400, 422, ""),
        "png declaring 100000^2": (_png_declaring(100_000, 100_000), 413, "too large"),
        "dicom declaring 60000^2 x 50": (_dicom_declaring_huge(dicom), 413, "too large"),
        "nifti.gz bomb": (_nifti_gz_bomb(), 413, "too large"),
        "zip bomb": (_zip_bomb(), 413, "inflates to"),
        "decoder abort (GDCM)": (aborting_j2k(), 422, "decoder crashed"),
    }
    with live_server.client() as c:
        for name, (data, status, words) in cases.items():
            r = c.post("/v1/predictions", files={"file": ("f", data)})
            assert r.status_code == status, (name, r.status_code, r.text)
            assert words.lower() in r.json()["detail"].lower(), (name, r.json())
            assert c.get("/healthz").status_code == 200, name
        # after all that the service still predicts
        assert c.post("/v1/predictions", files={"file": ("ok.png", _png())}).status_code == 201
        metrics = c.get("/metrics").text
        assert 'medsight_uploads_rejected_total{status="413"}' in metrics
    assert live_server.proc.poll() is None


def _npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros((4, 4)))
    return buf.getvalue()


def test_fuzzed_uploads_never_give_a_5xx(live_server) -> None:
    import random

    rng = random.Random(9)
    seeds = [live_server.dicom_path.read_bytes(), _png(), _png("RGB", 64, "JPEG"), _nifti_slice()]
    statuses = []
    with live_server.client() as c:
        for _ in range(40):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 12)):
                at = rng.randrange(len(data))
                data[at] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(1, len(data))]
            statuses.append(c.post("/v1/predictions", files={"file": ("f", bytes(data))}).status_code)
        assert c.get("/healthz").status_code == 200
    assert all(s in (201, 413, 415, 422) for s in statuses), statuses


def test_an_upload_over_the_size_limit_is_413_before_it_is_read(server_factory) -> None:
    server = server_factory("--max-upload-mb", "1")
    big = bytes(3 << 20)
    r = _post(server, big)
    assert r.status_code == 413 and "at most 1.0 MB" in r.json()["detail"]
    # no Content-Length (chunked): refused while reading
    def chunks():
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        for _ in range(3):
            yield bytes(1 << 20)
    with server.client() as c:
        r = c.post("/v1/predictions", content=chunks(),
                   headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    assert _post(server, _png()).status_code == 201


def test_auth_roles_and_keys(live_server) -> None:
    with httpx.Client(base_url=live_server.url) as anon:
        for method, path in [("GET", "/v1/predictions"), ("GET", "/v1/models"),
                             ("POST", "/v1/predictions"), ("GET", "/v1/predictions/abc/report")]:
            r = anon.request(method, path)
            assert r.status_code == 401, (method, path)
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert anon.get("/healthz").status_code == 200 and anon.get("/readyz").status_code == 200
        bad = anon.get("/v1/models", headers={"Authorization": "Bearer msk_0000000000000000_" + "x" * 43})
        assert bad.status_code == 401 and "not valid" in bad.json()["detail"]
        assert anon.get("/v1/models", headers={"Authorization": "Basic abc"}).status_code == 401
    # a reviewer may read and review but not predict
    r = _post(live_server, _png(), role="reviewer")
    assert r.status_code == 403 and "clinician" in r.json()["detail"]
    pid = _post(live_server, _png()).json()["id"]
    with live_server.client("clinician") as c:
        r = c.post(f"/v1/predictions/{pid}/reviews", json={"verdict": "agree"})
        assert r.status_code == 403
    with live_server.client("reviewer") as c:
        assert c.get(f"/v1/predictions/{pid}").status_code == 200
        r = c.post(f"/v1/predictions/{pid}/reviews", json={"verdict": "disagree", "note": "cyst"})
        assert r.status_code == 201, r.text
        assert c.post(f"/v1/predictions/{pid}/reviews", json={"verdict": "maybe"}).status_code == 422
    with live_server.client() as c:
        reviews = c.get(f"/v1/predictions/{pid}").json()["reviews"]
        got = [(v["reviewer"], v["verdict"], v["note"]) for v in reviews]
        assert got == [("rev_wang", "disagree", "cyst")]


def test_a_clinician_reads_only_their_own_predictions(live_server) -> None:
    from serve.live import second_clinician_key

    other = second_clinician_key(live_server)
    mine = _post(live_server, _png()).json()["id"]
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {other}"}) as c:
        assert c.get(f"/v1/predictions/{mine}").status_code == 404
        assert c.get(f"/v1/predictions/{mine}/heatmap.png").status_code == 404
        listed = c.get("/v1/predictions").json()
        assert all(item["user"] == "dr_zhou" for item in listed["items"])
    with live_server.client("admin") as c:
        assert c.get(f"/v1/predictions/{mine}").status_code == 200


def test_sessions_need_the_csrf_token_for_unsafe_requests(live_server) -> None:
    with httpx.Client(base_url=live_server.url) as c:
        assert c.post("/v1/session", json={"username": "dr_li", "password": "wrong"}).status_code == 401
        r = c.post("/v1/session", json={"username": "dr_li", "password": live_server.users["dr_li"]})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        csrf = r.json()["csrf_token"]
        assert c.get("/v1/session").json()["user"] == "dr_li"
        files = {"file": ("x.png", _png())}
        r = c.post("/v1/predictions", files=files)
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        r = c.post("/v1/predictions", files=files, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 201
        assert c.delete("/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert c.get("/v1/session").status_code == 401


def test_rate_limit_answers_429_with_retry_after(server_factory) -> None:
    server = server_factory("--rate-limit", "6")
    with server.client() as c:
        codes = [c.get("/v1/models").status_code for _ in range(12)]
        assert codes[:5] == [200] * 5 and 429 in codes
        refused = c.get("/v1/models")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    # another key has its own allowance
    with server.client("reviewer") as c:
        assert c.get("/v1/models").status_code == 200


def test_a_full_queue_answers_503_with_retry_after(server_factory) -> None:
    server = server_factory("--queue-size", "1", "--max-wait-ms", "300")
    data = _png()
    with ThreadPoolExecutor(8) as ex:
        responses = list(ex.map(lambda _: _post(server, data), range(8)))
    codes = sorted(r.status_code for r in responses)
    assert 201 in codes and 503 in codes and set(codes) <= {201, 503}, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]


def test_heatmap_image_and_report(live_server) -> None:
    body = _post(live_server, live_server.dicom_path.read_bytes()).json()
    with live_server.client() as c:
        heat = c.get(body["heatmap_url"])
        assert heat.status_code == 200 and heat.headers["content-type"] == "image/png"
        overlay = PILImage.open(io.BytesIO(heat.content))
        assert overlay.size == (512, 512)  # on the original image's grid
        assert c.get(body["image_url"]).status_code == 200
        en = c.get(body["report_url"])
        assert en.status_code == 200 and "Decision support, not a diagnosis" in en.text
        assert body["label"] in en.text and "data:image/png;base64," in en.text
        assert "script-src" not in en.headers["content-security-policy"]  # no script runs in a report
        zh = c.get(body["report_url"], headers={"Accept-Language": "zh-CN,zh;q=0.9"})
        assert 'lang="zh-CN"' in zh.text
        assert c.get(body["report_url"] + "?lang=en",
                     headers={"Accept-Language": "zh-CN"}).text.count('lang="en"') >= 1


def test_identical_reuploads_are_recognised(live_server) -> None:
    data = _png("L", 36)
    first = _post(live_server, data).json()
    again = _post(live_server, data).json()
    assert again["duplicate_of"] == first["id"] and again["id"] != first["id"]
    assert again["input"]["sha256"] == first["input"]["sha256"]
    assert again["probabilities"] == first["probabilities"]


def test_listing_is_paginated_and_filtered(live_server) -> None:
    ids = [_post(live_server, _png("L", 30 + k)).json()["id"] for k in range(3)]
    with live_server.client() as c:
        page = c.get("/v1/predictions", params={"limit": 2}).json()
        assert page["limit"] == 2 and len(page["items"]) == 2 and page["total"] >= 3
        assert [i["id"] for i in page["items"]] == ids[::-1][:2]  # newest first
        nxt = c.get("/v1/predictions", params={"limit": 2, "offset": 2}).json()
        assert nxt["items"][0]["id"] == ids[0]
        label = page["items"][0]["label"]
        by_label = c.get("/v1/predictions", params={"label": label, "limit": 200}).json()
        assert by_label["items"] and all(i["label"] == label for i in by_label["items"])
        assert c.get("/v1/predictions", params={"model": "nope"}).json()["total"] == 0
        assert c.get("/v1/predictions", params={"limit": 0}).status_code == 422


def test_a_tampered_bundle_is_refused_at_start(serve_bundle, tmp_path) -> None:
    from deploy.tamper import tampered_copy
    from serve.live import start_expecting_failure

    bad = tampered_copy(serve_bundle, "model.onnx", tmp_path / "bad.msb")
    code, log = start_expecting_failure([bad], tmp_path / "data")
    assert code == 1 and "model.onnx" in log and "sha256" in log.lower()


def test_openapi_and_security_headers(live_server) -> None:
    with httpx.Client(base_url=live_server.url) as c:
        spec = c.get("/openapi.json").json()
        assert {"/v1/predictions", "/v1/predictions/batch", "/v1/predictions/{pid}/report",
                "/healthz", "/readyz", "/metrics", "/v1/models"} <= set(spec["paths"])
        page = c.get("/")
        assert page.status_code == 200
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"


def test_batch_endpoint_reports_each_file(live_server) -> None:
    files = [("files", ("a.png", _png())), ("files", ("b.txt", b"not an image")),
             ("files", ("c.dcm", live_server.dicom_path.read_bytes()))]
    with live_server.client() as c:
        r = c.post("/v1/predictions/batch", files=files)
    assert r.status_code == 201, r.text
    items = r.json()["items"]
    assert "id" in items[0] and items[1]["status"] == 415 and "id" in items[2]


def test_metrics_count_requests_batches_and_inference(live_server) -> None:
    _post(live_server, _png())
    text = httpx.get(live_server.url + "/metrics").text
    for name in ("medsight_requests_total", "medsight_request_seconds_bucket",
                 "medsight_batch_size_bucket", "medsight_inference_seconds_bucket",
                 "medsight_predictions_in_flight", "medsight_batch_queue_depth"):
        assert name in text, name
    assert 'route="/v1/predictions",status="201"' in text


def test_unknown_prediction_is_404(live_server) -> None:
    with live_server.client() as c:
        r = c.get("/v1/predictions/0123456789abcdef")
    assert r.status_code == 404 and "no prediction" in r.json()["detail"]


def test_serve_is_loopback_by_default() -> None:
    from typer.testing import CliRunner

    from medsight.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"])
    assert "127.0.0.1" in out.output
