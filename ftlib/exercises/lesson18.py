"""Checks for the exercises of lesson 18 (translation measured properly)."""
from __future__ import annotations

from collections import Counter

from ftlib.exercises import Wrong, exercise

# Sentence pairs (hypothesis, reference) on which the usual mistakes give different numbers; every side
# has at least 6 characters without spaces, so all six orders exist on both sides.
PAIRS = [("The cat sat on the mat.", "The cat is on the mat."),
         ("I like cats a lot", "I really like cats."),
         ("he he he he he", "he is here now"),
         ("Tom left early.", "Tom went home early.")]


def _chrf(hyp: str, ref: str, beta: float = 2.0, spaces: bool = False, clip: bool = True,
          mean_of_f: bool = False) -> float:
    """Sentence chrF (0-100); the keyword arguments switch on the usual wrong variants."""
    if not spaces:
        hyp, ref = "".join(hyp.split()), "".join(ref.split())
    precisions, recalls, fs = [], [], []
    for n in range(1, 7):
        h = Counter(hyp[i:i + n] for i in range(len(hyp) - n + 1))
        r = Counter(ref[i:i + n] for i in range(len(ref) - n + 1))
        m = sum(min(c, r[g]) if clip else (c if g in r else 0) for g, c in h.items())
        p, rc = m / sum(h.values()), m / sum(r.values())
        precisions.append(p)
        recalls.append(rc)
        fs.append((1 + beta ** 2) * p * rc / (beta ** 2 * p + rc) if p + rc else 0.0)
    if mean_of_f:
        return 100 * sum(fs) / len(fs)
    p, rc = sum(precisions) / 6, sum(recalls) / 6
    return 100 * (1 + beta ** 2) * p * rc / (beta ** 2 * p + rc) if p + rc else 0.0


@exercise("18.1")
def chrf_pair(fn):
    from ftlib.metrics import corpus_chrf

    for hyp, ref in PAIRS:
        want = corpus_chrf([hyp], [ref])
        try:
            got = float(fn(hyp, ref))
        except (TypeError, ValueError):
            raise Wrong("chrf_pair(hyp, ref) should return one number, the chrF score from 0 to 100.") from None
        if abs(got - want) <= 1e-6:
            continue
        hint = ""
        if abs(got - want / 100) <= 1e-8:
            hint = " It is on the 0-1 scale: chrF is reported from 0 to 100."
        elif abs(got - _chrf(hyp, ref, beta=1.0)) <= 1e-6:
            hint = " That is F1 (beta = 1); chrF uses beta = 2, which weighs recall twice as much as precision."
        elif abs(got - _chrf(hyp, ref, spaces=True)) <= 1e-6:
            hint = " Remove the spaces first: chrF's character n-grams do not cross or contain spaces."
        elif abs(got - _chrf(hyp, ref, mean_of_f=True)) <= 1e-6:
            hint = (" That is the mean of the six F-scores; chrF averages precision and recall over the orders "
                    "first, then takes one F-score.")
        elif abs(got - _chrf(hyp, ref, clip=False)) <= 1e-6:
            hint = " Clip the matches: an n-gram counts at most as often as the reference has it."
        raise Wrong(f"for hyp={hyp!r}, ref={ref!r} expected {want:.4f}, got {got:.4f}.{hint}")


# Corpora for 18.2: in each, the sentences differ in length and quality, so the mean of the sentence
# scores and the score of the summed counts are different numbers.
CORPORA = [PAIRS,
           PAIRS[:2],
           [("Thank you very much.", "Thank you so much."),
            ("I do not know what he wants from us today", "I don't know what he wants."),
            ("Where is the station?", "Where is the train station?")]]


def _corpus(hyps, refs, beta: float = 2.0, spaces: bool = False) -> float:
    """Corpus chrF (0-100) from counts summed over the sentences; keyword arguments as in ``_chrf``."""
    sums = [[0, 0, 0] for _ in range(6)]                  # per order: hypothesis n-grams, reference n-grams, matches
    for hyp, ref in zip(hyps, refs):
        if not spaces:
            hyp, ref = "".join(hyp.split()), "".join(ref.split())
        for n in range(1, 7):
            h = Counter(hyp[i:i + n] for i in range(len(hyp) - n + 1))
            r = Counter(ref[i:i + n] for i in range(len(ref) - n + 1))
            sums[n - 1][0] += sum(h.values())
            sums[n - 1][1] += sum(r.values())
            sums[n - 1][2] += sum(min(c, r[g]) for g, c in h.items())
    p = sum(m / h for h, _, m in sums) / 6
    rc = sum(m / r for _, r, m in sums) / 6
    return 100 * (1 + beta ** 2) * p * rc / (beta ** 2 * p + rc) if p + rc else 0.0


@exercise("18.2")
def chrf_corpus(fn):
    from ftlib.metrics import corpus_chrf

    for corpus in CORPORA:
        hyps, refs = [h for h, _ in corpus], [r for _, r in corpus]
        want = corpus_chrf(hyps, refs)
        try:
            got = float(fn(list(hyps), list(refs)))
        except (TypeError, ValueError):
            raise Wrong("chrf_corpus(hyps, refs) should return one number, the corpus chrF from 0 to 100.") from None
        if abs(got - want) <= 1e-6:
            continue
        mean = sum(_chrf(h, r) for h, r in corpus) / len(corpus)
        hint = ""
        if abs(got - mean) <= 1e-6:
            hint = (" That is the mean of the sentence scores. Corpus chrF adds up every sentence's counts per "
                    "order first (hypothesis n-grams, reference n-grams, matches), then computes precision, "
                    "recall and the F-score once.")
        elif abs(got - want / 100) <= 1e-8:
            hint = " It is on the 0-1 scale: chrF is reported from 0 to 100."
        elif abs(got - _corpus(hyps, refs, beta=1.0)) <= 1e-6:
            hint = " That is F1 (beta = 2 is chrF's)."
        elif abs(got - _corpus(hyps, refs, spaces=True)) <= 1e-6:
            hint = " Remove the spaces first, as for one sentence."
        raise Wrong(f"for the {len(corpus)} pairs starting {corpus[0]!r} expected {want:.4f}, got {got:.4f}.{hint}")
