"""The pending captures as a person reviews them: lowest top-1 score first, optionally of one model, a page at a time.

A capture folder can hold thousands of captures and the console lists them every few seconds. A sidecar never
changes once written, so each is read once: ``PendingCaptures`` keeps a small summary per pending id (model,
score), and a listing scans the names in pending/ (``CaptureDir.pending_ids``), reads only the sidecars it has not
seen, forgets the ids that left (reviewed, evicted), sorts the summaries and reads whole sidecars for one page only.
The moves themselves (label, discard) are ``CaptureDir``'s: this module only reads.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from service.capture.layout import SIDECAR_SUFFIX, CaptureDir
from service.core.errors import InvalidInput, NotFound

MAX_PAGE = 200
DEFAULT_PAGE = 50


@dataclass(frozen=True)
class Summary:
    """What sorting and filtering need of one pending capture."""

    id: str
    model: str
    top_score: float


def page_bounds(limit: Any, offset: Any) -> tuple[int, int]:
    """``limit`` (1..MAX_PAGE, default DEFAULT_PAGE) and ``offset`` (>= 0, default 0) from query strings."""
    def number(raw: Any, default: int, low: int, high: int, name: str) -> int:
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except (TypeError, ValueError):
            value = low - 1
        if not low <= value <= high:
            raise InvalidInput(f"{name} must be an integer from {low} to {high}, got {str(raw)[:40]!r}")
        return value

    return number(limit, DEFAULT_PAGE, 1, MAX_PAGE, "limit"), number(offset, 0, 0, 2**62, "offset")


class PendingCaptures:
    """The review's view of one capture folder (blocking: file-system access; call from a worker thread)."""

    def __init__(self, folder: CaptureDir):
        self.folder = folder
        self._summaries: dict[str, Summary] = {}
        self._lock = threading.Lock()  # listings run in worker threads, possibly two at once

    def page(self, *, model: str | None, limit: int, offset: int) -> dict[str, Any]:
        """One page of pending captures (whole sidecars), lowest top-1 score first, then oldest first; with the
        number matching ``model`` (``total``) and the count per model (for the console's filter)."""
        summaries = self._refresh()
        per_model: dict[str, int] = {}
        for s in summaries:
            per_model[s.model] = per_model.get(s.model, 0) + 1
        chosen = [s for s in summaries if model is None or s.model == model]
        chosen.sort(key=lambda s: (s.top_score, s.id))
        captures = []
        for s in chosen[offset:offset + limit]:
            try:
                captures.append(self.folder.read(s.id))
            except NotFound:  # reviewed or evicted since the scan
                continue
        return {"total": len(chosen), "offset": offset, "limit": limit, "models": dict(sorted(per_model.items())),
                "captures": captures}

    def _refresh(self) -> list[Summary]:
        try:
            ids = self.folder.pending_ids()
        except FileNotFoundError:  # the writer has not created pending/ yet
            ids = []
        with self._lock:
            known = self._summaries
            fresh = {i: known[i] for i in ids if i in known}
            for capture_id in ids:
                if capture_id not in fresh:
                    summary = self._summary(capture_id)
                    if summary is not None:
                        fresh[capture_id] = summary
            self._summaries = fresh
            return list(fresh.values())

    def _summary(self, capture_id: str) -> Summary | None:
        try:
            doc = json.loads((self.folder.pending / f"{capture_id}{SIDECAR_SUFFIX}").read_bytes())
        except (OSError, ValueError):  # gone meanwhile, or not our JSON: not listed (eviction still reclaims it)
            return None
        if not isinstance(doc, dict):
            return None
        score = doc.get("top_score")
        # A capture without a score (no predictions) is the least known of all: it sorts first.
        top = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else -1.0
        return Summary(capture_id, str(doc.get("model", "")), top)
