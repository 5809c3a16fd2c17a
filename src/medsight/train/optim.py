"""Optimizers by name: SGD (momentum, Nesterov), Adam and AdamW.

Weight decay is applied to weight matrices and convolution kernels only, not to biases and
normalisation parameters (decaying those only hurts; Goyal et al. 2017, timm, torchvision recipes).
"""

from __future__ import annotations

import torch
from torch import nn

from medsight.errors import InvalidConfig

OPTIMIZERS = ("sgd", "adam", "adamw")


def build_optimizer(
    model: nn.Module,
    name: str = "sgd",
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """An optimizer over the trainable parameters of `model`."""
    if name not in OPTIMIZERS:
        raise InvalidConfig(f"unknown optimizer {name!r}; known: {list(OPTIMIZERS)}")
    if lr <= 0:
        raise InvalidConfig(f"learning rate must be positive, got {lr}")
    if weight_decay < 0:
        raise InvalidConfig(f"weight_decay must be >= 0, got {weight_decay}")
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)
