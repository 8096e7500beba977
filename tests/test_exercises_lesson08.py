"""The checks of lesson 08's exercises accept right answers and give hints for typical wrong ones."""
import numpy as np
import sklearn.metrics as skm
from sklearn.utils.class_weight import compute_class_weight

from ftlib.exercises import check
from ftlib.exercises.lesson08 import EX1_COUNTS, EX2_NEG, EX2_POS, EX3_CASES
from ftlib.imbalance import class_weights


def test_08_1(capsys):
    y = np.concatenate([[c] * k for c, k in EX1_COUNTS.items()])
    right = compute_class_weight("balanced", classes=np.array(sorted(EX1_COUNTS)), y=y)
    assert check("08.1", list(right))
    assert check("08.1", class_weights(EX1_COUNTS))
    counts = np.array([EX1_COUNTS[k] for k in sorted(EX1_COUNTS)], dtype=float)
    assert not check("08.1", list(1 / counts))
    assert "N / C" in capsys.readouterr().out
    assert not check("08.1", list(counts / counts.sum()))
    assert "frequencies" in capsys.readouterr().out
    assert not check("08.1", list(counts.sum() / counts))
    assert "C times too large" in capsys.readouterr().out
    assert not check("08.1", [1.0, 2.0])
    assert not check("08.1", ...)
    assert "not answered" in capsys.readouterr().out


def test_08_2(capsys):
    y = np.array([0] * EX2_NEG + [1] * EX2_POS)
    p = np.zeros_like(y)
    acc = skm.accuracy_score(y, p)
    bal = skm.balanced_accuracy_score(y, p)
    macro = skm.f1_score(y, p, average="macro", zero_division=0)
    assert check("08.2", acc, bal, macro)
    assert not check("08.2", acc, acc, macro)
    assert "MEAN OF THE PER-CLASS RECALLS" in capsys.readouterr().out
    f1_neg = skm.f1_score(y, p, pos_label=0)
    assert not check("08.2", acc, bal, f1_neg)
    assert "positive class" in capsys.readouterr().out
    assert not check("08.2", 0.5, bal, macro)


def early_stop_right(losses, patience):
    best, best_epoch, bad = float("inf"), 0, 0
    for epoch, loss in enumerate(losses, start=1):
        if loss < best:
            best, best_epoch, bad = loss, epoch, 0
        else:
            bad += 1
            if bad >= patience:
                return epoch, best_epoch
    return len(losses), len(losses)


def test_08_3(capsys):
    assert check("08.3", early_stop_right)

    def keeps_last(losses, patience):
        return early_stop_right(losses, patience)[0], early_stop_right(losses, patience)[0]
    assert not check("08.3", keeps_last)
    assert "BEST weights" in capsys.readouterr().out

    def always_best(losses, patience):
        stop = early_stop_right(losses, patience)[0]
        return stop, int(np.argmin(losses[:stop])) + 1
    assert not check("08.3", always_best)
    assert "only when it stops early" in capsys.readouterr().out

    def zero_based(losses, patience):
        a, b = early_stop_right(losses, patience)
        return a - 1, b - 1
    assert not check("08.3", zero_based)
    assert "from 1" in capsys.readouterr().out
    assert not check("08.3", 3)
    assert len(EX3_CASES) >= 5


def test_the_07_3_reference_is_what_fit_does(monkeypatch):
    """Run ftlib.train.fit with scripted validation losses and compare where it stops and what it keeps."""
    import torch
    import transformers
    import ftlib.train as train
    from ftlib.exercises.lesson08 import early_stop_reference

    torch.manual_seed(0)
    batches = [{"input_ids": torch.randint(5, 50, (4, 6)), "attention_mask": torch.ones(4, 6, dtype=torch.long),
                "labels": torch.tensor([0, 1, 0, 1])}]
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    for losses, patience in EX3_CASES:
        model = transformers.BertForSequenceClassification(transformers.BertConfig(
            vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16))
        snapshots, scripted = [], iter(losses)

        def fake_evaluate(model, loader, device=None, **kwargs):
            snapshots.append(model.classifier.weight.detach().clone())
            return {"loss": next(scripted), "accuracy": 0.5}
        monkeypatch.setattr(train, "evaluate", fake_evaluate)
        hist = train.fit(model, loader, loader, epochs=len(losses), lr=1e-2, device="cpu",
                         early_stopping_patience=patience, progress=False, verbose=False)
        ran, kept = early_stop_reference(losses, patience)
        assert len(hist.epoch) == ran
        torch.testing.assert_close(model.classifier.weight.detach(), snapshots[kept - 1])
