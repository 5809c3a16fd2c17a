"""`to_channels`: give a network the channel count it expects (grey -> RGB by repeating,
RGB -> grey by luminance)."""

from __future__ import annotations

import numpy as np

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess.base import Step, record, register_step

#: ITU-R BT.601 luma weights, the ones Pillow's "L" conversion uses.
LUMA = np.array([0.299, 0.587, 0.114])


@register_step("to_channels")
class ToChannels(Step):
    """Convert to ``n`` channels: 1 (luminance of RGB), 3 (grey repeated) or any n from grey.

    A 4th (alpha) channel of RGBA input is dropped first. Other conversions (e.g. 2 -> 3
    channels) are ambiguous and raise `InvalidConfig`.
    """

    def __init__(self, n: int = 3) -> None:
        self.n = n
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidConfig(f"to_channels: n must be an int >= 1, got {n!r}")

    def apply(self, image: Image) -> Image:
        px = image.pixels
        c = px.shape[0]
        if c == 4:
            px, c = px[:3], 3
        if c == self.n:
            out = px.copy()
        elif c == 1:
            out = np.repeat(px, self.n, axis=0)
        elif c == 3 and self.n == 1:
            out = np.tensordot(LUMA, px.astype(np.float64), axes=(0, 0))[None]
        else:
            raise InvalidConfig(
                f"to_channels: cannot turn {image.channels} channels into {self.n} "
                f"({image.source}); supported: grey -> n, RGB(A) -> 1 or 3"
            )
        res = image.with_pixels(out.astype(np.float32))
        if self.n == 1:
            res.photometric = "MONOCHROME2"
        elif self.n == 3:
            res.photometric = "RGB"
        return record(res, self.name, from_channels=image.channels, to_channels=self.n)
