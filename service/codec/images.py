"""Cheap checks on an encoded image before anything decodes it.

``inspect_image`` reads only the image's header (Pillow's ``Image.open`` is lazy: it identifies the format and size
without decoding pixels), so a decompression bomb — a few kilobytes that decode to gigabytes — is refused as a 400
instead of exhausting memory in the decoder. A JPEG whose header reads cleanly has its size read here directly
(``_jpeg_size``: a few microseconds on the event loop instead of Pillow's 31); anything else goes to Pillow.

What it does not promise: that the image decodes. A file whose header is intact but whose pixel data is truncated or
corrupt passes (for instance a PNG cut short in its IDAT data); the real decoder fails later, and turning that failure
into an error for its own request is the caller's concern.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from service.core.errors import InvalidInput, TooLarge, UnsupportedMediaType

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "BMP")

# Pillow names a JPEG with a multi-picture (MPF) segment "MPO"; phone cameras write these, and every JPEG decoder
# reads them as an ordinary JPEG (the first picture), so they count as JPEG.
_FORMAT_ALIASES = {"MPO": "JPEG"}

# What Pillow raises for a file that claims a format but whose header is malformed.
_HEADER_ERRORS = (OSError, SyntaxError, ValueError, IndexError, TypeError, EOFError, struct.error)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_side: int = 16384
    max_frames: int = 100


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    frames: int


def inspect_image(data: bytes, limits: ImageLimits = ImageLimits()) -> ImageInfo:
    """Identify an encoded image from its header and check it against ``limits``, without decoding pixels.

    Raises ``InvalidInput`` (empty, not an image, zero/too large dimensions, too many frames), ``TooLarge`` (more than
    ``limits.max_bytes``) or ``UnsupportedMediaType`` (an image format outside ``ALLOWED_FORMATS``).
    """
    if not data:
        raise InvalidInput("empty image")
    # Checked first: it also bounds every later step, including the frame scan of an animated GIF.
    if len(data) > limits.max_bytes:
        raise TooLarge(f"image is {len(data)} bytes; the limit is {limits.max_bytes} bytes")

    size = _jpeg_size(data)
    if size is not None:
        _check_dimensions(*size, limits)
        return ImageInfo(format="JPEG", width=size[0], height=size[1], frames=1)

    with warnings.catch_warnings():
        # We apply our own pixel limit below, so Pillow's global one is only noise (its warning) or, past twice
        # its limit, an error that hides the dimensions (handled in _open).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = _open(data)
        try:
            fmt = _FORMAT_ALIASES.get(img.format or "", img.format or "unknown")
            if fmt not in ALLOWED_FORMATS:
                raise UnsupportedMediaType(
                    f"image format {fmt} is not supported; allowed formats: {', '.join(ALLOWED_FORMATS)}")
            width, height = img.size
            _check_dimensions(width, height, limits)
            frames = _count_frames(img)
            if frames > limits.max_frames:
                raise InvalidInput(f"image has {frames} frames; the limit is {limits.max_frames} frames")
            return ImageInfo(format=fmt, width=width, height=height, frames=frames)
        finally:
            img.close()


# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic): the frame header with
# the image's size. 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) share the range but are not frames.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_SOS, _APP2 = 0xDA, 0xE2


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG whose header reads cleanly, walked segment by segment from the start of the image
    to the start of its scan; None for anything else (another format, a multi-picture file, a header Pillow would
    refuse or that is cut short), which Pillow then identifies or refuses as before.

    Why: ``Image.open`` took 31 us of the event loop per 32 px JPEG (most images served are JPEGs); this takes a
    few. It accepts what Pillow's JPEG opener accepts: 8-bit samples, 1, 3 or 4 components, the size from the
    frame header, a header complete up to the scan."""
    if not data.startswith(b"\xff\xd8\xff"):
        return None
    size = None
    i, end = 2, len(data)
    while i + 4 <= end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == _SOS:
            return size
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2 or not 0xC0 <= marker <= 0xFE or 0xD0 <= marker <= 0xD9:
            return None  # a segment without a length (RSTn, SOI, EOI) before the scan is Pillow's to judge
        if marker in _SOF_MARKERS:
            if size is not None or length < 8 or i + 10 > end or data[i + 4] != 8 or data[i + 9] not in (1, 3, 4):
                return None
            size = (int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big"))
        elif marker == _APP2 and data[i + 4:i + 8] == b"MPF\x00":
            return None  # a multi-picture file: Pillow counts its pictures
        i += 2 + length
    return None


def _open(data: bytes) -> Image.Image:
    """Open lazily (header only); past Pillow's own bomb limit, identify again without it so we can report sizes."""
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        img = _open_without_bomb_check(data)
        if img is None:  # identified by Image.open, so this should not happen; still a refusal, not a crash
            raise InvalidInput(f"image is too large: {exc}") from None
        return img
    except UnidentifiedImageError:
        raise InvalidInput(f"not an image (or not a format this server can identify; "
                           f"allowed formats: {', '.join(ALLOWED_FORMATS)})") from None
    except _HEADER_ERRORS as exc:
        raise InvalidInput(f"not an image: unreadable header ({exc})") from None


def _open_without_bomb_check(data: bytes) -> Image.Image | None:
    """Identify ``data`` the way ``Image.open`` does, minus its process-wide pixel limit (we apply ours instead).

    Setting ``Image.MAX_IMAGE_PIXELS`` would change it for every thread, so instead walk Pillow's registry of openers.
    Constructing an opener reads only the header, like ``Image.open``.
    """
    Image.init()
    prefix = data[:16]
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        accepted = not accept or accept(prefix)
        if not accepted or isinstance(accepted, str):  # a str is Pillow's "looks like it, but unsupported"
            continue
        try:
            return factory(io.BytesIO(data), "")
        except _HEADER_ERRORS:
            continue
    return None


def _check_dimensions(width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise InvalidInput(f"image has no pixels ({width}x{height})")
    if max(width, height) > limits.max_side:
        raise InvalidInput(f"image is {width}x{height}; the limit is {limits.max_side} pixels per side")
    if width * height > limits.max_pixels:
        raise InvalidInput(
            f"image is {width}x{height} ({width * height} pixels); the limit is {limits.max_pixels} pixels")


def _count_frames(img: Image.Image) -> int:
    """Frames in an animated image. For GIF this scans the frame headers (skipping, not decoding, the pixel data);
    the byte limit checked before bounds that scan."""
    try:
        return int(getattr(img, "n_frames", 1))
    except Image.DecompressionBombError:
        raise InvalidInput("image has a frame larger than the pixel limit") from None
    except _HEADER_ERRORS as exc:
        raise InvalidInput(f"image is corrupt: cannot count its frames ({exc})") from None
