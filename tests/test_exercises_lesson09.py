"""The checks of lesson 09's exercises accept right answers and give hints for typical wrong ones."""
import math

from ftlib.exercises import check
from ftlib.exercises.lesson09 import EX1_GOLD, EX1_PREDICTED


def test_09_1(capsys):
    # 7 of 10 covered; covered pairs: (1,1) (0,0) (1,0) (1,1) (0,1) (1,1) (0,0) -> 5 right of 7
    # abstained: gold 0, 1, 1 -> fallback 1 right twice -> 7 of 10
    assert sum(p is not None for p in EX1_PREDICTED) == 7 and len(EX1_GOLD) == 10
    assert check("09.1", (0.7, 5 / 7, 0.7))
    assert not check("09.1", (0.3, 5 / 7, 0.7))
    assert "DO label" in capsys.readouterr().out
    assert not check("09.1", (0.7, 0.5, 0.7))
    assert "covered sentences, not by all" in capsys.readouterr().out
    assert not check("09.1", 0.7)
    assert not check("09.1", ...)


def test_09_2(capsys):
    p1 = 1 / (1 + math.exp(2.0))
    p = [1 - p1, p1]
    s = 1 / (1 + math.exp(-1.0))
    q = [1 - s, s]
    kl = sum(a * math.log(a / b) for a, b in zip(p, q))
    assert check("09.2", kl)
    assert not check("09.2", sum(b * math.log(b / a) for a, b in zip(p, q)))
    assert "KL(rules || model)" in capsys.readouterr().out
    assert not check("09.2", kl / math.log(2))
    assert "bits" in capsys.readouterr().out
    assert not check("09.2", "a lot")


def test_09_3(capsys):
    # tokens after "not": think it was a particularly good -> "good" is the 6th
    assert check("09.3", 6)
    assert not check("09.3", 3)
    assert "count the tokens" in capsys.readouterr().out
    assert not check("09.3", 9)
    assert "smaller window" in capsys.readouterr().out
    assert not check("09.3", 6.0)
