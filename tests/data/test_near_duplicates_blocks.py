"""Near-duplicate confirmation in vectorised blocks: the pairs found are exactly the brute-force
pairs (pHash within the threshold and thumbnails within the tolerance), the 4x4 lower bound never
rejecting a true pair, whatever the block and chunk sizes."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.data.quality import duplicates
from medsight.data.quality.hashing import thumbnail_difference


@pytest.mark.parametrize("cells, chunk", [(4_000_000, 65_536), (300, 7)])
def test_confirmed_pairs_are_the_brute_force_pairs(monkeypatch, cells, chunk):
    rng = np.random.default_rng(3)
    n = 120
    hashes = rng.integers(0, 2**63, size=n, dtype=np.uint64) & np.uint64(0xFFFF)  # many close
    thumbs = rng.normal(size=(n, 256)).astype(np.float16)
    twins = rng.choice(n, size=30, replace=False)  # near copies of other images, at and around
    for k, (a, b) in enumerate(zip(twins[::2], twins[1::2], strict=True)):  # the tolerance
        noise = rng.normal(scale=[0.01, 0.03, 0.04][k % 3], size=256)
        thumbs[b] = (thumbs[a].astype(np.float64) + noise).astype(np.float16)
        hashes[b] = hashes[a] ^ np.uint64(1 << int(k % 5))
    monkeypatch.setattr(duplicates, "_BLOCK_CELLS", cells)
    monkeypatch.setattr(duplicates, "_PAIR_CHUNK", chunk)
    got = {tuple(p) for block in duplicates._confirmed_pairs(hashes, thumbs, 8, 0.035)
           for p in block.tolist()}
    want = {(i, j) for i in range(n) for j in range(i + 1, n)
            if int(hashes[i] ^ hashes[j]).bit_count() <= 8
            and thumbnail_difference(thumbs[i], thumbs[j]) <= 0.035}
    assert got == want and len(want) >= 5
