"""ftlib.strategies on a tiny random BERT (fast, no download)."""
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
