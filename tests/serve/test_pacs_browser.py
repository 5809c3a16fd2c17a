"""The web page in headless Chromium (Playwright) shows which predictions came from the PACS: a
"PACS" badge and the study link (new tab, rel=noopener) in the history and the result view, the
series and instance UIDs and the results written back in a details line, in English and Chinese;
an upload has neither, a hostile study URL (javascript:) keeps the badge but is no link, and the
history's source filter keeps one kind."""

from __future__ import annotations

import pytest
from serve.pacs_records import HOSTILE_URL, add_pacs_copies, pacs_source, upload
from serve.test_browser import DEVICES, TIMEOUT_MS, Page, _sign_in, browser  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("serve")]


def test_pacs_badge_study_link_and_details(browser, live_server, tmp_path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    made = upload(live_server)
    good, hostile = pacs_source(), pacs_source(HOSTILE_URL, written=False)
    pacs_id, hostile_id = add_pacs_copies(live_server, made["id"], [good, hostile])
    context = browser.new_context(**DEVICES["desktop"], locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        tab = Page(context, tmp_path, "pacs")
        page = tab.page
        _sign_in(page, live_server, "dr_li")
        page.locator("#tab-history").click()
        rows = page.locator("#history-list li")
        expect(page.locator(f'.history-row[data-id="{hostile_id}"]')).to_be_visible()

        pacs_row = rows.filter(has=page.locator(f'.history-row[data-id="{pacs_id}"]'))
        expect(pacs_row.locator(".badge-pacs")).to_have_text("PACS")
        link = pacs_row.locator("a.row-study")
        expect(link).to_have_attribute("href", good["study_url"])
        expect(link).to_have_attribute("target", "_blank")
        expect(link).to_have_attribute("rel", "noopener noreferrer")
        hostile_row = rows.filter(has=page.locator(f'.history-row[data-id="{hostile_id}"]'))
        expect(hostile_row.locator(".badge-pacs")).to_have_count(1)
        expect(hostile_row.locator("a")).to_have_count(0)
        upload_row = rows.filter(has=page.locator(f'.history-row[data-id="{made["id"]}"]'))
        expect(upload_row.locator(".badge-pacs")).to_have_count(0)
        expect(upload_row.locator("a")).to_have_count(0)
        tab.shot("history")

        page.locator(f'.history-row[data-id="{pacs_id}"]').click()
        expect(page.locator("#result-view")).to_be_visible()
        expect(page.locator("#result-source")).to_be_visible()
        expect(page.locator("#result-source .badge-pacs")).to_have_text("PACS")
        study = page.locator("#result-study-link")
        expect(study).to_have_attribute("href", good["study_url"])
        expect(study).to_have_attribute("rel", "noopener noreferrer")
        expect(study).to_have_attribute("target", "_blank")
        expect(page.locator("#result-source-details")).to_contain_text(good["series_uid"])
        expect(page.locator("#result-source-details")).to_contain_text(good["sop_uid"])
        expect(page.locator("#result-source-results")).to_contain_text("Comprehensive SR Storage")
        page.locator("#lang-select").select_option("zh-CN")
        expect(page.locator("#result-study-link")).to_have_text("在 PACS 中打开该检查")
        expect(page.locator("#result-source-details")).to_contain_text("序列 " + good["series_uid"])
        page.locator("#lang-select").select_option("en")
        page.wait_for_function("() => ['result-image', 'result-heatmap'].every(id => {"
                               " const i = document.getElementById(id);"
                               " return i.complete && i.naturalWidth > 0; })")
        tab.shot("result_pacs")

        page.locator("#tab-history").click()
        page.locator(f'.history-row[data-id="{hostile_id}"]').click()
        expect(page.locator("#result-view")).to_be_visible()
        expect(page.locator("#result-source")).to_be_visible()
        expect(page.locator("#result-study-link")).to_be_hidden()
        assert page.locator("#result-study-link").get_attribute("href") is None
        expect(page.locator("#result-source-results")).to_have_text(
            "Nothing written back to the PACS yet.")

        page.locator("#tab-history").click()
        page.locator(f'.history-row[data-id="{made["id"]}"]').click()
        # the row opens after its fetch: until then the result view (and its source panel) is
        # hidden anyway, and the history view it replaces is the one the next steps use
        expect(page.locator("#result-view")).to_be_visible()
        expect(page.locator("#result-source")).to_be_hidden()

        page.locator("#tab-history").click()
        page.get_by_label("Source").select_option("upload")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator(f'.history-row[data-id="{pacs_id}"]')).to_have_count(0)
        expect(page.locator("#history-list .badge-pacs")).to_have_count(0)
        page.get_by_label("Source").select_option("pacs")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator(f'.history-row[data-id="{pacs_id}"]')).to_be_visible()
        expect(page.locator(f'.history-row[data-id="{made["id"]}"]')).to_have_count(0)
        assert page.locator("#history-list .history-row").count() == \
            page.locator("#history-list .badge-pacs").count()
        assert tab.errors == [], tab.errors
    finally:
        context.close()
