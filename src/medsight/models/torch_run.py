"""What every network estimator shares about *running* a training job: run-setting checks, the loop
configuration, resume fingerprints, the device copy of a fitted model, input-channel matching and
reloading the saved preprocessing. `TorchClassifier` and `TorchDetector` mix it in, so a fix here
reaches both."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import nn

from medsight.errors import BundleIntegrityError, InvalidConfig, InvalidDataset
from medsight.jsonable import jsonable
from medsight.train.data import CACHE_DTYPES
from medsight.train.device import PRECISIONS, RunSettings
from medsight.train.loop import LoopConfig
from medsight.train.optim import OPTIMIZERS
from medsight.train.schedules import parse_schedule

MODEL_FILE = "model.pt"
STATE_FILE = "torch.json"
PREPROCESS_FILE = "preprocess.json"


class TorchRun:
    """Mixin over an estimator's stored constructor arguments (optimizer, lr, epochs, device,
    checkpoint_dir, ...); see `TorchClassifier` for their meaning."""

    def _check_run_params(self: Any) -> None:
        """InvalidConfig naming the bad run setting (cache, optimizer, precision, schedule, loop)."""
        if self.cache_dtype not in CACHE_DTYPES:
            raise InvalidConfig(f"cache_dtype must be one of {list(CACHE_DTYPES)}")
        if self.optimizer not in OPTIMIZERS:
            raise InvalidConfig(f"unknown optimizer {self.optimizer!r}; known: {list(OPTIMIZERS)}")
        if self.precision not in PRECISIONS:
            raise InvalidConfig(f"precision {self.precision!r} is not one of {list(PRECISIONS)}")
        parse_schedule(self.schedule)
        LoopConfig(epochs=self.epochs, batch_size=self.batch_size, patience=self.patience,
                   checkpoint_dir=self._checkpoint_dir(), resume=self.resume)

    def _checkpoint_dir(self: Any) -> str | None:
        return None if self.checkpoint_dir is None else str(self.checkpoint_dir)

    def _settings(self: Any) -> RunSettings:
        return RunSettings.create(self.device, self.precision, self.threads, self.deterministic,
                                  self.channels_last)

    def _eval_batch(self: Any) -> int:
        return int(self.eval_batch_size or 2 * self.batch_size)

    def _loop_config(self: Any, checkpoint_dir: str | None, fingerprint: str) -> LoopConfig:
        return LoopConfig(
            epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
            momentum=self.momentum, weight_decay=self.weight_decay, nesterov=self.nesterov,
            schedule=self.schedule, monitor=self.monitor, patience=self.patience,
            grad_clip=self.grad_clip, eval_batch_size=self._eval_batch(),
            num_workers=self.num_workers, seed=self.seed, checkpoint_dir=checkpoint_dir,
            resume=self.resume, fingerprint=fingerprint,
        )

    def _run_fingerprint(self: Any, lines: Iterable[str]) -> str:
        """What a resumed run must share with the interrupted one: the training parameters and
        the data (one line per record, e.g. ref and target)."""
        h = hashlib.sha256()
        params = {k: v for k, v in self.get_params().items() if k not in self._not_training()}
        h.update(json.dumps(jsonable(params), sort_keys=True, default=str).encode())
        for line in lines:
            h.update(f"{line}\n".encode())
        return h.hexdigest()

    def _network_channels(self: Any, data_channels: int) -> int:
        """Channels the network takes: the data's, or ``in_channels`` when grey data is repeated."""
        want = self.in_channels
        if want is None or want == data_channels:
            return data_channels
        if data_channels == 1 and want > 1:
            return int(want)
        raise InvalidDataset(
            f"the images have {data_channels} channels after preprocessing but in_channels="
            f"{want}; use a to_channels preprocessing step or in_channels=None"
        )

    def _device_model(self: Any, settings: RunSettings, spatial: int) -> nn.Module:
        """The fitted model on the run's device: a copy unless it is already there (the CPU), so
        concurrent predictions never move or re-layout the shared ``model_``."""
        if settings.device.type == "cpu" and settings.memory_format(spatial) is None:
            return self.model_
        return settings.prepare_model(copy.deepcopy(self.model_), spatial)

    def _load_saved_preprocess(self: Any, directory: Path, what: str) -> dict[str, Any]:
        """Check the saved files are there, reload ``preprocess_`` (refusing an edited chain) and
        return the saved state (``torch.json``)."""
        from medsight.preprocess import Preprocess

        for name in (MODEL_FILE, STATE_FILE, PREPROCESS_FILE):
            if not (directory / name).is_file():
                raise BundleIntegrityError(f"{directory}: missing {name} of {what}")
        state = json.loads((directory / STATE_FILE).read_text())
        self.preprocess_ = Preprocess.from_json((directory / PREPROCESS_FILE).read_text(),
                                                base_dir=directory)
        if self.preprocess_.fingerprint() != state["preprocess_fingerprint"]:
            raise BundleIntegrityError(
                f"{directory}: {PREPROCESS_FILE} does not match the fingerprint recorded at save "
                "time; the preprocessing chain was edited"
            )
        return state
