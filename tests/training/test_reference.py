"""The drift reference an export carries (issue 17): what the exported model itself predicts on the test split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tlserve import contract
from training.reference import prediction_reference


def test_frequencies_and_histogram_of_a_known_set_of_scores():
    scores = np.array([[0.9, 0.05, 0.05], [0.2, 0.75, 0.05], [0.34, 0.33, 0.33], [1.0, 0.0, 0.0]])
    ref = prediction_reference(scores, np.array([0, 1, 1, 2]), 3)
    assert ref[contract.REFERENCE_IMAGES] == 4
    assert ref[contract.REFERENCE_CLASS_FREQUENCIES] == [0.75, 0.25, 0.0]  # predicted: 0, 1, 0, 0
    assert ref[contract.REFERENCE_LABEL_FREQUENCIES] == [0.25, 0.5, 0.25]
    hist = ref[contract.REFERENCE_SCORE_HISTOGRAM]
    assert len(hist) == contract.SCORE_BINS == 10
    assert hist[3] == hist[7] == 0.25 and hist[9] == 0.5  # 0.34 -> [0.3, 0.4); 0.75; 0.9 and 1.0 -> the last bin


@pytest.mark.parametrize("score, expected", [(0.0, 0), (0.0999, 0), (0.1, 1), (0.95, 9), (1.0, 9), (1.5, 9),
                                             (-0.1, 0), (float("nan"), 0)])
def test_score_bins_are_ten_over_zero_to_one_and_never_raise(score, expected):
    assert contract.score_bin(score) == expected


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        prediction_reference(np.zeros((3, 2)), np.zeros(3, int), 3)
    with pytest.raises(ValueError):
        prediction_reference(np.zeros((0, 3)), np.zeros(0, int), 3)


def test_the_export_carries_what_it_predicts_on_its_test_split(tiny_export, tiny_training):
    path, _ = tiny_export
    ref = json.loads((path / contract.METADATA_FILE).read_text())[contract.METADATA_REFERENCE]
    test = tiny_training.split.test
    served = tf.saved_model.load(str(path)).signatures[contract.DEFAULT_SIGNATURE]
    scores = served(images=tf.constant([tiny_training.data.images[i] for i in test]))["scores"].numpy()
    assert ref[contract.REFERENCE_IMAGES] == len(test)
    predicted = np.bincount(scores.argmax(axis=1), minlength=3) / len(test)
    assert ref[contract.REFERENCE_CLASS_FREQUENCIES] == pytest.approx(predicted, abs=1.5 / len(test))
    labels = np.bincount(tiny_training.data.labels[test], minlength=3) / len(test)
    assert ref[contract.REFERENCE_LABEL_FREQUENCIES] == pytest.approx(labels, abs=1e-6)
    assert sum(ref[contract.REFERENCE_SCORE_HISTOGRAM]) == pytest.approx(1.0, abs=1e-5)
