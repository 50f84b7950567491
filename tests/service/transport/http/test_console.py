"""The web console's JSON API and static files over real HTTP (the browser tests are in tests/console)."""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.transport.http.console import CONSOLE_CSP, REPORT_DIR, REPORT_HTML_CSP


def by_name(listing: dict) -> dict:
    return {m["name"]: m for m in listing["models"]}


def test_models_lists_versions_states_classes_batching_and_report_files(client, model_repo):
    answer = client.get("/ui/api/models")
    assert answer.status_code == 200
    models = by_name(answer.json())
    assert set(models) == {"shapes", "half_plus_two"}

    shapes = models["shapes"]
    assert shapes["ready"] is True and shapes["version_labels"] == {}
    (version,) = [v for v in shapes["versions"] if v["version"] == "1"]
    assert version["state"] == "AVAILABLE" and version["reason"] == ""
    assert version["classes"] == (model_repo / "shapes/1/assets/labels.txt").read_text().splitlines()
    assert version["batching"]["max_batch_size"] == 8 and version["batching"]["batch_timeout_ms"] == 5
    report_dir = model_repo / "shapes/1" / REPORT_DIR
    assert version["report"] == sorted(p.name for p in report_dir.iterdir())
    assert {"report.json", "report.html", "confusion_matrix.png"} <= set(version["report"])
    assert version["explain"] is True  # the export's Grad-CAM signature: the console asks POST /explain for overlays

    # A TF1 model from TF Serving's test data: no labels file, no report.
    (plain,) = models["half_plus_two"]["versions"]
    assert (plain["version"], plain["state"], plain["classes"], plain["report"], plain["explain"]) == \
        ("123", "AVAILABLE", None, [], False)


def test_report_files_are_served_from_the_version_report_only(client, model_repo):
    report_dir = model_repo / "shapes/1" / REPORT_DIR
    answer = client.get("/ui/api/models/shapes/versions/1/report/report.json")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    assert answer.json() == json.loads((report_dir / "report.json").read_text())
    png = client.get("/ui/api/models/shapes/versions/1/report/confusion_matrix.png")
    assert png.headers["content-type"] == "image/png"
    assert png.content == (report_dir / "confusion_matrix.png").read_bytes()
    page = client.get("/ui/api/models/shapes/versions/1/report/report.html")
    assert page.headers["content-security-policy"] == REPORT_HTML_CSP


@pytest.mark.parametrize("path", [
    "/ui/api/models/shapes/versions/1/report/..",
    "/ui/api/models/shapes/versions/1/report/.report.json",
    "/ui/api/models/shapes/versions/1/report/saved_model.pb",  # a file of the version, not of its report
    "/ui/api/models/shapes/versions/1/report/..%2F..%2Fsaved_model.pb",
    "/ui/api/models/shapes/versions/1/report/%2Fetc%2Fpasswd",
    "/ui/api/models/shapes/versions/1/report/missing.json",
    "/ui/api/models/shapes/versions/7/report/report.json",
    "/ui/api/models/shapes/versions/x1/report/report.json",
    "/ui/api/models/nope/versions/1/report/report.json",
    "/ui/api/models/half_plus_two/versions/123/report/report.json",
])
def test_anything_else_is_not_found(client, path):
    answer = client.get(path)
    assert answer.status_code == 404
    assert "error" in answer.json()


def test_a_link_out_of_the_report_folder_is_neither_listed_nor_served(client, model_repo):
    link = model_repo / "shapes/1" / REPORT_DIR / "escape.json"
    os.symlink(model_repo / "shapes/1/assets.extra/metadata.json", link)
    try:
        assert client.get("/ui/api/models/shapes/versions/1/report/escape.json").status_code == 404
        (version,) = [v for v in by_name(client.get("/ui/api/models").json())["shapes"]["versions"]
                      if v["version"] == "1"]
        assert "escape.json" not in version["report"] and "report.json" in version["report"]
    finally:
        link.unlink()


def test_stats_has_the_figures_of_each_model_that_was_called(client, images):
    encoded = base64.b64encode(images[0]).decode()
    assert client.post("/classify", json={"model": "shapes", "images": [encoded]}).status_code == 200
    figures = client.get("/ui/api/stats").json()["models"]["shapes"]
    assert figures["requests"] >= 1 and figures["p50_s"] > 0 and figures["mean_batch_size"] >= 1
    assert set(figures) == {"window_s", "requests", "request_rate", "p50_s", "p99_s", "mean_batch_size",
                            "queue_depth", "errors"}


def test_the_page_and_its_files(client):
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONSOLE_CSP
    assert '<script src="app.js"' in page.text and "http" not in page.text  # nothing from elsewhere
    script = client.get("/ui/app.js")
    assert script.headers["content-type"].startswith("text/javascript") and "fetch(" in script.text
    assert client.get("/ui/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/ui/other.js").status_code == 404


@settings(max_examples=200, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(["shapes", "half_plus_two", "..", "shapes/1"]) | st.text(max_size=10),
       version=st.sampled_from(["1", "01", "123", "99999999999999999999999", ".."]) | st.text(max_size=6),
       file=st.sampled_from(["report.json", "report.html", "../saved_model.pb", "..", "labels.txt",
                             "../../assets/labels.txt", "metadata.json"]) | st.text(max_size=16))
def test_any_report_path_is_a_report_file_or_an_error(client, model_repo, model, version, file):
    """Generated model, version and file segments (every character escaped, dots too, so the client cannot
    resolve them): a report file of a served version, or a client error in the service's shape; never a 500."""
    segments = [quote(part, safe="").replace(".", "%2E") for part in (model, version, file)]
    answer = client.get("/ui/api/models/{}/versions/{}/report/{}".format(*segments))
    if answer.status_code == 200:
        assert model == "shapes" and version.isascii() and version.isdigit() and int(version) == 1
        assert answer.content == (model_repo / "shapes/1" / REPORT_DIR / file).read_bytes()
    else:
        assert answer.status_code in (400, 404) and "error" in answer.json(), (answer.status_code, answer.text)
