"""preview_grid draws a real before/after PNG of the expected size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess import Preprocess, preview_grid


def test_preview_grid_png(tmp_path, ct_slice):
    chain = Preprocess.from_config([{"window": {"preset": "lung"}}, {"crop_foreground": {}},
                                    {"to_channels": {"n": 3}}])
    vol = Image(np.random.default_rng(0).random((1, 5, 16, 16)))
    before = [ct_slice, ct_slice, vol]
    after = [chain(ct_slice), ct_slice.pixels[0], vol]
    fig = preview_grid(before, after, titles=["ct", "raw array", "volume"], cell_inches=2.0)
    path = tmp_path / "preview.png"
    fig.savefig(path, dpi=50)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with PILImage.open(path) as png:
        assert png.format == "PNG" and png.size == (2 * 2 * 50, 3 * 2 * 50)
        arr = np.asarray(png.convert("L"))
    assert arr.std() > 10  # something was drawn
    titles = [ax.get_title() for ax in fig.axes]
    assert "ct - before (1x128x128)" in titles and any("after (3x" in t for t in titles)


def test_preview_grid_rejects_mismatched_lists(ct_slice):
    with pytest.raises(InvalidConfig, match="2 images before but 1 after"):
        preview_grid([ct_slice, ct_slice], [ct_slice])
    with pytest.raises(InvalidConfig, match="titles"):
        preview_grid([ct_slice], [ct_slice], titles=["a", "b"])
