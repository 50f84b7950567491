"""The report's calibration and unknown-score sections: present with their inputs, absent without."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.training.test_report import _evaluation
from training import calibration as calib
from training.report import RELIABILITY_FILE, build_report, write_report


def _trusting(**changes):
    ev = _evaluation()
    after = ev.scores
    before = calib.softmax(np.log(after), 0.5)  # sharper: the same argmax, overconfident
    trust = {"uncalibrated_scores": before,
             "calibration": {"temperature": 2.0, "nll_before": 1.5, "nll_after": 0.7, "ece_floor": 0.0123},
             "unknown": {"score": "energy", "threshold": 0.5, "false_rejection_target": 0.01},
             "unknown_scores": np.linspace(0, 1, len(after))}
    return dataclasses.replace(ev, **{**trust, **changes})


def test_calibration_section_measures_both_score_sets():
    report = build_report(_trusting())
    cal = report["calibration"]
    ev = _trusting()
    assert cal["temperature"] == 2.0
    assert cal["reliability_before"]["ece"] == pytest.approx(calib.ece(ev.uncalibrated_scores, ev.y_true))
    assert cal["reliability_after"]["ece"] == pytest.approx(calib.ece(ev.scores, ev.y_true))
    assert len(cal["reliability_after"]["bins"]) == 15


def test_unknown_section_counts_the_rejected():
    unknown = build_report(_trusting())["unknown"]
    scores = np.linspace(0, 1, 12)
    assert unknown["rejected"] == int(np.sum(scores > 0.5)) == 6 and unknown["n"] == 12
    assert unknown["rejection_rate"] == pytest.approx(0.5)


def test_written_report_has_the_tables_and_the_reliability_diagram(tmp_path):
    report = write_report(_trusting(), tmp_path)
    assert RELIABILITY_FILE in report["files"] and (tmp_path / RELIABILITY_FILE).stat().st_size > 1000
    md = (tmp_path / "report.md").read_text()
    assert "## Calibration" in md and "## Unknown images" in md and "## Reliability diagram" in md
    assert "expected calibration error (15 bins)" in md and "6 of 12 (0.5000)" in md
    assert "| ECE that sampling alone gives the calibrated scores |  | 0.0123 |" in md
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Calibration</h2>" in html and html.count("data:image/png;base64,") == 5  # + reliability
    assert json.loads((tmp_path / "report.json").read_text())["calibration"]["temperature"] == 2.0


def test_without_trust_inputs_the_report_is_as_before(tmp_path):
    report = write_report(_evaluation(), tmp_path)
    assert "calibration" not in report and "unknown" not in report
    assert not (tmp_path / RELIABILITY_FILE).exists()
    assert "Calibration" not in (tmp_path / "report.md").read_text()


def test_calibration_that_changes_a_top_class_is_refused():
    ev = _trusting()
    flipped = ev.uncalibrated_scores[:, ::-1].copy()
    with pytest.raises(ValueError, match="top class"):
        build_report(dataclasses.replace(ev, uncalibrated_scores=flipped))


def test_tiny_export_report_carries_calibration_and_unknown(tiny_export):
    path, report = tiny_export
    assert (path / "assets.extra/report" / RELIABILITY_FILE).is_file()
    meta = json.loads((path / "assets.extra/metadata.json").read_text())
    assert report["calibration"]["reliability_after"]["ece"] == pytest.approx(meta["calibration"]["ece_after"])
    assert report["calibration"]["reliability_before"]["ece"] == pytest.approx(meta["calibration"]["ece_before"])
    assert report["unknown"]["rejection_rate"] == pytest.approx(meta["unknown"]["test_false_rejection"])
    assert report["accuracy"] == pytest.approx(meta["test_metrics"]["accuracy"])
