"""ftlib.metrics against scikit-learn (where it has the metric) and hand-computed cases."""
import math

import numpy as np
import pytest
import sklearn.metrics as skm
from sklearn.model_selection import KFold

from ftlib import CourseError
from ftlib import metrics as M


@pytest.fixture
def multiclass():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 4, 300))
    pred[pred == 3] = 2                       # class 3 is never predicted: 0/0 precision
    return y, pred


@pytest.fixture
def binary_scores():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.normal(y * 1.0, 1.0), 1)     # rounded: many tied scores
    return y, s


# --------------------------------------------------------------------------- classification

def test_accuracy_and_confusion_matrix_match_sklearn(multiclass):
    y, p = multiclass
    assert M.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
    np.testing.assert_array_equal(M.confusion_matrix(y, p), skm.confusion_matrix(y, p))
    np.testing.assert_array_equal(M.confusion_matrix([0, 0], [0, 0], n_classes=2), [[2, 0], [0, 0]])


@pytest.mark.parametrize("average", [None, "macro", "micro", "weighted"])
def test_precision_recall_f1_match_sklearn(multiclass, average):
    y, p = multiclass
    ours = M.precision_recall_f1(y, p, average=average)
    theirs = skm.precision_recall_fscore_support(y, p, average=average, zero_division=0)[:3]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_f1_is_harmonic_mean_hand_case():
    # E037's example: y_true=[1,1,1,0*7], y_pred=[1,0*9]: P=1, R=1/3, F1=2PR/(P+R)=0.5
    y = [1, 1, 1] + [0] * 7
    p = [1] + [0] * 9
    prec, rec, f1 = M.precision_recall_f1(y, p, average="binary")
    assert (prec, rec) == (1.0, pytest.approx(1 / 3))
    assert f1 == pytest.approx(0.5)
    assert M.accuracy(y, p) == pytest.approx(0.8)
    # micro-averaged P = R = F1 = accuracy for single-label classification
    assert M.precision_recall_f1(y, p, average="micro") == pytest.approx((0.8, 0.8, 0.8))


def test_roc_and_auc_match_sklearn(binary_scores):
    y, s = binary_scores
    fpr, tpr, thr = M.roc_curve(y, s)
    sfpr, stpr, sthr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sfpr)
    np.testing.assert_allclose(tpr, stpr)
    np.testing.assert_allclose(thr[1:], sthr[1:])
    assert M.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert M.auc(fpr, tpr) == pytest.approx(skm.auc(fpr, tpr))


def test_auc_is_probability_positive_beats_negative(binary_scores):
    y, s = binary_scores
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    pairwise = np.mean((pos > neg) + 0.5 * (pos == neg))
    assert M.roc_auc(y, s) == pytest.approx(pairwise)
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert M.roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0


def test_average_precision_matches_sklearn(binary_scores):
    y, s = binary_scores
    assert M.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    # hand case: ranking 1,0,1 -> AP = (1/2)*1 + (1/2)*(2/3)
    assert M.average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(0.5 + 1 / 3)
    prec, rec, _ = M.precision_recall_curve(y, s)
    sp, sr, _ = skm.precision_recall_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(prec, sp[:-1][::-1])
    np.testing.assert_allclose(rec, sr[:-1][::-1])


# --------------------------------------------------------------------------- calibration

def test_ece_hand_case():
    # confidences (top-class probabilities) 0.93, 0.82, 0.62, 0.55 (mid-bin values, no ties with edges)
    probs = np.array([[0.07, 0.93], [0.82, 0.18], [0.62, 0.38], [0.45, 0.55]])
    labels = np.array([1, 1, 0, 0])          # right, wrong, right, wrong
    rc = M.reliability_curve(probs, labels, n_bins=2)
    np.testing.assert_array_equal(rc["count"], [0, 4])
    assert rc["confidence"][1] == pytest.approx((0.93 + 0.82 + 0.62 + 0.55) / 4)
    assert rc["accuracy"][1] == pytest.approx(0.5)
    assert M.expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.73 - 0.5)
    rc = M.reliability_curve(probs, labels, n_bins=10)
    np.testing.assert_array_equal(rc["count"], [0, 0, 0, 0, 0, 1, 1, 0, 1, 1])
    assert M.expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(
        (abs(1 - 0.93) + abs(0 - 0.82) + abs(1 - 0.62) + abs(0 - 0.55)) / 4)


def test_ece_weights_each_bin_by_its_share_of_examples():
    # three right at 0.95 (gap 0.05), one wrong at 0.65 (gap 0.65): bins of unequal size
    p1 = np.array([0.95, 0.95, 0.95, 0.65])
    y = np.array([1, 1, 1, 0])
    assert M.expected_calibration_error(p1, y, n_bins=10) == pytest.approx((3 * 0.05 + 1 * 0.65) / 4)   # 0.2
    assert M.expected_calibration_error(p1, y, n_bins=10) != pytest.approx((0.05 + 0.65) / 2)          # not 0.35


def test_ece_zero_when_perfectly_calibrated_and_binary_vector_form():
    # 10 examples at confidence 0.8, 8 of them right
    p1 = np.full(10, 0.8)
    y = np.array([1] * 8 + [0] * 2)
    assert M.expected_calibration_error(p1, y) == pytest.approx(0.0, abs=1e-12)
    assert M.expected_calibration_error(np.stack([1 - p1, p1], 1), y) == pytest.approx(0.0, abs=1e-12)


def test_reliability_curve_matches_sklearn_calibration_curve_for_confident_positives():
    # when every P(1) >= 0.5 the top class is 1, so "accuracy" = fraction of positives
    from sklearn.calibration import calibration_curve
    rng = np.random.default_rng(3)
    p = rng.uniform(0.5, 1.0, 500)
    y = (rng.random(500) < p).astype(int)
    rc = M.reliability_curve(p, y, n_bins=10)
    frac, mean_pred = calibration_curve(y, p, n_bins=10)
    full = rc["count"] > 0
    np.testing.assert_allclose(rc["accuracy"][full], frac)
    np.testing.assert_allclose(rc["confidence"][full], mean_pred)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, (4000, 3))
    probs = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in probs])
    t = M.fit_temperature(true_logits * 3.0, y)          # logits 3x too sharp
    assert t == pytest.approx(3.0, rel=0.1)
    # it minimises the NLL: nearby temperatures are worse
    import torch
    import torch.nn.functional as F
    z, yy = torch.tensor(true_logits * 3.0), torch.tensor(y)
    nll = lambda T: F.cross_entropy(z / T, yy).item()  # noqa: E731
    assert nll(t) <= min(nll(t * 0.9), nll(t * 1.1))


def test_kfold_matches_sklearn():
    for n, k in [(10, 3), (23, 5), (5, 5)]:
        ours = M.kfold_indices(n, k)
        theirs = list(KFold(k).split(np.zeros(n)))
        for (a, b), (c, d) in zip(ours, theirs):
            np.testing.assert_array_equal(np.sort(a), c)
            np.testing.assert_array_equal(b, d)
    folds = M.kfold_indices(17, 4, shuffle=True, seed=1)
    assert sorted(np.concatenate([t for _, t in folds]).tolist()) == list(range(17))


# --------------------------------------------------------------------------- bootstrap

def test_bootstrap_ci_close_to_scipy_and_normal_theory():
    from scipy.stats import bootstrap
    rng = np.random.default_rng(0)
    correct = (rng.random(500) < 0.8).astype(float)
    ci = M.bootstrap_ci(np.mean, correct, n_boot=4000, seed=0)
    ref = bootstrap((correct,), np.mean, n_resamples=4000, method="percentile",
                    random_state=np.random.default_rng(1)).confidence_interval
    assert ci.estimate == pytest.approx(correct.mean())
    assert ci.low == pytest.approx(ref.low, abs=0.006)
    assert ci.high == pytest.approx(ref.high, abs=0.006)
    half = 1.96 * math.sqrt(ci.estimate * (1 - ci.estimate) / 500)
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.1)
    est, low, high = ci                     # unpacks
    assert low < est < high


def test_bootstrap_keeps_rows_together_and_is_seeded():
    y = np.array([0, 1] * 50)
    ci = M.bootstrap_ci(M.accuracy, y, y, n_boot=200)
    assert (ci.low, ci.high) == (1.0, 1.0)           # predictions always equal labels
    a = M.bootstrap_ci(np.mean, np.arange(20.0), seed=3)
    b = M.bootstrap_ci(np.mean, np.arange(20.0), seed=3)
    assert (a.low, a.high) == (b.low, b.high)


def test_paired_bootstrap_is_narrower_than_unpaired():
    rng = np.random.default_rng(0)
    a = rng.random(800) < 0.85
    b = a.copy()
    flip = rng.choice(800, 30, replace=False)          # the models disagree on 30 examples
    b[flip] = ~b[flip]
    d = M.paired_bootstrap_diff(a, b, n_boot=2000)
    assert d.estimate == pytest.approx(a.mean() - b.mean())
    ia, ib = M.bootstrap_ci(np.mean, a, n_boot=2000), M.bootstrap_ci(np.mean, b, n_boot=2000, seed=1)
    unpaired_half = math.hypot(ia.high - ia.low, ib.high - ib.low) / 2
    assert (d.high - d.low) / 2 < 0.6 * unpaired_half
    same = M.paired_bootstrap_diff(a, a)
    assert (same.low, same.high) == (0.0, 0.0)


# --------------------------------------------------------------------------- generation

def test_perplexity():
    assert M.perplexity(0.0) == 1.0
    assert M.perplexity(math.log(50257)) == pytest.approx(50257)
    import torch
    import torch.nn.functional as F
    logits, target = torch.randn(50, 7, generator=torch.Generator().manual_seed(0)), torch.arange(50) % 7
    nll = F.cross_entropy(logits, target).item()
    probs = logits.softmax(-1)[torch.arange(50), target].double()
    # perplexity = geometric mean of 1/p(target)
    assert M.perplexity(nll) == pytest.approx(float(torch.exp(-probs.log().mean())), rel=1e-5)
    with pytest.raises(CourseError):
        M.perplexity(-1.0)


def test_tokenize_13a():
    assert M.tokenize_13a("Hello, world! It costs $3.50 (really).") == \
        ["Hello", ",", "world", "!", "It", "costs", "$", "3.50", "(", "really", ")", "."]
    assert M.tokenize_13a("1-2 a-b &amp;") == ["1", "-", "2", "a-b", "&"]


def test_bleu_hand_computed():
    hyp = "the cat sat on the mat"
    ref = "the cat is on the mat"
    # unigrams 5/6 (sat), bigrams 3/5, trigrams 1/4, 4-grams 0/3 -> unsmoothed 0
    d = M.corpus_bleu([hyp], [ref], tokenize="none", return_details=True)
    assert d["correct"] == [5, 3, 1, 0] and d["total"] == [6, 5, 4, 3]
    assert d["score"] == 0.0
    bleu3 = M.corpus_bleu([hyp], [ref], max_n=3, tokenize="none")
    assert bleu3 == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3))
    # exp smoothing: the first zero precision becomes 1 / (2 * total)
    smoothed = M.corpus_bleu([hyp], [ref], tokenize="none", smooth=True)
    assert smoothed == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** (1 / 4))
    assert M.corpus_bleu([ref], [ref]) == pytest.approx(100.0)


def test_bleu_clipping_brevity_and_multiple_references():
    # "the the the the" vs "the cat": 'the' counts at most once -> p1 = 1/4
    d = M.corpus_bleu(["the the the the"], ["the cat"], max_n=1, tokenize="none", return_details=True)
    assert d["correct"][0] == 1 and d["score"] == pytest.approx(25.0)
    # a short hypothesis: all n-grams match but BP = exp(1 - 6/3)
    short = M.corpus_bleu(["the cat sat"], ["the cat sat on the mat"], max_n=3, tokenize="none")
    assert short == pytest.approx(100 * math.exp(1 - 6 / 3))
    # the closest reference length (shorter on a tie) is used, and clipping takes the max over refs
    d = M.corpus_bleu(["a a b"], [["a b", "a a c d"]], max_n=1, tokenize="none", return_details=True)
    assert d["ref_len"] == 2 and d["correct"][0] == 3
    # corpus level: statistics are summed before dividing (not a mean of sentence scores)
    d2 = M.corpus_bleu(["a b", "c d e f"], ["a b", "c x y z"], max_n=1, tokenize="none", return_details=True)
    assert d2["score"] == pytest.approx(100 * 3 / 6)


def test_bleu_char_tokenisation_for_chinese():
    d = M.corpus_bleu(["我 喜欢猫。"], ["我喜欢狗。"], max_n=2, tokenize="char", return_details=True)
    assert d["total"] == [5, 4] and d["correct"] == [4, 2]
    assert d["score"] == pytest.approx(100 * math.sqrt(4 / 5 * 2 / 4))
    # without char tokenisation a Chinese sentence is one "word"
    assert M.corpus_bleu(["我喜欢猫。"], ["我喜欢狗。"], tokenize="13a", smooth=True) < 10


def test_bleu_matches_sacrebleu():
    import sacrebleu                      # a test dependency: this comparison must run, never skip
    import random
    rng = random.Random(0)
    words = 'the a cat dog sat on mat , . 1-2 3.5 it\'s "q" (x) & The 猫 坐 垫子 。'.split()
    for _ in range(100):
        nseg, nref = rng.randint(1, 5), rng.randint(1, 3)
        hyps = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 10))) for _ in range(nseg)]
        refs = [[" ".join(rng.choice(words) for _ in range(rng.randint(1, 10))) for _ in range(nref)]
                for _ in range(nseg)]
        streams = [list(s) for s in zip(*refs)]
        for tok in ("13a", "char", "none"):
            for smooth, method in ((False, "none"), (True, "exp")):
                want = sacrebleu.corpus_bleu(hyps, streams, tokenize=tok, smooth_method=method).score
                assert M.corpus_bleu(hyps, refs, tokenize=tok, smooth=smooth) == pytest.approx(want, abs=1e-9)


def test_distinct_n():
    assert M.distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert M.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)     # (a b), (b a), (a b)
    assert M.distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)



# --------------------------------------------------------------------------- chrF (notebook 18)

def test_chrf_hand_computed():
    # "ab c" vs "abc": spaces go, so the two are the same 3 characters: chrF 100
    assert M.corpus_chrf(["ab c"], ["abc"]) == pytest.approx(100.0)
    # "ab" vs "abc": orders 1 and 2 only (the hypothesis has no 3-gram); P = 1, R = (2/3 + 1/2) / 2
    d = M.corpus_chrf(["ab"], ["abc"], return_details=True)
    assert d["hyp_ngrams"][:3] == [2, 1, 0] and d["matches"][:3] == [2, 1, 0]
    p, r = 1.0, (2 / 3 + 1 / 2) / 2
    assert d["score"] == pytest.approx(100 * 5 * p * r / (4 * p + r))
    # clipped matches: "aaaa" against "a" matches one unigram, and the reference has no 2-gram,
    # so the hypothesis's 2..6-grams are not counted (sacreBLEU's rule)
    assert M.char_ngram_stats("aaaa", "a", max_n=3) == [(4, 1, 1), (0, 0, 0), (0, 0, 0)]
    assert M.corpus_chrf([""], ["abc"]) == 0.0


def _random_corpora(seed, n=60):
    import random
    rng = random.Random(seed)
    words = "the a cat dog sat on mat is I you Tom's don't . , ? ! 我 喜欢 猫 。 Hi".split()
    for _ in range(n):
        nseg, nref = rng.randint(1, 6), rng.randint(1, 3)
        hyps = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 10))) for _ in range(nseg)]
        refs = [[" ".join(rng.choice(words) for _ in range(rng.randint(1, 10))) for _ in range(nref)]
                for _ in range(nseg)]
        yield hyps, refs


def test_chrf_matches_sacrebleu_and_a_wrong_variant_does_not():
    import sacrebleu                      # a test dependency: this comparison must run, never skip
    cases = [(["the cat sat on the mat"], [["the cat is on the mat"]]),
             (["Hi.", "I like cats."], [["Hello."], ["I love cats."]]),
             (["", "Tom is here"], [["Tom left."], ["Tom is here."]])] + list(_random_corpora(0))
    beta1 = no_strip = 0
    for hyps, refs in cases:
        streams = [list(s) for s in zip(*refs)]
        want = sacrebleu.corpus_chrf(hyps, streams).score
        assert M.corpus_chrf(hyps, refs) == pytest.approx(want, abs=1e-9)
        # the usual wrong variants give a different number: F1 instead of F2, spaces kept
        beta1 += abs(M.corpus_chrf(hyps, refs, beta=1) - want) > 1e-6
        no_strip += abs(M.corpus_chrf(hyps, refs, whitespace=True) - want) > 1e-6
    assert beta1 > len(cases) // 2 and no_strip > len(cases) // 2
    # on one fixed pair, exactly: F2 weighs recall, F1 does not; spaces add n-grams across words
    h, r = ["the cat sat on the mat"], ["the cat is on the mat"]
    assert M.corpus_chrf(h, r, beta=1) != pytest.approx(M.corpus_chrf(h, r), abs=1e-3)
    assert M.corpus_chrf(h, r, whitespace=True) != pytest.approx(M.corpus_chrf(h, r), abs=1e-3)
    assert M.corpus_chrf(h, r, whitespace=True) == pytest.approx(
        sacrebleu.metrics.CHRF(whitespace=True).corpus_score(h, [r]).score, abs=1e-9)


def test_sentence_stats_give_the_corpus_scores_and_a_fast_bootstrap():
    """A corpus metric's interval resamples sentences and recomputes the corpus score; summing
    per-sentence counts gives exactly the score of re-scoring the resampled sentences."""
    for hyps, refs in _random_corpora(1, n=30):
        for tok in ("13a", "char"):
            for smooth in (False, True):
                assert M.bleu_from_stats(M.bleu_stats(hyps, refs, tokenize=tok), smooth=smooth) == pytest.approx(
                    M.corpus_bleu(hyps, refs, tokenize=tok, smooth=smooth), abs=1e-9)
        assert M.chrf_from_stats(M.chrf_stats(hyps, refs)) == pytest.approx(M.corpus_chrf(hyps, refs), abs=1e-9)
    hyps = ["the cat sat", "a dog", "I like tea .", "Tom is here", "no"]
    refs = ["the cat sat down", "the dog", "I like tea .", "Tom was here", "yes"]
    stats = M.chrf_stats(hyps, refs)
    assert stats.shape == (5, 6, 3)
    slow = M.bootstrap_ci(lambda h, r: M.corpus_chrf(list(h), list(r)), np.array(hyps), np.array(refs),
                          n_boot=200, seed=0)
    fast = M.bootstrap_ci(M.chrf_from_stats, stats, n_boot=200, seed=0)
    assert np.allclose(slow.samples, fast.samples) and (slow.low, slow.high) == pytest.approx((fast.low, fast.high))
    assert fast.low <= fast.estimate <= fast.high
    # the paired difference of two systems on the same sentences: one draw of indices for both
    other = M.chrf_stats(["the cat", "a dog", "I like", "Tom", "yes"], refs)
    diff = M.bootstrap_ci(lambda a, b: M.chrf_from_stats(a) - M.chrf_from_stats(b), stats, other, n_boot=200)
    assert diff.estimate == pytest.approx(M.chrf_from_stats(stats) - M.chrf_from_stats(other))


# --------------------------------------------------------------------------- tokenizer fertility (ftlib.text)

class _CharTokenizer:
    """One token per character, spaces included: a tokenizer whose fertility is known exactly."""
    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[ord(c) for c in t] for t in texts]}


def test_fertility_is_the_ratio_of_totals():
    from ftlib.text import fertility
    texts = ["ab cd", "efg"]                       # 8 characters with the space, 7 without, 3 words
    assert fertility(_CharTokenizer(), texts, per="char") == pytest.approx(8 / 7)
    assert fertility(_CharTokenizer(), texts, per="word") == pytest.approx(8 / 3)
    # not the mean of per-sentence ratios ((5/4 + 3/3) / 2 for characters)
    assert fertility(_CharTokenizer(), texts) != pytest.approx((5 / 4 + 3 / 3) / 2)
    with pytest.raises(CourseError):
        fertility(_CharTokenizer(), texts, per="byte")
    with pytest.raises(CourseError):
        fertility(_CharTokenizer(), [" "])


def test_fertility_of_course_gpt_on_chinese_and_english():
    from ftlib import load_tokenizer
    from ftlib.text import fertility
    tok = load_tokenizer("course-gpt")
    zh, en = ["我喜欢这只猫。", "她是个有魅力的女性。"], ["I like this cat.", "She is a charming woman."]
    assert fertility(tok, zh, per="char") > 1.0          # byte pieces: more tokens than characters
    assert fertility(tok, en, per="word") < 1.5          # English words are mostly one token each

# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("call", [
    lambda: M.accuracy([0, 1], [0]),
    lambda: M.accuracy([], []),
    lambda: M.precision_recall_f1([0, 1], [0, 1], average="mean"),
    lambda: M.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]),
    lambda: M.roc_curve([0, 1], np.zeros((2, 2))),
    lambda: M.expected_calibration_error([1.2, 0.3], [1, 0]),
    lambda: M.expected_calibration_error([[0.2, 0.3]], [1]),
    lambda: M.bootstrap_ci(np.mean, [1, 2], [1], n_boot=100),
    lambda: M.paired_bootstrap_diff([0.9, 0.8], [1, 0]),
    lambda: M.corpus_bleu("a cat", "a cat"),
    lambda: M.corpus_bleu(["a"], ["a", "b"]),
    lambda: M.corpus_bleu(["a"], ["a"], tokenize="zh"),
    lambda: M.kfold_indices(3, 5),
    lambda: M.corpus_chrf("a cat", "a cat"),
    lambda: M.corpus_chrf(["a"], ["a", "b"]),
    lambda: M.corpus_chrf(["a"], ["a"], beta=0),
])
def test_bad_input_raises_course_error(call):
    with pytest.raises(CourseError):
        call()


def test_seed_interval_is_students_t_and_wider_than_a_normal_interval():
    from scipy import stats
    d = np.array([0.02, 0.005, 0.01, 0.03, -0.005])      # five seeds' differences
    ci = M.seed_interval(d)
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert ci.estimate == pytest.approx(d.mean()) and ci.low == pytest.approx(low) and ci.high == pytest.approx(high)
    # the wrong answer it rejects: a normal (z) interval, which with 5 seeds excludes 0 here; t does not
    z_low = d.mean() - 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert z_low > 0 and ci.low < 0
    # identical runs give a zero-width interval; a clear error for one seed or a NaN
    assert M.seed_interval([0.1, 0.1, 0.1]).high == pytest.approx(0.1)
    with pytest.raises(CourseError, match="2 seeds"):
        M.seed_interval([0.1])
    with pytest.raises(CourseError, match="NaN"):
        M.seed_interval([0.1, float("nan")])
