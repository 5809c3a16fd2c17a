"""Alignment (registration) with SimpleITK: `register` one image onto another, the `align` step
that registers every sample to a fixed reference, and `build_template` (a mean image) to use as
that reference.

Registration runs in pixel units (spacing 1, origin 0) on the channel mean, multi-resolution,
with Mattes mutual information (or mean squares / correlation) and regular-step gradient descent
from a geometry-centred initial transform; the transform found is applied to every channel.
It uses a fixed number of threads (1 by default) so the result replays to the same bytes.
SimpleITK is imported on the first registration, not with the module.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import math
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsight.errors import BundleIntegrityError, InvalidConfig, InvalidDataset, MedsightError
from medsight.io.image import Image
from medsight.preprocess.base import Step, _short_repr, gray, record, register_step, to_plain
from medsight.preprocess.geometry import resize_pixels

if TYPE_CHECKING:
    import SimpleITK as sitk

log = logging.getLogger(__name__)

TRANSFORMS = ("translation", "rigid", "affine")
METRICS = ("mattes", "mean_squares", "correlation")


def _to_sitk(array: np.ndarray) -> sitk.Image:
    import SimpleITK as sitk

    return sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))


def _initial_transform(kind: str, fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    import SimpleITK as sitk

    dim = fixed.GetDimension()
    if kind == "translation":
        return sitk.TranslationTransform(dim)
    base = (sitk.Euler2DTransform() if dim == 2 else sitk.Euler3DTransform()) if kind == "rigid" \
        else sitk.AffineTransform(dim)
    return sitk.CenteredTransformInitializer(
        fixed, moving, base, sitk.CenteredTransformInitializerFilter.GEOMETRY
    )


def _shrink_schedule(shape: tuple[int, ...]) -> tuple[list[int], list[float]]:
    """Pyramid levels (shrink factors 4, 2, 1) keeping at least 24 pixels per axis."""
    shrink = [s for s in (4, 2) if min(shape) / s >= 24] + [1]
    smooth = [{4: 2.0, 2: 1.0, 1: 0.0}[s] for s in shrink]
    return shrink, smooth


def _describe_transform(kind: str, tx: sitk.Transform, dim: int) -> dict[str, Any]:
    """Plain parameters plus a readable shift (array axis order) and rotation/matrix."""
    out: dict[str, Any] = {
        "transform": kind,
        "parameters": list(tx.GetParameters()),
        "fixed_parameters": list(tx.GetFixedParameters()),
    }
    if kind == "translation":
        xyz = list(tx.GetParameters())
    else:
        xyz = list(tx.GetTranslation())
        matrix = np.asarray(tx.GetMatrix()).reshape(dim, dim)
        out["matrix_xyz"] = matrix.tolist()
        if kind == "rigid" and dim == 2:
            out["rotation_deg"] = math.degrees(tx.GetAngle())
        elif kind == "rigid":
            out["rotation_deg_xyz"] = [
                math.degrees(a) for a in (tx.GetAngleX(), tx.GetAngleY(), tx.GetAngleZ())
            ]
    out["shift"] = xyz[::-1]
    return out


def register(
    moving: Image,
    fixed: Image,
    transform: str = "rigid",
    metric: str = "mattes",
    iterations: int = 200,
    fill: float | str = "min",
    threads: int = 1,
) -> tuple[Image, dict[str, Any]]:
    """Register `moving` onto `fixed`; return it resampled on the fixed grid and the transform.

    The transform maps fixed pixel coordinates to moving ones, so ``shift`` (array axis order,
    pixels) is where the moving content sits relative to the fixed one and ``rotation_deg`` is
    the ITK angle (x towards y). Pixels mapped from outside the moving image get `fill` (a number
    or ``"min"``, the channel minimum). Output spacing/origin/direction are the fixed image's.
    """
    import SimpleITK as sitk

    _check_options(transform, metric, iterations, fill, threads)
    if moving.is_volume != fixed.is_volume:
        raise InvalidConfig(
            f"cannot register {moving.source} ({moving.pixels.ndim - 1}D) onto "
            f"{fixed.source} ({fixed.pixels.ndim - 1}D): dimensions differ"
        )
    f_img = _to_sitk(gray(fixed.pixels))
    m_img = _to_sitk(gray(moving.pixels))
    dim = f_img.GetDimension()
    tx = _initial_transform(transform, f_img, m_img)

    reg = sitk.ImageRegistrationMethod()
    if metric == "mattes":
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    elif metric == "mean_squares":
        reg.SetMetricAsMeanSquares()
    else:
        reg.SetMetricAsCorrelation()
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=int(iterations),
        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    shrink, smooth = _shrink_schedule(fixed.spatial_shape)
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(smooth)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(tx, inPlace=True)
    reg.SetNumberOfThreads(int(threads))
    try:
        reg.Execute(f_img, m_img)
    except RuntimeError as exc:
        raise MedsightError(
            f"registration of {moving.source} onto {fixed.source} failed: {exc}"
        ) from exc

    channels = []
    for c in moving.pixels:
        value = float(c.min()) if fill == "min" else float(fill)
        res = sitk.Resample(_to_sitk(c), f_img, tx, sitk.sitkLinear, value, sitk.sitkFloat32)
        channels.append(sitk.GetArrayFromImage(res))
    out = Image(
        pixels=np.stack(channels).astype(np.float32),
        spacing=fixed.spacing,
        direction=fixed.direction,
        origin=fixed.origin,
        modality=moving.modality,
        photometric=moving.photometric,
        ids=moving.ids,
        source=moving.source,
        metadata=dict(moving.metadata),
    )
    params = _describe_transform(transform, tx, dim)
    params.update(
        metric=metric,
        metric_value=float(reg.GetMetricValue()),
        optimizer_iterations=int(reg.GetOptimizerIteration()),
        stop_condition=reg.GetOptimizerStopConditionDescription(),
    )
    return out, to_plain(params)


def _check_options(transform: Any, metric: Any, iterations: Any, fill: Any, threads: Any) -> None:
    if transform not in TRANSFORMS:
        raise InvalidConfig(f"align: transform must be one of {TRANSFORMS}, got {transform!r}")
    if metric not in METRICS:
        raise InvalidConfig(f"align: metric must be one of {METRICS}, got {metric!r}")
    for what, v in (("iterations", iterations), ("threads", threads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidConfig(f"align: {what} must be an int >= 1, got {v!r}")
    if fill != "min" and (isinstance(fill, bool) or not isinstance(fill, (int, float))):
        raise InvalidConfig(f"align: fill must be a number or 'min', got {fill!r}")


# -- reference images on disk ----------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_reference(image: Image, path: str | Path) -> str:
    """Write a reference/template image to `path` (``.npz``: pixels, spacing, geometry).

    Returns the file's sha256, to pin in the `Align` step. The file is written deterministically
    (no timestamps) so the same template gives the same bytes.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise InvalidConfig(f"reference images are saved as .npz; got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"pixels": image.pixels.astype(np.float32), "spacing": np.asarray(image.spacing)}
    if image.origin is not None:
        arrays["origin"] = np.asarray(image.origin, dtype=float)
    if image.direction is not None:
        arrays["direction"] = np.asarray(image.direction, dtype=float)
    # np.savez stamps the current time into the zip; fixed dates keep the bytes reproducible
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                        buf.getvalue())
    return file_sha256(path)


def load_reference(path: str | Path) -> Image:
    """Read a reference image: our ``.npz`` (see `save_reference`), ``.npy`` pixels, or any
    file `medsight.io.read_image` understands."""
    path = Path(path)
    if not path.is_file():
        raise InvalidConfig(f"align: reference image {path} not found")
    if path.suffix in (".npz", ".npy"):
        try:
            data = np.load(path, allow_pickle=False)
            if path.suffix == ".npy":
                pixels, extra = data, {}
            else:
                pixels = data["pixels"]
                extra = {k: data[k] for k in ("spacing", "origin", "direction") if k in data.files}
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidConfig(f"align: cannot read reference {path}: {exc}") from exc
        if pixels.ndim == 2:
            pixels = pixels[None]
        return Image(
            pixels=pixels,
            spacing=tuple(extra.get("spacing", ())),
            origin=tuple(extra["origin"]) if "origin" in extra else None,
            direction=extra.get("direction"),
            source=str(path),
        )
    from medsight.io import read_image

    return read_image(path)


_EMBEDDED_KEYS = {"npy", "spacing", "origin", "direction"}


def _npy_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(pixels), allow_pickle=False)
    return buf.getvalue()


def embed_reference(image: Image) -> dict[str, Any]:
    """A reference image as JSON: pixels as a base64 ``.npy`` (no pickle), plus its geometry.

    This is how an `Align` step is saved, so a saved chain (and the model holding it) needs no
    file beside it; the bytes are deterministic, so the chain's fingerprint pins the content.
    """
    return to_plain({
        "npy": base64.b64encode(_npy_bytes(image.pixels)).decode("ascii"),
        "spacing": list(image.spacing),
        "origin": None if image.origin is None else list(image.origin),
        "direction": None if image.direction is None else np.asarray(image.direction).tolist(),
    })


def _decode_reference(data: Mapping[str, Any]) -> Image:
    """The `Image` of an `embed_reference` mapping; anything malformed is an `InvalidConfig`."""
    if set(data) != _EMBEDDED_KEYS:
        raise InvalidConfig(f"align: an embedded reference has the keys {sorted(_EMBEDDED_KEYS)}, "
                            f"got {sorted(data)}")
    try:
        raw = base64.b64decode(str(data["npy"]), validate=True)
        pixels = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    except (binascii.Error, ValueError, OSError) as exc:
        raise InvalidConfig(f"align: the embedded reference is not a base64 .npy array: {exc}") from exc
    if pixels.ndim not in (3, 4) or pixels.dtype.kind not in "biuf":
        raise InvalidConfig(f"align: the embedded reference must be numeric (C, [D,] H, W) pixels, "
                            f"got {pixels.dtype} {pixels.shape}")
    try:
        return Image(pixels=pixels, spacing=tuple(data["spacing"] or ()),
                     origin=None if data["origin"] is None else tuple(data["origin"]),
                     direction=None if data["direction"] is None else np.asarray(data["direction"]),
                     source="<embedded align reference>")
    except (TypeError, ValueError) as exc:
        raise InvalidConfig(f"align: the embedded reference's geometry is invalid: {exc}") from exc


@register_step("align")
class Align(Step):
    """Register each image onto a reference (rigid, affine or translation; SimpleITK).

    ``reference`` is a path to an image file (relative paths resolve against the chain's base
    folder, e.g. a config's folder), an in-memory `Image`, or the embedded form `to_dict` writes
    (`embed_reference`): a saved chain always holds the reference pixels themselves, so a model
    folder or bundle copied elsewhere aligns the same without the original file.
    ``reference_sha256`` pins a reference file's content so a changed template is caught. The
    output lies on the reference grid; the transform found is recorded in the metadata (see
    `register`), with the sha256 of the reference pixels.
    """

    def __init__(
        self,
        reference: str | os.PathLike[str] | Image | Mapping[str, Any],
        transform: str = "rigid",
        metric: str = "mattes",
        iterations: int = 200,
        fill: float | str = "min",
        threads: int = 1,
        reference_sha256: str | None = None,
    ) -> None:
        self.reference = reference
        self.transform = transform
        self.metric = metric
        self.iterations = iterations
        self.fill = fill
        self.threads = threads
        self.reference_sha256 = reference_sha256
        _check_options(transform, metric, iterations, fill, threads)
        self._base_dir: str | None = None
        self._reference_image: Image | None = None
        self._reference_digest: str | None = None
        if isinstance(reference, Image):
            self._reference_image = reference
        elif isinstance(reference, Mapping):
            self._reference_image = _decode_reference(reference)
        elif not isinstance(reference, (str, os.PathLike)):
            raise InvalidConfig(f"align: reference must be a path, an Image or an embedded "
                                f"reference, got {_short_repr(reference)}")

    def params(self) -> dict[str, Any]:
        p = super().params()
        if isinstance(p["reference"], os.PathLike):
            p["reference"] = os.fspath(p["reference"])
        return p

    def to_dict(self) -> dict[str, Any]:
        """The step with its reference pixels embedded (a file reference is read, and checked)."""
        params = {**self.params(), "reference": embed_reference(self.reference_image()),
                  "reference_sha256": None}
        return {"name": self.name, "params": to_plain(params)}

    def __repr__(self) -> str:
        parts = []
        for key, value in self.params().items():
            if key == "reference" and not isinstance(value, (str, os.PathLike)):
                px = self.reference_image().pixels
                parts.append(f"reference=<{'x'.join(map(str, px.shape))} {px.dtype} pixels>")
            else:
                parts.append(f"{key}={_short_repr(value)}")
        return f"{self.name}({', '.join(parts)})"

    def with_base_dir(self, base_dir: str) -> Align:
        step = Align(**self.params())
        step._base_dir = str(base_dir)
        return step

    def reference_path(self) -> Path | None:
        """Where the reference file is read from (None for an in-memory or embedded reference)."""
        if not isinstance(self.reference, (str, os.PathLike)):
            return None
        p = Path(self.reference)
        return p if p.is_absolute() or self._base_dir is None else Path(self._base_dir) / p

    def reference_image(self) -> Image:
        """The reference, read (and checked against `reference_sha256`) on first use."""
        if self._reference_image is None:
            path = self.reference_path()
            assert path is not None
            if self.reference_sha256 is not None and path.is_file():
                digest = file_sha256(path)
                if digest != self.reference_sha256:
                    raise BundleIntegrityError(
                        f"align reference {path} has sha256 {digest}, expected "
                        f"{self.reference_sha256}: the file changed since the chain was saved"
                    )
            self._reference_image = load_reference(path)
        return self._reference_image

    def save_reference(self, path: str | Path) -> Align:
        """This step with its reference written to `path` (``.npz``) and pinned by sha256."""
        digest = save_reference(self.reference_image(), path)
        params = {**self.params(), "reference": str(path), "reference_sha256": digest}
        return Align(**params)

    @classmethod
    def from_template(
        cls,
        images: Any,
        path: str | Path,
        n: int = 8,
        preprocess: Callable[[Image], Image] | None = None,
        **kwargs: Any,
    ) -> Align:
        """Build a template from `images` (see `build_template`), save it and align to it."""
        template = build_template(
            images, n=n, preprocess=preprocess, transform=kwargs.get("transform", "rigid")
        )
        digest = save_reference(template, path)
        return cls(reference=str(path), reference_sha256=digest, **kwargs)

    def apply(self, image: Image) -> Image:
        ref = self.reference_image()
        out, params = register(
            image, ref, self.transform, self.metric, self.iterations, self.fill, self.threads
        )
        return record(out, self.name, reference_pixels_sha256=self.reference_digest(), **params)

    def reference_digest(self) -> str:
        """sha256 (hex) of the reference pixels as embedded: the same for a file, an in-memory
        image or a reloaded chain holding the same reference."""
        if self._reference_digest is None:
            self._reference_digest = hashlib.sha256(_npy_bytes(self.reference_image().pixels)).hexdigest()
        return self._reference_digest


def _pick_images(images: Any, n: int) -> list[Image]:
    """Up to `n` evenly spaced images from a Dataset or a sequence of Images; bad ones skipped."""
    from medsight.data.dataset import Dataset

    total = len(images)
    if total == 0:
        raise InvalidDataset("build_template: no images given")
    idx = sorted(set(np.linspace(0, total - 1, min(n, total)).round().astype(int).tolist()))
    out: list[Image] = []
    for i in idx:
        if isinstance(images, Dataset):
            try:
                out.append(images.image(i))
            except MedsightError as exc:
                log.warning("build_template: skipping record %d (%s): %s",
                            i, images.records[i].ref, exc)
        else:
            out.append(images[i])
    if not out:
        raise InvalidDataset(f"build_template: none of the {len(idx)} chosen images could be read")
    return out


def build_template(
    images: Any,
    n: int = 8,
    preprocess: Callable[[Image], Image] | None = None,
    transform: str = "rigid",
    refine: int = 1,
) -> Image:
    """A template for `Align`: the mean of `n` evenly spaced samples of a Dataset (or a sequence
    of Images), each optionally passed through `preprocess` first.

    Images are resized to the first one's grid (channels must agree). With ``refine`` > 0 every
    sample is then registered onto the current mean and the mean recomputed, `refine` times, so
    the template is sharp rather than a blur of misaligned samples.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidConfig(f"build_template: n must be an int >= 1, got {n!r}")
    picked: Sequence[Image] = _pick_images(images, n)
    if preprocess is not None:
        picked = [preprocess(im) for im in picked]
    first = picked[0]
    stack = []
    for im in picked:
        if im.channels != first.channels or im.is_volume != first.is_volume:
            raise InvalidDataset(
                f"build_template: {im.source} has shape {im.pixels.shape}, incompatible with "
                f"{first.source} {first.pixels.shape}"
            )
        stack.append(resize_pixels(im.pixels, first.spatial_shape, order=1, anti_aliasing=True))
    samples = [first.with_pixels(px) for px in stack]
    mean = np.mean(np.stack(stack), axis=0).astype(np.float32)
    for _ in range(max(int(refine), 0)):
        template = first.with_pixels(mean)
        aligned = [register(s, template, transform=transform)[0].pixels for s in samples]
        mean = np.mean(np.stack(aligned), axis=0).astype(np.float32)
    out = first.with_pixels(mean)
    out.source = f"template(mean of {len(samples)} images)"
    out.metadata = {"template": {"n": len(samples), "sources": [s.source for s in samples]}}
    return out
