"""A neural network detector under the estimator protocol: `TorchDetector` (kind ``"detector"``).

`TorchDetector` trains a registered `DetectorNetwork` (CenterNet on a small backbone for CPUs,
torchvision RetinaNet / Faster R-CNN for GPUs) on a detection `Dataset` with the
`medsight.train` loop: the saved `Preprocess` chain turns records into model inputs once, boxes
follow the geometry steps onto that grid (`boxes_forward`), batches get box-moving augmentation
(`medsight.train.augment.BoxAugment`), validation COCO mAP@0.5 picks the best epoch, and
checkpoints make a killed run resume to the same weights. The score threshold used for counts
and display is chosen on the validation split as the one maximising the mean per-class F1 at
IoU 0.5 (`score_threshold` fixes it instead).

`predict_detections` gives per image every detection scoring at least ``min_score`` (at most
``max_detections``) in the ORIGINAL image's pixels (`boxes_back` through the recorded maps);
`predict` the per-class counts at ``score_threshold_`` as an (N, n_classes) array, so generic
code has an array; `predict_proba` is refused (a detector gives boxes, not probabilities).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from medsight.boxes import Detections
from medsight.data.dataset import Dataset, Task
from medsight.errors import BundleIntegrityError, InvalidConfig, InvalidDataset
from medsight.jsonable import jsonable
from medsight.models.base import MedsightEstimator
from medsight.models.detector_inference import (
    DetectionView,
    DetectorModel,
    Prepared,
    detect_batches,
    iter_prepared,
    to_original,
)
from medsight.models.torch_run import MODEL_FILE, PREPROCESS_FILE, STATE_FILE, TorchRun
from medsight.preprocess.chain import plain_spec
from medsight.train.augment import BoxAugment, BoxAugmentConfig
from medsight.train.detection_data import (
    DetectionImages,
    DetectionValidation,
    build_detection_images,
    check_detection_cache,
    detect_cached,
    f1_threshold,
)
from medsight.train.detection_losses import DetectionObjective
from medsight.train.device import RunSettings, seed_everything
from medsight.train.loop import Callback, Trainer, TrainEvent

log = logging.getLogger(__name__)

DEFAULT_SCORE_THRESHOLD = 0.3  # used when there is no validation split to choose one on
_MONITORS = ("map50", "map50_95")


class TorchDetector(TorchRun, MedsightEstimator):
    """A neural network detector (see the module docstring).

    Parameters
    ----------
    network, network_params: a registered detector network (``centernet_small``,
        ``centernet_resnet18``, ``retinanet_fpn``, ``faster_rcnn_fpn``) and its options (a local
        ``weights`` / ``backbone_weights`` file, widths ...). in_channels: channels the network
        takes (None: those of the data; >1 with grey data repeats the channel).
    preprocess: the preprocessing chain (config list or `Preprocess` JSON dict); geometry steps
        must record their index maps (resize, pad_to, center_crop, crop do) so boxes follow.
    normalize_input: standardise inputs with the training images' per-channel mean and std
        inside the model.
    optimizer, lr, momentum, weight_decay, nesterov, schedule, epochs, batch_size, grad_clip:
        optimisation, as `TorchClassifier`.
    augment: a `BoxAugmentConfig` preset (``"detection"``, ``"detection_chest"``) or mapping;
        None: none.
    monitor: ``"map50"`` or ``"map50_95"`` on the validation split picks the best epoch;
        patience: early stopping after that many epochs without improvement.
    max_detections: boxes kept per image (K of the ONNX outputs); min_score: the floor below
        which detections are not returned; score_threshold: the threshold for counts and
        display (None: chosen on validation, see the module docstring).
    checkpoint_dir, resume, seed, deterministic, device, precision, channels_last, threads,
        num_workers, load_workers, cache_dtype, eval_batch_size, progress: as `TorchClassifier`
        (the run-only ones are not saved with the model).
    cache: where the preprocessed training images live: "memory" (default) or "disk" (the
        memory-mapped cache of `medsight.train.disk_cache`, rows with their boxes, reused by later
        runs and folds); cache_dir: its folder (None: $XDG_CACHE_HOME/medsight/images).

    Learned attributes: ``model_`` (`DetectorModel`, CPU), ``preprocess_``, ``score_threshold_``
    (also ``threshold_``), ``val_f1_`` (mean per-class F1 there), ``history_``, ``best_epoch_``,
    ``best_metric_``, ``stopped_early_``, ``resumed_from_``, ``input_shape_``, ``skipped_``,
    ``boxes_lost_`` (training boxes too thin on the model grid).
    """

    kind: ClassVar[str] = "detector"
    run_only: ClassVar[frozenset[str]] = frozenset({
        "device", "precision", "threads", "channels_last", "num_workers", "load_workers",
        "cache", "cache_dir", "eval_batch_size", "checkpoint_dir", "resume", "progress"})

    @classmethod
    def _not_training(cls) -> frozenset[str]:
        """Parameters a resumed run may change: they leave the trained weights unchanged."""
        return (cls.run_only - {"precision", "channels_last"}) | {
            "min_score", "score_threshold", "max_detections"}

    def __init__(
        self,
        network: str = "centernet_small",
        network_params: dict[str, Any] | None = None,
        preprocess: list[Any] | dict[str, Any] | None = None,
        in_channels: int | None = None,
        normalize_input: bool = True,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        nesterov: bool = False,
        schedule: str | dict[str, Any] | None = "cosine",
        epochs: int = 60,
        batch_size: int = 8,
        grad_clip: float | None = 10.0,
        augment: str | dict[str, Any] | None = "detection",
        monitor: str = "map50",
        patience: int | None = None,
        max_detections: int = 100,
        min_score: float = 0.05,
        score_threshold: float | None = None,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        seed: int = 0,
        deterministic: bool = False,
        device: str = "auto",
        precision: str = "auto",
        channels_last: bool = False,
        threads: int | str | None = None,
        num_workers: int = 0,
        load_workers: int = 1,
        cache_dtype: str = "auto",
        cache: str = "memory",
        cache_dir: str | None = None,
        eval_batch_size: int | None = None,
        progress: Callback | None = None,
    ):
        self.network = network
        self.network_params = network_params
        self.preprocess = preprocess
        self.in_channels = in_channels
        self.normalize_input = normalize_input
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self.schedule = schedule
        self.epochs = epochs
        self.batch_size = batch_size
        self.grad_clip = grad_clip
        self.augment = augment
        self.monitor = monitor
        self.patience = patience
        self.max_detections = max_detections
        self.min_score = min_score
        self.score_threshold = score_threshold
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.seed = seed
        self.deterministic = deterministic
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.threads = threads
        self.num_workers = num_workers
        self.load_workers = load_workers
        self.cache_dtype = cache_dtype
        self.cache = cache
        self.cache_dir = cache_dir
        self.eval_batch_size = eval_batch_size
        self.progress = progress

    # -- parameters ----------------------------------------------------------------------------
    def validate_params(self) -> None:
        """Check every parameter (InvalidConfig naming the bad one); `fit` calls it first."""
        from medsight.models.networks import network_info

        plain_spec(self.preprocess)
        BoxAugmentConfig.from_config(self.augment)
        if network_info(self.network).task != "detection":
            raise InvalidConfig(f"network {self.network!r} is a classifier; a detector needs a "
                                "detection network such as 'centernet_small' or 'retinanet_fpn'")
        if self.network_params is not None and not isinstance(self.network_params, dict):
            raise InvalidConfig(f"network_params must be a mapping, got {self.network_params!r}")
        if self.monitor not in _MONITORS:
            raise InvalidConfig(f"monitor must be one of {list(_MONITORS)}, got {self.monitor!r}")
        if isinstance(self.max_detections, bool) or not isinstance(self.max_detections, int) or (
                self.max_detections < 1):
            raise InvalidConfig(f"max_detections must be a positive integer, got "
                                f"{self.max_detections!r}")
        if not 0.0 <= float(self.min_score) < 1.0:
            raise InvalidConfig(f"min_score must be in [0, 1), got {self.min_score!r}")
        if self.score_threshold is not None and not 0.0 <= float(self.score_threshold) <= 1.0:
            raise InvalidConfig(f"score_threshold must be in [0, 1] or None, got "
                                f"{self.score_threshold!r}")
        check_detection_cache(self.cache)
        self._check_run_params()

    # -- protocol ------------------------------------------------------------------------------
    def _fit(self, train: Dataset, val: Dataset | None) -> None:
        from medsight.preprocess import Preprocess

        if train.task is not Task.DETECTION:
            raise InvalidDataset(f"{train.name}: a detector trains on a detection dataset (boxes), "
                                 f"this one's task is {train.task.value!r}")
        settings = self._settings()
        self.preprocess_ = Preprocess.from_config(plain_spec(self.preprocess) or [])
        with settings.activate():
            seed_everything(self.seed)
            labelled = train.labelled()
            data = self._images(labelled)
            if not any(len(b) for b in data.boxes):
                raise InvalidDataset(f"{train.name}: the training images hold no boxes to learn")
            self.skipped_ = list(data.errors)
            self.boxes_lost_ = data.boxes_lost
            self.input_shape_ = list(data.cache.sample_shape)
            self.data_channels_ = data.cache.channels
            self.network_in_channels_ = self._network_channels(data.cache.channels)

            validation, val_data = None, None
            if val is not None and len(val.labelled()):
                val_data = self._images(val.labelled())
                self._check_shape(val_data, val.name)
                validation = DetectionValidation(val_data, self.classes_, self.max_detections,
                                                 self._eval_batch(), self.min_score)
            torch.manual_seed(self.seed)
            model = self._build_model()
            if self.normalize_input:
                model.set_input_stats(*data.cache.channel_stats())
            model = settings.prepare_model(model, 2)
            objective = DetectionObjective(data.boxes, data.labels,
                                           BoxAugment(BoxAugmentConfig.from_config(self.augment)),
                                           self.seed)
            config = self._loop_config(self._checkpoint_dir(), self._fingerprint(labelled, val))
            result = Trainer(model, objective, settings, config, validation,
                             self.progress).fit(data.loop_data())
            model.load_state_dict(result.best_state)
            self.model_ = model.to("cpu").eval()
            self.history_ = result.history
            self.best_epoch_ = result.best_epoch
            self.best_metric_ = result.best_metric
            self.stopped_early_ = result.stopped_early
            self.resumed_from_ = result.resumed_from
            self.score_threshold_, self.val_f1_ = self._choose_threshold(val_data, settings)
            self.threshold_ = self.score_threshold_

    def _choose_threshold(self, val: DetectionImages | None, settings: RunSettings
                          ) -> tuple[float, float | None]:
        if self.score_threshold is not None:
            return float(self.score_threshold), None
        if val is None or not any(len(b) for b in val.boxes):
            log.warning("no validation boxes: the score threshold is %.2f, not chosen on data",
                        DEFAULT_SCORE_THRESHOLD)
            return DEFAULT_SCORE_THRESHOLD, None
        found = detect_cached(self._device_model(settings, 2), val, self.max_detections,
                              self._eval_batch(), settings, self.min_score)
        return f1_threshold(val.truth(), found, len(self.classes_), self.max_detections)

    def predict_detections(self, dataset: Dataset) -> list[Detections | None]:
        """Per record: every detection scoring at least ``min_score`` (at most
        ``max_detections``, by score) in the original image's pixels; None for an unreadable
        image (named in a logged warning)."""
        self._check_fitted()
        out: list[Detections | None] = [None] * len(dataset)
        errors: list[tuple[str, str]] = []
        settings = self._settings()
        chunk = max(1, 4 * self._eval_batch())
        with settings.activate():
            model = self._device_model(settings, 2)
            pending: list[tuple[int, Prepared]] = []
            for i, prepared in iter_prepared(dataset, self.preprocess_, self.load_workers):
                if isinstance(prepared, Prepared):
                    pending.append((i, prepared))
                else:
                    errors.append((dataset.records[i].ref, prepared.reason))
                if len(pending) == chunk:
                    self._detect_into(out, pending, model, settings, dataset.name)
                    pending = []
            self._detect_into(out, pending, model, settings, dataset.name)
        if errors:
            log.warning("%s: %d of %d images were unreadable (no detections): %s", dataset.name,
                        len(errors), len(dataset),
                        "; ".join(f"{ref}: {why}" for ref, why in errors[:5]))
        return out

    def _detect_into(self, out: list[Detections | None], pending: list[tuple[int, Prepared]],
                     model: DetectorModel, settings: RunSettings, name: str) -> None:
        if not pending:
            return
        x = np.stack([p.pixels for _, p in pending])
        if list(x.shape[1:]) != list(self.input_shape_):
            raise InvalidDataset(
                f"{name}: images are {tuple(x.shape[1:])} after preprocessing, but the model was "
                f"trained on {tuple(self.input_shape_)}; add a resize step to the preprocess chain"
            )
        boxes, scores, labels = detect_batches(model, x, self.max_detections, self._eval_batch(),
                                               settings.device)
        for j, (i, prepared) in enumerate(pending):
            out[i] = to_original(boxes[j], scores[j], labels[j], prepared, float(self.min_score))

    def predict(self, dataset: Dataset) -> np.ndarray:
        """(N, n_classes) int64 detections per class at ``score_threshold_`` (-1: unreadable)."""
        self._check_fitted()
        k = len(self.classes_)
        return np.stack([d.counts(k, self.score_threshold_) if d is not None
                         else np.full(k, -1, np.int64)
                         for d in self.predict_detections(dataset)]).reshape(-1, k)

    def decide(self, proba: np.ndarray) -> np.ndarray:
        raise InvalidConfig("a detector decides on boxes, not probabilities: use "
                            "predict_detections (boxes) or predict (counts per class)")

    def _predict_proba(self, dataset: Dataset) -> np.ndarray:
        raise InvalidConfig("a detector gives boxes, not class probabilities: use "
                            "predict_detections (boxes) or predict (counts per class)")

    def detection_view(self) -> DetectionView:
        """The fitted decoding function (CPU, eval mode): preprocessed batch -> top
        ``max_detections`` boxes (model-input pixels), scores and labels (what ONNX exports)."""
        self._check_fitted()
        return DetectionView(self.model_.eval(), self.max_detections)

    # -- saving ----------------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        torch.save(self.model_.state_dict(), directory / MODEL_FILE)
        (directory / PREPROCESS_FILE).write_text(self.preprocess_.to_json())
        state = {
            "torch_version": torch.__version__,
            "preprocess_fingerprint": self.preprocess_.fingerprint(),
            "input_shape": self.input_shape_,
            "data_channels": self.data_channels_,
            "network_in_channels": self.network_in_channels_,
            "score_threshold": self.score_threshold_,
            "val_f1": self.val_f1_,
            "history": self.history_,
            "best_epoch": self.best_epoch_,
            "best_metric": self.best_metric_,
            "stopped_early": self.stopped_early_,
            "boxes_lost": self.boxes_lost_,
            "skipped": [list(e) for e in self.skipped_],
        }
        (directory / STATE_FILE).write_text(json.dumps(jsonable(state), indent=2))

    def _load_state(self, directory: Path) -> None:
        state = self._load_saved_preprocess(directory, "a detector")
        self.input_shape_ = list(state["input_shape"])
        self.data_channels_ = int(state["data_channels"])
        self.network_in_channels_ = int(state["network_in_channels"])
        self.score_threshold_ = float(state["score_threshold"])
        self.val_f1_ = state.get("val_f1")
        self.history_ = state.get("history", [])
        self.best_epoch_ = state.get("best_epoch")
        self.best_metric_ = state.get("best_metric")
        self.stopped_early_ = bool(state.get("stopped_early", False))
        self.resumed_from_ = None
        self.boxes_lost_ = int(state.get("boxes_lost", 0))
        self.skipped_ = [tuple(e) for e in state.get("skipped", [])]
        model = self._build_model(with_weights=False)
        try:
            weights = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
            model.load_state_dict(weights)
        except Exception as exc:
            raise BundleIntegrityError(
                f"{directory / MODEL_FILE}: cannot load the weights: {exc}"
            ) from exc
        self.model_ = model.eval()

    # -- pieces --------------------------------------------------------------------------------
    def _images(self, dataset: Dataset) -> DetectionImages:
        if self.progress is not None:
            self.progress(TrainEvent(f"load_{dataset.name}", 0, self.epochs, 0, len(dataset),
                                     float("nan")))
        return build_detection_images(dataset, self.preprocess_, self.cache_dtype,
                                      self.load_workers, self.cache, self.cache_dir)

    def _check_shape(self, data: DetectionImages, name: str) -> None:
        if list(data.cache.sample_shape) != list(self.input_shape_):
            raise InvalidDataset(
                f"{name}: images are {data.cache.sample_shape} after preprocessing, but the "
                f"model was trained on {tuple(self.input_shape_)}; add a resize step"
            )

    def _build_model(self, with_weights: bool = True) -> DetectorModel:
        from medsight.models.networks import create_network

        params = dict(self.network_params or {})
        if not with_weights:  # the saved state_dict holds every weight
            params.pop("weights", None)
            params.pop("backbone_weights", None)
        network = create_network(self.network, in_channels=self.network_in_channels_,
                                 num_classes=len(self.classes_), **params)
        return DetectorModel(network, self.data_channels_)

    def _fingerprint(self, train: Dataset, val: Dataset | None) -> str:
        """What a resumed run must share with the interrupted one: parameters and data."""
        return self._run_fingerprint(f"{r.ref}\t{r.boxes}" for ds in (train, val)
                                     if ds is not None for r in ds.records)

