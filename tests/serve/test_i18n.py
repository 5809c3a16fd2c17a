"""The web page's languages without a browser: Accept-Language negotiation (q-values, Chinese
variants), catalogues with the same keys in both languages and every key the page and its script use,
index.html rendered server-side in the chosen language (escaped), and a page the strict CSP allows."""

from __future__ import annotations

import json
import re

import pytest

from medsight.serve.i18n import LANGUAGES, WEB_DIR, catalogue, negotiate, render_index

NAMESPACES = ("app", "session", "role", "signin", "status", "nav", "upload", "result", "review",
              "history", "error", "task")


@pytest.mark.parametrize(("header", "requested", "expected"), [
    (None, None, "en"),
    ("", None, "en"),
    ("zh-CN,zh;q=0.9,en;q=0.8", None, "zh-CN"),
    ("en-US,en;q=0.9,zh-CN;q=0.8", None, "en"),
    ("fr-FR, de;q=0.9, zh;q=0.5", None, "zh-CN"),
    ("fr, zh-Hans-CN;q=0.2, en;q=0.1", None, "zh-CN"),
    ("zh-SG", None, "zh-CN"),
    ("en;q=0.3, zh;q=0.7", None, "zh-CN"),  # order by q, not by position
    ("zh;q=0, en;q=0.1", None, "en"),  # q=0: not acceptable
    ("zh;q=2, en", None, "en"),  # malformed q: that member is skipped
    ("de, zh-TW;q=0.5", None, "zh-CN"),  # Traditional only: Simplified beats nothing
    ("zh-TW, en;q=0.5", None, "en"),  # ... but not an available language listed after it
    ("*", None, "en"),
    ("en", "zh", "zh-CN"),  # an explicit choice wins
    ("zh-CN", "ZH-cn", "zh-CN"),
    ("zh-CN", "fr", "zh-CN"),  # an unsupported choice falls back to the header
    ("x" * 5000, None, "en"),
])
def test_negotiate(header, requested, expected) -> None:
    assert negotiate(header, requested) == expected


def test_catalogues_match_and_cover_every_key_the_page_uses() -> None:
    en, zh = catalogue("en"), catalogue("zh-CN")
    assert set(en) == set(zh)
    assert all(isinstance(v, str) and v.strip() for c in (en, zh) for v in c.values())
    html = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    script = (WEB_DIR / "app.js").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n="([^"]+)"', html))
    used |= {k for spec in re.findall(r'data-i18n-attr="([^"]+)"', html)
             for k in (p.partition(":")[2] for p in spec.split(";"))}
    used |= {k for k in re.findall(r'"([a-z]+\.[a-z_]+)"', script) if k.split(".")[0] in NAMESPACES}
    used |= {f"role.{r}" for r in ("clinician", "reviewer", "admin")}
    assert not used - set(en), sorted(used - set(en))
    for key, text in en.items():  # the same placeholders in both languages
        assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", zh[key])), key
    assert catalogue("fr") == en  # unsupported: English


@pytest.mark.parametrize("lang", LANGUAGES)
def test_index_is_rendered_in_the_language(lang) -> None:
    page = render_index(lang)
    words = catalogue(lang)
    assert f'<html lang="{lang}">' in page
    assert f"<title data-i18n=\"app.title\">{words['app.title']}</title>" in page
    for key in ("signin.title", "upload.camera", "upload.choose", "result.notice", "history.title"):
        assert f'data-i18n="{key}">{words[key]}<' in page, key
    assert f'alt="{words["result.heatmap_alt"]}"' in page
    assert page.count(" selected>") == 1  # the language menu shows the page's language
    assert f'<option value="{lang}" lang="{lang}" selected>' in page
    assert render_index("zh-Hans") == render_index("zh-CN") and render_index("<x>") == render_index("en")


def test_rendered_text_is_escaped(monkeypatch) -> None:
    import medsight.serve.i18n as i18n

    hostile = dict(catalogue("en"), **{"signin.title": "<script>x</script>", "nav.label": '"><b>'})
    monkeypatch.setattr(i18n, "_catalogue", lambda lang: hostile)
    page = i18n.render_index.__wrapped__("en")
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert 'aria-label="&quot;&gt;&lt;b&gt;"' in page


def test_page_runs_under_the_strict_csp() -> None:
    """No inline script, style, event handler or remote asset: every one is served from /static/."""
    html = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)
    for url in re.findall(r'(?:src|href)="([^"#][^"]*)"', html):
        assert url.startswith("/static/"), url
    script = (WEB_DIR / "app.js").read_text(encoding="utf-8")
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "eval(" not in script and "new Function" not in script
    for lang in LANGUAGES:
        json.loads((WEB_DIR / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
