"""Radiomics-style shape descriptors of a binary mask, for segmentations where shape is the signal.

Each image (2D ``(H, W)`` or a whole volume ``(D, H, W)``; see ``features.base`` for channels) is
turned into the mask ``image > threshold``. ``threshold="midrange"`` (default) uses the image's own
``(min + max) / 2``, which suits masks stored as 0/1, 0/255 or min-max scaled intensities; a float
is a fixed threshold. A constant image therefore has an empty mask.

Units are pixels/voxels: plain arrays carry no spacing, so volumes, areas and lengths assume unit,
isotropic spacing (resample anisotropic data first). An empty mask gives every feature 0 (not NaN).
Definitions follow pyradiomics where it has one (axis lengths ``4 * sqrt(eigenvalue)`` of the
coordinate covariance, elongation, flatness, sphericity), except that the volume is the voxel count.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist
from skimage.measure import euler_number, marching_cubes, mesh_surface_area, perimeter_crofton

from medsight.errors import InvalidConfig
from medsight.features.base import ImageFeatureExtractor
from medsight.features.registry import register_feature

NAMES_3D = (
    "volume", "surface_area", "sphericity", "surface_volume_ratio",
    "major_axis_length", "minor_axis_length", "least_axis_length", "elongation", "flatness",
    "maximum_diameter", "extent", "bbox_0", "bbox_1", "bbox_2", "solidity",
    "n_components", "largest_component_fraction", "euler_number",
    "centroid_offset_0", "centroid_offset_1", "centroid_offset_2",
)
NAMES_2D = (
    "area", "perimeter", "circularity", "major_axis_length", "minor_axis_length",
    "eccentricity", "elongation", "maximum_diameter", "extent", "bbox_0", "bbox_1", "solidity",
    "n_components", "largest_component_fraction", "euler_number",
    "centroid_offset_0", "centroid_offset_1",
)


def principal_axes(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis lengths ``4 * sqrt(eigenvalue)`` (largest first) and their ratios to the largest.

    Eigenvalues are those of the population covariance of the pixel coordinates. The ratios
    (``sqrt(l_k / l_0)``: elongation, flatness) are 1 for a single pixel, a point being isotropic.
    """
    centred = coords - coords.mean(axis=0)
    eig = np.linalg.eigvalsh(centred.T @ centred / len(coords))[::-1].clip(min=0.0)
    ratios = np.sqrt(eig[1:] / eig[0]) if eig[0] > 0 else np.ones(len(eig) - 1)
    return 4.0 * np.sqrt(eig), ratios


def components(mask: np.ndarray) -> tuple[int, float]:
    """Number of connected components (full connectivity) and the largest one's share of pixels."""
    labels, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    sizes = np.bincount(labels.ravel())[1:]
    return n, float(sizes.max() / sizes.sum())


def centroid_offsets(coords: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Mask centroid minus the image centre along each axis, divided by the axis size."""
    size = np.asarray(shape, dtype=float)
    return (coords.mean(axis=0) - (size - 1) / 2) / size


def hull_features(coords: np.ndarray) -> tuple[float, float]:
    """Solidity and maximum diameter of the pixels, from the convex hull of their centres.

    Solidity is the pixel count over the number of lattice points inside the hull (a digitised
    disc, ball or box gives exactly 1); the diameter is the largest distance between two pixel
    centres. A degenerate hull (one pixel, collinear or coplanar pixels: Qhull fails) counts as
    convex, solidity 1, and the diameter is then searched among all pixels.
    """
    try:
        hull = ConvexHull(coords)
    except QhullError:
        return 1.0, float(pdist(coords).max()) if len(coords) > 1 else 0.0
    diameter = float(pdist(coords[hull.vertices]).max())
    planes = np.unique(hull.equations.round(9), axis=0)  # coplanar triangles share a plane
    return len(coords) / max(lattice_points_inside(planes, coords), len(coords)), diameter


def lattice_points_inside(planes: np.ndarray, coords: np.ndarray) -> int:
    """Integer points in the bounded polytope ``planes @ [x, 1] <= 0`` (Qhull equations).

    Counted line by line along the last axis: on each line the polytope is an interval whose ends
    come from the planes crossing it, so the cost grows with lines x planes, not voxels x planes.
    """
    lo, hi = coords.min(axis=0).astype(int), coords.max(axis=0).astype(int) + 1
    lines = np.stack(np.meshgrid(*map(np.arange, lo[:-1], hi[:-1]), indexing="ij"), axis=-1)
    lines = lines.reshape(-1, len(lo) - 1)
    slope = planes[:, -2]
    # Plane k holds where slope_k * x <= bound_k (a small tolerance keeps points on the hull).
    bound = 1e-6 - (lines @ planes[:, :-2].T + planes[:, -1])
    with np.errstate(divide="ignore", invalid="ignore"):
        ends = bound / slope
    up, down, flat = slope > 1e-12, slope < -1e-12, np.abs(slope) <= 1e-12
    last = np.floor(np.where(up, ends, np.inf).min(axis=1))
    first = np.ceil(np.where(down, ends, -np.inf).max(axis=1))
    open_line = (bound[:, flat] >= 0).all(axis=1)
    return int((np.clip(last - first + 1, 0, None) * open_line).sum())


def shape_3d(mask: np.ndarray) -> np.ndarray:
    """The ``NAMES_3D`` features of one boolean volume (all 0 when it is empty)."""
    coords = np.argwhere(mask).astype(float)
    volume = len(coords)
    if volume == 0:
        return np.zeros(len(NAMES_3D))
    lo, hi = coords.min(axis=0).astype(int), coords.max(axis=0).astype(int) + 1
    box = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    # Pad by one so the surface is closed at the crop border; level 0.5 splits in/out voxels.
    verts, faces, _, _ = marching_cubes(np.pad(box, 1).astype(np.uint8), 0.5)
    area = float(mesh_surface_area(verts, faces))
    axes, (elongation, flatness) = principal_axes(coords)
    n_comp, largest = components(box)
    solid, diameter = hull_features(coords)
    return np.array([
        volume, area, np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area, area / volume,
        *axes, elongation, flatness, diameter,
        volume / np.prod(hi - lo), *(hi - lo), solid,
        n_comp, largest, euler_number(box, connectivity=3),
        *centroid_offsets(coords, mask.shape),
    ], dtype=float)


def shape_2d(mask: np.ndarray) -> np.ndarray:
    """The ``NAMES_2D`` features of one boolean image (all 0 when it is empty).

    Perimeter is Crofton's estimate (skimage, 4 directions), closer to the true length of smooth
    outlines than boundary-pixel counting (a single pixel: ~2.7).
    """
    coords = np.argwhere(mask).astype(float)
    if len(coords) == 0:
        return np.zeros(len(NAMES_2D))
    area = float(len(coords))
    perimeter = float(perimeter_crofton(mask, directions=4))
    axes, (elongation,) = principal_axes(coords)
    lo, hi = coords.min(axis=0).astype(int), coords.max(axis=0).astype(int) + 1
    box = mask[lo[0] : hi[0], lo[1] : hi[1]]
    n_comp, largest = components(box)
    solid, diameter = hull_features(coords)
    return np.array([
        area, perimeter, 4 * np.pi * area / perimeter**2 if perimeter > 0 else 0.0,
        *axes, np.sqrt(1 - elongation**2), elongation, diameter,
        area / np.prod(hi - lo), *(hi - lo), solid, n_comp, largest,
        euler_number(box, connectivity=2), *centroid_offsets(coords, mask.shape),
    ], dtype=float)


@register_feature("shape")
class ShapeFeatures(ImageFeatureExtractor):
    """Shape of the mask ``image > threshold`` (module doc); names ``shape_volume``, ``shape_area``...

    3D (whole volumes): voxel count V, marching-cubes surface area A, sphericity
    ``pi^(1/3) (6V)^(2/3) / A`` (~0.9 for a digitised ball; above 1 for masks of a few voxels, whose
    mesh cuts their corners), A / V, major/minor/least axis lengths, elongation, flatness, maximum
    diameter (between voxel centres), extent (V / bounding box), bounding-box edges, solidity (see
    ``hull_features``), connected components (26-connectivity) and the largest one's fraction,
    Euler number, centroid offset from the image centre over the size, per axis.
    2D: the same in the plane, with area, Crofton perimeter, circularity ``4 pi A / P^2`` and
    eccentricity ``sqrt(1 - elongation^2)``. A volume must come as ``(N, C, D, H, W)`` (e.g.
    ``x[:, None]``): an ``(N, D, H, W)`` array reads as ``D`` channels of 2D images.
    """

    planar = False

    def __init__(self, threshold: float | str = "midrange", channels: str = "luminance"):
        self.threshold = threshold
        self.channels = channels

    def _check_params(self) -> None:
        if isinstance(self.threshold, str) and self.threshold == "midrange":
            return
        try:
            ok = not isinstance(self.threshold, (bool, str)) and np.isfinite(float(self.threshold))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidConfig(
                f"ShapeFeatures: threshold must be 'midrange' or a finite number, got {self.threshold!r}"
            )

    def _view_names(self, shape: tuple[int, ...]) -> list[str]:
        return [f"shape_{n}" for n in (NAMES_3D if len(shape) == 3 else NAMES_2D)]

    def _masks(self, views: np.ndarray) -> np.ndarray:
        if isinstance(self.threshold, str):  # "midrange", checked by fit
            flat = views.reshape(len(views), -1)
            cut = (flat.min(axis=1) + flat.max(axis=1)) / 2
            return views > cut.reshape((-1,) + (1,) * (views.ndim - 1))
        return views > float(self.threshold)

    def _extract(self, views: np.ndarray) -> np.ndarray:
        one = shape_3d if views.ndim == 4 else shape_2d
        return np.stack([one(mask) for mask in self._masks(views)])
