"""Open-set scores, thresholds and their measures on arrays whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from tlserve import contract
from training import calibration as calib
from training import open_set


@pytest.mark.parametrize("n, rate", [(200, 0.01), (203, 0.01), (50, 0.05), (10, 0.0), (1000, 0.1)])
def test_threshold_rejects_at_most_the_target_and_is_tight(n, rate):
    scores = np.random.default_rng(n).normal(size=n)
    t = open_set.fit_threshold(scores, rate)
    above = int(np.sum(scores > t))
    assert above <= rate * n + 1e-9
    assert np.sum(scores >= t) > rate * n  # one step lower would reject more than allowed


def test_threshold_with_ties_never_rejects_more_than_allowed():
    scores = np.array([1.0] * 99 + [5.0])
    assert open_set.rejection_rate(scores, open_set.fit_threshold(scores, 0.01)) <= 0.01
    assert open_set.rejection_rate(scores, open_set.fit_threshold(scores, 0.0)) == 0.0


def test_msp_and_energy_by_definition():
    logits = np.array([[3.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    msp = open_set.scores("msp", logits=logits, temperature=2.0)
    np.testing.assert_allclose(msp, 1 - calib.softmax(logits, 2.0).max(1))
    energy = open_set.scores("energy", logits=logits)
    np.testing.assert_allclose(energy, -np.log(np.exp(logits).sum(1)))
    assert msp[1] > msp[0] and energy[0] < energy[1]  # the unsure row looks more unknown by both


def test_msp_keeps_its_order_where_one_minus_p_would_round_to_zero():
    logits = np.array([[40.0, 0.0], [45.0, 0.0], [50.0, 0.0]])
    assert np.all(1 - calib.softmax(logits).max(1) == 0)  # the naive form: three ties, a useless threshold
    msp = open_set.scores("msp", logits=logits)
    assert np.all(msp > 0) and msp[0] > msp[1] > msp[2]
    np.testing.assert_allclose(msp, np.exp(-logits[:, 0]), rtol=1e-6)


def test_mahalanobis_distance_matches_the_formula_and_flags_far_points():
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0]])
    labels = np.repeat([0, 1], 300)
    features = means[labels] + rng.normal(0, [1.0, 0.5, 2.0], (600, 3))
    g = open_set.Gaussian.fit(features, labels, 2)
    probe = np.array([[0.5, 0.2, -1.0]])
    centred = features - np.stack([features[labels == c].mean(0) for c in (0, 1)])[labels]
    from sklearn.covariance import LedoitWolf
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    mu = features[labels == 0].mean(0)
    assert g.distances(probe)[0, 0] == pytest.approx((probe[0] - mu) @ precision @ (probe[0] - mu), rel=1e-6)
    known = g.score(features[:50])
    far = g.score(np.array([[3.0, 3.0, 0.0], [0.0, 0.0, 15.0]]))
    assert far.min() > np.quantile(known, 0.99)


def test_mahalanobis_needs_every_class():
    with pytest.raises(ValueError, match="classes"):
        open_set.Gaussian.fit(np.zeros((4, 2)), np.array([0, 0, 0, 0]), 2)


def test_auroc_and_fpr95_by_construction():
    known = np.arange(100) / 100.0  # 0.00 .. 0.99
    assert open_set.auroc(known, known + 10) == 1.0
    assert open_set.fpr_at_95_tpr(known, known + 10) == 0.0
    assert open_set.auroc(known, known) == pytest.approx(0.5)
    # 95% of known accepted -> threshold at 0.94; unseen scores 0.0..0.99: 95 of 100 are at or below it
    assert open_set.fpr_at_95_tpr(known, known) == pytest.approx(0.95, abs=0.011)


def test_fit_unknown_records_the_contract_keys():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (300, 4))
    unknown = open_set.fit_unknown("energy", false_rejection=0.05, temperature=1.0, val_logits=logits,
                                   val_features=None, train_features=None, train_labels=None, num_classes=4)
    meta = unknown.to_dict()
    assert meta[contract.UNKNOWN_METHOD] == "energy"
    assert meta[contract.UNKNOWN_FALSE_REJECTION_TARGET] == 0.05
    assert meta[contract.UNKNOWN_OUTPUT] == contract.UNKNOWN_SCORE_OUTPUT
    assert meta["val_false_rejection"] <= 0.05
    with pytest.raises(ValueError, match="open-set score"):
        open_set.fit_unknown("odin", false_rejection=0.01, temperature=1.0, val_logits=logits, val_features=None,
                             train_features=None, train_labels=None, num_classes=4)


def test_is_confident_tolerates_exports_without_an_unknown_score():
    meta = {contract.UNKNOWN_THRESHOLD: 0.5}
    assert contract.is_confident(0.4, meta) and contract.is_confident(0.5, meta)
    assert not contract.is_confident(0.6, meta)
    assert contract.is_confident(None, meta) and contract.is_confident(0.9, None) and contract.is_confident(0.9, {})
