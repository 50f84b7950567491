"""The capture folder's layout: ids, atomic writes, reviews (labelled / discarded), eviction, hostile ids."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime

import pytest
from PIL import Image

from service.capture import layout
from service.capture.layout import CaptureDir
from service.core.errors import InvalidInput, NotFound
from training.data import load_images
from training.preprocessing import IMAGE_SUFFIXES


def png(color=(200, 10, 10), size=8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, "PNG")
    return out.getvalue()


def capture(folder: CaptureDir, image: bytes, *, model="m", moment=None) -> str:
    moment = moment or datetime.now(UTC)
    capture_id = layout.new_id(moment)
    doc = layout.sidecar(capture_id=capture_id, model=model, version=1, transport="http", api="classify",
                         request_id="r1", moment=moment, image=image,
                         predictions=[{"label": "a", "index": 0, "score": 0.4}], confident=None, reason="below")
    folder.write(capture_id, image, doc)
    return capture_id


@pytest.fixture
def folder(tmp_path) -> CaptureDir:
    d = CaptureDir(tmp_path / "cap")
    d.create()
    return d


def test_ids_sort_by_time_and_are_checked():
    early = layout.new_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = layout.new_id(datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert early.startswith("20260102T030405Z-") and early < late
    assert layout.valid_id(early)
    for bad in ("../x", "20260102T030405Z-../../etc", "", "20260102T030405Z-ABCDEF012345", early + "/x", None):
        assert not layout.valid_id(bad)


def test_sniffed_extensions():
    assert layout.sniff(png()) == (".png", "image/png")
    assert layout.sniff(b"\xff\xd8\xff\xe0rest")[0] == ".jpg"
    assert layout.sniff(b"GIF89a...")[0] == ".gif"
    assert layout.sniff(b"RIFF\0\0\0\0WEBPVP8 ")[0] == ".webp"
    assert layout.sniff(b"hello") == (".bin", "application/octet-stream")


def test_a_capture_is_its_image_then_its_sidecar(folder):
    image = png()
    capture_id = capture(folder, image)
    doc = folder.read(capture_id)
    assert doc["image"] == capture_id + ".png" and doc["bytes"] == len(image) and doc["top_score"] == 0.4
    assert "confident" not in doc and doc["reason"] == "below" and doc["time"].endswith("Z")
    assert folder.image_path(capture_id).read_bytes() == image
    assert folder.pending_ids() == [capture_id]
    assert not [p for p in folder.pending.iterdir() if p.name.startswith(".")]  # no temporaries left
    # An image whose sidecar never came is no capture, but it is listed for eviction.
    orphan = layout.new_id()
    (folder.pending / f"{orphan}.png").write_bytes(image)
    entries = {e.id: e for e in folder.pending_entries()}
    assert not entries[orphan].complete and entries[capture_id].complete
    assert orphan not in folder.pending_ids()


def test_labelled_images_land_where_train_reads_them(folder):
    ids = [capture(folder, png((i * 40, 0, 0))) for i in range(5)]
    ids += [capture(folder, png((0, i * 40, 0))) for i in range(5)]
    for capture_id in ids[:5]:
        folder.label(capture_id, "red cat")
    for capture_id in ids[5:]:
        reviewed = folder.label(capture_id, "green")
    assert reviewed["label"] == "green" and "reviewed_at" in reviewed
    assert json.loads((folder.reviewed / f"{ids[-1]}.json").read_text())["label"] == "green"
    assert folder.pending_ids() == [] and list(folder.pending.iterdir()) == []
    data = load_images(str(folder.labelled / "m"), min_per_class=5)
    assert sorted(data.classes) == ["green", "red cat"] and len(data.labels) == 10


def test_layout_extensions_are_ones_training_reads():
    assert set(layout.TRAINABLE_EXTS) <= set(IMAGE_SUFFIXES)


def test_discard_deletes_the_image(folder):
    capture_id = capture(folder, png())
    reviewed = folder.discard(capture_id)
    assert reviewed["discarded"] is True
    assert list(folder.pending.iterdir()) == [] and not any(folder.labelled.rglob("*.png"))
    with pytest.raises(NotFound):
        folder.discard(capture_id)


def test_untrainable_images_can_only_be_discarded(folder):
    capture_id = capture(folder, b"not an image at all")
    with pytest.raises(InvalidInput):
        folder.label(capture_id, "x")
    assert folder.pending_ids() == [capture_id]  # a failed review leaves it pending
    folder.discard(capture_id)


@pytest.mark.parametrize("label", ["", "  ", "../up", "a/b", "..", ".hidden", "a\\b", "a\0b", "x" * 256, 3])
def test_hostile_labels_are_refused(folder, label):
    capture_id = capture(folder, png())
    with pytest.raises(InvalidInput):
        folder.label(capture_id, label)
    assert folder.pending_ids() == [capture_id]


@pytest.mark.parametrize("capture_id", ["../../etc/passwd", "..", "20260102T030405Z-0123456789ab/../x", "*"])
def test_hostile_ids_are_not_found(folder, capture_id):
    for review in (lambda: folder.label(capture_id, "a"), lambda: folder.discard(capture_id),
                   lambda: folder.read(capture_id), lambda: folder.image_path(capture_id)):
        with pytest.raises(NotFound):
            review()


def test_a_sidecar_naming_another_file_is_refused(folder):
    capture_id = capture(folder, png())
    sidecar_path = folder.pending / f"{capture_id}.json"
    doc = json.loads(sidecar_path.read_text())
    sidecar_path.write_text(json.dumps({**doc, "image": "../../outside.png"}))
    with pytest.raises(InvalidInput):
        folder.label(capture_id, "a")
    sidecar_path.write_text(json.dumps({**doc, "model": "../m"}))
    with pytest.raises(InvalidInput):
        folder.label(capture_id, "a")
    assert folder.pending_ids() == [capture_id]


def race(*reviews) -> list[str]:
    """Run the reviews in threads released at the same instant; what each ended with."""
    results: list[str] = []
    barrier = threading.Barrier(len(reviews))

    def run(review):
        barrier.wait()
        try:
            review()
            results.append("ok")
        except NotFound:
            results.append("not found")

    threads = [threading.Thread(target=run, args=(review,)) for review in reviews]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_reviews_of_one_id_at_once_one_wins(folder):
    for _ in range(20):
        capture_id = capture(folder, png())
        results = race(lambda i=capture_id: folder.label(i, "a"), lambda i=capture_id: folder.discard(i))
        assert sorted(results) == ["not found", "ok"]
        reviewed = json.loads((folder.reviewed / f"{capture_id}.json").read_text())
        labelled = (folder.labelled / "m" / "a" / f"{capture_id}.png").exists()
        assert labelled == ("label" in reviewed) and labelled != reviewed.get("discarded", False)
    assert list(folder.pending.iterdir()) == []


def test_evict_frees_the_files_and_spares_a_capture_under_review(folder):
    first, second = capture(folder, png()), capture(folder, png())
    total = sum(e.bytes for e in folder.pending_entries())
    freed = folder.evict(first)
    assert freed > 0 and sum(e.bytes for e in folder.pending_entries()) == total - freed
    claim = folder._claim(second)  # a review holds it
    assert folder.evict(second) == 0
    assert claim.exists() and (folder.pending / f"{second}.png").exists()
