"""The web page's languages: pick English or Simplified Chinese from Accept-Language (RFC 9110
q-values) or an explicit choice, load the page's string catalogues, and render index.html in that
language server-side so the page reads right before (and without) its script."""

from __future__ import annotations

import html
import json
import re
from functools import lru_cache
from pathlib import Path

LANGUAGES = ("en", "zh-CN")
DEFAULT = "en"

_SIMPLIFIED = {"zh", "zh-cn", "zh-sg", "zh-my", "zh-hans"}
_TRADITIONAL = ("zh-tw", "zh-hk", "zh-mo", "zh-hant")
_Q = re.compile(r"^q=(0(\.\d{0,3})?|1(\.0{0,3})?)$", re.IGNORECASE)


def _supported(tag: str) -> str | None:
    """The supported language a single tag asks for, or None."""
    low = tag.strip().lower().replace("_", "-")
    if low == "en" or low.startswith("en-"):
        return "en"
    if low in _SIMPLIFIED or any(low.startswith(p + "-") for p in _SIMPLIFIED - {"zh"}):
        return "zh-CN"
    return None


def _ranges(accept_language: str) -> list[tuple[str, float]]:
    """(range, q) pairs of an Accept-Language value, highest q first (ties keep their order);
    malformed members are skipped, q=0 means "not this one"."""
    out: list[tuple[int, str, float]] = []
    for index, member in enumerate(accept_language.split(",")):
        parts = [p.strip() for p in member.split(";")]
        tag = parts[0]
        if not tag or not re.fullmatch(r"\*|[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*", tag):
            continue
        q = 1.0
        for param in parts[1:]:
            if param.lower().startswith("q="):
                if not _Q.match(param.replace(" ", "")):
                    q = -1.0
                    break
                q = float(param[2:].strip())
        if q > 0:
            out.append((index, tag, q))
    out.sort(key=lambda item: (-item[2], item[0]))
    return [(tag, q) for _, tag, q in out]


def negotiate(accept_language: str | None, requested: str | None = None) -> str:
    """The page language: `requested` when it names a supported one ("en", "zh-CN", "zh",
    "zh-Hans"...), else the best of `accept_language` by q-value, else English.

    zh, zh-CN, zh-SG, zh-MY and zh-Hans(-*) read as Simplified Chinese; Traditional Chinese
    (zh-TW, zh-HK, zh-Hant) gets Simplified Chinese only when nothing else listed is available.
    """
    if requested:
        chosen = _supported(requested)
        if chosen:
            return chosen
    if not accept_language:
        return DEFAULT
    traditional = False
    for tag, _q in _ranges(accept_language[:1000]):
        if tag == "*":
            return DEFAULT
        chosen = _supported(tag)
        if chosen:
            return chosen
        low = tag.lower()
        traditional = traditional or any(low == p or low.startswith(p + "-") for p in _TRADITIONAL)
    return "zh-CN" if traditional else DEFAULT


WEB_DIR = Path(__file__).resolve().parent / "web"
"""The page's static files (served under /static/)."""


def _web_file(*parts: str) -> str:
    return WEB_DIR.joinpath(*parts).read_text(encoding="utf-8")


@lru_cache(maxsize=len(LANGUAGES))
def _catalogue(lang: str) -> dict[str, str]:
    return json.loads(_web_file("i18n", f"{lang}.json"))


def catalogue(lang: str) -> dict[str, str]:
    """The page's strings (key -> text) in `lang` (a supported code; others give English)."""
    return dict(_catalogue(_supported(lang) or DEFAULT))


_ELEMENT = re.compile(
    r'(<(?P<tag>[a-zA-Z][a-zA-Z0-9]*)\b(?P<attrs>[^<>]*?)\sdata-i18n="(?P<key>[^"]+)"(?P<rest>[^<>]*)>)'
    r"(?P<text>[^<]*)(?=</(?P=tag)>)")
_ATTRS = re.compile(r'data-i18n-attr="(?P<spec>[^"]+)"')
_HTML_TAG = re.compile(r"<html\b[^>]*>", re.IGNORECASE)


@lru_cache(maxsize=len(LANGUAGES))
def render_index(lang: str) -> str:
    """index.html with ``<html lang>`` set to `lang`, its option selected in the language menu,
    and every ``data-i18n`` text (and ``data-i18n-attr`` attribute) filled in that language;
    values are HTML-escaped."""
    code = _supported(lang) or DEFAULT
    words = _catalogue(code)
    page = _web_file("index.html")
    page = _HTML_TAG.sub(f'<html lang="{code}">', page, count=1)
    option = f'<option value="{code}" lang="{code}">'  # the menu shows the page's language
    page = page.replace(option, option[:-1] + " selected>", 1)

    def fill_text(m: re.Match[str]) -> str:
        text = words.get(m.group("key"))
        return m.group(1) + (html.escape(text, quote=False) if text is not None else m.group("text"))

    page = _ELEMENT.sub(fill_text, page)

    out: list[str] = []
    last = 0
    for tag in re.finditer(r"<[a-zA-Z][^<>]*>", page):
        spec = _ATTRS.search(tag.group(0))
        if not spec:
            continue
        element = tag.group(0)
        for pair in spec.group("spec").split(";"):
            attr, _, key = pair.partition(":")
            attr, key = attr.strip(), key.strip()
            if not re.fullmatch(r"[a-z-]+", attr) or key not in words:
                continue
            value = html.escape(words[key], quote=True)
            pattern = re.compile(rf'(\s{re.escape(attr)}=")[^"]*(")')
            if pattern.search(element):
                element = pattern.sub(lambda mm, v=value: mm.group(1) + v + mm.group(2), element, count=1)
            else:
                element = element[:-1] + f' {attr}="{value}">'
        out.append(page[last:tag.start()])
        out.append(element)
        last = tag.end()
    out.append(page[last:])
    return "".join(out)


__all__ = ["DEFAULT", "LANGUAGES", "WEB_DIR", "catalogue", "negotiate", "render_index"]
