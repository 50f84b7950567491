"""Drift (issue 17): the population stability index of a sliding window of predictions against an export's reference.

PSI = sum over bins i of (a_i - e_i) * ln(a_i / e_i), where e is the reference's proportion in bin i and a the
window's. An empty bin would make ln infinite, so both are smoothed by the one rule of ``smoothed``: a proportion
p of k bins becomes (p + EPSILON) / (1 + k * EPSILON), EPSILON = 1e-4 (the same on both sides, so identical
distributions give exactly 0). With it, a window all in one of ten equally likely classes scores about 8; the
usual reading is < 0.1 stable, 0.1-0.2 a moderate shift, > 0.2 a real one (docs/serving.md, "Drift").

The reference is what the export predicted on its own test split (``training/reference.py``): the top-1 class
and the top-1 score in ``contract.SCORE_BINS`` bins. ``Window`` keeps the last ``size`` predictions of one
version in two preallocated rings plus their counts and the PSI's per-bin terms, so adding an image is O(1),
whatever the number of classes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from tlserve.contract import (
    METADATA_REFERENCE,
    REFERENCE_CLASS_FREQUENCIES,
    REFERENCE_IMAGES,
    REFERENCE_LABEL_FREQUENCIES,
    REFERENCE_SCORE_HISTOGRAM,
    SCORE_BINS,
)

log = logging.getLogger(__name__)

EPSILON = 1e-4


def smoothed(proportions: Sequence[float]) -> tuple[float, ...]:
    """The one smoothing rule of both sides of a PSI (see the module's docstring)."""
    k = len(proportions)
    return tuple((p + EPSILON) / (1 + k * EPSILON) for p in proportions)


def psi_term(expected: float, actual: float) -> float:
    """One bin's share of the PSI, both proportions already ``smoothed``."""
    return (actual - expected) * math.log(actual / expected)


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """The population stability index of ``actual`` against ``expected``, both already ``smoothed``."""
    return math.fsum(psi_term(e, a) for e, a in zip(expected, actual, strict=True))


@dataclass(frozen=True)
class Reference:
    """An export's METADATA_REFERENCE, checked, with its smoothed proportions computed once."""

    images: int
    class_frequencies: tuple[float, ...]
    label_frequencies: tuple[float, ...] | None
    score_histogram: tuple[float, ...]

    @cached_property
    def class_expected(self) -> tuple[float, ...]:
        return smoothed(self.class_frequencies)

    @cached_property
    def score_expected(self) -> tuple[float, ...]:
        return smoothed(self.score_histogram)


def _proportions(value, size: int, what: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != size:
        raise ValueError(f"'{what}' must be a list of {size} numbers")
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0 for x in value):
        raise ValueError(f"'{what}' must hold finite numbers >= 0")
    total = sum(value)
    if not 0.99 <= total <= 1.01:
        raise ValueError(f"'{what}' must sum to 1, sums to {total:.4g}")
    return tuple(float(x) / total for x in value)


def parse_reference(metadata: dict, num_classes: int) -> Reference | None:
    """The reference in an export's metadata, or None: absent (an export before issue 17) or unusable (logged).
    Never an error: a version without a usable reference serves as before, without the drift gauge."""
    raw = metadata.get(METADATA_REFERENCE)
    if raw is None:
        return None
    try:
        if not isinstance(raw, dict):
            raise ValueError("must be a JSON object")
        images = raw.get(REFERENCE_IMAGES)
        if isinstance(images, bool) or not isinstance(images, int) or images < 1:
            raise ValueError(f"'{REFERENCE_IMAGES}' must be an integer >= 1")
        labels = raw.get(REFERENCE_LABEL_FREQUENCIES)
        return Reference(images, _proportions(raw.get(REFERENCE_CLASS_FREQUENCIES), num_classes,
                                              REFERENCE_CLASS_FREQUENCIES),
                         None if labels is None else _proportions(labels, num_classes, REFERENCE_LABEL_FREQUENCIES),
                         _proportions(raw.get(REFERENCE_SCORE_HISTOGRAM), SCORE_BINS, REFERENCE_SCORE_HISTOGRAM))
    except ValueError as exc:
        log.warning("metadata '%s' ignored (no drift for this version): %s", METADATA_REFERENCE, exc)
        return None


class _RunningPSI:
    """The PSI of a full window's counts against ``expected``, kept as per-bin terms and their sum: one count
    changing changes one term, so an image costs O(1) even for a thousand classes. ``reset`` recomputes it all
    (when the window fills, then once per window's worth of images, so rounding never accumulates)."""

    def __init__(self, expected: tuple[float, ...], n: int):
        self.expected, self.n = expected, n
        self.terms = [0.0] * len(expected)
        self.total = 0.0
        self._norm = 1 + len(expected) * EPSILON  # smoothed()'s rule, for one bin

    def _term(self, i: int, count: int) -> float:
        return psi_term(self.expected[i], (count / self.n + EPSILON) / self._norm)

    def reset(self, counts: list[int]) -> None:
        self.terms = [self._term(i, c) for i, c in enumerate(counts)]
        self.total = math.fsum(self.terms)

    def update(self, i: int, count: int) -> None:
        term = self._term(i, count)
        self.total += term - self.terms[i]
        self.terms[i] = term


class Window:
    """The last ``size`` predictions (top-1 class, score bin) of one model version, and their drift against
    ``reference`` (None: counts only)."""

    def __init__(self, size: int, num_classes: int, reference: Reference | None = None):
        self.size = size
        self.reference = reference
        self.count = 0  # predictions in the window (at most size)
        self.class_counts = [0] * num_classes
        self.bin_counts = [0] * SCORE_BINS
        self._classes = [0] * size
        self._bins = [0] * size
        self._next = 0
        self._since_reset = 0
        self._class_psi = _RunningPSI(reference.class_expected, size) if reference else None
        self._score_psi = _RunningPSI(reference.score_expected, size) if reference else None

    def add(self, top_class: int, score_bin: int) -> None:
        i = self._next
        self._next = (i + 1) % self.size
        if self.count < self.size:
            self.count += 1
            self._count(top_class, score_bin, 1)
            self._classes[i], self._bins[i] = top_class, score_bin
            if self.count == self.size:
                self._reset()
            return
        old_class, old_bin = self._classes[i], self._bins[i]  # full: the oldest prediction leaves
        self._classes[i], self._bins[i] = top_class, score_bin
        self._since_reset += 1
        if self._since_reset >= self.size:
            self._count(old_class, old_bin, -1)
            self._count(top_class, score_bin, 1)
            self._reset()
            return
        classes, bins, class_psi, score_psi = self.class_counts, self.bin_counts, self._class_psi, self._score_psi
        if old_class != top_class:
            classes[old_class] -= 1
            classes[top_class] += 1
            if class_psi:
                class_psi.update(old_class, classes[old_class])
                class_psi.update(top_class, classes[top_class])
        if old_bin != score_bin:
            bins[old_bin] -= 1
            bins[score_bin] += 1
            if score_psi:
                score_psi.update(old_bin, bins[old_bin])
                score_psi.update(score_bin, bins[score_bin])

    def _count(self, top_class: int, score_bin: int, step: int) -> None:
        self.class_counts[top_class] += step
        self.bin_counts[score_bin] += step

    def _reset(self) -> None:
        self._since_reset = 0
        if self._class_psi and self._score_psi:
            self._class_psi.reset(self.class_counts)
            self._score_psi.reset(self.bin_counts)

    @property
    def full(self) -> bool:
        return self.count == self.size

    def class_frequencies(self) -> list[float]:
        return [c / self.count if self.count else 0.0 for c in self.class_counts]

    def class_drift(self) -> float | None:
        """The PSI of the predicted classes; None until the window is full (a PSI of a part-filled window is
        mostly noise) or without a reference."""
        return self._class_psi.total if self._class_psi and self.full else None

    def score_drift(self) -> float | None:
        """The PSI of the top-1 score's bins, as ``class_drift``."""
        return self._score_psi.total if self._score_psi and self.full else None
