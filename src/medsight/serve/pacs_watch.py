"""The PACS watcher inside the service: its models run through the service's own path (decode
workers, de-identified image store, batcher, prediction records with a PACS `source`) as the
`pacs-watcher` account, in a background thread the app starts and stops."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import zipfile
from pathlib import Path
from typing import Any

from medsight.deploy.prediction import Prediction
from medsight.deploy.predictor import Predictor
from medsight.pacs.client import Pacs, open_pacs
from medsight.pacs.scp import StorageSCP
from medsight.pacs.watch import WATCHER_USER, Watcher
from medsight.pacs.watch_config import WatchConfig
from medsight.pacs.watch_receive import ReceivedPacs
from medsight.serve.db.pacs_state import PacsState
from medsight.serve.service import Service
from medsight.serve.upload_worker import UploadJob

__all__ = ["PacsWatchThread", "ServiceRunner", "service_watcher"]

log = logging.getLogger(__name__)


def _zip(files: list[bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for k, data in enumerate(files):
            z.writestr(f"{k:05d}.dcm", data)
    return buf.getvalue()


class ServiceRunner:
    """`ModelRunner` on a `Service`: predictions are stored like uploads, by `pacs-watcher`."""

    def __init__(self, service: Service) -> None:
        self.service = service
        user = service.store.get_user(WATCHER_USER)
        self.user = user if user is not None else service.store.add_user(WATCHER_USER, "clinician")

    def predictor(self, model: str) -> Predictor:
        return self.service.model(model).predictor

    def predict(self, model: str, data: bytes | list[bytes], source: dict[str, Any]
                ) -> tuple[Prediction, str | None]:
        payload = _zip(data) if isinstance(data, list) else data
        view = asyncio.run(self.service.predict(self.user, payload, model, "pacs.predict", source))
        path = source.get("sop_uid") or source["series_uid"]
        return Prediction.from_dict({**view, "path": path}), view["id"]

    def explain(self, model: str, data: bytes | list[bytes]) -> Prediction:
        served = self.service.model(model)
        s = self.service
        payload = _zip(data) if isinstance(data, list) else data
        job = UploadJob(served.predictor.plan, payload, s._deid_secret, s.settings.max_pixels,
                        keep_image=True)
        upload = asyncio.run(s._decode(job))  # the decode workers, as for an upload
        return served.predictor.finish([upload.prepared], heatmap=True)[0]


def service_watcher(service: Service, config: WatchConfig) -> Watcher:
    """A watcher of `config`'s PACS whose models are the service's (each must be served). With
    `receive:` it watches what medsight's storage SCP receives (into the data folder's
    ``pacs-received/``) instead of searching the PACS; results still go to the PACS."""
    for rule in config.models:
        service.model(rule.model)  # an unknown model stops the start with the served names
    pacs: Pacs = open_pacs(config.pacs)
    if config.receive is not None:
        r = config.receive
        folder = service.settings.data_dir / "pacs-received"
        scp = StorageSCP(r.ae_title, r.host, r.port, folder, allowed_aes=r.allowed_aes).start()
        pacs = ReceivedPacs(pacs, folder, scp)
    return Watcher(pacs, config, PacsState(service.store), ServiceRunner(service))


class PacsWatchThread:
    """Runs a watcher's `run_forever` in a daemon thread; `stop` ends it after the poll in flight.

    On a shared database (PostgreSQL replicas) only the replica holding the watch's leader lock
    polls; the others stand by and one of them takes over at its next poll once that replica
    stops or dies. A replica that loses its database connection mid-poll finishes that poll."""

    def __init__(self, service: Service, config_path: Path) -> None:
        self.watcher = service_watcher(service, WatchConfig.from_yaml(config_path))
        self.lock = service.store.leader_lock(f"pacs-watch {self.watcher.name}")
        self.leading = self.lock is None
        self._stop = threading.Event()
        may_poll = self._may_poll if self.lock is not None else None
        self._thread = threading.Thread(target=self.watcher.run_forever,
                                        args=(self._stop, may_poll), name="pacs-watcher",
                                        daemon=True)

    def _may_poll(self) -> bool:
        assert self.lock is not None
        held = self.lock.held()
        if held != self.leading:
            log.info("PACS %s: %s", self.watcher.name, "this replica watches it now" if held else
                     "another replica watches it; this one stands by")
        self.leading = held
        return held

    def start(self) -> None:
        self._thread.start()
        log.info("watching PACS %s every %.0f s%s", self.watcher.name,
                 self.watcher.config.watch.poll_s,
                 "" if self.lock is None else " (on the replica holding its lock)")

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        if self.lock is not None and not self._thread.is_alive():  # else it ends with the process
            self.lock.release()
        self.watcher.pacs.close()
