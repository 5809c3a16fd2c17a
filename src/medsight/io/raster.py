"""Read PNG, JPEG and TIFF with Pillow into an `Image`, keeping the native value range.

Values are not rescaled: 8-bit images stay 0-255 and 16-bit images 0-65535 (as float32).
Grey and grey+alpha give one channel; RGB, RGBA (alpha dropped), palette, CMYK and YCbCr give
three RGB channels. A multi-page TIFF puts its pages on the depth axis, ``(C, D, H, W)``; other
formats use their first frame. The EXIF orientation of a single frame is applied, as viewers do.
Spacing is 1.0 (pixel units); the file's dpi, when stated, is kept in ``metadata["dpi"]``.

Decompression bombs are refused before decoding: an image with more than `MAX_PIXELS` pixels
(all pages together) raises `UnreadableImage` "too large". Pillow's own guard
(2 x ``PIL.Image.MAX_IMAGE_PIXELS``) still applies on top and is reported the same way.
Pillow reduces 16-bit RGB(A) PNGs to 8 bits per channel; such images report
``metadata["reduced_to_8bit"] = True``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, ImageSequence, UnidentifiedImageError

from medsight.errors import UnreadableImage
from medsight.io.image import Image

MAX_PIXELS = 100_000_000
"""Largest number of pixels (width x height x pages) `read_raster` accepts; change to tune."""

_GREY_MODES = {"L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_DROP_ALPHA = {"LA": 1, "RGBA": 3, "RGBX": 3}
_EXIF_ORIENTATION = 0x0112


def read_raster(source: str | Path | BinaryIO, name: str | None = None) -> Image:
    """Decode a PNG, JPEG or TIFF file (or file-like) into a float32 channels-first `Image`."""
    label = str(name if name is not None else source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(source) as im:
                return _decode(im, label)
    except UnreadableImage:
        raise
    except PILImage.DecompressionBombError as exc:
        raise UnreadableImage(label, f"too large: {exc}") from exc
    except FileNotFoundError:
        raise UnreadableImage(label, "file not found") from None
    except UnidentifiedImageError as exc:
        raise UnreadableImage(label, f"not a PNG, JPEG or TIFF Pillow can identify: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = "truncated image data" if "truncated" in str(exc).lower() else "corrupt image"
        raise UnreadableImage(label, f"{reason}: {exc}") from exc


def _decode(im: PILImage.Image, label: str) -> Image:
    """Check the size, then convert every page and stack them."""
    width, height = im.size
    pages = int(getattr(im, "n_frames", 1) or 1) if im.format == "TIFF" else 1
    total = width * height * pages
    if total > MAX_PIXELS:
        raise UnreadableImage(
            label,
            f"too large: {width}x{height}x{pages} = {total} pixels exceeds "
            f"medsight.io.raster.MAX_PIXELS = {MAX_PIXELS}",
        )
    metadata: dict[str, Any] = {
        "format": (im.format or "").lower() or None,
        "mode": im.mode,
        "width": width,
        "height": height,
    }
    if "dpi" in im.info:
        metadata["dpi"] = tuple(float(v) for v in im.info["dpi"])
    if _is_reduced_16bit_rgb_png(im):
        metadata["reduced_to_8bit"] = True
    if pages == 1:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation not in (1, None):
            metadata["exif_orientation"] = int(orientation)
            im = ImageOps.exif_transpose(im)
        pixels, photometric = _frame_array(im)
    else:
        frames = [_frame_array(page.copy()) for page in ImageSequence.Iterator(im)]
        shapes = {f[0].shape for f in frames}
        if len(shapes) != 1:
            raise UnreadableImage(label, f"TIFF pages differ in size or channels: {sorted(shapes)}")
        pixels = np.stack([f[0] for f in frames], axis=1)
        photometric = frames[0][1]
        metadata["pages"] = pages
    return Image(pixels=pixels, photometric=photometric, source=label, metadata=metadata)


def _frame_array(im: PILImage.Image) -> tuple[np.ndarray, str]:
    """One frame as a (C, H, W) float32 array and its photometric ("MONOCHROME2" or "RGB")."""
    mode = im.mode
    if mode == "1":
        im, mode = im.convert("L"), "L"
    elif mode in ("P", "PA"):
        im, mode = im.convert("RGBA"), "RGBA"
    elif mode not in _GREY_MODES and mode not in _DROP_ALPHA and mode != "RGB":
        im, mode = im.convert("RGB"), "RGB"  # CMYK, YCbCr, LAB, HSV, La, RGBa ...
    arr = np.asarray(im)
    if mode in _DROP_ALPHA:
        arr = arr[..., : _DROP_ALPHA[mode]]
    arr = arr.astype(np.float32)
    if arr.ndim == 2:
        return arr[None], "MONOCHROME2"
    if arr.shape[-1] == 1:
        return np.moveaxis(arr, -1, 0), "MONOCHROME2"
    return np.ascontiguousarray(np.moveaxis(arr, -1, 0)), "RGB"


def _is_reduced_16bit_rgb_png(im: PILImage.Image) -> bool:
    """True for a 16-bit colour PNG (raw mode ``RGB;16B``), which Pillow decodes to 8 bits."""
    if im.format != "PNG" or im.mode not in ("RGB", "RGBA"):
        return False
    return any(";16" in str(tile.args) for tile in (im.tile or []))
