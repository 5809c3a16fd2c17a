"""Group records into exact duplicates (same pixel hash) and near duplicates (the same picture).

Near-duplicate candidates come from comparing every pair of perceptual hashes with vectorised
XOR and popcount in row blocks; each candidate is confirmed on pixel thumbnails, in the same
vectorised blocks (memory stays bounded), and groups are complete-linkage clusters. Images that
all look alike (one anatomy, one protocol: most medical sets) make a large share of all pairs
candidates, so no pair is ever a Python object before it is confirmed, and a cheap lower bound
(the difference of 4x4 block means) rejects most candidates before the full thumbnails are read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from medsight.data.quality.hashing import thumbnail_difference

__all__ = ["DEFAULT_PIXEL_TOLERANCE", "NearGroup", "close_hash_pairs", "exact_groups", "near_groups"]

_BLOCK_CELLS = 4_000_000  # uint64 cells per comparison block (32 MB)
_PAIR_CHUNK = 65_536  # candidate pairs confirmed per vectorised step
_COARSE = 4  # thumbnails averaged to 4x4 block means for the lower bound of their difference
_ROUNDING = 1e-4  # slack on that bound for float32 rounding
# Largest thumbnail difference (mean |a - b| in standard deviations) for "the same picture".
# Measured: JPEG q90 or 1 % noise moves a thumbnail by <= 0.023 (28 px BreastMNIST) and <= 0.012
# (64 px phantoms); distinct demo phantoms (one body template) differ by >= 0.036 (>= 0.07 at 32 px).
# Heavier changes of a tiny image (JPEG q75 or 2 % noise at 28 px: up to 0.05) are not grouped.
DEFAULT_PIXEL_TOLERANCE = 0.035


def exact_groups(keys: Sequence[str | None]) -> list[list[int]]:
    """Indices sharing a key (None = skip), groups of two or more, in order of first index."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        if k is not None:
            by_key[k].append(i)
    return [idx for idx in by_key.values() if len(idx) > 1]


def close_hash_pairs(hashes: np.ndarray, threshold: int) -> Iterator[tuple[int, int, int]]:
    """(i, j, distance) for i < j with Hamming distance <= threshold between 64-bit hashes."""
    h = np.asarray(hashes, dtype=np.uint64)
    n = len(h)
    if n < 2:
        return
    rows = max(1, _BLOCK_CELLS // n)
    for start in range(0, n - 1, rows):
        stop = min(n - 1, start + rows)
        block = h[start:stop, None] ^ h[None, start:]
        dist = np.bitwise_count(block)
        ii, jj = np.nonzero(dist <= threshold)
        for a, b in zip(ii.tolist(), jj.tolist(), strict=True):
            i, j = start + a, start + b
            if j > i:
                yield i, j, int(dist[a, b])


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class NearGroup(NamedTuple):
    """Record indices showing one picture, the largest pHash distance and the largest thumbnail
    difference between any two of its images."""

    indices: list[int]
    max_distance: int
    max_difference: float


def near_groups(
    pixel_keys: Sequence[str | None],
    phashes: Sequence[int | None],
    thumbs: Sequence[np.ndarray | None],
    threshold: int,
    tolerance: float = DEFAULT_PIXEL_TOLERANCE,
) -> list[NearGroup]:
    """Groups of records that show the same picture without identical pixels.

    Candidates are pairs of images whose pHashes differ by at most `threshold` bits; a pair is
    confirmed when their thumbnails differ by at most `tolerance` (mean absolute difference, in
    standard deviations). Groups are complete-linkage clusters of confirmed pairs: any two images
    of a group are within `tolerance`, so similar-looking images (A like B, B like C, A unlike C)
    never chain into one group. Identical images (same pixel key) count as one image.
    """
    node_of: dict[str, int] = {}
    members: list[list[int]] = []
    node_hash: list[int] = []
    node_thumb: list[np.ndarray] = []
    for i, (key, ph, th) in enumerate(zip(pixel_keys, phashes, thumbs, strict=True)):
        if key is None or ph is None or th is None:
            continue
        if key not in node_of:
            node_of[key] = len(members)
            members.append([])
            node_hash.append(int(ph))
            node_thumb.append(th)
        members[node_of[key]].append(i)
    if len(members) < 2:
        return []
    hashes = np.array(node_hash, dtype=np.uint64)
    thumb_rows = np.stack(node_thumb)
    uf = _UnionFind(len(members))
    for pairs in _confirmed_pairs(hashes, thumb_rows, threshold, tolerance):
        for a, b in pairs.tolist():
            uf.union(a, b)
    comps: dict[int, list[int]] = defaultdict(list)
    for node in range(len(members)):
        comps[uf.find(node)].append(node)
    out = []
    for nodes in comps.values():
        for cluster in _complete_linkage(nodes, thumb_rows, tolerance):
            idx = sorted(i for node in cluster for i in members[node])
            sub = thumb_rows[cluster].astype(np.float64)
            diff = float(pdist(sub, "cityblock").max()) / sub.shape[1]
            dist = int(np.bitwise_count(hashes[cluster, None] ^ hashes[None, cluster]).max())
            out.append(NearGroup(idx, dist, round(diff, 4)))
    out.sort(key=lambda g: g.indices[0])
    return out


def _confirmed_pairs(hashes: np.ndarray, thumbs: np.ndarray, threshold: int,
                     tolerance: float) -> Iterator[np.ndarray]:
    """(k, 2) arrays of node pairs a < b whose pHashes are within `threshold` bits and whose
    thumbnails differ by at most `tolerance`, block by block.

    The mean absolute difference of block means is at most the mean absolute difference of the
    pixels (a block's mean difference is at most its mean |difference|), so a candidate above
    the tolerance on the 4x4 block means is rejected without reading its full thumbnails.
    """
    n = len(hashes)
    side = int(round(np.sqrt(thumbs.shape[1])))
    coarse = None
    if side * side == thumbs.shape[1] and side % _COARSE == 0:
        k = side // _COARSE
        coarse = (thumbs.astype(np.float32).reshape(n, _COARSE, k, _COARSE, k)
                  .mean(axis=(2, 4)).reshape(n, -1))
    rows = max(1, _BLOCK_CELLS // n)
    for start in range(0, n - 1, rows):
        stop = min(n - 1, start + rows)
        dist = np.bitwise_count(hashes[start:stop, None] ^ hashes[None, start:])
        a, b = np.nonzero(dist <= threshold)
        a, b = a + start, b + start
        upper = b > a
        a, b = a[upper], b[upper]
        for s in range(0, len(a), _PAIR_CHUNK):
            i, j = a[s:s + _PAIR_CHUNK], b[s:s + _PAIR_CHUNK]
            if coarse is not None:
                near = thumbnail_difference(coarse[i], coarse[j]) <= tolerance + _ROUNDING
                i, j = i[near], j[near]
            if len(i):
                close = thumbnail_difference(thumbs[i], thumbs[j]) <= tolerance
                if close.any():
                    yield np.stack([i[close], j[close]], axis=1)


def _complete_linkage(nodes: list[int], thumbs: np.ndarray, tolerance: float) -> list[list[int]]:
    """Split a component into clusters whose every pair is within `tolerance` (two or more)."""
    if len(nodes) < 2:
        return []
    sub = thumbs[nodes].astype(np.float64)
    tree = linkage(pdist(sub, "cityblock"), method="complete")
    labels = fcluster(tree, t=tolerance * sub.shape[1], criterion="distance")
    clusters: dict[int, list[int]] = defaultdict(list)
    for node, label in zip(nodes, labels.tolist(), strict=True):
        clusters[label].append(node)
    return [c for c in clusters.values() if len(c) > 1]
