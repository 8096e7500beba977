"""Checks for the exercises of notebook 10 (BERT on a GPU)."""
import math

from ftlib.exercises import Wrong, close, exercise


@exercise("10.1")
def steps_and_warmup(answer):
    """(optimizer steps, warm-up steps) of the full run: 67,349 examples, batch 256, 3 epochs, 6 % warm-up."""
    try:
        steps, warmup = answer
    except (TypeError, ValueError):
        raise Wrong("Give two numbers: (optimizer steps, warm-up steps).") from None
    per_epoch = math.ceil(67_349 / 256)
    want_steps = 3 * per_epoch
    if steps == 3 * (67_349 // 256):
        raise Wrong("The last, smaller batch is a step too: round the batches per epoch up, not down.")
    if steps == per_epoch:
        raise Wrong("That is one epoch; the run has three.")
    close(steps, want_steps, what="the number of optimizer steps")
    close(warmup, math.ceil(0.06 * want_steps), what="the number of warm-up steps (6 % of all steps, rounded up)")


@exercise("10.2")
def target_throughput(answer):
    """(samples/s, TFLOP/s) needed for 3 epochs of SST-2 train in 10 s, at 16 tokens a sample, N = 22.7e6."""
    try:
        samples_per_s, tflops = answer
    except (TypeError, ValueError):
        raise Wrong("Give two numbers: (samples per second, TFLOP/s).") from None
    want = 3 * 67_349 / 10
    if abs(samples_per_s - 67_349 / 10) < 1:
        raise Wrong("Three epochs: every example is seen three times in the 10 s.")
    close(samples_per_s, want, what="the samples per second", rtol=1e-3)
    flops = 6 * 22.7e6 * 16 * want / 1e12
    if abs(tflops - flops / 3) < 1e-3 * flops:
        raise Wrong("2 N FLOPs per token is the forward pass only; training (forward + backward) costs 6 N.")
    close(tflops, flops, what="the TFLOP/s", rtol=1e-3)
