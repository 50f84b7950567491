"""Hostile images, made in memory: each is small on the wire and would be expensive or wrong to decode."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 15_000, height: int = 15_000) -> bytes:
    """A valid PNG header claiming width x height RGB pixels (675 MB decoded: past the 40 MP limit, under the
    per-side one) with a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * 1024)  # a sliver of the pixel stream; a decoder would allocate the whole image first
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def gif_many_frames(frames: int = 150) -> bytes:
    buffer = io.BytesIO()
    # Distinct frames: Pillow merges consecutive identical ones when it saves.
    images = [Image.new("RGB", (4, 4), color=(i % 256, (i * 7) % 256, (i * 13) % 256)) for i in range(frames)]
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=10, loop=0)
    return buffer.getvalue()


def encoded(fmt: str, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 200, np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def truncated_png() -> bytes:
    """An intact header with its pixel data cut short: the header check passes, the decoder must fail cleanly."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


# name -> (bytes, what the refusal says)
HOSTILE = {
    "png_bomb": (png_bomb(), "limit"),
    "gif_150_frames": (gif_many_frames(), "frames"),
    "tiff": (encoded("TIFF"), "not supported"),
    "webp": (encoded("WEBP"), "not supported"),
    "truncated_png": (truncated_png(), ""),
    "not_an_image": (b"GIF89a" + b"\xff" * 40, ""),
}
