from ftlib.exercises import check


def test_11_1(capsys):
    assert check("11.1", (789, 48))
    assert not check("11.1", (792, 48))
    assert "round the batches per epoch down" in capsys.readouterr().out
    assert not check("11.1", (789, 47))                 # 6 % of 789 is 47.34: rounded up
    capsys.readouterr()
    assert not check("11.1", (263, 16))
    assert "three" in capsys.readouterr().out


def test_11_2(capsys):
    s = 3 * 67_349 / 10
    n_matmul = 22.7e6 - 11.9e6                 # the learner's arithmetic (biases and norms left in: 0.3 %)
    assert check("11.2", (s, 6 * n_matmul * 16 * s / 1e12))
    exact = 6 * (4 * 384 * 384 + 2 * 384 * 1536) + 384 * 384 + 384 * 2      # ftlib.flops.matmul_parameters
    assert check("11.2", (s, 6 * exact * 16 * s / 1e12))
    assert check("11.2", (s, (6 * exact + 12 * 6 * 384 * 16) * 16 * s / 1e12))   # with attention: fine too
    capsys.readouterr()
    # the old answer, 6 N with the embeddings, is about twice too high
    assert not check("11.2", (s, 6 * 22.7e6 * 16 * s / 1e12))
    assert "embeddings do no matmul work" in capsys.readouterr().out
    assert not check("11.2", (s, 2 * n_matmul * 16 * s / 1e12))
    assert "6 N" in capsys.readouterr().out
    assert not check("11.2", (s, 2 * 22.7e6 * 16 * s / 1e12))
    assert "6 N" in capsys.readouterr().out
    assert not check("11.2", (6734.9, 1.0))
    assert "three times" in capsys.readouterr().out
    assert not check("11.2", ...)
