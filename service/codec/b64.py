"""The one base64 codec: TF Serving's ``{"b64": ...}`` values and the ``/classify`` JSON images.

Decoding takes what TF Serving's decoder (``absl::Base64Unescape``, called by its json_tensor) takes: the
standard alphabet (``+`` and ``/``), ``=`` padding either complete or left out, and ASCII whitespace anywhere
(``base64`` on the command line wraps its output at 76 columns). Everything else is ``InvalidInput``: the URL-safe
alphabet (``-``, ``_``), non-ASCII characters (including non-ASCII spaces), padding that is partial, excessive or
inside the data, and a length that no byte string encodes to. absl also takes ``.`` as a padding character, a
leftover of its URL-safe variant that no encoder writes: refused here.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from service.core.errors import InvalidInput

_ASCII_WHITESPACE = b" \t\n\v\f\r"  # absl::ascii_isspace


def decode_b64(text: str | bytes, where: str = "value") -> bytes:
    """The bytes ``text`` encodes in standard base64; ``InvalidInput`` starting with ``where`` otherwise."""
    if isinstance(text, str):
        try:
            data = text.encode("ascii")
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"{where}: invalid base64 (non-ASCII character at {exc.start})") from None
    else:
        data = bytes(text)
    data = data.translate(None, _ASCII_WHITESPACE)
    unpadded = data.rstrip(b"=")
    padding, missing = len(data) - len(unpadded), -len(unpadded) % 4
    if len(unpadded) % 4 == 1:
        raise InvalidInput(f"{where}: invalid base64 (a length of {len(unpadded)} characters encodes no bytes)")
    if padding and padding != missing:
        raise InvalidInput(f"{where}: invalid base64 ({padding} '=' where {missing} belong)")
    try:
        return binascii.a2b_base64(unpadded + b"=" * missing, strict_mode=True)
    except binascii.Error as exc:  # a character outside the alphabet, or '=' inside the data
        raise InvalidInput(f"{where}: invalid base64 ({exc})") from None


def encode_b64(data: bytes) -> str:
    """Standard base64 with padding, as TF Serving writes it."""
    return base64.b64encode(data).decode("ascii")


def is_b64_object(value: Any) -> bool:
    """True for TF Serving's binary value ``{"b64": "<string>"}`` (exactly that one key, holding a string)."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def b64_object(data: bytes) -> dict:
    """``data`` as TF Serving's ``{"b64": ...}`` JSON value."""
    return {"b64": encode_b64(data)}
