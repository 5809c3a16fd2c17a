"""`Pacs`: the one interface medsight uses to talk to a PACS, whichever transport serves it
(DICOMweb in `medsight.pacs.dicomweb`, DIMSE in `medsight.pacs.dimse`), and `open_pacs` to pick one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from medsight.pacs.config import PacsConfig

if TYPE_CHECKING:  # pydicom costs half a second to import: the CLI's start must not pay it
    from pydicom import Dataset

__all__ = ["LEVELS", "Level", "Pacs", "open_pacs"]

Level = Literal["study", "series", "instance"]
LEVELS: tuple[Level, ...] = ("study", "series", "instance")


class Pacs(Protocol):
    """What every transport does. Search answers are flat dicts keyed by DICOM keyword
    (``StudyInstanceUID``, ``SeriesInstanceUID``, ``SOPInstanceUID``, ``Modality``, ``StudyDate``,
    ``BodyPartExamined``, ``NumberOfSeriesRelatedInstances`` ...) with plain Python values; a
    failure raises `medsight.errors.PacsError` naming the server and the request."""

    config: PacsConfig

    def echo(self) -> None:
        """Check that the PACS answers (C-ECHO, or a cheap QIDO request)."""

    def search(self, level: Level, query: dict[str, str] | None = None, *,
               study: str | None = None, series: str | None = None,
               fields: Sequence[str] = (), limit: int | None = None) -> list[dict[str, Any]]:
        """Studies, series or instances matching `query` (DICOM keyword -> matching value, with
        ranges such as ``StudyDate=20200101-20211231``), within `study` / `series` when given."""

    def retrieve(self, study: str, series: str | None = None,
                 instance: str | None = None) -> Iterator[Dataset]:
        """The instances of a study, series or one instance, as datasets with their file meta."""

    def store(self, datasets: Sequence[Dataset]) -> None:
        """Store datasets in the PACS (STOW-RS or C-STORE); raises unless every one was accepted."""

    def close(self) -> None:
        """Release connections."""


def open_pacs(config: PacsConfig) -> Pacs:
    """The client for `config`: DICOMweb when it has a URL, DIMSE otherwise."""
    if config.transport == "dicomweb":
        from medsight.pacs.dicomweb import DicomWebPacs

        return DicomWebPacs(config)
    from medsight.pacs.dimse import DimsePacs

    return DimsePacs(config)
