"""Exercise checks of notebook 18 (chrF of one sentence pair, chrF of a corpus): the right answer passes, the usual wrong
answers get their hint, ``...`` is "not answered yet"."""
from __future__ import annotations

from collections import Counter

import pytest

from ftlib.exercises import check
from ftlib.exercises.lesson18 import CORPORA, _chrf, _corpus


def _by_hand(hyp, ref):
    """chrF written out: spaces removed, clipped character n-grams n = 1..6, mean P and R, F2."""
    hyp, ref = "".join(hyp.split()), "".join(ref.split())
    ps, rs = [], []
    for n in range(1, 7):
        h = Counter(hyp[i:i + n] for i in range(len(hyp) - n + 1))
        r = Counter(ref[i:i + n] for i in range(len(ref) - n + 1))
        m = sum(min(c, r[g]) for g, c in h.items())
        ps.append(m / sum(h.values()))
        rs.append(m / sum(r.values()))
    p, r = sum(ps) / 6, sum(rs) / 6
    return 100 * 5 * p * r / (4 * p + r)


def test_18_1_right(capsys):
    assert check("18.1", _by_hand)
    assert "correct" in capsys.readouterr().out


def test_18_1_ftlib_itself_is_right():
    from ftlib.metrics import corpus_chrf
    assert check("18.1", lambda h, r: corpus_chrf([h], [r]), quiet=True)


@pytest.mark.parametrize("wrong, hint", [
    (lambda h, r: _chrf(h, r, beta=1.0), "beta = 2"),                  # F1 instead of F2
    (lambda h, r: _chrf(h, r, spaces=True), "Remove the spaces"),      # spaces kept
    (lambda h, r: _chrf(h, r, mean_of_f=True), "mean of the six F"),   # F per order, then averaged
    (lambda h, r: _chrf(h, r, clip=False), "Clip the matches"),        # unclipped matches
    (lambda h, r: _by_hand(h, r) / 100, "0 to 100"),                   # 0-1 scale
])
def test_18_1_usual_mistakes_get_their_hint(wrong, hint, capsys):
    assert not check("18.1", wrong)
    assert hint in capsys.readouterr().out


def test_18_1_other_wrong_answers(capsys):
    assert not check("18.1", lambda h, r: 50.0)
    assert "expected" in capsys.readouterr().out
    assert not check("18.1", lambda h, r: "high")
    assert "one number" in capsys.readouterr().out


def test_18_1_not_answered(capsys):
    assert not check("18.1", ...)
    assert "not answered" in capsys.readouterr().out


def _corpus_by_hand(hyps, refs):
    """Corpus chrF written out: counts per order summed over the sentences, then P, R and F2 once."""
    sums = [[0, 0, 0] for _ in range(6)]
    for hyp, ref in zip(hyps, refs):
        hyp, ref = "".join(hyp.split()), "".join(ref.split())
        for n in range(1, 7):
            h = Counter(hyp[i:i + n] for i in range(len(hyp) - n + 1))
            r = Counter(ref[i:i + n] for i in range(len(ref) - n + 1))
            sums[n - 1][0] += sum(h.values())
            sums[n - 1][1] += sum(r.values())
            sums[n - 1][2] += sum(min(c, r[g]) for g, c in h.items())
    p = sum(m / h for h, _, m in sums) / 6
    r = sum(m / rr for _, rr, m in sums) / 6
    return 100 * 5 * p * r / (4 * p + r)


def test_18_2_right(capsys):
    assert check("18.2", _corpus_by_hand)
    assert "correct" in capsys.readouterr().out


def test_18_2_agrees_with_sacrebleu():
    import sacrebleu
    from ftlib.metrics import corpus_chrf
    assert check("18.2", lambda h, r: corpus_chrf(h, r), quiet=True)
    assert check("18.2", lambda h, r: sacrebleu.corpus_chrf(h, [r]).score, quiet=True)


def test_18_2_the_corpora_separate_the_mean_from_the_sums():
    for corpus in CORPORA:
        hyps, refs = [h for h, _ in corpus], [r for _, r in corpus]
        mean = sum(_chrf(h, r) for h, r in corpus) / len(corpus)
        assert abs(_corpus(hyps, refs) - mean) > 0.5


@pytest.mark.parametrize("wrong, hint", [
    (lambda hs, rs: sum(_chrf(h, r) for h, r in zip(hs, rs)) / len(hs), "mean of the sentence scores"),
    (lambda hs, rs: _corpus_by_hand(hs, rs) / 100, "0 to 100"),
    (lambda hs, rs: _corpus(hs, rs, beta=1.0), "beta = 2"),
    (lambda hs, rs: _corpus(hs, rs, spaces=True), "Remove the spaces"),
    (lambda hs, rs: _chrf(" ".join(hs), " ".join(rs)), "expected"),     # one long sentence: n-grams across joins
])
def test_18_2_usual_mistakes_are_rejected(wrong, hint, capsys):
    assert not check("18.2", wrong)
    assert hint in capsys.readouterr().out


def test_18_2_other_wrong_answers(capsys):
    assert not check("18.2", lambda h, r: 40.0)
    assert "expected" in capsys.readouterr().out
    assert not check("18.2", lambda h, r: None)
    assert "one number" in capsys.readouterr().out
    assert not check("18.2", ...)
    assert "not answered" in capsys.readouterr().out
