"""`python -m ftlib ...` as a learner runs it: exit status, output, and one clear error line.

Each command runs in its own interpreter (sys.executable), one per CPU core at a time, all from
one module fixture: most of each run is importing torch, so the file takes about (number of
commands / cores) x 4 s. The in-process checks of the same errors are in tests/test_bad_input.py.
"""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import transformers

import ftlib

pytestmark = pytest.mark.slow           # every test here runs `python -m ftlib` in subprocesses
from ftlib import deploy
from conftest import make_sentiment_bert as tiny_model

ROOT = Path(__file__).resolve().parent.parent
GOOD_LINES = "a gorgeous , witty movie .\r\nit 's a mess .\nfine\n"




@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    tokenizer = ftlib.load_tokenizer("course-bert")
    model = tiny_model(tokenizer)
    deploy.save(model, tokenizer, tmp / "trained")             # what a learner saves after fitting
    model.save_pretrained(tmp / "no-head")                      # complete, but not through deploy.save
    tokenizer.save_pretrained(tmp / "no-head")
    (tmp / "mirror" / "sst2").mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        (tmp / "mirror" / "sst2" / name).write_text("label\tsentence\n1\tgood\n0\tbad\n", encoding="utf-8")
    (tmp / "not-a-mirror").mkdir()
    (tmp / "not-a-mirror" / "notes.txt").write_text("x")
    return tmp


def commands(f: Path) -> dict:
    """name -> (arguments after `python -m ftlib`, stdin, extra environment)."""
    return {
        "info": (["info"], None, {"FTLIB_DATA_DIR": str(f / "mirror")}),
        "info-missing-dir": (["info"], None, {"FTLIB_DATA_DIR": str(f / "nowhere")}),
        "info-no-sst2": (["info"], None, {"FTLIB_DATA_DIR": str(f / "not-a-mirror")}),
        "predict-args": (["predict", str(f / "trained"), "a fine film", "--json", "awful"], None, {}),
        "predict-stdin": (["predict", str(f / "trained")], GOOD_LINES, {}),
        "predict-stdin-blank": (["predict", str(f / "trained")], "good\n\nbad\n", {}),
        "predict-no-head": (["predict", str(f / "no-head"), "hello"], None, {}),
        "predict-missing": (["predict", str(f / "missing"), "hello"], None, {}),
        "bench-help": (["bench", "--help"], None, {}),
        "unknown": (["frobnicate"], None, {}),
    }


@pytest.fixture(scope="module")
def results(folders):
    def run(item):
        name, (args, stdin, env) = item
        return name, subprocess.run([sys.executable, "-m", "ftlib", *args], input=stdin or "",
                                    capture_output=True, text=True, cwd=ROOT, timeout=120,
                                    env={**os.environ, **env})
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(pool.map(run, commands(folders).items()))


def one_error_line(r, *fragments):
    """Exit status 2, exactly one line on stderr (holding ``fragments``), no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_info(results, folders):
    r = results["info"]
    assert r.returncode == 0, r.stderr
    assert f"FTLIB_DATA_DIR     {folders / 'mirror'}" in r.stdout
    assert "SST-2: mirror" in r.stdout and "tinyshakespeare: not in the mirror" in r.stdout
    assert "course-bert" in r.stdout and "budget" in r.stdout


def test_info_with_a_bad_data_dir(results, folders):
    one_error_line(results["info-missing-dir"], f"FTLIB_DATA_DIR='{folders / 'nowhere'}'", "is not a folder",
                   "unset it")
    one_error_line(results["info-no-sst2"], f"FTLIB_DATA_DIR='{folders / 'not-a-mirror'}'",
                   "is not a data mirror", "no sst2/train.tsv", "notes.txt", "download-data")


def test_predict_good_folder(results):
    import json

    r = results["predict-args"]
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["sentence"] for row in rows] == ["a fine film", "awful"]
    assert all(row["label"] in ("negative", "positive") and 0.5 <= row["probability"] <= 1 for row in rows)


def test_predict_stdin_one_line_out_per_line_in(results):
    r = results["predict-stdin"]
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert [line.split("\t")[2] for line in out] == GOOD_LINES.replace("\r", "").splitlines()


def test_predict_stdin_with_a_blank_line_is_refused(results):
    r = results["predict-stdin-blank"]
    assert r.stdout == ""
    one_error_line(r, "stdin line 2 is empty", "one output line", "remove the blank lines")


def test_predict_refuses_a_folder_without_a_trained_head(results):
    r = results["predict-no-head"]
    assert r.stdout == ""
    one_error_line(r, "no ftlib_deploy.json", "never have been trained", "Fine-tune",
                   "ftlib.deploy.save(model, tokenizer, folder)")


def test_predict_missing_folder(results):
    one_error_line(results["predict-missing"], "No model folder at", "ftlib.deploy.save")


def test_bench_help_and_unknown_command(results):
    r = results["bench-help"]
    assert r.returncode == 0 and r.stdout.startswith("usage: python -m ftlib bench"), r.stderr
    one_error_line(results["unknown"], "invalid choice: 'frobnicate'", "--help")
