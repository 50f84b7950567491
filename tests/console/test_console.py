"""The web console in a real browser (headless Debian chromium) against a real server with a real digits model."""

from __future__ import annotations

import base64
import json
import shutil

import httpx
import pytest

from service.settings import Settings
from service.transport.http.console import REPORT_DIR
from tests.service.conftest import copy_version, start_server

REFRESH_WAIT_MS = 20_000  # the page re-reads the models every 5 s and the figures every 3 s


def open_console(page, server):
    page.goto(f"{server.url}/ui")
    page.wait_for_selector('tr.version[data-model="digits"][data-version="1"]')
    return page


def test_console_lists_the_digits_model_as_available_with_classes_and_batching(page, console_server):
    open_console(page, console_server)
    row = page.locator('tr.version[data-model="digits"][data-version="1"]')
    assert row.get_attribute("data-state") == "AVAILABLE"
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "AVAILABLE" and cells[2] == ""  # state, no failure reason
    assert cells[4].startswith("10: 0, 1, 2, 3")  # class names from assets/labels.txt
    assert cells[5].startswith("max 4, 3 ms, queue ")  # this server's batching settings, not the defaults
    assert page.locator('.model[data-model="digits"] h3').inner_text().endswith("serving")
    assert page.locator("#try-model").input_value() == "digits"
    assert page.locator("#try-version").input_value() == ""  # the newest available, until a version is picked


def test_uploading_digit_images_shows_the_right_top_labels_with_scores_and_latency(page, console_server,
                                                                                    digit_images, tmp_path):
    files = []
    for i, (png, label) in enumerate(digit_images):
        path = tmp_path / f"digit-{i}-{label}.png"
        path.write_bytes(png)
        files.append(path)
    open_console(page, console_server)
    page.fill("#try-top-k", "3")
    page.set_input_files("#try-files", [str(p) for p in files])
    page.wait_for_selector("#try-results .result >> nth=1")
    results = page.locator("#try-results .result")
    for i, (_png, label) in enumerate(digit_images):
        result = results.nth(i)
        assert result.locator(".file").inner_text() == files[i].name
        assert result.locator("li").count() == 3
        assert result.locator("li.top .label").inner_text() == label
        top_score = float(result.locator("li.top .score").inner_text())
        bar = result.locator("li.top .bar span").evaluate("e => parseFloat(e.style.width)")
        assert bar == pytest.approx(top_score * 100, abs=0.1)
        assert result.locator("img.picture").evaluate("img => img.complete && img.naturalWidth > 0")
    status = page.locator("#try-status")
    assert status.inner_text().startswith("digits version 1: 2 image(s) in ")
    assert float(status.get_attribute("data-latency-ms")) > 0
    # The export has an explain signature: each image gets its Grad-CAM overlay from POST /explain, at the model's
    # input size (48 px), explaining the top class shown.
    page.wait_for_selector("#try-results .result img.overlay:not([hidden]) >> nth=1")
    for i, (_png, label) in enumerate(digit_images):
        overlay = results.nth(i).locator("img.overlay")
        assert overlay.get_attribute("src").startswith("data:image/png;base64,")
        assert overlay.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]") == [True, 48, 48]
        assert overlay.get_attribute("title").startswith(f"Grad-CAM of {label} (")


def test_an_image_dropped_on_the_page_is_classified(page, console_server, digit_images):
    png, label = digit_images[1]
    open_console(page, console_server)
    # What a drag from the file manager delivers: a drop event whose DataTransfer holds the file.
    page.evaluate("""b64 => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        document.getElementById("drop-zone").dispatchEvent(
            new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", base64.b64encode(png).decode())
    page.wait_for_selector("#try-results .result li.top")
    assert page.locator("#try-results .result .file").inner_text() == "dropped.png"
    assert page.locator("#try-results li.top .label").inner_text() == label


def without_explain(version_dir):
    """An export as those from before issue 16 were: no explain signatures (removed from saved_model.pb, which is
    what the service reads its signatures from)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    for name in [n for n in saved.meta_graphs[0].signature_def if n.startswith("explain")]:
        del saved.meta_graphs[0].signature_def[name]
    (version_dir / "saved_model.pb").write_bytes(saved.SerializeToString())


def test_a_model_without_an_explain_signature_is_classified_without_overlay_or_error(page, console_server,
                                                                                     digits_repo, digit_images):
    staged = copy_version(digits_repo / "digits" / "1", digits_repo / ".old", "1")
    without_explain(staged)
    staged.parent.rename(digits_repo / "old_digits")
    try:
        open_console(page, console_server)
        # Found by the repository poll, loaded and warmed up, then shown by the page's next refresh.
        page.wait_for_selector('tr.version[data-model="old_digits"][data-version="1"][data-state="AVAILABLE"]',
                               timeout=3 * REFRESH_WAIT_MS)
        page.select_option("#try-model", "old_digits")
        png, label = digit_images[0]
        page.set_input_files("#try-files", files=[{"name": "digit.png", "mimeType": "image/png", "buffer": png}])
        page.wait_for_selector("#try-results .result li.top")
        assert page.locator("#try-results li.top .label").inner_text() == label
        page.wait_for_timeout(500)  # time for an overlay call, which must not be made
        assert page.locator("#try-results img.overlay").get_attribute("hidden") is not None
        assert page.locator("#try-status").inner_text().startswith("old_digits version 1: 1 image(s) in ")
        # No 404 from /explain either: the page fixture fails on any failed request or console error.
    finally:
        shutil.rmtree(digits_repo / "old_digits")


def test_a_version_that_fails_to_load_shows_its_reason_and_the_previous_one_keeps_serving(page, console_server,
                                                                                          digits_repo):
    open_console(page, console_server)
    broken = copy_version(digits_repo / "digits" / "1", digits_repo / "digits", ".staging-2")
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel protobuf")
    broken = broken.rename(digits_repo / "digits" / "2")
    try:
        # No reload: the page's own refresh brings the new version in.
        row = page.wait_for_selector('tr.version[data-model="digits"][data-version="2"] .state-failed',
                                     timeout=REFRESH_WAIT_MS)
        assert row.inner_text() == "FAILED"
        reason = page.locator('tr.version[data-model="digits"][data-version="2"] td.reason').inner_text()
        assert reason.startswith("load failed: ") and len(reason) > len("load failed: ") + 5
        # ... which is what the service itself reports for that version
        status = httpx.get(f"{console_server.url}/v1/models/digits/versions/2").json()
        assert status["model_version_status"][0]["status"]["error_message"] == reason
        assert page.locator('tr.version[data-model="digits"][data-version="1"]').get_attribute(
            "data-state") == "AVAILABLE"
    finally:
        shutil.rmtree(broken)


def test_live_figures_refresh_without_reloading_the_page(page, console_server, digit_images):
    open_console(page, console_server)
    page.evaluate("window.sameDocument = true")
    png = digit_images[0][0]
    for _ in range(5):
        answer = httpx.post(f"{console_server.url}/classify", files={"images": ("d.png", png, "image/png")},
                            data={"model": "digits", "version": "1"}, timeout=60)
        assert answer.status_code == 200
    assert httpx.post(f"{console_server.url}/classify", files={"images": ("d.png", png, "image/png")},
                      data={"model": "digits", "version": "99"}).status_code == 404
    row = page.locator('#stats tr[data-model="digits"]')
    page.wait_for_function(
        """() => { const r = document.querySelector('#stats tr[data-model="digits"]');
                   return r && /404: [1-9]/.test(r.cells[6].textContent); }""", timeout=REFRESH_WAIT_MS)
    cells = row.locator("td").all_inner_texts()
    assert float(cells[1]) > 0  # requests per second over the window
    assert cells[2].endswith(" ms") and cells[3].endswith(" ms")  # p50 and p99 from the histogram buckets
    assert float(cells[4]) >= 1  # mean batch size
    assert cells[5] == "0"  # queue depth, nothing waiting now
    assert "404: " in cells[6]
    assert page.evaluate("window.sameDocument") is True  # refreshed in place, not by reloading


def test_report_of_the_selected_version(page, console_server, digits_repo):
    report = json.loads((digits_repo / "digits" / "1" / REPORT_DIR / "report.json").read_text())
    open_console(page, console_server)
    page.locator('tr.version[data-model="digits"][data-version="1"]').click()
    page.wait_for_selector("#report-accuracy")
    assert page.locator("#try-version").input_value() == "1"  # Try it now calls the version picked
    assert page.locator("#report-title").inner_text() == "digits version 1"
    assert page.locator("#report-accuracy").inner_text() == f"{report['accuracy']:.4f}"
    assert page.locator("table.per-class tbody tr").count() == 10
    recall = page.locator("table.per-class tbody tr").nth(7).locator("td").nth(2).inner_text()
    assert recall == f"{report['per_class'][7]['recall']:.3f}"
    cells = page.locator("table.confusion tbody td").all_inner_texts()
    assert [int(c) for c in cells] == [n for row in report["confusion_matrix"] for n in row]
    mistakes = page.locator("table.misclassified tbody tr")
    assert mistakes.count() == min(20, len(report["misclassified"]))
    if report["misclassified"]:
        gallery = page.wait_for_selector(".gallery img")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=gallery)
        assert mistakes.first.locator("td").first.inner_text() == report["misclassified"][0]["source"]


def test_report_html_is_self_contained_in_the_browser(page, console_server):
    """Served with a policy that allows nothing but its own inline style and data: images: every figure
    still shows (a blocked one would be a console error, which the page fixture fails on)."""
    page.goto(f"{console_server.url}/ui/api/models/digits/versions/1/report/report.html")
    images = page.locator("img")
    assert images.count() >= 2  # the confusion matrix and the training curves at least
    for i in range(images.count()):
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 100")
    assert page.locator("h1").inner_text() == "Evaluation report"


@pytest.fixture(scope="module")
def auth_server(digits_repo, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("auth") / "token"
    token_file.write_text("console-test-token\n")
    running = start_server(Settings(model_repo=digits_repo, poll_interval_s=0.3, auth_token_file=token_file))
    yield running
    running.stop()


def test_with_auth_on_the_console_asks_for_a_token_once_and_sends_it_on_every_call(page, auth_server, digit_images,
                                                                                  tmp_path):
    assert httpx.get(f"{auth_server.url}/ui/api/models").status_code == 401  # the API is closed ...
    page.goto(f"{auth_server.url}/ui")  # ... the page itself is open
    page.wait_for_selector("#token-dialog[open]")
    page.fill("#token-input", "wrong-token")
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#token-dialog[open]")  # refused again: asked again
    page.fill("#token-input", "console-test-token")
    page.click("#token-form button[type=submit]")
    page.wait_for_selector('tr.version[data-model="digits"][data-version="1"][data-state="AVAILABLE"]')
    page.wait_for_selector("#report-accuracy")  # report files are fetched with the token too
    path = tmp_path / "digit.png"
    path.write_bytes(digit_images[0][0])
    page.set_input_files("#try-files", str(path))
    page.wait_for_selector("#try-results .result li.top")  # so is POST /classify
    assert page.locator("#try-results li.top .label").inner_text() == digit_images[0][1]
    page.wait_for_selector("#try-results img.overlay:not([hidden])")  # and POST /explain
    assert page.evaluate("sessionStorage.getItem('tlserve.token')") == "console-test-token"
    page.reload()  # kept for the tab's session: not asked again
    page.wait_for_selector('#stats tr[data-model="digits"]')
    assert not page.locator("#token-dialog").evaluate("d => d.open")
    # The browser logs each refused call; those 401s (and nothing else) were expected here.
    expected = [p for p in page.problems.items if "status of 401" in p]
    assert expected and len(expected) == len(page.problems.items), page.problems.items
    page.problems.items.clear()


def test_recent_predicted_classes_are_shown_beside_the_reference(page, console_server, digits_repo, digit_images):
    meta = json.loads((digits_repo / "digits" / "1" / "assets.extra" / "metadata.json").read_text())
    reference = meta["reference"]["class_frequencies"]
    png, label = digit_images[0]
    for _ in range(3):
        answer = httpx.post(f"{console_server.url}/classify", files={"images": ("d.png", png, "image/png")},
                            data={"model": "digits", "version": "1"}, timeout=60)
        assert answer.status_code == 200 and answer.json()["predictions"][0][0]["label"] == label
    live = httpx.get(f"{console_server.url}/ui/api/predictions").json()["models"]["digits"]["1"]
    assert live["reference"] == pytest.approx(reference) and live["window"] >= 3
    open_console(page, console_server)
    block = '.predictions[data-model="digits"][data-version="1"]'
    page.wait_for_selector(f'{block} tr[data-class="{label}"]', timeout=REFRESH_WAIT_MS)
    for i, name in enumerate(live["classes"]):
        row = page.locator(f'{block} tr[data-class="{name}"]')
        assert row.locator("td.reference .score").inner_text() == f"{reference[i] * 100:.1f}%"
        assert row.locator("td.live .score").inner_text() == f"{live['live'][i] * 100:.1f}%"
    assert live["live"][live["classes"].index(label)] > 0
    # the default window (1000) is far from full: no drift yet, and the page says why
    assert page.locator(f"{block} p.drift").inner_text() == \
        f"drift once the window is full ({live['window']} of {live['window_size']})"
