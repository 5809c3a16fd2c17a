"""Load a local checkpoint into a network, adapting the first conv and the classifier head.

Only local files are read (no downloads ever). A file may hold a bare state dict or a training
checkpoint dict (``state_dict`` / ``model_state_dict`` / ``model`` / ``network`` / ``net`` /
``weights`` entry), possibly saved from DataParallel/DDP (``module.``) or ``torch.compile``
(``_orig_mod.``). Two mismatches are adapted, each with a logged message:

- input channels: the first conv's kernels are summed over the input channels to go to 1 channel
  (so a grey image copied into R, G and B gives exactly the RGB network's response), or cycled and
  rescaled by ``C_ckpt / C_net`` for other counts (the rule timm uses);
- number of classes: classifier tensors whose shapes differ are left at their initialisation.

Any other missing or mis-shaped tensor raises InvalidConfig naming the file and the tensors.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from medsight.errors import InvalidConfig
from medsight.models.networks.base import Network

log = logging.getLogger(__name__)

_CHECKPOINT_ENTRIES = ("state_dict", "model_state_dict", "model", "network", "net", "weights")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "network.")


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """First-conv kernels (O, C, *k) -> (O, in_channels, *k): sum to 1 channel, else cycle+rescale."""
    source = weight.shape[1]
    if in_channels == source:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_channels / source)
    tiled = weight.repeat(1, repeats, *([1] * (weight.dim() - 2)))[:, :in_channels]
    return tiled * (source / in_channels)


def first_conv_key(network: nn.Module) -> str | None:
    """State-dict key of the first convolution's weight (the one that reads the input channels)."""
    for name, module in network.named_modules():
        weight = getattr(module, "weight", None)
        if hasattr(module, "in_channels") and isinstance(weight, nn.Parameter) and weight.dim() >= 3:
            return f"{name}.weight"
    return None


def read_state_dict(
    source: str | os.PathLike[str] | Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (or mapping), unwrapped from training-checkpoint dicts."""
    label = "<state dict>"
    if isinstance(source, Mapping):
        loaded: object = source
    else:
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise InvalidConfig(f"weights file {path} not found (weights are only read locally)")
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises pickle, zip and runtime errors alike
            raise InvalidConfig(f"cannot read weights file {path}: {exc}") from exc
    state = _find_tensors(loaded)
    if state is None:
        keys = list(loaded)[:8] if isinstance(loaded, Mapping) else type(loaded).__name__
        raise InvalidConfig(f"weights {label}: no state dict of tensors found (top level: {keys})")
    return _strip_wrappers(state)


def load_weights(
    network: Network, source: str | os.PathLike[str] | Mapping[str, torch.Tensor]
) -> None:
    """Copy a local checkpoint into `network` in place, adapting first conv and classifier."""
    label = str(source) if not isinstance(source, Mapping) else "<state dict>"
    state = _rename(read_state_dict(source), network.checkpoint_renames)
    own = network.state_dict()
    conv_key = first_conv_key(network)
    to_load: dict[str, torch.Tensor] = {}
    skipped_head: list[str] = []
    problems: list[str] = []
    for key, target in own.items():
        value = state.get(key)
        if value is None:
            if key.startswith("classifier."):
                skipped_head.append(key)
            elif not key.endswith("num_batches_tracked"):
                problems.append(f"{key} missing")
            continue
        if value.shape == target.shape:
            to_load[key] = value
        elif key == conv_key and _differs_only_in_channels(value, target):
            to_load[key] = adapt_input_channels(value, target.shape[1])
            log.info("%s: first conv %s adapted from %d to %d input channels (%s)", label, key,
                     value.shape[1], target.shape[1], "sum" if target.shape[1] == 1 else "cycle")
        elif key.startswith("classifier."):
            skipped_head.append(key)
        else:
            problems.append(f"{key} is {tuple(value.shape)} in the file, "
                            f"{tuple(target.shape)} in the network")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InvalidConfig(
            f"weights {label} do not fit network {network.name}: {'; '.join(problems[:5])}{more}"
        )
    if skipped_head:
        log.info("%s: classifier tensors %s left at initialisation (network has %d classes; "
                 "the checkpoint's head differs)", label, ", ".join(skipped_head),
                 network.num_classes)
    unused = sorted(set(state) - set(own))
    if unused:
        log.warning("%s: %d tensors not used by %s: %s", label, len(unused), network.name,
                    ", ".join(unused[:5]))
    network.load_state_dict(to_load, strict=False)


def _find_tensors(loaded: object) -> dict[str, torch.Tensor] | None:
    if not isinstance(loaded, Mapping) or not loaded:
        return None
    if all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return dict(loaded)
    for entry in _CHECKPOINT_ENTRIES:
        found = _find_tensors(loaded.get(entry))
        if found is not None:
            return found
    return None


def _strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    stripped = bool(state)
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    return state


def _rename(state: dict[str, torch.Tensor], renames: Mapping[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def _differs_only_in_channels(value: torch.Tensor, target: torch.Tensor) -> bool:
    return (value.dim() == target.dim() and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:])
