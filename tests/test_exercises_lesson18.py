"""Exercise check of notebook 18 (chrF of one sentence pair): the right answer passes, the usual wrong
answers get their hint, ``...`` is "not answered yet"."""
from __future__ import annotations

from collections import Counter

import pytest

from ftlib.exercises import check
from ftlib.exercises.lesson18 import _chrf


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
