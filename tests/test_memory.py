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
