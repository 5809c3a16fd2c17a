"""The training loop: epochs of batches, validation, model selection, early stopping, checkpoints.

`Trainer.fit` runs a supervised (or, through an `Objective`, semi-supervised) loop over an
in-memory `CachedImages`. After every epoch it validates, keeps a *copy* of the best weights
(fresh tensors, never a reference to the live model: a reference would silently turn "best"
into "last"), applies early stopping and writes a checkpoint atomically. The checkpoint holds
model, optimizer, scheduler, gradient scaler, selection and early-stopping state, history and
every RNG state, so ``resume=True`` continues a killed run to exactly the weights an
uninterrupted run would reach (in deterministic mode, same seed). The library never prints:
progress goes to an optional callback.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from medsight.data.dataset import Task
from medsight.errors import InvalidConfig
from medsight.train import distributed
from medsight.train.augment import BatchAugment
from medsight.train.checkpoint import (
    LAST,
    capture_rng,
    copy_state,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from medsight.train.data import CachedImages, make_loader
from medsight.train.device import RunSettings
from medsight.train.losses import TaskLoss
from medsight.train.optim import build_optimizer
from medsight.train.predict import predict_proba
from medsight.train.schedules import build_scheduler

CHECKPOINT_FORMAT = 1
log = logging.getLogger(__name__)


def lower_is_better(monitor: str) -> bool:
    """True for the validation ``loss`` and evaluate's error metrics (brier, ece, log_loss, mae).

    The validation scores are `compute_metrics` values (see `Validation`), so their direction is
    evaluate's table, imported where `Validation` imports the metrics.
    """
    from medsight.evaluate.metrics import higher_is_better

    return monitor == "loss" or not higher_is_better(monitor)


@dataclass
class TrainEvent:
    """What a progress callback receives, after every batch (``stage="batch"``) and epoch.

    ``loss`` is the running mean training loss of the epoch so far; ``val_metric`` the monitored
    validation value (epoch events with validation only); ``round`` the pseudo-labelling round.
    """

    stage: str
    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    val_metric: float | None = None
    lr: float | None = None
    round: int = 0


Callback = Callable[[TrainEvent], None]


@dataclass
class LoopConfig:
    """Optimisation settings of one run (`TorchClassifier` fills it from its parameters)."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    schedule: Any = "step"
    monitor: str = "auc"
    patience: int | None = None
    grad_clip: float | None = None
    eval_batch_size: int | None = None
    num_workers: int = 0
    seed: int = 0
    checkpoint_dir: str | Path | None = None
    resume: bool = False
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InvalidConfig(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InvalidConfig(f"batch_size must be >= 1, got {self.batch_size}")
        if self.patience is not None and self.patience < 1:
            raise InvalidConfig(f"patience must be >= 1 epochs (or None), got {self.patience}")
        if self.resume and self.checkpoint_dir is None:
            raise InvalidConfig("resume=True needs a checkpoint_dir to resume from")

    @property
    def mode(self) -> str:
        """``"min"`` for losses and errors (loss, brier, ece, mae), ``"max"`` for AUC, acc..."""
        return "min" if lower_is_better(self.monitor) else "max"


@dataclass
class FitResult:
    """What a finished (or early-stopped) run produced."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_metric: float | None
    history: list[dict[str, Any]]
    stopped_early: bool = False
    resumed_from: int | None = None


# -- objectives ---------------------------------------------------------------------------------
class Objective(Protocol):
    """How one training batch becomes a loss (supervised, FixMatch ...)."""

    def start_epoch(self, epoch: int) -> None: ...

    def batch_loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
        settings: RunSettings,
    ) -> torch.Tensor: ...

    def end_epoch(self) -> dict[str, int]: ...  # counts of the epoch (images used ...)

    def generators(self) -> dict[str, torch.Generator]: ...


class SupervisedObjective:
    """Augment the batch on the device, optionally mix it, and apply the task loss.

    Rows at or above `pseudo_from` are pseudo-labelled images; how many of them the epoch used
    is reported as ``unlabeled_used``.
    """

    def __init__(self, loss: TaskLoss, augment: BatchAugment, seed: int,
                 pseudo_from: int | None = None):
        self.loss = loss
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.pseudo_from = pseudo_from
        self._used = 0

    def start_epoch(self, epoch: int) -> None:
        self._used = 0

    def batch_loss(self, model, x, y, rows, settings):  # noqa: D102 (see Objective)
        spatial = x.ndim - 2
        x = settings.to_device(x)
        y = settings.to_device(y)
        x = self.augment(x, self.generator)
        x, perm, lam = self.augment.mix(x, self.generator)
        fmt = settings.memory_format(spatial)
        if fmt is not None:
            x = x.contiguous(memory_format=fmt)
        with settings.autocast():
            logits = model(x)
        per = self.loss.per_sample(logits, y)
        if perm is not None:
            per = lam * per + (1 - lam) * self.loss.per_sample(logits, y[perm])
        if self.pseudo_from is not None:
            self._used += int((rows >= self.pseudo_from).sum())
        return per.mean()

    def end_epoch(self) -> dict[str, Any]:
        return {"unlabeled_used": self._used} if self.pseudo_from is not None else {}

    def generators(self) -> dict[str, torch.Generator]:
        return {"augment": self.generator}


# -- validation ----------------------------------------------------------------------------------
class Validation:
    """Scores the model on a validation set: the loss plus `compute_metrics` on probabilities."""

    def __init__(
        self,
        data: CachedImages,
        loss: TaskLoss,
        task: Task,
        positive_class: int | None,
        batch_size: int = 256,
        flips: list[tuple[int, ...]] | None = None,
    ):
        if data.targets is None:
            raise ValueError("validation data needs targets")
        self.data = data
        self.loss = loss
        self.task = Task(task)
        self.positive_class = positive_class
        self.batch_size = batch_size
        self.flips = flips

    def __call__(self, model: nn.Module, settings: RunSettings) -> dict[str, float]:
        group = distributed.current()
        if group is None:
            proba = predict_proba(model, self.data, self.loss, settings, self.batch_size,
                                  self.flips)
        else:  # each rank scores rows rank::world; the whole set is put back together
            n = len(self.data)
            part = predict_proba(model, self.data, self.loss, settings, self.batch_size,
                                 self.flips, rows=range(group.rank, n, group.world))
            proba = distributed.gather_rows(part, n, group)
        targets = self.data.targets
        assert targets is not None
        scores: dict[str, float] = {"loss": _prob_loss(proba, targets, self.loss)}
        from medsight.evaluate.metrics import compute_metrics

        y_true = targets.numpy()
        kwargs = {}
        if self.task is Task.BINARY and self.positive_class is not None:
            kwargs["positive_class"] = self.positive_class
        metrics = compute_metrics(y_true, proba, self.task.value, **kwargs)
        for key, value in metrics.items():
            if key in _NOT_SCORES or isinstance(value, bool):
                continue
            if value is None:  # undefined here (e.g. AUC on one class): never "best"
                scores[key] = float("nan")
            elif isinstance(value, (int, float, np.integer, np.floating)):
                scores[key] = float(value)
        return scores


_NOT_SCORES = {"n", "positive_class", "threshold"}


def _prob_loss(proba: np.ndarray, targets: torch.Tensor, loss: TaskLoss) -> float:
    """Mean negative log-likelihood of the targets under `proba` (task-aware, unweighted)."""
    p = np.clip(proba, 1e-7, 1 - 1e-7)
    t = targets.numpy()
    if loss.task is Task.MULTILABEL:
        return float(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean())
    return float(-np.log(p[np.arange(len(t)), t.astype(int)]).mean())


# -- the trainer ---------------------------------------------------------------------------------
class Trainer:
    """Runs `LoopConfig` on a model; see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        settings: RunSettings,
        config: LoopConfig,
        validation: Validation | None = None,
        callback: Callback | None = None,
        round_index: int = 0,
    ):
        self.model = model
        self.objective = objective
        self.settings = settings
        self.config = config
        self.validation = validation
        self.callback = callback
        self.round_index = round_index
        self._ddp: nn.Module | None = None
        if validation is None and config.patience:
            log.warning("early stopping (patience=%s) is off: no validation data", config.patience)

    @property
    def checkpoint_path(self) -> Path | None:
        d = self.config.checkpoint_dir
        return None if d is None else Path(d) / LAST

    def fit(self, train: CachedImages) -> FitResult:
        """Train on `train` (rows with targets); returns the best weights and the history."""
        cfg, model, settings = self.config, self.model, self.settings
        group = distributed.current()
        loader_gen = torch.Generator().manual_seed(cfg.seed)
        if group is None:
            loader = make_loader(
                train, cfg.batch_size, shuffle=True, generator=loader_gen,
                num_workers=cfg.num_workers, pin_memory=settings.pin_memory,
            )
        else:
            loader = distributed.sharded_loader(train, cfg.batch_size, loader_gen, group,
                                                cfg.num_workers, settings.pin_memory)
        steps = max(1, len(loader))
        optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay,
                                    cfg.nesterov)
        scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs, steps)
        scaler = settings.grad_scaler()
        generators = {"loader": loader_gen, **self.objective.generators()}

        st = _SelectionState(cfg.mode)
        history: list[dict[str, Any]] = []
        start_epoch, stopped, resumed_from = 0, False, None
        ckpt_path = self.checkpoint_path
        ckpt = None
        if cfg.resume and ckpt_path is not None and (group is None or group.is_main):
            ckpt = load_checkpoint(ckpt_path) if ckpt_path.is_file() else None
        if cfg.resume and group is not None:  # rank 0 reads; the others get it by broadcast
            ckpt = distributed.broadcast(ckpt)
        if ckpt is not None:
            assert ckpt_path is not None
            self._check_resumable(ckpt, ckpt_path)
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
            restore_rng(ckpt["rng"], generators)
            st.load(ckpt["selection"])
            history = list(ckpt["history"])
            start_epoch = resumed_from = int(ckpt["epoch"])
            stopped = bool(ckpt["stopped"])

        self._ddp = None if group is None else distributed.wrap_model(model, group)
        epoch = start_epoch
        while epoch < cfg.epochs and not stopped:
            record = self._train_epoch(epoch, loader, optimizer, scheduler, scaler, steps)
            val_metric = None
            if self.validation is not None:
                scores = self.validation(model, settings)
                if cfg.monitor not in scores:
                    raise InvalidConfig(
                        f"monitor {cfg.monitor!r} is not a validation metric; "
                        f"available: {sorted(scores)}"
                    )
                val_metric = scores[cfg.monitor]
                record.update({f"val_{k}": v for k, v in scores.items()})
                record["val_metric"] = val_metric
            record["time_s"] = time.perf_counter() - record.pop("_t0")
            epoch += 1
            improved = st.update(val_metric, epoch, model, keep=self.validation is not None)
            record["best"] = improved
            history.append(record)
            if cfg.patience and self.validation is not None and st.bad_epochs >= cfg.patience:
                stopped = epoch < cfg.epochs
                record["stopped_early"] = stopped
            if group is not None:  # the same decision on every rank
                stopped = distributed.broadcast(stopped)
            if ckpt_path is not None and (group is None or group.is_main):
                save_checkpoint(ckpt_path, {
                    "format": CHECKPOINT_FORMAT,
                    "fingerprint": cfg.fingerprint,
                    "epoch": epoch,
                    "epochs": cfg.epochs,
                    "stopped": stopped,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": capture_rng(generators),
                    "selection": st.dump(),
                    "history": history,
                })
            self._emit(TrainEvent("epoch", epoch, cfg.epochs, steps, steps, record["loss"],
                                  val_metric, record["lr"], self.round_index))

        if st.best_state is None:  # no validation: the last weights are the result
            best_state, best_epoch = copy_state(model.state_dict()), epoch
        else:
            best_state, best_epoch = st.best_state, st.best_epoch
        return FitResult(best_state, best_epoch, st.best_value, history, stopped, resumed_from)

    # -- one epoch -------------------------------------------------------------------------------
    def _train_epoch(self, epoch, loader, optimizer, scheduler, scaler, steps) -> dict[str, Any]:
        cfg, model = self.config, self.model
        t0 = time.perf_counter()
        model.train()
        threads = self.settings.adapt_threads()
        self.objective.start_epoch(epoch)
        total, seen = 0.0, 0
        lr = optimizer.param_groups[0]["lr"]
        group = distributed.current()
        net = model if self._ddp is None else self._ddp
        for b, (x, y, rows) in enumerate(loader):
            optimizer.zero_grad(set_to_none=True)
            loss = self.objective.batch_loss(net, x, y, rows, self.settings)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {float(loss)} at epoch {epoch + 1}, batch {b + 1}: "
                    "lower the learning rate or check the input scaling"
                )
            if group is None:
                scaler.scale(loss).backward()
            else:  # DDP averages gradients over ranks: weight by this rank's share of the batch
                share = len(y) * group.world / distributed.global_count(len(y), loss.device)
                scaler.scale(loss * share).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            n = len(y)
            total += float(loss.detach()) * n
            seen += n
            self._emit(TrainEvent("batch", epoch + 1, cfg.epochs, b + 1, steps, total / seen,
                                  None, lr, self.round_index))
        if group is not None:  # the epoch's loss over the whole global batches
            total, seen_all = distributed.sum_over_ranks(total, seen)
            seen = int(seen_all)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "round": self.round_index,
            "loss": total / max(seen, 1),
            "lr": lr,
            "samples": seen,
            "threads": threads,
            "_t0": t0,
        }
        counts = self.objective.end_epoch()
        if group is not None and counts:  # images used per rank -> over the job
            counts = dict(zip(counts, map(int, distributed.sum_over_ranks(*counts.values())),
                              strict=True))
        record.update(counts)
        return record

    def _emit(self, event: TrainEvent) -> None:
        if self.callback is not None:
            self.callback(event)

    def _check_resumable(self, ckpt: Mapping[str, Any], path: Path) -> None:
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise InvalidConfig(f"{path} is not a medsight training checkpoint (format)")
        if ckpt.get("fingerprint") != self.config.fingerprint or ckpt.get("epochs") != (
            self.config.epochs
        ):
            raise InvalidConfig(
                f"{path} was written by a run with other settings or data; resume only the "
                "same run (same parameters and data), or delete it / set resume=False"
            )


@dataclass
class _SelectionState:
    """Best-so-far tracking: value, epoch, a deep copy of the weights, epochs without progress."""

    mode: str
    best_value: float | None = None
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0

    def update(self, value: float | None, epoch: int, model: nn.Module, keep: bool) -> bool:
        """Record epoch `epoch`'s value; copy the weights when it is the best so far."""
        if not keep:
            return False
        finite = value is not None and math.isfinite(value)
        have_best = self.best_value is not None and math.isfinite(self.best_value)
        if finite and have_best:
            better = value > self.best_value if self.mode == "max" else value < self.best_value
        else:
            # the first finite value wins; while nothing is finite, follow the latest epoch
            better = finite or not have_best
        if better:
            self.best_value = value
            self.best_epoch = epoch
            self.best_state = copy_state(model.state_dict())
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return better

    def dump(self) -> dict[str, Any]:
        return {
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_state": self.best_state,
        }

    def load(self, d: Mapping[str, Any]) -> None:
        self.best_value = d["best_value"]
        self.best_epoch = int(d["best_epoch"])
        self.bad_epochs = int(d["bad_epochs"])
        self.best_state = d["best_state"]
