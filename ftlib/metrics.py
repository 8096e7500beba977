"""Evaluation metrics, written out in plain NumPy (derived in notebook 10).

Classification (checked against scikit-learn in ``tests/test_metrics.py``):

* :func:`accuracy`, :func:`confusion_matrix`, :func:`precision_recall_f1` (per class, or
  ``"macro"`` / ``"micro"`` / ``"weighted"`` averages);
* :func:`roc_curve`, :func:`auc`, :func:`roc_auc`, :func:`precision_recall_curve`,
  :func:`average_precision` -- from scores, one point per distinct threshold;
* :func:`reliability_curve`, :func:`expected_calibration_error`, :func:`fit_temperature` --
  calibration: does "90 % sure" mean right 90 % of the time?
* :func:`kfold_indices` -- the k-fold split (same folds as ``sklearn.model_selection.KFold``).

Uncertainty of a score measured on a finite test set:

* :func:`bootstrap_ci` -- percentile bootstrap interval of any metric;
* :func:`paired_bootstrap_diff` -- interval for the accuracy difference of two models
  evaluated on the *same* examples (resampling examples, keeping the pairs).

Generation:

* :func:`perplexity` -- ``exp(mean negative log-likelihood per token)``;
* :func:`corpus_bleu` -- BLEU as sacreBLEU defines it (clipped n-gram precisions summed over
  the corpus, geometric mean, corpus-level brevity penalty) with its ``13a`` and ``char``
  tokenisers; :func:`tokenize_13a`, :func:`ngram_counts`;
* :func:`corpus_chrf` -- chrF as sacreBLEU defines it (character n-gram precision and recall,
  n = 1..6, spaces removed, averaged over n, combined as an F-beta score with beta = 2; derived
  in notebook 18); :func:`char_ngram_stats`;
* :func:`chrf_stats` / :func:`chrf_from_stats` and :func:`bleu_stats` / :func:`bleu_from_stats` --
  the same scores from per-sentence counts, so a bootstrap can resample sentences and recompute the
  corpus score by adding up rows (notebook 18);
* :func:`distinct_n` -- the share of distinct n-grams among all n-grams (diversity).

Bad input (empty arrays, mismatched lengths, probabilities outside [0, 1], an unknown
average or tokeniser) raises :class:`ftlib.CourseError` with a message that says what to do.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ftlib.errors import CourseError

__all__ = ["accuracy", "confusion_matrix", "precision_recall_f1", "roc_curve", "auc", "roc_auc",
           "precision_recall_curve", "average_precision", "reliability_curve",
           "expected_calibration_error", "fit_temperature", "kfold_indices", "Interval",
           "bootstrap_ci", "paired_bootstrap_diff", "perplexity", "tokenize_13a", "ngram_counts",
           "corpus_bleu", "bleu_stats", "bleu_from_stats", "char_ngram_stats", "chrf_stats",
           "chrf_from_stats", "corpus_chrf", "distinct_n"]


# --------------------------------------------------------------------------- input checks

def _labels(y, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise CourseError(f"{what} must be a 1-D array of class indices, got shape {y.shape}. "
                          "For probabilities / logits take .argmax(-1) first.")
    if y.size == 0:
        raise CourseError(f"{what} is empty: a metric over zero examples is undefined.")
    if y.dtype.kind == "b":
        y = y.astype(int)
    if y.dtype.kind == "f":
        if not np.all(y == np.round(y)):
            raise CourseError(f"{what} holds non-integer values ({y[:3].tolist()} ...): pass class "
                              "indices 0, 1, ..., not probabilities.")
        y = y.astype(int)
    if y.dtype.kind not in "iu":
        raise CourseError(f"{what} must hold class indices (integers), got dtype {y.dtype}.")
    if y.min() < 0:
        raise CourseError(f"{what} holds a negative class index {int(y.min())}: classes are 0, 1, ...")
    return y


def _pair(y_true, y_pred, pred_name="y_pred"):
    t, p = _labels(y_true, "y_true"), _labels(y_pred, pred_name)
    if len(t) != len(p):
        raise CourseError(f"y_true has {len(t)} entries but {pred_name} has {len(p)}: one each per example.")
    return t, p


def _binary_scores(y_true, scores):
    y = _labels(y_true, "y_true")
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1 or len(s) != len(y):
        raise CourseError(f"scores must be 1-D with one score per example ({len(y)}), got shape {s.shape}. "
                          "For a (N, 2) probability matrix pass probs[:, 1] (the positive class).")
    if not np.isfinite(s).all():
        raise CourseError("scores contain NaN or inf: check the model outputs.")
    if not set(np.unique(y)) <= {0, 1}:
        raise CourseError(f"y_true must be binary (0/1) for this curve, found classes {sorted(set(y.tolist()))}. "
                          "For several classes compute it one class against the rest.")
    if y.min() == y.max():
        raise CourseError("y_true holds only one class: ROC / precision-recall need both positives and negatives.")
    return y, s


def _probs(probs, labels):
    p = np.asarray(probs, dtype=float)
    y = _labels(labels, "labels")
    if p.ndim == 1:                                  # binary: P(class 1)
        p = np.stack([1 - p, p], axis=1)
    if p.ndim != 2 or len(p) != len(y):
        raise CourseError(f"probs must be (N,) = P(class 1) or (N, C) with N = {len(y)} labels, got shape "
                          f"{np.asarray(probs).shape}.")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise CourseError("probs must be probabilities in [0, 1]; for logits apply softmax first.")
    if not np.allclose(p.sum(1), 1, atol=1e-3):
        raise CourseError("each row of probs must sum to 1 (softmax output); these do not.")
    if y.max() >= p.shape[1]:
        raise CourseError(f"label {int(y.max())} has no column in probs ({p.shape[1]} classes).")
    return p, y


# --------------------------------------------------------------------------- classification

def accuracy(y_true, y_pred) -> float:
    """Share of examples whose predicted class equals the true class."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """``C[i, j]`` = number of examples of true class ``i`` predicted as class ``j`` (sklearn's layout)."""
    t, p = _pair(y_true, y_pred)
    k = n_classes if n_classes is not None else int(max(t.max(), p.max())) + 1
    if max(t.max(), p.max()) >= k:
        raise CourseError(f"n_classes={k} but a label {int(max(t.max(), p.max()))} occurs.")
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (t, p), 1)
    return cm


def precision_recall_f1(y_true, y_pred, average: str | None = "macro", n_classes: int | None = None):
    """Precision, recall and F1 (the *harmonic* mean 2PR/(P+R)); returns ``(p, r, f1)``.

    ``average``: ``None`` -> arrays, one value per class; ``"macro"`` -> plain mean over
    classes; ``"weighted"`` -> mean weighted by each class's number of true examples
    (support); ``"micro"`` -> pool every decision first (for single-label classification
    micro P = R = F1 = accuracy); ``"binary"`` -> the values for class 1.
    A ratio 0/0 (a class never predicted, or never present) counts as 0, as in scikit-learn.
    """
    if average not in (None, "macro", "micro", "weighted", "binary"):
        raise CourseError(f"average={average!r}: use None, 'binary', 'macro', 'micro' or 'weighted'.")
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(float)
    pred_pos, true_pos = cm.sum(0).astype(float), cm.sum(1).astype(float)

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)

    if average == "micro":
        p = r = tp.sum() / cm.sum()
        return float(p), float(r), float(p)
    prec, rec = ratio(tp, pred_pos), ratio(tp, true_pos)
    f1 = ratio(2 * prec * rec, prec + rec)
    if average is None:
        return prec, rec, f1
    if average == "binary":
        if cm.shape[0] > 2:
            raise CourseError("average='binary' needs two classes; use 'macro', 'micro' or 'weighted'.")
        return float(prec[1]), float(rec[1]), float(f1[1])
    w = np.ones_like(tp) / len(tp) if average == "macro" else true_pos / true_pos.sum()
    return float(prec @ w), float(rec @ w), float(f1 @ w)


def _counts_by_threshold(y, s):
    """Thresholds (distinct scores, high to low) with true / false positives at ``score >= t``."""
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_group = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]    # ties share one threshold
    tps = np.cumsum(y)[last_of_group]
    fps = (last_of_group + 1) - tps
    return tps.astype(float), fps.astype(float), s[last_of_group]


def roc_curve(y_true, scores):
    """``(fpr, tpr, thresholds)`` with one point per distinct score, starting at (0, 0).

    Same points as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
    """
    y, s = _binary_scores(y_true, scores)
    tps, fps, thr = _counts_by_threshold(y, s)
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return fpr, tpr, np.r_[np.inf, thr]


def auc(x, y) -> float:
    """Area under a curve through the points (x, y) by the trapezoid rule (x must be monotonic)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise CourseError("auc needs two 1-D arrays of the same length, at least 2 points.")
    dx = np.diff(x)
    if (dx < 0).any() and (dx > 0).any():
        raise CourseError("x is not monotonic: sort the points by x before integrating.")
    return float(abs(np.sum(dx * (y[1:] + y[:-1]) / 2)))


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve = P(a random positive scores above a random negative), ties 1/2."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    return auc(fpr, tpr)


def precision_recall_curve(y_true, scores):
    """``(precision, recall, thresholds)``, one point per distinct score, high threshold first."""
    y, s = _binary_scores(y_true, scores)
    tps, fps, thr = _counts_by_threshold(y, s)
    return tps / (tps + fps), tps / tps[-1], thr


def average_precision(y_true, scores) -> float:
    """``AP = sum_k (R_k - R_{k-1}) P_k`` over the thresholds, high to low (no interpolation).

    The same number as ``sklearn.metrics.average_precision_score``.
    """
    prec, rec, _ = precision_recall_curve(y_true, scores)
    return float(np.sum(np.diff(np.r_[0.0, rec]) * prec))


# --------------------------------------------------------------------------- calibration

def reliability_curve(probs, labels, n_bins: int = 15) -> dict:
    """Confidence vs accuracy in ``n_bins`` equal-width bins of the top-class confidence.

    ``probs``: ``(N, C)`` class probabilities, or ``(N,)`` = P(class 1) for two classes.
    Confidence is the largest probability, the prediction its class. Bin ``k`` holds the
    confidences in ``(k/n, (k+1)/n]`` (the first also holds 0). Returns a dict of arrays of
    length ``n_bins``: ``confidence`` and ``accuracy`` (mean per bin, NaN where the bin is
    empty), ``count``, and ``edges`` (``n_bins + 1``).
    """
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise CourseError(f"n_bins must be a positive whole number, got {n_bins!r}.")
    p, y = _probs(probs, labels)
    conf, pred = p.max(1), p.argmax(1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        acc = np.bincount(b, weights=(pred == y).astype(float), minlength=n_bins) / count
    return {"confidence": mean_conf, "accuracy": acc, "count": count, "edges": edges}


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """``ECE = sum_k (n_k / N) |accuracy_k - confidence_k|`` over the bins of :func:`reliability_curve`.

    0 means "p % sure" is right p % of the time in every bin. Note that the number depends
    on ``n_bins`` (and, with few examples, is biased upwards by noise).
    """
    rc = reliability_curve(probs, labels, n_bins)
    full = rc["count"] > 0
    gaps = np.abs(rc["accuracy"][full] - rc["confidence"][full])
    return float(np.sum(rc["count"][full] / rc["count"].sum() * gaps))


def fit_temperature(logits, labels, bounds=(0.05, 20.0)) -> float:
    """The temperature ``T`` that minimises the mean NLL of ``softmax(logits / T)`` (temperature scaling).

    Fit it on held-out (validation) logits; it rescales confidence without changing any
    prediction (argmax is unchanged for T > 0).
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=float)
    y = _labels(labels, "labels")
    if z.ndim != 2 or len(z) != len(y):
        raise CourseError(f"logits must be (N, C) with N = {len(y)}, got shape {z.shape}.")

    def nll(log_t):
        s = z / math.exp(log_t)
        s = s - s.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(1)) - s[np.arange(len(y)), y]))

    res = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-6})
    return float(math.exp(res.x))


def kfold_indices(n: int, k: int = 5, shuffle: bool = False, seed: int = 0):
    """``[(train_idx, test_idx), ...]`` for k folds of ``n`` examples.

    Every example is in exactly one test fold; the first ``n % k`` folds get one extra
    example (sklearn's ``KFold`` does the same, so without ``shuffle`` the folds are identical).
    """
    if not (isinstance(k, (int, np.integer)) and 2 <= k <= n):
        raise CourseError(f"k must be a whole number with 2 <= k <= n ({n}), got {k!r}.")
    idx = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    folds, start = [], 0
    for size in sizes:
        test = idx[start:start + size]
        folds.append((np.concatenate([idx[:start], idx[start + size:]]), test))
        start += size
    return folds


# --------------------------------------------------------------------------- bootstrap

@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval (bootstrap, or Student-t over seeds); unpacks as ``est, low, high``."""
    estimate: float
    low: float
    high: float
    level: float
    samples: np.ndarray = field(repr=False, compare=False)

    def __iter__(self):
        return iter((self.estimate, self.low, self.high))

    def __str__(self):
        return f"{self.estimate:.4f}  [{self.low:.4f}, {self.high:.4f}]  ({self.level:.0%} interval)"


def _check_alpha(alpha, n_boot):
    if not 0 < alpha < 1:
        raise CourseError(f"alpha={alpha} must lie between 0 and 1 (0.05 for a 95 % interval).")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 10:
        raise CourseError(f"n_boot={n_boot!r}: use a whole number, at least 10 (1000 or more for a report).")


def bootstrap_ci(metric_fn, *arrays, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``metric_fn(*arrays)``.

    Each of ``n_boot`` rounds draws ``N`` example indices with replacement and evaluates
    ``metric_fn`` on the same rows of every array (so pairs such as labels and predictions
    stay together). The interval is the ``alpha/2`` and ``1 - alpha/2`` quantiles of those
    values; the estimate is the metric on the data as given.
    """
    _check_alpha(alpha, n_boot)
    if not arrays:
        raise CourseError("bootstrap_ci needs at least one array after the metric function.")
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise CourseError(f"the arrays must be non-empty and of equal length, got {[len(a) for a in arrays]}.")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        i = rng.integers(0, n, n)
        stats[b] = metric_fn(*(a[i] for a in arrays))
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return Interval(float(metric_fn(*arrays)), float(low), float(high), 1 - alpha, stats)


def paired_bootstrap_diff(correct_a, correct_b, n_boot: int = 1000, alpha: float = 0.05,
                          seed: int = 0) -> Interval:
    """Bootstrap interval of ``accuracy(A) - accuracy(B)`` on the same test examples.

    ``correct_a`` / ``correct_b``: one 0/1 (or bool) per example, whether model A / B got it
    right, in the same order. Resampling *examples* keeps each pair together, so the
    interval reflects how often the two models disagree, not the two accuracies' separate
    noise. An interval that contains 0 means this test set cannot tell the two apart.
    """
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise CourseError(f"correct_a and correct_b must be 1-D, non-empty and of equal length (one entry "
                          f"per test example), got shapes {a.shape} and {b.shape}.")
    if not np.isin(a, (0, 1)).all() or not np.isin(b, (0, 1)).all():
        raise CourseError("correct_a / correct_b must hold 0/1 or True/False: "
                          "(predictions == labels) for each model.")
    return bootstrap_ci(lambda x, y: x.mean() - y.mean(), a, b, n_boot=n_boot, alpha=alpha, seed=seed)


def seed_interval(values, alpha: float = 0.05) -> Interval:
    """Student-t interval of the mean of one number per seed (a few independent runs).

    ``values``: e.g. accuracy(method) - accuracy(baseline), one per seed, the seed changing what
    the runs really vary (the data drawn, the initialisation, the order). With k seeds the
    interval is ``mean +- t(1 - alpha/2, k-1) * sd / sqrt(k)``: with 5 seeds t is 2.78, not the
    normal 1.96, so a z-interval would claim more than 5 runs can show. ``samples`` holds the values.
    """
    from scipy import stats             # a scikit-learn dependency; imported when used

    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) < 2 or not np.isfinite(v).all():
        raise CourseError(f"seed_interval needs one finite number per seed, at least 2 seeds; got shape {v.shape}"
                          + ("" if v.ndim != 1 or len(v) < 2 else " with a NaN or inf") + ".")
    _check_alpha(alpha, 1000)
    half = stats.t.ppf(1 - alpha / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return Interval(float(v.mean()), float(v.mean() - half), float(v.mean() + half), 1 - alpha, v)


# --------------------------------------------------------------------------- generation

def perplexity(mean_nll: float) -> float:
    """``exp(mean_nll)``: the perplexity of a model whose mean negative log-likelihood per token,
    in nats (natural log, what ``F.cross_entropy`` returns), is ``mean_nll``.

    A uniform guess over ``V`` tokens has NLL ``log V`` and perplexity ``V``.
    """
    x = float(mean_nll)
    if not math.isfinite(x) or x < 0:
        raise CourseError(f"mean_nll={mean_nll!r}: a mean negative log-likelihood is a finite number >= 0 "
                          "(in nats; if you have bits, multiply by log(2) first).")
    return math.exp(x)


_13A_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),   # punctuation and symbols
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),                 # . and , unless after a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),                 # . and , unless before a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),                      # - after a digit
]


def tokenize_13a(line: str) -> list[str]:
    """The ``13a`` tokeniser of mteval-v13a.pl, as sacreBLEU applies it by default."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&")
                .replace("&lt;", "<").replace("&gt;", ">"))
    line = f" {line} "
    for pattern, repl in _13A_RULES:
        line = pattern.sub(repl, line)
    return line.split()


def _tokenize(line: str, tokenize: str) -> list[str]:
    if tokenize == "13a":
        return tokenize_13a(line)
    if tokenize == "char":
        return [c for c in line if not c.isspace()]
    return line.split()


def ngram_counts(tokens, n: int) -> Counter:
    """How often each n-gram (a tuple of ``n`` tokens) occurs in ``tokens``."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _bleu_from_counts(correct, total, sys_len: int, ref_len: int, smooth: bool):
    """``(score, precisions, bp)`` from corpus counts: clipped matches and hypothesis n-grams per order,
    and the two lengths (:func:`corpus_bleu` and :func:`bleu_from_stats` share it)."""
    max_n = len(correct)
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0)
    precisions = [0.0] * max_n
    zeros = 0
    for n in range(max_n):
        if total[n] == 0:
            break
        if correct[n] > 0:
            precisions[n] = correct[n] / total[n]
        elif smooth:
            zeros += 1
            precisions[n] = 1.0 / (2 ** zeros * total[n])
    if any(correct) and all(p > 0 for p in precisions):
        score = 100.0 * bp * math.exp(sum(math.log(p) for p in precisions) / max_n)
    else:
        score = 0.0
    return score, precisions, bp


def corpus_bleu(hypotheses, references, max_n: int = 4, tokenize: str = "13a", smooth: bool = False,
                lowercase: bool = False, return_details: bool = False):
    """Corpus BLEU (0-100) as sacreBLEU computes it.

    ``hypotheses``: one string per segment. ``references``: one string per segment, or one
    *list* of reference strings per segment (``references[i]`` belongs to
    ``hypotheses[i]``; note that sacreBLEU's own API takes the transpose, one list per
    reference *set*). ``tokenize``: ``"13a"`` (sacreBLEU's default, for English),
    ``"char"`` (every non-space character is a token: for Chinese / Japanese) or
    ``"none"`` (split on spaces only).

    Over the whole corpus: for each n = 1..max_n add up the *clipped* n-gram matches (an
    n-gram counts at most as often as in the reference that has it most) and the number of
    hypothesis n-grams; ``p_n`` = matches / total. The reference length of a segment is
    that of the reference closest in length (the shorter one on a tie). Then
    ``BLEU = 100 * BP * exp(mean_n log p_n)`` with brevity penalty ``BP = exp(1 - r/c)`` if the
    hypotheses' total length ``c`` is shorter than the references' ``r``, else 1.

    ``smooth=False`` is sacreBLEU's ``smooth_method="none"``: any ``p_n = 0`` makes BLEU 0.
    ``smooth=True`` is its default ``"exp"``: the k-th zero precision becomes ``1 / (2^k * total_n)``.
    (So ``sacrebleu.corpus_bleu(hyps, [refs]).score`` equals ``corpus_bleu(hyps, refs, smooth=True)``.)
    ``return_details=True`` returns a dict with the score, precisions, bp, lengths and counts.
    """
    if tokenize not in ("13a", "char", "none"):
        raise CourseError(f"tokenize={tokenize!r}: use '13a' (English), 'char' (Chinese) or 'none'.")
    if not isinstance(max_n, (int, np.integer)) or max_n < 1:
        raise CourseError(f"max_n must be a positive whole number, got {max_n!r}.")
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise CourseError("corpus_bleu takes lists of sentences: wrap a single sentence as [sentence] "
                          "(and its reference as [reference]).")
    hypotheses, references = list(hypotheses), list(references)
    if not hypotheses:
        raise CourseError("corpus_bleu got no hypotheses.")
    if len(hypotheses) != len(references):
        raise CourseError(f"{len(hypotheses)} hypotheses but {len(references)} references: give one "
                          "reference (or one list of references) per hypothesis.")
    correct, total = [0] * max_n, [0] * max_n
    sys_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs or not all(isinstance(r, str) for r in refs) or not isinstance(hyp, str):
            raise CourseError("every hypothesis must be a string and every reference a string or a "
                              "non-empty list of strings.")
        norm = (lambda s: s.lower()) if lowercase else (lambda s: s)
        h = _tokenize(norm(hyp), tokenize)
        rs = [_tokenize(norm(r), tokenize) for r in refs]
        sys_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]   # closest, shorter on a tie
        for n in range(1, max_n + 1):
            hyp_counts = ngram_counts(h, n)
            max_ref = Counter()
            for r in rs:
                max_ref |= ngram_counts(r, n)                        # element-wise max over references
            correct[n - 1] += sum(min(c, max_ref[g]) for g, c in hyp_counts.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    score, precisions, bp = _bleu_from_counts(correct, total, sys_len, ref_len, smooth)
    if return_details:
        return {"score": score, "precisions": [100 * p for p in precisions], "bp": bp,
                "sys_len": sys_len, "ref_len": ref_len, "correct": correct, "total": total}
    return score


def char_ngram_stats(hypothesis: str, reference: str, max_n: int = 6, whitespace: bool = False) -> list:
    """``[(hyp_ngrams, ref_ngrams, matches), ...]`` for character n = 1..max_n of one sentence pair.

    Spaces are removed first (``whitespace=False``, chrF's default). ``matches`` counts each
    n-gram at most as often as the reference has it (clipped, as in BLEU). As in sacreBLEU,
    the hypothesis n-grams of an order the reference is too short to have are not counted.
    """
    if not isinstance(hypothesis, str) or not isinstance(reference, str):
        raise CourseError("char_ngram_stats takes two strings: one hypothesis and one reference.")
    if not whitespace:
        hypothesis, reference = "".join(hypothesis.split()), "".join(reference.split())
    stats = []
    for n in range(1, max_n + 1):
        h, r = ngram_counts(hypothesis, n), ngram_counts(reference, n)
        matches = sum(min(c, r[g]) for g, c in h.items())
        stats.append((sum(h.values()) if r else 0, sum(r.values()), matches))
    return stats


def chrf_from_stats(stats, beta: float = 2.0) -> float:
    """chrF (0-100) from ``(hyp_ngrams, ref_ngrams, matches)`` counts per order: a ``(max_n, 3)``
    array for the corpus, or ``(N, max_n, 3)`` per sentence (from :func:`chrf_stats`), summed first.

    Precision and recall are averaged over the orders that have n-grams on both sides, then
    combined as ``100 * (1 + beta^2) P R / (beta^2 P + R)``. Summing the rows of a resample of
    sentences and calling this again is how a bootstrap recomputes the corpus score.
    """
    st = np.asarray(stats, dtype=float)
    if st.ndim == 3:
        st = st.sum(0)
    if st.ndim != 2 or st.shape[1] != 3:
        raise CourseError(f"stats must be (max_n, 3) or (N, max_n, 3) counts, got shape {np.shape(stats)}.")
    both = (st[:, 0] > 0) & (st[:, 1] > 0)
    if not both.any():
        return 0.0
    p = float(np.mean(st[both, 2] / st[both, 0]))
    r = float(np.mean(st[both, 2] / st[both, 1]))
    if p + r == 0:
        return 0.0
    return 100.0 * (1 + beta ** 2) * p * r / (beta ** 2 * p + r)


def _check_corpus(hypotheses, references, name):
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise CourseError(f"{name} takes lists of sentences: wrap a single sentence as [sentence] "
                          "(and its reference as [reference]).")
    hypotheses, references = list(hypotheses), list(references)
    if not hypotheses:
        raise CourseError(f"{name} got no hypotheses.")
    if len(hypotheses) != len(references):
        raise CourseError(f"{len(hypotheses)} hypotheses but {len(references)} references: give one "
                          "reference (or one list of references) per hypothesis.")
    out = []
    for hyp, refs in zip(hypotheses, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs or not all(isinstance(r, str) for r in refs) or not isinstance(hyp, str):
            raise CourseError("every hypothesis must be a string and every reference a string or a "
                              "non-empty list of strings.")
        out.append((hyp, refs))
    return out


def chrf_stats(hypotheses, references, max_n: int = 6, beta: float = 2.0, whitespace: bool = False) -> np.ndarray:
    """Per-sentence chrF counts, an int array ``(N, max_n, 3)``: hypothesis n-grams, reference
    n-grams and clipped matches for n = 1..max_n (:func:`char_ngram_stats`). With several
    references a sentence keeps the counts of the one whose own chrF is highest (the first on a tie),
    as sacreBLEU does."""
    if not isinstance(max_n, (int, np.integer)) or max_n < 1:
        raise CourseError(f"max_n must be a positive whole number, got {max_n!r}.")
    if not (isinstance(beta, (int, float, np.number)) and beta > 0):
        raise CourseError(f"beta must be a positive number (chrF uses 2), got {beta!r}.")
    rows = []
    for hyp, refs in _check_corpus(hypotheses, references, "chrf_stats"):
        candidates = [char_ngram_stats(hyp, r, max_n, whitespace) for r in refs]
        rows.append(max(candidates, key=lambda st: chrf_from_stats(st, beta)))
    return np.array(rows, dtype=np.int64).reshape(len(rows), max_n, 3)


def corpus_chrf(hypotheses, references, max_n: int = 6, beta: float = 2.0, whitespace: bool = False,
                return_details: bool = False):
    """Corpus chrF (0-100) as sacreBLEU computes it (``sacrebleu.corpus_chrf``, its defaults).

    ``hypotheses``: one string per segment; ``references``: one string (or one list of strings)
    per segment, as for :func:`corpus_bleu`. For each character n-gram order n = 1..max_n
    (spaces removed), add up over the corpus the hypothesis n-grams, the reference n-grams and
    the clipped matches (:func:`chrf_stats`); ``P_n`` = matches / hypothesis n-grams,
    ``R_n`` = matches / reference n-grams. Average ``P_n`` and ``R_n`` over the orders (those
    with n-grams on both sides) and combine them as
    ``chrF = 100 * (1 + beta^2) P R / (beta^2 P + R)``: beta = 2 weighs recall twice as much as
    precision (:func:`chrf_from_stats`). ``whitespace=True`` keeps the spaces (sacreBLEU's
    ``whitespace=True``, not its default). ``return_details=True`` returns a dict with the
    score, P and R per order and the summed counts.
    """
    total = chrf_stats(hypotheses, references, max_n, beta, whitespace).sum(0)
    score = chrf_from_stats(total, beta)
    if return_details:
        h, r, m = total.T
        return {"score": score, "precisions": [float(m_ / h_) if h_ else float("nan") for h_, m_ in zip(h, m)],
                "recalls": [float(m_ / r_) if r_ else float("nan") for r_, m_ in zip(r, m)],
                "hyp_ngrams": h.tolist(), "ref_ngrams": r.tolist(), "matches": m.tolist()}
    return score


def bleu_stats(hypotheses, references, max_n: int = 4, tokenize: str = "13a", lowercase: bool = False) -> np.ndarray:
    """Per-sentence BLEU counts, an int array ``(N, 2 * max_n + 2)``: clipped matches for n = 1..max_n,
    hypothesis n-grams for n = 1..max_n, hypothesis length, reference length (the closest reference's),
    each as :func:`corpus_bleu` adds them up. :func:`bleu_from_stats` turns their sum into BLEU."""
    rows = []
    for hyp, refs in _check_corpus(hypotheses, references, "bleu_stats"):
        d = corpus_bleu([hyp], [refs], max_n=max_n, tokenize=tokenize, lowercase=lowercase, return_details=True)
        rows.append(d["correct"] + d["total"] + [d["sys_len"], d["ref_len"]])
    return np.array(rows, dtype=np.int64).reshape(len(rows), 2 * max_n + 2)


def bleu_from_stats(stats, smooth: bool = False) -> float:
    """BLEU (0-100) from :func:`bleu_stats` rows (``(N, 2 max_n + 2)``, summed first) or their sum:
    the same number as :func:`corpus_bleu` on those sentences, without re-tokenising them."""
    st = np.asarray(stats, dtype=np.int64)
    if st.ndim == 2:
        st = st.sum(0)
    if st.ndim != 1 or len(st) < 4 or len(st) % 2:
        raise CourseError(f"stats must be bleu_stats rows (N, 2 max_n + 2) or their sum, got shape {np.shape(stats)}.")
    max_n = (len(st) - 2) // 2
    correct, total = [int(c) for c in st[:max_n]], [int(t) for t in st[max_n:2 * max_n]]
    return _bleu_from_counts(correct, total, int(st[-2]), int(st[-1]), smooth)[0]


def distinct_n(texts, n: int = 2, tokenize: str = "none") -> float:
    """Distinct n-grams / all n-grams over ``texts`` (1.0: nothing repeats; near 0: one phrase on loop)."""
    if isinstance(texts, str):
        texts = [texts]
    if tokenize not in ("13a", "char", "none"):
        raise CourseError(f"tokenize={tokenize!r}: use '13a', 'char' or 'none'.")
    counts = Counter()
    for t in texts:
        counts.update(ngram_counts(_tokenize(t, tokenize), n))
    if not counts:
        raise CourseError(f"the texts hold no {n}-grams (too short or empty).")
    return len(counts) / sum(counts.values())
