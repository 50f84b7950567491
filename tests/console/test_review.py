"""The console's review of captured images in a real browser: a real server with a capture folder, two captures
written by the layout module's own writer, one labelled and one discarded by clicking."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from service.capture import layout
from service.capture.layout import CaptureDir
from service.settings import Settings
from tests.service.conftest import start_server

WAIT_MS = 20_000


@pytest.fixture(scope="module")
def review_server(digits_repo, tmp_path_factory):
    folder = CaptureDir(tmp_path_factory.mktemp("console-review") / "captures")
    running = start_server(Settings(model_repo=digits_repo, poll_interval_s=0.3, capture_dir=folder.root))
    running.folder = folder
    yield running
    running.stop()


def write_capture(folder: CaptureDir, image: bytes, top: str, score: float, age_s: int) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=age_s)
    capture_id = layout.new_id(moment)
    predictions = [{"label": top, "index": int(top), "score": score}, {"label": "1", "index": 1, "score": 0.1}]
    folder.write(capture_id, image, layout.sidecar(
        capture_id=capture_id, model="digits", version=1, transport="http", api="classify", request_id="r",
        moment=moment, image=image, predictions=predictions, confident=None, reason="below"))
    return capture_id


def test_a_person_labels_one_capture_and_discards_another(page, review_server, digit_images):
    folder = review_server.folder
    (three, _), (eight, _) = digit_images
    unsure = write_capture(folder, three, "5", 0.21, age_s=5)  # lowest score: listed first
    other = write_capture(folder, eight, "8", 0.44, age_s=10)
    page.goto(f"{review_server.url}/ui")
    page.wait_for_selector(f'.capture[data-id="{other}"]', timeout=WAIT_MS)
    cards = page.locator("#captures .capture")
    assert [cards.nth(i).get_attribute("data-id") for i in range(cards.count())] == [unsure, other]
    assert "1–2 of 2 pending" in page.locator("#review-summary").inner_text()
    first = cards.nth(0)
    assert first.locator("li.top .label").inner_text() == "5" and first.locator("li.top .score").inner_text() == "0.210"
    page.wait_for_function("id => { const img = document.querySelector(`.capture[data-id='${id}'] img`);"
                           " return img && img.complete && img.naturalWidth > 0; }", arg=unsure, timeout=WAIT_MS)
    # The label is chosen from the model's classes (or typed): the datalist holds the digits model's ten.
    choices = first.locator("datalist option").evaluate_all("options => options.map(o => o.value)")
    assert set(choices) >= {str(d) for d in range(10)}

    first.locator("input.label").fill("3")
    first.locator("button.label-button").click()
    page.wait_for_selector(f'.capture[data-id="{unsure}"]', state="detached", timeout=WAIT_MS)
    assert (folder.labelled / "digits" / "3" / f"{unsure}.png").read_bytes() == three
    assert json.loads((folder.reviewed / f"{unsure}.json").read_text())["label"] == "3"

    page.locator(f'.capture[data-id="{other}"] button.discard-button').click()
    page.wait_for_selector("#captures >> text=No pending captures.", timeout=WAIT_MS)
    assert json.loads((folder.reviewed / f"{other}.json").read_text())["discarded"] is True
    assert not list(folder.pending.glob(f"{other}*"))
    assert sorted(p.name for p in (folder.labelled / "digits").iterdir()) == ["3"]


def test_with_capture_off_the_review_says_so(page, console_server):
    page.goto(f"{console_server.url}/ui")
    page.wait_for_selector("#review-off:not([hidden])", timeout=WAIT_MS)
    assert "--capture-dir" in page.locator("#review-off").inner_text()
    assert page.locator("#review-controls").is_hidden()
