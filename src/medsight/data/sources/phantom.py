"""Procedural chest-like phantoms with known lesions: a built-in seeded dataset for demos/tests.

Each image is a body ellipse with two darker lung fields, mediastinum, heart, spine, rib-like
bands, lung texture and noise; a lesion image adds 1-3 round bright nodules inside the lungs,
some small or faint, with their boxes recorded. Pixels are regenerated from the reference
``phantom:seed=S;size=N;index=I`` identically every time, so nothing is stored on disk. Images of
the same patient share their anatomy, so splits must be grouped by patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from medsight.boxes import Boxes
from medsight.data.dataset import Dataset, Record, Task
from medsight.data.refs import register_scheme
from medsight.errors import InvalidConfig, UnreadableImage
from medsight.io.image import Image

CLASSES = ("normal", "lesion")
DETECTION_CLASSES = ("lesion",)
DEFAULT_LESION_FRACTION = 0.5
_LABEL_BLOCK = 100  # labels are balanced exactly within each block of 100 indices
_PAIR_BLOCK = 10  # patient pairing is decided per block of 10 indices
_PAIR_PROB = 0.35  # chance that two consecutive images belong to one patient

# Independent random streams per (seed, purpose, index) so one stream never shifts another.
_ANATOMY, _POSE, _LESIONS, _NOISE, _PAIRS, _LABELS, _SPLITS = range(7)


@dataclass(frozen=True)
class _Ellipse:
    cx: float
    cy: float
    ax: float
    ay: float
    angle: float = 0.0

    def rho(self, u: np.ndarray | float, v: np.ndarray | float, grow: float = 0.0) -> Any:
        """Normalised radius: < 1 inside the ellipse whose axes are enlarged by `grow`."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        du, dv = u - self.cx, v - self.cy
        x, y = c * du + s * dv, -s * du + c * dv
        return np.sqrt((x / (self.ax + grow)) ** 2 + (y / (self.ay + grow)) ** 2)


@dataclass(frozen=True)
class _Anatomy:
    body: _Ellipse
    lungs: tuple[_Ellipse, _Ellipse]
    heart: _Ellipse
    spine: _Ellipse
    mediastinum_halfwidth: float
    levels: tuple[float, float, float, float, float]  # body, lung, mediastinum, heart, spine
    rib_freq: float
    rib_phase: float
    texture_seed: int


@dataclass(frozen=True)
class _Lesion:
    u: float
    v: float
    r: float
    contrast: float


def _rng(seed: int, purpose: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), purpose, int(index)])


def anatomy_key(seed: int, index: int) -> int:
    """Index of the first image of this image's patient (pairs share a patient and anatomy)."""
    block, pos = divmod(int(index), _PAIR_BLOCK)
    paired = _rng(seed, _PAIRS, block).random(_PAIR_BLOCK // 2) < _PAIR_PROB
    return index - 1 if pos % 2 == 1 and paired[pos // 2] else index


def phantom_label(seed: int, index: int, lesion_fraction: float = DEFAULT_LESION_FRACTION) -> int:
    """1 when image `index` has lesions; exactly `lesion_fraction` of each block of 100 do."""
    block, pos = divmod(int(index), _LABEL_BLOCK)
    order = _rng(seed, _LABELS, block).permutation(_LABEL_BLOCK)
    return int(order[pos] < round(_LABEL_BLOCK * lesion_fraction))


def _anatomy(seed: int, key: int, dx: float, dy: float) -> _Anatomy:
    g = _rng(seed, _ANATOMY, key)
    cx, cy = g.normal(0.0, 0.02) + dx, 0.04 + g.normal(0.0, 0.02) + dy
    body = _Ellipse(cx, cy, g.uniform(0.80, 0.92), g.uniform(0.66, 0.78))
    left, right = (
        _Ellipse(
            cx + side * g.uniform(0.36, 0.42),
            cy + g.uniform(-0.12, -0.04),
            g.uniform(0.21, 0.27),
            g.uniform(0.40, 0.50),
            side * g.uniform(0.05, 0.20),
        )
        for side in (-1.0, 1.0)
    )
    lungs = (left, right)
    heart = _Ellipse(
        cx + g.uniform(0.08, 0.16),
        cy + g.uniform(0.16, 0.24),
        g.uniform(0.17, 0.23),
        g.uniform(0.16, 0.22),
        g.uniform(-0.3, 0.3),
    )
    spine = _Ellipse(cx, cy + g.uniform(0.50, 0.56), g.uniform(0.08, 0.10), g.uniform(0.10, 0.13))
    levels = (
        g.uniform(0.50, 0.58),
        g.uniform(0.12, 0.20),
        g.uniform(0.66, 0.74),
        g.uniform(0.58, 0.66),
        g.uniform(0.86, 0.94),
    )
    return _Anatomy(
        body,
        lungs,
        heart,
        spine,
        g.uniform(0.07, 0.10),
        levels,
        g.uniform(5.5, 7.0),
        g.uniform(0.0, 1.0),
        int(g.integers(2**31)),
    )


def _in_free_lung(a: _Anatomy, u: float, v: float, r: float) -> bool:
    """True when a disc of radius r at (u, v) lies in a lung, clear of heart and mediastinum."""
    in_lung = any(lung.rho(u, v) <= 1.0 - r / min(lung.ax, lung.ay) for lung in a.lungs)
    clear_heart = a.heart.rho(u, v, grow=r) >= 1.0
    clear_mid = abs(u - a.body.cx) >= a.mediastinum_halfwidth + r
    return bool(in_lung and clear_heart and clear_mid)


def _lesions(seed: int, index: int, a: _Anatomy) -> list[_Lesion]:
    g = _rng(seed, _LESIONS, index)
    count = int(g.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    out: list[_Lesion] = []
    for _ in range(count):
        r = g.uniform(0.05, 0.13)
        faint = g.random() < 0.25  # a quarter of nodules are faint, some of them also small
        contrast = g.uniform(0.12, 0.22) if faint else g.uniform(0.25, 0.50)
        lung = a.lungs[int(g.integers(2))]
        for _attempt in range(200):
            u = lung.cx + g.uniform(-lung.ax, lung.ax)
            v = lung.cy + g.uniform(-lung.ay, lung.ay)
            if _in_free_lung(a, u, v, r):
                out.append(_Lesion(float(u), float(v), float(r), float(contrast)))
                break
    return out


def _render(
    a: _Anatomy,
    lesions: Sequence[_Lesion],
    size: int,
    seed: int,
    index: int,
    gain: float,
    offset: float,
) -> np.ndarray:
    axis = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    v, u = np.meshgrid(axis, axis, indexing="ij")
    body_l, lung_l, mid_l, heart_l, spine_l = a.levels
    img = np.zeros((size, size))
    body = a.body.rho(u, v) < 1.0
    img[body] = body_l
    lung = (a.lungs[0].rho(u, v) < 1.0) | (a.lungs[1].rho(u, v) < 1.0)
    img[lung & body] = lung_l
    top = min(lung_.cy - lung_.ay for lung_ in a.lungs)
    mid = (np.abs(u - a.body.cx) < a.mediastinum_halfwidth) & (v > top) & body
    img[mid] = mid_l
    img[(a.heart.rho(u, v) < 1.0) & body] = heart_l
    img[(a.spine.rho(u, v) < 1.0) & body] = spine_l
    # rib-like bands curving down towards the sides, strongest over the lungs
    wave = 0.5 + 0.5 * np.cos(
        2 * np.pi * (a.rib_freq * (v + 0.35 * (u - a.body.cx) ** 2) + a.rib_phase)
    )
    ribs = np.clip((wave - 0.7) * 3.3, 0.0, 1.0)
    img += ribs * np.where(lung, 0.07, 0.04) * body
    # vascular texture: smooth random field inside the lungs
    tex = np.random.default_rng(a.texture_seed).standard_normal((size, size))
    tex = gaussian_filter(tex, sigma=max(1.0, size / 40.0))
    img += lung * tex * (0.03 / max(float(tex.std()), 1e-6))
    img = gaussian_filter(img, sigma=max(0.5, size / 100.0))
    # nodules: paraboloid domes that are exactly zero outside their radius (and their box)
    for les in lesions:
        d2 = ((u - les.u) ** 2 + (v - les.v) ** 2) / les.r**2
        img += les.contrast * np.clip(1.0 - d2, 0.0, None)
    noise = _rng(seed, _NOISE, index)
    sigma = noise.uniform(0.015, 0.04)
    img = gain * img + offset + noise.normal(0.0, sigma, size=(size, size))
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.float32)


def _box(les: _Lesion, size: int) -> list[float]:
    """[x0, y0, x1, y1] in pixels (pixel j spans [j, j+1)), rounded outwards, clipped."""
    half = size / 2.0
    x, y, r = (les.u + 1.0) * half, (les.v + 1.0) * half, les.r * half
    return [
        max(0.0, np.floor((x - r) * 100) / 100),
        max(0.0, np.floor((y - r) * 100) / 100),
        min(float(size), np.ceil((x + r) * 100) / 100),
        min(float(size), np.ceil((y + r) * 100) / 100),
    ]


def _plan(
    seed: int, index: int, size: int, lesion_fraction: float
) -> tuple[_Anatomy, list[_Lesion], int, float, float]:
    pose = _rng(seed, _POSE, index)
    dx, dy = pose.normal(0.0, 0.02, size=2)
    gain, offset = pose.uniform(0.92, 1.08), pose.uniform(-0.03, 0.03)
    a = _anatomy(seed, anatomy_key(seed, index), float(dx), float(dy))
    label = phantom_label(seed, index, lesion_fraction)
    lesions = _lesions(seed, index, a) if label else []
    return a, lesions, label, float(gain), float(offset)


def phantom_image(
    seed: int,
    index: int,
    size: int = 64,
    lesion_fraction: float = DEFAULT_LESION_FRACTION,
    draw_lesions: bool = True,
) -> tuple[Image, int, list[list[float]]]:
    """Render phantom `index` of `seed`: (image (1, size, size) in 0..255, label, lesion boxes).

    ``draw_lesions=False`` renders the same image without its nodules (same anatomy and noise),
    a ground-truth "healthy twin" for checking boxes and explanations.
    """
    _check(size, lesion_fraction)
    a, lesions, label, gain, offset = _plan(seed, index, size, lesion_fraction)
    pixels = _render(a, lesions if draw_lesions else [], size, seed, index, gain, offset)
    ref = phantom_ref(seed, size, index, lesion_fraction)
    image = Image(
        pixels=pixels[None],
        modality="OT",
        photometric="MONOCHROME2",
        source=ref,
        metadata={"phantom": True, "seed": seed, "index": index},
    )
    return image, label, [_box(les, size) for les in lesions]


def phantom_ref(
    seed: int, size: int, index: int, lesion_fraction: float = DEFAULT_LESION_FRACTION
) -> str:
    """The reference string that regenerates one phantom."""
    ref = f"phantom:seed={seed};size={size};index={index}"
    if lesion_fraction != DEFAULT_LESION_FRACTION:
        ref += f";lesion_fraction={lesion_fraction!r}"
    return ref


def make_phantoms(
    n: int = 200,
    size: int = 64,
    seed: int = 0,
    lesion_fraction: float = DEFAULT_LESION_FRACTION,
    splits: Sequence[float] | None = (0.7, 0.15, 0.15),
    task: Task | str = Task.BINARY,
) -> Dataset:
    """A binary normal/lesion dataset of `n` phantoms (no pixels rendered until asked for).

    ``task="detection"`` gives the same images as a detection dataset with one class
    ``"lesion"``: each record's ``boxes`` are its recorded lesion boxes (exact ground truth;
    healthy phantoms have an empty `Boxes`) and ``label`` stays None.

    ``meta["boxes"]`` lists each lesion's [x0, y0, x1, y1] in pixels and ``meta["contrast"]`` its
    peak brightness (0..1 of full scale). Patient ids ``PH0001``... (``PH<seed>-0001`` for
    seed != 0, so cohorts made with different seeds share no patient); about a third of images
    share their patient with a neighbour. ``splits`` (train, val, test fractions) are assigned
    by patient, so no patient spans two splits; None leaves splits unassigned.
    """
    _check(size, lesion_fraction)
    if n < 1:
        raise InvalidConfig(f"make_phantoms needs n >= 1, got {n}")
    if str(task) not in (Task.BINARY, Task.DETECTION):
        raise InvalidConfig(f"phantoms are a binary or a detection task, not {task!r}")
    detection = str(task) == Task.DETECTION
    fractions = _check_splits(splits)
    patients: list[str] = []
    records: list[Record] = []
    n_patients = 0
    for i in range(n):
        if anatomy_key(seed, i) == i or not patients:
            n_patients += 1
            # a different seed is a different cohort: its patients must not collide
            patients.append(f"PH{n_patients:04d}" if seed == 0 else f"PH{seed}-{n_patients:04d}")
        else:
            patients.append(patients[-1])
        a, lesions, label, _, _ = _plan(seed, i, size, lesion_fraction)
        boxes = [_box(les, size) for les in lesions]
        records.append(
            Record(
                ref=phantom_ref(seed, size, i, lesion_fraction),
                label=None if detection else label,
                patient_id=patients[-1],
                boxes=Boxes.from_arrays(boxes, [0] * len(boxes)) if detection else None,
                meta={
                    "boxes": boxes,
                    "contrast": [round(les.contrast, 4) for les in lesions],
                    "index": i,
                    "seed": seed,
                },
            )
        )
    if fractions is not None:
        split_of = _assign_splits(patients, fractions, seed)
        records = [replace(r, split=split_of[r.patient_id]) for r in records]
    if detection:
        return Dataset(records, Task.DETECTION, DETECTION_CLASSES, name=f"phantoms-s{seed}-detection")
    return Dataset(records, Task.BINARY, CLASSES, name=f"phantoms-s{seed}", positive_class=1)


def _check(size: int, lesion_fraction: float) -> None:
    if not 16 <= int(size) <= 1024:
        raise InvalidConfig(f"phantom size must be between 16 and 1024 pixels, got {size}")
    if not 0.0 <= lesion_fraction <= 1.0:
        raise InvalidConfig(f"lesion_fraction must be in [0, 1], got {lesion_fraction}")


def _check_splits(splits: Sequence[float] | None) -> tuple[float, float, float] | None:
    if splits is None:
        return None
    if len(splits) != 3 or min(splits) < 0 or abs(sum(splits) - 1.0) > 1e-6:
        raise InvalidConfig(
            f"splits must be three fractions (train, val, test) summing to 1, got {splits}"
        )
    return float(splits[0]), float(splits[1]), float(splits[2])


def _assign_splits(
    patients: list[str], fractions: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """Shuffle patients (seeded) and fill train, then val, then test by image count."""
    counts: dict[str, int] = {}
    for p in patients:
        counts[p] = counts.get(p, 0) + 1
    order = list(counts)
    _rng(seed, _SPLITS, 0).shuffle(order)
    total = len(patients)
    bounds = (fractions[0] * total, (fractions[0] + fractions[1]) * total)
    out: dict[str, str] = {}
    done = 0
    for p in order:
        out[p] = "train" if done < bounds[0] else "val" if done < bounds[1] else "test"
        done += counts[p]
    return out


def parse_phantom_ref(rest: str) -> dict[str, Any]:
    """``seed=0;size=64;index=3`` -> {"seed": 0, "size": 64, "index": 3, "lesion_fraction": .5}."""
    fields: dict[str, Any] = {"lesion_fraction": DEFAULT_LESION_FRACTION}
    try:
        for part in filter(None, rest.split(";")):
            key, _, value = part.partition("=")
            key = key.strip()
            fields[key] = float(value) if key == "lesion_fraction" else int(value)
    except ValueError as exc:
        raise UnreadableImage(f"phantom:{rest}", f"bad field: {exc}") from exc
    missing = {"seed", "size", "index"} - fields.keys()
    if missing:
        raise UnreadableImage(f"phantom:{rest}", f"missing {sorted(missing)}")
    return fields


def _resolve_phantom(rest: str, meta: dict[str, Any]) -> Image:
    f = parse_phantom_ref(rest)
    image, _, _ = phantom_image(f["seed"], f["index"], f["size"], f["lesion_fraction"])
    return image


register_scheme("phantom", _resolve_phantom)
