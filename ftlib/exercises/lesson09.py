"""Checks for the exercises of lesson 09 (rule-based and hybrid fine-tuning)."""
from __future__ import annotations

import math

from ftlib.exercises import Wrong, close, exercise

# Exercise 09.1: ten sentences, what the rules said (None = abstain) and the gold labels.
EX1_PREDICTED = [1, None, 0, 1, None, 1, 0, None, 1, 0]
EX1_GOLD = [1, 0, 0, 0, 1, 1, 1, 1, 1, 0]

# Exercise 09.2: the model's logits for one sentence and the rules' score for it.
EX2_LOGITS = [2.0, 0.0]          # [negative, positive]
EX2_RULE_SCORE = 1.0             # rule_distribution(..., sharpness=1): P(pos) = sigmoid(1)

# Exercise 09.3: the sentence whose negation needs a wide enough window.
EX3_SENTENCE = "i did not think it was a particularly good film"


def _as_tuple(answer, n, what):
    try:
        values = tuple(float(a) for a in answer)
    except TypeError:
        raise Wrong(f"Give {n} numbers, {what}.") from None
    if len(values) != n:
        raise Wrong(f"Give {n} numbers, {what}; got {len(values)}.")
    return values


@exercise("09.1")
def coverage_and_accuracy(answer):
    """(coverage, accuracy on the covered sentences, accuracy with abstain -> positive)."""
    cov, acc_cov, acc_all = _as_tuple(answer, 3, "(coverage, accuracy_covered, accuracy with fallback 1)")
    pairs = list(zip(EX1_PREDICTED, EX1_GOLD))
    covered = [(p, g) for p, g in pairs if p is not None]
    want_cov = len(covered) / len(pairs)
    want_acc = sum(p == g for p, g in covered) / len(covered)
    want_all = sum((1 if p is None else p) == g for p, g in pairs) / len(pairs)
    if math.isclose(cov, 1 - want_cov, abs_tol=1e-3) and not math.isclose(cov, want_cov, abs_tol=1e-3):
        raise Wrong("Coverage is the share of sentences the rules DO label (not None), not the share they abstain on.")
    close(cov, want_cov, what="coverage", atol=1e-3)
    if math.isclose(acc_cov, sum(p == g for p, g in covered) / len(pairs), abs_tol=1e-3):
        raise Wrong("accuracy_covered divides by the number of covered sentences, not by all of them.")
    close(acc_cov, want_acc, what="accuracy on the covered sentences", atol=1e-3)
    close(acc_all, want_all, what="accuracy with abstentions counted as positive (1)", atol=1e-3)


@exercise("09.2")
def kl_model_rules(answer):
    """KL(p_model || p_rules) in nats for EX2_LOGITS and EX2_RULE_SCORE."""
    try:
        value = float(answer)
    except (TypeError, ValueError):
        raise Wrong("Give one number: the KL divergence in nats.") from None
    z0, z1 = EX2_LOGITS
    p1 = 1 / (1 + math.exp(z0 - z1))
    p = [1 - p1, p1]
    q1 = 1 / (1 + math.exp(-EX2_RULE_SCORE))
    q = [1 - q1, q1]
    want = sum(a * math.log(a / b) for a, b in zip(p, q))
    reverse = sum(b * math.log(b / a) for a, b in zip(p, q))
    if math.isclose(value, reverse, rel_tol=1e-3):
        raise Wrong("That is KL(rules || model). The constraint term is KL(model || rules) = "
                    "sum_c p_model[c] * log(p_model[c] / p_rules[c]): the order matters.")
    if math.isclose(value, want / math.log(2), rel_tol=1e-3):
        raise Wrong("That is in bits; use natural logarithms (nats).")
    close(value, want, what="KL(model || rules)", rtol=1e-3)


@exercise("09.3")
def smallest_window(answer):
    """The smallest negation_window for which EX3_SENTENCE is labelled negative."""
    from ftlib.rules import RuleScorer

    if not isinstance(answer, int) or isinstance(answer, bool):
        raise Wrong("Give a whole number (a window size in tokens).")
    label = [RuleScorer(negation_window=k).score(EX3_SENTENCE).label for k in range(0, 12)]
    want = next(k for k, lab in enumerate(label) if lab == 0)
    if answer < 0:
        raise Wrong("A window is at least 0 tokens.")
    if answer < want:
        raise Wrong(f"With negation_window={answer} the sentence is still labelled "
                    f"{label[answer] if answer < len(label) else '?'}: count the tokens from 'not' to 'good'.")
    if answer > want:
        raise Wrong(f"negation_window={answer} works, but a smaller window does too: find the smallest.")
