"""The printable prediction report in Simplified Chinese and English from one rendering path: a real
prediction of a bundled model renders with the Chinese notice, headings and lang attribute, still
escapes a hostile source name and record, and ReportWriter writes the same page render_report gives."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from pathlib import Path

import pytest
from conftest import shared_path

from medsight.deploy.predictor import Predictor
from medsight.deploy.report import CSS, NOTICE, REPORT_CSP, ReportWriter, render_report
from medsight.deploy.report_i18n import LANGUAGES, report_language, strings
from medsight.errors import InvalidConfig

pytestmark = pytest.mark.xdist_group("deploy_runs")

HOSTILE = "<script>alert(1)</script>&\"x'.dcm"


@pytest.fixture(scope="module")
def prediction_and_manifest(classical_run, bundle_of):
    predictor = Predictor(bundle_of(classical_run))
    dicom = shared_path("dicom", "pydicom", "CT_small.dcm")
    pred = predictor.predict(str(dicom), heatmap=True)
    return dataclasses.replace(pred, source=HOSTILE), predictor.bundle.manifest


def test_chinese_report_has_the_notice_labels_and_lang(prediction_and_manifest) -> None:
    pred, manifest = prediction_and_manifest
    zh = strings("zh-CN")
    page = render_report(pred, manifest, lang="zh-CN")
    assert '<html lang="zh-CN">' in page
    assert zh["notice"] in page and page.count(zh["notice"]) == 2
    for key in ("heading", "probabilities", "model", "intended_use", "input_timing", "image_caption"):
        assert zh[key] in page, key
    assert pred.label in page and "data:image/png;base64," in page
    assert "<h2>Probabilities</h2>" not in page and "<h1>Prediction</h1>" not in page


def test_english_report_is_unchanged_in_substance(prediction_and_manifest) -> None:
    pred, manifest = prediction_and_manifest
    page = render_report(pred, manifest)
    assert '<html lang="en">' in page and NOTICE in page and "Probabilities" in page
    assert f"<strong>{pred.label}</strong>" in page


@pytest.mark.parametrize("lang", LANGUAGES)
def test_hostile_source_and_record_are_escaped(prediction_and_manifest, lang) -> None:
    pred, manifest = prediction_and_manifest
    record = {"id": "abc123", "patient_pseudonym": "<img src=x onerror=alert(2)>",
              "reviews": [{"reviewer": "<b>rev</b>", "verdict": "disagree",
                           "note": "</td><script>alert(3)</script>"}]}
    page = render_report(pred, manifest, lang=lang, record=record)
    assert "<script>" not in page and "<img src=x" not in page and "<b>rev</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert strings(lang)["review_disagree"] in page and "abc123" in page


def test_style_hash_in_the_csp_matches_the_served_style(prediction_and_manifest) -> None:
    pred, manifest = prediction_and_manifest
    page = render_report(pred, manifest, lang="zh-CN")
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert style == CSS and f"'sha256-{digest}'" in REPORT_CSP
    assert ' style="' not in page and "<script" not in page  # nothing the CSP would block


def test_report_writer_pages_are_render_report_pages(prediction_and_manifest, tmp_path) -> None:
    pred, manifest = prediction_and_manifest
    writer = ReportWriter(tmp_path / "r", manifest, lang="zh")
    path = writer.add(pred)
    writer.add_failure("broken.dcm", "cannot read image broken.dcm: truncated")
    assert path.read_text(encoding="utf-8") == render_report(pred, manifest, lang="zh-CN")
    index = writer.close().read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in index and "1 个无法预测" in index
    assert strings("zh-CN")["index_failed"].format(reason="cannot read image broken.dcm: truncated") in index
    assert "&lt;script&gt;" in index and Path(path).name in index


def test_language_codes_and_catalogues() -> None:
    en, zh = strings("en"), strings("zh-CN")
    assert set(en) == set(zh)
    for key, text in en.items():  # the same placeholders in both languages
        assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", zh[key])), key
    assert [report_language(x) for x in ("zh", "ZH-cn", "zh-Hans", "zh_SG", "en-GB", None)] == \
        ["zh-CN", "zh-CN", "zh-CN", "zh-CN", "en", "en"]
    with pytest.raises(InvalidConfig, match="zh-CN"):
        strings("fr")
