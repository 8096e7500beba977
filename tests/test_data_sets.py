"""The loaders of SQuAD, WNUT-17, MRPC and the instruction data (ftlib.data): the mirror's real
counts, the same features as the hub's, SQuAD's split by article, the instruction split, a
download -> mirror -> load round trip, and one CourseError for each kind of bad input."""
import collections
import json
import os
import random
from pathlib import Path

import datasets
import pytest
import yaml

import ftlib
from ftlib import data
from ftlib.errors import CourseError

# The features as the hub's dataset cards declare them (their `dataset_info`, which the hub's
# builder turns into Features), written out here rather than taken from ftlib, so the comparison
# with what the loaders return can fail.
HUB_CARDS = {
    "SQuAD": """
- name: id
  dtype: string
- name: title
  dtype: string
- name: context
  dtype: string
- name: question
  dtype: string
- name: answers
  sequence:
  - name: text
    dtype: string
  - name: answer_start
    dtype: int32
""",
    "WNUT-17": """
- name: id
  dtype: string
- name: tokens
  sequence: string
- name: ner_tags
  sequence:
    class_label:
      names:
        '0': O
        '1': B-corporation
        '2': I-corporation
        '3': B-creative-work
        '4': I-creative-work
        '5': B-group
        '6': I-group
        '7': B-location
        '8': I-location
        '9': B-person
        '10': I-person
        '11': B-product
        '12': I-product
""",
    "MRPC": """
- name: sentence1
  dtype: string
- name: sentence2
  dtype: string
- name: label
  dtype:
    class_label:
      names:
        '0': not_equivalent
        '1': equivalent
- name: idx
  dtype: int32
""",
}


def hub_features(name: str) -> datasets.Features:
    return datasets.Features._from_yaml_list(yaml.safe_load(HUB_CARDS[name]))


def instruction_hub_features(preference: bool) -> datasets.Features:
    keys = ["instruction", "input", "output"] + (["chosen", "rejected"] if preference else [])
    return datasets.Features({"id": datasets.Value("int64"), **{k: datasets.Value("string") for k in keys}})


# ------------------------------------------------------------------ the configured mirror's real files

def real_mirror(name: str) -> Path:
    root = os.environ.get("FTLIB_DATA_DIR")
    if not root:
        pytest.skip("FTLIB_DATA_DIR is not set")
    if not all((Path(root) / f).is_file() for f in data.MIRROR_FILES[name]):
        pytest.skip(f"the mirror in {root} has no {name}")
    return Path(root)


@pytest.fixture(scope="module")
def squad():
    real_mirror("SQuAD")
    return data.load_squad()


@pytest.fixture(scope="module")
def wnut():
    real_mirror("WNUT-17")
    return data.load_wnut17()


@pytest.fixture(scope="module")
def mrpc():
    real_mirror("MRPC")
    return data.load_mrpc()


@pytest.fixture(scope="module")
def instructions():
    real_mirror("instructions")
    return {False: data.load_instructions(), True: data.load_instructions(preference=True)}


def sizes(dd) -> dict:
    return {split: len(ds) for split, ds in dd.items()}


def articles_on_both_sides(dd) -> set:
    return set(dd["train"]["title"]) & set(dd["validation"]["title"])


def test_squad_mirror_is_split_by_article(squad):
    root = real_mirror("SQuAD")
    articles = json.loads((root / "squad_v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    titles = [a["title"] for a in articles]
    assert (len(titles), len(set(titles))) == (48, 48)     # a title names one article
    assert data.SQUAD_TEST_ARTICLES == 10
    assert sizes(squad) == {"train": 8_582, "validation": 1_988}    # 10,570 questions in all
    assert sorted(set(squad["train"]["title"])) == sorted(titles[:38])
    assert sorted(set(squad["validation"]["title"])) == sorted(titles[38:])
    assert articles_on_both_sides(squad) == set()
    # the check above sees a split by question: the same rows, cut at random, share articles
    rows = list(range(10_570))
    random.Random(0).shuffle(rows)
    everything = datasets.concatenate_datasets([squad["train"], squad["validation"]])
    by_question = {"train": everything.select(rows[:8_582]), "validation": everything.select(rows[8_582:])}
    assert len(articles_on_both_sides(by_question)) > 40
    # every answer sits at its answer_start
    for ds in squad.values():
        for row in ds.select(range(0, len(ds), 7)):
            for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
                assert row["context"][start:start + len(text)] == text, row["id"]
    assert squad["validation"][0]["title"] == "Intergovernmental_Panel_on_Climate_Change"


def test_squad_test_articles():
    real_mirror("SQuAD")
    five = data.load_squad(test_articles=5)
    assert sizes(five) == {"train": 9_614, "validation": 956}
    assert (len(set(five["train"]["title"])), len(set(five["validation"]["title"]))) == (43, 5)
    for bad in (0, 48, 2.5):
        with pytest.raises(CourseError, match=r"test_articles must be a whole number from 1 to 47"):
            data.load_squad(test_articles=bad)


def test_wnut17_mirror(wnut):
    assert sizes(wnut) == {"train": 3_394, "validation": 1_009, "test": 1_287}
    assert wnut["train"][0]["id"] == "0" and wnut["test"][-1]["id"] == "1286"
    row = wnut["train"][0]
    names = wnut["train"].features["ner_tags"].feature.names
    assert [(t, names[i]) for t, i in zip(row["tokens"], row["ner_tags"]) if i] == [
        ("Empire", "B-location"), ("State", "I-location"), ("Building", "I-location"), ("ESB", "B-location")]
    # every tag appears in every split (none of the 13 is left unused by a wrong name)
    for ds in wnut.values():
        assert set(tag for tags in ds["ner_tags"] for tag in tags) == set(range(13))


def test_mrpc_mirror(mrpc):
    assert sizes(mrpc) == {"train": 3_668, "validation": 408, "test": 1_725}
    counts = {split: collections.Counter(ds["label"]) for split, ds in mrpc.items()}
    assert counts == {"train": {1: 2_474, 0: 1_194}, "validation": {1: 279, 0: 129}, "test": {-1: 1_725}}
    for ds in mrpc.values():
        assert list(ds["idx"]) == list(range(len(ds)))
    first = mrpc["train"][0]
    assert first["sentence1"].startswith("Amrozi accused his brother , whom he called \" the witness \"")


def test_instruction_split(instructions):
    plain, pref = instructions[False], instructions[True]
    assert sizes(plain) == sizes(pref) == {"train": 935, "validation": 55, "test": 110}
    ids = {split: list(ds["id"]) for split, ds in plain.items()}
    assert sorted(ids["train"] + ids["validation"] + ids["test"]) == list(range(1_100))
    assert {split: list(ds["id"]) for split, ds in pref.items()} == ids          # same records, same splits
    for split in plain:
        assert pref[split].select_columns(["id", "instruction", "input", "output"]).to_dict() == plain[split].to_dict()
    other = data.load_instructions(seed=1)
    assert list(other["test"]["id"]) != ids["test"] and sorted(other["train"]["id"]) != sorted(ids["train"])
    assert list(data.load_instructions(seed=0)["test"]["id"]) == ids["test"]
    records = json.loads((real_mirror("instructions") / "instructions" / "instruction-data.json").read_text())
    for row in plain["validation"]:
        assert {k: row[k] for k in ("instruction", "input", "output")} == records[row["id"]]
    assert list(pref["train"].features) == ["id", "instruction", "input", "output", "chosen", "rejected"]
    assert sum(1 for r in records if r["input"]) == 325


def test_mirror_features_are_the_hubs(squad, wnut, mrpc, instructions):
    for name, dd in (("SQuAD", squad), ("WNUT-17", wnut), ("MRPC", mrpc)):
        for split, ds in dd.items():
            assert ds.features == hub_features(name), (name, split)
    for preference, dd in instructions.items():
        for ds in dd.values():
            assert ds.features == instruction_hub_features(preference)
    assert data.WNUT17_LABELS == hub_features("WNUT-17")["ner_tags"].feature.names
    # the comparison notices another label order, or another integer width
    shuffled = datasets.Features({**hub_features("WNUT-17"), "ner_tags": datasets.List(
        datasets.ClassLabel(names=sorted(data.WNUT17_LABELS)))})
    assert wnut["train"].features != shuffled
    assert mrpc["train"].features != datasets.Features({**hub_features("MRPC"), "idx": datasets.Value("int64")})


def test_check_mirror_knows_the_new_sets(tmp_path, monkeypatch):
    real_mirror("SQuAD")
    found = data.check_mirror()["data sets"]
    assert {k: found[k] for k in ("SQuAD", "WNUT-17", "MRPC", "instructions")} == dict.fromkeys(
        ("SQuAD", "WNUT-17", "MRPC", "instructions"), True)
    (tmp_path / "sst2").mkdir()
    for f in ("train.tsv", "dev.tsv"):
        (tmp_path / "sst2" / f).write_text("label\tsentence\n1\tgood\n", encoding="utf-8")
    (tmp_path / "mrpc").mkdir()
    (tmp_path / "mrpc" / "train.tsv").write_text("x")                 # part of MRPC only
    monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path))
    found = data.check_mirror()["data sets"]
    assert found["SST-2"] and not any(found[k] for k in ("SQuAD", "WNUT-17", "MRPC", "instructions"))
    with pytest.raises(CourseError, match=r"The MRPC mirror in .*mrpc is incomplete: .*dev.tsv is missing"):
        data.load_mrpc()


# ------------------------------------------------------------------ a fake hub and the round trip

def fake_hub() -> dict:
    """Tiny stand-ins for what the hub returns, with the hub's features."""
    def dd(name, splits):
        return datasets.DatasetDict({s: datasets.Dataset.from_list(rows, features=hub_features(name))
                                     for s, rows in splits.items()})

    def qa(qid, title, context, question, answer):
        start = context.index(answer)
        return {"id": qid, "title": title, "context": context, "question": question,
                "answers": {"text": [answer, answer], "answer_start": [start, start]}}
    validation = [qa("a1", "Alpha", "Alpha is \"first\" — ünïcode.", "What is Alpha?", "\"first\""),
                  qa("a2", "Alpha", "Alpha is \"first\" — ünïcode.", "Which text?", "ünïcode"),
                  qa("a3", "Alpha", "A second paragraph of Alpha.", "Which paragraph?", "second"),
                  qa("b1", "Beta", "Beta comes next.", "What comes next?", "Beta"),
                  qa("c1", "Gamma", "Gamma is last.", "What is last?", "last")]
    squad = dd("SQuAD", {"train": [qa("t1", "Train", "Only on the hub.", "Where?", "hub")],
                         "validation": validation})

    def sentence(i, tokens, tags):
        return {"id": str(i), "tokens": tokens, "ner_tags": [data.WNUT17_LABELS.index(t) for t in tags]}
    wnut = dd("WNUT-17", {
        "train": [sentence(0, ["@me", "in", "New", "York", "\""], ["O", "O", "B-location", "I-location", "O"]),
                  sentence(1, ["Pokémon", "GO"], ["B-product", "I-product"])],
        "validation": [sentence(0, ["Apple"], ["B-corporation"])],
        "test": [sentence(0, ["hi", "Bob"], ["O", "B-person"])]})

    def pair(i, s1, s2, label):
        return {"sentence1": s1, "sentence2": s2, "label": label, "idx": i}
    mrpc = dd("MRPC", {"train": [pair(0, 'He said " yes " .', "He agreed .", 1), pair(1, "A .", "B .", 0),
                                 pair(2, "It 's 5 \" long", "Five inches", 1)],
                       "validation": [pair(0, "X .", "X !", 1), pair(1, "Y", "Z", 0)],
                       "test": [pair(0, "P .", "Q .", 1), pair(1, "R", "S", 0)]})
    return {"squad": squad, "wnut": wnut, "mrpc": mrpc}


def fake_instruction_json(n: int = 20) -> dict:
    plain = [{"instruction": f"Do thing {i}.", "input": "" if i % 3 else f"input \"{i}\"", "output": f"Done {i} ✓"}
             for i in range(n)]
    pref = [{**r, "rejected": f"No. {i}", "chosen": f"Gladly: done {i}."} for i, r in enumerate(plain)]
    return {data.INSTRUCTION_URLS[False]: json.dumps(plain, indent=4),
            data.INSTRUCTION_URLS[True]: json.dumps(pref, indent=1, ensure_ascii=False)}


@pytest.fixture
def hub(monkeypatch):
    """datasets.load_dataset and ftlib.data._fetch_url answer from fakes; ``calls`` records them."""
    fakes, texts, calls = fake_hub(), fake_instruction_json(), []
    sst2 = datasets.DatasetDict({s: datasets.Dataset.from_dict(
        {"sentence": ["good film", "bad film"], "label": [1, 0], "idx": [0, 1]},
        features=datasets.Features({"sentence": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["negative", "positive"]),
                                    "idx": datasets.Value("int32")})) for s in ("train", "validation")})

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        if path == "rajpurkar/squad":
            return fakes["squad"]
        if path == "leondz/wnut_17":
            return fakes["wnut"]
        if (path, name) == ("glue", "mrpc"):
            return fakes["mrpc"]
        if (path, name) == ("glue", "sst2"):
            return sst2
        if path == "text":
            return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["To be or not.\n" * 40]})})
        if path == "Helsinki-NLP/opus-100":
            return datasets.Dataset.from_dict({"translation": [{"en": f"hi {i}", "zh": f"你好 {i}"} for i in range(40)]})
        raise AssertionError(f"unexpected load_dataset({path!r}, {name!r})")

    def fetch(url, timeout=None):
        calls.append((url, None))
        return texts[url]
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(data, "_fetch_url", fetch)
    monkeypatch.delenv("FTLIB_DATA_DIR", raising=False)
    return calls


def as_dicts(dd) -> dict:
    return {split: ds.to_dict() for split, ds in dd.items()}


def test_hub_path_gives_the_same_columns_and_features(hub):
    squad, wnut, mrpc = data.load_squad(), data.load_wnut17(), data.load_mrpc()
    assert sizes(squad) == {"train": 1, "validation": 5}            # the hub's splits, not by article
    assert squad["validation"].features == hub_features("SQuAD") and wnut["test"].features == hub_features("WNUT-17")
    assert list(mrpc["train"]["label"]) == [1, 0, 1]
    assert list(mrpc["test"]["label"]) == [-1, -1]                          # hidden, as in the mirror's GLUE files
    assert mrpc["test"].features == hub_features("MRPC")
    plain = data.load_instructions()
    assert sizes(plain) == {"train": 17, "validation": 1, "test": 2}
    assert plain["train"].features == instruction_hub_features(False)
    assert [c for c in hub if c[0].startswith("https://")] == [(data.INSTRUCTION_URLS[False], None)]


def test_hub_labels_in_another_order_are_refused(monkeypatch):
    wnut = fake_hub()["wnut"]
    reordered = datasets.Features({**wnut["train"].features, "ner_tags": datasets.List(
        datasets.ClassLabel(names=sorted(data.WNUT17_LABELS)))})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: wnut.cast(reordered))
    with pytest.raises(CourseError, match="WNUT-17 ner_tags labels are .*B-corporation.*the course expects"):
        data.load_wnut17(source="hub")


def test_download_round_trip(hub, tmp_path, monkeypatch):
    online = {"squad": data.load_squad(), "wnut": data.load_wnut17(), "mrpc": data.load_mrpc(),
              "plain": data.load_instructions(seed=3), "pref": data.load_instructions(preference=True, seed=3)}
    assert set(data._WRITERS) == set(data.MIRROR_FILES)
    assert data.download(str(tmp_path / "mirror")) == tmp_path / "mirror"
    monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path / "mirror"))
    assert all(data.check_mirror()["data sets"].values())
    for name, files in data.MIRROR_FILES.items():
        assert all((tmp_path / "mirror" / f).is_file() for f in files), name
    assert not list((tmp_path / "mirror").rglob("*.tmp"))
    calls_before = len(hub)
    offline = {"wnut": data.load_wnut17(source="mirror"), "mrpc": data.load_mrpc(source="mirror"),
               "plain": data.load_instructions(source="mirror", seed=3),
               "pref": data.load_instructions(source="mirror", preference=True, seed=3)}
    assert len(hub) == calls_before                                   # the mirror, not the fakes
    for key, dd in offline.items():
        assert as_dicts(dd) == as_dicts(online[key]), key
        assert all(dd[s].features == online[key][s].features for s in dd), key
    assert offline["wnut"]["train"][1]["tokens"] == ["Pokémon", "GO"]
    assert offline["mrpc"]["train"][2]["sentence1"] == "It 's 5 \" long"
    # SQuAD: the hub's validation split became dev-v1.1.json, which loads split by article
    written = json.loads((tmp_path / "mirror" / "squad_v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))
    assert [(a["title"], len(a["paragraphs"])) for a in written["data"]] == [("Alpha", 2), ("Beta", 1), ("Gamma", 1)]
    mirror_squad = data.load_squad(source="mirror", test_articles=1)
    validation = online["squad"]["validation"]
    assert mirror_squad["train"].to_dict() == validation.select([0, 1, 2, 3]).to_dict()
    assert mirror_squad["validation"].to_dict() == validation.select([4]).to_dict()
    assert mirror_squad["train"].features == validation.features
    # the other sets were written too, in their loaders' formats
    assert list(data.load_sst2()["train"]["sentence"]) == ["good film", "bad film"]
    assert "".join(data.load_tinyshakespeare()[s][0]["text"] for s in ("train", "validation", "test")) == "To be or not.\n" * 40
    with pytest.raises(CourseError, match="Unknown data set 'squad': choose from SST-2, "):
        data.download(str(tmp_path / "other"), names=["squad"])


def test_download_refuses_what_its_format_cannot_hold(monkeypatch, tmp_path):
    fakes = fake_hub()
    tabbed = fakes["mrpc"]["train"].to_list()
    tabbed[1]["sentence2"] = "a\tb"
    mrpc = datasets.DatasetDict({**fakes["mrpc"], "train": datasets.Dataset.from_list(tabbed, features=hub_features("MRPC"))})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: mrpc)
    with pytest.raises(CourseError, match=r"an MRPC sentence holds a tab or a line break.*'a\\tb'"):
        data.download(str(tmp_path), names=["MRPC"])
    assert not (tmp_path / "mrpc" / "train.tsv").exists()


# ------------------------------------------------------------------ no mirror and no hub

LOADERS = {"SQuAD": data.load_squad, "WNUT-17": data.load_wnut17, "MRPC": data.load_mrpc,
           "the instruction data": data.load_instructions}


@pytest.mark.parametrize("with_mirror_folder", [False, True])
def test_neither_mirror_nor_hub_is_one_clear_error(monkeypatch, tmp_path, with_mirror_folder):
    calls = []

    def offline(path, name=None, **kwargs):
        calls.append((path, name, kwargs.get("revision")))
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (no network)")

    def no_github(url, timeout=None):
        calls.append((url, None, None))
        raise OSError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setattr(data, "_fetch_url", no_github)
    if with_mirror_folder:
        monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path))
    else:
        monkeypatch.delenv("FTLIB_DATA_DIR", raising=False)
    for name, load in LOADERS.items():
        with pytest.raises(CourseError) as info:
            load()
        message = str(info.value)
        assert message.startswith(f"Cannot load {name}: "), message
        assert "python -m ftlib download-data FOLDER" in message and "FTLIB_DATA_DIR=FOLDER" in message
        assert ("Temporary failure" if name.startswith("the instr") else "Couldn't reach") in message
        assert isinstance(info.value.__cause__, (ConnectionError, OSError))
        if with_mirror_folder:
            assert f"the mirror file {tmp_path}" in message
        else:
            assert "FTLIB_DATA_DIR is unset" in message
    assert [c[:2] for c in calls if c[0] in ("glue", "nyu-mll/glue")] == [("glue", "mrpc"), ("nyu-mll/glue", "mrpc")]
    assert [c[2] for c in calls if c[0] == "leondz/wnut_17"] == [None, "refs/convert/parquet"]
    # source="mirror" never asks the hub
    calls.clear()
    monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path))
    for name, load in LOADERS.items():
        short = {"the instruction data": "instructions"}.get(name, name)
        with pytest.raises(CourseError, match=f"No {short} mirror: {tmp_path} lacks "):
            load(source="mirror")
    assert calls == []
    with pytest.raises(CourseError, match="source must be 'auto', 'mirror' or 'hub', not 'web'"):
        data.load_mrpc(source="web")


# ------------------------------------------------------------------ malformed mirror files

def mirror_with(tmp_path, monkeypatch, files: dict) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    monkeypatch.setenv("FTLIB_DATA_DIR", str(tmp_path))
    return tmp_path


WNUT_OK = "Hello\tO\nBob\tB-person\n\t\nin\tO\nNew\tB-location\nYork\tI-location\n\n"


def wnut_files(train: str) -> dict:
    return {"wnut17/wnut17train.conll": train, "wnut17/emerging.dev.conll": "a\tO\n",
            "wnut17/emerging.test.annotated": "b\tO\n\n"}


def test_wnut17_small_files(tmp_path, monkeypatch):
    mirror_with(tmp_path, monkeypatch, wnut_files(WNUT_OK))
    ds = data.load_wnut17()
    assert ds["train"].to_dict() == {"id": ["0", "1"], "tokens": [["Hello", "Bob"], ["in", "New", "York"]],
                                     "ner_tags": [[0, 9], [0, 7, 8]]}       # a lone tab separates sentences too
    assert sizes(ds) == {"train": 2, "validation": 1, "test": 1}


@pytest.mark.parametrize("line, message", [
    ("Bob\tB-animal", r"wnut17train.conll, line 10: unknown tag 'B-animal'; WNUT-17's tags are O, B-corporation"),
    ("Bob B-person", r"wnut17train.conll, line 10: expected 'token<TAB>tag', got 'Bob B-person'"),
    ("Bob\tB-person\tx", r"wnut17train.conll, line 10: expected 'token<TAB>tag'"),
])
def test_wnut17_bad_line(tmp_path, monkeypatch, line, message):
    mirror_with(tmp_path, monkeypatch, wnut_files(WNUT_OK + "\nHi\tO\n" + line + "\n"))
    with pytest.raises(CourseError, match=message):
        data.load_wnut17()


MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
MRPC_TEST = "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1\t2\tP .\tQ \" .\n1\t3\t4\tR\tS\n"


def mrpc_files(train_rows: str, test: str = MRPC_TEST) -> dict:
    return {"mrpc/train.tsv": MRPC_HEADER + train_rows, "mrpc/dev.tsv": MRPC_HEADER + "0\t5\t6\tX\tY\n",
            "mrpc/test.tsv": test}


def test_mrpc_small_files(tmp_path, monkeypatch):
    mirror_with(tmp_path, monkeypatch, mrpc_files('1\t7\t8\tHe said " yes .\tHe agreed .\n0\t9\t10\tA\tB\n'))
    ds = data.load_mrpc()
    assert ds["train"].to_dict() == {"sentence1": ['He said " yes .', "A"], "sentence2": ["He agreed .", "B"],
                                     "label": [1, 0], "idx": [0, 1]}
    assert ds["test"].to_dict() == {"sentence1": ["P .", "R"], "sentence2": ['Q " .', "S"], "label": [-1, -1],
                                    "idx": [0, 1]}


@pytest.mark.parametrize("train_rows, test, message", [
    ("1\t7\t8\tfine\tok\n2\t9\t10\tA\tB\n", MRPC_TEST, r"train.tsv, line 3: expected 5 tab-separated columns.*Quality 0 or 1"),
    ("1\t7\t8\tfine\tok\n1\t9\tA\tB\n", MRPC_TEST, r"train.tsv, line 3: expected 5 tab-separated columns.*'1', '9', 'A', 'B'"),
    ("1\t7\t8\tfine\tok\n", MRPC_HEADER + "1\t1\t2\tP\tQ\n", r"test.tsv should start with the header 'index<TAB>#1 ID"),
    ("1\t7\t8\tfine\tok\n", MRPC_TEST + "x\t1\t2\tP\tQ\n", r"test.tsv, line 4: expected 5 tab-separated columns.*a row number"),
])
def test_mrpc_bad_row(tmp_path, monkeypatch, train_rows, test, message):
    mirror_with(tmp_path, monkeypatch, mrpc_files(train_rows, test))
    with pytest.raises(CourseError, match=message):
        data.load_mrpc()


def squad_file(start: int = 7) -> str:
    def article(title, n):
        return {"title": title, "paragraphs": [{"context": f"{title} has {n} questions.", "qas": [
            {"id": f"{title}-{i}", "question": "How many?", "answers": [{"text": f"{n} questions", "answer_start": len(title) + 5}]}
            for i in range(n)]}]}
    doc = {"version": "1.1", "data": [article("Aa", 2), article("Bb", 3), article("Cc", 1)]}
    doc["data"][1]["paragraphs"][0]["qas"][2]["answers"][0]["answer_start"] = start
    return json.dumps(doc)


def test_squad_small_file(tmp_path, monkeypatch):
    mirror_with(tmp_path, monkeypatch, {"squad_v1.1/dev-v1.1.json": squad_file(start=len("Bb") + 5)})
    ds = data.load_squad(test_articles=2)
    assert (list(ds["train"]["id"]), list(ds["validation"]["id"])) == (["Aa-0", "Aa-1"], ["Bb-0", "Bb-1", "Bb-2", "Cc-0"])
    assert ds["validation"][2]["answers"] == {"text": ["3 questions"], "answer_start": [7]}


@pytest.mark.parametrize("text, message", [
    (squad_file(start=8), r"dev-v1.1.json: question Bb-2: its answer '3 questions' is not at answer_start 8 "
                          r"of its context \(found ' questions.' there\)"),
    (squad_file().replace('"answer_start": 7', '"answer_start": "7"', 1),
     r"question Aa-0: its answer '2 questions' is not at answer_start '7'"),
    (squad_file().replace('"qas"', '"questions"', 1), r"dev-v1.1.json, article 0: not in SQuAD's form .*KeyError: 'qas'"),
    (squad_file()[:-2], r"dev-v1.1.json is not valid JSON \(line 1, column"),
    (json.dumps([1, 2]), r"dev-v1.1.json is not a SQuAD file"),
])
def test_squad_bad_file(tmp_path, monkeypatch, text, message):
    mirror_with(tmp_path, monkeypatch, {"squad_v1.1/dev-v1.1.json": text})
    with pytest.raises(CourseError, match=message):
        data.load_squad(test_articles=1)


def instruction_files(plain: str | None = None, pref: str | None = None) -> dict:
    texts = fake_instruction_json()
    return {"instructions/instruction-data.json": plain or texts[data.INSTRUCTION_URLS[False]],
            "instructions/instruction-data-with-preference.json": pref or texts[data.INSTRUCTION_URLS[True]]}


def test_instructions_bad_files(tmp_path, monkeypatch):
    records = json.loads(fake_instruction_json()[data.INSTRUCTION_URLS[False]])
    mirror_with(tmp_path, monkeypatch, instruction_files())
    assert sizes(data.load_instructions(preference=True)) == {"train": 17, "validation": 1, "test": 2}
    del records[7]["output"]
    mirror_with(tmp_path, monkeypatch, instruction_files(plain=json.dumps(records, indent=2)))
    with pytest.raises(CourseError, match=r"instruction-data.json, record 7: the key\(s\) output are missing"):
        data.load_instructions()
    assert sizes(data.load_instructions(preference=True)) == {"train": 17, "validation": 1, "test": 2}
    # the preference file without its preference keys
    mirror_with(tmp_path, monkeypatch, instruction_files(pref=fake_instruction_json()[data.INSTRUCTION_URLS[False]]))
    with pytest.raises(CourseError, match=r"instruction-data-with-preference.json, record 0: the key\(s\) chosen, rejected"):
        data.load_instructions(preference=True)
    records = json.loads(fake_instruction_json()[data.INSTRUCTION_URLS[False]])
    records[3] = ["not", "a", "record"]
    records[4]["input"] = None
    mirror_with(tmp_path, monkeypatch, instruction_files(plain=json.dumps(records)))
    with pytest.raises(CourseError, match=r"instruction-data.json, record 3: expected an object"):
        data.load_instructions()
    records[3] = {"instruction": "i", "input": "", "output": "o"}
    mirror_with(tmp_path, monkeypatch, instruction_files(plain=json.dumps(records)))
    with pytest.raises(CourseError, match=r"instruction-data.json, record 4: input should be text, not NoneType"):
        data.load_instructions()
    mirror_with(tmp_path, monkeypatch, instruction_files(plain='[{"instruction": "i",\n "input": ""\n "output": "o"}]'))
    with pytest.raises(CourseError, match=r"instruction-data.json is not valid JSON \(line 3, column 2"):
        data.load_instructions()


def test_instruction_split_depends_on_n_and_seed_only():
    split = data.instruction_split(1_100, seed=0)
    assert {k: len(v) for k, v in split.items()} == {"train": 935, "validation": 55, "test": 110}
    assert sorted(sum(split.values(), [])) == list(range(1_100))
    assert data.instruction_split(1_100, seed=0) == split
    assert data.instruction_split(1_100, seed=1)["test"] != split["test"]
    assert {k: len(v) for k, v in data.instruction_split(20).items()} == {"train": 17, "validation": 1, "test": 2}


def test_drop_leaks_equals_the_pairwise_definition_and_rejects_exact_match_only():
    from ftlib.exercises.lesson05 import TRAIN, VAL, drop_leaks_reference
    assert ftlib.drop_leaks(VAL, TRAIN) == drop_leaks_reference(VAL, TRAIN)
    # the wrong answer the exercise warns about, dropping exact duplicates only, keeps a leak here
    assert [s for s in VAL if s not in TRAIN] != drop_leaks_reference(VAL, TRAIN)
    # on real SST-2 phrases: the same as testing every pair, and most random validation phrases leak
    sst2 = ftlib.load_sst2()
    train = list(sst2["train"]["sentence"][:3000])
    val = list(sst2["train"]["sentence"][3000:3300])
    kept = ftlib.drop_leaks(val, train)
    assert kept == drop_leaks_reference(val, train)
    assert 0 < len(kept) < len(val)
    assert ftlib.drop_leaks(["a\nb"], ["x a\nb y"]) == []          # a phrase with a newline: the pairwise test
    with pytest.raises(ftlib.CourseError, match="strings"):
        ftlib.drop_leaks([1], ["a"])


def test_leak_free_folds_hold_out_no_text_of_their_training_folds_and_match_kfold_otherwise():
    from sklearn.model_selection import KFold
    phrases = ["a fine film", "dull and long", "the cast shines", "an odd delight", "a mess", "fine",
               "long", "nothing new", "shines", "odd", "a quiet film", "so so"]
    folds = ftlib.leak_free_folds(phrases, 4)
    plain = list(KFold(4).split(phrases))
    assert len(folds) == 4
    for (train, held), (k_train, k_held) in zip(folds, plain):
        assert list(train) == list(k_train) and set(held) <= set(k_held)       # KFold's folds, held-out pruned
        for i in held:                                                        # nothing held out is training text
            assert not any(phrases[i] in phrases[j] for j in train)
        dropped = set(k_held) - set(held)
        assert all(any(phrases[i] in phrases[j] for j in train) for i in dropped)   # only leaks are dropped
    # the wrong answer it rejects: plain k-fold holds out "fine", "long", "shines", "odd" while training on
    # their sentences (a held-out sentence that contains a training phrase stays: lesson 05's rule)
    leaks = [i for k_train, k_held in plain for i in k_held if any(phrases[i] in phrases[j] for j in k_train)]
    assert sorted(phrases[i] for i in leaks) == ["fine", "long", "odd", "shines"]
    assert sum(len(h) for _, h in folds) == len(phrases) - 4
    with pytest.raises(ftlib.CourseError, match="nothing is left"):
        ftlib.leak_free_folds(["good", "good", "good film", "good"], 2)
