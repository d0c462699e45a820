"""benchmarks/open_set.py's decisions and operating threshold, on numbers the tests make."""

from __future__ import annotations

import numpy as np
import open_set  # benchmarks/ is on the tests' path (pyproject.toml)
import pytest

from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES


def test_folds_hold_out_every_family_once_and_never_train_on_what_they_test():
    from mnist_keras.data.nondigits import ALL_FAMILIES

    held = [family for _, tested in open_set.FOLDS.values() for family in tested]
    assert sorted(held) == sorted(set(ALL_FAMILIES) - set(open_set.ALWAYS_TRAINED))
    for trained, tested in open_set.FOLDS.values():
        assert not set(trained) & set(tested)


def test_scores_rank_a_flat_answer_above_a_sure_one_and_refuse_flooded_images():
    inputs = np.zeros((3, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    inputs[:2, 10:18, 12:16] = 1.0
    inputs[2] = 0.8  # ink over the whole field: the image rule refuses it
    logits = np.zeros((3, NUM_CLASSES))
    logits[0, 3] = 9.0  # a sure 3
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for decision in ("max_softmax", "max_logit", "energy"):
        scores = open_set.refusal_score(decision, inputs, probabilities, logits)
        assert scores[0] < scores[1] and scores[2] == np.inf, decision
    energy = open_set.refusal_score("energy", inputs[:1], probabilities[:1], logits[:1])
    assert energy[0] == pytest.approx(-np.log(np.exp(logits[0]).sum()))


def test_operating_threshold_is_the_most_refusing_one_within_both_digit_limits():
    rng = np.random.default_rng(0)
    scores = {"MNIST test": rng.uniform(0, 1, 10_000), "optdigits": rng.uniform(0, 1, 3_000),
              "faint 28x28": rng.uniform(0, 1, 1_000)}
    threshold = open_set.operating_threshold(scores)
    real = np.concatenate([scores["optdigits"], scores["faint 28x28"]])
    assert (scores["MNIST test"] >= threshold).sum() <= open_set.MAX_TEST_REFUSED
    assert (real < threshold).mean() >= open_set.MIN_REAL_KEPT
    lower = np.max(np.concatenate(list(scores.values()))[np.concatenate(list(scores.values())) < threshold])
    assert (scores["MNIST test"] >= lower).sum() > open_set.MAX_TEST_REFUSED or (real < lower).mean() < 0.99
