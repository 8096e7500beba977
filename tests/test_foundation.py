"""ftlib's core: device and precision, budget, model resolution, data loading, errors."""
import os
from pathlib import Path

import pytest
import torch

import ftlib
from ftlib import CourseError
from ftlib.budget import PRESETS

# ---------------------------------------------------------------- device


def test_pick_device_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.delenv("FTLIB_DEVICE", raising=False)
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    assert ftlib.pick_device() == torch.device("cpu")
    assert ftlib.pick_dtype("cpu") == torch.float32


def test_asking_for_a_missing_gpu_is_a_clear_error(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("FTLIB_DEVICE", "cuda")
    with pytest.raises(CourseError, match="no CUDA GPU"):
        ftlib.pick_device()


def test_autocast_is_a_no_op_in_float32():
    x = torch.randn(3, 3)
    with ftlib.autocast("cpu"):
        y = x @ x
    assert y.dtype == torch.float32
    with ftlib.autocast("cpu", dtype=torch.bfloat16):
        z = x @ x
    assert z.dtype == torch.bfloat16


def test_seed_everything_repeats_torch_numpy_and_random():
    import random

    import numpy as np

    def draw():
        return torch.randn(5).tolist(), np.random.rand(3).tolist(), random.random()

    ftlib.seed_everything(7)
    first = draw()
    ftlib.seed_everything(7)
    assert draw() == first
    ftlib.seed_everything(8)
    assert draw() != first


# ---------------------------------------------------------------- budget


def test_budget_defaults_to_small_on_cpu(monkeypatch):
    monkeypatch.delenv("FTLIB_BUDGET", raising=False)
    expected = "full" if torch.cuda.is_available() else "small"
    assert ftlib.get_budget().name == expected


def test_budget_env_and_overrides(monkeypatch):
    monkeypatch.setenv("FTLIB_BUDGET", "full")
    monkeypatch.setenv("FTLIB_BUDGET_EPOCHS", "5")
    monkeypatch.setenv("FTLIB_BUDGET_TRAIN_SIZE", "none")
    b = ftlib.get_budget()
    assert (b.name, b.epochs, b.train_size) == ("full", 5, None)
    assert ftlib.get_budget(epochs=1).epochs == 1          # argument beats environment
    assert ftlib.get_budget("small").batch_size == PRESETS["small"].batch_size
    assert b.pick(small=1, full=2) == 2 and ftlib.get_budget("small").pick(1, 2) == 1


@pytest.mark.parametrize("kwargs, env, message", [
    ({"name": "huge"}, {}, "Unknown budget"),
    ({"epochs_": 3}, {}, "Unknown budget field"),
    ({}, {"FTLIB_BUDGET_EPOCHS": "three"}, "not a whole number"),
])
def test_budget_bad_input(monkeypatch, kwargs, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(CourseError, match=message):
        ftlib.get_budget(**kwargs)


def test_budget_take_subsets_deterministically():
    import datasets

    ds = datasets.Dataset.from_dict({"x": list(range(100))})
    b = ftlib.get_budget("small")
    assert len(b.take(ds, 10)) == 10
    assert b.take(ds, 10)["x"] == b.take(ds, 10)["x"]
    assert b.take(ds, None) is ds and b.take(ds, 1000) is ds


# ---------------------------------------------------------------- models


def test_course_models_resolve_to_installed_packages(monkeypatch):
    monkeypatch.delenv("FTLIB_PREFER_HUB", raising=False)
    bert = ftlib.resolve_model("course-bert")
    assert bert.offline and (Path(bert.source) / "config.json").is_file()
    gpt = ftlib.resolve_model("course-gpt")
    assert gpt.offline and (Path(gpt.source) / gpt.kwargs["gguf_file"]).is_file()


def test_prefer_hub_switches_course_models_to_hub_ids(monkeypatch):
    monkeypatch.setenv("FTLIB_PREFER_HUB", "1")
    assert ftlib.resolve_model("course-bert").source == "sentence-transformers/all-MiniLM-L6-v2"
    assert ftlib.resolve_model("course-gpt").source == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_hub_ids_and_folders_pass_through(tmp_path):
    assert ftlib.resolve_model("bert-base-uncased").source == "bert-base-uncased"
    assert ftlib.resolve_model("openai-community/gpt2").source == "openai-community/gpt2"
    (tmp_path / "config.json").write_text("{}")
    assert ftlib.resolve_model(str(tmp_path)).source == str(tmp_path)


@pytest.mark.parametrize("name, message", [
    ("course-llama", "Unknown course model"),
    ("two words", "neither a course model"),
    ("", "non-empty string"),
    (None, "non-empty string"),
])
def test_bad_model_names(name, message):
    with pytest.raises(CourseError, match=message):
        ftlib.resolve_model(name)


def test_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(CourseError, match="not a saved model"):
        ftlib.resolve_model(str(tmp_path))


def test_unknown_task_is_refused():
    with pytest.raises(CourseError, match="Unknown task"):
        ftlib.load_model("course-bert", task="summarise")


def test_course_bert_loads_and_runs():
    tok = ftlib.load_tokenizer("course-bert")
    model = ftlib.load_model("course-bert", task="classification", num_labels=3).eval()
    batch = tok(["a fine film", "awful"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 3)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6


def test_course_gpt_loads_from_the_gguf_cache():
    tok = ftlib.load_tokenizer("course-gpt")
    model = ftlib.load_model("course-gpt", task="causal-lm").eval()
    assert model.config.model_type == "llama" and model.config.num_key_value_heads == 3
    ids = tok(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        next_id = model(**ids).logits[0, -1].argmax().item()
    assert tok.decode(next_id).strip() == "Paris"
    from ftlib.models import _gguf_cache
    assert (_gguf_cache(ftlib.resolve_model("course-gpt")) / "model.safetensors").is_file()


@pytest.mark.slow
def test_missing_hub_model_offline_is_one_clear_error(python_subprocess):
    r = python_subprocess(
        "import ftlib\n"
        "try:\n    ftlib.load_model('no-such-org/no-such-model')\n"
        "except ftlib.CourseError as e:\n    print('COURSE ERROR:', e)\n",
        HF_HUB_OFFLINE="1")
    assert r.returncode == 0, r.stderr
    assert "COURSE ERROR" in r.stdout and "HF_HUB_OFFLINE is set" in r.stdout
    assert "course-bert or course-gpt" in r.stdout


@pytest.mark.slow
def test_unreachable_hub_is_one_clear_error(python_subprocess):
    # a closed port on loopback stands for a hub that cannot be reached
    r = python_subprocess(
        "import ftlib\n"
        "try:\n    ftlib.load_tokenizer('bert-base-uncased')\n"
        "except ftlib.CourseError as e:\n    print('COURSE ERROR:', e)\n",
        HF_HUB_OFFLINE=None, TRANSFORMERS_OFFLINE=None, HF_ENDPOINT="http://127.0.0.1:9",
        HF_HUB_ETAG_TIMEOUT="2", HF_HUB_DOWNLOAD_TIMEOUT="2", HF_HOME=str(Path(os.environ.get("TMPDIR", "/tmp")) / "ftlib-empty-hf-home"))
    assert r.returncode == 0, r.stderr
    assert "COURSE ERROR" in r.stdout and "hub is unreachable" in r.stdout
    assert "Retry" not in r.stderr


@pytest.mark.slow
def test_unreachable_hub_still_loads_what_the_hub_cache_holds(python_subprocess, tmp_path):
    """A hub id downloaded earlier (in the hub's cache layout) loads when the hub cannot be reached; an id
    that is not cached is the clear error -- and neither waits for huggingface_hub's minute of retries."""
    import shutil
    snap = tmp_path / "hub" / "models--someone--cached-bert" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    src = Path(ftlib.resolve_model("course-bert").source)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, snap / name)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0123abcd")
    r = python_subprocess(
        "import ftlib\n"
        "tok = ftlib.load_tokenizer('someone/cached-bert')\n"
        "print('CACHED', tok('hello world')['input_ids'])\n"
        "try:\n    ftlib.load_tokenizer('someone/not-cached')\n"
        "except ftlib.CourseError as e:\n    print('COURSE ERROR:', e)\n",
        HF_HUB_OFFLINE=None, TRANSFORMERS_OFFLINE=None, HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "CACHED [101, 7592, 2088, 102]" in r.stdout                  # [CLS] hello world [SEP]
    assert "COURSE ERROR" in r.stdout and "not in the local cache" in r.stdout
    assert "Retry" not in r.stderr          # huggingface_hub's back-off (1+2+4+8+8 s per file) never started


# ---------------------------------------------------------------- data


def write_mirror(root: Path, train_rows, dev_rows, header="label\tsentence"):
    (root / "sst2").mkdir(parents=True)
    for name, rows in (("train.tsv", train_rows), ("dev.tsv", dev_rows)):
        (root / "sst2" / name).write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def test_sst2_from_a_mirror(tmp_path, monkeypatch):
    write_mirror(tmp_path, ['1\ta "quoted" gem', "0\tdull"], ["0\tbad", "1\tgood", "1\tgreat"])
    monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path))
    ds = ftlib.load_sst2()
    assert {k: len(v) for k, v in ds.items()} == {"train": 2, "validation": 3}
    assert ds["train"][0] == {"sentence": 'a "quoted" gem', "label": 1}
    assert ds["train"].features["label"].names == ["negative", "positive"]


@pytest.mark.parametrize("rows, header, message", [
    (["2\tthree classes?"], "label\tsentence", "expected '0 or 1"),
    (["1\tok"], "sentence\tlabel", "header"),
    ([], "label\tsentence", "holds no examples"),
])
def test_bad_mirror_files(tmp_path, monkeypatch, rows, header, message):
    write_mirror(tmp_path, rows, ["1\tfine"], header=header)
    monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(CourseError, match=message):
        ftlib.load_sst2()


def test_data_dir_must_be_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(CourseError, match="is not a folder"):
        ftlib.load_sst2()


def test_mirror_only_without_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(CourseError, match="No SST-2 mirror"):
        ftlib.load_sst2(source="mirror")
    with pytest.raises(CourseError, match="No tinyshakespeare mirror"):
        ftlib.load_tinyshakespeare(source="mirror")


@pytest.mark.slow
def test_no_mirror_and_no_hub_is_one_clear_error(python_subprocess):
    r = python_subprocess(
        "import ftlib\n"
        "for load in (ftlib.load_sst2, ftlib.load_tinyshakespeare, ftlib.load_squad, ftlib.load_wnut17,\n"
        "             ftlib.load_mrpc, ftlib.load_instructions):\n"
        "    try:\n        load()\n"
        "    except ftlib.CourseError as e:\n        print('COURSE ERROR:', e)\n",
        FTLIB_DATA_DIR=None, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("COURSE ERROR") == 6
    assert "FTLIB_DATA_DIR" in r.stdout and "python -m ftlib download-data" in r.stdout


def test_tinyshakespeare_from_a_mirror(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare").mkdir()
    text = "".join(f"line {i}\n" for i in range(1000))
    (tmp_path / "tinyshakespeare" / "input.txt").write_text(text)
    monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path))
    ds = ftlib.load_tinyshakespeare()
    parts = [ds[s][0]["text"] for s in ("train", "validation", "test")]
    assert "".join(parts) == text
    assert abs(len(parts[0]) / len(text) - 0.9) < 0.01


def test_the_configured_mirror_has_the_real_sizes():
    if not os.environ.get("FTLIB_DATA_DIR"):
        pytest.skip("FTLIB_DATA_DIR is not set")
    ds = ftlib.load_sst2()
    assert (len(ds["train"]), len(ds["validation"])) == (67_349, 872)
