"""Lesson 14's exercise checks: a right answer passes, typical wrong answers get the hint."""
import math

import pytest
import torch
import torch.nn.functional as F

import ftlib
import ftlib.deploy
from ftlib.exercises import Wrong, check
from ftlib.exercises import lesson14


@pytest.fixture(scope="module")
def sizes():
    model = ftlib.load_model("course-bert", task="classification", num_labels=2)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    total = sum(p.numel() for p in model.parameters())
    return total, linear


def test_14_1(sizes, capsys):
    total, linear = sizes
    assert check("14.1", (linear + 4 * (total - linear)) / 1e6)
    with pytest.raises(Wrong, match="float32 size"):
        lesson14.int8_size(total * 4 / 1e6)
    with pytest.raises(Wrong, match="stay 4 bytes"):
        lesson14.int8_size(total / 1e6)
    with pytest.raises(Wrong, match="a number"):
        lesson14.int8_size("big")
    assert not check("14.1", ...)
    assert "not answered yet" in capsys.readouterr().out


def test_14_2():
    def psi(p, q):
        return sum((b - a) * math.log(b / a) for a, b in zip(p, q))

    def kl_only(p, q):
        return sum(b * math.log(b / a) for a, b in zip(p, q))

    assert check("14.2", psi)
    with pytest.raises(Wrong, match="symmetric"):
        lesson14.psi_from_shares(kl_only)
    with pytest.raises(Wrong, match="function"):
        lesson14.psi_from_shares(0.3)


def test_14_3():
    def kd(s, t, T):
        return F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T * T

    def no_t2(s, t, T):
        return kd(s, t, T) / (T * T)

    def reverse(s, t, T):
        return kd(t, s, T)

    assert check("14.3", kd)
    assert check("14.3", lambda s, t, T: ftlib.deploy.distillation_loss(s, t, temperature=T))
    with pytest.raises(Wrong, match=r"T\*\*2"):
        lesson14.distillation_kl(no_t2)
    with pytest.raises(Wrong, match="KL\\(student"):
        lesson14.distillation_kl(reverse)
