"""Exercise checks of lesson 20 (errata): right answers pass, typical wrong answers get the hint."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ftlib.exercises import check


def _ce(y, p, log=math.log):
    return -sum(a * log(b) for a, b in zip(y, p))


Y, P = [0.7, 0.2, 0.1], [0.5, 0.3, 0.2]


def test_20_1_right():
    assert check("20.1", (_ce(Y, P), _ce(Y, Y)), quiet=True)


def test_20_1_log10_gets_hint(capsys):
    assert not check("20.1", (_ce(Y, P, math.log10), _ce(Y, Y)))
    assert "natural log" in capsys.readouterr().out


def test_20_1_floor_zero_gets_hint(capsys):
    assert not check("20.1", (_ce(Y, P), 0.0))
    assert "one-hot" in capsys.readouterr().out


def test_20_1_not_answered(capsys):
    assert not check("20.1", ...)
    assert "not answered" in capsys.readouterr().out


def test_20_2_right():
    # 13 batches a epoch, 39 steps; the scheduler reaches step 38 of a 100-step warm-up
    assert check("20.2", (39, 2e-5 * 38 / 100), quiet=True)


def test_20_2_floor_division_gets_hint(capsys):
    assert not check("20.2", (36, 2e-5 * 35 / 100))
    assert "ceil" in capsys.readouterr().out


def test_20_2_full_rate_gets_hint(capsys):
    assert not check("20.2", (39, 2e-5))
    assert "warm-up" in capsys.readouterr().out


def test_20_3_right():
    def fixed(logits, labels):
        return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), labels.float())
    assert check("20.3", fixed, quiet=True)


def test_20_3_double_sigmoid_gets_hint(capsys):
    def double(logits, labels):
        return nn.BCEWithLogitsLoss()(torch.sigmoid(logits).squeeze(1), labels.float())
    assert not check("20.3", double)
    assert "twice" in capsys.readouterr().out


def test_20_3_seed_code_fails(capsys):
    def seed(logits, labels):
        return nn.BCEWithLogitsLoss()(torch.sigmoid(logits), labels)
    assert not check("20.3", seed)
    out = capsys.readouterr().out
    assert "raised" in out or "not yet" in out
