"""`python -m ftlib train` (ftlib/recipes.py): a fine-tuning run from flags, through ftlib.train.fit.

* a one-process run of course-bert on 64 + 64 SST-2 sentences writes its metrics, checkpoint and model;
* the same tiny run started by `torchrun --nproc_per_node=2` and by `accelerate launch` (2 processes, gloo,
  CPU) ends with the weights of the one-process run (same global batch, float32, --dropout 0), and only
  rank 0 prints; `accelerate launch --cpu --num_processes 2`, which starts ONE process, is refused;
* a run stopped part-way resumes to the weights of an uninterrupted run; lora/head train what they say;
  MRPC is encoded as sentence pairs;
* an existing output folder is never overwritten, and bad flags are one clear error line.

The runs that compare weights use `--model tiny-bert` (a random 2-layer BERT, hidden 32, built in
ftlib/recipes.py from transformers' BertConfig on course-bert's vocabulary): course-bert's 22M weights
would cost about 30 s per process here. The subprocesses run two at a time (most of their time is
importing torch); the in-process checks call ftlib.recipes directly. About 60-90 s on 2 busy cores.
"""
import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import ftlib
from ftlib import recipes

pytestmark = pytest.mark.slow           # python -m ftlib train, torchrun and accelerate in subprocesses

ROOT = Path(__file__).resolve().parent.parent
CPU_CONFIG = ROOT / "configs" / "accelerate_cpu_2proc.yaml"
GPU_CONFIG = ROOT / "configs" / "accelerate_multi_gpu.yaml"
# 64 training and 64 evaluation sentences of SST-2, 32 tokens, batches of 8: 8 optimiser steps. Dropout off:
# each process would draw its own masks, so data-parallel runs equal the one-process run only without it.
SLICE = ["--data", "sst2", "--train-size", "64", "--eval-size", "64", "--max-length", "32", "--batch-size", "8"]
TINY = ["--model", "tiny-bert", *SLICE, "--epochs", "1", "--lr", "1e-3", "--dropout", "0"]
METRIC_KEYS = {"eval_accuracy", "eval_loss", "eval_size", "train_size", "train_loss", "steps", "epochs_done",
               "stopped", "examples", "tokens", "train_seconds", "examples_per_s", "world_size", "device",
               "precision", "trainable_parameters", "total_parameters", "checkpoint", "model_dir", "settings",
               "history"}


@pytest.fixture(scope="module", autouse=True)
def sst2_mirror():
    mirror = ftlib.data_dir()
    if mirror is None or not (mirror / "sst2" / "train.tsv").is_file():
        pytest.skip("needs the data mirror (FTLIB_DATA_DIR with sst2/ and mrpc/; the Makefile sets it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    """This environment without a launcher's variables, one thread per process."""
    out = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT", "ACCELERATE_USE_CPU",
                                                            "ACCELERATE_MIXED_PRECISION")}
    return {**out, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "FTLIB_DEVICE": "cpu"}


def commands(tmp: Path) -> dict:
    py = [sys.executable]
    accelerate = [*py, "-m", "accelerate.commands.launch"]
    torchrun = [*py, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                f"--master_port={free_port()}"]
    return {   # longest first: they run two at a time
        "course-bert": [*py, "-m", "ftlib", "train", "--model", "course-bert", *SLICE, "--max-steps", "3",
                        "--output", str(tmp / "course-bert")],
        "accelerate": [*accelerate, "--config_file", str(CPU_CONFIG), "-m", "ftlib", "train", *TINY,
                       "--output", str(tmp / "accelerate")],
        "torchrun": [*torchrun, "-m", "ftlib", "train", *TINY, "--output", str(tmp / "torchrun")],
        "accelerate-cpu": [*accelerate, "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
                           "no", "--dynamo_backend", "no", "-m", "ftlib", "train", *TINY,
                           "--output", str(tmp / "accelerate-cpu")],
    }


def call(argv, callbacks=()):
    """`python -m ftlib train ARGV` in this process (recipes.main's run, with fit's callbacks)."""
    return recipes.run(recipes.parser().parse_args(argv), callbacks=callbacks)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The subprocesses, two at a time, while this process makes the one-process run they are compared
    with (in-process: the same recipes.run that `python -m ftlib train` calls, without paying ~10 s of
    imports again; test (a) runs the command itself). Only a launcher's processes can run data parallel."""
    tmp = tmp_path_factory.mktemp("train")

    def run(item):
        name, cmd = item
        return name, subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=400, env=env())
    with ThreadPoolExecutor(max_workers=2) as pool:
        started = pool.map(run, commands(tmp).items())
        threads = torch.get_num_threads()
        torch.set_num_threads(1)                               # as the subprocesses (OMP_NUM_THREADS=1)
        try:
            call([*TINY, "--device", "cpu", "--output", str(tmp / "one")])
        finally:
            torch.set_num_threads(threads)
        return tmp, dict(started)


def ok(r):
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert "Traceback" not in r.stderr, r.stderr[-5000:]
    return r.stdout


def weights(folder: Path) -> dict:
    return torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# ------------------------------------------------------------------------------ (a) one process
def test_one_process_course_bert_run_writes_metrics_checkpoint_and_model(runs):
    tmp, r = runs
    out = ok(r["course-bert"])
    for line in ("device     cpu x 1 process", "precision  float32", "budget     small",
                 "data       sst2: 64 training sentences (of 67,349), 64 evaluation sentences (of 872 ",
                 "model      course-bert, recipe full", "final eval accuracy "):
        assert line in out, out
    m = metrics(tmp / "course-bert")
    assert set(m) == METRIC_KEYS
    assert (m["steps"], m["stopped"], m["train_size"], m["eval_size"], m["world_size"]) == (3, "max_steps", 64, 64, 1)
    assert m["examples"] == 3 * 8 and 0 <= m["eval_accuracy"] <= 1 and m["eval_loss"] > 0
    assert m["trainable_parameters"] == m["total_parameters"] > 20_000_000
    assert f"final eval accuracy {m['eval_accuracy']:.4f} on 64 sentences" in out
    assert sorted(p.name for p in (tmp / "course-bert").iterdir()) == ["checkpoint.pt", "metrics.json", "model",
                                                                       "run.json"]
    assert json.loads((tmp / "course-bert" / "model" / "ftlib_deploy.json").read_text())["labels"] == \
        ["negative", "positive"]                                # ready for `python -m ftlib predict DIR/model`


# ------------------------------------------------------------- (b) torchrun and accelerate launch
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_train_the_weights_of_one(runs, launcher):
    tmp, r = runs
    out = ok(r[launcher])
    # the same 8 global batches of 8 (each process takes 4 rows of each), the same 8 AdamW steps: the
    # weights agree up to float32 rounding of the gradient all-reduce (measured: 1.2e-7)
    assert max_difference(weights(tmp / "one"), weights(tmp / launcher)) < 1e-6
    one, two = metrics(tmp / "one"), metrics(tmp / launcher)
    assert (two["world_size"], one["world_size"]) == (2, 1)
    assert two["eval_accuracy"] == one["eval_accuracy"]
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], abs=1e-6)
    assert two["history"]["step_loss"] == pytest.approx(one["history"]["step_loss"], abs=1e-6)
    assert (two["steps"], two["examples"], two["tokens"]) == (one["steps"], one["examples"], one["tokens"]) \
        == (8, 64, one["tokens"])
    assert out.count("final eval accuracy") == 1 and out.count("epoch 1/1:") == 1     # rank 0 alone prints
    assert "cpu x 2 processes (gloo)" in out and "4 or fewer rows per process" in out
    if launcher == "accelerate":
        assert "precision  float32 (accelerate launch's mixed_precision=no)" in out


def test_accelerate_cpu_starts_one_process_and_is_refused(runs):
    tmp, r = runs
    err = r["accelerate-cpu"]
    assert err.returncode != 0
    lines = [line for line in err.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1, err.stderr
    for fragment in ("started ONE process", "--mpirun_hostfile", "accelerate launch --multi_gpu --num_processes N",
                     "torchrun --nproc_per_node=N"):
        assert fragment in lines[0]
    assert not (tmp / "accelerate-cpu").exists()


def test_the_multi_gpu_config_is_one_accelerate_reads():
    from accelerate.commands.config.config_args import load_config_from_file

    for path, kind, n, precision in ((GPU_CONFIG, "MULTI_GPU", 8, "bf16"), (CPU_CONFIG, "MULTI_GPU", 2, "no")):
        config = load_config_from_file(str(path))             # unknown keys would raise here
        assert (config.distributed_type.value, config.num_processes, config.mixed_precision) == (kind, n, precision)
        assert config.num_machines == 1 and not config.use_cpu


# ------------------------------------------------------------------- in-process: recipes, resume
def tiny(tmp_path, name, *more):
    return [*TINY, "--train-size", "48", "--eval-size", "16", *more, "--output", str(tmp_path / name)]


def test_a_stopped_run_resumes_to_the_weights_of_an_uninterrupted_one(runs, tmp_path, capsys):
    tmp, _ = runs
    argv = [*TINY, "--device", "cpu", "--output", str(tmp_path / "part")]
    stopped = call(argv, callbacks=[lambda info: info["step"] == 5])          # checkpointed at step 5 of 8
    assert (stopped["steps"], stopped["stopped"]) == (5, "callback")
    resumed = call([*argv, "--resume"])
    assert "resuming from" in capsys.readouterr().out
    whole = metrics(tmp / "one")
    assert max_difference(weights(tmp / "one"), weights(tmp_path / "part")) < 1e-6     # (0 when both run here)
    assert resumed["eval_loss"] == pytest.approx(whole["eval_loss"], abs=1e-6) and resumed["steps"] == 8


@pytest.mark.parametrize("recipe, trainable", [("head", 2 * 32 + 2), ("lora", 2 * 32 + 2 + 2 * 2 * 8 * (32 + 32))])
def test_head_and_lora_train_only_their_weights(tmp_path, recipe, trainable):
    m = call(tiny(tmp_path, recipe, "--recipe", recipe, "--max-steps", "2"))
    assert m["trainable_parameters"] == trainable and m["total_parameters"] > 1_000_000
    state = weights(tmp_path / recipe)
    torch.manual_seed(0)                                       # the run's seed: the same random start
    start = recipes.tiny_bert(len(ftlib.load_tokenizer("course-bert")), 2, 0.0).state_dict()
    for name, value in start.items():
        key = name.replace(".weight", ".base.weight").replace(".bias", ".base.bias") \
            if recipe == "lora" and (".query." in name or ".value." in name) else name
        same = torch.equal(state[key], value)
        assert same != name.startswith("classifier."), name  # the classifier moved; nothing else did
    assert any(k.endswith("lora_B") and state[k].abs().sum() > 0 for k in state) == (recipe == "lora")


def test_mrpc_is_encoded_as_sentence_pairs():
    tokenizer = ftlib.load_tokenizer("course-bert")
    train, evals, names, available = recipes.load_data("mrpc", tokenizer, 64, 8, 4, seed=0)
    assert names == ["not_equivalent", "equivalent"] and available == (3668, 408) and (len(train), len(evals)) == (8, 4)
    row = train[0]
    assert set(train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert row["input_ids"].count(tokenizer.sep_token_id) == 2 and 1 in row["token_type_ids"]
    second = row["token_type_ids"].index(1)                    # segment B starts after the first [SEP]
    assert row["input_ids"][second - 1] == tokenizer.sep_token_id


# --------------------------------------------------------------- (c) refusals and bad flags
def one_error(capsys, argv, *fragments):
    """`python -m ftlib train ARGV` in this process: status 2, one `error: ...` line, no traceback."""
    assert recipes.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_an_existing_output_folder_is_never_overwritten(runs, tmp_path, capsys):
    tmp, _ = runs
    saved = tmp / "one"                                        # a finished run
    before = {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file()}
    one_error(capsys, [*TINY, "--output", str(saved)], "already holds files", "checkpoint.pt",
              "a new run would overwrite them", "--resume")
    one_error(capsys, [*TINY, "--lr", "0.01", "--resume", "--output", str(saved)],
              "started with other settings", "lr: saved 0.001, now 0.01")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("mine")
    one_error(capsys, tiny(tmp_path, "notes", "--resume"), "no run.json", "not a run of `python -m ftlib train`")
    (tmp_path / "file").write_text("x")
    one_error(capsys, tiny(tmp_path, "file"), "is a file, not a folder")
    assert {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file()} == before
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["thesis.txt"]


@pytest.mark.parametrize("flags, fragments", [
    (["--data", "imdb"], ["Unknown data set --data 'imdb'", "sst2, mrpc"]),
    (["--recipe", "qlora"], ["Unknown recipe --recipe 'qlora'", "full, lora, head"]),
    (["--task", "generation"], ["--task 'generation'", "classification"]),
    (["--train-size", "-5"], ["--train-size -5", ">= 1, or 'all'"]),
    (["--eval-size", "0"], ["--eval-size 0", ">= 1, or 'all'"]),
    (["--train-size", "many"], ["--train-size many"]),
    (["--batch-size", "0"], ["--batch-size 0: it must be at least 1"]),
    (["--epochs", "-1"], ["--epochs -1: it must be at least 1"]),
    (["--lr", "-0.1"], ["--lr -0.1", "positive"]),
    (["--dropout", "1.5"], ["--dropout 1.5", "0 <= p < 1"]),
    (["--precision", "fp8"], ["Unknown --precision 'fp8'"]),
    (["--max-length", "1000"], ["--max-length 1000", "at most 512 tokens"]),
    (["--model", "course-bret"], ["Unknown course model 'course-bret'"]),
])
def test_bad_flags_are_one_clear_error(tmp_path, capsys, flags, fragments):
    argv = [*TINY, *flags, "--output", str(tmp_path / "run")]
    one_error(capsys, argv, *fragments)
    assert not (tmp_path / "run").exists()                    # nothing written for a run that never started


def test_usage_mistakes_and_a_launch_without_a_process_group(capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_:
        recipes.main(["--epochs", "two", "--output", "x"])
    assert exit_.value.code == 2 and "invalid int value: 'two'" in capsys.readouterr().err
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")            # mpirun: 4 processes, no WORLD_SIZE
    with pytest.raises(ftlib.CourseError, match="MPI started 4 processes"):
        recipes.check_launcher()
