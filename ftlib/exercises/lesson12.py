"""Checks for the exercises of notebook 12 (GPT on a GPU)."""
import math

from ftlib.exercises import Wrong, close, exercise

CE = [2.0, 3.0, 1.0, 4.0, 2.5]             # the per-token losses given in exercise 12.1


@exercise("12.1")
def perplexity_of(answer):
    """Perplexity of the per-token cross-entropies CE (nats)."""
    want = math.exp(sum(CE) / len(CE))
    mean_of_exp = sum(math.exp(c) for c in CE) / len(CE)
    try:
        got = float(answer)
    except (TypeError, ValueError):
        raise Wrong("Give one number.") from None
    if abs(got - mean_of_exp) < 1e-3 * mean_of_exp:
        raise Wrong("That is the mean of the exponentials: take the exponential of the mean loss.")
    if abs(got - sum(CE) / len(CE)) < 1e-6:
        raise Wrong("That is the mean cross-entropy; perplexity is its exponential.")
    close(got, want, what="the perplexity", rtol=1e-4)


@exercise("12.2")
def mfu_of_run(answer):
    """MFU of 400,000 training tokens/s of course-gpt (N=134,515,008, 30 layers, d=576, T=1024) on an H100 SXM."""
    from ftlib.flops import PEAK_BF16_TFLOPS

    # course-gpt ties its output layer to the embedding, so all N weights do matmul work once
    fpt = 6 * 134_515_008 + 12 * 30 * 576 * 1024
    want = 400_000 * fpt / (PEAK_BF16_TFLOPS["NVIDIA H100 80GB HBM3"] * 1e12)
    try:
        got = float(answer)
    except (TypeError, ValueError):
        raise Wrong("Give one number, a fraction such as 0.25 (not a percentage).") from None
    if abs(got - 100 * want) < 1e-2 * 100 * want:
        raise Wrong("Give MFU as a fraction (0.25), not a percentage (25).")
    if abs(got - 400_000 * 6 * 134_515_008 / 989e12) < 1e-3 * want:
        raise Wrong("You left out the attention term 12 * layers * d_model * seq_len.")
    if abs(got - want / 3) < 1e-2 * want:
        raise Wrong("Training costs forward + backward, 3x the forward FLOPs: use 6 N, not 2 N.")
    close(got, want, what="the MFU", rtol=1e-3)


@exercise("12.3")
def blocks_from_documents(answer):
    """(full blocks, tokens dropped) when documents of 100, 50 and 30 tokens, each followed by an
    end-of-text token, are packed into blocks of 64 without keeping the remainder."""
    try:
        blocks, dropped = answer
    except (TypeError, ValueError):
        raise Wrong("Give two numbers: (full blocks, tokens dropped).") from None
    total = 100 + 50 + 30 + 3
    if (blocks, dropped) == (180 // 64, 180 % 64):
        raise Wrong("Each document is followed by an end-of-text token: count those three too.")
    if blocks == 1 + 0 + 0:
        raise Wrong("Packing concatenates the documents first, then cuts the stream; it does not cut each one.")
    close(blocks, total // 64, what="the number of blocks")
    close(dropped, total % 64, what="the tokens dropped")
