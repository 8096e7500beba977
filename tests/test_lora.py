"""ftlib.lora: from-scratch LoRA, checked against its definition and against peft."""
import copy

import pytest
import torch
from torch import nn

import ftlib
from ftlib.lora import LoRALinear, add_lora, lora_layers, merge_lora
from ftlib.strategies import count_parameters
from conftest import make_tiny_bert


def tiny_bert(seed=0):
    return make_tiny_bert(vocab=50, hidden=16, layers=2, seed=seed, dropout=0.1).eval()


def randomise(layer: LoRALinear, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=g))
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g))


def test_lora_linear_is_base_at_init_and_the_formula_after():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    lora = LoRALinear(copy.deepcopy(base), r=2, alpha=4)
    x = torch.randn(3, 6)
    assert lora.lora_A.shape == (2, 6) and lora.lora_B.shape == (5, 2)
    assert torch.count_nonzero(lora.lora_B) == 0 and torch.count_nonzero(lora.lora_A) > 0
    torch.testing.assert_close(lora(x), base(x))
    randomise(lora)
    want = x @ base.weight.T + base.bias + 2.0 * (x @ lora.lora_A.T @ lora.lora_B.T)   # alpha / r = 2
    torch.testing.assert_close(lora(x), want)


def test_gradients_reach_only_A_and_B():
    torch.manual_seed(0)
    lora = LoRALinear(nn.Linear(6, 5), r=2, alpha=2)
    randomise(lora)
    lora(torch.randn(4, 6)).pow(2).sum().backward()
    assert lora.base.weight.grad is None and lora.base.bias.grad is None
    assert lora.lora_A.grad is not None and lora.lora_B.grad is not None
    assert {n for n, p in lora.named_parameters() if p.requires_grad} == {"lora_A", "lora_B"}


def test_merge_unmerge_and_to_linear_give_the_same_output():
    torch.manual_seed(0)
    lora = LoRALinear(nn.Linear(6, 5), r=3, alpha=5)
    randomise(lora)
    x = torch.randn(4, 6)
    w0 = lora.base.weight.clone()
    y = lora(x)
    lora.merge()
    torch.testing.assert_close(lora(x), y)
    assert not torch.allclose(lora.base.weight, w0)
    plain = lora.to_linear()
    assert type(plain) is nn.Linear
    torch.testing.assert_close(plain(x), y)
    lora.unmerge()
    torch.testing.assert_close(lora.base.weight, w0)
    torch.testing.assert_close(lora(x), y)


def test_dropout_only_acts_on_the_lora_branch_in_training():
    torch.manual_seed(0)
    lora = LoRALinear(nn.Linear(6, 5), r=2, alpha=2, dropout=0.5)
    x = torch.randn(4, 6)
    lora.train()
    torch.testing.assert_close(lora(x), lora.base(x))      # B = 0: dropout has nothing to drop
    randomise(lora)
    lora.eval()                                            # evaluation: no dropout, the full update
    torch.testing.assert_close(lora(x), lora.base(x) + x @ lora.delta_weight().T)
    lora.train()                                           # training: dropout on x in the LoRA branch only
    torch.manual_seed(1)
    y = lora(x)
    torch.manual_seed(1)
    kept = torch.nn.functional.dropout(x, 0.5, training=True)   # the same mask, drawn the same way
    torch.testing.assert_close(y, lora.base(x) + kept @ lora.delta_weight().T)
    assert not torch.allclose(y, lora.base(x) + x @ lora.delta_weight().T)      # dropout did act


def test_add_lora_counts_freezes_and_keeps_head():
    m = add_lora(tiny_bert(), target_modules=("query", "value"), r=4, alpha=8)
    layers = lora_layers(m)
    assert len(layers) == 2 * 2
    assert all(n.endswith(("query", "value")) for n, _ in layers)
    lora_params = 2 * 2 * 4 * (16 + 16)
    head = 16 * 2 + 2
    assert count_parameters(m)[0] == lora_params + head
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith("classifier") for n in trainable)


def test_add_lora_errors():
    with pytest.raises(ftlib.CourseError, match="query"):
        add_lora(tiny_bert(), target_modules=("q_proj",))
    m = add_lora(tiny_bert())
    with pytest.raises(ftlib.CourseError):
        add_lora(m)
    with pytest.raises(ftlib.CourseError):
        LoRALinear(nn.Linear(4, 4), r=5)


def test_merge_lora_returns_the_plain_architecture():
    ref = tiny_bert()
    m = add_lora(copy.deepcopy(ref), r=2)
    for _, layer in lora_layers(m):
        randomise(layer)
    x = torch.randint(0, 50, (2, 7))
    y = m(input_ids=x).logits
    merge_lora(m)
    assert not lora_layers(m)
    assert type(m.bert.encoder.layer[0].attention.self.query) is nn.Linear
    assert set(m.state_dict()) == set(ref.state_dict())
    torch.testing.assert_close(m(input_ids=x).logits, y)


def test_matches_peft():
    peft = pytest.importorskip("peft")
    ref = tiny_bert()
    ours = add_lora(copy.deepcopy(ref), target_modules=("query", "value"), r=4, alpha=8)
    cfg = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"],
                          lora_dropout=0.0)
    theirs = peft.get_peft_model(copy.deepcopy(ref), cfg).eval()
    assert count_parameters(ours)[0] == theirs.get_nb_trainable_parameters()[0]
    x = torch.randint(0, 50, (3, 7))
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=x).logits, theirs(input_ids=x).logits)   # B = 0 in both
        torch.testing.assert_close(ours(input_ids=x).logits, ref(input_ids=x).logits)
        # the same A and B in both: the same outputs
        modules = dict(theirs.named_modules())
        for name, layer in lora_layers(ours):
            randomise(layer, seed=len(name))
            p = modules[f"base_model.model.{name}"]
            p.lora_A["default"].weight.copy_(layer.lora_A)
            p.lora_B["default"].weight.copy_(layer.lora_B)
        y = ours(input_ids=x).logits
        torch.testing.assert_close(y, theirs(input_ids=x).logits)
        assert not torch.allclose(y, ref(input_ids=x).logits, atol=1e-3)


def test_add_lora_on_some_blocks_only_equals_peft_layers_to_transform():
    peft = pytest.importorskip("peft")
    from ftlib.lora import block_index
    assert [block_index(n) for n in ("model.layers.7.mlp.up_proj", "bert.encoder.layer.0.attention.self.query",
                                     "transformer.h.11.attn", "bert.embeddings.word_embeddings", "classifier")] \
        == [7, 0, 11, None, None]
    ref = make_tiny_bert(vocab=50, hidden=16, layers=3, seed=0, dropout=0.1).eval()
    ours = add_lora(copy.deepcopy(ref), target_modules=("query", "value"), r=4, alpha=8, layers=[1, 2])
    assert sorted({block_index(n) for n, _ in lora_layers(ours)}) == [1, 2]
    cfg = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"],
                          lora_dropout=0.0, layers_to_transform=[1, 2], layers_pattern="layer")
    theirs = peft.get_peft_model(copy.deepcopy(ref), cfg)
    assert count_parameters(ours)[0] == theirs.get_nb_trainable_parameters()[0]
    theirs_names = {n.removeprefix("base_model.model.").removesuffix(".lora_A.default.weight")
                    for n, _ in theirs.named_parameters() if "lora_A" in n}
    assert theirs_names == {n for n, _ in lora_layers(ours)}
    # the wrong answer rejected: every block wrapped has more trainable parameters than peft's
    assert count_parameters(add_lora(copy.deepcopy(ref), r=4, alpha=8))[0] > theirs.get_nb_trainable_parameters()[0]
    # no graph is recorded below block 1, so the backward pass stops there (a cheaper step)
    seen = {}
    for i in range(3):
        ours.bert.encoder.layer[i].register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out[0].requires_grad))
    ours(input_ids=torch.randint(0, 50, (2, 7)))
    assert seen == {0: False, 1: True, 2: True}
    with pytest.raises(ftlib.CourseError, match="blocks 0..2"):
        add_lora(copy.deepcopy(ref), layers=[3])
    with pytest.raises(ftlib.CourseError, match="blocks"):
        add_lora(copy.deepcopy(ref), layers=[])
