from ftlib.exercises import check


def test_10_1(capsys):
    assert check("10.1", (792, 48))
    assert not check("10.1", (789, 48))
    assert "round the batches per epoch up" in capsys.readouterr().out
    assert not check("10.1", (264, 16))
    assert "three" in capsys.readouterr().out


def test_10_2(capsys):
    s = 3 * 67_349 / 10
    assert check("10.2", (s, 6 * 22.7e6 * 16 * s / 1e12))
    assert not check("10.2", (s, 2 * 22.7e6 * 16 * s / 1e12))
    assert "6 N" in capsys.readouterr().out
    assert not check("10.2", (6734.9, 1.0))
    assert "three times" in capsys.readouterr().out
    assert not check("10.2", ...)
