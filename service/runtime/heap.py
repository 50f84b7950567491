"""The collector and a serving process's long-lived heap.

After TensorFlow's import and one model load a serving process holds about half a million objects. Python's
full (generation 2) collection walks every one of them with the GIL held: 275 ms here, with the event loop and
every request stopped, and the collector starts one whenever enough new objects have survived. Under load (the
overhead-bound model, gRPC, c=128) a worker ran 13 of them, 0.4 s at worst: the p99.

So once a version is loaded, what is alive is moved out of the collector's sight (``gc.freeze``); the
collections serving causes walk only what was made since. The freeze does not collect first: that was a full
collection at every load and at every cold start (0.3-0.4 s traced), to free the few hundred cyclic objects a
load leaves. They stay frozen until the next unload: then the old version's objects are frozen garbage too, so
the heap is thawed and one full collection frees both (one pause per unload), then it is frozen again.

Freezing alone moved the pauses rather than ending them: a request in flight at c=128 keeps hundreds of
objects alive for 100+ ms (BentoML's always-recording OpenTelemetry spans among them), long enough to survive
two young collections at Python's default of one per 700 allocations, so the old generation filled with
requests in flight and was walked again and again. One young collection per 10,000 allocations lets most of
them die young. Measured (overhead-bound model, c=128, two batch slots, one intra-op thread, frozen both
times): HTTP /classify JSON 543 -> 868 img/s, p99 462 -> 198 ms; gRPC Classifier 1,121 -> 1,294 img/s, p99
230 -> 202 ms.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 10_000  # allocations between young collections (Python's default: 700); see above


def after_load() -> None:
    """Freeze everything there is now (no collection: a list splice)."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def after_unload() -> None:
    """Thaw, collect (the unloaded version's cycles, and what loads left), freeze again."""
    started = time.perf_counter()
    gc.unfreeze()
    freed = gc.collect()
    gc.freeze()
    log.debug("heap settled after an unload: %d objects freed, %d frozen, %.0f ms", freed, gc.get_freeze_count(),
              1000 * (time.perf_counter() - started))
