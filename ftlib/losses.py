"""Cross-entropy and its relatives, written out in plain tensor code (derived in notebook 01).

Every function here gives the same numbers as its ``torch.nn.functional``
counterpart (the tests in ``tests/test_losses.py`` check that), but is short
enough to read in one go:

* :func:`log_softmax`, :func:`softmax` -- with the log-sum-exp shift, so large
  logits (``1e4``) give finite results;
* :func:`cross_entropy` -- class-index or probability targets, class weights,
  ``ignore_index`` (``-100``, what transformers uses for padding), label
  smoothing, and ``"mean"`` / ``"sum"`` / ``"none"`` reductions;
* :func:`binary_cross_entropy_with_logits` -- one independent yes/no per output;
* :func:`entropy`, :func:`kl_divergence` -- of probability vectors, in nats by
  default (``base=2`` for bits).

Bad input (a target class that does not exist, batch sizes that do not match,
NaN logits, a mean over zero targets) raises :class:`ftlib.CourseError` with a
message that says what to do, where torch would give a terse error or ``nan``.
"""
from __future__ import annotations

import math

import torch

from ftlib.errors import CourseError

__all__ = ["log_softmax", "softmax", "cross_entropy", "binary_cross_entropy_with_logits",
           "entropy", "kl_divergence"]

_REDUCTIONS = ("mean", "sum", "none")


def log_softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log(softmax(logits))`` computed as ``z - max(z) - log(sum(exp(z - max(z))))``.

    Subtracting the maximum first means the largest exponent is ``exp(0) = 1``:
    nothing overflows, and the log is never taken of an underflowed zero.
    """
    m = logits.amax(dim=dim, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))   # a row of all -inf stays -inf, not nan
    shifted = logits - m
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Probabilities from logits: ``exp(z - max z) / sum(exp(z - max z))``."""
    return log_softmax(logits, dim=dim).exp()


def _check_reduction(reduction: str):
    if reduction not in _REDUCTIONS:
        raise CourseError(f"reduction={reduction!r} is not one of {_REDUCTIONS}.")


def _reduce(loss: torch.Tensor, reduction: str, denominator: torch.Tensor | float):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / denominator


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy between ``softmax(logits)`` and ``target``; matches ``F.cross_entropy``.

    Shapes: ``logits`` is ``(N, C)`` or ``(N, C, d1, ...)`` (classes on dim 1, as in
    torch; a sequence model's ``(N, T, C)`` logits must be ``.transpose(1, 2)``-ed or
    flattened to ``(N*T, C)``), or ``(C,)`` for one example. ``target`` is either

    * class indices, an integer tensor shaped like ``logits`` without dim 1, where
      ``ignore_index`` marks positions that count for nothing; or
    * probabilities, a float tensor shaped like ``logits`` (soft labels).

    Per position, with ``log p = log_softmax(logits)`` and ``w`` the class weights
    (all 1 if ``weight`` is None), ``eps = label_smoothing``, ``C`` classes::

        class index y :  (1 - eps) * -w[y] log p[y]  +  eps/C * sum_c -w[c] log p[c]
        probabilities q:  sum_c -w[c] q'[c] log p[c],   q' = (1 - eps) q + eps/C

    ``reduction="mean"`` divides the sum by the *sum of the weights of the targets
    that are not ignored* (so by their count without weights) for class-index
    targets, and by the number of positions for probability targets -- exactly what
    torch does. ``"sum"`` adds up, ``"none"`` returns the per-position losses (0 where
    ignored).

    Raises :class:`ftlib.CourseError` for a class index outside ``0..C-1`` that is not
    ``ignore_index``, mismatched shapes, NaN logits, or a ``"mean"`` over targets
    that are *all* ignored (torch returns ``nan`` there, 0/0: use ``reduction="sum"``
    and divide by your own count, or skip the batch).
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise CourseError(f"label_smoothing={label_smoothing} must lie in [0, 1]; 0.1 is a common choice.")
    if logits.dim() == 0:
        raise CourseError("logits is a single number; cross_entropy needs one logit per class, shape (N, C).")
    if not logits.is_floating_point():
        raise CourseError(f"logits must be a float tensor, got {logits.dtype}; call .float() on it.")
    if torch.isnan(logits).any():
        raise CourseError("logits contain NaN: the model's forward pass already went wrong (look for a "
                          "log of 0, a division by 0 or a learning rate that is too high) before the loss.")
    unbatched = logits.dim() == 1
    if unbatched:                                   # (C,) with a scalar target, or (C,) probabilities
        logits, target = logits.unsqueeze(0), target.unsqueeze(0)
    n_classes = logits.shape[1]
    if weight is not None and weight.shape != (n_classes,):
        raise CourseError(f"weight has shape {tuple(weight.shape)} but there are {n_classes} classes "
                          f"(logits dim 1); pass one weight per class.")
    w = torch.ones(n_classes, dtype=logits.dtype, device=logits.device) if weight is None \
        else weight.to(logits.dtype)
    logp = log_softmax(logits, dim=1)
    wshape = [1] * logits.dim()
    wshape[1] = n_classes
    w_b = w.view(wshape)                             # broadcast weights along dim 1

    if target.is_floating_point():                   # probabilities, one per class
        if target.shape != logits.shape:
            raise CourseError(f"probability targets must have the logits' shape {tuple(logits.shape)}, got "
                              f"{tuple(target.shape)}. For class indices pass an integer tensor (.long()).")
        q = target * (1 - label_smoothing) + label_smoothing / n_classes
        loss = -(w_b * q * logp).sum(dim=1)
        loss = loss.squeeze(0) if unbatched else loss
        return _reduce(loss, reduction, loss.numel())

    # class indices
    expected = logits.shape[:1] + logits.shape[2:]
    if target.shape != expected:
        hint = ""
        if target.numel() == logits.shape[0] * math.prod(logits.shape[2:]):
            hint = " (same number of elements: reshape the target, or flatten both to (N*T, C) and (N*T,))"
        raise CourseError(f"logits {tuple(logits.shape)} need a class-index target of shape {tuple(expected)}, "
                          f"got {tuple(target.shape)}{hint}. Batch sizes must match.")
    keep = target != ignore_index
    bad = keep & ((target < 0) | (target >= n_classes))
    if bad.any():
        raise CourseError(f"target holds class {target[bad][0].item()}, but the logits have only {n_classes} "
                          f"classes (0..{n_classes - 1}). Mark positions to skip with ignore_index="
                          f"{ignore_index}, or give the model's head num_labels equal to the number of classes.")
    safe = torch.where(keep, target, torch.zeros_like(target))     # any valid index; masked out below
    nll = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)            # -log p[y]
    w_y = w[safe] * keep                                             # 0 where ignored
    loss = (1 - label_smoothing) * w_y * nll
    if label_smoothing > 0:
        smooth = -(w_b * logp).sum(dim=1) * keep                     # sum_c -w[c] log p[c]
        loss = loss + label_smoothing / n_classes * smooth
    if reduction == "mean" and not keep.any():
        raise CourseError(f"every target equals ignore_index={ignore_index}, so the mean is 0/0 (torch "
                          "returns nan). Skip this batch, or use reduction='sum' and divide by your own count.")
    loss = loss.squeeze(0) if unbatched else loss
    return _reduce(loss, reduction, w_y.sum())


def binary_cross_entropy_with_logits(logits: torch.Tensor, target: torch.Tensor,
                                     weight: torch.Tensor | None = None,
                                     pos_weight: torch.Tensor | None = None,
                                     reduction: str = "mean") -> torch.Tensor:
    """``-[y log sigmoid(z) + (1-y) log(1 - sigmoid(z))]`` for each element, computed stably.

    Each output is its own yes/no question (multi-label): nothing makes the
    probabilities of different outputs sum to 1. Uses
    ``log sigmoid(z) = -softplus(-z)`` and ``log(1 - sigmoid(z)) = -softplus(z)``, with
    ``softplus(x) = max(x, 0) + log(1 + exp(-|x|))`` so nothing overflows.
    ``pos_weight`` multiplies the positive term (per output, like torch's); ``weight``
    multiplies each element's loss. ``target`` must have the logits' shape; integer
    0/1 targets are accepted and converted to float. Matches
    ``F.binary_cross_entropy_with_logits``.
    """
    _check_reduction(reduction)
    if target.shape != logits.shape:
        raise CourseError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same "
                          "shape, one target per logit. A head with one output gives (N, 1): use "
                          "logits.squeeze(-1), or target.unsqueeze(-1).")
    if torch.isnan(logits).any():
        raise CourseError("logits contain NaN: the model's forward pass already went wrong before the loss.")
    target = target.to(logits.dtype)
    if ((target < 0) | (target > 1)).any():
        raise CourseError("binary targets must lie in [0, 1] (a label 0/1, or a probability).")

    def softplus(x):                 # log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), written with where so
        pos = x > 0                  # that autograd gives the right slope (1/2) at exactly x = 0
        return torch.where(pos, x, torch.zeros_like(x)) + torch.log1p(torch.exp(torch.where(pos, -x, x)))

    pos = softplus(-logits)          # -log sigmoid(z)
    neg = softplus(logits)           # -log(1 - sigmoid(z))
    if pos_weight is not None:
        pos = pos * pos_weight
    loss = target * pos + (1 - target) * neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, loss.numel())


def _check_probabilities(p: torch.Tensor, name: str, dim: int):
    if (p < 0).any() or not torch.allclose(p.sum(dim=dim), torch.ones((), dtype=p.dtype), atol=1e-4):
        raise CourseError(f"{name} must be probabilities: non-negative and summing to 1 along dim {dim}. "
                          "If you have logits, pass softmax(logits) (or use cross_entropy, which takes logits).")


def entropy(p: torch.Tensor, dim: int = -1, base: float = math.e) -> torch.Tensor:
    """``H(p) = -sum p log p`` (with ``0 log 0 = 0``), in nats; ``base=2`` gives bits."""
    _check_probabilities(p, "p", dim)
    terms = torch.where(p > 0, -p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p))
    return terms.sum(dim=dim) / math.log(base)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, dim: int = -1, base: float = math.e) -> torch.Tensor:
    """``KL(p || q) = sum p (log p - log q)``: how much more than ``H(p)`` it costs to code ``p`` with ``q``.

    Zero exactly when ``p == q``; ``inf`` if ``q`` gives 0 to something ``p`` does not.
    Note the order: ``torch.nn.functional.kl_div(input, target)`` takes ``log q``
    first and ``p`` second.
    """
    if p.shape != q.shape:
        raise CourseError(f"p {tuple(p.shape)} and q {tuple(q.shape)} must have the same shape.")
    _check_probabilities(p, "p", dim)
    _check_probabilities(q, "q", dim)
    ratio = torch.where(p > 0, p / q, torch.ones_like(p))
    terms = torch.where(p > 0, p * torch.log(ratio), torch.zeros_like(p))
    return terms.sum(dim=dim) / math.log(base)
