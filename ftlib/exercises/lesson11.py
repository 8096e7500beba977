"""Checks for the exercises of notebook 11 (BERT on a GPU)."""
import math

from ftlib.exercises import Wrong, close, exercise


@exercise("11.1")
def steps_and_warmup(answer):
    """(optimizer steps, warm-up steps) of the full run: 67,349 examples, static batches of 256 (the short
    last batch is dropped, a different one every epoch), 3 epochs, 6 % warm-up rounded up."""
    try:
        steps, warmup = answer
    except (TypeError, ValueError):
        raise Wrong("Give two numbers: (optimizer steps, warm-up steps).") from None
    per_epoch = 67_349 // 256
    want_steps = 3 * per_epoch
    if steps == 3 * math.ceil(67_349 / 256):
        raise Wrong("Static batches all have 256 rows: the short last batch is dropped, so round the batches "
                    "per epoch down, not up.")
    if steps == per_epoch:
        raise Wrong("That is one epoch; the run has three.")
    close(steps, want_steps, what="the number of optimizer steps")
    close(warmup, math.ceil(0.06 * want_steps), what="the number of warm-up steps (6 % of all steps, rounded up)")


# course-bert (all-MiniLM-L6-v2): 6 layers of width 384 with a 1,536-wide feed-forward, a 384 x 384 pooler and
# a 384 x 2 classifier. Their weights are its matmul parameters, what ftlib.flops.matmul_parameters counts
# (tests/test_flops.py checks it on the real architecture); the other 11.9 M of its 22.7 M are embeddings.
COURSE_BERT_MATMUL = 6 * (4 * 384 * 384 + 2 * 384 * 1536) + 384 * 384 + 384 * 2      # 10,765,056
COURSE_BERT_ALL = 22.7e6


@exercise("11.2")
def target_throughput(answer):
    """(samples/s, TFLOP/s) needed for 3 epochs of SST-2 train in 10 s, at 16 tokens a sample, 6 FLOPs per
    token for each matmul weight (22.7e6 parameters less 11.9e6 embedding parameters)."""
    try:
        samples_per_s, tflops = answer
    except (TypeError, ValueError):
        raise Wrong("Give two numbers: (samples per second, TFLOP/s).") from None
    want = 3 * 67_349 / 10
    if abs(samples_per_s - 67_349 / 10) < 1:
        raise Wrong("Three epochs: every example is seen three times in the 10 s.")
    close(samples_per_s, want, what="the samples per second", rtol=1e-3)
    flops = 6 * COURSE_BERT_MATMUL * 16 * want / 1e12
    with_embeddings = 6 * COURSE_BERT_ALL * 16 * want / 1e12
    # 2 %: 22.7 M - 11.9 M = 10.8 M (0.3 % high) and attention's 12 L d T (0.7 %) are both fine
    if abs(tflops - with_embeddings) < 0.02 * with_embeddings:
        raise Wrong("That counts all 22.7 M parameters, but embeddings do no matmul work: looking up a row of "
                    "the table is a copy, not a multiplication. Count the 6 FLOPs per token only for the "
                    "weights that multiply: 22.7 M - 11.9 M.")
    if any(abs(tflops - f / 3) < 0.02 * f / 3 for f in (flops, with_embeddings)):
        raise Wrong("2 N FLOPs per token is the forward pass only; training (forward + backward) costs 6 N.")
    close(tflops, flops, what="the TFLOP/s", rtol=0.02)
