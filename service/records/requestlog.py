"""The request log (issue 19): one JSON line per sampled request, to a file or stdout, written in the background.

The file is bounded by rotation: when the next line would take it past ``max_bytes`` it is renamed to
``<file>.1`` (replacing the previous one) and a new file begins, so the log never holds more than twice
``max_bytes`` on disk. stdout is not bounded here: whatever collects it (a container runtime) owns that.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import IO

from service.observability.records import RecordMetrics
from service.records.payload import document
from service.records.record import RequestRecord
from service.records.sampled import SampledSink

STDOUT = "-"


class RotatingLines:
    """Lines appended to a file that is rotated to ``<file>.1`` before it would exceed ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int):
        self.path, self.max_bytes = path, max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(self.path, "ab")
        self._size = self._file.tell()

    def write(self, line: bytes) -> None:
        if self._size and self._size + len(line) > self.max_bytes:
            self._file.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._file = open(self.path, "ab")
            self._size = 0
        self._file.write(line)
        self._file.flush()  # a line is whole on disk once written: readers (tail -f, shippers) never see half
        self._size += len(line)

    def close(self) -> None:
        self._file.close()


class StdoutLines:
    def write(self, line: bytes) -> None:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()

    def close(self) -> None:
        pass


class RequestLog(SampledSink):
    """A sink: samples records at ``sample`` (0..1) and writes each as one JSON line."""

    def __init__(self, target: str, *, sample: float, max_bytes: int, with_image_bytes: bool, queue_items: int,
                 metrics: RecordMetrics, queue_bytes: int | None = None, rng: random.Random | None = None):
        super().__init__("file" if target != STDOUT else "stdout", self._write, sample=sample,
                         queue_items=queue_items, metrics=metrics, queue_bytes=queue_bytes, rng=rng)
        self.target, self.max_bytes, self.with_image_bytes = target, max_bytes, with_image_bytes
        self.lines: RotatingLines | StdoutLines | None = None

    def start(self) -> None:
        self.lines = StdoutLines() if self.target == STDOUT else RotatingLines(Path(self.target), self.max_bytes)
        super().start()

    def close(self) -> None:
        super().close()
        if self.lines is not None:
            self.lines.close()

    def _write(self, record: RequestRecord) -> None:
        line = json.dumps(document(record, self.with_image_bytes), separators=(",", ":")).encode() + b"\n"
        assert self.lines is not None, "started before the first record"
        self.lines.write(line)
        self.metrics.request_log_records.labels(self.name).inc()
