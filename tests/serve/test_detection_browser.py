"""A detector's result in Debian's headless Chromium (Playwright): an uploaded BCCD smear shows its
boxes drawn as SVG over the image (class and score as text), the counts per class, no heatmap or
probability bars; the score slider hides the boxes below it and recounts live; no console error
(a CSP violation would be one). Screenshots as in test_browser."""

from __future__ import annotations

import re

import pytest
from deploy.tiny_detector import smear_jpegs
from serve.test_browser import DEVICES, TIMEOUT_MS, Page, _sign_in, artefacts, browser  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("serve")]

VISIBLE = "() => Number(document.getElementById('result-boxes').dataset.visible)"


def _shown_counts(page) -> dict[str, int]:
    return page.evaluate("() => Object.fromEntries([...document.querySelectorAll('#result-counts li')]"
                         ".map(li => [li.dataset.label, Number(li.querySelector('.count-value')"
                         ".textContent)]))")


def test_boxes_are_drawn_and_the_slider_recounts(browser, detection_server, artefacts) -> None:  # noqa: F811
    from playwright.sync_api import expect

    [jpeg] = smear_jpegs(1)
    context = browser.new_context(**DEVICES["desktop"], locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        tab = Page(context, artefacts, "detector")
        page = tab.page
        _sign_in(page, detection_server, "dr_li")
        page.locator("#file-input").set_input_files(str(jpeg))
        expect(page.locator("#result-view")).to_be_visible()
        pid = re.fullmatch(r"/v1/predictions/([^/]+)/report\?lang=en",
                           page.locator("#report-link").get_attribute("href")).group(1)
        with detection_server.client() as api:
            record = api.get(f"/v1/predictions/{pid}").json()
        boxes, threshold = record["boxes"], record["threshold"]
        assert len(boxes) > 0
        page.wait_for_function("() => { const i = document.getElementById('result-image');"
                               " return i.complete && i.naturalWidth > 0; }")
        expect(page.locator("#result-boxes")).to_be_visible()
        expect(page.locator("#result-heatmap")).to_be_hidden()
        expect(page.locator("#opacity")).to_be_hidden()
        expect(page.locator("#probabilities-box")).to_be_hidden()
        expect(page.locator("#result-label")).to_have_text(record["label"])

        counted = [b for b in boxes if b["score"] >= threshold]
        assert page.evaluate(VISIBLE) == len(counted)
        assert page.locator("#result-boxes rect").count() == len(counted)
        assert _shown_counts(page) == record["counts"]

        slider = page.locator("#score-threshold")
        slider.focus()
        page.keyboard.press("Home")  # 0: every returned box
        expect(page.locator("#score-value")).to_have_text("0.00")
        assert page.evaluate(VISIBLE) == len(boxes) == page.locator("#result-boxes rect").count()
        shown = _shown_counts(page)
        assert sum(shown.values()) == len(boxes)
        assert shown == {c: sum(b["label"] == c for b in boxes) for c in record["counts"]}
        first = page.locator("#result-boxes text").first
        expect(first).to_have_text(f"{boxes[0]['label']} {boxes[0]['score']:.2f}")
        inside = page.evaluate("() => { const i = document.getElementById('result-image')"
                               ".getBoundingClientRect(); return [...document.querySelectorAll("
                               "'#result-boxes rect')].every(r => { const b = r.getBoundingClientRect();"
                               " return b.left >= i.left - 1 && b.right <= i.right + 1 &&"
                               " b.top >= i.top - 1 && b.bottom <= i.bottom + 1; }); }")
        assert inside, "a box is drawn outside the image"
        tab.shot("all_boxes")

        page.keyboard.press("End")  # 1: no box scores that high
        expect(page.locator("#score-value")).to_have_text("1.00")
        assert page.evaluate(VISIBLE) == 0 == page.locator("#result-boxes rect").count()
        assert set(_shown_counts(page).values()) == {0}
        tab.shot("no_boxes")
        assert tab.errors == [], tab.errors
    finally:
        context.close()
