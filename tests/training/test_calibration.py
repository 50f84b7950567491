"""Temperature scaling and its measures on arrays whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from training import calibration as calib


def test_ece_by_hand():
    # Two bins used (of 15): confidences 0.9 (bin 14) and 0.6 (bin 9).
    scores = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    # bin (13/15, 14/15]: 0.9, 0.9 with accuracy 1/2 -> |0.5 - 0.9| * 2/4; bin (8/15, 9/15]: 0.6, 0.6 all right
    # -> |1 - 0.6| * 2/4
    assert calib.ece(scores, labels) == pytest.approx(0.4 * 0.5 + 0.4 * 0.5)
    bins = calib.reliability(scores, labels)["bins"]
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 4
    assert [b["count"] for b in bins if b["count"]] == [2, 2]


def test_ece_edges_belong_to_the_lower_bin_and_zero_to_the_first():
    scores = np.array([[1.0, 0.0], [0.5, 0.5]])
    bins = calib.reliability(scores, np.array([0, 0]))["bins"]
    assert bins[-1]["count"] == 1 and bins[7]["count"] == 1  # 0.5 = 7.5/15 lies in (7/15, 8/15]


def test_nll_matches_the_definition():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = np.array([0, 2])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[[0, 1], [0, 2]]))
    assert calib.nll(logits, labels) == pytest.approx(expected)
    assert calib.nll_of_scores(p, labels) == pytest.approx(expected)


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_fit_recovers_the_temperature_the_labels_were_drawn_at(true_t):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 5))
    p = calib.softmax(logits, true_t)
    labels = np.array([rng.choice(5, p=row) for row in p])
    fitted = calib.fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_t, rel=0.08)
    assert calib.nll(logits, labels, fitted) <= calib.nll(logits, labels, 1.0)


def test_a_validation_split_without_errors_does_not_drive_the_temperature_to_its_bound():
    """Every validation image right: the NLL of the hard labels falls without end as T -> 0, so its fit ran to
    MIN_TEMPERATURE and scored any later mistake as impossible (a 2 + 2-epoch digits model did this: 0 of 203
    validation errors, T = 0.05, the test NLL 0.17 -> 0.42). Platt's targets, 1 - 1/(n + 2) for the label, keep
    the fitted confidence below what n right answers can show."""
    rng = np.random.default_rng(3)
    n = 200
    labels = rng.integers(0, 10, n)
    logits = rng.normal(0, 1, (n, 10))
    logits[np.arange(n), labels] += 5  # right every time
    assert (logits.argmax(1) == labels).all()
    t = calib.fit_temperature(logits, labels)
    assert t > 4 * calib.MIN_TEMPERATURE
    confidence = calib.softmax(logits, t).max(1)
    assert 0.98 < confidence.mean() < 1 - 1 / (2 * (n + 2))
    assert confidence.min() > 0.5


def test_calibrate_lowers_ece_and_keeps_the_argmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, (3000, 10))
    labels = np.array([rng.choice(10, p=row) for row in calib.softmax(logits, 3.0)])  # overconfident by 3x
    cal = calib.calibrate(logits[:1500], labels[:1500], logits[1500:], labels[1500:])
    assert cal.temperature > 2 and cal.ece_after < cal.ece_before / 3 and cal.nll_after < cal.nll_before
    np.testing.assert_array_equal(calib.softmax(logits, cal.temperature).argmax(1), logits.argmax(1))
    assert set(cal.to_dict()) >= {"temperature", "ece_before", "ece_after", "nll_before", "nll_after", "ece_floor"}
    assert 0 < cal.ece_floor <= cal.ece_after * 2


def test_ece_floor_is_the_ece_of_labels_drawn_from_the_scores_and_shrinks_with_more_images():
    rng = np.random.default_rng(2)
    scores = calib.softmax(rng.normal(0, 3, (4000, 10)))
    assert calib.ece_floor(np.eye(10)[rng.integers(0, 10, 400)]) == 0.0  # certain scores: nothing to sample
    small = calib.ece_floor(scores[:400])
    drawn = [calib.ece(scores[:400], np.array([rng.choice(10, p=row) for row in scores[:400]])) for _ in range(20)]
    assert small == pytest.approx(np.mean(drawn), rel=0.25)
    assert calib.ece_floor(scores) < small / 2  # ten times the images: about a third of the noise
    assert calib.ece_floor(scores[:400]) == small  # seeded


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        calib.reliability(np.zeros((0, 3)), np.zeros(0, int))
    with pytest.raises(ValueError):
        calib.fit_temperature(np.zeros((0, 3)), np.zeros(0, int))
