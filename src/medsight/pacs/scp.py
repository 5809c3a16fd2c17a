"""`StorageSCP`: medsight's own DICOM storage SCP (pynetdicom) in a background thread, the C-MOVE
destination and the receiver of C-STORE pushes; each instance is written atomically under
``out_dir/<Study>/<Series>/<SOP>.dcm`` (UIDs checked, never trusted as paths) before it is acknowledged."""

from __future__ import annotations

import errno
import logging
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from medsight.atomic import write_atomic
from medsight.errors import PacsError

__all__ = ["MAX_INSTANCE_BYTES", "InstanceCallback", "StorageSCP", "is_uid"]

log = logging.getLogger(__name__)

MAX_INSTANCE_BYTES = 2 * 1024**3
InstanceCallback = Callable[[Path, Dataset], Any]

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# C-STORE statuses (PS3.4 B.2.3)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILED = 0xC001
_P_DATA_TF = 0x04


def is_uid(value: object) -> bool:
    """True for a DICOM UID: digits and dots, at most 64 characters (so it is a safe file name)."""
    text = str(value or "")
    return len(text) <= 64 and _UID.match(text) is not None


class StorageSCP:
    """A storage SCP for every storage SOP class and transfer syntax pynetdicom knows (compressed
    ones included), bound to `host`:`port` (loopback by default; port 0 picks a free one, see
    `port`). Each instance is written to ``out_dir/<StudyUID>/<SeriesUID>/<SOPUID>.dcm`` as sent
    (no re-encoding), fsynced, then ``on_instance(path, header)`` is called with the dataset
    without its pixel data; only then is 0x0000 answered. A failing callback is logged and answered
    0xC001. `allowed_aes` (calling AE titles) rejects others at association; `max_instance_bytes`
    aborts an association whose instance grows beyond it, `max_pdu` bounds each PDU."""

    def __init__(self, ae_title: str, host: str = "127.0.0.1", port: int = 0,
                 out_dir: str | Path = ".", on_instance: InstanceCallback | None = None, *,
                 allowed_aes: Iterable[str] | None = None,
                 max_instance_bytes: int = MAX_INSTANCE_BYTES, max_pdu: int = 1024 * 1024) -> None:
        self.ae_title, self.host, self.requested_port = ae_title, host, port
        self.out_dir = Path(out_dir).expanduser().resolve()
        self.on_instance = on_instance
        self.max_instance_bytes = max_instance_bytes
        self.received = 0
        self.refused = 0
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = max_pdu
        self._ae.require_calling_aet = [a.strip() for a in allowed_aes or ()]
        for cx in AllStoragePresentationContexts:
            self._ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self._ae.add_supported_context(Verification)
        self._server: ThreadedAssociationServer | None = None
        self._pending: dict[int, int] = {}  # id(association) -> P-DATA bytes since its last C-STORE
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The port listened on (the one picked when started with port 0)."""
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    def start(self) -> StorageSCP:
        """Listen in a background thread; `PacsError` naming the port and the reason if it cannot."""
        if self._server is not None:
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_DATA_RECV, self._on_data),
                    (evt.EVT_CONN_CLOSE, self._on_close)]
        try:
            self._server = self._ae.start_server((self.host, self.requested_port), block=False,
                                                 evt_handlers=handlers)
        except OSError as exc:
            why = {errno.EADDRINUSE: "the port is in use (another SCP, or a second medsight?)",
                   errno.EACCES: "ports below 1024 need privileges; use scp_port >= 1024",
                   errno.EADDRNOTAVAIL: "the address is not one of this machine's"}.get(
                       exc.errno, exc.strerror or str(exc))
            raise PacsError(f"medsight's storage SCP {self.ae_title} cannot listen on "
                            f"{self.host}:{self.requested_port}: {why}; set scp_port / scp_host "
                            "to a free port on this machine (and register it in the PACS)") from None
        log.info("storage SCP %s listening on %s:%d", self.ae_title, self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop listening and close open associations."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> StorageSCP:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def path_for(self, study: str, series: str, sop: str) -> Path:
        """Where an instance is written; `PacsError` unless all three are UIDs inside out_dir."""
        for what, uid in (("StudyInstanceUID", study), ("SeriesInstanceUID", series),
                          ("SOPInstanceUID", sop)):
            if not is_uid(uid):
                raise PacsError(f"refused an instance whose {what} {str(uid)[:80]!r} is not a UID")
        path = (self.out_dir / study / series / f"{sop}.dcm").resolve()
        if not path.is_relative_to(self.out_dir):  # cannot happen with digits and dots; kept as a guard
            raise PacsError(f"refused an instance that would be written outside {self.out_dir}")
        return path

    # -- pynetdicom event handlers (run in the association's thread) ----------------------------

    def _on_data(self, event: evt.Event) -> None:
        """Count the P-DATA bytes of the instance in transit; abort past `max_instance_bytes`."""
        data: bytes = event.data
        if not data or data[0] != _P_DATA_TF:
            return
        key = id(event.assoc)
        with self._lock:
            self._pending[key] = total = self._pending.get(key, 0) + len(data)
        if total > self.max_instance_bytes >= total - len(data):  # crossed now: abort once
            log.warning("storage SCP: aborting the association from %s, an instance exceeds %d bytes",
                        event.assoc.requestor.ae_title, self.max_instance_bytes)
            self._count("refused")
            event.assoc.abort(block=False)

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def _on_close(self, event: evt.Event) -> None:
        with self._lock:
            self._pending.pop(id(event.assoc), None)

    def _on_store(self, event: evt.Event) -> int:
        with self._lock:
            self._pending.pop(id(event.assoc), None)
        try:
            return self._store(event)
        except Exception:  # never let one instance kill the SCP
            log.exception("storage SCP: failed to store an instance")
            self._count("refused")
            return PROCESSING_FAILED

    def _store(self, event: evt.Event) -> int:
        try:
            ds = event.dataset
            study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
            sop = str(event.request.AffectedSOPInstanceUID)
        except Exception as exc:
            log.warning("storage SCP: refused an undecodable instance (%s)", exc.__class__.__name__)
            self._count("refused")
            return CANNOT_UNDERSTAND
        if str(ds.get("SOPInstanceUID", sop)) != sop:
            log.warning("storage SCP: refused an instance whose SOPInstanceUID differs from the "
                        "request's")
            self._count("refused")
            return CANNOT_UNDERSTAND
        try:
            path = self.path_for(study, series, sop)
        except PacsError as exc:
            log.warning("storage SCP: %s", exc)
            self._count("refused")
            return CANNOT_UNDERSTAND
        try:
            write_atomic(path, event.encoded_dataset(include_meta=True))
        except OSError as exc:
            log.error("storage SCP: cannot write into %s: %s", self.out_dir, exc.strerror)
            self._count("refused")
            return OUT_OF_RESOURCES
        self._count("received")
        if self.on_instance is not None:
            ds.file_meta = event.file_meta
            ds.pop("PixelData", None)
            try:
                self.on_instance(path, ds)
            except Exception:
                log.exception("storage SCP: on_instance failed for a received instance")
                self._count("refused")
                return PROCESSING_FAILED
        return SUCCESS
