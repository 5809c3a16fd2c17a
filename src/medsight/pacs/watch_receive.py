"""`ReceivedPacs`: the series pushed to medsight's storage SCP (C-STORE), seen by the watcher as a
PACS: searched and read in the SCP's folder, while results are stored in (and read back from)
the real PACS."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom import Dataset

from medsight.pacs.client import Level, Pacs
from medsight.pacs.dicomweb import plain_dict
from medsight.pacs.scp import StorageSCP, is_uid

__all__ = ["ReceivedPacs"]


def _header(path: Path) -> dict[str, Any]:
    return plain_dict(pydicom.dcmread(path, stop_before_pixels=True))


class ReceivedPacs:
    """`folder` holds ``<Study>/<Series>/<SOP>.dcm`` as `StorageSCP` writes them; `pacs` is where
    the results go. Search keys other than StudyDate must equal the header's value (a series
    received is new whatever its study date)."""

    def __init__(self, pacs: Pacs, folder: Path, scp: StorageSCP | None = None) -> None:
        self.pacs, self.folder, self.scp = pacs, Path(folder), scp
        self.config = pacs.config

    def _series_dirs(self) -> Iterator[Path]:
        for study in sorted(self.folder.iterdir()) if self.folder.is_dir() else ():
            for series in sorted(study.iterdir()):
                if is_uid(study.name) and is_uid(series.name) and any(series.glob("*.dcm")):
                    yield series

    def echo(self) -> None:
        self.pacs.echo()

    def search(self, level: Level, query: dict[str, str] | None = None, *,
               study: str | None = None, series: str | None = None,
               fields: Sequence[str] = (), limit: int | None = None) -> list[dict[str, Any]]:
        """Series or instances received (a study or series the SCP never got is empty)."""
        wanted = {k: v for k, v in (query or {}).items() if k != "StudyDate"}
        out = []
        for folder in self._series_dirs():
            if (study and folder.parent.name != study) or (series and folder.name != series):
                continue
            files = sorted(folder.glob("*.dcm"))
            headers = [_header(files[0])] if level == "series" else [_header(f) for f in files]
            for h in headers:
                if all(str(h.get(k, "")) == v for k, v in wanted.items()):
                    out.append({**h, "NumberOfSeriesRelatedInstances": len(files)})
        return out[:limit] if limit else out

    def retrieve(self, study: str, series: str | None = None,
                 instance: str | None = None) -> Iterator[Dataset]:
        """A received instance from the folder; anything else (results read back) from the PACS."""
        path = self.folder / study / str(series) / f"{instance}.dcm"
        if instance is not None and all(map(is_uid, (study, series, instance))) and path.is_file():
            yield pydicom.dcmread(path)
            return
        yield from self.pacs.retrieve(study, series, instance)

    def store(self, datasets: Sequence[Dataset]) -> None:
        self.pacs.store(datasets)

    def close(self) -> None:
        """Stop the storage SCP (when this owns one) and close the PACS client."""
        if self.scp is not None:
            self.scp.stop()
        self.pacs.close()
