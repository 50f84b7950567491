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


# --- the JPEG fast path: the frame header read directly, Pillow for anything it does not recognise ------------

def _jpegs() -> dict[str, bytes]:
    rgb = Image.new("RGB", (37, 21), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: sizes are the stored ones, as Pillow reports them
    frames = [Image.new("RGB", (8, 6)), Image.new("RGB", (8, 6))]
    return {
        "baseline": encode(rgb, "JPEG"),
        "progressive": encode(rgb, "JPEG", progressive=True),
        "optimized": encode(rgb, "JPEG", optimize=True, quality=40),
        "grayscale": encode(Image.new("L", (5, 300)), "JPEG"),
        "cmyk": encode(Image.new("CMYK", (64, 3)), "JPEG"),
        "exif and icc": encode(rgb, "JPEG", exif=exif, icc_profile=b"\0" * 300),
        "huge sides": encode(Image.new("L", (4000, 1)), "JPEG"),
        "mpo": encode(frames[0], "MPO", save_all=True, append_images=frames[1:]),
    }


@pytest.mark.parametrize("name", list(_jpegs()))
def test_the_jpeg_fast_path_agrees_with_pillow(name):
    from service.codec.images import _jpeg_size

    data = _jpegs()[name]
    size = _jpeg_size(data)
    if name == "mpo":
        assert size is None  # Pillow counts its pictures
    else:
        assert size == Image.open(io.BytesIO(data)).size
    for cut in range(2, min(len(data), 700), 7):  # every cut of the header: Pillow's answer, or the same size
        got = _jpeg_size(data[:cut])
        assert got is None or got == size, (cut, got)


def test_the_jpeg_fast_path_leaves_what_pillow_refuses_to_pillow():
    from service.codec.images import _jpeg_size

    data = bytearray(_jpegs()["baseline"])
    sof = data.index(b"\xff\xc0")
    twelve_bit, two_layers = bytearray(data), bytearray(data)
    twelve_bit[sof + 4] = 12
    two_layers[sof + 9] = 2
    for bad in (twelve_bit, two_layers, b"\xff\xd8" + b"\x00" * 50, b"\xff\xd8\xff\xc0\x00\x01"):
        assert _jpeg_size(bytes(bad)) is None
        with pytest.raises(InvalidInput):
            inspect_image(bytes(bad))


def test_a_jpeg_bomb_is_refused_by_the_fast_path_with_its_dimensions():
    data = bytearray(_jpegs()["baseline"])
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    with pytest.raises(InvalidInput, match="60000x60000"):
        inspect_image(bytes(data))
