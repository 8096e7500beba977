"""Checks for the exercises of notebook 01 (cross-entropy)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ftlib.exercises import Wrong, close, exercise

# Exercise 01.1: the soft target whose cross-entropy floor the learner finds.
SOFT_TARGET = [0.7, 0.2, 0.1, 0.0]


def _near(a, b, tol=1e-3) -> bool:
    try:
        return bool(torch.allclose(torch.as_tensor(a, dtype=torch.float64),
                                   torch.as_tensor(b, dtype=torch.float64), atol=tol, rtol=0))
    except (TypeError, ValueError, RuntimeError):
        return False


@exercise("01.1")
def check_floor(q, bits):
    from ftlib.losses import entropy

    y = torch.tensor(SOFT_TARGET, dtype=torch.float64)
    q = torch.as_tensor(q, dtype=torch.float64)
    if q.shape != y.shape:
        raise Wrong(f"q should be 4 probabilities, one per class; got shape {tuple(q.shape)}.")
    if (q < 0).any() or not _near(q.sum(), 1.0):
        raise Wrong("q should be a probability vector: non-negative, summing to 1.")
    if _near(q, F.one_hot(y.argmax(), 4)):
        raise Wrong("Putting all the probability on the most likely class is infinitely expensive: the "
                    "target puts 0.2 and 0.1 on other classes, and -log 0 = infinity. Gibbs' inequality says "
                    "H(y, q) >= H(y), with equality only at q = y.")
    close(q, y, what="q", atol=1e-3, rtol=0)
    h_bits = entropy(y, base=2).item()
    bits = float(bits)
    if _near(bits, h_bits * math.log(2)):
        raise Wrong("That is the minimum in nats (natural log). Bits use log base 2: divide by ln 2.")
    if _near(bits, 0.0):
        raise Wrong("0 is the floor only for one-hot targets; with a soft target the floor is its entropy H(y).")
    close(bits, h_bits, what="the minimum in bits", atol=1e-3, rtol=0)


def best_margin_formula(eps: float, C: int) -> float:
    """The logit margin that minimises label-smoothed cross-entropy (all other logits equal)."""
    on, off = 1 - eps + eps / C, eps / C
    return math.log(on / off)


_MARGIN_CASES = [(0.1, 5), (0.2, 2), (0.05, 10), (0.3, 3)]


@exercise("01.2")
def check_best_margin(best_margin):
    if not callable(best_margin):
        raise Wrong("Answer with your function: answer = best_margin (a function of eps and C).")
    got = [float(best_margin(eps, C)) for eps, C in _MARGIN_CASES]
    want = [best_margin_formula(eps, C) for eps, C in _MARGIN_CASES]
    if any(math.isinf(g) for g in got):
        raise Wrong("With label smoothing the best margin is finite: the smoothed target puts eps/C on every "
                    "other class, so pushing the true logit up forever costs more and more.")
    variants = {
        "no_own_share": [math.log((1 - e) / (e / C)) for e, C in _MARGIN_CASES],
        "eps_not_split": [math.log((1 - e + e / C) / e) for e, C in _MARGIN_CASES],
        "both": [math.log((1 - e) / e) for e, C in _MARGIN_CASES],
        "split_c_minus_1": [math.log((1 - e) / (e / (C - 1))) for e, C in _MARGIN_CASES],
    }
    if _near(got, variants["no_own_share"]) or _near(got, variants["split_c_minus_1"]):
        raise Wrong("PyTorch's label smoothing spreads eps over all C classes, the true one included: the "
                    "target is 1 - eps + eps/C on the true class and eps/C on each other class.")
    if _near(got, variants["eps_not_split"]) or _near(got, variants["both"]):
        raise Wrong("Each other class gets eps/C, not eps: the smoothing mass eps is shared by all C classes.")
    close(got, want, what=f"best_margin at (eps, C) = {_MARGIN_CASES}", rtol=1e-4)


def _perplexity_cases():
    gen = torch.Generator().manual_seed(101)
    N, T, V = 3, 7, 11
    logits = torch.randn(N, T, V, generator=gen) * 2
    labels = torch.randint(0, V, (N, T), generator=gen)
    labels[1, 5:] = -100                  # rows of different lengths: padding at the end
    labels[2, 3:] = -100
    return logits, labels


def reference_perplexity(logits, labels) -> float:
    V = logits.shape[-1]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
    return math.exp(loss.item())


@exercise("01.3")
def check_perplexity(perplexity):
    if not callable(perplexity):
        raise Wrong("Answer with your function: answer = perplexity.")
    logits, labels = _perplexity_cases()
    got = float(perplexity(logits.clone(), labels.clone()))
    want = reference_perplexity(logits, labels)
    V = logits.shape[-1]
    ce = math.log(want)
    unshifted = math.exp(F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1)).item())
    per_row = [F.cross_entropy(logits[i, :-1], labels[i, 1:]).item() for i in range(len(labels))]
    if _near(got, unshifted, 1e-4):
        raise Wrong("You forgot the shift: the logits at position t predict the token at t + 1, so compare "
                    "logits[:, :-1] with labels[:, 1:].")
    if _near(got, 2 ** ce, 1e-4):
        raise Wrong("Cross-entropy from torch / ftlib is in nats (natural log): perplexity is exp(loss), not 2**loss.")
    if _near(got, ce, 1e-4):
        raise Wrong("That is the cross-entropy itself; perplexity is exp of it.")
    if _near(got, math.exp(sum(per_row) / len(per_row)), 1e-4):
        raise Wrong("You averaged per sequence first, so a short sequence's tokens count more: average over "
                    "all real (non -100) tokens of the batch at once.")
    close(got, want, what="perplexity on random logits", rtol=1e-4)
    uniform = float(perplexity(torch.zeros(2, 5, 50), torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(1))))
    close(uniform, 50.0, what="perplexity of uniform logits over 50 tokens", rtol=1e-4)
