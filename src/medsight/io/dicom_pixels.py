"""Decode DICOM pixel data into channels-first float32 values with physical meaning.

What is applied, in order:

1. decoding with pydicom 3's pixel backend and the installed plugins (pylibjpeg, GDCM, Pillow);
   YBR colour is converted to RGB;
2. for monochrome images the Modality LUT: *Rescale Slope/Intercept* (CT in HU), per frame for
   enhanced multi-frame objects, or a *Modality LUT Sequence* (`pydicom.pixels.apply_modality_lut`);
3. MONOCHROME1 is inverted so that high values are bright, as in MONOCHROME2. The inversion is a
   reflection ``out = pivot - value`` where ``pivot = lo + hi`` and ``[lo, hi]`` is the range the
   stored bits can hold after the Modality LUT, so the same device always maps the same way.
   The photometric interpretation reported afterwards is ``MONOCHROME2``;
4. PALETTE COLOR is mapped through its palette to RGB (16-bit palette entries scaled to 0-255).

The VOI LUT / window is *not* applied: it is a display choice that preprocessing makes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, convert_color_space, get_decoder
from pydicom.uid import UID

from medsight.errors import UnreadableImage
from medsight.io.dicom_geometry import float_list, functional_item
from medsight.io.panics import is_panic, panic_reason

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

_PLUGIN_HINTS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg, python-gdcm or Pillow",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg, pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg, pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg, python-gdcm or Pillow",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg, python-gdcm or Pillow",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg >= 2.4",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg >= 2.4",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg >= 2.4",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (pydicom's own RLE decoder also works)",
}


def has_pixel_data(ds: Dataset) -> bool:
    """True when the data set carries any kind of pixel data element."""
    return any(keyword in ds for keyword in PIXEL_KEYWORDS)


def decode(ds: Dataset, source: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Return (pixels as float32 (C,F,H,W), facts) for a data set with pixel data.

    `facts` holds ``photometric`` (after conversion), ``photometric_original``, ``inverted``,
    ``rescale_applied``, ``modality_lut_applied`` and, when used, slope/intercept and
    ``inversion_pivot`` (needed to map window settings to the inverted values).
    """
    tsyntax = UID(ds.file_meta.TransferSyntaxUID)
    raw, decoded_photometric = _decode_raw(ds, tsyntax, source)
    frames = number_of_frames(ds)
    arr = _frames_rows_cols_samples(raw, frames, int(ds.get("SamplesPerPixel", 1) or 1), source)
    original = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    photometric = str(decoded_photometric or original).strip().upper()
    facts: dict[str, Any] = {
        "photometric_original": original or None,
        "inverted": False,
        "rescale_applied": False,
        "modality_lut_applied": False,
    }
    if photometric == "PALETTE COLOR":
        arr = _palette_to_rgb(ds, arr, source, facts)
        photometric = "RGB"
    elif arr.shape[-1] == 3:
        if photometric.startswith("YBR"):
            arr = convert_color_space(arr, photometric, "RGB")
        photometric = "RGB"
    elif photometric in ("MONOCHROME1", "MONOCHROME2", ""):
        arr, low, high = _modality_transform(ds, arr, facts)
        if photometric == "MONOCHROME1":
            pivot = low + high
            arr = pivot - arr
            facts["inverted"] = True
            facts["inversion_pivot"] = pivot
        photometric = "MONOCHROME2"
    facts["photometric"] = photometric
    pixels = np.moveaxis(np.asarray(arr, dtype=np.float32), -1, 0)  # (C, F, H, W)
    return np.ascontiguousarray(pixels), facts


def _decode_raw(ds: Dataset, tsyntax: UID, source: str) -> tuple[np.ndarray, str | None]:
    """Run pydicom's decoder; translate every failure into `UnreadableImage` with the reason."""
    name = f"{tsyntax.name} ({tsyntax})" if tsyntax.name != tsyntax else str(tsyntax)
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise UnreadableImage(
            source, f"unsupported transfer syntax {name}: no pydicom decoder exists for it"
        ) from None
    if not decoder.is_available:
        needs = _PLUGIN_HINTS.get(str(tsyntax)) or "; ".join(decoder.missing_dependencies)
        raise UnreadableImage(
            source,
            f"unsupported transfer syntax {name}: no decoder plugin installed (needs {needs})",
        )
    try:
        arr, meta = decoder.as_array(ds, as_rgb=True)
    except (ValueError, EOFError) as exc:
        message = str(exc)
        if "less than expected" in message or "truncated" in message.lower():
            raise UnreadableImage(source, f"truncated pixel data: {message}") from exc
        raise UnreadableImage(source, f"cannot decode {name} pixel data: {message}") from exc
    except Exception as exc:  # plugin RuntimeErrors, struct errors from broken codestreams, ...
        detail = " ".join(str(exc).split())
        raise UnreadableImage(source, f"cannot decode {name} pixel data: {detail}") from exc
    except BaseException as exc:  # a Rust decoder's panic is no Exception
        if not is_panic(exc):
            raise
        raise UnreadableImage(source, f"cannot decode {name} pixel data: {panic_reason(exc)}") from exc
    photometric = meta.get("photometric_interpretation")
    return arr, (str(photometric) if photometric is not None else None)


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames as an int (1 when absent or empty)."""
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _frames_rows_cols_samples(
    arr: np.ndarray, frames: int, samples: int, source: str
) -> np.ndarray:
    """Reshape pydicom's (R,C) / (R,C,S) / (F,R,C) / (F,R,C,S) output to (F, R, C, S)."""
    if samples > 1 and arr.shape[-1] != samples:
        raise UnreadableImage(source, f"decoded shape {arr.shape} has no {samples} samples axis")
    if samples == 1:
        arr = arr[..., None]
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] != frames:
        raise UnreadableImage(
            source, f"decoded shape {arr.shape} does not match NumberOfFrames={frames}"
        )
    return arr


def _stored_range(ds: Dataset, arr: np.ndarray) -> tuple[float, float]:
    """Smallest and largest value the stored bits can hold (data range for float pixels)."""
    if arr.dtype.kind == "f":
        return float(np.min(arr)), float(np.max(arr))
    bits = int(ds.get("BitsStored") or arr.dtype.itemsize * 8)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def _modality_transform(
    ds: Dataset, arr: np.ndarray, facts: dict[str, Any]
) -> tuple[np.ndarray, float, float]:
    """Apply Rescale (per frame when enhanced) or the Modality LUT; return array and value range."""
    low, high = _stored_range(ds, arr)
    frames = arr.shape[0]
    per_frame = [functional_item(ds, "PixelValueTransformationSequence", f) for f in range(frames)]
    if all(item is not None and "RescaleSlope" in item for item in per_frame):
        slopes = np.array([float_list(item.RescaleSlope)[0] for item in per_frame])
        intercepts = np.array([float_list(item.RescaleIntercept)[0] for item in per_frame])
        out = arr.astype(np.float64) * slopes[:, None, None, None] + intercepts[:, None, None, None]
        facts.update(rescale_applied=True, rescale_slope=float(slopes[0]))
        facts["rescale_intercept"] = float(intercepts[0])
        ends = np.concatenate([low * slopes + intercepts, high * slopes + intercepts])
        return out, float(ends.min()), float(ends.max())
    if ds.get("ModalityLUTSequence"):
        out = apply_modality_lut(arr, ds)
        ends = apply_modality_lut(np.array([low, high]).astype(arr.dtype), ds)
        facts["modality_lut_applied"] = True
        return out, float(np.min(ends)), float(np.max(ends))
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope = float_list(ds.RescaleSlope)
        intercept = float_list(ds.RescaleIntercept)
        if slope and intercept:
            out = arr.astype(np.float64) * slope[0] + intercept[0]
            facts.update(rescale_applied=True, rescale_slope=slope[0])
            facts["rescale_intercept"] = intercept[0]
            ends = (low * slope[0] + intercept[0], high * slope[0] + intercept[0])
            return out, min(ends), max(ends)
    return arr, low, high


def _palette_to_rgb(ds: Dataset, arr: np.ndarray, source: str, facts: dict[str, Any]) -> np.ndarray:
    """Map PALETTE COLOR indices to RGB; palettes with 16-bit entries are scaled to 0-255."""
    try:
        rgb = apply_color_lut(arr[..., 0], ds)
    except Exception as exc:
        raise UnreadableImage(source, f"bad PALETTE COLOR lookup table: {exc}") from exc
    descriptor = float_list(ds.get("RedPaletteColorLookupTableDescriptor"))
    if len(descriptor) == 3 and int(descriptor[2]) == 16:
        facts["palette_scaled_to_8bit"] = True
        return rgb.astype(np.float64) * (255.0 / 65535.0)
    return rgb
