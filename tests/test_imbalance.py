"""ftlib.imbalance: class counts, over/under-sampling, class weights."""
import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from ftlib import CourseError
from ftlib.imbalance import class_counts, class_weights, oversample, take_per_class, undersample, weighted_loss


def make(counts):
    labels = [c for c, k in counts.items() for _ in range(k)]
    return datasets.Dataset.from_dict({"sentence": [f"s{i}" for i in range(len(labels))], "label": labels})


def test_class_counts():
    assert class_counts(make({1: 3, 0: 5, 2: 1})) == {0: 5, 1: 3, 2: 1}


def test_take_per_class_makes_the_asked_mix():
    ds = make({0: 50, 1: 40})
    sub = take_per_class(ds, {0: 27, 1: 3}, seed=1)
    assert class_counts(sub) == {0: 27, 1: 3}
    assert len(set(sub["sentence"])) == 30               # no repeats
    assert list(take_per_class(ds, {0: 27, 1: 3}, seed=1)["sentence"]) == list(sub["sentence"])
    with pytest.raises(CourseError):
        take_per_class(ds, {1: 41})
    with pytest.raises(CourseError):
        take_per_class(ds, {0: 0, 1: 0})


def test_oversample_counts_and_keeps_every_row():
    ds = make({0: 90, 1: 10, 2: 25})
    out = oversample(ds, seed=0)
    assert class_counts(out) == {0: 90, 1: 90, 2: 90}
    assert set(out["sentence"]) == set(ds["sentence"])     # all originals, nothing new
    # rows stay paired with their labels
    pairs = dict(zip(ds["sentence"], ds["label"]))
    assert all(pairs[s] == y for s, y in zip(out["sentence"], out["label"]))
    assert list(oversample(ds, seed=0)["sentence"]) == list(out["sentence"])
    assert list(oversample(ds, seed=1)["sentence"]) != list(out["sentence"])
    assert list(out["label"])[:90] != sorted(out["label"])[:90]   # shuffled, not grouped by class


def test_undersample_counts_and_no_repeats():
    ds = make({0: 90, 1: 10})
    out = undersample(ds, seed=0)
    assert class_counts(out) == {0: 10, 1: 10}
    assert len(set(out["sentence"])) == 20
    minority = {s for s, y in zip(ds["sentence"], ds["label"]) if y == 1}
    assert minority <= set(out["sentence"])


def test_class_weights_match_sklearn_and_balance_the_classes():
    counts = {0: 900, 1: 100}
    w = class_weights(counts)
    y = np.array([0] * 900 + [1] * 100)
    np.testing.assert_allclose(w.numpy(), compute_class_weight("balanced", classes=np.array([0, 1]), y=y), rtol=1e-6)
    # each class's total weight is the same
    assert torch.isclose(w[0] * 900, w[1] * 100)
    assert torch.equal(class_weights([5, 5, 5]), torch.ones(3))
    assert torch.allclose(class_weights(make(counts)), w)
    torch.testing.assert_close(class_weights([30, 10, 20]), torch.tensor([60 / 90, 60 / 30, 60 / 60]))
    with pytest.raises(CourseError):
        class_weights({0: 3, 2: 1}, num_classes=3)      # class 1 has no examples
    with pytest.raises(CourseError):
        class_weights([10])
    with pytest.raises(CourseError):
        class_weights([3, 4], num_classes=3)


def test_weighted_loss_matches_torch():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 2), torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    w = class_weights({0: 6, 1: 2})
    loss_fn = weighted_loss(w)
    torch.testing.assert_close(loss_fn(logits, labels, None), F.cross_entropy(logits, labels, weight=w))
    assert not torch.isclose(loss_fn(logits, labels, None), F.cross_entropy(logits, labels))
    with pytest.raises(CourseError):
        weighted_loss(torch.tensor([1.0, -1.0]))


def test_bad_input():
    with pytest.raises(CourseError):
        class_counts(make({0: 2}), label_column="labels")
    with pytest.raises(CourseError):
        oversample(make({0: 2, 1: 1}).select([]))
    with pytest.raises(CourseError):
        undersample(make({0: 2, 1: 1}), seed="0")
