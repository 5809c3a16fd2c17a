"""A neural network classifier under the estimator protocol: `TorchClassifier`.

`TorchClassifier` trains a registered network (`medsight.models.networks`) on a medsight Dataset
with the `medsight.train` machinery: the saved `Preprocess` chain turns records into arrays
once (a compact in-memory cache), batches are augmented on the device, the task decides the
loss (cross-entropy, BCE for multilabel, a cumulative-link CORAL head for ordinal grades), the
validation metric (AUC by default) picks the best epoch, and checkpoints make a killed run
resumable to the same weights; the supervised / FixMatch / pseudo-label recipes live in
`medsight.train.recipes`. Defaults follow the MedMNIST ResNet recipe: Adam, lr 1e-3, batch 128,
100 epochs, lr x0.1 at 50% and 75% of the epochs.

The fitted module ``model_`` is a `TorchModel` (`medsight.models.torch_inference`): the input
standardisation learned on the training images (per-channel mean/std; ``normalize_input=False``
to skip) + the network (+ the ordinal head). `probability_model()` adds the probability link and
the test-time flips: the one function behind `predict_proba` and the ONNX export.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from medsight.data.dataset import Dataset, Record, Task
from medsight.errors import BundleIntegrityError, InvalidConfig, InvalidDataset
from medsight.jsonable import jsonable
from medsight.models.base import MedsightEstimator
from medsight.models.inputs import predict_in_chunks
from medsight.models.threshold import check_estimator_method, validation_threshold
from medsight.models.torch_inference import ProbabilityModel, TorchModel
from medsight.models.torch_run import MODEL_FILE, PREPROCESS_FILE, STATE_FILE, TorchRun
from medsight.preprocess.chain import plain_spec
from medsight.train.augment import AugmentConfig, BatchAugment, flip_variants
from medsight.train.data import (
    CACHE_MODES,
    CachedImages,
    ImageCache,
    cache_images,
    targets_tensor,
)
from medsight.train.device import RunSettings, seed_everything
from medsight.train.loop import (
    Callback,
    Trainer,
    TrainEvent,
    Validation,
    lower_is_better,
)
from medsight.train.losses import TaskLoss, class_weight_tensor
from medsight.train.predict import map_batches, predict_proba
from medsight.train.recipes import Recipe, train_network
from medsight.train.semi_supervised import SemiSupervisedConfig

log = logging.getLogger(__name__)



class TorchClassifier(TorchRun, MedsightEstimator):
    """A neural network classifier (see the module docstring).

    Parameters
    ----------
    network, network_params: registered network name and its options (``dropout``, a local
        pretrained ``weights`` file ...). in_channels: channels the network takes (None: those
        of the data; >1 with grey data repeats the channel).
    preprocess: the preprocessing chain as a config list or `Preprocess` JSON dict (None: none).
    class_weight ("balanced" or one weight per class), label_smoothing, ordinal ("coral" or
        "ce"): the loss (see `medsight.train.losses`). normalize_input: standardise inputs with
        the training images' per-channel mean and std inside the model.
    optimizer ("sgd"/"adam"/"adamw"), lr, momentum, weight_decay, nesterov, schedule ("step",
        "cosine", "onecycle", "constant" or a mapping, `medsight.train.schedules`), epochs,
        batch_size, grad_clip.
    augment: a preset name (``"light"``, ``"chest"``, ``"ultrasound"``, ``"volume"``,
        ``"rotation_invariant"``) or a mapping of `AugmentConfig` options (optionally with
        ``preset``); None: no augmentation.
    monitor: validation metric that picks the best epoch ("auc", "acc", "loss", ...);
        patience: early stopping after that many epochs without improvement (None: off).
    tta: test-time augmentation at predict: False, True (the flips `augment` allows) or a list
        of "hflip"/"vflip"/"dflip".
    threshold_method, target_sensitivity: binary decision threshold chosen on the validation
        split ("youden", "target_sensitivity" or None for 0.5).
    semi_supervised: None or ``{"method": "pseudo_label" | "fixmatch", "threshold": 0.95, ...}``;
        unlabelled images are the train records with label None plus ``fit(..., unlabeled=)``.
    checkpoint_dir, resume: write a checkpoint every epoch; resume a killed run from it.
    seed, deterministic: repeatability (deterministic=True: same weights on every rerun and
        after a resume). device ("auto", "cpu", "cuda", "cuda:1"), precision ("auto", "fp32",
        "fp16", "bf16"), channels_last, threads (CPU threads; None: all cores; "adaptive": the
        cores other processes leave idle, re-measured every epoch, for busy shared machines),
        num_workers,
        load_workers (threads decoding images), cache_dtype ("auto", "uint8", "float16",
        "float32"), eval_batch_size.
    cache: where preprocessed training images live: "memory" (default), "disk" (memory-mapped
        files under cache_dir, reused by later runs and folds: `medsight.train.disk_cache`) or
        "stream" (decoded again for every batch, in the num_workers DataLoader processes).
        cache_dir: the disk cache folder (None: $XDG_CACHE_HOME/medsight/images).
    progress: a callable receiving `TrainEvent`s (the library never prints).
    The run-only settings (`run_only`: device, precision, threads, channels_last, num_workers,
    load_workers, cache, cache_dir, eval_batch_size, checkpoint_dir, resume, progress) say how a
    run executes;
    they are not saved with the model, so a model trained on a GPU loads on a CPU-only machine.

    Learned attributes (besides the protocol's ``task_``, ``classes_``, ``threshold_``):
    ``model_`` (`TorchModel`, on the CPU), ``preprocess_``, ``history_`` (one dict per epoch:
    epoch, round, loss, lr, samples, time_s, val_<metric>..., val_metric, best, and for
    semi-supervised runs unlabeled_used / unlabeled_seen / pseudo_labelled), ``best_epoch_``,
    ``best_metric_``, ``stopped_early_``, ``resumed_from_``, ``input_shape_``, ``skipped_``
    (unreadable training images; at prediction they give NaN rows and a logged warning).
    Prediction leaves the fitted estimator unchanged, so threads may share one.
    """

    kind: ClassVar[str] = "torch"
    run_only: ClassVar[frozenset[str]] = frozenset({
        "device", "precision", "threads", "channels_last", "num_workers", "load_workers",
        "cache", "cache_dir", "eval_batch_size", "checkpoint_dir", "resume", "progress"})

    @classmethod
    def _not_training(cls) -> frozenset[str]:
        """Parameters that leave the trained weights unchanged, so a resumed run may change them:
        the run-only settings except precision and channels_last (they change the arithmetic, a
        resume must keep them), plus what only acts after training (TTA, the threshold)."""
        return (cls.run_only - {"precision", "channels_last"}) | {"tta", "threshold_method",
                                                                   "target_sensitivity"}

    def __init__(
        self,
        network: str = "resnet18_28",
        network_params: dict[str, Any] | None = None,
        preprocess: list[Any] | dict[str, Any] | None = None,
        in_channels: int | None = None,
        class_weight: str | list[float] | None = None,
        label_smoothing: float = 0.0,
        ordinal: str = "coral",
        normalize_input: bool = True,
        optimizer: str = "adam",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        schedule: str | dict[str, Any] | None = "step",
        epochs: int = 100,
        batch_size: int = 128,
        grad_clip: float | None = None,
        augment: str | dict[str, Any] | None = None,
        monitor: str = "auc",
        patience: int | None = None,
        tta: bool | list[str] = False,
        threshold_method: str | None = "youden",
        target_sensitivity: float = 0.9,
        semi_supervised: dict[str, Any] | str | None = None,
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
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing
        self.ordinal = ordinal
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
        self.tta = tta
        self.threshold_method = threshold_method
        self.target_sensitivity = target_sensitivity
        self.semi_supervised = semi_supervised
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
        self._unlabeled: Dataset | None = None

    # -- parameters ----------------------------------------------------------------------------
    def validate_params(self) -> None:
        """Check every parameter (InvalidConfig naming the bad one); `fit` calls it first."""
        from medsight.models.networks import network_info

        if network_info(self.network).task != "classification":
            raise InvalidConfig(f"network {self.network!r} is a detector; train it with the "
                                "'detector' kind (TorchDetector) on a dataset with boxes")
        plain_spec(self.preprocess)
        AugmentConfig.from_config(self.augment)
        SemiSupervisedConfig.from_config(self.semi_supervised)
        check_estimator_method(self.threshold_method)
        if self.network_params is not None and not isinstance(self.network_params, dict):
            raise InvalidConfig(f"network_params must be a mapping, got {self.network_params!r}")
        if self.tta not in (True, False) and not (
            isinstance(self.tta, (list, tuple)) and set(self.tta) <= {"hflip", "vflip", "dflip"}
        ):
            raise InvalidConfig(
                f"tta must be true/false or a list of hflip/vflip/dflip, got {self.tta!r}"
            )
        if self.cache not in CACHE_MODES:
            raise InvalidConfig(f"cache must be one of {list(CACHE_MODES)}, got {self.cache!r}")
        self._check_run_params()

    # -- protocol ------------------------------------------------------------------------------
    def fit(self, train: Dataset, val: Dataset | None = None,
            unlabeled: Dataset | None = None) -> TorchClassifier:
        """Train on the labelled records of `train`; `val` picks the best epoch and threshold.

        `unlabeled` adds images without labels for ``semi_supervised`` training (train records
        whose label is None are used too).
        """
        self._unlabeled = unlabeled
        try:
            super().fit(train, val)
        finally:
            self._unlabeled = None
        return self

    def _fit(self, train: Dataset, val: Dataset | None) -> None:
        from medsight.preprocess import Preprocess

        settings = self._settings()
        self.preprocess_ = Preprocess.from_config(plain_spec(self.preprocess) or [])
        aug = AugmentConfig.from_config(self.augment)
        semi = SemiSupervisedConfig.from_config(self.semi_supervised)
        with settings.activate():
            seed_everything(self.seed)
            labelled = train.labelled()
            cache = self._cache(labelled, "train")
            self.skipped_ = list(cache.errors)
            targets = targets_tensor(labelled, cache.index)
            y = labelled.labels[cache.index]
            if self.task_ is not Task.MULTILABEL and len(np.unique(y)) < 2:
                raise InvalidDataset(
                    f"{train.name}: the readable training images hold one class only "
                    f"({self.classes_[int(y[0])]!r}); a classifier needs at least two"
                )
            self.input_shape_ = list(cache.sample_shape)
            self.data_channels_ = cache.channels
            self.network_in_channels_ = self._network_channels(cache.channels)
            loss = self._loss(y)
            spatial = cache.spatial_dims

            validation, val_data = None, None
            if val is not None and len(val.labelled()):
                val_set = val.labelled()
                vcache = self._cache(val_set, "val")
                self._check_shape(vcache, val_set.name)
                val_data = CachedImages(vcache, targets_tensor(val_set, vcache.index))
                validation = Validation(val_data, loss, self.task_, self.positive_class_,
                                        self._eval_batch(), self._flips(aug, spatial))

            unlabeled = self._unlabeled_cache(train) if semi is not None else None
            mean, std = cache.channel_stats() if self.normalize_input else (None, None)
            fingerprint = self._fingerprint(labelled, val, unlabeled)

            def new_model(round_index: int) -> nn.Module:
                torch.manual_seed(self.seed + 7919 * round_index)
                model = self._build_model(loss)
                if mean is not None:
                    model.set_input_stats(mean, std)
                return settings.prepare_model(model, spatial)

            def trainer(model: nn.Module, objective: Any, round_index: int) -> Trainer:
                ckpt = self._checkpoint_dir()
                if ckpt is not None and semi is not None and semi.method == "pseudo_label":
                    ckpt = str(Path(ckpt) / f"round_{round_index}")
                config = self._loop_config(ckpt, f"{fingerprint}:{round_index}")
                return Trainer(model, objective, settings, config, validation, self.progress,
                               round_index)

            recipe = Recipe(new_model, trainer, loss, BatchAugment(aug, spatial), settings,
                            self.seed, self.batch_size, self._eval_batch(),
                            lower_is_better=lower_is_better(self.monitor))
            model, result = train_network(recipe, CachedImages(cache, targets), semi,
                                          unlabeled.cache if unlabeled is not None else None)

            self.loss_ = loss
            self.model_ = model.to("cpu").eval()
            self.history_ = result.history
            self.best_epoch_ = result.best_epoch
            self.best_metric_ = result.best_metric
            self.stopped_early_ = result.stopped_early
            self.resumed_from_ = result.resumed_from
            if val_data is not None and self.task_ is Task.BINARY and self.threshold_method:
                self.threshold_ = self._choose_threshold(val_data, settings, aug, spatial)

    def _predict_proba(self, dataset: Dataset) -> np.ndarray:
        return self._map_chunks(dataset, self._proba_of, self._n_outputs())

    def embed(self, dataset: Dataset) -> np.ndarray:
        """(N, F) CNN embeddings: global-average-pooled last feature maps (NaN rows: unreadable)."""
        self._check_fitted()

        def features(x: CachedImages, settings: RunSettings, model: nn.Module) -> np.ndarray:
            model.eval()
            return map_batches(model.embed, x, settings, self._eval_batch(), self.num_features_)

        return self._map_chunks(dataset, features, self.num_features_)

    def probability_model(self) -> ProbabilityModel:
        """The fitted function behind `predict_proba` as one module (on the CPU, eval mode):
        preprocessed batch (N, *input_shape_) -> (N, K) probabilities, mean over the TTA flips."""
        self._check_fitted()
        return ProbabilityModel(self.model_.eval(), self.task_, self.loss_.coral,
                                self._flips(AugmentConfig.from_config(self.augment),
                                            len(self.input_shape_) - 1))

    @property
    def num_features_(self) -> int:
        return int(getattr(self.model_.network, "num_features", 0))

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
            "history": self.history_,
            "best_epoch": self.best_epoch_,
            "best_metric": self.best_metric_,
            "stopped_early": self.stopped_early_,
            "skipped": [list(e) for e in getattr(self, "skipped_", [])],
        }
        (directory / STATE_FILE).write_text(json.dumps(jsonable(state), indent=2))

    def _load_state(self, directory: Path) -> None:
        state = self._load_saved_preprocess(directory, "a torch model")
        self.input_shape_ = list(state["input_shape"])
        self.data_channels_ = int(state["data_channels"])
        self.network_in_channels_ = int(state["network_in_channels"])
        self.history_ = state.get("history", [])
        self.best_epoch_ = state.get("best_epoch")
        self.best_metric_ = state.get("best_metric")
        self.stopped_early_ = bool(state.get("stopped_early", False))
        self.resumed_from_ = None
        self.skipped_ = [tuple(e) for e in state.get("skipped", [])]
        labels = np.arange(len(self.classes_))
        self.loss_ = self._loss(labels if self.task_ is not Task.MULTILABEL else None,
                                weights=False)
        model = self._build_model(self.loss_, with_weights=False)
        try:
            weights = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
            model.load_state_dict(weights)
        except Exception as exc:
            raise BundleIntegrityError(
                f"{directory / MODEL_FILE}: cannot load the weights: {exc}"
            ) from exc
        self.model_ = model.eval()

    # -- pieces --------------------------------------------------------------------------------
    def _cache(self, dataset: Dataset, what: str) -> ImageCache:
        progress = None
        if self.progress is not None:
            def progress(done: int, total: int) -> None:
                self.progress(TrainEvent(f"load_{what}", 0, self.epochs, done, total, float("nan")))
        return cache_images(dataset, self.preprocess_, self.cache_dtype, self.cache,
                            self.cache_dir, workers=self.load_workers, progress=progress)

    def _check_shape(self, cache: ImageCache, name: str) -> None:
        if list(cache.sample_shape) != list(self.input_shape_):
            raise InvalidDataset(
                f"{name}: images are {cache.sample_shape} after preprocessing, but the model was "
                f"trained on {tuple(self.input_shape_)}; add a resize step to the preprocess chain"
            )

    def _unlabeled_cache(self, train: Dataset) -> CachedImages:
        records: list[Record] = [r for r in train.records if r.label is None]
        if self._unlabeled is not None:
            records += list(self._unlabeled.records)
        if not records:
            raise InvalidDataset(
                f"{train.name}: semi_supervised training needs unlabelled images: records with "
                "label None in the train split, or fit(..., unlabeled=dataset)"
            )
        pool = Dataset(
            [Record(r.ref, None, r.patient_id, r.study_id, r.split, r.meta) for r in records],
            train.task, train.classes, name=f"{train.name}:unlabeled",
        )
        cache = self._cache(pool, "unlabeled")
        self._check_shape(cache, pool.name)
        self.unlabeled_skipped_ = list(cache.errors)
        self._unlabeled_refs = [r.ref for r in records]
        return CachedImages(cache)

    def _loss(self, labels: np.ndarray | None, weights: bool = True) -> TaskLoss:
        k = len(self.classes_)
        w = None
        if weights and labels is not None:
            w = class_weight_tensor(self.class_weight, self.task_, labels, k)
        return TaskLoss(self.task_, k, w, self.label_smoothing, self.ordinal)

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _build_model(self, loss: TaskLoss, with_weights: bool = True) -> TorchModel:
        from medsight.models.networks import create_network

        params = dict(self.network_params or {})
        if not with_weights:
            params.pop("weights", None)  # the saved state_dict holds every weight
        network = create_network(self.network, in_channels=self.network_in_channels_,
                                 num_classes=loss.network_outputs, **params)
        return TorchModel(network, self.data_channels_, loss.head())

    def _flips(self, aug: AugmentConfig, spatial: int) -> list[tuple[int, ...]] | None:
        if self.tta is False:
            return None
        if self.tta is True:
            return flip_variants(aug, spatial)
        allowed = AugmentConfig(hflip="hflip" in self.tta, vflip="vflip" in self.tta,
                                dflip="dflip" in self.tta)
        return flip_variants(allowed, spatial)

    def _fingerprint(self, train: Dataset, val: Dataset | None,
                     unlabeled: CachedImages | None) -> str:
        """What a resumed run must share with the interrupted one: parameters and data."""
        lines = [f"{r.ref}\t{r.label}" for ds in (train, val) if ds is not None for r in ds.records]
        refs = getattr(self, "_unlabeled_refs", []) if unlabeled is not None else []
        return self._run_fingerprint([*lines, *(f"{ref}\tunlabeled" for ref in refs)])

    def _choose_threshold(self, val: CachedImages, settings: RunSettings, aug: AugmentConfig,
                          spatial: int) -> float:
        pos = int(self.positive_class_ if self.positive_class_ is not None else 1)
        assert val.targets is not None
        proba = predict_proba(self._device_model(settings, spatial), val, self.loss_, settings,
                              self._eval_batch(), self._flips(aug, spatial))
        return validation_threshold(val.targets.numpy(), proba[:, pos], self.threshold_method,
                                    self.target_sensitivity, pos)

    def _proba_of(self, data: CachedImages, settings: RunSettings, model: nn.Module) -> np.ndarray:
        aug = AugmentConfig.from_config(self.augment)
        return predict_proba(model, data, self.loss_, settings, self._eval_batch(),
                             self._flips(aug, data.cache.spatial_dims))

    def _map_chunks(self, dataset: Dataset, fn: Any, width: int) -> np.ndarray:
        """`fn(images, settings, model)` over `dataset`, chunk by chunk; NaN rows: unreadable."""
        settings = self._settings()
        with settings.activate():
            model = self._device_model(settings, len(self.input_shape_) - 1)

            def run(x: np.ndarray) -> np.ndarray:
                cache = ImageCache.from_array(x, "float32")
                self._check_shape(cache, dataset.name)
                return fn(CachedImages(cache), settings, model)

            return predict_in_chunks(dataset, self.preprocess_, run, width,
                                     4 * self._eval_batch(), self.load_workers)

