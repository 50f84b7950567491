"""Pure figures of the benchmark: latency percentiles, the window of a load run, the median of repeats,
and the result row's schema. No I/O, so tests/bench checks them directly."""

from __future__ import annotations

import math
from dataclasses import dataclass

ROW_FIELDS = ("system", "model", "concurrency", "throughput", "p50_ms", "p90_ms", "p99_ms", "errors", "cpu_s",
              "rss_mb")
CDF_POINTS = 101  # latency at percentiles 0, 1, ..., 100: enough for a CDF plot, small in JSON


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Request:
    """One request as a load generator logged it: when it started, its status, how long it took."""

    start_s: float
    ok: bool
    latency_s: float


@dataclass(frozen=True)
class Window:
    """Figures of the requests that ended inside ``[start_s, start_s + seconds)``."""

    throughput: float  # successful requests (one image each) per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    cdf_ms: list[float]


def window(requests: list[Request], start_s: float, seconds: float, *, by_end: bool = True) -> Window:
    """The requests inside ``[start_s, start_s + seconds)``.

    Closed loop (``by_end``): requests that ended before ``start_s`` are warm-up, those that ended after the
    window the drain; counting by end, not start, keeps slow answers to requests started before the window,
    and a run that stops with requests in flight loses none of the window's answers. Open loop: every request
    planned inside the window counts, however late its answer (throughput then is answered requests over the
    window, and falls below the rate when answers fail)."""
    if seconds <= 0:
        raise ValueError("the window must last more than 0 s")
    instant = (lambda r: r.start_s + r.latency_s) if by_end else (lambda r: r.start_s)
    inside = [r for r in requests if start_s <= instant(r) < start_s + seconds]
    ok_ms = [r.latency_s * 1000 for r in inside if r.ok]
    return Window(throughput=len(ok_ms) / seconds, p50_ms=percentile(ok_ms, 50), p90_ms=percentile(ok_ms, 90),
                  p99_ms=percentile(ok_ms, 99), errors=len(inside) - len(ok_ms),
                  cdf_ms=[round(percentile(ok_ms, q), 3) for q in range(CDF_POINTS)] if ok_ms else [])


def median_repeat(repeats: list[dict]) -> dict:
    """The repeat whose throughput is the median (the lower middle of an even count), with every repeat's
    throughput kept beside it: a whole repeat, so its latencies and throughput belong together."""
    if not repeats:
        raise ValueError("no repeats to choose from")
    ordered = sorted(repeats, key=lambda r: r["throughput"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["repeat_throughputs"] = [round(r["throughput"], 2) for r in repeats]
    return chosen


def check_row(row: dict) -> dict:
    """``row`` if it carries every field of the schema with a value of the right kind; else ValueError."""
    missing = [f for f in ROW_FIELDS if f not in row]
    if missing:
        raise ValueError(f"result row lacks {missing}: {row}")
    if not isinstance(row["system"], str) or not isinstance(row["model"], str):
        raise ValueError(f"system and model must be strings: {row}")
    if not isinstance(row["concurrency"], int) or row["concurrency"] < 1:
        raise ValueError(f"concurrency must be a positive integer: {row}")
    if not isinstance(row["errors"], int) or row["errors"] < 0:
        raise ValueError(f"errors must be a count: {row}")
    for name in ("throughput", "p50_ms", "p90_ms", "p99_ms", "cpu_s", "rss_mb"):
        if not isinstance(row[name], (int, float)):
            raise ValueError(f"{name} must be a number: {row}")
    return row
