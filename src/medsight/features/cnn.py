"""CNN embeddings as features for the classical pipeline (``features=["cnn"]``).

torch and the network registry load when the extractor is fitted, not when ``medsight.features``
is imported, so the hand-crafted features stay usable (and deployable) without torch.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from medsight.errors import InvalidConfig
from medsight.features.base import group_pixels
from medsight.features.registry import register_feature


@register_feature("cnn")
class CNNEmbedding(TransformerMixin, BaseEstimator):
    """The global-average-pooled last feature maps of a network: ``cnn_0 .. cnn_{F-1}``.

    ``model``: folder of a saved `TorchClassifier` (its trained network embeds; inputs must be
    preprocessed as that model's chain does) or None, then ``network`` is built with ``weights``
    (a local pretrained checkpoint; without one the features are those of a seeded random
    network, a weak baseline).
    """

    def __init__(self, model: str | None = None, network: str = "resnet18_28",
                 weights: str | None = None, batch_size: int = 128, device: str = "auto",
                 seed: int = 0):
        self.model = model
        self.network = network
        self.weights = weights
        self.batch_size = batch_size
        self.device = device
        self.seed = seed

    def fit(self, X: Any, y: Any = None) -> CNNEmbedding:
        """Build (or load) the network; learn the input layout and the feature names."""
        import torch

        from medsight.models.base import load_estimator
        from medsight.models.networks import create_network
        from medsight.models.torch_inference import TorchModel

        _, groups = group_pixels(X)
        channels = int(groups[0].pixels.shape[1])
        if self.model is not None:
            module = getattr(load_estimator(self.model), "model_", None)
            if not isinstance(module, TorchModel):
                raise InvalidConfig(f"cnn features: {self.model} is not a saved TorchClassifier")
            self.module_ = module
        else:
            torch.manual_seed(self.seed)
            net = create_network(self.network, in_channels=channels, weights=self.weights)
            self.module_ = TorchModel(net, channels)
        self.module_.eval()
        n = int(getattr(self.module_.network, "num_features", 0))
        self.feature_names_ = np.asarray([f"cnn_{i}" for i in range(n)], dtype=object)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """(N, F) float64 embeddings, rows in input order."""
        import torch

        from medsight.models.torch_inference import resolve_device

        n, groups = group_pixels(X)
        device = resolve_device(self.device)
        out = np.empty((n, len(self.feature_names_)))
        # a copy off the CPU: transforming never moves the fitted module (threads may share it)
        model = self.module_ if device.type == "cpu" else copy.deepcopy(self.module_).to(device)
        with torch.inference_mode():
            for g in groups:
                for s in range(0, len(g.index), self.batch_size):
                    x = torch.as_tensor(np.asarray(g.pixels[s:s + self.batch_size], np.float32))
                    emb = model.embed(x.to(device)).cpu().numpy()
                    out[g.index[s:s + self.batch_size]] = emb
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.feature_names_.copy()
