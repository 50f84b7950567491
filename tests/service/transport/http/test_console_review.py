"""The console's review API (issue 17) against real servers: captures written by the layout module's own writer
(and one by a real request), listed, shown, labelled and discarded over HTTP; auth on and off; capture off; every
bad input a 4xx; and `tlserve train --data DIR/labelled/<model>` reading what the review wrote."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from service.capture import layout
from service.capture.layout import CaptureDir
from service.settings import Settings
from tests.conftest import encode
from tests.service.conftest import start_server

TOKEN = "review-token-1234"
COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def colour_image(colour: str, seed: int, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    return encode(np.clip(rng.normal(COLOURS[colour], 25, (24, 24, 3)), 0, 255).astype(np.uint8), fmt)


def write_capture(folder: CaptureDir, model: str, score: float, image: bytes, *, age_s: int = 0) -> str:
    """One pending capture exactly as the server's writer stores it (layout.sidecar, CaptureDir.write)."""
    moment = datetime.now(UTC) - timedelta(seconds=age_s)
    capture_id = layout.new_id(moment)
    predictions = [{"label": "red", "index": 0, "score": score}, {"label": "blue", "index": 1, "score": 1 - score}]
    doc = layout.sidecar(capture_id=capture_id, model=model, version=1, transport="http", api="classify",
                         request_id=f"test-{capture_id}", moment=moment, image=image, predictions=predictions,
                         confident=None, reason="below")
    folder.write(capture_id, image, doc)
    return capture_id


@pytest.fixture(scope="module")
def review_server(model_repo, tmp_path_factory):
    """Capture on, every image captured (below 1.01: any top-1 score), auth off."""
    root = tmp_path_factory.mktemp("review") / "captures"
    running = start_server(Settings(model_repo=model_repo, capture_dir=root, capture_below=1.01))
    running.folder = CaptureDir(root)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(review_server):
    with httpx.Client(base_url=review_server.url + "/ui/api", timeout=30) as c:
        yield c


def listing(api, **params) -> dict:
    response = api.get("/captures", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_pending_captures_are_listed_lowest_score_first_filtered_by_model_and_paged(review_server, api):
    folder = review_server.folder
    scores = [0.61, 0.12, 0.45, 0.33, 0.90]
    ids = [write_capture(folder, "listing", s, colour_image("red", i), age_s=10 - i) for i, s in enumerate(scores)]
    write_capture(folder, "listing-other", 0.01, colour_image("blue", 9))
    by_score = [i for _, i in sorted(zip(scores, ids, strict=True))]

    page = listing(api, model="listing")
    assert page["enabled"] is True and page["total"] == 5
    assert [c["id"] for c in page["captures"]] == by_score
    assert [c["top_score"] for c in page["captures"]] == sorted(scores)
    first = page["captures"][0]
    assert first["model"] == "listing" and first["predictions"][0] == {"label": "red", "index": 0, "score": 0.12}
    assert page["models"]["listing"] == 5 and page["models"]["listing-other"] == 1

    two = listing(api, model="listing", limit=2, offset=2)
    assert (two["total"], two["limit"], two["offset"]) == (5, 2, 2)
    assert [c["id"] for c in two["captures"]] == by_score[2:4]
    assert listing(api, model="listing", offset=5)["captures"] == []
    empty = listing(api, model="no-such-model")
    assert empty["total"] == 0 and empty["captures"] == []
    everything = listing(api, limit=200)
    assert {c["model"] for c in everything["captures"]} >= {"listing", "listing-other"}


def test_the_image_comes_back_with_its_content_type(review_server, api):
    png, jpeg = colour_image("red", 1), colour_image("blue", 2, "JPEG")
    for image, content_type in ((png, "image/png"), (jpeg, "image/jpeg")):
        capture_id = write_capture(review_server.folder, "images", 0.2, image)
        response = api.get(f"/captures/{capture_id}/image")
        assert response.status_code == 200
        assert response.content == image and response.headers["content-type"] == content_type
        assert response.headers["x-content-type-options"] == "nosniff"


def test_labelling_moves_the_image_to_its_class_folder_and_a_second_review_is_404(review_server, api):
    folder = review_server.folder
    image = colour_image("red", 3)
    capture_id = write_capture(folder, "labelling", 0.3, image)
    response = api.post(f"/captures/{capture_id}", json={"label": "dark red"})  # a new class, with a space
    assert response.status_code == 200, response.text
    reviewed = response.json()
    assert reviewed["label"] == "dark red" and reviewed["id"] == capture_id and "reviewed_at" in reviewed
    assert (folder.labelled / "labelling" / "dark red" / f"{capture_id}.png").read_bytes() == image
    assert not list(folder.pending.glob(f"{capture_id}*"))
    assert json.loads((folder.reviewed / f"{capture_id}.json").read_text())["label"] == "dark red"
    assert listing(api, model="labelling")["total"] == 0

    for again in ({"label": "red"}, {"discard": True}):
        second = api.post(f"/captures/{capture_id}", json=again)
        assert second.status_code == 404 and "no pending capture" in second.json()["error"]
    assert api.get(f"/captures/{capture_id}/image").status_code == 404
    assert (folder.labelled / "labelling" / "dark red" / f"{capture_id}.png").is_file()  # the first review stands


def test_discarding_deletes_the_image_and_files_the_sidecar_as_discarded(review_server, api):
    folder = review_server.folder
    capture_id = write_capture(folder, "discarding", 0.3, colour_image("blue", 4))
    response = api.post(f"/captures/{capture_id}", json={"discard": True})
    assert response.status_code == 200 and response.json()["discarded"] is True
    assert not list(folder.pending.glob(f"{capture_id}*")) and not (folder.labelled / "discarding").exists()
    assert json.loads((folder.reviewed / f"{capture_id}.json").read_text())["discarded"] is True
    assert api.post(f"/captures/{capture_id}", json={"discard": True}).status_code == 404


@pytest.mark.parametrize("body, fragment", [
    (b"not json", "JSON"),
    (b"[]", "object"),
    (b"{}", '{"label"'),
    (b'{"label": 3}', "a label is a string"),
    (b'{"discard": false}', '{"discard": true}'),
    (b'{"label": "red", "discard": true}', '{"label"'),
    (b'{"label": ""}', "non-empty"),
    (b'{"label": "../escape"}', "'/'"),
    (b'{"label": ".hidden"}', "'.'"),
    (b'{"label": "a/b"}', "'/'"),
    (b'{"label": "tab\\there"}', "control"),
    (b'{"label": "' + b"x" * 300 + b'"}', "255"),
])
def test_a_bad_review_body_is_a_400_and_the_capture_stays_pending(review_server, api, body, fragment):
    capture_id = write_capture(review_server.folder, "bad-bodies", 0.3, colour_image("red", 5))
    response = api.post(f"/captures/{capture_id}", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]
    assert review_server.folder.read(capture_id)["id"] == capture_id  # untouched, still pending


@pytest.mark.parametrize("method, path", [
    ("POST", "/captures/not-an-id"), ("POST", "/captures/20260101T000000Z-000000000000"),
    ("GET", "/captures/not-an-id/image"), ("GET", "/captures/20260101T000000Z-000000000000/image"),
    ("POST", "/captures/..%2F..%2Fsettings"),
])
def test_an_unknown_or_malformed_id_is_a_404(api, method, path):
    response = api.request(method, path, json={"discard": True})
    assert response.status_code == 404, response.text
    assert response.json()["error"]


def test_a_body_too_large_for_a_review_is_a_413(review_server, api):
    capture_id = write_capture(review_server.folder, "bad-bodies", 0.3, colour_image("red", 6))
    response = api.post(f"/captures/{capture_id}", content=b'{"label": "' + b"x" * 10_000 + b'"}')
    assert response.status_code == 413 and response.json()["error"]


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "201"}, {"limit": "ten"}, {"offset": "-1"}])
def test_bad_paging_is_a_400(api, params):
    response = api.get("/captures", params=params)
    assert response.status_code == 400 and next(iter(params)) in response.json()["error"]


def test_an_image_sent_to_classify_is_captured_and_listed_for_review(review_server, api, images):
    request_id = "review-real-request"
    answer = httpx.post(review_server.url + "/classify", files={"images": ("x.png", images[0], "image/png")},
                        data={"model": "shapes"}, headers={"x-request-id": request_id}, timeout=30)
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 10
    found: list[dict] = []
    while not found and time.monotonic() < deadline:  # the writer runs in the background
        found = [c for c in listing(api, model="shapes", limit=200)["captures"] if c["request_id"] == request_id]
        time.sleep(0.05)
    assert len(found) == 1, "the captured request was not listed"
    capture = found[0]
    assert capture["predictions"][0]["label"] == answer.json()["predictions"][0][0]["label"]
    assert api.get(f"/captures/{capture['id']}/image").content == images[0]


def test_with_capture_off_the_list_is_empty_and_disabled_and_the_rest_is_404(server):
    """The session's shared server has no --capture-dir."""
    with httpx.Client(base_url=server.url + "/ui/api", timeout=30) as off:
        assert listing(off) == {"enabled": False, "total": 0, "offset": 0, "limit": 50, "models": {},
                                "captures": []}
        for response in (off.get("/captures/20260101T000000Z-000000000000/image"),
                         off.post("/captures/20260101T000000Z-000000000000", json={"discard": True})):
            assert response.status_code == 404 and "--capture-dir" in response.json()["error"]


def test_with_auth_on_every_review_route_needs_the_token(model_repo, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    folder = CaptureDir(tmp_path / "captures")
    running = start_server(Settings(model_repo=model_repo, capture_dir=folder.root, auth_token_file=token_file))
    try:
        capture_id = write_capture(folder, "auth", 0.2, colour_image("red", 7))
        with httpx.Client(base_url=running.url + "/ui/api", timeout=30) as anonymous:
            for response in (anonymous.get("/captures"), anonymous.get(f"/captures/{capture_id}/image"),
                             anonymous.post(f"/captures/{capture_id}", json={"label": "red"}),
                             anonymous.get("/captures", headers={"authorization": "Bearer wrong"})):
                assert response.status_code == 401, response.text
            assert folder.read(capture_id)["id"] == capture_id  # the refused review changed nothing
            assert anonymous.get(running.url + "/ui/").status_code == 200  # the page itself stays open
        with httpx.Client(base_url=running.url + "/ui/api", timeout=30,
                          headers={"authorization": f"Bearer {TOKEN}"}) as signed:
            assert [c["id"] for c in listing(signed)["captures"]] == [capture_id]
            assert signed.get(f"/captures/{capture_id}/image").status_code == 200
            assert signed.post(f"/captures/{capture_id}", json={"label": "red"}).status_code == 200
        assert (folder.labelled / "auth" / "red" / f"{capture_id}.png").is_file()
    finally:
        running.stop()


def test_tlserve_train_reads_the_class_folders_the_review_wrote(review_server, api, tmp_path, capsys):
    from tlserve.cli import main

    folder = review_server.folder
    for colour in COLOURS:
        for seed in range(6):
            capture_id = write_capture(folder, "retrain", 0.4, colour_image(colour, 100 + seed))
            assert api.post(f"/captures/{capture_id}", json={"label": colour}).status_code == 200
    data = folder.labelled / "retrain"
    assert sorted(p.name for p in data.iterdir()) == ["blue", "red"]
    code = main(["train", "--data", str(data), "--name", "retrain", "--out", str(tmp_path / "models"),
                 "--image-size", "32", "--head-epochs", "1", "--fine-tune-epochs", "0", "--batch-size", "8",
                 "--test-fraction", "0.25", "--val-fraction", "0.2", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    version = tmp_path / "models" / "retrain" / "1"
    labels = (version / "assets" / "labels.txt").read_text().split()
    assert labels == ["blue", "red"]
    report = json.loads((version / "assets.extra" / "report" / "report.json").read_text())
    assert report["n"] > 0 and sum(c["support"] for c in report["per_class"]) == report["n"]  # tested on them


@pytest.mark.parametrize("sidecar", [b"{not json", b"[1, 2]"])
def test_a_corrupt_sidecar_cannot_be_labelled_but_can_be_discarded(review_server, api, sidecar):
    folder = review_server.folder
    capture_id = write_capture(folder, "corrupt", 0.3, colour_image("red", 8))
    (folder.pending / f"{capture_id}.json").write_bytes(sidecar)
    labelled = api.post(f"/captures/{capture_id}", json={"label": "red"})
    assert labelled.status_code == 400 and "discard it" in labelled.json()["error"]
    assert (folder.pending / f"{capture_id}.json").read_bytes() == sidecar  # still pending, as it was
    assert api.get(f"/captures/{capture_id}/image").status_code == 404  # nothing trustworthy to show
    assert capture_id not in {c["id"] for c in listing(api, model="corrupt")["captures"]}
    discarded = api.post(f"/captures/{capture_id}", json={"discard": True})
    assert discarded.status_code == 200, discarded.text
    assert not list(folder.pending.glob(f"{capture_id}*"))
