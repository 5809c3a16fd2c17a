"""Where a prediction's image came from, as the API shows it: None for an upload, else the PACS,
the study / series / instance UIDs, a study link only when it is a safe http(s) URL, and the
result objects (SR, SC) written back to the PACS."""

from __future__ import annotations

from typing import Any

from pydicom.uid import UID

from medsight.deploy.links import web_link

_UIDS = ("study_uid", "series_uid", "sop_uid")


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _result(item: Any) -> dict[str, str | None]:
    item = item if isinstance(item, dict) else {}
    sop_class = _text(item.get("sop_class"))
    name = UID(sop_class).name if sop_class else None
    return {"sop_class": sop_class, "sop_instance": _text(item.get("sop_instance")),
            "name": None if name == sop_class else name}


def source_view(source: Any) -> dict[str, Any] | None:
    """A stored `source` (the PACS watcher's) as answered; None (an upload) stays None."""
    if not isinstance(source, dict) or not source:
        return None
    return {"kind": _text(source.get("kind")) or "pacs", "pacs": _text(source.get("pacs")),
            **{k: _text(source.get(k)) for k in _UIDS},
            "study_url": web_link(source.get("study_url")),
            "results": [_result(r) for r in source.get("results") or []]}


__all__ = ["source_view"]
