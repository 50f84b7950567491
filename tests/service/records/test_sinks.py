"""The record sinks without a server: sampling, the log's rotation bound, the writer's drop accounting, capture's
rule and its eviction. Real files, real threads; records built by hand."""

from __future__ import annotations

import io
import json
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from service.capture.layout import CaptureDir
from service.capture.writer import CaptureSink
from service.core.dataplane import Prediction
from service.observability.records import RecordMetrics
from service.records.background import BackgroundWriter
from service.records.record import RequestRecord
from service.records.requestlog import RequestLog
from service.settings import Settings, SettingsError


def png(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (shade, 0, 0)).save(out, "PNG")
    return out.getvalue()


def record(n: int = 0, top: float = 0.3, images: int = 1) -> RequestRecord:
    """The n-th record, n seconds after a fixed time (capture ids sort by the second)."""
    return RequestRecord(model="m", version=1, transport="http", protocol="http", api="classify",
                         request_id=f"r{n}", time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n),
                         signature="",
                         images=[png(n % 256) for _ in range(images)], inputs=None, outputs=None,
                         predictions=[[Prediction("a", 0, top), Prediction("b", 1, 1 - top)]] * images,
                         confident=None)


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def metrics(registry):
    return RecordMetrics(registry)


def test_sampling_is_honoured(tmp_path, metrics, registry):
    log = RequestLog(str(tmp_path / "r.jsonl"), sample=0.25, max_bytes=2**30, with_image_bytes=False,
                     queue_items=10_000, metrics=metrics, rng=random.Random(7))
    log.start()
    for n in range(2000):
        log.offer(record(n))
    log.close()
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert 400 < len(lines) < 600  # 500 expected; the binomial's sd is ~19
    assert registry.get_sample_value("tlserve_request_log_records_total", {"sink": "file"}) == len(lines)
    assert "b64" not in lines[0] and json.loads(lines[0])["request"]["images"][0]["sha256"]


def test_image_bytes_when_asked(tmp_path, metrics):
    log = RequestLog(str(tmp_path / "r.jsonl"), sample=1, max_bytes=2**30, with_image_bytes=True, queue_items=10,
                     metrics=metrics)
    log.start()
    log.offer(record())
    log.close()
    (line,) = (tmp_path / "r.jsonl").read_text().splitlines()
    assert json.loads(line)["request"]["images"][0]["b64"]


def test_the_log_file_rotates_within_its_bound(tmp_path, metrics):
    path, bound = tmp_path / "r.jsonl", 20_000
    log = RequestLog(str(path), sample=1, max_bytes=bound, with_image_bytes=True, queue_items=1000, metrics=metrics)
    log.start()
    for n in range(300):
        log.offer(record(n))
    log.close()
    rotated = path.with_name("r.jsonl.1")
    assert rotated.exists() and path.stat().st_size <= bound and rotated.stat().st_size <= bound
    for f in (path, rotated):  # whole lines only
        assert all(json.loads(line)["model"] == "m" for line in f.read_text().splitlines())


def test_the_writer_counts_every_drop_and_survives_a_failing_write():
    drops: list[str] = []
    written: list[int] = []

    def write(item: int) -> None:
        if item == 3:
            raise OSError("disk full")
        written.append(item)

    writer = BackgroundWriter("t", write, max_items=4, on_drop=drops.append)
    writer.start()
    writer.stall()
    accepted = [writer.offer(i) for i in range(10)]
    assert accepted == [True] * 4 + [False] * 6 and drops == ["queue_full"] * 6
    writer.stall(False)
    assert writer.flush(10)
    assert written == [0, 1, 2] and drops[-1] == "error"
    writer.stall()
    writer.offer(5)
    writer.close(timeout_s=0.2)  # stalled: what is queued cannot be written; close un-stalls and writes it
    assert written == [0, 1, 2, 5]
    assert writer.offer(6) is False and drops[-1] == "closed"


def test_offers_never_block_while_the_writer_is_stuck():
    release = threading.Event()
    writer = BackgroundWriter("t", lambda item: release.wait(), max_items=2)
    writer.start()
    try:
        for i in range(1000):
            writer.offer(i)  # would hang here if offer waited for the writer
    finally:
        release.set()
        writer.close(5)


def test_capture_rule_below_unconfident_and_sample(tmp_path, metrics):
    sink = CaptureSink(tmp_path, below=0.5, sample=0.5, max_bytes=2**20, queue_items=10, metrics=metrics,
                       rng=random.Random(1))
    assert sink.reason(0.4, None) == "below"
    assert sink.reason(0.9, False) == "below"  # the version's own unknown rule
    sampled = [sink.reason(0.9, True) for _ in range(400)]
    assert set(sampled) == {"sample", None} and 150 < sampled.count("sample") < 250
    assert CaptureSink(tmp_path, below=0.5, sample=0, max_bytes=2**20, queue_items=10,
                       metrics=metrics).reason(0.9, True) is None


def test_capture_evicts_the_oldest_and_never_labelled_images(tmp_path, metrics, registry):
    folder = CaptureDir(tmp_path)
    folder.create()
    labelled = folder.labelled / "m" / "a" / "x.png"
    labelled.parent.mkdir(parents=True)
    labelled.write_bytes(png(1))
    bound = 8000
    sink = CaptureSink(tmp_path, below=0.5, sample=0, max_bytes=bound, queue_items=100, metrics=metrics)
    sink.start()
    for n in range(40):
        sink.offer(record(n))
    sink.writer.flush(10)
    ids = folder.pending_ids()
    assert sum(e.bytes for e in folder.pending_entries()) <= bound and 0 < len(ids) < 40
    kept = {json.loads((folder.pending / f"{i}.json").read_text())["request_id"] for i in ids}
    assert kept == {f"r{n}" for n in range(40 - len(ids), 40)}  # the newest stay
    assert registry.get_sample_value("tlserve_capture_evicted_total") == 40 - len(ids)
    assert labelled.exists()
    sink.close()


@pytest.mark.parametrize("change", [{"log_requests_sample": 1.5}, {"capture_sample": -0.1},
                                    {"capture_max_mb": 0}, {"log_requests_url": "ftp://x"},
                                    {"log_requests_images": "all"}])
def test_bad_record_settings_are_refused(change):
    with pytest.raises(SettingsError):
        Settings(**change)


def test_the_queue_is_bounded_in_bytes_too():
    """Queued records keep their request's images alive: a queue of few items can still not hold gigabytes."""
    drops: list[str] = []
    writer = BackgroundWriter("t", lambda item: None, max_items=100, max_bytes=1000, size=len, on_drop=drops.append)
    writer.start()
    writer.stall()
    assert [writer.offer(b"x" * 400) for _ in range(3)] == [True, True, False]
    assert writer.offer(b"x" * 200) and drops == ["queue_full"]
    writer.close(5)


def test_an_unwritable_capture_folder_stops_the_start_with_its_name(tmp_path):
    import asyncio

    from service.app import build_runtime

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the capture folder should be")
    runtime = build_runtime(Settings(model_repo=tmp_path, capture_dir=blocker), CollectorRegistry())
    with pytest.raises(SettingsError, match="not-a-folder"):
        asyncio.run(runtime.start())
