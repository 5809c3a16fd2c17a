"""Denoising steps: median filter (salt-and-pepper, speckle) and non-local means with the noise
level estimated from each image. Both filter spatial axes only, channel by channel."""

from __future__ import annotations

import numpy as np

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess.base import Step, record, register_step


def _positive_int(value: object, what: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidConfig(f"{what} must be an int >= {minimum}, got {value!r}")


def estimate_noise_sigma(x: np.ndarray) -> float:
    """Gaussian noise standard deviation of an array (2D or 3D), robust to image content.

    Donoho's wavelet estimator, as in skimage ``estimate_sigma`` (which needs PyWavelets, not a
    medsight dependency): the median absolute finest-scale diagonal detail coefficient / 0.6745,
    here with the orthonormal Haar wavelet.
    """
    d = np.asarray(x, dtype=np.float64)
    for axis in range(d.ndim):
        n = d.shape[axis] - d.shape[axis] % 2
        if n < 2:
            return 0.0
        even = np.take(d, np.arange(0, n, 2), axis=axis)
        odd = np.take(d, np.arange(1, n, 2), axis=axis)
        d = (even - odd) / np.sqrt(2.0)
    return float(np.median(np.abs(d)) / 0.6745)


@register_step("median")
class Median(Step):
    """Median filter of ``size`` pixels along every spatial axis (each channel separately)."""

    def __init__(self, size: int = 3) -> None:
        self.size = size
        _positive_int(size, "median size")

    def apply(self, image: Image) -> Image:
        footprint = (1,) + (self.size,) * len(image.spatial_shape)
        from scipy import ndimage

        out = ndimage.median_filter(image.pixels, size=footprint, mode="reflect")
        return record(image.with_pixels(out), self.name, size=self.size)


@register_step("nl_means")
class NLMeans(Step):
    """Non-local means denoising (skimage ``denoise_nl_means``), 2D or 3D, per channel.

    The noise standard deviation ``sigma`` is estimated per channel (`estimate_noise_sigma`) and the
    filter strength is ``h * sigma``, so ``h`` is relative to the noise (0.6-1.2 is typical).
    ``patch_size`` and ``patch_distance`` are in pixels.
    """

    def __init__(
        self, h: float = 0.8, patch_size: int = 5, patch_distance: int = 6, fast_mode: bool = True
    ) -> None:
        self.h = h
        self.patch_size = patch_size
        self.patch_distance = patch_distance
        self.fast_mode = fast_mode
        if isinstance(h, bool) or not isinstance(h, (int, float)) or h <= 0:
            raise InvalidConfig(f"nl_means h must be a positive number, got {h!r}")
        _positive_int(patch_size, "nl_means patch_size")
        _positive_int(patch_distance, "nl_means patch_distance")

    def apply(self, image: Image) -> Image:
        from skimage.restoration import denoise_nl_means

        chans, sigmas = [], []
        for c in image.pixels.astype(np.float64):
            sigma = estimate_noise_sigma(c)
            sigmas.append(sigma)
            if sigma <= 0:
                chans.append(c)
                continue
            chans.append(
                denoise_nl_means(
                    c, h=self.h * sigma, sigma=sigma, patch_size=self.patch_size,
                    patch_distance=self.patch_distance, fast_mode=bool(self.fast_mode),
                    preserve_range=True,
                )
            )
        out = image.with_pixels(np.stack(chans).astype(np.float32))
        return record(out, self.name, sigma=sigmas)
