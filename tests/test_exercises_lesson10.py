"""The checks of lesson 10's exercises accept right answers and give hints for typical wrong ones."""
import math

import numpy as np
import sklearn.metrics as skm

from ftlib import metrics as M
from ftlib.exercises import check
from ftlib.exercises.lesson10 import (EX1_CM, EX2_LABELS, EX2_SCORES, EX3_BINS, EX3_LABELS, EX3_PROBS,
                                      EX4_HYP, EX4_REF)


def _labels_from_cm(cm):
    y, p = [], []
    for i, row in enumerate(cm):
        for j, n in enumerate(row):
            y += [i] * n
            p += [j] * n
    return np.array(y), np.array(p)


def test_10_1(capsys):
    y, p = _labels_from_cm(EX1_CM)
    macro = skm.f1_score(y, p, average="macro")
    micro = skm.f1_score(y, p, average="micro")
    assert check("10.1", (macro, micro))
    prec, rec, _ = M.precision_recall_f1(y, p, average=None)
    assert not check("10.1", (float(np.mean((prec + rec) / 2)), micro))
    assert "harmonic" in capsys.readouterr().out
    assert not check("10.1", (skm.f1_score(y, p, average="weighted"), micro))
    assert "weight 1/3" in capsys.readouterr().out
    assert not check("10.1", (macro, macro))
    assert "pools every decision" in capsys.readouterr().out
    assert not check("10.1", 0.7)


def test_10_2(capsys):
    auc = skm.roc_auc_score(EX2_LABELS, EX2_SCORES)
    assert check("10.2", auc)
    assert not check("10.2", 1 - auc)
    assert "higher" in capsys.readouterr().out
    # one tied pair among 4 x 4: counting it as a loss lowers the AUC by 1/32
    assert not check("10.2", auc - 0.5 / 16)
    assert "half a win" in capsys.readouterr().out
    assert not check("10.2", "high")


def test_10_3(capsys):
    ece = M.expected_calibration_error(np.array(EX3_PROBS), np.array(EX3_LABELS), n_bins=EX3_BINS)
    assert check("10.3", ece)
    # the slip: calibration of P(positive) vs the label, per bin of P(positive)
    from sklearn.calibration import calibration_curve
    frac, mean_p = calibration_curve(EX3_LABELS, EX3_PROBS, n_bins=EX3_BINS)
    counts = np.bincount(np.clip(np.ceil(np.array(EX3_PROBS) * EX3_BINS).astype(int) - 1, 0, EX3_BINS - 1),
                         minlength=EX3_BINS)
    slip = float(np.sum(counts[counts > 0] / len(EX3_PROBS) * np.abs(frac - mean_p)))
    assert not math.isclose(slip, ece, abs_tol=1e-4)
    assert not check("10.3", slip)
    assert "max(p, 1 - p)" in capsys.readouterr().out
    rc = M.reliability_curve(np.array(EX3_PROBS), np.array(EX3_LABELS), n_bins=EX3_BINS)
    full = rc["count"] > 0
    assert not check("10.3", float(np.mean(np.abs(rc["accuracy"][full] - rc["confidence"][full]))))
    assert "n_bin / N" in capsys.readouterr().out


def test_10_4(capsys):
    d = M.corpus_bleu([EX4_HYP], [EX4_REF], tokenize="none", return_details=True)
    p1, bp = d["precisions"][0] / 100, d["bp"]
    assert check("10.4", (p1, bp))
    assert not check("10.4", (1.0, bp))
    assert "Clip" in capsys.readouterr().out
    c, r = len(EX4_HYP.split()), len(EX4_REF.split())
    assert not check("10.4", (p1, math.exp(1 - c / r)))
    assert "exp(1 - r / c)" in capsys.readouterr().out
    assert not check("10.4", p1)
