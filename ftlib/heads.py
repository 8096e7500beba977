"""Classification heads that read a sentence vector the way the encoder was trained (notebooks 07, 08).

course-bert (all-MiniLM-L6-v2) was trained as a sentence encoder with **mean pooling**: its
sentence vector is the mean of the token vectors, padding left out. BERT's pooler,
``tanh(W h_CLS)``, which ``AutoModelForSequenceClassification`` puts under its classifier, was
never trained for it: its output barely varies between sentences (notebook 07 prints both
spreads), so a frozen encoder with a pooler head learns almost nothing.

* :func:`mean_pool` -- the mean of ``hidden`` over the positions where ``attention_mask`` is 1;
* :class:`MeanPoolHead` -- mean pooling, an optional hidden layer, then the logits, on
  *cached* token vectors ``(hidden, attention_mask)`` (a frozen encoder run once);
* :class:`MeanPoolClassifier` -- an encoder (its pooler removed) plus mean pooling, dropout and
  one ``nn.Linear`` called ``classifier``: a sequence classifier for ``ftlib.train.fit``, the
  helpers of :mod:`ftlib.strategies`, :func:`ftlib.lora.add_lora` and ``peft``;
* :func:`load_mean_pool_classifier` -- course-bert (or another encoder) with that head;
* :func:`pair_features` / :class:`PairHead` -- a bi-encoder's pair classifier: a linear layer
  on ``[u, v, |u - v|, u * v]`` of two sentence vectors (InferSent's features, Conneau et al.
  2017; SBERT's classifier, Reimers & Gurevych 2019, uses the first three) (notebook 16, MRPC);
  ``PairHead.start_at_threshold`` sets it to *be* the rule "cosine > t", a start for fine-tuning;
* :func:`best_threshold` -- the cut on a score with the best accuracy on training pairs.

The models return an object with ``.logits`` (and ``.loss`` when given ``labels``), like a
transformers model, so ``fit`` / ``evaluate`` take them unchanged.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.errors import CourseError

__all__ = ["mean_pool", "MeanPoolHead", "MeanPoolClassifier", "load_mean_pool_classifier", "pair_features", "PairHead", "best_threshold"]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``(batch, dim)``: the mean of ``hidden`` ``(batch, time, dim)`` over the unmasked positions."""
    if hidden.ndim != 3 or attention_mask.shape != hidden.shape[:2]:
        raise CourseError(f"mean_pool needs hidden (batch, time, dim) and attention_mask (batch, time); got "
                          f"{tuple(hidden.shape)} and {tuple(attention_mask.shape)}.")
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def _output(logits, labels):
    loss = None if labels is None else F.cross_entropy(logits.float(), labels, ignore_index=-100)
    return SimpleNamespace(logits=logits, loss=loss)


class MeanPoolHead(nn.Module):
    """Mean pooling of cached token vectors, an optional hidden layer (GELU), then ``num_labels`` logits.

    ``forward(hidden, attention_mask, labels=None)`` takes what a frozen encoder returned
    (``last_hidden_state`` and the mask), so the encoder runs once per sentence, not once per epoch.
    """

    def __init__(self, hidden_size: int, num_labels: int = 2, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        if hidden_size < 1 or num_labels < 2 or hidden < 0 or not 0 <= dropout < 1:
            raise CourseError(f"MeanPoolHead(hidden_size={hidden_size}, num_labels={num_labels}, hidden={hidden}, "
                              f"dropout={dropout}): need hidden_size >= 1, num_labels >= 2, hidden >= 0 "
                              "(0: no hidden layer) and 0 <= dropout < 1.")
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(hidden_size, hidden) if hidden else None
        self.classifier = nn.Linear(hidden or hidden_size, num_labels)

    def pool(self, hidden, attention_mask):
        return mean_pool(hidden, attention_mask)

    def forward(self, hidden, attention_mask, labels=None):
        x = self.pool(hidden, attention_mask)
        if self.hidden is not None:
            x = F.gelu(self.hidden(self.dropout(x)))
        return _output(self.classifier(self.dropout(x)), labels)


class MeanPoolClassifier(nn.Module):
    """``encoder`` (a transformers encoder model) + mean pooling + dropout + ``classifier``.

    The encoder's pooler, if it has one, is removed (it is not used, and a frozen unused
    module would only inflate the parameter count). Parameter names are ``bert.*`` for the
    encoder and ``classifier.*`` for the head, as in ``BertForSequenceClassification``, so
    ``freeze(model, keep=("classifier",))``, ``layer_depth`` and ``add_lora`` work unchanged.
    """

    def __init__(self, encoder: nn.Module, num_labels: int = 2, dropout: float | None = None):
        super().__init__()
        config = getattr(encoder, "config", None)
        if config is None or not hasattr(config, "hidden_size"):
            raise CourseError(f"MeanPoolClassifier needs a transformers encoder with a config (got "
                              f"{type(encoder).__name__}); load it with ftlib.load_model(name).")
        if num_labels < 2:
            raise CourseError(f"num_labels={num_labels}: a classifier needs at least 2 classes.")
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
        config.num_labels = num_labels
        self.config = config
        self.bert = encoder
        p = config.hidden_dropout_prob if dropout is None else dropout
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=getattr(config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)

    def get_input_embeddings(self):
        return self.bert.get_input_embeddings()

    def features(self, input_ids, attention_mask=None, **kwargs):
        """The mean-pooled sentence vectors ``(batch, hidden_size)``, before dropout and classifier."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        x = self.features(input_ids, attention_mask, **kwargs)
        return _output(self.classifier(self.dropout(x)), labels)


def load_mean_pool_classifier(name: str = "course-bert", num_labels: int = 2, dropout: float | None = None,
                              seed: int | None = None) -> MeanPoolClassifier:
    """``MeanPoolClassifier(ftlib.load_model(name), num_labels)``; ``seed`` seeds the new head's weights."""
    from ftlib.models import load_model
    encoder = load_model(name)
    if seed is not None:
        torch.manual_seed(seed)
    return MeanPoolClassifier(encoder, num_labels, dropout)


def pair_features(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[u, v, |u - v|, u * v]`` for two batches of sentence vectors ``(batch, dim)``: order-aware
    (u, v), a distance (|u - v|) and an agreement (u * v) -- InferSent's pair features."""
    if u.ndim != 2 or u.shape != v.shape:
        raise CourseError(f"pair_features needs two (batch, dim) tensors of the same shape, got {tuple(u.shape)} "
                          f"and {tuple(v.shape)}: one vector per sentence, the pairs in the same order.")
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


class PairHead(nn.Module):
    """A linear classifier on :func:`pair_features` of two sentence vectors.

    ``forward(u, v, labels=None)`` returns ``.logits`` (and ``.loss``), so ``ftlib.train.fit``
    trains it on batches ``{"u": ..., "v": ..., "labels": ...}``.
    """

    def __init__(self, dim: int, num_labels: int = 2):
        super().__init__()
        if dim < 1 or num_labels < 2:
            raise CourseError(f"PairHead(dim={dim}, num_labels={num_labels}): need dim >= 1 and num_labels >= 2.")
        self.classifier = nn.Linear(4 * dim, num_labels)

    def forward(self, u, v, labels=None):
        return _output(self.classifier(pair_features(u, v)), labels)

    @torch.no_grad()
    def start_at_threshold(self, threshold: float, scale: float = 20.0) -> "PairHead":
        """Set the weights so that the head *is* the rule "class 1 when ``u . v > threshold``" (the cosine,
        for unit vectors): ``logit_1 - logit_0 = scale * (u . v - threshold)``, every other weight 0.

        A head trained from random weights on lesson 16's 1,500 pairs scores below that rule (the lesson
        measures it); started here, training starts from a sensible classifier.
        ``scale`` sets how sure the start is (20: a cosine 0.1 above the threshold gives p = 0.88).
        Two labels only; returns the head."""
        if self.classifier.out_features != 2:
            raise CourseError(f"start_at_threshold makes a two-class rule; this head has "
                              f"{self.classifier.out_features} labels.")
        if not 0 < float(scale) < float("inf"):
            raise CourseError(f"scale must be a positive number (how sure the rule starts), not {scale!r}.")
        dim = self.classifier.in_features // 4
        self.classifier.weight.zero_()
        self.classifier.weight[1, 3 * dim:] = scale / 2           # the u * v block: its sum is u . v
        self.classifier.weight[0, 3 * dim:] = -scale / 2
        self.classifier.bias.copy_(torch.tensor([scale * threshold / 2, -scale * threshold / 2]))
        return self


def best_threshold(scores, labels) -> tuple[float, float]:
    """The threshold ``t`` for the rule "class 1 when ``score > t``" with the highest accuracy on
    ``(scores, labels)`` (labels 0/1), and that accuracy. Every cut between two neighbouring distinct
    scores is tried (their midpoint), one below them all (everything class 1) and one above them all
    (everything class 0); ties go to the lowest ``t``. Sorting once and counting gives every cut's
    accuracy together (O(n log n), any number of pairs). Choose it on training pairs, then apply it
    to test pairs."""
    s = torch.as_tensor(scores, dtype=torch.float64).flatten()
    y = torch.as_tensor(labels).flatten()
    if s.numel() == 0 or s.shape != y.shape:
        raise CourseError(f"best_threshold needs one score per label, and some of them: got {s.numel()} scores "
                          f"and {y.numel()} labels.")
    if not bool(((y == 0) | (y == 1)).all()):
        raise CourseError("best_threshold's labels must be 0 or 1 (1: the class above the threshold).")
    if not bool(torch.isfinite(s).all()):
        raise CourseError("best_threshold's scores must be finite numbers (found NaN or infinity).")
    order = torch.argsort(s, stable=True)
    s, y = s[order], y[order].double()
    n = len(s)
    zeros_below = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(1 - y, 0)])   # cut before i
    ones_below = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(y, 0)])
    accuracy = (zeros_below + (ones_below[-1] - ones_below)) / n          # right below the cut + right above it
    cuts = torch.cat([s[:1] - 1, (s[1:] + s[:-1]) / 2, s[-1:] + 1])
    possible = torch.ones(n + 1, dtype=torch.bool)
    possible[1:n] = s[1:] > s[:-1]                                         # no cut between two equal scores
    accuracy = torch.where(possible, accuracy, torch.tensor(-1.0, dtype=torch.float64))
    best = int(torch.argmax(accuracy))                                     # the first maximum: the lowest cut
    return float(cuts[best]), float(accuracy[best])
