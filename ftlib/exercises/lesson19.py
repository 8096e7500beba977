"""Checks for the exercises of lesson 19 (scaling out): bytes per parameter, the all-reduce, the global batch."""
from __future__ import annotations

import math

import torch

from ftlib.exercises import Wrong, close, exercise


# Exercise 19.1: bytes per parameter of full fine-tuning in bf16 with float32 master weights and AdamW.
PARTS = ("weights", "gradients", "master", "optimizer")


@exercise("19.1")
def bytes_per_parameter(answer):
    """``answer``: a dict with the bytes per parameter of each part of the training state."""
    from ftlib.memory import training_bytes

    if not isinstance(answer, dict) or set(answer) != set(PARTS):
        raise Wrong(f"Give a dict with the keys {list(PARTS)}: bytes per parameter of each part.")
    want = training_bytes(1, "bf16-mixed")
    got = {k: float(answer[k]) for k in PARTS}
    if got["optimizer"] == want.optimizer / 2:
        raise Wrong("AdamW keeps TWO float32 numbers per parameter: the running mean of the gradients (m) and "
                    "of their squares (v).")
    if got["master"] == 0:
        raise Wrong("The weights are bf16, so the optimiser updates a float32 master copy of them (a bf16 weight "
                    "cannot absorb an update 1000 times smaller than itself). Count it.")
    if got["gradients"] == 4:
        raise Wrong("The gradients are computed for the bf16 weights, so they are bf16 too (2 bytes); the float32 "
                    "copy lives in the optimiser.")
    for k in PARTS:
        close(got[k], getattr(want, k), what=f"the bytes per parameter of the {k}", rtol=0, atol=1e-9)


# Exercise 19.2: what the all-reduce must compute from each rank's mean gradient.
def _cases():
    g = torch.Generator().manual_seed(18)
    for counts in ([4, 4], [7, 5], [3, 1, 6], [10, 2, 2, 2]):
        yield [torch.randn(3, 2, generator=g) for _ in counts], counts


@exercise("19.2")
def combine_gradients(fn):
    """``fn(grads, counts)``: the full-batch mean gradient from each rank's mean gradient and item count."""
    if not callable(fn):
        raise Wrong("Give a function combine(grads, counts) that takes a list of per-rank gradients and a list "
                    "of item counts.")
    for grads, counts in _cases():
        want = sum(g * n for g, n in zip(grads, counts)) / sum(counts)
        got = torch.as_tensor(fn([g.clone() for g in grads], list(counts)), dtype=torch.float32)
        if got.shape == want.shape and torch.allclose(got, sum(grads), atol=1e-6) and len(grads) > 1:
            raise Wrong("You summed the ranks' gradients: that is the gradient of the SUM of the rank losses, "
                        f"{len(grads)} times too large for equal shards. The full batch's loss is a mean.")
        plain = sum(grads) / len(grads)
        if len(set(counts)) > 1 and got.shape == want.shape and torch.allclose(got, plain, atol=1e-6):
            raise Wrong(f"A plain average of the ranks' means is right only when every rank holds as many items; "
                        f"with {counts} items weigh each mean by its items.")
        close(got, want, what=f"the combined gradient for counts {counts}", rtol=1e-5, atol=1e-6)


# Exercise 19.3: gradient accumulation, optimiser steps and the learning rate when the global batch grows.
GPUS, ROWS_PER_GPU, GLOBAL_BATCH, EXAMPLES, TUNED_BATCH, TUNED_LR = 8, 16, 256, 51_200, 32, 2e-5


@exercise("19.3")
def global_batch(answer):
    """``answer = (grad_accum_steps, optimizer_steps, lr)``."""
    try:
        accum, steps, lr = answer
        accum, steps, lr = int(accum), int(steps), float(lr)
    except (TypeError, ValueError):
        raise Wrong("Answer with three numbers: (grad_accum_steps, optimizer_steps, lr).") from None
    want_accum = GLOBAL_BATCH // (GPUS * ROWS_PER_GPU)
    if accum == GLOBAL_BATCH // ROWS_PER_GPU:
        raise Wrong(f"The {GPUS} GPUs each take {ROWS_PER_GPU} rows in every micro-batch: one micro-batch step "
                    f"of all of them is already {GPUS * ROWS_PER_GPU} rows.")
    if accum != want_accum:
        raise Wrong("grad_accum_steps = global batch / (GPUs x rows per GPU).")
    want_steps = EXAMPLES // GLOBAL_BATCH
    if steps in (EXAMPLES // (GPUS * ROWS_PER_GPU), EXAMPLES // ROWS_PER_GPU):
        raise Wrong("That counts micro-batches. The optimiser steps once per GLOBAL batch: examples / global batch.")
    if steps != want_steps:
        raise Wrong("optimizer_steps = examples / global batch (one epoch).")
    if math.isclose(lr, TUNED_LR, rel_tol=1e-6):
        raise Wrong(f"The learning rate was tuned for a global batch of {TUNED_BATCH}: with {GLOBAL_BATCH // TUNED_BATCH}x "
                    "the batch there are that many times fewer steps. The linear scaling rule multiplies the lr "
                    "by the same factor.")
    close(lr, TUNED_LR * GLOBAL_BATCH / TUNED_BATCH, what="the learning rate", rtol=1e-6, atol=0)
