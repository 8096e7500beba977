"""ftlib.memory: the bytes-per-parameter formula, checked against the real tensors of a tiny BERT
after an AdamW step, and shown to reject a wrong formula."""
import dataclasses

import pytest
import torch

from conftest import make_classification_data, make_tiny_bert
from ftlib import CourseError
from ftlib.lora import add_lora
from ftlib.memory import (RECIPES, Breakdown, compare, format_table, measured_bytes, table, training_bytes)
from ftlib.train import make_optimizer


def one_step(model, params, optimizer):
    """One forward/backward pass of the tiny BERT on a real batch, then an AdamW step."""
    data = make_classification_data(n=8)
    out = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"], labels=data["labels"])
    out.loss.backward()
    if params is not None:                             # master weights: float32 gradients from the bf16 ones
        for master, p in zip(params, model.parameters()):
            master.grad = p.grad.float()
    optimizer.step()


def n_params(model, trainable=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def test_fp32_formula_equals_the_tensors_after_an_adamw_step():
    model = make_tiny_bert()
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.01)
    one_step(model, None, opt)
    measured = measured_bytes(model, opt)
    n, k = n_params(model), len(list(model.parameters()))
    assert measured.weights == measured.gradients == 4 * n
    assert measured.optimizer == 8 * n + 4 * k                 # exp_avg, exp_avg_sq, a float32 step per tensor
    assert compare(training_bytes(n, "fp32", tensors=k), measured) is measured
    assert training_bytes(n, "fp32").total == 16 * n


def test_bf16_with_float32_master_weights_equals_the_tensors():
    model = make_tiny_bert().to(torch.bfloat16)
    master = [p.detach().float().requires_grad_() for p in model.parameters()]
    opt = torch.optim.AdamW(master, lr=1e-3)
    one_step(model, master, opt)
    measured = measured_bytes(model, opt, master=master)
    n, k = n_params(model), len(master)
    assert (measured.weights, measured.gradients, measured.master) == (2 * n, 2 * n, 4 * n)
    compare(training_bytes(n, "bf16-mixed", tensors=k), measured)
    assert training_bytes(n, "bf16-mixed").total == training_bytes(n, "fp32").total == 16 * n


def test_lora_on_a_bf16_base_equals_the_tensors():
    model = add_lora(make_tiny_bert(), target_modules=("query", "value"), r=4)
    for p in model.parameters():                        # the frozen base in bf16, adapters and head float32
        if not p.requires_grad:
            p.data = p.data.to(torch.bfloat16)
    trainable = n_params(model, trainable=True)
    base = n_params(model) - trainable
    opt = make_optimizer(model, lr=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        one_step(model, None, opt)
    measured = measured_bytes(model, opt)
    k = sum(1 for p in model.parameters() if p.requires_grad)
    compare(training_bytes(base, "lora", trainable=trainable, tensors=k), measured)


@pytest.mark.parametrize("wrong", [
    dict(optimizer=4),           # one AdamW moment, not two
    dict(optimizer=0),           # SGD's memory, not AdamW's
    dict(grad=0),                # gradients forgotten
    dict(weight=2),              # weights counted as bf16 while they are float32
])
def test_a_wrong_formula_is_rejected(wrong):
    model = make_tiny_bert()
    opt = make_optimizer(model, lr=1e-3)
    one_step(model, None, opt)
    n, k = n_params(model), len(list(model.parameters()))
    bad = dataclasses.replace(RECIPES["fp32"], **wrong)
    with pytest.raises(CourseError, match="does not match"):
        compare(training_bytes(n, bad, tensors=k), measured_bytes(model, opt))


def test_forgetting_the_master_weights_is_rejected():
    model = make_tiny_bert().to(torch.bfloat16)
    master = [p.detach().float().requires_grad_() for p in model.parameters()]
    opt = torch.optim.AdamW(master, lr=1e-3)
    one_step(model, master, opt)
    bad = dataclasses.replace(RECIPES["bf16-mixed"], master=0)
    with pytest.raises(CourseError, match="master"):
        compare(training_bytes(n_params(model), bad, tensors=len(master)), measured_bytes(model, opt, master=master))


def test_the_table_for_common_models_and_gpus():
    rows = {(r["model"], r["recipe"]): r for r in table()}
    assert len(rows) == 3 * len(RECIPES)
    assert rows["7B", "fp32"]["GB"] == pytest.approx(112)            # 16 bytes x 7e9
    assert rows["7B", "fp32"]["80 GB GPUs"] == 2 and rows["7B", "fp32"]["141 GB GPUs"] == 1
    assert rows["1B", "fp32"]["24 GB GPUs"] == 1                      # 16 GB of state (+ activations)
    assert rows["70B", "fp32"]["80 GB GPUs"] == 14                    # 1120 GB sharded over 14
    assert rows["7B", "lora-4bit"]["24 GB GPUs"] == 1                 # QLoRA: a 7B model on one 24 GB GPU
    assert rows["70B", "lora-4bit"]["GB"] == pytest.approx(70 * (0.5625 + 0.16))
    assert rows["70B", "lora-4bit"]["80 GB GPUs"] == 1
    assert rows["70B", "lora"]["141 GB GPUs"] == 2                    # bf16 base of 140 GB + adapters
    md = format_table(table(models=(7e9,), recipes=("fp32",)))
    assert md.splitlines()[2].startswith("| 7B | fp32 | 16.00 | 112.0 |")


def test_sharding_divides_every_part():
    whole, quarter = training_bytes(7e9, "bf16-mixed"), training_bytes(7e9, "bf16-mixed", shards=4)
    assert quarter == Breakdown(*(getattr(whole, f) / 4 for f in ("weights", "gradients", "optimizer", "master")))


@pytest.mark.parametrize("kwargs,message", [
    (dict(n_params=0), "n_params > 0"),
    (dict(n_params=10, shards=0), "shards >= 1"),
    (dict(n_params=10, recipe="fp16"), "Unknown recipe"),
    (dict(n_params=10, trainable=11), "more than"),
])
def test_bad_input_is_one_clear_error(kwargs, message):
    with pytest.raises(CourseError, match=message):
        training_bytes(**kwargs)
    with pytest.raises(CourseError, match="> 0"):
        table(gpus=(0,))


def test_the_readme_memory_table_is_the_one_the_function_computes():
    """README's table of model sizes and GPUs is the output of ftlib.memory, not numbers typed by hand."""
    from pathlib import Path

    from ftlib.memory import format_table, table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert format_table(table()).strip() in readme
    wrong = format_table(table()).replace("| 16.00 |", "| 8.00 |", 1)      # e.g. forgetting the AdamW moments
    assert wrong.strip() not in readme


# ------------------------------------------------ activations, ZeRO stages (lesson 19)
def saved_and_estimate(batch, seq_len, **wrong):
    """Measured saved-for-backward bytes of a tiny real BERT (training mode, dropout on) and the formula."""
    from ftlib.memory import SavedTensors, activation_bytes

    model = make_tiny_bert(dropout=0.1).train()
    ids = torch.randint(6, 64, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    with SavedTensors(model) as saved:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros(batch, dtype=torch.long))
    c = model.config
    est = activation_bytes(layers=c.num_hidden_layers, hidden=c.hidden_size, intermediate=c.intermediate_size,
                           heads=c.num_attention_heads, batch=batch, seq_len=seq_len)
    return saved.bytes, est


@pytest.mark.parametrize("batch,seq_len", [(4, 16), (8, 64), (2, 128)])
def test_activation_formula_matches_the_saved_tensors(batch, seq_len):
    from ftlib.memory import check_estimate

    measured, est = saved_and_estimate(batch, seq_len)
    assert abs(check_estimate(est.total, measured, rtol=0.02)) < 0.02


@pytest.mark.parametrize("wrong", ["no attention matrices", "bf16 bytes", "no feed-forward", "one hidden tensor a layer"])
def test_a_wrong_activation_formula_is_rejected(wrong):
    from ftlib.memory import check_estimate

    measured, est = saved_and_estimate(2, 128)
    layers, t, h = 2, 2 * 128, 32
    bad = {"no attention matrices": est.total - est.attention,          # attention as if it cost nothing
           "bf16 bytes": est.total / 2,                                   # 2 bytes a value in a float32 run
           "no feed-forward": est.total - est.feed_forward,               # the GELU tensors forgotten
           "one hidden tensor a layer": est.total - 9 * layers * t * h * 4}[wrong]
    with pytest.raises(CourseError, match="does not match"):
        check_estimate(bad, measured, rtol=0.02)


def test_saved_tensors_leaves_out_the_parameters_and_counts_a_storage_once():
    from ftlib.memory import SavedTensors

    layer = torch.nn.Linear(8, 8)
    x = torch.randn(5, 8)
    with SavedTensors(layer) as saved:
        y = layer(x)                                    # saves x and the weight (a parameter)
        z = (y * y).sum()                               # saves y, twice (both factors): one storage
    assert (saved.count, saved.bytes) == (2, 2 * 5 * 8 * 4)
    with SavedTensors() as everything:
        layer(x.requires_grad_())                       # the input needs a gradient: the weight is saved too
    assert everything.bytes == 5 * 8 * 4 + 8 * 8 * 4    # without a model, the weight counts
    z.backward()
    with pytest.raises(CourseError, match="torch.nn.Module"):
        SavedTensors("model")


def test_zero_stages_split_the_state_one_part_after_another():
    from ftlib.memory import zero_bytes

    whole = training_bytes(7e9, "bf16-mixed")
    assert zero_bytes(7e9, world=8, stage=0) == whole
    one = zero_bytes(7e9, world=8, stage=1)
    assert (one.weights, one.gradients) == (whole.weights, whole.gradients)
    assert (one.optimizer, one.master) == (whole.optimizer / 8, whole.master / 8)
    two = zero_bytes(7e9, world=8, stage=2)
    assert two.gradients == whole.gradients / 8 and two.weights == whole.weights
    assert zero_bytes(7e9, world=8, stage=3) == training_bytes(7e9, "bf16-mixed", shards=8)
    assert one.total / 1e9 == pytest.approx(14 + 14 + (56 + 28) / 8)           # 38.5 GB per GPU
    assert one != Breakdown(whole.weights, whole.gradients / 8, whole.optimizer / 8, whole.master / 8)


@pytest.mark.parametrize("call,message", [
    (lambda: __import__("ftlib.memory").memory.zero_bytes(7e9, world=8, stage=4), "stage of 0, 1, 2 or 3"),
    (lambda: __import__("ftlib.memory").memory.zero_bytes(7e9, world=0, stage=1), "world >= 1"),
    (lambda: __import__("ftlib.memory").memory.activation_bytes(layers=6, hidden=384, intermediate=1536, heads=12,
                                                                batch=8, seq_len=0), "seq_len=0"),
    (lambda: __import__("ftlib.memory").memory.activation_bytes(layers=6, hidden=384.0, intermediate=1536,
                                                                heads=12, batch=8, seq_len=8), "hidden=384.0"),
    (lambda: __import__("ftlib.memory").memory.check_estimate(1, 0, 0.1), "measured > 0"),
])
def test_bad_input_to_the_new_functions_is_one_clear_error(call, message):
    with pytest.raises(CourseError, match=message):
        call()
