"""Image features as scikit-learn transformers: statistics, HOG, LBP, GLCM, shape, CNN embeddings.

Inputs and channel/volume handling are described in ``medsight.features.base``; extractors are
built by name with ``make_features`` and new ones join with ``register_feature``.
"""

from medsight.features.base import ImageFeatureExtractor
from medsight.features.cnn import CNNEmbedding
from medsight.features.hog import HOG
from medsight.features.registry import available_features, feature_factory, register_feature
from medsight.features.shape import ShapeFeatures as ShapeFeatures  # re-export; registers "shape"
from medsight.features.stats import GlobalStats
from medsight.features.texture import GLCM, LBP
from medsight.features.union import make_features

__all__ = [
    "CNNEmbedding",
    "GLCM",
    "HOG",
    "LBP",
    "GlobalStats",
    "ImageFeatureExtractor",
    "available_features",
    "feature_factory",
    "make_features",
    "register_feature",
]
