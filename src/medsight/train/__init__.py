"""Training machinery for neural networks: data cache and loaders, augmentation, losses,
schedules, the loop with model selection and resumable checkpoints, semi-supervised learning and
the device switches. `medsight.models.torch_classifier.TorchClassifier` puts it together under
the estimator protocol.
"""

from medsight.train.augment import PRESETS, AugmentConfig, BatchAugment, flip_variants
from medsight.train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from medsight.train.data import CachedImages, ImageCache, make_loader
from medsight.train.device import RunSettings, available_cpus, seed_everything
from medsight.train.loop import (
    FitResult,
    LoopConfig,
    SupervisedObjective,
    Trainer,
    TrainEvent,
    Validation,
)
from medsight.train.losses import TaskLoss, expected_grade
from medsight.train.optim import build_optimizer
from medsight.train.predict import map_batches, predict_proba
from medsight.train.schedules import build_scheduler
from medsight.train.semi_supervised import (
    FixMatchObjective,
    SemiSupervisedConfig,
    pseudo_label_rounds,
)

__all__ = [
    "PRESETS",
    "AugmentConfig",
    "BatchAugment",
    "CachedImages",
    "FitResult",
    "FixMatchObjective",
    "ImageCache",
    "LoopConfig",
    "RunSettings",
    "SemiSupervisedConfig",
    "SupervisedObjective",
    "TaskLoss",
    "TrainEvent",
    "Trainer",
    "Validation",
    "available_cpus",
    "build_optimizer",
    "build_scheduler",
    "capture_rng",
    "expected_grade",
    "flip_variants",
    "load_checkpoint",
    "make_loader",
    "map_batches",
    "predict_proba",
    "pseudo_label_rounds",
    "restore_rng",
    "save_checkpoint",
    "seed_everything",
]
