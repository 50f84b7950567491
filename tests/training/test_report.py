"""Evaluation report: metrics against hand computation, the files written, escaping and input validation."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from training.report import EvaluationInput, build_report, summary_lines, write_html, write_report

CLASSES = ["cat", "dog", "bird"]
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
# Two mistakes: item 3 (cat -> dog, score 0.6) and item 10 (bird -> cat, score 0.9).
Y_PRED = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 0, 2])
PRED_SCORE = {3: 0.6, 10: 0.9}


def _png(value: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (8, 8), value if mode == "L" else (value, 255 - value, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def _scores(y_pred: np.ndarray, n_classes: int, pred_score: dict[int, float]) -> np.ndarray:
    scores = np.zeros((len(y_pred), n_classes))
    for i, p in enumerate(y_pred):
        top = pred_score.get(i, 0.8)
        scores[i] = (1 - top) / (n_classes - 1)
        scores[i, p] = top
    return scores


def _evaluation(**changes) -> EvaluationInput:
    images = [_png(20 * i) for i in range(len(Y_TRUE))]
    images[5] = _png(100, mode="L")  # grayscale must be converted for the gallery, not rejected
    images[10] = b"not an image at all"  # misclassified, so the gallery has to cope with it
    ev = EvaluationInput(
        classes=CLASSES, y_true=Y_TRUE, scores=_scores(Y_PRED, 3, PRED_SCORE), images=images,
        sources=[f"data/{CLASSES[t]}/{i}.png" for i, t in enumerate(Y_TRUE)],
        skipped=[("data/cat/broken|1.jpg", "cannot identify image file")],
        histories={"phase1": {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.7],
                              "val_accuracy": [0.4, 0.7]},
                   "phase2": {"loss": [0.4]}},
        info={"model": "pets", "seed": np.int64(7), "image size": 32},
    )
    return dataclasses.replace(ev, **changes)


def test_metrics_match_hand_computation():
    report = build_report(_evaluation())
    assert report["n"] == 12
    assert report["accuracy"] == pytest.approx(10 / 12)
    by_label = {c["label"]: c for c in report["per_class"]}
    # cat: 3 of 4 found, 4 predicted cat (one of them a bird)
    assert (by_label["cat"]["precision"], by_label["cat"]["recall"]) == pytest.approx((3 / 4, 3 / 4))
    assert by_label["cat"]["f1"] == pytest.approx(0.75)
    # dog: all 4 found, 5 predicted dog
    assert (by_label["dog"]["precision"], by_label["dog"]["recall"]) == pytest.approx((4 / 5, 1.0))
    assert by_label["dog"]["f1"] == pytest.approx(8 / 9)
    # bird: 3 of 4 found, every bird prediction right
    assert (by_label["bird"]["precision"], by_label["bird"]["recall"]) == pytest.approx((1.0, 3 / 4))
    assert by_label["bird"]["f1"] == pytest.approx(6 / 7)
    assert [c["support"] for c in report["per_class"]] == [4, 4, 4]
    assert report["macro_f1"] == pytest.approx((0.75 + 8 / 9 + 6 / 7) / 3)


def test_confusion_matrix_rows_are_true_classes():
    assert build_report(_evaluation())["confusion_matrix"] == [[3, 1, 0], [0, 4, 0], [1, 0, 3]]


def test_class_absent_from_the_data_keeps_its_row_but_not_its_weight_in_macro_f1():
    classes = CLASSES + ["fish"]
    report = build_report(_evaluation(classes=classes, scores=_scores(Y_PRED, 4, PRED_SCORE)))
    assert report["confusion_matrix"] == [[3, 1, 0, 0], [0, 4, 0, 0], [1, 0, 3, 0], [0, 0, 0, 0]]
    assert report["per_class"][3] == {"label": "fish", "precision": 0.0, "recall": 0.0, "f1": 0.0,
                                      "support": 0, "predicted": 0}
    assert report["macro_f1"] == pytest.approx((0.75 + 8 / 9 + 6 / 7) / 3)
    assert "fish" not in summary_lines(report)[-1]


def test_misclassified_most_confident_first_and_skipped_recorded():
    report = build_report(_evaluation())
    assert report["misclassified"] == [
        {"index": 10, "source": "data/bird/10.png", "true": "bird", "predicted": "cat", "score": pytest.approx(0.9)},
        {"index": 3, "source": "data/cat/3.png", "true": "cat", "predicted": "dog", "score": pytest.approx(0.6)},
    ]
    assert report["skipped"] == [{"source": "data/cat/broken|1.jpg", "reason": "cannot identify image file"}]
    assert report["info"] == {"model": "pets", "seed": 7, "image size": 32}
    json.dumps(report)  # numpy values (the seed) must not leak into the report


def test_write_report_writes_valid_files(tmp_path):
    out = tmp_path / "nested" / "report"
    report = write_report(_evaluation(), out)
    expected = {"report.json", "report.md", "report.html", "confusion_matrix.png", "curves_phase1.png",
                "curves_phase2.png", "misclassified.png"}
    assert set(report["files"]) == expected
    assert {p.name for p in out.iterdir()} == expected
    for name in expected - {"report.json", "report.md", "report.html"}:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    markdown = (out / "report.md").read_text()
    for name in expected - {"report.json", "report.md", "report.html"}:
        assert f"]({name})" in markdown
    assert "data/cat/3.png" in markdown and "data/bird/10.png" in markdown


def test_markdown_lists_skipped_images_with_reason_and_escapes_pipes(tmp_path):
    write_report(_evaluation(), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "| data/cat/broken\\|1.jpg | cannot identify image file |" in markdown
    assert "broken|1.jpg" not in markdown


def test_html_escapes_labels_and_sources(tmp_path):
    sources = [f"<script>alert({i})</script>" for i in range(len(Y_TRUE))]
    write_report(_evaluation(classes=["<b>", "dog", "bird"], sources=sources), tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "&lt;b&gt;" in page and "<b>" not in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page and "<script" not in page


def test_html_is_one_self_contained_file_with_the_pngs_embedded(tmp_path):
    report = write_report(_evaluation(), tmp_path)
    page = (tmp_path / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]*)" alt="([^"]*)"', page)
    pngs = sorted(name for name in report["files"] if name.endswith(".png"))
    assert len(sources) == len(pngs) == 4
    embedded = []
    for src, _alt in sources:
        assert src.startswith("data:image/png;base64,"), src[:60]
        embedded.append(base64.b64decode(src.split(",", 1)[1], validate=True))
    # The very bytes of each PNG written beside it (report.md still links those files).
    assert sorted(embedded) == sorted((tmp_path / name).read_bytes() for name in pngs)
    assert [alt for _src, alt in sources] == ["Confusion matrix", "Training curves: phase1", "Training curves: phase2",
                                              "Misclassified test images"]
    # Nothing else is referenced: no links to files, no external resources.
    assert re.findall(r'(?:src|href)="(?!data:)', page) == []


def test_html_can_be_rewritten_from_report_json_and_the_pngs(tmp_path):
    write_report(_evaluation(), tmp_path)
    first = (tmp_path / "report.html").read_text()
    (tmp_path / "report.html").unlink()
    write_html(json.loads((tmp_path / "report.json").read_text()), tmp_path)
    assert (tmp_path / "report.html").read_text() == first
    (tmp_path / "misclassified.png").unlink()
    with pytest.raises(OSError):
        write_html(json.loads((tmp_path / "report.json").read_text()), tmp_path)


def test_no_gallery_when_all_correct(tmp_path):
    report = write_report(_evaluation(scores=_scores(Y_TRUE, 3, {}), histories={}), tmp_path)
    assert report["misclassified"] == [] and report["accuracy"] == 1.0
    assert set(report["files"]) == {"report.json", "report.md", "report.html", "confusion_matrix.png"}
    assert not (tmp_path / "misclassified.png").exists()
    markdown = (tmp_path / "report.md").read_text()
    assert "No test image was misclassified." in markdown and "misclassified.png" not in markdown


def test_summary_lines():
    text = "\n".join(summary_lines(build_report(_evaluation())))
    assert "accuracy 0.8333" in text and "test images 12" in text
    assert "misclassified 2" in text and "skipped 1" in text
    assert "data/cat/broken|1.jpg: cannot identify image file" in text
    assert "weakest classes by F1: cat 0.750, bird 0.857, dog 0.889" in text


@pytest.mark.parametrize("changes, message", [
    ({"scores": np.full((12, 2), 0.5)}, r"scores must have shape \[n, 3\]"),
    ({"scores": np.full(12, 0.5)}, r"scores must have shape \[n, 3\]"),
    ({"y_true": Y_TRUE[:-1]}, r"y_true must have shape \[12\]"),
    ({"y_true": np.where(Y_TRUE == 2, 3, Y_TRUE)}, r"class indices in \[0, 3\)"),
    ({"y_true": Y_TRUE.astype(float)}, r"class indices"),
    ({"images": [b""] * 11}, r"images must have one entry per scored image \(12\)"),
    ({"sources": ["x"] * 13}, r"sources must have one entry per scored image \(12\)"),
    ({"y_true": [], "scores": [], "images": [], "sources": []}, r"^no test images to evaluate$"),
    ({"y_true": np.zeros(0, int), "scores": np.zeros((0, 3)), "images": [], "sources": []},
     r"^no test images to evaluate$"),
])
def test_inconsistent_input_is_rejected(changes, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        build_report(_evaluation(**changes))
    with pytest.raises(ValueError, match=message):
        write_report(_evaluation(**changes), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
