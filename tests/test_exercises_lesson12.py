import math

from ftlib.exercises import check


def test_12_1(capsys):
    assert check("12.1", math.exp(2.5))
    assert not check("12.1", sum(math.exp(c) for c in [2.0, 3.0, 1.0, 4.0, 2.5]) / 5)
    assert "exponential of the mean" in capsys.readouterr().out
    assert not check("12.1", 2.5)


def test_12_2(capsys):
    fpt = 6 * 134_515_008 + 12 * 30 * 576 * 1024
    want = 400_000 * fpt / 989e12
    assert check("12.2", want)
    assert not check("12.2", 100 * want)
    assert "fraction" in capsys.readouterr().out
    assert not check("12.2", 400_000 * 6 * 134_515_008 / 989e12)
    assert "attention term" in capsys.readouterr().out


def test_12_3(capsys):
    assert check("12.3", (2, 55))
    assert not check("12.3", (2, 52))
    assert "end-of-text" in capsys.readouterr().out
