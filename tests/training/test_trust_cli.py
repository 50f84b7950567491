"""tlserve train's trust flags and tlserve evaluate on exports with and without an unknown score."""

from __future__ import annotations

import json

import pytest

from tlserve.cli import main


def test_train_flags_choose_the_unknown_score_and_its_target_and_evaluate_reports_it(tmp_path, capsys):
    args = ["train", "--data", "builtin:shapes", "--name", "shapes", "--out", str(tmp_path / "models"),
            "--image-size", "32", "--head-epochs", "1", "--fine-tune-epochs", "1", "--fine-tune-layers", "5",
            "--batch-size", "16", "--quiet", "--unknown-score", "energy", "--false-rejection", "0.05"]
    assert main(args) == 0, capsys.readouterr().out
    version = tmp_path / "models" / "shapes" / "1"
    meta = json.loads((version / "assets.extra/metadata.json").read_text())
    assert meta["unknown"]["score"] == "energy" and meta["unknown"]["false_rejection_target"] == 0.05
    assert set(meta["calibration"]) >= {"temperature", "ece_before", "ece_after", "nll_before", "nll_after"}

    assert main(["evaluate", "--model", str(version), "--data", "builtin:shapes", "--out", str(tmp_path / "e")]) == 0
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["unknown"]["score"] == "energy" and report["unknown"]["n"] == 90

    # An export from before issue 16 (no unknown in its metadata) is evaluated as before, without an error.
    del meta["unknown"]
    (version / "assets.extra/metadata.json").write_text(json.dumps(meta))
    assert main(["evaluate", "--model", str(version), "--data", "builtin:shapes", "--out", str(tmp_path / "f")]) == 0
    assert "unknown" not in json.loads((tmp_path / "f" / "report.json").read_text())


@pytest.mark.parametrize("flag, value", [("--false-rejection", "1.5"), ("--false-rejection", "x"),
                                         ("--unknown-score", "odin")])
def test_bad_trust_flags_are_usage_errors(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--data", "builtin:shapes", "--name", "x", flag, value])
    assert exit_.value.code == 2
