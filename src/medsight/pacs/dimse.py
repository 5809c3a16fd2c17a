"""`DimsePacs`: the `Pacs` interface over DIMSE with pynetdicom (C-ECHO, C-FIND, C-MOVE to medsight's
own storage SCP or C-GET, C-STORE) for a PACS without DICOMweb; failures become `PacsError`s that
say what to check."""

from __future__ import annotations

import copy
import logging
import queue
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
from pydicom import Dataset, FileMetaDataset
from pydicom.datadict import dictionary_VR, keyword_dict
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.status import (
    GENERAL_STATUS,
    QR_FIND_SERVICE_CLASS_STATUS,
    QR_GET_SERVICE_CLASS_STATUS,
    QR_MOVE_SERVICE_CLASS_STATUS,
    STORAGE_SERVICE_CLASS_STATUS,
)

from medsight.errors import PacsError
from medsight.pacs.client import Level
from medsight.pacs.config import PacsConfig
from medsight.pacs.dicomweb import plain_dict
from medsight.pacs.query import at_level
from medsight.pacs.scp import StorageSCP

__all__ = ["RETURN_KEYS", "DimsePacs"]

log = logging.getLogger(__name__)

_LEVEL = {"study": "STUDY", "series": "SERIES", "instance": "IMAGE"}
# What a C-FIND asks for at each level besides the query's own keys and `fields`.
RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "study": ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber",
              "StudyID", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances", "PatientID", "PatientName"),
    "series": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
               "SeriesDescription", "BodyPartExamined", "SeriesDate",
               "NumberOfSeriesRelatedInstances"),
    "instance": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
                 "InstanceNumber", "Rows", "Columns", "NumberOfFrames"),
}
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# Offered for each SOP class a C-GET receives: uncompressed first (the PACS sends what it stores or
# decodes losslessly), then lossless compressions it may keep as stored.
_GET_SYNTAXES = [*_UNCOMPRESSED, DeflatedExplicitVRLittleEndian, JPEGLosslessSV1, JPEGLSLossless,
                 JPEG2000Lossless, RLELossless]
_MAX_CONTEXTS = 127  # PS3.8: odd ids 1..255, one of them for the query/retrieve model
_PENDING = (0xFF00, 0xFF01)
_IDENTIFYING = ("Patient", "OtherPatient", "IssuerOfPatient")  # values kept out of messages
_CANCELLED = 0xFE00


def _meaning(code: int, table: dict[int, tuple[str, str]]) -> str:
    category, text = table.get(code, GENERAL_STATUS.get(code, ("", "unknown status")))
    return f"0x{code:04X} {category + ': ' if category else ''}{text}"


def _identifier(values: dict[str, Any]) -> Dataset:
    """A C-FIND / C-MOVE identifier from {keyword: value} (empty value = a return key)."""
    ds = Dataset()
    for keyword, value in values.items():
        if keyword not in keyword_dict:
            raise PacsError(f"C-FIND: {keyword!r} is not a DICOM keyword")
        vr = dictionary_VR(keyword)
        if vr == "SQ":
            ds.add_new(keyword_dict[keyword], vr, [])
        else:
            ds.add_new(keyword_dict[keyword], vr, value if value not in (None, "") else None)
    return ds


class DimsePacs:
    """A PACS reached over DIMSE at ``config.host:config.port`` as ``config.ae_title``, medsight
    calling as ``config.calling_ae``. `retrieve` uses C-MOVE into medsight's own storage SCP
    (``config.scp_host:config.scp_port``, which the PACS must know under ``calling_ae``) when
    ``scp_port`` is set, else C-GET on the same association."""

    def __init__(self, config: PacsConfig) -> None:
        if config.ae_title is None or config.host is None or config.port is None:
            raise PacsError(f"{config.display}: DIMSE needs ae_title, host and port")
        self.config = config

    @property
    def _where(self) -> str:
        return f"{self.config.ae_title}@{self.config.host}:{self.config.port}"

    def _ae(self) -> AE:
        ae = AE(ae_title=self.config.calling_ae)
        t = self.config.timeout_s
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = t
        return ae

    @contextmanager
    def _association(self, request: str, contexts: Sequence[PresentationContext], *,
                     roles: Sequence[Any] = (), store: bool = False,
                     handlers: Sequence[tuple[Any, Callable[..., Any]]] = ()) -> Iterator[Association]:
        """An established association for `request` (released after; aborted when the caller raises
        or abandons it), or a `PacsError`; unless `store`, the first context (the service) must
        have been accepted."""
        ae = self._ae()
        ae.requested_contexts = list(contexts)
        connected: list[bool] = []
        opened = (evt.EVT_CONN_OPEN, lambda _event: connected.append(True))
        assoc = ae.associate(self.config.host, self.config.port, ae_title=self.config.ae_title,
                             ext_neg=list(roles) or None, evt_handlers=[opened, *handlers])
        if not assoc.is_established:
            offered = ", ".join(sorted({UID(cx.abstract_syntax).name for cx in contexts}))
            if not connected:
                why = (f"cannot connect; is the PACS up and listening on "
                       f"{self.config.host}:{self.config.port}, and does no firewall block it?")
            elif assoc.is_rejected:
                why = (f"rejected the association; is medsight's calling AE "
                       f"{self.config.calling_ae!r} known to it, and is {self.config.ae_title!r} "
                       "its AE title?")
            else:
                why = (f"aborted the association (does it support {offered}?); see the PACS's "
                       "log")
            raise PacsError(f"{self._where}: {request}: {why}")
        service = contexts[0].abstract_syntax if contexts else None
        if service is not None and not store and not any(
                cx.abstract_syntax == service for cx in assoc.accepted_contexts):
            assoc.release()
            raise PacsError(f"{self._where}: {request}: the PACS does not offer "
                            f"{UID(service).name}; check what the PACS supports")
        try:
            yield assoc
        except BaseException:  # an error, or a retrieve abandoned mid-way: do not wait for the PACS
            assoc.abort()
            raise
        if assoc.is_established:
            assoc.release()

    def _lost(self, request: str) -> PacsError:
        return PacsError(f"{self._where}: {request}: no answer (connection lost or no response "
                         f"within {self.config.timeout_s:g} s); raise timeout_s or check the PACS")

    def echo(self) -> None:
        """C-ECHO."""
        with self._association("C-ECHO", [build_context(Verification)]) as assoc:
            status = assoc.send_c_echo()
        if "Status" not in status:
            raise self._lost("C-ECHO")
        if status.Status != 0x0000:
            raise PacsError(f"{self._where}: C-ECHO answered "
                            f"{_meaning(status.Status, GENERAL_STATUS)}")

    def search(self, level: Level, query: dict[str, str] | None = None, *,
               study: str | None = None, series: str | None = None,
               fields: Sequence[str] = (), limit: int | None = None) -> list[dict[str, Any]]:
        """C-FIND (Study Root) at `level` within `study` / `series`, asking for `fields`, the
        query's keys and `RETURN_KEYS`; at most `limit` answers (the rest is cancelled)."""
        if level not in _LEVEL:
            raise PacsError(f"search level {level!r}: use study, series or instance")
        filters = at_level(query or {}, level)
        keys: dict[str, Any] = dict.fromkeys((*RETURN_KEYS[level], *fields), "")
        keys.update(filters)
        if study is not None:
            keys["StudyInstanceUID"] = study
        if series is not None and level != "study":
            keys["SeriesInstanceUID"] = series
        identifier = _identifier(keys)
        identifier.QueryRetrieveLevel = _LEVEL[level]
        within = f" in study {study}" if study else ""
        within += f" series {series}" if series else ""
        shown = {k: "..." if k.startswith(_IDENTIFYING) else v for k, v in filters.items()}
        request = f"C-FIND {level} {shown}{within}"
        model = StudyRootQueryRetrieveInformationModelFind
        answers: list[dict[str, Any]] = []
        with self._association(request, [build_context(model)]) as assoc:
            cx_id = next(cx.context_id for cx in assoc.accepted_contexts
                         if cx.abstract_syntax == model)
            final = None
            for status, answer in assoc.send_c_find(identifier, model):
                if "Status" not in status:
                    raise self._lost(request)
                if status.Status in _PENDING:
                    if limit is None or len(answers) < limit:
                        answers.append(self._plain(answer))
                        if limit is not None and len(answers) == limit:
                            assoc.send_c_cancel(1, cx_id)
                    continue
                final = status.Status
        if final not in (0x0000, _CANCELLED):
            raise PacsError(f"{self._where}: {request} answered "
                            f"{_meaning(final, QR_FIND_SERVICE_CLASS_STATUS)}; see the PACS's log")
        return answers

    @staticmethod
    def _plain(answer: Dataset | None) -> dict[str, Any]:
        out = plain_dict(answer) if answer is not None else {}
        for keyword in ("QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"):
            out.pop(keyword, None)
        return out

    def retrieve(self, study: str, series: str | None = None,
                 instance: str | None = None) -> Iterator[Dataset]:
        """C-MOVE into medsight's SCP (with ``scp_port``) or C-GET: each instance of the study /
        series, or the one instance, yielded as it arrives, with its file meta."""
        if instance is not None and series is None:
            raise PacsError("retrieving one instance needs its series UID too")
        level = "instance" if instance else "series" if series else "study"
        keys: dict[str, Any] = {"StudyInstanceUID": study}
        if series:
            keys["SeriesInstanceUID"] = series
        if instance:
            keys["SOPInstanceUID"] = instance
        identifier = _identifier(keys)
        identifier.QueryRetrieveLevel = _LEVEL[level]
        what = " ".join(f"{k.removesuffix('InstanceUID').lower() or 'instance'} {v}"
                        for k, v in keys.items())
        if self.config.scp_port is not None:
            yield from self._move(identifier, f"C-MOVE {what} to {self.config.calling_ae}")
        else:
            yield from self._get(identifier, study, series, instance, f"C-GET {what}")

    def _check_retrieve(self, request: str, status: Dataset | None,
                        table: dict[int, tuple[str, str]]) -> None:
        """Raise unless the final C-MOVE / C-GET status says every sub-operation completed."""
        if status is None or "Status" not in status:
            raise self._lost(request)
        failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
        warned = int(status.get("NumberOfWarningSuboperations", 0) or 0)
        if status.Status == 0x0000 and not failed and not warned:
            return
        done = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
        hint = "see the PACS's log"
        if request.startswith("C-MOVE"):
            hint = (f"is {self.config.calling_ae!r} registered in the PACS as a modality at "
                    f"{self.config.scp_host}:{self.config.scp_port}, and do the UIDs exist? "
                    "See the PACS's log")
        counts = (f"{failed} of {failed + warned + done} instance(s) failed, {warned} with "
                  "warnings; " if failed or warned else "")
        raise PacsError(f"{self._where}: {request}: {counts}answered "
                        f"{_meaning(status.Status, table)}; {hint}")

    def _move(self, identifier: Dataset, request: str) -> Iterator[Dataset]:
        arrived: queue.Queue[Path] = queue.Queue()
        model = StudyRootQueryRetrieveInformationModelMove
        with tempfile.TemporaryDirectory(prefix="medsight-move-") as tmp:
            scp = StorageSCP(self.config.calling_ae, self.config.scp_host, self.config.scp_port or 0,
                             tmp, on_instance=lambda path, _header: arrived.put(path))
            with scp, self._association(request, [build_context(model)]) as assoc:
                final = None
                for status, _ in assoc.send_c_move(identifier, self.config.calling_ae, model):
                    yield from _drain(arrived)
                    final = status
                    if "Status" not in status or status.Status not in _PENDING:
                        break
            yield from _drain(arrived)
        self._check_retrieve(request, final, QR_MOVE_SERVICE_CLASS_STATUS)

    def _get(self, identifier: Dataset, study: str, series: str | None, instance: str | None,
             request: str) -> Iterator[Dataset]:
        found = self.search("instance", {"SOPInstanceUID": instance} if instance else None,
                            study=study, series=series, fields=("SOPClassUID",))
        if not found:
            raise PacsError(f"{self._where}: {request}: the PACS lists no instances for it; check "
                            "the UIDs")
        classes = sorted({str(a["SOPClassUID"]) for a in found if a.get("SOPClassUID")})
        if len(classes) < len({a.get("SOPClassUID") for a in found}):  # some answers lack it
            classes = sorted({*classes, *(cx.abstract_syntax for cx in StoragePresentationContexts)})
        if len(classes) > _MAX_CONTEXTS:
            raise PacsError(f"{self._where}: {request}: {len(classes)} SOP classes do not fit in "
                            "one association; set scp_port to retrieve with C-MOVE")
        arrived: queue.Queue[Dataset] = queue.Queue()

        def on_store(event: evt.Event) -> int:
            ds = event.dataset
            ds.file_meta = event.file_meta
            arrived.put(ds)
            return 0x0000

        model = StudyRootQueryRetrieveInformationModelGet
        contexts = [build_context(model)] + [build_context(c, _GET_SYNTAXES) for c in classes]
        roles = [build_role(c, scp_role=True) for c in classes]
        with self._association(request, contexts, roles=roles,
                               handlers=[(evt.EVT_C_STORE, on_store)]) as assoc:
            final = None
            for status, _ in assoc.send_c_get(identifier, model):
                yield from _drain(arrived)
                final = status
                if "Status" not in status or status.Status not in _PENDING:
                    break
        yield from _drain(arrived)
        self._check_retrieve(request, final, QR_GET_SERVICE_CLASS_STATUS)

    def store(self, datasets: Sequence[Dataset]) -> None:
        """C-STORE, proposing each dataset's SOP class with its transfer syntax (uncompressed ones
        may be sent in either little-endian syntax); raises naming every instance refused."""
        prepared = [_with_syntax(ds) for ds in datasets]
        groups: dict[tuple[str, str], list[Dataset]] = defaultdict(list)
        for ds in prepared:
            groups[(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))].append(ds)
        keys = list(groups)
        failed: list[str] = []
        for start in range(0, len(keys), _MAX_CONTEXTS):
            chunk = keys[start:start + _MAX_CONTEXTS]
            contexts = [build_context(sop, _syntaxes(UID(ts))) for sop, ts in chunk]
            request = f"C-STORE of {sum(len(groups[k]) for k in chunk)} instance(s)"
            with self._association(request, contexts, store=True) as assoc:
                for key in chunk:
                    for ds in groups[key]:
                        failed.extend(self._store_one(assoc, ds, request))
        if failed:
            raise PacsError(f"{self._where}: C-STORE refused {len(failed)} of {len(prepared)} "
                            f"instance(s): {', '.join(failed)}; see the PACS's log")
        log.info("stored %d instance(s) in %s", len(prepared), self._where)

    def _store_one(self, assoc: Association, ds: Dataset, request: str) -> list[str]:
        uid = str(ds.SOPInstanceUID)
        try:
            status = assoc.send_c_store(ds)
        except ValueError as exc:  # no accepted context for its SOP class / transfer syntax
            return [f"{uid} (not accepted: SOP class {UID(str(ds.SOPClassUID)).name} in "
                    f"{ds.file_meta.TransferSyntaxUID.name}: {exc})"]
        if "Status" not in status:
            raise self._lost(request)
        code = int(status.Status)
        if code == 0x0000:
            return []
        category = STORAGE_SERVICE_CLASS_STATUS.get(code, ("",))[0]
        if category == "Warning":
            log.warning("%s: C-STORE of an instance answered %s", self._where,
                        _meaning(code, STORAGE_SERVICE_CLASS_STATUS))
            return []
        return [f"{uid} ({_meaning(code, STORAGE_SERVICE_CLASS_STATUS)})"]

    def close(self) -> None:
        """Nothing held between requests: each opens and releases its own association."""


def _drain(arrived: queue.Queue[Any]) -> Iterator[Dataset]:
    """What arrived so far: datasets, or paths read as datasets."""
    while True:
        try:
            item = arrived.get_nowait()
        except queue.Empty:
            return
        yield pydicom.dcmread(item) if isinstance(item, Path) else item


def _with_syntax(ds: Dataset) -> Dataset:
    """`ds` with a transfer syntax it can be sent in: explicit VR little endian file meta when it
    has none, and (on a shallow copy) an encoding that agrees with it, as after ``ds.compress()``
    of a dataset read as implicit VR."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        out = copy.copy(ds)
        out.file_meta = copy.deepcopy(meta) if meta is not None else FileMetaDataset()
        out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        return out
    ts = UID(str(meta.TransferSyntaxUID))
    wanted = (ts.is_implicit_VR, ts.is_little_endian)
    if None not in ds.original_encoding and ds.original_encoding != wanted:
        out = copy.copy(ds)
        out.set_original_encoding(*wanted, ds.original_character_set)
        for _ in out.iterall():  # raw implicit-VR elements get their VRs before re-encoding
            pass
        return out
    return ds


def _syntaxes(ts: UID) -> list[UID]:
    """Offered for a dataset in `ts`: `ts`, and for an uncompressed one both little-endian ones."""
    return list(dict.fromkeys([ts, *_UNCOMPRESSED])) if not ts.is_compressed else [ts]
