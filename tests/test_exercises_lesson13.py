import math

from ftlib.exercises import check

PROMPT = [1, 9690, 198, 2683, 2, 198, 1, 520, 9531, 198]
FULL = [1, 9690, 198, 2683, 2, 198, 1, 520, 9531, 198, 504, 1069, 2, 198]
RIGHT = [-100] * 10 + FULL[10:] + [-100] * 2


def test_13_1_accepts_the_labels(capsys):
    assert check("13.1", RIGHT)


def test_13_1_rejects_the_usual_wrong_labels(capsys):
    padded = FULL + [2, 2]
    assert not check("13.1", padded)                                    # no masking at all
    assert "input ids" in capsys.readouterr().out
    by_id = [-100] * 10 + [-100 if t == 2 else t for t in padded[10:]]   # masks <|im_end|> too
    assert not check("13.1", by_id)
    assert "pad id" in capsys.readouterr().out
    assert not check("13.1", [-100] * 10 + padded[10:])                  # padding scored
    assert "padding" in capsys.readouterr().out
    assert not check("13.1", FULL + [-100, -100])                        # prompt scored
    assert "prompt" in capsys.readouterr().out
    assert not check("13.1", RIGHT[1:] + [-100])                         # shifted by hand
    assert "shift" in capsys.readouterr().out
    assert not check("13.1", RIGHT[:14])
    assert "16" in capsys.readouterr().out


def dpo(pc, pr, rc, rr, beta):
    return -math.log(1 / (1 + math.exp(-beta * ((pc - rc) - (pr - rr)))))


def test_13_2(capsys):
    assert check("13.2", dpo(-12, -15, -13, -14, 0.1))
    for wrong, hint in ((dpo(-12, -15, 0, 0, 0.1), "reference"), (dpo(-12, -15, -13, -14, 1.0), "beta"),
                        (dpo(-15, -12, -14, -13, 0.1), "comes first"), (math.log(2), "log 2"),
                        (-dpo(-12, -15, -13, -14, 0.1), "positive")):
        assert not check("13.2", wrong)
        assert hint in capsys.readouterr().out
    assert not check("13.2", 0.59)


def test_13_3(capsys):
    assert check("13.3", 3.0)
    assert not check("13.3", 4.0)                                         # mean of the rows' means
    assert "rows' means" in capsys.readouterr().out
    assert not check("13.3", (0.5 + 0.5 + 1 + 2 + 3 + 0.2 + 6) / 7)        # prompt tokens included
    assert "prompt" in capsys.readouterr().out
