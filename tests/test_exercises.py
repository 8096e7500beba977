"""The exercise checks: every lesson's checks load; `check` reports, it never raises."""
import pytest

from ftlib import exercises
from ftlib.exercises import Wrong, check, close, exercise


def test_check_reports_unanswered_right_wrong_and_crashing(capsys):
    @exercise("99.1")
    def _double(fn):
        if fn(2) != 4:
            raise Wrong("double the number")

    assert check("99.1", ...) is False
    assert "not answered yet" in capsys.readouterr().out
    assert check("99.1", lambda x: 2 * x) is True
    assert "correct" in capsys.readouterr().out
    assert check("99.1", lambda x: x + 1) is False
    assert "double the number" in capsys.readouterr().out
    assert check("99.1", lambda x: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_unknown_exercise_says_what_exists():
    with pytest.raises(KeyError, match="lesson.number"):
        check("98.7", 1)


def test_close():
    close(1.0, 1.0 + 1e-9)
    with pytest.raises(Wrong, match="shape"):
        close([1.0, 2.0], [1.0])
    with pytest.raises(Wrong):
        close(2.0, 1.0)
    with pytest.raises(Wrong, match="number"):
        close("abc", 1.0)


def test_every_lesson_module_registers_its_checks():
    ids = exercises.list_exercises()
    assert "15.1" in ids
    for ex_id in ids:
        lesson, number = ex_id.split(".")
        assert len(lesson) == 2 and number.isdigit(), ex_id


def test_lesson15_and_17_checks_accept_right_and_reject_wrong(capsys):
    from ftlib import tasks
    assert check("15.1", lambda w, l: tasks.align_labels(w, l, label_all_subtokens=True))
    assert not check("15.1", lambda w, l: tasks.align_labels(w, l))
    assert "later pieces get a label" in capsys.readouterr().out
    assert check("15.2", 5)
    assert not check("15.2", 3)
    assert check("17.1", lambda c, o, s, e: c[o[s][0]:o[e][1]])
    assert not check("17.1", lambda c, o, s, e: c[o[s][0]:o[e][0]])
    assert "end offset" in capsys.readouterr().out


def test_lesson16_pair_checks_reject_the_usual_mistakes(capsys):
    assert check("16.1", lambda a, b: [0] * (a + 2) + [1] * (b + 1))
    assert not check("16.1", lambda a, b: [0] * a + [1] * b)                  # special tokens forgotten
    assert "special tokens" in capsys.readouterr().out
    assert not check("16.1", lambda a, b: [0] * (a + 1) + [1] * (b + 2))      # first [SEP] in segment 1
    assert "first [SEP]" in capsys.readouterr().out
    assert check("16.2", "only_second")
    for wrong in ("longest_first", "only_first", True, "do_not_truncate"):
        assert not check("16.2", wrong)


def test_lesson17_f1_and_window_checks_reject_the_usual_mistakes(capsys):
    import math
    import re
    import string
    from collections import Counter

    def norm(s):
        s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
        return re.sub(r"\b(a|an|the)\b", " ", s).split()

    def f1(p, r, counter=Counter):
        p, r = norm(p), norm(r)
        common = sum((counter(p) & counter(r)).values()) if counter is Counter else len(set(p) & set(r))
        return 0.0 if not common else 2 * common / (len(p) + len(r))

    assert check("17.2", lambda p, refs: max(f1(p, r) for r in refs))
    assert not check("17.2", lambda p, refs: f1(p, refs[0]))                          # first reference only
    assert "best score over them" in capsys.readouterr().out
    assert not check("17.2", lambda p, refs: max(f1(p, r, counter=set) for r in refs))  # a set, not a bag
    assert "multiplicity" in capsys.readouterr().out
    raw = lambda p, refs: max(2 * len(set(p.split()) & set(r.split())) / max(1, len(p.split()) + len(r.split())) for r in refs)
    assert not check("17.2", raw)                                                       # no normalisation
    from ftlib import tasks
    assert not check("17.2", lambda p, refs: tasks.squad_em_f1(p, refs)[1])             # the library's answer
    assert "yourself" in capsys.readouterr().out
    assert not check("17.2", ...)

    def windows(n_q, n, L, stride):
        room = L - n_q - 3
        return 1 + max(0, math.ceil((n - room) / (room - stride)))
    assert check("17.3", windows)
    assert not check("17.3", lambda n_q, n, L, s: math.ceil(n / (L - n_q - 3)))        # no overlap
    assert "overlap" in capsys.readouterr().out
    assert not check("17.3", lambda n_q, n, L, s: 1 + max(0, math.ceil((n - (L - n_q)) / (L - n_q - s))))   # no special tokens
    assert "special tokens" in capsys.readouterr().out
    assert not check("17.3", lambda n_q, n, L, s: 1 + max(0, math.ceil((n - (L - n_q - 3)) / s)))   # stride as the step
    assert not check("17.3", ...)
