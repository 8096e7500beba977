"""Checks for the exercises of lesson 10 (evaluation done right)."""
from __future__ import annotations

import math
from collections import Counter

from ftlib.exercises import Wrong, close, exercise

# Exercise 10.1: a 3-class confusion matrix, rows = true class, columns = predicted class.
EX1_CM = [[50, 5, 5],
          [10, 20, 10],
          [2, 3, 15]]

# Exercise 10.2: scores of eight examples (with a tie between a positive and a negative).
EX2_LABELS = [1, 1, 0, 1, 0, 0, 1, 0]
EX2_SCORES = [0.9, 0.7, 0.7, 0.6, 0.5, 0.5, 0.3, 0.2]

# Exercise 10.3: P(positive) for ten examples, and their labels; ECE with 5 bins.
EX3_PROBS = [0.97, 0.91, 0.83, 0.28, 0.12, 0.55, 0.66, 0.07, 0.43, 0.74]
EX3_LABELS = [1, 1, 0, 0, 1, 1, 0, 0, 0, 1]
EX3_BINS = 5

# Exercise 10.4: one hypothesis and one reference, tokens split on spaces.
EX4_HYP = "the the the cat sat"
EX4_REF = "the cat sat on the mat"


def _numbers(answer, n, what):
    if n == 1:
        try:
            return (float(answer),)
        except (TypeError, ValueError):
            raise Wrong(f"Give one number: {what}.") from None
    try:
        values = tuple(float(a) for a in answer)
    except (TypeError, ValueError):
        raise Wrong(f"Give {n} numbers: {what}.") from None
    if len(values) != n:
        raise Wrong(f"Give {n} numbers: {what}; got {len(values)}.")
    return values


def _per_class(cm):
    k = len(cm)
    tp = [cm[i][i] for i in range(k)]
    pred = [sum(cm[r][c] for r in range(k)) for c in range(k)]
    true = [sum(cm[c]) for c in range(k)]
    prec = [t / p if p else 0.0 for t, p in zip(tp, pred)]
    rec = [t / n if n else 0.0 for t, n in zip(tp, true)]
    return tp, true, prec, rec


@exercise("10.1")
def f1_from_confusion_matrix(answer):
    """(macro F1, micro F1) of EX1_CM."""
    macro, micro = _numbers(answer, 2, "(macro_f1, micro_f1)")
    tp, true, prec, rec = _per_class(EX1_CM)
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(prec, rec)]
    want_macro = sum(f1) / len(f1)
    want_micro = sum(tp) / sum(true)
    arithmetic = sum((p + r) / 2 for p, r in zip(prec, rec)) / len(f1)
    weighted = sum(f * n for f, n in zip(f1, true)) / sum(true)
    if math.isclose(macro, arithmetic, abs_tol=1e-4):
        raise Wrong("That macro value uses the arithmetic mean (P + R) / 2 per class; F1 is the harmonic "
                    "mean 2PR / (P + R).")
    if math.isclose(macro, weighted, abs_tol=1e-4):
        raise Wrong("That is the support-weighted average; macro gives every class the same weight 1/3.")
    close(macro, want_macro, what="macro F1", atol=1e-4)
    if not math.isclose(micro, want_micro, abs_tol=1e-4):
        raise Wrong("Micro-averaging pools every decision before dividing: micro precision = micro recall = "
                    "micro F1 = (sum of the diagonal) / (all examples) in single-label classification.")


@exercise("10.2")
def auc_with_ties(answer):
    """ROC AUC of EX2_SCORES for EX2_LABELS, computed by counting pairs."""
    (auc,) = _numbers(answer, 1, "the area under the ROC curve")
    pos = [s for s, y in zip(EX2_SCORES, EX2_LABELS) if y == 1]
    neg = [s for s, y in zip(EX2_SCORES, EX2_LABELS) if y == 0]
    wins = sum(p > n for p in pos for n in neg)
    ties = sum(p == n for p in pos for n in neg)
    pairs = len(pos) * len(neg)
    want = (wins + 0.5 * ties) / pairs
    if math.isclose(auc, 1 - want, abs_tol=1e-4):
        raise Wrong("That is 1 - AUC: count the pairs where the positive scores *higher* than the negative.")
    if ties and math.isclose(auc, wins / pairs, abs_tol=1e-4):
        raise Wrong("A tie between a positive and a negative counts as half a win (the ROC curve goes "
                    "diagonally through tied scores).")
    if ties and math.isclose(auc, (wins + ties) / pairs, abs_tol=1e-4):
        raise Wrong("A tie counts as half a win, not a whole one.")
    close(auc, want, what="the AUC", atol=1e-4)


@exercise("10.3")
def ece_by_hand(answer):
    """ECE of EX3_PROBS / EX3_LABELS with EX3_BINS equal-width bins of the top-class confidence."""
    (ece,) = _numbers(answer, 1, "the expected calibration error")

    def ece_of(conf, right, weighted=True):
        bins = {}
        for c, r in zip(conf, right):
            k = min(max(math.ceil(c * EX3_BINS) - 1, 0), EX3_BINS - 1)
            bins.setdefault(k, []).append((c, r))
        n = len(conf)
        gaps = [(len(v), abs(sum(r for _, r in v) / len(v) - sum(c for c, _ in v) / len(v)))
                for v in bins.values()]
        if weighted:
            return sum(m / n * g for m, g in gaps)
        return sum(g for _, g in gaps) / len(gaps)

    conf = [max(p, 1 - p) for p in EX3_PROBS]
    right = [int((p >= 0.5) == bool(y)) for p, y in zip(EX3_PROBS, EX3_LABELS)]
    want = ece_of(conf, right)
    # the usual slip: binning P(positive) and comparing it with the label
    slip = ece_of(EX3_PROBS, EX3_LABELS)
    if math.isclose(ece, slip, abs_tol=1e-4) and not math.isclose(slip, want, abs_tol=1e-4):
        raise Wrong("You binned P(positive) against the label (that is sklearn's calibration_curve view). "
                    "ECE bins the *confidence* max(p, 1 - p) and compares it with whether the prediction "
                    "was right.")
    if math.isclose(ece, ece_of(conf, right, weighted=False), abs_tol=1e-4):
        raise Wrong("Weight each bin's |accuracy - confidence| by its share of the examples (n_bin / N); "
                    "a plain mean over bins lets a bin of one example count as much as a full one.")
    close(ece, want, what="the ECE", atol=1e-4)


@exercise("10.4")
def bleu_pieces(answer):
    """(clipped unigram precision, brevity penalty) of EX4_HYP against EX4_REF."""
    p1, bp = _numbers(answer, 2, "(clipped unigram precision, brevity penalty)")
    h, r = EX4_HYP.split(), EX4_REF.split()
    hc, rc = Counter(h), Counter(r)
    want_p1 = sum(min(c, rc[w]) for w, c in hc.items()) / len(h)
    unclipped = sum(c for w, c in hc.items() if w in rc) / len(h)
    if math.isclose(p1, unclipped, abs_tol=1e-4) and not math.isclose(unclipped, want_p1, abs_tol=1e-4):
        raise Wrong("Clip each word's count at the number of times it occurs in the reference: 'the' "
                    f"appears {hc['the']} times in the hypothesis but only {rc['the']} times in the reference.")
    close(p1, want_p1, what="the clipped unigram precision", atol=1e-4)
    c, ref_len = len(h), len(r)
    want_bp = 1.0 if c >= ref_len else math.exp(1 - ref_len / c)
    if c < ref_len and math.isclose(bp, math.exp(1 - c / ref_len), abs_tol=1e-4):
        raise Wrong("The brevity penalty is exp(1 - r / c), reference length over hypothesis length.")
    close(bp, want_bp, what="the brevity penalty", atol=1e-4)
