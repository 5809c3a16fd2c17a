"""Image fingerprints: exact hashes of decoded pixels and file bytes, and a 64-bit DCT pHash.

Exact hashes find byte-for-byte and pixel-for-pixel copies; the perceptual hash (pHash) finds
candidate near copies (re-encoded, rescaled, slightly shifted) by a small Hamming distance, and a
tiny normalised thumbnail confirms that two candidates really show the same picture.
"""

from __future__ import annotations

import hashlib
from os import PathLike

import numpy as np
from scipy.fft import dctn
from scipy.ndimage import gaussian_filter
from skimage.transform import resize

PHASH_SIZE = 8  # 8 x 8 low-frequency DCT coefficients -> 64 bits
_PHASH_RESIZE = 32
THUMB_SIZE = 16  # thumbnail side: 256 values (512 bytes as float16) kept per record
_THUMB_BLUR = 0.5  # pixels of the thumbnail: evens out re-encoding and sensor noise

__all__ = ["file_hash", "hamming", "phash", "pixel_hash", "thumbnail", "thumbnail_difference"]


def pixel_hash(pixels: np.ndarray) -> str:
    """SHA-256 of the decoded pixels (shape and dtype included), hex."""
    arr = np.ascontiguousarray(pixels)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def file_hash(path: str | PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's raw bytes, hex, read in chunks (memory stays bounded)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _to_plane(pixels: np.ndarray) -> np.ndarray:
    """One 2D float plane: channels averaged, a volume averaged along depth."""
    arr = np.asarray(pixels, dtype=np.float64)
    if arr.ndim >= 3:  # (C,H,W) or (C,D,H,W): average everything but the last two axes
        arr = arr.reshape(-1, *arr.shape[-2:]).mean(axis=0)
    if arr.ndim != 2:
        raise ValueError(f"pHash needs a 2D image or (C,H,W)/(C,D,H,W) pixels, got {arr.shape}")
    return np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)


def phash(pixels: np.ndarray) -> int:
    """64-bit perceptual hash: DCT of a 32x32 resize, top-left 8x8, bits above their median.

    Brightness/contrast scaling and resampling leave it (nearly) unchanged, so near copies
    differ in few bits. Colour channels and volume slices are averaged first.
    """
    plane = _to_plane(pixels)
    small = resize(plane, (_PHASH_RESIZE, _PHASH_RESIZE), order=1, anti_aliasing=True)
    low = dctn(small, type=2, norm="ortho")[:PHASH_SIZE, :PHASH_SIZE]
    bits = (low > np.median(low)).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """A 16x16 plane, lightly blurred and normalised to mean 0 and standard deviation 1, as
    float16: brightness and contrast drop out, so near copies have near-equal thumbnails."""
    small = resize(_to_plane(pixels), (THUMB_SIZE, THUMB_SIZE), order=1, anti_aliasing=True)
    small = gaussian_filter(small, _THUMB_BLUR, mode="nearest")
    small -= small.mean()
    sd = small.std()
    return (small / sd if sd > 0 else small).astype(np.float16).ravel()


def thumbnail_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference between thumbnails (in standard deviations), row-wise for 2D input."""
    diff = np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32))
    return diff.mean(axis=-1)
