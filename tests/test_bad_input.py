"""Bad input gets one clear CourseError that says what is wrong and what to do (issue 18),
and the good input next to it still works."""
import io
import json
import os
import re
import stat
import sys

import datasets
import pytest
import torch
import transformers

import ftlib
from ftlib import data, deploy
from ftlib.errors import CourseError
from ftlib.text import check_sentences, input_limit, make_loader, tokenize_dataset
from conftest import make_sentiment_bert as tiny_model


@pytest.fixture(scope="module")
def saved(tokenizer, tmp_path_factory):
    return deploy.save(tiny_model(tokenizer), tokenizer, tmp_path_factory.mktemp("bad-input") / "clf")


# ----------------------------------------------------------------------------- 1. string labels

def yes_no():
    return datasets.Dataset.from_dict({"sentence": ["great film", "awful", "fine", "boring"],
                                       "label": ["yes", "no", "yes", "no"]})


def test_string_labels_are_refused_with_the_ways_out(tokenizer):
    with pytest.raises(CourseError, match=r"label names \('no', 'yes'\).*label_names=\[\.\.\.\].*"
                                          r"class_encode_column\('label'\)") as err:
        tokenize_dataset(yes_no(), tokenizer, max_length=16)
    assert "too many dimensions" not in str(err.value)


def test_label_names_map_string_labels_to_ids(tokenizer):
    tok = tokenize_dataset(yes_no(), tokenizer, max_length=16, label_names=["no", "yes"])
    assert tok["labels"] == [1, 0, 1, 0]
    assert tok.features["labels"].names == ["no", "yes"]
    batch = next(iter(make_loader(tok, tokenizer, batch_size=4)))
    assert batch["labels"].tolist() == [1, 0, 1, 0]
    # integer labels with label_names: only checked against the number of names
    ints = datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 2]})
    with pytest.raises(CourseError, match=r"Row 1 has label 2, but the labels must be 0 \.\. 1"):
        tokenize_dataset(ints, tokenizer, max_length=16, label_names=["no", "yes"])


def test_label_names_mistakes(tokenizer):
    with pytest.raises(CourseError, match=r"Row 1 has label 'no', which is not one of label_names \['yes', 'maybe'\]"):
        tokenize_dataset(yes_no(), tokenizer, max_length=16, label_names=["yes", "maybe"])
    with pytest.raises(CourseError, match="distinct strings"):
        tokenize_dataset(yes_no(), tokenizer, max_length=16, label_names=["no", "no"])
    with pytest.raises(CourseError, match="num_labels=3 but label_names has 2 names"):
        tokenize_dataset(yes_no(), tokenizer, max_length=16, label_names=["no", "yes"], num_labels=3)


def test_missing_labels_and_whole_dataset_dicts_are_refused(tokenizer):
    ds = datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [1, None]})
    with pytest.raises(CourseError, match=r"Row 1 has no label \(None\)"):
        tokenize_dataset(ds, tokenizer, max_length=16)
    with pytest.raises(CourseError, match=r"one split, not a DatasetDict.*ds\['train'\]"):
        tokenize_dataset(datasets.DatasetDict({"train": yes_no()}), tokenizer, max_length=16)


# ----------------------------------------------------------------------------- 2. sentences for prediction

def test_check_sentences_good_input():
    assert check_sentences("a fine film") == ["a fine film"]            # a bare string is ONE sentence
    assert check_sentences(("a", "b")) == ["a", "b"]
    assert check_sentences(s for s in ["x", "y"]) == ["x", "y"]


@pytest.mark.parametrize("bad, message", [
    (None, "not NoneType"),
    (b"bytes", "not bytes"),
    (3, "not int"),
    ([], "got an empty list: give at least one sentence"),
    (["fine", None], "Sentence 1 is not a string but NoneType: None"),
    (["fine", "ok", 3.5], "Sentence 2 is not a string but float: 3.5"),
    ([""], "Sentence 0 is empty .or only spaces.: there is nothing to classify"),
    (["fine", " \t\n"], "Sentence 1 is empty"),
])
def test_check_sentences_refuses(bad, message):
    with pytest.raises(CourseError, match=message):
        check_sentences(bad)


def test_check_sentences_length(tokenizer):
    long = " ".join(["great"] * 20)                                     # 22 tokens with [CLS] and [SEP]
    assert check_sentences([long], tokenizer=tokenizer, max_length=22) == [long]
    with pytest.raises(CourseError, match=r"Sentence 1 has 22 tokens .*at most 10\. Shorten it, or use "
                                          r"truncate=True to keep its first 10 tokens\.$"):
        check_sentences(["ok", long], tokenizer=tokenizer, max_length=10)
    with pytest.raises(CourseError, match=r"Sentence 0 has 22 .* use --truncate to keep its first 10 tokens "
                                          r"\(2 sentences are too long\)\.$"):
        check_sentences([long, "ok", long], tokenizer=tokenizer, max_length=10, how_to_truncate="--truncate")
    assert check_sentences(["ok", long], tokenizer=tokenizer, max_length=10, truncate=True) == ["ok", long]
    # without max_length the tokenizer's own limit applies (course-bert: 512)
    with pytest.raises(CourseError, match="at most 512"):
        check_sentences(" ".join(["great"] * 600), tokenizer=tokenizer)


def test_predictor_uses_the_same_check(saved, tokenizer):
    pred = deploy.Predictor(saved)
    assert input_limit(pred.model, tokenizer) == pred.max_length == 128
    assert pred.check("one sentence") == ["one sentence"]
    assert [r["sentence"] for r in pred.predict("one sentence")] == ["one sentence"]
    hint = "Predictor(path, truncate=True) (--truncate)"
    for bad in (["ok", None], ["ok", ""], ["ok", " ".join(["great"] * 300)]):
        with pytest.raises(CourseError) as from_predictor:
            pred.predict(bad)
        with pytest.raises(CourseError) as from_check:
            check_sentences(bad, tokenizer=tokenizer, max_length=128, how_to_truncate=hint)
        assert str(from_predictor.value) == str(from_check.value)


def test_train_predict_behaves_like_the_predictor(tokenizer):
    from ftlib.train import predict

    model = tiny_model(tokenizer)
    assert [r["sentence"] for r in predict(model, tokenizer, "one sentence")] == ["one sentence"]
    long = " ".join(["great"] * 300)                       # 302 tokens; this model reads at most 128
    for bad, message in ((["ok", None], "NoneType"), (["ok", ""], "empty"), (["ok", long], "at most 128")):
        with pytest.raises(CourseError, match=message):
            predict(model, tokenizer, bad)
    out = predict(model, tokenizer, ["ok", long], truncate=True)     # the documented way out
    assert [r["sentence"] for r in out] == ["ok", long] and all(r["label"] in ("negative", "positive") for r in out)


# ----------------------------------------------------------------------------- 3. untrained classifier heads

def test_save_records_a_trained_head(saved):
    record = json.loads((saved / deploy.MARKER).read_text())
    assert record["saved_by"] == "ftlib.deploy.save" and record["labels"] == ["negative", "positive"]
    deploy.load(saved)


def test_folder_without_the_record_is_refused(tokenizer, tmp_path):
    fresh = tmp_path / "fresh"
    tiny_model(tokenizer).save_pretrained(fresh)                        # complete, but not from deploy.save
    tokenizer.save_pretrained(fresh)
    for call in (deploy.load, deploy.Predictor, deploy.check_model_dir):
        with pytest.raises(CourseError, match=r"no ftlib_deploy.json.*never have been trained.*Fine-tune.*"
                                              r"ftlib.deploy.save\(model, tokenizer, folder\)"):
            call(fresh)
    (fresh / deploy.MARKER).write_text("{not json")
    with pytest.raises(CourseError, match="damaged ftlib_deploy.json"):
        deploy.load(fresh)


def test_the_course_bert_package_folder_is_refused():
    source = ftlib.resolve_model("course-bert").source
    if not os.path.isdir(str(source)):
        pytest.skip("course-bert comes from the hub here, not from a folder")
    with pytest.raises(CourseError, match="never have been trained"):
        deploy.Predictor(source)


# ----------------------------------------------------------------------------- 4. stdin lines

def run_main(monkeypatch, capsys, argv, stdin):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = deploy.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_stdin_one_output_line_per_input_line(saved, monkeypatch, capsys):
    status, out, err = run_main(monkeypatch, capsys, [str(saved)], "a fine film\r\nawful\nok fine\n")
    assert status == 0, err
    assert [line.split("\t")[2] for line in out.splitlines()] == ["a fine film", "awful", "ok fine"]


@pytest.mark.parametrize("stdin, message", [
    ("good\n\nbad\n", "stdin line 2 is empty .1 of 3 lines."),
    ("good\n  \nbad\n\n", "stdin lines 2, 4 are empty .2 of 4 lines."),
    ("", "stdin was empty"),
])
def test_stdin_blank_lines_refuse_the_whole_input(saved, monkeypatch, capsys, stdin, message):
    status, out, err = run_main(monkeypatch, capsys, [str(saved)], stdin)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert re.search(message, err) and ("one output line" in err or "was empty" in err)


def test_command_line_too_long_sentence(saved, monkeypatch, capsys):
    status, out, err = run_main(monkeypatch, capsys, [str(saved), "--max-length", "8", "one two three four five six seven"], "")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "Sentence 0 has 9 tokens" in err and "at most 8" in err and "truncate=True) (--truncate)" in err
    status, out, err = run_main(monkeypatch, capsys, [str(saved), "--max-length", "8", "--truncate",
                                                      "one two three four five six seven"], "")
    assert status == 0 and out.split("\t")[2] == "one two three four five six seven\n"


# ----------------------------------------------------------------------------- 5. FTLIB_DATA_DIR

def write_sst2(root, dev=True):
    (root / "sst2").mkdir(parents=True)
    (root / "sst2" / "train.tsv").write_text("label\tsentence\n1\tgood\n0\tbad\n", encoding="utf-8")
    if dev:
        (root / "sst2" / "dev.tsv").write_text("label\tsentence\n1\tfine\n", encoding="utf-8")


def test_check_mirror(tmp_path, monkeypatch):
    monkeypatch.delenv("FTLIB_DATA_DIR", raising=False)
    assert data.check_mirror() is None
    monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(CourseError, match=r"is not a folder \(nothing is there\).*unset it"):
        data.check_mirror()
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(CourseError, match=r"is not a data mirror: it has no sst2/train.tsv \(it holds notes.txt\)"):
        data.check_mirror()
    write_sst2(tmp_path, dev=False)
    with pytest.raises(CourseError, match=r"incomplete, .*dev.tsv is missing"):
        data.check_mirror()
    with pytest.raises(CourseError, match="has train.tsv but no dev.tsv"):
        ftlib.load_sst2()
    (tmp_path / "sst2" / "dev.tsv").write_text("label\tsentence\n1\tfine\n", encoding="utf-8")
    mirror = data.check_mirror()
    assert mirror["path"] == tmp_path
    assert mirror["data sets"] == {"SST-2": True, "tinyshakespeare": False, "Chinese-English pairs": False,
                                   "SQuAD": False, "WNUT-17": False, "MRPC": False, "instructions": False}


# ----------------------------------------------------------------------------- 6. folder permissions

@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750)])
def test_save_follows_the_umask_like_save_pretrained(tokenizer, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        model = tiny_model(tokenizer)
        deploy.save(model, tokenizer, tmp_path / "saved")
        model.save_pretrained(tmp_path / "by-hand")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "saved").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "by-hand").stat().st_mode) == mode
    # every file as a plain open() makes it (config.json's mode), model.safetensors included:
    # safetensors 0.8 writes it 0600 even from save_pretrained
    for f in (tmp_path / "saved").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f.name
    assert stat.S_IMODE((tmp_path / "by-hand" / "config.json").stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["by-hand", "saved"]      # no temporary folders left
