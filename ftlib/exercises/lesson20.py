"""Checks for the exercises of lesson 20 (errata of the seed articles): spot the error, return the fix."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ftlib.exercises import Wrong, close, exercise

# Exercise 20.1: the soft target and prediction of the worked example.
TARGET = [0.7, 0.2, 0.1]
PREDICTION = [0.5, 0.3, 0.2]


def _cross_entropy(y, p, log=math.log) -> float:
    return -sum(yk * log(pk) for yk, pk in zip(y, p))


def _near(a, b, tol=1e-3) -> bool:
    return abs(float(a) - float(b)) <= tol


@exercise("20.1")
def check_worked_example(answer):
    try:
        loss, floor = answer
        loss, floor = float(loss), float(floor)
    except (TypeError, ValueError):
        raise Wrong("Answer with two numbers: answer = (loss, floor).") from None
    if _near(loss, _cross_entropy(TARGET, PREDICTION, math.log10)):
        raise Wrong("That is the tutorial's base-10 logarithm. PyTorch's cross-entropy uses the natural log (nats).")
    if _near(loss, _cross_entropy(TARGET, PREDICTION, math.log2)):
        raise Wrong("That is in bits (log base 2). Use the natural log: nats.")
    close(loss, _cross_entropy(TARGET, PREDICTION), what="the loss", atol=1e-3, rtol=0)
    if _near(floor, 0.0):
        raise Wrong("0 is the floor only for a one-hot target. With a soft target, which prediction is best, and "
                    "what is the loss there? (Lesson 01: Gibbs' inequality.)")
    close(floor, _cross_entropy(TARGET, TARGET), what="the lowest possible loss", atol=1e-3, rtol=0)


# Exercise 20.2: a warm-up longer than the whole run.
N_EXAMPLES, BATCH_SIZE, EPOCHS, WARMUP, LR = 200, 16, 3, 100, 2e-5


def _schedule(total_steps: int) -> list[float]:
    from transformers import get_linear_schedule_with_warmup

    # the schedule's own factor at each step (LambdaLR keeps it); nothing is trained, so no optimiser step
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=LR)
    factor = get_linear_schedule_with_warmup(opt, num_warmup_steps=WARMUP, num_training_steps=total_steps).lr_lambdas[0]
    return [LR * factor(step) for step in range(total_steps)]


@exercise("20.2")
def check_warmup(answer):
    try:
        total_steps, highest_lr = answer
        highest_lr = float(highest_lr)
    except (TypeError, ValueError):
        raise Wrong("Answer with two numbers: answer = (total_steps, highest_lr).") from None
    want_steps = math.ceil(N_EXAMPLES / BATCH_SIZE) * EPOCHS
    if total_steps != want_steps:
        if math.isclose(float(total_steps), N_EXAMPLES / BATCH_SIZE * EPOCHS) or total_steps == N_EXAMPLES // BATCH_SIZE * EPOCHS:
            raise Wrong("A DataLoader keeps the last, smaller batch (drop_last=False): len(loader) = ceil(200 / 16).")
        raise Wrong(f"total_steps = len(loader) * epochs, and len(loader) = ceil(examples / batch size); "
                    f"you gave {total_steps}.")
    if math.isclose(highest_lr, LR, rel_tol=1e-6):
        raise Wrong("2e-5 is only reached after 100 warm-up steps. Does the run have that many steps?")
    close(highest_lr, max(_schedule(want_steps)), what="the highest learning rate", rtol=1e-4, atol=0)


# Exercise 20.3: sigmoid + BCEWithLogitsLoss, and integer labels of the wrong shape.
def _cases():
    g = torch.Generator().manual_seed(14)
    for batch in (1, 4, 7):
        yield 3 * torch.randn(batch, 1, generator=g), torch.randint(0, 2, (batch,), generator=g)


@exercise("20.3")
def check_fixed_loss(fixed_loss):
    if not callable(fixed_loss):
        raise Wrong("Answer with your function: answer = fixed_loss.")
    bce = nn.BCEWithLogitsLoss()
    for logits, labels in _cases():
        got = fixed_loss(logits.clone(), labels.clone())
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise Wrong("Return the mean loss of the batch as a single (0-dimensional) tensor.")
        want = bce(logits.squeeze(1), labels.float())
        double = bce(torch.sigmoid(logits.squeeze(1)), labels.float())
        if torch.allclose(got.double(), double.double(), atol=1e-6) and not torch.allclose(want, double, atol=1e-6):
            raise Wrong("That still applies the sigmoid twice: BCEWithLogitsLoss takes raw logits and applies the "
                        "sigmoid itself.")
        close(got.detach(), want.detach(), what=f"the loss of a batch of {len(labels)}", atol=1e-5, rtol=1e-5)
