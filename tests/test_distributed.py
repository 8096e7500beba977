"""ftlib.distributed and fit under torchrun: 2 gloo processes on the CPU train a tiny real BERT to the
weights of the one-process run with the same global batch, and a checkpoint written by 2 processes
resumes in 1 (and the other way round) to the same final weights."""
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import make_classification_data, make_tiny_bert, make_tiny_llama
from ftlib import CourseError, distributed
from ftlib.batches import DeviceBatches
from ftlib.train import evaluate, fit

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SETTINGS = dict(epochs=2, lr=3e-3, warmup_ratio=0.2, device="cpu", progress=False)


# ------------------------------------------------------------- the runs (here and in the workers)
def lm_data(data: dict) -> dict:
    """Next-token targets for the rows of random lengths: each shard holds its own number of tokens."""
    return {**data, "labels": data["input_ids"].masked_fill(data["attention_mask"] == 0, -100)}


def batches(kind: str):
    """The training batches of a run: static shuffled DeviceBatches (of sentences to classify, or of
    text for a causal LM), or a list of batches of uneven sizes (7, 5 ... rows: the two processes'
    shards hold different numbers of rows)."""
    data = make_classification_data(n=48)
    if kind == "lm":
        return DeviceBatches(lm_data(data), batch_size=8, shuffle=True, seed=1, static=True)
    if kind == "device":
        return DeviceBatches(data, batch_size=8, shuffle=True, seed=1, static=True)
    cuts = [0, 8, 15, 23, 28, 36, 43, 48]
    return [{k: v[a:b] for k, v in data.items()} for a, b in zip(cuts, cuts[1:])]


def eval_batches(kind: str):
    """21 rows in static batches of 8: the last one is padded with ignored rows (one shard holds 1 real row)."""
    data = make_classification_data(n=21, seed=3)
    return DeviceBatches(lm_data(data) if kind == "lm" else data, batch_size=8, static=True)


def run(kind="device", checkpoint_dir=None, stop_at=None, resume=False, seed=0, grad_accum_steps=1):
    """One fit of a fresh tiny BERT (float32, no dropout); returns what the test compares."""
    torch.manual_seed(seed)
    lm = kind == "lm"
    model = make_tiny_llama(seed=seed) if lm else make_tiny_bert(dropout=0.0, seed=seed)
    task = "causal_lm" if lm else "classification"
    callbacks = [lambda info: info["step"] == stop_at] if stop_at else []
    h = fit(model, batches(kind), eval_batches(kind), task=task, checkpoint_dir=checkpoint_dir, resume=resume,
            callbacks=callbacks, grad_accum_steps=grad_accum_steps, verbose=True, **SETTINGS)
    m = evaluate(model, eval_batches(kind), "cpu", task=task, predictions=not lm)
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "step_loss": h.step_loss,
            "eval_loss": h.eval_loss, "eval_accuracy": h.eval_accuracy, "examples": h.examples, "tokens": h.tokens,
            "stopped": h.stopped, "metrics": {k: torch.as_tensor(v) for k, v in m.items()}}


WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_distributed import run, batches
from ftlib import CourseError, distributed
from ftlib.train import fit
from conftest import make_classification_data, make_tiny_bert
from ftlib.batches import DeviceBatches

out, plan = sys.argv[1], json.loads(sys.argv[2])
results = {{name: run(**kw) for name, kw in plan.items()}}
try:                                          # batches of one row cannot be split over two processes
    fit(make_tiny_bert(), [{{k: v[:1] for k, v in b.items()}} for b in batches("device")], device="cpu",
        progress=False, verbose=False)
except CourseError as e:
    results["error"] = str(e)
try:                                          # a shuffle seeded by rank: other global batches on each process
    fit(make_tiny_bert(), DeviceBatches(make_classification_data(n=48), batch_size=8, shuffle=True,
                                        seed=distributed.rank()), device="cpu", progress=False, verbose=False)
except CourseError as e:
    results["seeded_by_rank"] = str(e)
if distributed.is_main():
    torch.save(results, out)
results = None
distributed.shutdown()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp_path, plan: dict, n: int = 2):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS)))
    out = tmp_path / "results.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(script), str(out), json.dumps(plan)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**_env(), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return torch.load(out, weights_only=False), proc.stdout


def _env():
    import os
    env = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def assert_same_run(a, b, atol=1e-6):
    for name, x in a["state"].items():
        torch.testing.assert_close(b["state"][name], x, rtol=0, atol=atol, msg=name)
    assert b["step_loss"] == pytest.approx(a["step_loss"], abs=atol)
    assert b["eval_loss"] == pytest.approx(a["eval_loss"], abs=atol)
    assert b["eval_accuracy"] == a["eval_accuracy"]
    assert b["stopped"] == a["stopped"]
    for k, v in a["metrics"].items():
        torch.testing.assert_close(b["metrics"][k], v, rtol=atol, atol=atol, msg=k)    # (perplexity ~60)


# -------------------------------------------------------------------------------- the tests
@pytest.mark.slow
def test_two_gloo_processes_train_the_weights_of_one_and_resume_across_process_counts(tmp_path):
    one = {"device": run(), "uneven": run("uneven", grad_accum_steps=2), "lm": run("lm")}
    stopped = run(checkpoint_dir=tmp_path / "by1", stop_at=9)                  # written by 1 process
    assert stopped["stopped"] == "callback" and len(stopped["step_loss"]) == 9

    two, stdout = torchrun(tmp_path, {
        "device": {}, "uneven": {"kind": "uneven", "grad_accum_steps": 2}, "lm": {"kind": "lm"},
        "stopped": {"checkpoint_dir": str(tmp_path / "by2"), "stop_at": 5},       # written by 2 processes
        "resumed_1_to_2": {"checkpoint_dir": str(tmp_path / "by1"), "resume": True, "seed": 7}})

    assert len(one["device"]["step_loss"]) == 12 and len(one["uneven"]["step_loss"]) == 8
    # the same global batches, the same optimiser steps, the same weights up to float32 rounding; with
    # accumulation over uneven shards, AdamW divides the tiny gradients of rarely seen embedding rows by
    # their own magnitude, which makes their rounding (~1e-9) a difference of ~2e-6 after 8 steps
    for kind, atol in (("device", 1e-6), ("uneven", 1e-5), ("lm", 1e-6)):
        assert_same_run(one[kind], two[kind], atol)
        assert (two[kind]["examples"], two[kind]["tokens"]) == (one[kind]["examples"], one[kind]["tokens"])
    # rank 0 alone prints: one line per epoch of the runs that reached an epoch's end
    assert stdout.count("epoch 2/2:") == 4, stdout
    assert "cannot be split over 2 processes" in two["error"]
    assert "different first batches of the epoch" in two["seeded_by_rank"]

    assert_same_run(one["device"], two["resumed_1_to_2"])                      # 1 process -> 2 processes
    assert len(two["stopped"]["step_loss"]) == 5
    assert sorted(p.name for p in (tmp_path / "by2").iterdir()) == ["checkpoint.pt"]
    resumed = run(checkpoint_dir=tmp_path / "by2", resume=True, seed=7)        # 2 processes -> 1 process
    assert_same_run(one["device"], resumed)


def test_shards_are_contiguous_blocks_that_rebuild_the_batch():
    batch = {"input_ids": torch.arange(14).view(7, 2), "labels": torch.arange(7)}
    parts = [distributed.shard(batch, r, 3) for r in range(3)]
    assert [len(p["labels"]) for p in parts] == [3, 2, 2]
    assert torch.equal(torch.cat([p["input_ids"] for p in parts]), batch["input_ids"])
    assert distributed.world() == 1 and distributed.rank() == 0 and distributed.is_main()
    t = torch.ones(2)
    assert distributed.all_reduce_sum(t) is t and distributed.gather_objects(3) == [3]


def test_world_size_without_torchrun_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(CourseError, match="torchrun"):
        distributed.init_from_env("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init_from_env("cpu") == 1


def test_under_torchrun_each_process_picks_the_gpu_of_its_local_rank(monkeypatch):
    from ftlib.device import pick_device

    monkeypatch.delenv("FTLIB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert pick_device() == torch.device("cuda")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert pick_device() == torch.device("cuda", 1)
