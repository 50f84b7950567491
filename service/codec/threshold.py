"""The one parser of a request's ``unknown_threshold`` (JSON number or string, form field): a finite number or none."""

from __future__ import annotations

import math
from typing import Any

from service.core.errors import InvalidInput

FIELD = "unknown_threshold"


def parse_threshold(raw: Any, field: str = FIELD) -> float | None:
    """None when absent (None, or an empty form field): the export's own threshold applies. A finite number from a
    JSON number or a string (``"0.25"``, as a form sends it); anything else, NaN and infinities (``1e999`` too) are
    InvalidInput naming ``field``."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise InvalidInput(f"'{field}' must be a finite number")
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        raise InvalidInput(f"'{field}' must be a finite number, got {str(raw)[:40]!r}") from None
    if not math.isfinite(value):
        raise InvalidInput(f"'{field}' must be a finite number, got {str(raw)[:40]!r}")
    return value
