"""The training engine (ftlib.train): every check compares with an independent reference -- a loop
written here by hand with transformers' own schedule and losses -- and shows the wrong answer it rejects."""
import math

import pytest
import torch
import torch.nn.functional as F
import transformers

from conftest import make_classification_data, make_tiny_bert, make_tiny_llama
from ftlib.batches import DeviceBatches
from ftlib.errors import CourseError
from ftlib.train import evaluate, fit, make_optimizer

QUIET = dict(progress=False, verbose=False)


def batches_of(data: dict, size: int) -> list[dict]:
    n = len(data["input_ids"])
    return [{k: v[s:s + size] for k, v in data.items()} for s in range(0, n, size)]


def plain_loop(model, batches, *, epochs, lr, weight_decay, warmup_steps, clip=1.0, loss="classification",
               groups_of=1, divide_by=None):
    """The reference: AdamW with no decay on 1-D weights, transformers' linear schedule, clipping."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=lr)
    groups = [batches[i:i + groups_of] for i in range(0, len(batches), groups_of)]
    sched = transformers.get_linear_schedule_with_warmup(opt, warmup_steps, len(groups) * epochs)
    model.train()
    for _ in range(epochs):
        for group in groups:
            for b in group:
                if loss == "classification":
                    out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                    value = F.cross_entropy(out, b["labels"])
                else:                                    # transformers' own causal-LM loss
                    value = model(input_ids=b["input_ids"], labels=b["labels"]).loss
                (value / (divide_by or len(group))).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            opt.zero_grad()
    return model


def assert_same_weights(a, b, atol=1e-6):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=atol, msg=name)


def max_weight_gap(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------ the same maths as by hand
def test_classification_fit_equals_the_plain_loop():
    data = make_classification_data(40)
    batches = batches_of(data, 8)
    ref = plain_loop(make_tiny_bert(), batches, epochs=2, lr=1e-3, weight_decay=0.01, warmup_steps=1)
    model = make_tiny_bert()
    h = fit(model, batches, epochs=2, lr=1e-3, weight_decay=0.01, warmup_ratio=0.1, device="cpu", **QUIET)
    assert len(h.step_loss) == 10 and h.examples == 80
    assert_same_weights(model, ref)
    # the check can fail: one more step, or decay on the biases, is visible
    wrong = plain_loop(make_tiny_bert(), batches, epochs=2, lr=1e-3, weight_decay=0.01, warmup_steps=0)
    assert max_weight_gap(model, wrong) > 1e-4


def test_causal_lm_fit_uses_transformers_loss_and_the_model_task_agrees():
    g = torch.Generator().manual_seed(0)
    blocks = {"input_ids": torch.randint(1, 64, (12, 16), generator=g)}
    blocks["labels"] = blocks["input_ids"].clone()
    batches = batches_of(blocks, 4)
    ref = plain_loop(make_tiny_llama(), batches, epochs=2, lr=3e-3, weight_decay=0.0, warmup_steps=0, loss="lm")
    for task in ("causal_lm", "model"):
        model = make_tiny_llama()
        fit(model, batches, task=task, epochs=2, lr=3e-3, weight_decay=0.0, warmup_ratio=0.0, device="cpu", **QUIET)
        assert_same_weights(model, ref, atol=2e-6)


def test_chunked_lm_loss_equals_the_full_loss_and_gradient():
    from ftlib.lm import causal_lm_loss, chunked_lm_loss

    model = make_tiny_llama(tied=False)
    ids = torch.randint(1, 64, (3, 10), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[0, :4] = -100
    hidden = model.model(input_ids=ids).last_hidden_state
    full = causal_lm_loss(model.lm_head(hidden), labels, reduction="sum")
    g_full = torch.autograd.grad(full, model.lm_head.weight, retain_graph=True)[0]
    chunked = chunked_lm_loss(hidden, model.lm_head, labels, chunk_tokens=5)
    g_chunk = torch.autograd.grad(chunked, model.lm_head.weight)[0]
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(g_chunk, g_full)
    n = int((labels[:, 1:] != -100).sum())
    torch.testing.assert_close(full / n, model(input_ids=ids, labels=labels).loss)


def test_gradient_accumulation_weights_the_short_last_group_by_its_own_size():
    data = make_classification_data(20)
    small = batches_of(data, 4)                                 # 5 batches: groups of 2, 2 and 1
    ref = plain_loop(make_tiny_bert(), small, epochs=1, lr=1e-3, weight_decay=0.0, warmup_steps=0, groups_of=2)
    model = make_tiny_bert()
    h = fit(model, small, grad_accum_steps=2, lr=1e-3, weight_decay=0.0, warmup_ratio=0.0, device="cpu", **QUIET)
    assert len(h.step_loss) == 3
    assert_same_weights(model, ref)
    # the usual mistake -- dividing the last, single batch by 2 as well -- gives other weights
    wrong = plain_loop(make_tiny_bert(), small, epochs=1, lr=1e-3, weight_decay=0.0, warmup_steps=0, groups_of=2,
                       divide_by=2)
    assert max_weight_gap(model, wrong) > 1e-5


# ------------------------------------------------------------------------ checkpoints
class Crash(Exception):
    pass


def crash_at(step):
    def cb(info):
        if info["step"] == step:
            raise Crash
    return cb


def test_checkpoint_every_saves_at_those_steps(tmp_path):
    data = batches_of(make_classification_data(40), 4)
    with pytest.raises(Crash):
        fit(make_tiny_bert(), data, checkpoint_dir=tmp_path / "a", checkpoint_every=3, callbacks=[crash_at(5)],
            device="cpu", **QUIET)
    saved = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    assert saved["position"]["step"] == 3
    with pytest.raises(Crash):                           # without checkpoint_every: nothing before the epoch ends
        fit(make_tiny_bert(), data, checkpoint_dir=tmp_path / "b", callbacks=[crash_at(5)], device="cpu", **QUIET)
    assert not (tmp_path / "b" / "checkpoint.pt").exists()


@pytest.mark.parametrize("accum,stop_at", [(1, 4), (2, 3)])
def test_resume_of_a_shuffled_device_run_with_evaluation_gives_the_same_result(tmp_path, accum, stop_at):
    data = make_classification_data(48)
    settings = dict(epochs=2, lr=2e-3, warmup_ratio=0.2, grad_accum_steps=accum, **QUIET)

    def run(**kw):
        model = make_tiny_bert(dropout=0.1)
        torch.manual_seed(7)
        train = DeviceBatches(data, 8, shuffle=True, mask="4d", seed=3)
        dev = DeviceBatches(data, 16, mask="4d")
        return model, fit(model, train, dev, **settings, **kw)

    whole, h_whole = run()
    _, h1 = run(checkpoint_dir=tmp_path, callbacks=[lambda info: info["step"] == stop_at])
    assert h1.stopped == "callback"
    torch.manual_seed(999)                                # another process: another random state
    again, h2 = run(checkpoint_dir=tmp_path, resume=True)
    assert_same_weights(again, whole)
    assert h2.step_loss == pytest.approx(h_whole.step_loss, abs=1e-6)
    assert h2.eval_loss == pytest.approx(h_whole.eval_loss, abs=1e-6)


def test_resume_after_a_crash_between_step_checkpoints_with_early_stopping_gives_the_same_run(tmp_path):
    """A process that dies mid-epoch (not a clean stop) resumes from its last ``checkpoint_every`` save,
    replays the lost steps, and ends as the uninterrupted run does -- early stopping, restored best
    weights and all."""
    data, held_out = make_classification_data(48), make_classification_data(24, seed=1)
    settings = dict(epochs=6, lr=2e-2, warmup_ratio=0.0, early_stopping_patience=1, **QUIET)

    def run(**kw):
        model = make_tiny_bert(dropout=0.1)
        torch.manual_seed(7)
        train = DeviceBatches(data, 8, shuffle=True, mask="4d", seed=3)
        return model, fit(model, train, DeviceBatches(held_out, 8, mask="4d"), **settings, **kw)

    whole, h_whole = run()
    assert h_whole.stopped == "early stopping" and len(h_whole.epoch) < 6       # the case under test happens
    with pytest.raises(Crash):
        run(checkpoint_dir=tmp_path, checkpoint_every=4, callbacks=[crash_at(10)])   # dies after the step-8 save
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["position"]["step"] == 8
    torch.manual_seed(999)
    again, h_again = run(checkpoint_dir=tmp_path, checkpoint_every=4, resume=True)
    assert h_again.stopped == "early stopping" and h_again.epoch == h_whole.epoch
    assert h_again.step_loss == pytest.approx(h_whole.step_loss, abs=1e-6)
    assert h_again.eval_loss == pytest.approx(h_whole.eval_loss, abs=1e-6)
    assert_same_weights(again, whole)


def test_max_steps_runs_over_passes_and_schedules_to_zero():
    data = batches_of(make_classification_data(16), 4)
    h = fit(make_tiny_bert(), data, max_steps=10, lr=1e-3, warmup_ratio=0.0, device="cpu", **QUIET)
    assert len(h.step_loss) == 10 and h.stopped == "max_steps" and len(h.epoch) == 3
    assert h.step_lr[0] == pytest.approx(1e-3) and h.step_lr[-1] == pytest.approx(1e-4)


# ------------------------------------------------------------------ refusing bad runs
def test_nan_and_divergence_stop_the_run_before_a_checkpoint(tmp_path):
    data = batches_of(make_classification_data(40), 4)
    model = make_tiny_bert()
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.fill_(math.nan)
    with pytest.raises(CourseError, match="loss is nan"):
        fit(model, data, checkpoint_dir=tmp_path, checkpoint_every=1, device="cpu", **QUIET)
    assert not (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(CourseError, match="diverging"):   # a finite loss that explodes is caught too
        fit(make_tiny_bert(), data, lr=50.0, warmup_ratio=0.0, checkpoint_dir=tmp_path, device="cpu", **QUIET)
    assert not (tmp_path / "checkpoint.pt").exists()
    h = fit(make_tiny_bert(), data, lr=1e-3, checkpoint_dir=tmp_path, device="cpu", **QUIET)  # a sane run is not
    assert (tmp_path / "checkpoint.pt").exists() and h.stopped == ""


def test_half_precision_weights_are_refused():
    model = make_tiny_bert().to(torch.bfloat16)
    with pytest.raises(CourseError, match="float32"):
        fit(model, batches_of(make_classification_data(8), 4), device="cpu", **QUIET)


def test_one_no_decay_rule_also_inside_custom_groups():
    model = make_tiny_bert()
    layer0 = list(model.bert.encoder.layer[0].parameters())
    rest = [p for p in model.parameters() if all(p is not q for q in layer0)]
    opt = make_optimizer(model, 1e-3, 0.1, [{"params": layer0, "lr": 1e-4}, {"params": rest}])
    for g in opt.param_groups:
        assert all(p.ndim >= 2 for p in g["params"]) == (g["weight_decay"] == 0.1)
    lrs = {g["lr"] for g in opt.param_groups if any(p is layer0[0] for p in g["params"])}
    assert lrs == {1e-4}
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------- evaluation
def test_evaluate_matches_a_hand_count_and_static_padding_rows_count_for_nothing():
    data = make_classification_data(21)
    model = make_tiny_bert().eval()
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits
    loss = F.cross_entropy(logits, data["labels"]).item()
    acc = (logits.argmax(-1) == data["labels"]).float().mean().item()
    for batches in (batches_of(data, 8), DeviceBatches(data, 8, static=True, mask="4d")):
        out = evaluate(model, batches, "cpu")
        assert out["n"] == 21
        assert out["loss"] == pytest.approx(loss, abs=1e-5) and out["accuracy"] == pytest.approx(acc)
    assert len(DeviceBatches(data, 8, static=True)) == 3           # the short batch is padded, not dropped
    assert {b["input_ids"].shape[0] for b in DeviceBatches(data, 8, static=True)} == {8}


def test_evaluate_returns_the_predictions_of_the_same_pass_without_padding_rows():
    data = make_classification_data(21)
    model = make_tiny_bert(seed=3).eval()
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits
    batches = DeviceBatches(data, 8, static=True, mask="4d")        # 3 padding rows labelled -100
    out = evaluate(model, batches, "cpu", predictions=True)
    order = batches.order()                                          # evaluation order: longest first
    assert out["predictions"].shape == (21,) and out["probabilities"].shape == (21, 2)   # padding rows left out
    assert out["labels"].tolist() == data["labels"][order].tolist()
    assert out["predictions"].tolist() == logits.argmax(-1)[order].tolist()
    assert out["probabilities"] == pytest.approx(torch.softmax(logits, -1)[order].numpy(), abs=1e-5)
    assert out["accuracy"] == pytest.approx((out["predictions"] == out["labels"]).mean())
    plain = evaluate(model, batches, "cpu")
    assert out["loss"] == pytest.approx(plain["loss"], abs=1e-7) and out["accuracy"] == plain["accuracy"]
    assert len(set(out["predictions"].tolist())) == 2               # a seed whose model predicts both classes
    with pytest.raises(CourseError, match="classification"):
        evaluate(make_tiny_llama(), [{"input_ids": data["input_ids"], "labels": data["input_ids"]}], "cpu",
                 task="causal_lm", predictions=True)


def test_throughput_counts_real_rows_and_tokens_not_static_padding_copies():
    data = make_classification_data(21)                  # 3 batches of 8: the last one gets 3 padding copies
    h = fit(make_tiny_bert(), DeviceBatches(data, 8, static=True, mask="4d"), lr=1e-3, device="cpu", **QUIET)
    assert h.examples == 21                              # not 24
    assert h.tokens == int(data["attention_mask"].sum())
    assert h.examples_per_s == pytest.approx(21 / h.train_seconds)


def test_evaluate_reports_perplexity_from_the_training_loss():
    model = make_tiny_llama()
    ids = torch.randint(1, 64, (4, 12), generator=torch.Generator().manual_seed(2))
    out = evaluate(model, [{"input_ids": ids, "labels": ids}], "cpu", task="causal_lm")
    with torch.no_grad():
        ref = model(input_ids=ids, labels=ids).loss.item()
    assert out["loss"] == pytest.approx(ref, rel=1e-5) and out["perplexity"] == pytest.approx(math.exp(ref), rel=1e-5)
    assert out["n"] == 4 * 11


# ---------------------------------------------------------------------- device batches
def test_masks_without_a_host_read_give_the_same_outputs():
    data = make_classification_data(12)
    bert = make_tiny_bert().eval()
    two = next(iter(DeviceBatches(data, 12, mask="2d")))
    four = next(iter(DeviceBatches(data, 12, mask="4d")))
    assert four["attention_mask"].shape[1:3] == (1, two["input_ids"].shape[1])
    with torch.no_grad():
        torch.testing.assert_close(bert(input_ids=four["input_ids"], attention_mask=four["attention_mask"]).logits,
                                   bert(input_ids=two["input_ids"], attention_mask=two["attention_mask"]).logits)
        # the check can fail: no mask at all lets a BERT attend to the padding
        assert not torch.allclose(bert(input_ids=two["input_ids"]).logits,
                                  bert(input_ids=two["input_ids"], attention_mask=two["attention_mask"]).logits)
    llama = make_tiny_llama().eval()
    lm = dict(data, labels=data["input_ids"].masked_fill(data["attention_mask"] == 0, -100))
    none = next(iter(DeviceBatches(lm, 12, mask="none")))
    two = next(iter(DeviceBatches(lm, 12, mask="2d")))
    assert "attention_mask" not in none
    real = two["attention_mask"].bool()
    with torch.no_grad():     # right padding + causal attention: no real token can see a pad
        a = llama(input_ids=none["input_ids"]).logits[real]
        b = llama(input_ids=two["input_ids"], attention_mask=two["attention_mask"]).logits[real]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_shuffled_batches_are_new_every_pass_repeatable_and_complete():
    data = make_classification_data(64, max_len=30)
    b = DeviceBatches(data, 8, shuffle=True, seed=1)
    peek = b.order(peek=True)
    first, second = b.order(), b.order()
    assert peek == first and first != second
    assert sorted(first) == sorted(second) == list(range(64))
    assert DeviceBatches(data, 8, shuffle=True, seed=1).order() == first
    assert DeviceBatches(data, 8, shuffle=True, seed=2).order() != first
    unsorted = sorted(range(64), key=lambda i: -b.lengths[i])
    assert first != unsorted                                   # shuffled, not just sorted by length


def test_static_batches_have_few_shapes_and_padding_is_counted_by_hand():
    data = make_classification_data(50, max_len=40)
    b = DeviceBatches(data, 8, shuffle=True, static=True, pad_multiple=16, seed=0)
    assert len(b) == 6                                         # 50 // 8: the short batch is dropped
    shapes = {tuple(x["input_ids"].shape) for x in b}
    assert shapes <= set(b.shapes()) and all(rows == 8 for rows, _ in shapes) and len(b.shapes()) <= 3
    assert {tuple(x["input_ids"].shape) for x in b.warmup_batches()} == set(b.shapes())
    order = b.order(peek=True)
    slots = pad = 0
    for k in range(6):
        lens = [b.lengths[i] for i in order[8 * k:8 * k + 8]]
        width = min(40, -(-max(lens) // 16) * 16)
        slots += 8 * width
        pad += 8 * width - sum(lens)
    assert b.padding_fraction() == pytest.approx(pad / slots)
    assert b.padding_fraction() > 0.05


def test_a_training_step_reads_nothing_back_from_the_device(monkeypatch):
    """The fast path's promise: between two log points the loop never waits for the device.
    Counted on the CPU as every tensor -> Python conversion (bool, item, tolist ...)."""
    from torch.overrides import TorchFunctionMode

    import ftlib.train as engine

    reads = {"n": 0}

    class HostReads(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in ("__bool__", "item", "tolist", "__int__", "__float__", "__index__"):
                reads["n"] += 1
            return func(*args, **(kwargs or {}))

    monkeypatch.setattr(engine, "_check_model_inputs", lambda *a, **k: None)   # a CPU-only check
    data = make_classification_data(64)
    for mask, want_zero in (("4d", True), ("2d", False)):
        model = make_tiny_bert()
        train = DeviceBatches(data, 8, shuffle=True, mask=mask)
        with HostReads():
            reads["n"] = 0
            fit(model, train, log_every=10**6, device="cpu", fused=True, **QUIET)
        # 8 steps: the only reads are set-up and the end-of-epoch flush (6 here); a 2-D mask makes
        # transformers ask mask.all() in every step. (So does AdamW's unfused kernel, which reads its
        # step counter with .item(): the engine uses the fused kernel on a GPU.)
        assert (reads["n"] <= 8) == want_zero, (mask, reads["n"])


def test_device_batches_cover_every_example_once_and_refuse_bad_data():
    data = make_classification_data(30)
    b = DeviceBatches(data, 8)
    rows = sorted(tuple(r[r != 0].tolist()) for x in b for r in x["input_ids"])
    assert rows == sorted(tuple(r[r != 0].tolist()) for r in data["input_ids"])
    with pytest.raises(CourseError, match="tokenize_dataset"):
        from datasets import Dataset
        DeviceBatches(Dataset.from_dict({"sentence": ["a"], "label": [0]}), 4)
    with pytest.raises(CourseError, match="mask"):
        DeviceBatches(data, 8, mask="3d")
    with pytest.raises(CourseError, match="at least"):
        DeviceBatches(make_classification_data(4), 8, shuffle=True, static=True)


def test_cuda_graph_mode_marks_a_new_step_before_every_compiled_call(monkeypatch):
    # CUDA graphs reuse their output memory: without torch.compiler.cudagraph_mark_step_begin() before
    # each call, the warm-up's backward read overwritten outputs on an H200 (results/20261129-h200-ablation.md).
    # torch.compile is replaced by the identity here, so this runs in a second on any machine.
    import ftlib.train as train

    calls, marks = [], []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: (lambda batch: calls.append(kw["mode"]) or fn(batch)))
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(len(calls)))
    data = make_classification_data(32)
    train_b = DeviceBatches(data, 8, shuffle=True, static=True, mask="4d", pad_multiple=16)
    eval_b = DeviceBatches(data, 16, static=True, mask="4d", pad_multiple=16)
    fit(make_tiny_bert(), train_b, eval_b, epochs=1, compile="reduce-overhead", device="cpu", **QUIET)
    assert calls and set(calls) == {"reduce-overhead"}
    assert marks == list(range(len(calls)))          # one mark just before each call, none missing
    # the check can fail: the default compile mode (no CUDA graphs) marks nothing
    calls.clear(), marks.clear()
    fit(make_tiny_bert(), train_b, eval_b, epochs=1, compile=True, device="cpu", **QUIET)
    assert calls and marks == []
    # and the marking wrapper is what makes the difference
    assert train._compile(make_tiny_bert(), train.classification_loss, "reduce-overhead").__name__ == "replay"
