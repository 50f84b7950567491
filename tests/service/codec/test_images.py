"""inspect_image: header-only checks that refuse bad, unsupported and oversized images before any decoding."""

from __future__ import annotations

import io
import os
import time
import warnings

import pytest
from PIL import Image

from service.codec.images import ALLOWED_FORMATS, ImageInfo, ImageLimits, inspect_image
from service.core.errors import InvalidInput, TooLarge, UnsupportedMediaType


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ALLOWED_FORMATS)
def test_allowed_formats_pass_with_their_dimensions(fmt):
    data = encode(Image.new("RGB", (37, 21), (200, 10, 10)), fmt)
    assert inspect_image(data) == ImageInfo(format=fmt, width=37, height=21, frames=1)


def test_mpo_jpeg_counts_as_jpeg():
    # Phone cameras write multi-picture JPEGs; Pillow calls them MPO.
    frames = [Image.new("RGB", (8, 6)), Image.new("RGB", (8, 6))]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert inspect_image(data).format == "JPEG"


@pytest.mark.parametrize("fmt", ["TIFF", "WEBP"])
def test_other_image_formats_are_unsupported_media(fmt):
    data = encode(Image.new("RGB", (8, 8)), fmt)
    with pytest.raises(UnsupportedMediaType) as exc:
        inspect_image(data)
    assert fmt in exc.value.message and "JPEG, PNG, GIF, BMP" in exc.value.message


def test_random_bytes_are_not_an_image():
    with pytest.raises(InvalidInput, match="not an image"):
        inspect_image(os.urandom(4096))


def test_empty_is_invalid():
    with pytest.raises(InvalidInput, match="empty image"):
        inspect_image(b"")


def test_over_max_bytes_is_too_large():
    data = encode(Image.new("RGB", (64, 64)), "BMP")  # BMP: uncompressed, so its size is predictable
    assert inspect_image(data, ImageLimits(max_bytes=len(data))).width == 64
    with pytest.raises(TooLarge):
        inspect_image(data, ImageLimits(max_bytes=len(data) - 1))


def test_decompression_bomb_png_is_refused_quickly_with_its_dimensions():
    # 400 million pixels in a few KB: past even Pillow's own (global) limit, which must not hide the dimensions.
    data = encode(Image.new("1", (20000, 20000)), "PNG")
    assert len(data) < 100_000
    start = time.perf_counter()
    with pytest.raises(InvalidInput, match="20000x20000") as exc:
        inspect_image(data)
    assert time.perf_counter() - start < 1.0
    assert "40000000" in exc.value.message or "16384" in exc.value.message


def test_pixel_limit_below_pillows_own_limit():
    # 10000x5000 = 50M pixels: under Pillow's error threshold, over ours; and each side is within max_side.
    data = encode(Image.new("1", (10000, 5000)), "PNG")
    with pytest.raises(InvalidInput, match=r"10000x5000 \(50000000 pixels\); the limit is 40000000"):
        inspect_image(data)
    assert inspect_image(data, ImageLimits(max_pixels=50_000_000)).height == 5000


def test_pillows_bomb_warning_does_not_escape():
    # 12000x9000 = 108M pixels: over Pillow's warning threshold (~89M), under its error threshold.
    data = encode(Image.new("1", (12000, 9000)), "PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked DecompressionBombWarning would now raise instead of our error
        with pytest.raises(InvalidInput, match="12000x9000"):
            inspect_image(data, ImageLimits(max_side=20000))


def test_side_limit():
    data = encode(Image.new("1", (300, 2)), "PNG")
    with pytest.raises(InvalidInput, match="300x2; the limit is 299 pixels per side"):
        inspect_image(data, ImageLimits(max_side=299))
    assert inspect_image(data, ImageLimits(max_side=300)).width == 300


def test_gif_frame_limit():
    frames = [Image.new("RGB", (4, 4), (40 * i, 0, 0)) for i in range(6)]  # distinct, or Pillow merges them
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)
    assert inspect_image(data, ImageLimits(max_frames=6)).frames == 6
    with pytest.raises(InvalidInput, match="6 frames; the limit is 5"):
        inspect_image(data, ImageLimits(max_frames=5))


def test_truncated_png_with_intact_header_passes():
    # Documented: only the header is checked; the decoder reports the truncation later.
    img = Image.frombytes("L", (64, 64), os.urandom(64 * 64))  # noise: the pixel data stays large
    data = encode(img, "PNG")
    truncated = data[: len(data) // 2]
    assert inspect_image(truncated) == ImageInfo(format="PNG", width=64, height=64, frames=1)
    with pytest.raises(OSError):
        Image.open(io.BytesIO(truncated)).load()


def test_header_only_png_signature_is_invalid():
    data = encode(Image.new("RGB", (4, 4)), "PNG")
    with pytest.raises(InvalidInput):
        inspect_image(data[:12])
