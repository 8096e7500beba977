"""Checks for the exercises of notebook 13 (instruction tuning and preference tuning)."""
import math

from ftlib.exercises import Wrong, close, exercise

PROMPT = [1, 9690, 198, 2683, 2, 198, 1, 520, 9531, 198]
FULL = [1, 9690, 198, 2683, 2, 198, 1, 520, 9531, 198, 504, 1069, 2, 198]
PAD, WIDTH = 2, 16


@exercise("13.1")
def sft_labels(answer):
    """The 16 labels of the padded row: prompt -100, response (with its <|im_end|>) kept, padding -100."""
    want = [-100] * len(PROMPT) + FULL[len(PROMPT):] + [-100] * (WIDTH - len(FULL))
    try:
        got = [int(x) for x in answer]
    except (TypeError, ValueError):
        raise Wrong("Give a list of 16 whole numbers.") from None
    if len(got) != WIDTH:
        raise Wrong(f"The padded row has {WIDTH} tokens, so it needs {WIDTH} labels; you gave {len(got)}.")
    padded = FULL + [PAD] * (WIDTH - len(FULL))
    if got == padded:
        raise Wrong("Those are the input ids: the prompt and the padding must not be targets (label -100).")
    if got == [-100 if t == PAD else t for t in padded] or got == [-100] * len(PROMPT) + [
            -100 if t == PAD else t for t in padded[len(PROMPT):]]:
        raise Wrong("You masked by the pad id: 2 is also <|im_end|>, the token that ends the answer. "
                    "Find the padding by position (the attention mask), and keep the end-of-turn target.")
    if got == [-100] * len(PROMPT) + padded[len(PROMPT):]:
        raise Wrong("The padding is still scored: label it -100.")
    if got == want[1:] + [-100] or got == [-100] * (len(PROMPT) - 1) + FULL[len(PROMPT):] + [-100] * (WIDTH - len(FULL) + 1):
        raise Wrong("Do not shift the labels yourself: labels equal the input ids where set; the loss shifts.")
    if got[:len(PROMPT)] != [-100] * len(PROMPT):
        raise Wrong("The prompt's tokens are given, not generated: label every one of them -100.")
    close(got, want, what="the labels")


def _dpo(pc, pr, rc, rr, beta):
    return -math.log(1 / (1 + math.exp(-beta * ((pc - rc) - (pr - rr)))))


@exercise("13.2")
def dpo_value(answer):
    """The DPO loss of one pair: policy -12 / -15, reference -13 / -14 (chosen / rejected), beta 0.1."""
    want = _dpo(-12.0, -15.0, -13.0, -14.0, 0.1)
    try:
        got = float(answer)
    except (TypeError, ValueError):
        raise Wrong("Give one number.") from None
    wrong = {_dpo(-12.0, -15.0, 0.0, 0.0, 0.1): "You left out the reference: the reward is beta times the log-ratio "
                                                 "log pi(y) - log pi_ref(y), for both answers.",
             _dpo(-12.0, -15.0, -13.0, -14.0, 1.0): "Multiply the difference of log-ratios by beta = 0.1.",
             _dpo(-15.0, -12.0, -14.0, -13.0, 0.1): "The chosen answer's log-ratio comes first: "
                                                     "-log sigmoid(beta * (chosen - rejected)).",
             math.log(2): "log 2 is the loss when the policy equals the reference; here it does not.",
             -want: "The loss is minus the log-sigmoid: it is positive."}
    for value, why in wrong.items():
        if abs(got - value) < 1e-4 and abs(value - want) > 1e-4:
            raise Wrong(why)
    close(got, want, what="the DPO loss", rtol=1e-4)


@exercise("13.3")
def response_mean(answer):
    """The SFT loss of a batch: one mean over the response tokens of every row."""
    rows = [([0.5, 0.5], [1.0, 2.0, 3.0]), ([0.2], [6.0])]
    want = sum(sum(r) for _, r in rows) / sum(len(r) for _, r in rows)
    try:
        got = float(answer)
    except (TypeError, ValueError):
        raise Wrong("Give one number.") from None
    per_row = sum(sum(r) / len(r) for _, r in rows) / len(rows)
    everything = sum(sum(p) + sum(r) for p, r in rows) / sum(len(p) + len(r) for p, r in rows)
    if abs(got - per_row) < 1e-6:
        raise Wrong("That is the mean of the rows' means: it weighs a one-token answer like a long one. "
                    "Average over all response tokens of the batch.")
    if abs(got - everything) < 1e-6:
        raise Wrong("The prompt's tokens are not targets: leave their losses out.")
    close(got, want, what="the loss", rtol=1e-6)
