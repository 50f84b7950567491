"""Micro-benchmark of the prediction metrics' hook (issue 17): ``PredictionMonitor.observe`` per request and per image.

`PYTHONPATH=. .venv/bin/python bench/drift_observe.py` prints the cost of one observe() call for requests of 1, 8 and
32 images of a 10- and a 1000-class model, with a full window (so the drift gauges are set on every call), on a
fresh registry (prometheus_client's single-process values; BentoML's multiprocess mode writes to mmap files instead).
"""

from __future__ import annotations

import time

import numpy as np
from prometheus_client import CollectorRegistry

from service.observability.drift import Reference
from service.observability.metrics import Metrics
from service.observability.predictions import PredictionMonitor
from tlserve.contract import SCORE_BINS


def main() -> None:
    rng = np.random.default_rng(0)
    for classes in (10, 1000):
        names = [f"c{i}" for i in range(classes)]
        reference = Reference(1000, tuple([1 / classes] * classes), None, tuple([1 / SCORE_BINS] * SCORE_BINS))
        for batch in (1, 8, 32):
            monitor = PredictionMonitor(Metrics(CollectorRegistry()), window=1000)
            scores = rng.dirichlet(np.ones(classes) * 0.1, size=batch).astype(np.float32)
            unknown = rng.random(batch).astype(np.float32)
            for _ in range(2000 // batch + 1):  # fill the window first
                monitor.observe("m", 1, names, reference, scores, unknown, 0.5)
            calls = max(200, 20000 // batch)
            start = time.perf_counter()
            for _ in range(calls):
                monitor.observe("m", 1, names, reference, scores, unknown, 0.5)
            per_call = (time.perf_counter() - start) / calls
            print(f"{classes:5d} classes, {batch:3d} images/request: {per_call * 1e6:8.1f} us per request, "
                  f"{per_call / batch * 1e6:6.1f} us per image")


if __name__ == "__main__":
    main()
