"""`DicomWebPacs`: the `Pacs` interface over DICOMweb (QIDO-RS search, WADO-RS retrieve, STOW-RS
store) with `dicomweb-client`; every HTTP failure becomes a `PacsError` saying what to check."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import requests
from dicomweb_client import DICOMwebClient
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from medsight.errors import PacsError
from medsight.pacs.client import Level
from medsight.pacs.config import PacsConfig
from medsight.pacs.query import at_level

__all__ = ["DicomWebPacs", "plain_dict"]

log = logging.getLogger(__name__)

_HINTS = {
    401: "check username and password_file (or $MEDSIGHT_PACS_PASSWORD)",
    403: "the user lacks the rights for this request",
    404: "check the DICOMweb root in url (e.g. http://host:8042/dicom-web) and the UIDs",
    409: "the PACS refused some instances (see the reasons)",
}


def _plain(value: Any) -> Any:
    if isinstance(value, Dataset):
        return plain_dict(value)
    if isinstance(value, list | MultiValue):
        return [_plain(v) for v in value]
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def plain_dict(ds: Dataset) -> dict[str, Any]:
    """A dataset as {keyword: plain value} (str, int, float, lists; None when empty; sequences as
    lists of dicts); private and unknown elements are left out."""
    out: dict[str, Any] = {}
    for elem in ds:
        if not elem.keyword:
            continue
        value = elem.value
        out[elem.keyword] = None if value is None or value == "" else _plain(value)
    return out


def _failed_sops(response: Dataset) -> list[str]:
    """'UID (reason 0xC000)' for each entry of a STOW-RS response's FailedSOPSequence."""
    failed = []
    for item in response.get("FailedSOPSequence", []) or []:
        reason = item.get("FailureReason")
        code = f"0x{int(reason):04X}" if reason is not None else "no reason given"
        failed.append(f"{item.get('ReferencedSOPInstanceUID', '?')} (reason {code})")
    return failed


class DicomWebPacs:
    """A PACS reached over DICOMweb at ``config.url`` with HTTP basic auth when a user is set."""

    def __init__(self, config: PacsConfig) -> None:
        if config.url is None:
            raise PacsError(f"{config.display}: DICOMweb needs a url")
        self.config = config
        session = requests.Session()
        if config.username is not None:
            session.auth = (config.username, config.password() or "")
        session.verify = str(config.ca_bundle) if config.ca_bundle else True
        self._session = session
        self._client = DICOMwebClient(config.url, session=session, timeout=config.timeout_s)
        self._client.set_http_retry_params(retry=False)

    @contextmanager
    def _errors(self, request: str) -> Iterator[None]:
        """Turn what `requests` / the client raise during `request` into a `PacsError`."""
        where = self.config.display
        try:
            yield
        except requests.HTTPError as exc:
            response = exc.response
            status = response.status_code if response is not None else "?"
            reason = response.reason if response is not None else ""
            detail = ""
            if request.startswith("STOW") and response is not None and response.content:
                try:
                    failed = _failed_sops(Dataset.from_json(response.json()))
                except (ValueError, TypeError, KeyError):
                    failed = []
                detail = f"; failed: {', '.join(failed)}" if failed else ""
            hint = _HINTS.get(status, "see the PACS's log") if isinstance(status, int) else ""
            raise PacsError(f"{where}: {request} answered HTTP {status} {reason}{detail}; "
                            f"{hint}") from None
        except requests.exceptions.SSLError as exc:
            raise PacsError(f"{where}: {request}: TLS failed ({exc.__class__.__name__}); check "
                            "ca_bundle and the certificate of the PACS") from None
        except requests.ConnectionError:
            raise PacsError(f"{where}: {request}: cannot connect; is the PACS running at "
                            f"{where}?") from None
        except requests.Timeout:
            raise PacsError(f"{where}: {request}: no answer within {self.config.timeout_s:g} s; "
                            "raise timeout_s or check the PACS") from None
        except (ValueError, KeyError) as exc:  # malformed JSON / multipart answers
            raise PacsError(f"{where}: {request}: unusable answer ({exc}); is url a DICOMweb "
                            "root?") from None

    def echo(self) -> None:
        """A QIDO studies query with limit=1: the PACS answers, and lets us in."""
        with self._errors("QIDO-RS search for studies (echo)"):
            self._client.search_for_studies(limit=1)

    def search(self, level: Level, query: dict[str, str] | None = None, *,
               study: str | None = None, series: str | None = None,
               fields: Sequence[str] = (), limit: int | None = None) -> list[dict[str, Any]]:
        """QIDO-RS at `level` (within `study` / `series`). One request: dicomweb-client's paging
        (``get_remaining``) never ends on Orthanc with ``ModalitiesInStudy``, which ignores offset."""
        filters = at_level(query or {}, level)
        kwargs: dict[str, Any] = {"search_filters": filters or None, "fields": list(fields) or None,
                                  "limit": limit}
        within = f" in study {study}" if study else ""
        within += f" series {series}" if series else ""
        with self._errors(f"QIDO-RS search for {level} {filters}{within}"):
            if level == "study":
                answers = self._client.search_for_studies(**kwargs)
            elif level == "series":
                answers = self._client.search_for_series(study_instance_uid=study, **kwargs)
            elif level == "instance":
                answers = self._client.search_for_instances(
                    study_instance_uid=study, series_instance_uid=series, **kwargs)
            else:
                raise PacsError(f"search level {level!r}: use study, series or instance")
            return [plain_dict(Dataset.from_json(a)) for a in answers]

    def retrieve(self, study: str, series: str | None = None,
                 instance: str | None = None) -> Iterator[Dataset]:
        """WADO-RS: the instances of the study / series, or the one instance, streamed."""
        if instance is not None and series is None:
            raise PacsError("retrieving one instance needs its series UID too")
        what = f"study {study}" + (f" series {series}" if series else "") + (
            f" instance {instance}" if instance else "")
        with self._errors(f"WADO-RS retrieve {what}"):
            if instance is not None:
                yield self._client.retrieve_instance(study, series, instance)
            elif series is not None:
                yield from self._client.iter_series(study, series)
            else:
                yield from self._client.iter_study(study)

    def store(self, datasets: Sequence[Dataset]) -> None:
        """STOW-RS; raises `PacsError` naming each instance the PACS did not accept."""
        if not datasets:
            return
        uids = [str(ds.SOPInstanceUID) for ds in datasets]
        with self._errors(f"STOW-RS store of {len(uids)} instance(s)"):
            response = self._client.store_instances([_with_preamble(ds) for ds in datasets])
        failed = _failed_sops(response)
        accepted = {str(item.get("ReferencedSOPInstanceUID", ""))
                    for item in response.get("ReferencedSOPSequence", []) or []}
        missing = [u for u in uids if u not in accepted and not any(f.startswith(u) for f in failed)]
        if failed or missing:
            parts = [f"failed: {', '.join(failed)}"] if failed else []
            if missing:
                parts.append(f"not confirmed: {', '.join(missing)}")
            raise PacsError(f"{self.config.display}: STOW-RS store refused {len(failed) + len(missing)}"
                            f" of {len(uids)} instance(s) ({'; '.join(parts)}); see the PACS's log")
        log.info("stored %d instance(s) in %s", len(uids), self.config.display)

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()


def _with_preamble(ds: Dataset) -> Dataset:
    """`ds` as a file with its DICM preamble. A dataset built in memory (highdicom's) has none, and
    dicomweb-client then sends it without the header: Orthanc keeps such a file as sent, and its
    WADO-RS answer for it no longer parses. A new dataset over the same elements: the caller's
    is left alone."""
    if getattr(ds, "preamble", None) is not None:
        return ds
    out = Dataset(ds)
    out.file_meta = ds.file_meta
    out.preamble = b"\0" * 128
    return out
