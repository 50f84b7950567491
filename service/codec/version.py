"""The one parser of a version number as the wires carry it: a URL path segment, a V2 ``model_version`` string.

A version is a TF Serving version: a non-negative int64, written in ASCII digits, leading zeros allowed (TF
Serving's own test models live in ``00000123``). Text that is not such a number names no version that can
exist, so it is ``NotFound`` on every transport, as an unknown version number is; never ``InvalidInput`` on one
wire and 404 on another.
"""

from __future__ import annotations

from service.core.errors import NotFound

_INT64_MAX = 2**63 - 1
_SHOWN = 40  # characters of a bad version echoed in the message


def parse_version(raw: str | None) -> int | None:
    """``None`` for no version ('' or None: the newest), the number for ASCII digits, else ``NotFound``."""
    if raw is None or raw == "":
        return None
    if raw.isascii() and raw.isdigit():
        digits = raw.lstrip("0")
        # Past 19 digits it is beyond int64, and int() of thousands of digits raises ValueError (a 500).
        if len(digits) <= 19 and int(digits or "0") <= _INT64_MAX:
            return int(digits or "0")
    shown = raw if len(raw) <= _SHOWN else raw[:_SHOWN - 3] + "..."
    raise NotFound(f"version '{shown}' not found (a version is a number of at most 19 digits)")
