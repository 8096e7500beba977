"""Tests for ftlib.fast: device batches and the fast classification loop."""
import datasets
import pytest
import torch

from ftlib import CourseError
from ftlib.fast import DeviceBatches, evaluate_fast, fast_fit


def toy_dataset(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows, labels = [], []
    for _ in range(n):
        y = int(torch.randint(0, 2, (1,), generator=g))
        length = int(torch.randint(2, 12, (1,), generator=g))
        body = torch.randint(3, 20, (length,), generator=g).tolist()
        rows.append([1, 20 + y] + body)      # the class is written in the second token
        labels.append(y)
    return datasets.Dataset.from_dict({"input_ids": rows, "labels": labels})


def tiny_classifier():
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=24, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, num_labels=2, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(cfg)


def test_device_batches_cover_every_example_once_with_dynamic_padding():
    ds = toy_dataset()
    b = DeviceBatches(ds, 8, pad_id=0, shuffle=True, pad_multiple=4)
    seen = []
    for batch in b:
        width = batch["input_ids"].shape[1]
        real = batch["attention_mask"].sum(1)
        assert width % 4 == 0 or width == b.input_ids.shape[1]
        assert width - int(real.max()) < 4                         # padded only to the longest row (rounded)
        assert bool((batch["input_ids"][batch["attention_mask"] == 0] == 0).all())
        for ids, n in zip(batch["input_ids"], real):
            seen.append(tuple(ids[:n].tolist()))
    assert sorted(seen) == sorted(tuple(r) for r in ds["input_ids"])
    assert 0 <= b.padding_fraction() < 0.5
    first, second = b.order(), b.order()
    assert first != second and sorted(first) == sorted(second)     # a new shuffle each pass


def test_device_batches_reject_untokenised_data():
    with pytest.raises(CourseError):
        DeviceBatches(datasets.Dataset.from_dict({"sentence": ["a"], "labels": [0]}), 4, 0)


def test_fast_fit_reduces_the_loss_and_learns_the_toy_task():
    ds = toy_dataset(64)
    train = DeviceBatches(ds, 16, pad_id=0, shuffle=True)
    dev = DeviceBatches(ds, 32, pad_id=0)
    model = tiny_classifier()
    before = evaluate_fast(model, dev)
    r = fast_fit(model, train, dev, epochs=10, lr=3e-3, warmup_ratio=0.1, progress=False)
    assert r.epoch_loss[-1] < 0.5 * r.epoch_loss[0]
    assert r.epoch_accuracy[-1] > max(before, 0.85)
    assert len(r.epoch_accuracy) == 10 and r.samples_per_s > 0 and r.train_seconds <= r.wall_seconds


def test_fast_fit_matches_a_plain_loop_step_for_step():
    """Same data order, same maths: the fast loop's weights equal a plain AdamW loop's."""
    from ftlib.train import linear_schedule

    ds = toy_dataset(32)
    a, b = tiny_classifier(), tiny_classifier()
    fast_fit(a, DeviceBatches(ds, 8, 0, shuffle=True, seed=3), epochs=1, lr=1e-3, warmup_ratio=0.25,
             max_grad_norm=1.0, progress=False)
    batches = DeviceBatches(ds, 8, 0, shuffle=True, seed=3)
    params = [p for p in b.parameters()]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.01},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=1e-3)
    sched = linear_schedule(opt, 1, 4)
    b.train()
    for batch in batches:
        labels = batch.pop("labels")
        loss = torch.nn.functional.cross_entropy(b(**batch).logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(b.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        sched.step()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=name)
