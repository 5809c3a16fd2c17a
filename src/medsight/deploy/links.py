"""Which stored URLs may become links on a page: absolute http(s) URLs with a host and nothing a
browser could read as script or markup (a PACS study link comes from configuration, not from us)."""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_LINK = 2000
_UNSAFE = set("<>\"'`\\ ") | {chr(c) for c in range(32)} | {chr(127)}


def web_link(url: object) -> str | None:
    """`url` when it is an absolute http:// or https:// URL with a host (at most MAX_LINK
    characters, no spaces, quotes, angle brackets or control characters), else None."""
    if not isinstance(url, str) or not url or len(url) > MAX_LINK or set(url) & _UNSAFE:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


__all__ = ["MAX_LINK", "web_link"]
