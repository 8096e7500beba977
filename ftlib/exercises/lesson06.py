"""Checks for the exercises of notebook 06 (the training loop)."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.exercises import Wrong, close, exercise


# ---- 06.1: warm-up steps from a warm-up ratio --------------------------------------------------
def warmup_steps_reference(n_examples: int, batch_size: int, epochs: int, ratio: float) -> int:
    """As ftlib.train.fit and transformers compute it: ceil(ratio x optimiser steps)."""
    return math.ceil(ratio * math.ceil(n_examples / batch_size) * epochs)


_WARMUP_CASES = [(2000, 16, 1, 0.1), (67_349, 32, 3, 0.06), (67_349, 32, 3, 0.1), (1800, 16, 1, 0.1),
                 (2, 32, 3, 0.1), (1000, 7, 2, 0.25)]


@exercise("06.1")
def check_warmup(warmup_steps_for):
    if not callable(warmup_steps_for):
        raise Wrong("Answer with your function: answer = warmup_steps_for.")
    for n, b, e, r in _WARMUP_CASES:
        got, want = warmup_steps_for(n, b, e, r), warmup_steps_reference(n, b, e, r)
        if got == want:
            continue
        call = f"warmup_steps_for({n}, {b}, {e}, {r})"
        steps = math.ceil(n / b) * e
        if got == math.ceil(r * (n // b) * e):
            raise Wrong(f"{call}: {n} / {b} is not a whole number; the last, smaller batch is a step too "
                        "(math.ceil(n_examples / batch_size) batches per epoch).")
        if got in (math.ceil(r * math.ceil(n / b)), math.floor(r * math.ceil(n / b))) and e > 1:
            raise Wrong(f"{call}: the ratio is of ALL the optimiser steps of the run: multiply by the epochs.")
        if got in (int(r * steps), round(r * steps)):
            raise Wrong(f"{call}: {r} x {steps} steps = {r * steps:g}; round up (math.ceil), as ftlib.train.fit "
                        "and transformers do, so a short run still gets a warm-up step.")
        if got in (math.ceil(r * n * e), math.ceil(r * n)):
            raise Wrong(f"{call}: warm-up counts optimiser steps (batches), not examples.")
        raise Wrong(f"{call} returned {got!r}; expected ceil(ratio x steps), steps = ceil(n / batch) x epochs.")


# ---- 06.2: gradient accumulation with a smaller last micro-batch -------------------------------
def _accum_model():
    torch.manual_seed(52)
    return nn.Linear(6, 3).double()


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


def _variant(model, x, y, micro, scale):
    """Gradients of sum_i scale(i) * mean-loss(micro-batch i)."""
    model.zero_grad()
    chunks = list(zip(x.split(micro), y.split(micro)))
    for xi, yi in chunks:
        (F.cross_entropy(model(xi), yi) * scale(len(xi), len(chunks))).backward()
    return _grads(model)


def _same_grads(a, b) -> bool:
    return all(torch.allclose(g, w, rtol=1e-6, atol=1e-10) for g, w in zip(a, b))


@exercise("06.2")
def check_accumulate(accumulate):
    if not callable(accumulate):
        raise Wrong("Answer with your function: answer = accumulate.")
    base = _accum_model()
    gen = torch.Generator().manual_seed(52)
    x = torch.randn(10, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=gen)
    full = copy.deepcopy(base)
    F.cross_entropy(full(x), y).backward()
    want = _grads(full)
    for micro in (5, 4, 10, 3):                        # equal sizes first, then a smaller last one
        model = copy.deepcopy(base)
        for p in model.parameters():                   # left over from a previous step
            p.grad = torch.ones_like(p)

        def at_most_micro(module, args, micro=micro):  # the full batch "does not fit": refuse it
            rows = args[0].shape[0] if args and hasattr(args[0], "shape") and args[0].ndim > 1 else 1
            if rows > micro:
                raise Wrong(f"accumulate ran the model on {rows} rows at once, but micro_batch_size={micro}: the "
                            "point is that only that many fit in memory. Split x and y with "
                            ".split(micro_batch_size) and run one micro-batch at a time.")
        model.register_forward_pre_hook(at_most_micro)
        accumulate(model, x.clone(), y.clone(), micro)
        if any(p.grad is None for p in model.parameters()):
            raise Wrong("After accumulate, every parameter's .grad should hold the gradient: call .backward() "
                        "on each micro-batch's loss.")
        got = _grads(model)
        if _same_grads(got, want):
            continue
        if _same_grads([g - 1 for g in got], want):
            raise Wrong("Start from zero: gradients add up in .grad, so clear them (model.zero_grad()) before "
                        "the first micro-batch.")
        k = math.ceil(len(x) / micro)
        sizes = [len(c) for c in x.split(micro)]
        if _same_grads(got, _variant(copy.deepcopy(base), x, y, micro, lambda n, k: 1.0)):
            raise Wrong(f"With micro_batch_size={micro} your gradient is the SUM of the {k} micro-batch mean "
                        "losses' gradients, about k times too big: scale each micro-batch's loss before backward().")
        if _same_grads(got, _variant(copy.deepcopy(base), x, y, micro, lambda n, k: 1.0 / k)):
            raise Wrong(f"Dividing by the number of micro-batches is exact only when they are the same size; with "
                        f"micro_batch_size={micro} they are {sizes}. Weight each micro-batch's mean loss by its "
                        "size / the full batch size (or sum per-example losses and divide by the total).")
        close(got[0], want[0], what=f"the weight gradient with micro_batch_size={micro}", rtol=1e-6, atol=1e-10)
        close(got[1], want[1], what=f"the bias gradient with micro_batch_size={micro}", rtol=1e-6, atol=1e-10)


# ---- 06.3: averaging an evaluation loss over batches -------------------------------------------
@exercise("06.3")
def check_mean_over_examples(mean_over_examples):
    if not callable(mean_over_examples):
        raise Wrong("Answer with your function: answer = mean_over_examples.")
    gen = torch.Generator().manual_seed(53)
    sizes = [64] * 13 + [40]                           # 872 validation sentences in batches of 64
    means = (torch.rand(len(sizes), generator=gen, dtype=torch.float64) * 0.5 + 0.2).tolist()
    got = float(mean_over_examples(list(means), list(sizes)))
    want = sum(m * n for m, n in zip(means, sizes)) / sum(sizes)
    if math.isclose(got, want, rel_tol=1e-9):
        equal = float(mean_over_examples([0.3, 0.5, 0.7], [8, 8, 8]))
        close(equal, 0.5, what="the mean over examples for three batches of 8", rtol=1e-9)
        return
    if math.isclose(got, sum(means) / len(means), rel_tol=1e-9):
        raise Wrong("That is seed 000's average of batch means: the last batch (40 sentences) counts as much as a "
                    "full one (64). Weight each batch mean by its batch size.")
    if math.isclose(got, sum(means) / sum(sizes), rel_tol=1e-9):
        raise Wrong("Each batch mean is already divided by its batch size: multiply it back by the size to get "
                    "the batch's sum of losses, add those up, then divide by the number of examples.")
    close(got, want, what="the mean over examples", rtol=1e-9)
