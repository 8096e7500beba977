"""Checks for the exercises of notebook 08 (overfitting, regularisation, class imbalance)."""
from __future__ import annotations

import math

from ftlib.exercises import Wrong, close, exercise

# ---- 08.1: class weights from counts --------------------------------------------------------
EX1_COUNTS = {0: 1800, 1: 150, 2: 50}


def _balanced_weights(counts: dict) -> list[float]:
    n, c = sum(counts.values()), len(counts)
    return [n / (c * counts[k]) for k in sorted(counts)]


@exercise("08.1")
def check_class_weights(weights):
    want = _balanced_weights(EX1_COUNTS)
    try:
        got = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise Wrong("Answer with one weight per class, in class order: a list of 3 numbers.") from None
    if len(got) != len(want):
        raise Wrong(f"There are {len(want)} classes: give {len(want)} weights, class 0 first.")
    n = sum(EX1_COUNTS.values())
    counts = [EX1_COUNTS[k] for k in sorted(EX1_COUNTS)]
    if all(math.isclose(g, 1 / k, rel_tol=1e-3) for g, k in zip(got, counts)):
        raise Wrong("1 / n_c has the right ratios but a scale of about 0.001: the loss (and so the "
                    "effective learning rate) would shrink a thousandfold. Multiply by N / C.")
    if all(math.isclose(g, n / k, rel_tol=1e-3) for g, k in zip(got, counts)):
        raise Wrong("N / n_c is C times too large: divide by the number of classes C as well, so that "
                    "equal counts would give weights of 1.")
    if all(math.isclose(g, k / n, rel_tol=1e-3) for g, k in zip(got, counts)):
        raise Wrong("Those are the class frequencies: the common class would get the LARGEST weight. "
                    "The weight must fall as the count rises (N / (C * n_c)).")
    close(got, want, what="your weights", rtol=1e-3)


# ---- 08.2: what accuracy hides ---------------------------------------------------------------
EX2_NEG, EX2_POS = 540, 60          # a test set; the model answers "negative" for every review


@exercise("08.2")
def check_majority(accuracy, balanced_accuracy, macro_f1):
    n = EX2_NEG + EX2_POS
    acc = EX2_NEG / n
    bal = (1.0 + 0.0) / 2                                   # recall of negatives 1, positives 0
    precision_neg = EX2_NEG / n
    f1_neg = 2 * precision_neg * 1.0 / (precision_neg + 1.0)
    macro = (f1_neg + 0.0) / 2                              # positive F1 is 0 (no positive predictions)
    close(accuracy, acc, what="the accuracy", rtol=1e-3)
    if math.isclose(float(balanced_accuracy), acc, rel_tol=1e-3):
        raise Wrong("Balanced accuracy is the MEAN OF THE PER-CLASS RECALLS, not the accuracy: the recall "
                    "of 'negative' is 540/540, of 'positive' 0/60.")
    close(balanced_accuracy, bal, what="the balanced accuracy", rtol=1e-3)
    if math.isclose(float(macro_f1), f1_neg, rel_tol=1e-3):
        raise Wrong("That is the F1 of the negative class only. Macro-F1 averages the F1 of every class, and "
                    "the positive class, never predicted, has F1 = 0.")
    if math.isclose(float(macro_f1), acc, rel_tol=1e-3):
        raise Wrong("Macro-F1 is not the accuracy: compute F1 = 2PR/(P+R) per class, then average them.")
    close(macro_f1, macro, what="the macro-F1", rtol=1e-3)


# ---- 08.3: where early stopping stops --------------------------------------------------------
def early_stop_reference(eval_losses, patience: int):
    """(epochs run, epoch whose weights are kept), as ftlib.train.fit does it (1-based epochs)."""
    best, best_epoch, bad = math.inf, 0, 0
    for epoch, loss in enumerate(eval_losses, start=1):
        if loss < best:
            best, best_epoch, bad = loss, epoch, 0
        else:
            bad += 1
        if bad >= patience:
            return epoch, best_epoch
    return len(eval_losses), len(eval_losses)


EX3_CASES = [
    ([0.60, 0.45, 0.40, 0.42, 0.47, 0.55, 0.61], 2),
    ([0.60, 0.45, 0.40, 0.42, 0.39, 0.55, 0.61], 2),
    ([0.60, 0.45, 0.40, 0.40, 0.41, 0.55], 1),
    ([0.70, 0.60, 0.50, 0.40], 2),
    ([0.50, 0.52, 0.49, 0.53, 0.54, 0.55, 0.56], 3),
    ([0.50, 0.50, 0.50, 0.50], 3),
    ([0.60, 0.50, 0.40, 0.45], 2),
]


@exercise("08.3")
def check_early_stopping(early_stop):
    if not callable(early_stop):
        raise Wrong("Answer with your function: answer = early_stop.")
    for losses, patience in EX3_CASES:
        want = early_stop_reference(losses, patience)
        try:
            got = tuple(int(x) for x in early_stop(list(losses), patience))
        except (TypeError, ValueError):
            raise Wrong("early_stop should return two whole numbers: (epochs run, epoch kept).") from None
        if got == want:
            continue
        call = f"early_stop({losses}, patience={patience})"
        if got == (want[0] - 1, want[1] - 1):
            raise Wrong(f"{call} gave {got}: count epochs from 1 (the first evaluation is epoch 1).")
        if got[1] == want[0] and want[0] != want[1]:
            raise Wrong(f"{call} gave {got}: fit restores the BEST weights, not the last epoch's.")
        if want[0] == want[1] == len(losses) and got[1] != want[1]:
            raise Wrong(f"{call} gave {got}: this run never stops early (the patience is not used up by "
                        "the last epoch), and fit restores the best weights only when it stops early.")
        if len(set(losses)) < len(losses):
            raise Wrong(f"{call} gave {got}, expected {want}: a loss equal to the best so far is not an "
                        "improvement (fit needs strictly lower).")
        raise Wrong(f"{call} gave {got}, expected {want}. Count the epochs without improvement since the "
                    "best; stop when the count reaches the patience.")
