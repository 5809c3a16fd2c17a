"""PNG / JPEG / TIFF through Pillow: native value ranges, channel handling, pages, size guard."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image as PILImage

from medsight.errors import UnreadableImage
from medsight.io import raster, read_image

RNG = np.random.default_rng(7)
GREY8 = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (30, 40), dtype=np.uint16)


def _encode(im: PILImage.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_png_8bit_values_kept(tmp_path):
    path = tmp_path / "grey8.png"
    PILImage.fromarray(GREY8).save(path)
    image = read_image(path)
    assert image.pixels.shape == (1, 30, 40)
    assert image.pixels.dtype == np.float32
    np.testing.assert_array_equal(image.pixels[0], GREY8)
    assert image.photometric == "MONOCHROME2"
    assert image.spacing == (1.0, 1.0)


def test_png_16bit_values_kept(tmp_path):
    path = tmp_path / "grey16.png"
    PILImage.fromarray(GREY16).save(path)
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels[0], GREY16)
    assert image.pixels.max() > 255


def test_tiff_16bit_and_multipage(tmp_path):
    path = tmp_path / "pages.tif"
    pages = [PILImage.fromarray(GREY16 // d) for d in (1, 2, 3)]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    image = read_image(path)
    assert image.pixels.shape == (1, 3, 30, 40)
    for depth, divisor in enumerate((1, 2, 3)):
        np.testing.assert_array_equal(image.pixels[0, depth], GREY16 // divisor)
    assert image.metadata["pages"] == 3
    single = read_image(_encode(PILImage.fromarray(GREY16), "TIFF"))
    np.testing.assert_array_equal(single.pixels[0], GREY16)


def test_grey_alpha_keeps_grey_only():
    alpha = np.full_like(GREY8, 9)
    image = read_image(_encode(PILImage.fromarray(np.dstack([GREY8, alpha]), "LA"), "PNG"))
    assert image.pixels.shape == (1, 30, 40)
    np.testing.assert_array_equal(image.pixels[0], GREY8)


def test_rgb_and_rgba_drop_alpha():
    rgb = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    image = read_image(_encode(PILImage.fromarray(rgb), "PNG"))
    assert image.photometric == "RGB"
    np.testing.assert_array_equal(image.pixels, np.moveaxis(rgb, -1, 0))
    rgba = np.dstack([rgb, np.zeros((30, 40), np.uint8)])
    image = read_image(_encode(PILImage.fromarray(rgba, "RGBA"), "PNG"))
    assert image.pixels.shape == (3, 30, 40)
    np.testing.assert_array_equal(image.pixels, np.moveaxis(rgb, -1, 0))


def test_palette_becomes_rgb():
    indices = (GREY8 % 4).astype(np.uint8)
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30] + [0] * (256 * 3 - 12)
    im = PILImage.fromarray(indices, "P")
    im.putpalette(palette)
    image = read_image(_encode(im, "PNG"))
    colours = np.array(palette[:12]).reshape(4, 3)
    np.testing.assert_array_equal(image.pixels, np.moveaxis(colours[indices], -1, 0))
    assert image.metadata["mode"] == "P"


def test_jpeg_is_close_and_real_jpeg_reads():
    smooth = np.tile(np.linspace(0, 255, 40), (30, 1)).astype(np.uint8)
    image = read_image(_encode(PILImage.fromarray(smooth), "JPEG", quality=95))
    assert image.pixels.shape == (1, 30, 40)
    assert np.abs(image.pixels[0] - smooth).max() <= 8
    blood = read_image(shared_path("bccd", "JPEGImages", "BloodImage_00000.jpg"))
    assert blood.pixels.shape == (3, 480, 640)
    assert blood.photometric == "RGB"
    assert blood.metadata["format"] == "jpeg"


def test_16bit_rgb_png_is_flagged_as_reduced():
    width, height = 4, 3
    rows = b"".join(b"\x00" + np.full(width * 3, 1000, ">u2").tobytes() for _ in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    image = read_image(png)
    assert image.metadata["reduced_to_8bit"] is True
    assert image.pixels.shape == (3, 3, 4)


def test_pixel_limit_refuses_large_images(monkeypatch):
    data = _encode(PILImage.fromarray(GREY8), "PNG")
    monkeypatch.setattr(raster, "MAX_PIXELS", 1000)
    with pytest.raises(UnreadableImage, match="too large") as info:
        read_image(data)
    assert "MAX_PIXELS" in info.value.reason


def test_pillow_bomb_guard_becomes_too_large(monkeypatch):
    data = _encode(PILImage.fromarray(GREY8), "PNG")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # 1200 pixels > 2 x 100
    with pytest.raises(UnreadableImage, match="too large"):
        read_image(data)


def test_truncated_png(tmp_path):
    data = _encode(PILImage.fromarray(RNG.integers(0, 256, (200, 200), dtype=np.uint8)), "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage, match="truncated|corrupt") as info:
        read_image(path)
    assert info.value.source == str(path)
