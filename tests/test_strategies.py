"""ftlib.strategies on a tiny random BERT (fast, no download)."""
import numpy as np
import pytest
import torch

import ftlib
from ftlib.strategies import (GradualUnfreezing, PeakMemory, count_parameters, encoder_layers, freeze,
                              freeze_bottom_layers, layer_depth, layerwise_lr_groups, unfreeze)
from ftlib.train import fit
from conftest import make_tiny_bert

N_LAYERS = 3


def tiny_bert(seed=0):
    return make_tiny_bert(vocab=50, hidden=16, layers=N_LAYERS, seed=seed, dropout=0.1)


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_count_parameters_follows_requires_grad():
    m = tiny_bert()
    total = sum(p.numel() for p in m.parameters())
    assert count_parameters(m) == (total, total)
    m.classifier.weight.requires_grad_(False)
    assert count_parameters(m) == (total - m.classifier.weight.numel(), total)


def test_freeze_keeps_only_named_and_unfreeze_restores():
    m = freeze(tiny_bert(), keep=("classifier",))
    assert trainable_names(m) == {"classifier.weight", "classifier.bias"}
    freeze(m, keep=())
    assert count_parameters(m)[0] == 0
    unfreeze(m, "pooler")
    assert trainable_names(m) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    unfreeze(m)
    assert count_parameters(m)[0] == count_parameters(m)[1]


def test_freeze_with_a_typo_raises():
    with pytest.raises(ftlib.CourseError, match="classifer"):
        freeze(tiny_bert(), keep=("classifer",))


def test_layer_depth_orders_embeddings_blocks_head():
    m = tiny_bert()
    depth = layer_depth(m)
    assert len(encoder_layers(m)) == N_LAYERS
    assert depth["bert.embeddings.word_embeddings.weight"] == 0
    assert depth["bert.encoder.layer.0.attention.self.query.weight"] == 1
    assert depth[f"bert.encoder.layer.{N_LAYERS - 1}.output.dense.bias"] == N_LAYERS
    assert depth["bert.pooler.dense.weight"] == N_LAYERS + 1
    assert depth["classifier.bias"] == N_LAYERS + 1
    assert set(depth) == {n for n, _ in m.named_parameters()}


@pytest.mark.parametrize("k", [0, 1, N_LAYERS])
def test_freeze_bottom_layers(k):
    m = freeze_bottom_layers(tiny_bert(), k)
    for n, p in m.named_parameters():
        frozen_expected = n.startswith("bert.embeddings") or any(
            n.startswith(f"bert.encoder.layer.{i}.") for i in range(k))
        assert p.requires_grad != frozen_expected, n
    # a frozen bottom gets no gradient after a backward pass
    x = torch.randint(0, 50, (2, 5))
    m(input_ids=x, labels=torch.tensor([0, 1])).loss.backward()
    assert m.bert.embeddings.word_embeddings.weight.grad is None
    assert m.classifier.weight.grad is not None


def test_freeze_bottom_layers_rejects_bad_k():
    with pytest.raises(ftlib.CourseError):
        freeze_bottom_layers(tiny_bert(), N_LAYERS + 1)


def test_layerwise_lr_groups_rates_and_coverage():
    m = tiny_bert()
    groups = layerwise_lr_groups(m, lr=1.0, decay=0.5, weight_decay=0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters())          # every parameter, once
    by_param = {id(p): g for g in groups for p in g["params"]}
    top = N_LAYERS + 1
    for n, p in m.named_parameters():
        g = by_param[id(p)]
        assert g["lr"] == pytest.approx(0.5 ** (top - layer_depth(m)[n])), n
        assert g["weight_decay"] == (0.01 if p.ndim >= 2 else 0.0)
    assert by_param[id(m.classifier.weight)]["lr"] == 1.0
    assert by_param[id(m.bert.embeddings.word_embeddings.weight)]["lr"] == pytest.approx(0.5 ** top)


def test_layerwise_lr_groups_trainable_only_and_bad_decay():
    m = freeze_bottom_layers(tiny_bert(), N_LAYERS)
    groups = layerwise_lr_groups(m, 1e-3, 0.9, trainable_only=True)
    assert sum(p.numel() for g in groups for p in g["params"]) == count_parameters(m)[0]
    with pytest.raises(ftlib.CourseError):
        layerwise_lr_groups(m, 1e-3, decay=0.0)


def test_layerwise_lr_groups_drive_the_optimizer():
    m = tiny_bert()
    opt = torch.optim.AdamW(layerwise_lr_groups(m, lr=1e-3, decay=0.5), lr=123.0)
    assert {g["lr"] for g in opt.param_groups} == {1e-3 * 0.5 ** k for k in range(N_LAYERS + 2)}


@pytest.mark.parametrize("cumulative", [True, False])
def test_gradual_unfreezing_schedule(cumulative):
    m = tiny_bert()
    cb = GradualUnfreezing(m, steps_per_stage=2, cumulative=cumulative)
    head = {n for n in trainable_names(m)}
    assert head == {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}
    block = lambda i: {n for n, _ in m.named_parameters() if n.startswith(f"bert.encoder.layer.{i}.")}
    emb = {n for n, _ in m.named_parameters() if n.startswith("bert.embeddings")}
    cb({"step": 1, "epoch": 1})
    assert trainable_names(m) == head                                   # not yet
    cb({"step": 2, "epoch": 1})
    assert trainable_names(m) == head | block(N_LAYERS - 1)             # top block first
    cb({"step": 4, "epoch": 2})
    want = head | block(N_LAYERS - 2) | (block(N_LAYERS - 1) if cumulative else set())
    assert trainable_names(m) == want
    cb({"step": 6, "epoch": 3})
    cb({"step": 2 * (N_LAYERS + 1), "epoch": 4})
    assert trainable_names(m) == (set(n for n, _ in m.named_parameters()) if cumulative else head | emb)
    cb({"step": 100, "epoch": 9})                                        # stays at the last stage
    assert len(cb.log) == N_LAYERS + 2
    assert [s for s, _ in cb.log] == [0, 2, 4, 6, 8]


def test_gradual_unfreezing_inside_fit_trains_late_layers_only_after_their_stage():
    m = tiny_bert()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    x = torch.randint(1, 50, (8, 6))
    data = [{"input_ids": x[i:i + 2], "attention_mask": torch.ones(2, 6, dtype=torch.long),
             "labels": torch.tensor([0, 1])} for i in range(0, 8, 2)]
    loader = torch.utils.data.DataLoader(data, batch_size=None)
    cb = GradualUnfreezing(m, steps_per_stage=3)
    # 4 steps: the head trains for 4, the top block for 1 (step 4), nothing else moves
    fit(m, loader, epochs=1, lr=1e-2, warmup_ratio=0.0, device="cpu", mixed_precision=False,
        progress=False, verbose=False, callbacks=[cb], param_groups=layerwise_lr_groups(m, 1e-2, 1.0))
    moved = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert "classifier.weight" in moved
    assert any(n.startswith(f"bert.encoder.layer.{N_LAYERS - 1}.") for n in moved)
    assert not any(n.startswith(f"bert.encoder.layer.{N_LAYERS - 2}.") or n.startswith("bert.embeddings")
                   for n in moved)


def test_gradual_unfreezing_rejects_zero_steps():
    with pytest.raises(ftlib.CourseError):
        GradualUnfreezing(tiny_bert(), steps_per_stage=0)


def test_peak_memory_sees_a_big_allocation():
    with PeakMemory("cpu", interval=0.001) as mem:
        x = torch.ones(64 * 2**20 // 4)          # 64 MiB, touched
        x += 1
        import time
        time.sleep(0.05)
        del x
    assert mem.peak > 32 * 2**20
    assert "RSS" in mem.method


# --------------------------------------------------------------- ULMFiT gradual unfreezing (issue 13)
from ftlib.strategies import above_majority, gradual_unfreezing, unfreezing_stages  # noqa: E402


def _batches(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 50, (n, 6), generator=g)
    data = [{"input_ids": x[i:i + 2], "attention_mask": torch.ones(2, 6, dtype=torch.long),
             "labels": torch.tensor([0, 1])} for i in range(0, n, 2)]
    return torch.utils.data.DataLoader(data, batch_size=None)


def test_unfreezing_stages_top_down_cumulative_and_layer_by_layer():
    m = tiny_bert()
    block = lambda i: {n for n, _ in m.named_parameters() if n.startswith(f"bert.encoder.layer.{i}.")}
    emb = {n for n, _ in m.named_parameters() if n.startswith("bert.embeddings")}
    stages = [set(s) for s in unfreezing_stages(m)]
    head = stages[0]
    assert {"classifier.weight", "classifier.bias"} <= head and not any("encoder" in n for n in head)
    assert len(stages) == N_LAYERS + 1
    assert stages[1] == head | block(2) and stages[2] == head | block(2) | block(1)
    assert stages[-1] == {n for n, _ in m.named_parameters()}                    # everything at the end
    one = [set(s) for s in unfreezing_stages(m, cumulative=False)]
    assert one[2] == head | block(1) and one[-1] == head | block(0) | emb        # one group at a time
    two = [set(s) for s in unfreezing_stages(m, blocks_per_stage=2)]
    assert len(two) == 3 and two[1] == head | block(2) | block(1)
    with pytest.raises(ftlib.CourseError, match="at least 1 block"):
        unfreezing_stages(m, blocks_per_stage=0)


def test_gradual_unfreezing_restarts_the_schedule_at_full_discriminative_rate_each_stage():
    m, lr, decay = tiny_bert(), 1e-2, 0.5
    hs = gradual_unfreezing(m, _batches(), lr=lr, decay=decay, cut_frac=0.0, device="cpu", mixed_precision=False,
                            progress=False, verbose=False)
    assert len(hs) == N_LAYERS + 1                                  # one epoch per stage
    top = N_LAYERS + 1                                              # depth of the head
    lowest_new = [top, N_LAYERS, N_LAYERS - 1, 0]                   # head; blocks 2, 1; block 0 + embeddings
    for h, d in zip(hs, lowest_new):                                # step_lr is the lowest trainable group's
        assert h.step_lr[0] == pytest.approx(lr * decay ** (top - d))   # full (discriminative) rate at its start
        assert h.step_lr[-1] < h.step_lr[0]                         # then it falls (slanted triangle)
    # the wrong way: one schedule for the whole run (the callback) reaches the last stage at a decayed rate
    m2 = tiny_bert()
    cb = GradualUnfreezing(m2, steps_per_stage=4)
    data = [b for _ in range(N_LAYERS + 2) for b in _batches()]
    h2 = fit(m2, data, epochs=1, lr=lr, warmup_ratio=0.0, device="cpu", mixed_precision=False, progress=False,
             verbose=False, callbacks=[cb], param_groups=layerwise_lr_groups(m2, lr, 1.0))
    assert h2.step_lr[cb.log[-1][0]] < 0.3 * lr


def test_gradual_unfreezing_rates_inside_a_stage_rise_then_fall():
    m = tiny_bert()
    hs = gradual_unfreezing(m, _batches(n=40), lr=1e-2, decay=1.0, cut_frac=0.2, device="cpu",
                            mixed_precision=False, progress=False, verbose=False)
    lrs = hs[1].step_lr                                             # 20 steps: 4 rising, 16 falling
    peak = int(np.argmax(lrs))
    assert 1 <= peak <= 5 and lrs[peak] == pytest.approx(1e-2)
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1])) and all(a > b for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    with pytest.raises(ftlib.CourseError, match="cut_frac"):
        gradual_unfreezing(m, _batches(), lr=1e-2, cut_frac=1.0)


def test_above_majority_rejects_a_constant_predictor_and_accepts_a_real_one():
    rng = np.random.default_rng(0)
    y = (rng.random(872) < 0.51).astype(int)
    for c in (0, 1):                                                # one answer for every sentence
        r = above_majority(y, np.full_like(y, c))
        assert not r["ok"] and r["shares"][1 - c] == 0 and r["accuracy"] <= r["majority"]
    good = np.where(rng.random(872) < 0.8, y, 1 - y)                # right 80 % of the time
    r = above_majority(y, good)
    assert r["ok"] and r["gain"].low > 0.2 and (r["shares"] > 0.3).all()
    weak = np.where(rng.random(872) < 0.52, y, 1 - y)               # both classes, but within the noise
    assert not above_majority(y, weak)["ok"]
    with pytest.raises(ftlib.CourseError, match="equal length"):
        above_majority(y, y[:-1])
