"""Class imbalance: counting, re-sampling and class weights (derived in notebook 08).

* :func:`class_counts` -- how many rows of each class;
* :func:`take_per_class` -- a subset with a chosen number of rows per class (to *make* an
  imbalanced data set for teaching, or a balanced one);
* :func:`oversample` -- repeat random rows of the smaller classes until every class is as
  large as the largest;
* :func:`undersample` -- keep a random subset of every class as large as the smallest;
* :func:`class_weights` -- ``N / (C * n_c)`` per class (scikit-learn's "balanced"), for a
  class-weighted cross-entropy, and :func:`weighted_loss`, a ``loss_fn`` for
  ``ftlib.train.fit`` that uses them.

All re-sampling is seeded (``numpy.random.default_rng(seed)``) and returns a shuffled
``datasets.Dataset``. Re-sample only the training set: validation and test sets must keep
the class mix the model will meet. Bad input raises :class:`ftlib.CourseError`.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from ftlib.errors import CourseError

__all__ = ["class_counts", "take_per_class", "oversample", "undersample", "class_weights", "weighted_loss"]


def _labels(ds, label_column: str) -> np.ndarray:
    if label_column not in getattr(ds, "column_names", []):
        raise CourseError(f"No column {label_column!r} in the data set (columns: "
                          f"{getattr(ds, 'column_names', None)}). Pass label_column=...")
    if len(ds) == 0:
        raise CourseError("The data set is empty: there are no classes to count or re-sample.")
    return np.asarray(ds[label_column])


def class_counts(ds, label_column: str = "label") -> dict:
    """``{class: number of rows}``, classes in sorted order."""
    counts = Counter(_labels(ds, label_column).tolist())
    return dict(sorted(counts.items()))


def _seed(seed) -> np.random.Generator:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise CourseError(f"seed must be a whole number, got {seed!r}.")
    return np.random.default_rng(seed)


def _select(ds, index, rng):
    index = np.asarray(index, dtype=np.int64)
    return ds.select(rng.permutation(index).tolist())


def take_per_class(ds, counts: dict, label_column: str = "label", seed: int = 0):
    """A shuffled subset with ``counts[c]`` random rows of class ``c`` (without repetition)."""
    labels, rng = _labels(ds, label_column), _seed(seed)
    if not isinstance(counts, dict) or not counts:
        raise CourseError("counts must be a dict {class: rows to take}, e.g. {0: 900, 1: 100}.")
    index = []
    for c, k in counts.items():
        where = np.flatnonzero(labels == c)
        if not isinstance(k, (int, np.integer)) or k < 0:
            raise CourseError(f"counts[{c!r}] must be a whole number >= 0, got {k!r}.")
        if k > len(where):
            raise CourseError(f"Class {c!r} has only {len(where)} rows, cannot take {k}. Ask for fewer, "
                              "or use oversample() to repeat rows.")
        index += rng.choice(where, size=k, replace=False).tolist()
    if not index:
        raise CourseError("counts asks for 0 rows in total: the subset would be empty.")
    return _select(ds, index, rng)


def oversample(ds, label_column: str = "label", seed: int = 0):
    """Every class grown to the size of the largest by repeating its rows at random.

    All original rows are kept; each smaller class gets ``max - n_c`` extra rows drawn with
    replacement from its own rows. The model sees the minority examples more often (and
    so can memorise them: watch the validation loss).
    """
    labels, rng = _labels(ds, label_column), _seed(seed)
    classes, sizes = np.unique(labels, return_counts=True)
    target = sizes.max()
    index = list(range(len(labels)))
    for c, n in zip(classes, sizes):
        where = np.flatnonzero(labels == c)
        index += rng.choice(where, size=target - n, replace=True).tolist()
    return _select(ds, index, rng)


def undersample(ds, label_column: str = "label", seed: int = 0):
    """Every class cut to the size of the smallest by keeping a random subset of its rows."""
    labels, rng = _labels(ds, label_column), _seed(seed)
    classes, sizes = np.unique(labels, return_counts=True)
    target = sizes.min()
    index = []
    for c in classes:
        index += rng.choice(np.flatnonzero(labels == c), size=target, replace=False).tolist()
    return _select(ds, index, rng)


def class_weights(counts, num_classes: int | None = None) -> torch.Tensor:
    """Weight ``N / (C * n_c)`` for each class ``c`` (float32 tensor of length ``C``).

    ``counts``: a dict ``{class: count}`` (as from :func:`class_counts`), a list of counts
    (index = class), or a ``datasets.Dataset`` with a ``label`` column. A class with few
    rows gets a large weight; with equal counts every weight is 1. The weighted loss then
    gives each *class* the same total weight. Same as
    ``sklearn.utils.class_weight.compute_class_weight("balanced", ...)``.
    """
    if hasattr(counts, "column_names"):
        counts = class_counts(counts)
    if isinstance(counts, dict):
        if not all(isinstance(c, (int, np.integer)) and c >= 0 for c in counts):
            raise CourseError(f"The classes must be indices 0, 1, ..., got {sorted(counts)}.")
        size = num_classes if num_classes is not None else max(counts) + 1
        dense = [counts.get(c, 0) for c in range(size)]
    else:
        dense = list(counts)
        size = num_classes if num_classes is not None else len(dense)
    if size != len(dense) or size < 2:
        raise CourseError(f"Got {len(dense)} counts for num_classes={size}: give one count per class "
                          "(at least two classes).")
    n = torch.as_tensor(dense, dtype=torch.float64)
    if (n <= 0).any():
        missing = [c for c, k in enumerate(dense) if k <= 0]
        raise CourseError(f"Class(es) {missing} have no examples, so their weight would be infinite. "
                          "Every class needs training rows (or drop the class from the model).")
    return (n.sum() / (size * n)).float()


def weighted_loss(weights):
    """A ``loss_fn(logits, labels, model)`` for ``ftlib.train.fit``: class-weighted cross-entropy.

    The mean divides by the sum of the weights of the batch's labels (as ``torch`` does),
    so the loss keeps its scale.
    """
    from ftlib.losses import cross_entropy

    w = torch.as_tensor(weights, dtype=torch.float32)
    if w.dim() != 1 or (w <= 0).any():
        raise CourseError("weights must be one positive number per class, e.g. class_weights(counts).")

    def loss_fn(logits, labels, model=None):
        return cross_entropy(logits, labels, weight=w.to(logits.device))

    return loss_fn
