"""The course's data sets, from a local mirror folder or from the hub.

===============  ======================================  =====================================
data set         mirror files (under FTLIB_DATA_DIR)     hub source (online)
===============  ======================================  =====================================
SST-2            sst2/train.tsv, sst2/dev.tsv             ``glue`` / ``sst2``
                 (``label<TAB>sentence``)
tinyshakespeare  tinyshakespeare/input.txt               the char-rnn corpus's raw text file
Chinese-English  tatoeba_cmn_eng/cmn.txt                 ``Helsinki-NLP/opus-100`` ``en-zh``
                 (``english<TAB>chinese<TAB>credit``)    (another corpus: OPUS, not Tatoeba)
SQuAD v1.1       squad_v1.1/dev-v1.1.json (the official  ``rajpurkar/squad`` (train 87,599,
                 dev file only, 48 articles: split by    validation 10,570)
                 article, see ``SQUAD_MIRROR_SPLIT``)
WNUT-17          wnut17/wnut17train.conll,               ``leondz/wnut_17``
                 emerging.dev.conll,
                 emerging.test.annotated
                 (``token<TAB>tag``, blank line between
                 sentences)
MRPC             mrpc/train.tsv, dev.tsv, test.tsv       ``glue`` / ``mrpc`` (or
                 (GLUE's files: BOM, bare quotes)        ``nyu-mll/glue``)
instructions     instructions/instruction-data.json,     the two JSON files in
                 instruction-data-with-preference.json   rasbt/LLMs-from-scratch, ch. 7
                                                         (``INSTRUCTION_URLS``)
===============  ======================================  =====================================

Every loader returns a ``datasets.DatasetDict`` with the same columns and features from the
mirror and from the hub, so lesson code is the same both ways. ``FTLIB_DATA_DIR`` names the mirror
folder (CI points it at its own copy). Without it the hub is used.  ``python -m ftlib
download-data FOLDER`` writes a mirror from the hub once, so a learner can work offline afterwards.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from ftlib.errors import CourseError

SST2_LABELS = ["negative", "positive"]
# the files a mirror folder holds for each data set (python -m ftlib download-data writes them all)
MIRROR_FILES = {"SST-2": ("sst2/train.tsv", "sst2/dev.tsv"),
                "tinyshakespeare": ("tinyshakespeare/input.txt",),
                "Chinese-English pairs": ("tatoeba_cmn_eng/cmn.txt",),
                "SQuAD": ("squad_v1.1/dev-v1.1.json",),
                "WNUT-17": ("wnut17/wnut17train.conll", "wnut17/emerging.dev.conll",
                            "wnut17/emerging.test.annotated"),
                "MRPC": ("mrpc/train.tsv", "mrpc/dev.tsv", "mrpc/test.tsv"),
                "instructions": ("instructions/instruction-data.json",
                                 "instructions/instruction-data-with-preference.json")}
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"

# SQuAD offline: the mirror holds only the official dev file (48 articles, 10,570 questions; the
# 87,599-question train file is not in it). load_squad splits it BY ARTICLE, in file order: the
# first 48 - test_articles articles are "train", the last test_articles (SQUAD_TEST_ARTICLES by
# default: 38 + 10 articles, 8,582 + 1,988 questions) are "validation"; no article has questions
# on both sides. Online the hub's own train / validation splits are used.
SQUAD_TEST_ARTICLES = 10
SQUAD_MIRROR_SPLIT = ("SQuAD from the mirror: dev-v1.1.json split by article in file order, the first "
                      "48 - test_articles articles to 'train', the last test_articles (default "
                      f"{SQUAD_TEST_ARTICLES}) to 'validation'; one article's questions are never split")
# the hub's label order (leondz/wnut_17's ClassLabel names), the ids of ner_tags
WNUT17_LABELS = ["O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group",
                 "I-group", "B-location", "I-location", "B-person", "I-person", "B-product", "I-product"]
MRPC_LABELS = ["not_equivalent", "equivalent"]
INSTRUCTION_KEYS = ("instruction", "input", "output")
PREFERENCE_KEYS = ("chosen", "rejected")
INSTRUCTION_URLS = {
    False: "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/"
           "instruction-data.json",
    True: "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/04_preference-tuning-with-dpo/"
          "instruction-data-with-preference.json"}
INSTRUCTION_FRACTIONS = (0.85, 0.05, 0.10)     # train / validation / test: 935 / 55 / 110 of 1,100
URL_TIMEOUT_S = 60

_HOW_TO_FIX = (
    "To fix it, either\n"
    "  * connect to the internet (the hub copy is used when no mirror is set), or\n"
    "  * on a connected machine run `python -m ftlib download-data FOLDER`, copy FOLDER here,\n"
    "    and set FTLIB_DATA_DIR=FOLDER (the Makefile and CI set it for you when they can)."
)


def data_dir() -> Path | None:
    """The configured mirror folder, or None."""
    value = os.environ.get("FTLIB_DATA_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "it is a file" if path.exists() else "nothing is there"
        raise CourseError(f"FTLIB_DATA_DIR={value!r} is not a folder ({what}). Point it at a data mirror "
                          "(holding sst2/ and tinyshakespeare/) or unset it to use the hub.")
    return path


def check_mirror() -> dict | None:
    """What the ``FTLIB_DATA_DIR`` mirror holds: ``None`` when it is unset, else
    ``{"path": folder, "data sets": {name: True if all its files are there}}``.

    Raises CourseError, saying what is wrong and what to do, when the setting names something
    that is not a folder, or a folder that is not a mirror (no ``sst2/``: the wrong folder, or one
    level too high or low), or one with only part of SST-2.
    """
    path = data_dir()
    if path is None:
        return None
    value = os.environ.get("FTLIB_DATA_DIR")
    sst2 = [f for f in MIRROR_FILES["SST-2"] if not (path / f).is_file()]
    if len(sst2) == len(MIRROR_FILES["SST-2"]):
        inside = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        shown = ", ".join(inside[:8]) + (" ..." if len(inside) > 8 else "") if inside else "nothing"
        raise CourseError(f"FTLIB_DATA_DIR={value!r} is not a data mirror: it has no sst2/train.tsv "
                          f"(it holds {shown}). Point it at the folder that holds sst2/ and "
                          "tinyshakespeare/ (e.g. data/mirror), write one with `python -m ftlib download-data "
                          "FOLDER`, or unset it to use the hub.")
    if sst2:
        raise CourseError(f"FTLIB_DATA_DIR={value!r}: the SST-2 mirror is incomplete, {path / sst2[0]} is "
                          "missing. Copy the whole mirror again, or rewrite it with "
                          "`python -m ftlib download-data FOLDER`.")
    return {"path": path, "data sets": {name: all((path / f).is_file() for f in files)
                                        for name, files in MIRROR_FILES.items()}}


def _read_sst2_tsv(path: Path) -> dict:
    sentences, labels = [], []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        # the mirror's train.tsv says `label<TAB>sentence`, its dev.tsv `label<TAB>content`
        if header not in (["label", "content"], ["label", "sentence"]):
            raise CourseError(f"{path} should start with the header 'label<TAB>sentence', found {header!r}.")
        for lineno, row in enumerate(reader, start=2):
            if len(row) != 2 or row[0] not in ("0", "1"):
                raise CourseError(f"{path}, line {lineno}: expected '0 or 1<TAB>sentence', got {row!r}.")
            labels.append(int(row[0]))
            sentences.append(row[1])
    if not sentences:
        raise CourseError(f"{path} holds no examples.")
    return {"sentence": sentences, "label": labels}


def _hub_failure(what: str, err: Exception, mirror_file: Path | None, hub: str = "the hub"):
    where = (f"the mirror file {mirror_file} does not exist" if mirror_file else
             "no mirror is configured (FTLIB_DATA_DIR is unset)")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CourseError(f"Cannot load {what}: {where}, and {hub} could not be reached "
                       f"({type(err).__name__}: {first}).\n{_HOW_TO_FIX}")


def load_sst2(source: str = "auto"):
    """SST-2 as a ``datasets.DatasetDict`` with ``train`` (67,349) and ``validation`` (872).

    Columns: ``sentence`` (str) and ``label`` (0 negative, 1 positive).
    ``source``: "auto" (mirror if configured, else hub), "mirror" or "hub".
    """
    import datasets
    if source not in ("auto", "mirror", "hub"):
        raise CourseError(f"source must be 'auto', 'mirror' or 'hub', not {source!r}.")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=SST2_LABELS)})
    root = data_dir() if source != "hub" else None
    folder = root / "sst2" if root else None
    if folder is not None and (folder / "train.tsv").is_file():
        if not (folder / "dev.tsv").is_file():
            raise CourseError(f"The SST-2 mirror in {folder} has train.tsv but no dev.tsv: copy the whole "
                              "mirror again, or rewrite it with `python -m ftlib download-data FOLDER`.")
        return datasets.DatasetDict({
            split: datasets.Dataset.from_dict(_read_sst2_tsv(folder / fname), features=features)
            for split, fname in (("train", "train.tsv"), ("validation", "dev.tsv"))})
    if source == "mirror":
        raise CourseError(f"No SST-2 mirror: {folder or 'FTLIB_DATA_DIR'} lacks sst2/train.tsv.\n{_HOW_TO_FIX}")
    try:
        hub = datasets.load_dataset("glue", "sst2")
    except Exception as err:  # the hub client raises many kinds when offline
        raise _hub_failure("SST-2", err, folder / "train.tsv" if folder else None) from err
    return datasets.DatasetDict({
        split: hub[hub_split].select_columns(["sentence", "label"]).cast(features)
        for split, hub_split in (("train", "train"), ("validation", "validation"))})


def drop_leaks(val_sentences, train_sentences) -> list[str]:
    """The validation phrases that occur nowhere in the training phrases -- neither as one of them nor
    inside a longer one -- in their order (exercise 05.3 derives it).

    SST-2's training set holds phrases cut from the parse trees of whole sentences, so a validation split
    drawn from it at random shares text with its training part unless the leaks are dropped. One search
    in the training phrases joined by newlines finds the same leaks as testing every pair, in seconds
    for all of SST-2 (a phrase holds no newline).
    """
    val_sentences, train_sentences = list(val_sentences), list(train_sentences)
    bad = [s for s in val_sentences + train_sentences if not isinstance(s, str)]
    if bad:
        raise CourseError(f"drop_leaks takes lists of strings; got a {type(bad[0]).__name__} ({bad[0]!r:.60}).")
    if any("\n" in s for s in val_sentences):
        return [s for s in val_sentences if not any(s in t for t in train_sentences)]
    joined = "\n".join(set(train_sentences))
    return [s for s in val_sentences if s not in joined]


def leak_free_folds(sentences, k: int = 5) -> list:
    """k-fold cross-validation folds ``[(train_idx, held_idx), ...]`` (numpy arrays) whose held-out
    phrases share no text with their training phrases.

    The folds are :func:`ftlib.metrics.kfold_indices` (sklearn's ``KFold``), then each held-out fold drops
    the phrases :func:`drop_leaks` finds inside that fold's training phrases: on SST-2, whose training set
    holds phrases cut from the same sentences, plain k-fold scores every fold partly on text it trained on.
    The list goes straight to sklearn (``cross_val_score(..., cv=folds)``); every phrase is still held
    out at most once."""
    import numpy as np

    from ftlib.metrics import kfold_indices
    sentences = list(sentences)
    folds = []
    for train_idx, held_idx in kfold_indices(len(sentences), k):
        clean = set(drop_leaks([sentences[i] for i in held_idx], [sentences[i] for i in train_idx]))
        kept = np.array([i for i in held_idx if sentences[i] in clean], dtype=int)
        if not len(kept):
            raise CourseError(f"Fold {len(folds) + 1} of {k}: every held-out phrase occurs in its training phrases, "
                              "so nothing is left to validate on; use fewer folds or more data.")
        folds.append((train_idx, kept))
    return folds


def split_text(text: str, fractions=(0.9, 0.05, 0.05)) -> dict:
    """Cut one long text into consecutive train / validation / test pieces."""
    n = len(text)
    a = int(n * fractions[0])
    b = a + int(n * fractions[1])
    return {"train": text[:a], "validation": text[a:b], "test": text[b:]}


def load_tinyshakespeare(source: str = "auto"):
    """tinyshakespeare as a ``DatasetDict`` of one ``text`` row per split (90/5/5 by characters)."""
    import datasets
    if source not in ("auto", "mirror", "hub"):
        raise CourseError(f"source must be 'auto', 'mirror' or 'hub', not {source!r}.")
    root = data_dir() if source != "hub" else None
    path = root / "tinyshakespeare" / "input.txt" if root else None
    if path is not None and path.is_file():
        text = path.read_text(encoding="utf-8")
    elif source == "mirror":
        raise CourseError(f"No tinyshakespeare mirror: {path or 'FTLIB_DATA_DIR'} is missing.\n{_HOW_TO_FIX}")
    else:
        try:
            raw = datasets.load_dataset("text", data_files=SHAKESPEARE_URL, sample_by="document")
        except Exception as err:
            raise _hub_failure("tinyshakespeare", err, path) from err
        text = raw["train"][0]["text"]
    if not text.strip():
        raise CourseError(f"The tinyshakespeare text from {path or SHAKESPEARE_URL} is empty.")
    return datasets.DatasetDict({k: datasets.Dataset.from_dict({"text": [v]})
                                 for k, v in split_text(text).items()})


def load_translation_pairs(source: str = "auto", seed: int = 0):
    """Chinese-English sentence pairs: ``DatasetDict`` of ``train``/``validation``/``test``
    (90/5/5, shuffled with ``seed``), columns ``zh`` and ``en``.

    The mirror is Tatoeba's cmn-eng file (29k short pairs, CC-BY 2.0 France, each line credited
    in its third column); online without a mirror, OPUS-100's en-zh pairs are used instead.
    """
    import datasets
    if source not in ("auto", "mirror", "hub"):
        raise CourseError(f"source must be 'auto', 'mirror' or 'hub', not {source!r}.")
    root = data_dir() if source != "hub" else None
    path = root / "tatoeba_cmn_eng" / "cmn.txt" if root else None
    if path is not None and path.is_file():
        zh, en = [], []
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            cols = line.split("\t")
            if len(cols) >= 2 and cols[0].strip() and cols[1].strip():
                en.append(cols[0].strip())
                zh.append(cols[1].strip())
        if not en:
            raise CourseError(f"{path} holds no 'english<TAB>chinese' lines.")
        ds = datasets.Dataset.from_dict({"zh": zh, "en": en})
    elif source == "mirror":
        raise CourseError(f"No translation mirror: {path or 'FTLIB_DATA_DIR'} lacks tatoeba_cmn_eng/cmn.txt.\n{_HOW_TO_FIX}")
    else:
        try:
            hub = datasets.load_dataset("Helsinki-NLP/opus-100", "en-zh", split="train[:30000]")
        except Exception as err:
            raise _hub_failure("the Chinese-English pairs", err, path) from err
        ds = datasets.Dataset.from_dict({"zh": [t["zh"] for t in hub["translation"]],
                                         "en": [t["en"] for t in hub["translation"]]})
    ds = ds.shuffle(seed=seed)
    n = len(ds)
    a, b = int(0.9 * n), int(0.95 * n)
    return datasets.DatasetDict({"train": ds.select(range(a)), "validation": ds.select(range(a, b)),
                                 "test": ds.select(range(b, n))})


# ---------------------------------------------------------------- shared by the loaders below

def _check_source(source: str) -> None:
    if source not in ("auto", "mirror", "hub"):
        raise CourseError(f"source must be 'auto', 'mirror' or 'hub', not {source!r}.")


def _mirror_paths(name: str, source: str) -> tuple[list[Path] | None, Path | None]:
    """(the mirror files of data set ``name``, or None when the mirror has none of them; the
    first expected file, for messages). A mirror with only some of them is a CourseError."""
    root = data_dir() if source != "hub" else None
    if root is None:
        return None, None
    paths = [root / f for f in MIRROR_FILES[name]]
    missing = [p for p in paths if not p.is_file()]
    if not missing:
        return paths, paths[0]
    if len(missing) < len(paths):
        raise CourseError(f"The {name} mirror in {paths[0].parent} is incomplete: {missing[0]} is missing. Copy "
                          "the whole mirror again, or rewrite it with `python -m ftlib download-data FOLDER`.")
    if source == "mirror":
        raise CourseError(f"No {name} mirror: {root} lacks {MIRROR_FILES[name][0]}.\n{_HOW_TO_FIX}")
    return None, paths[0]


def _no_mirror(name: str, source: str) -> None:
    if source == "mirror":        # FTLIB_DATA_DIR unset
        raise CourseError(f"No {name} mirror: FTLIB_DATA_DIR is unset.\n{_HOW_TO_FIX}")


def _load_hub(what: str, candidates, mirror_file: Path | None):
    """``datasets.load_dataset(*args, **kwargs)`` for the first (args, kwargs) that loads; when none
    does, one CourseError that names the data set, the first failure and how to fix it."""
    import datasets
    first = None
    for args, kwargs in candidates:
        try:
            return datasets.load_dataset(*args, **kwargs)
        except Exception as err:  # the hub client raises many kinds when offline
            first = first or err
    raise _hub_failure(what, first, mirror_file) from first


def _check_names(what: str, feature, names: list[str]) -> None:
    """A hub ClassLabel must have the names the mirror gives its ids (else the ids mean other labels)."""
    feature = getattr(feature, "feature", feature)          # List(ClassLabel) -> ClassLabel
    found = getattr(feature, "names", None)
    if found is not None and list(found) != list(names):
        raise CourseError(f"The hub's {what} labels are {found}, the course expects {names}: the hub copy "
                          "changed. Use a mirror (FTLIB_DATA_DIR) or tell the course maintainers.")


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise CourseError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}). "
                          f"Copy the {what} mirror again, or rewrite it with "
                          "`python -m ftlib download-data FOLDER`.") from None
    except UnicodeDecodeError as err:
        raise CourseError(f"{path} is not UTF-8 text ({err}). Copy the {what} mirror again.") from None


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _fetch_url(url: str, timeout: float = URL_TIMEOUT_S) -> str:
    """The text at ``url`` (UTF-8), or an exception; nothing is fetched when HF_HUB_OFFLINE or
    HF_DATASETS_OFFLINE says the session is offline."""
    if _offline():
        raise ConnectionError("HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set, so nothing is downloaded")
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8")


def _write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding=encoding, newline="") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- SQuAD v1.1

def squad_features():
    """The features of ``rajpurkar/squad`` (its card's ``dataset_info``)."""
    import datasets
    s = datasets.Value("string")
    return datasets.Features({"id": s, "title": s, "context": s, "question": s,
                              "answers": {"text": datasets.List(s),
                                          "answer_start": datasets.List(datasets.Value("int32"))}})


def _read_squad_json(path: Path, test_articles: int) -> dict:
    doc = _read_json(path, "SQuAD")
    articles = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(articles, list) or not articles:
        raise CourseError(f"{path} is not a SQuAD file: expected an object whose \"data\" is a list of articles.")
    if not isinstance(test_articles, int) or not 1 <= test_articles < len(articles):
        raise CourseError(f"test_articles must be a whole number from 1 to {len(articles) - 1} (the mirror's "
                          f"{path.name} has {len(articles)} articles), not {test_articles!r}.")
    keys = ("id", "title", "context", "question", "answers")
    sides = {"train": {k: [] for k in keys}, "validation": {k: [] for k in keys}}
    for a, article in enumerate(articles):
        side = sides["train" if a < len(articles) - test_articles else "validation"]
        try:
            title = article["title"]
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    qid = qa["id"]
                    texts, starts = [], []
                    for answer in qa["answers"]:
                        text, start = answer["text"], answer["answer_start"]
                        ok = isinstance(text, str) and isinstance(start, int) and start >= 0
                        found = context[start:start + len(text)] if ok else None
                        if found != text:
                            raise CourseError(
                                f"{path}: question {qid}: its answer {text!r} is not at answer_start {start!r} "
                                f"of its context (found {found!r} there). Copy the SQuAD mirror again "
                                "(dev-v1.1.json, md5 3e85deb501d4e538b6bc56f786231552).")
                        texts.append(text)
                        starts.append(start)
                    for k, v in zip(keys, (qid, title, context, qa["question"], {"text": texts, "answer_start": starts})):
                        side[k].append(v)
        except (KeyError, TypeError, AttributeError) as err:
            raise CourseError(f"{path}, article {a}: not in SQuAD's form (article -> paragraphs -> qas -> "
                              f"answers; {type(err).__name__}: {err}). Copy the SQuAD mirror again.") from None
    return sides


def load_squad(source: str = "auto", test_articles: int = SQUAD_TEST_ARTICLES):
    """SQuAD v1.1 (extractive QA) as a ``DatasetDict`` with ``train`` and ``validation``.

    Columns: ``id``, ``title``, ``context``, ``question`` (str) and ``answers`` =
    ``{"text": [str], "answer_start": [int]}`` (character offsets into ``context``), as on the hub.

    Online: ``rajpurkar/squad``, train 87,599 and validation 10,570 questions (``test_articles``
    is not used). From the mirror, which holds only the dev file (48 articles, 10,570 questions),
    the split is BY ARTICLE in file order: the first ``48 - test_articles`` articles are "train",
    the last ``test_articles`` "validation" (default 10: 8,582 and 1,988 questions), so no
    article's questions are on both sides (``SQUAD_MIRROR_SPLIT``). Every answer_start in the mirror
    is checked against its context.
    ``source``: "auto" (mirror if configured, else hub), "mirror" or "hub".
    """
    import datasets
    _check_source(source)
    features = squad_features()
    paths, first = _mirror_paths("SQuAD", source)
    if paths:
        return datasets.DatasetDict({split: datasets.Dataset.from_dict(columns, features=features)
                                     for split, columns in _read_squad_json(paths[0], test_articles).items()})
    _no_mirror("SQuAD", source)
    hub = _load_hub("SQuAD", [(("rajpurkar/squad",), {})], first)
    return datasets.DatasetDict({split: hub[split].select_columns(list(features)).cast(features)
                                 for split in ("train", "validation")})


# ---------------------------------------------------------------- WNUT-17

def wnut17_features():
    """The features of ``leondz/wnut_17`` (its card's ``dataset_info``)."""
    import datasets
    return datasets.Features({"id": datasets.Value("string"), "tokens": datasets.List(datasets.Value("string")),
                              "ner_tags": datasets.List(datasets.ClassLabel(names=WNUT17_LABELS))})


def _read_conll(path: Path) -> dict:
    """``token<TAB>tag`` lines, a blank line (or a lone tab) between sentences, as the hub's loader
    reads them; ids "0", "1", ... in file order."""
    ids = {tag: i for i, tag in enumerate(WNUT17_LABELS)}
    sentences, tokens, tags = [], [], []
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            row = line.rstrip()
            if not row:
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            parts = row.split("\t")
            if len(parts) != 2:
                raise CourseError(f"{path}, line {lineno}: expected 'token<TAB>tag', got {row!r}.")
            if parts[1] not in ids:
                raise CourseError(f"{path}, line {lineno}: unknown tag {parts[1]!r}; WNUT-17's tags are "
                                  f"{', '.join(WNUT17_LABELS)}.")
            tokens.append(parts[0])
            tags.append(ids[parts[1]])
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise CourseError(f"{path} holds no sentences.")
    return {"id": [str(i) for i in range(len(sentences))], "tokens": [s[0] for s in sentences],
            "ner_tags": [s[1] for s in sentences]}


def load_wnut17(source: str = "auto"):
    """WNUT-17 emerging and rare entities (NER) as a ``DatasetDict``: ``train`` 3,394, ``validation``
    1,009, ``test`` 1,287 sentences.

    Columns: ``id`` (str), ``tokens`` (list of str), ``ner_tags`` (list of ClassLabel ids, names
    ``WNUT17_LABELS`` in the hub's order: O, then B-/I- of corporation, creative-work, group,
    location, person, product). Hub: ``leondz/wnut_17``; mirror: the task's CoNLL files.
    ``source``: "auto" (mirror if configured, else hub), "mirror" or "hub".
    """
    import datasets
    _check_source(source)
    features = wnut17_features()
    paths, first = _mirror_paths("WNUT-17", source)
    if paths:
        return datasets.DatasetDict({split: datasets.Dataset.from_dict(_read_conll(path), features=features)
                                     for split, path in zip(("train", "validation", "test"), paths)})
    _no_mirror("WNUT-17", source)
    hub = _load_hub("WNUT-17", [(("leondz/wnut_17",), {}),
                                (("leondz/wnut_17",), {"revision": "refs/convert/parquet"})], first)
    _check_names("WNUT-17 ner_tags", hub["train"].features["ner_tags"], WNUT17_LABELS)
    return datasets.DatasetDict({split: hub[split].select_columns(list(features)).cast(features)
                                 for split in ("train", "validation", "test")})


# ---------------------------------------------------------------- MRPC

MRPC_HEADER = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
MRPC_TEST_HEADER = ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"]


def mrpc_features():
    """The features of ``glue`` / ``mrpc`` (its card's ``dataset_info``)."""
    import datasets
    return datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                              "label": datasets.ClassLabel(names=MRPC_LABELS), "idx": datasets.Value("int32")})


def _read_mrpc_tsv(path: Path, test: bool) -> dict:
    """GLUE's MRPC files: a byte-order mark, bare ``"`` in the text (so no quoting); train/dev
    ``Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String``, test ``index`` instead of
    ``Quality`` (no labels: -1, as GLUE hides them)."""
    expected = MRPC_TEST_HEADER if test else MRPC_HEADER
    columns = {"sentence1": [], "sentence2": [], "label": [], "idx": []}
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != expected:
            raise CourseError(f"{path} should start with the header {'<TAB>'.join(expected)!r}, found {header!r}.")
        for n, row in enumerate(reader):
            first_ok = row[:1] and (row[0].isdigit() if test else row[0] in ("0", "1"))
            if len(row) != 5 or not first_ok:
                raise CourseError(f"{path}, line {reader.line_num}: expected 5 tab-separated columns "
                                  f"{'<TAB>'.join(expected)} with {'a row number' if test else 'Quality 0 or 1'} "
                                  f"first, got {row!r}.")
            columns["sentence1"].append(row[3])
            columns["sentence2"].append(row[4])
            columns["label"].append(-1 if test else int(row[0]))
            columns["idx"].append(int(row[0]) if test else n)
    if not columns["idx"]:
        raise CourseError(f"{path} holds no sentence pairs.")
    return columns


def load_mrpc(source: str = "auto"):
    """GLUE MRPC (paraphrase or not) as a ``DatasetDict``: ``train`` 3,668, ``validation`` 408,
    ``test`` 1,725 sentence pairs.

    Columns: ``sentence1``, ``sentence2`` (str), ``label`` (0 not_equivalent, 1 equivalent; -1 in
    ``test``, whose labels GLUE hides: the hub's copy has them, they are set to -1 there too so
    both ways agree), ``idx`` (int, the row's number in its split). Hub: ``glue`` / ``mrpc`` (or
    ``nyu-mll/glue``); mirror: GLUE's train.tsv / dev.tsv / test.tsv.
    ``source``: "auto" (mirror if configured, else hub), "mirror" or "hub".
    """
    import datasets
    _check_source(source)
    features = mrpc_features()
    paths, first = _mirror_paths("MRPC", source)
    if paths:
        return datasets.DatasetDict({
            split: datasets.Dataset.from_dict(_read_mrpc_tsv(path, test=split == "test"), features=features)
            for split, path in zip(("train", "validation", "test"), paths)})
    _no_mirror("MRPC", source)
    hub = _load_hub("MRPC", [(("glue", "mrpc"), {}), (("nyu-mll/glue", "mrpc"), {})], first)
    _check_names("MRPC", hub["train"].features["label"], MRPC_LABELS)
    out = {split: hub[split].select_columns(list(features)).cast(features) for split in ("train", "validation")}
    test = hub["test"]
    out["test"] = datasets.Dataset.from_dict({"sentence1": list(test["sentence1"]), "sentence2": list(test["sentence2"]),
                                              "label": [-1] * len(test), "idx": list(test["idx"])}, features=features)
    return datasets.DatasetDict(out)


# ---------------------------------------------------------------- instructions (LLMs-from-scratch, ch. 7)

def instruction_features(preference: bool = False):
    import datasets
    s = datasets.Value("string")
    keys = INSTRUCTION_KEYS + (PREFERENCE_KEYS if preference else ())
    return datasets.Features({"id": datasets.Value("int64"), **{k: s for k in keys}})


def _parse_instructions(text: str, where, preference: bool) -> list[dict]:
    """The records of an instruction JSON file, each checked for its keys; CourseError naming
    ``where`` (the file or URL) and the record's index otherwise."""
    keys = INSTRUCTION_KEYS + (PREFERENCE_KEYS if preference else ())
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise CourseError(f"{where} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}). "
                          "Copy the instructions mirror again, or rewrite it with "
                          "`python -m ftlib download-data FOLDER`.") from None
    if not isinstance(records, list) or not records:
        raise CourseError(f"{where} should hold a JSON list of records with the keys {', '.join(keys)}.")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise CourseError(f"{where}, record {i}: expected an object with the keys {', '.join(keys)}, "
                              f"got {type(record).__name__}.")
        missing = [k for k in keys if k not in record]
        if missing:
            raise CourseError(f"{where}, record {i}: the key(s) {', '.join(missing)} are missing (each record "
                              f"needs {', '.join(keys)}).")
        wrong = [k for k in keys if not isinstance(record[k], str)]
        if wrong:
            raise CourseError(f"{where}, record {i}: {', '.join(wrong)} should be text, not "
                              f"{type(record[wrong[0]]).__name__}.")
    return records


def instruction_split(n: int, seed: int = 0) -> dict[str, list[int]]:
    """Record indices of ``train`` / ``validation`` / ``test``: a permutation of ``range(n)`` drawn
    with ``seed``, cut 85 / 5 / 10 % (935 / 55 / 110 of 1,100). It depends only on ``n`` and
    ``seed``, so a record is in the same split with and without the preference columns."""
    import numpy as np
    order = np.random.default_rng(seed).permutation(n).tolist()
    a = round(INSTRUCTION_FRACTIONS[0] * n)
    b = a + round(INSTRUCTION_FRACTIONS[1] * n)
    return {"train": order[:a], "validation": order[a:b], "test": order[b:]}


def load_instructions(source: str = "auto", preference: bool = False, seed: int = 0):
    """The 1,100 instruction-response records of Raschka's *Build a Large Language Model (From
    Scratch)*, chapter 7, as a ``DatasetDict`` of ``train`` / ``validation`` / ``test`` (85 / 5 /
    10 %: 935 / 55 / 110, shuffled with ``seed``; see ``instruction_split``).

    Columns: ``id`` (int, the record's index in the file), ``instruction``, ``input`` (often
    empty), ``output``; with ``preference=True`` also ``chosen`` and ``rejected`` (for DPO). The
    split does not depend on ``preference``. Online the JSON files are downloaded from GitHub
    (``INSTRUCTION_URLS``); the mirror holds the same two files.
    ``source``: "auto" (mirror if configured, else the download), "mirror" or "hub".
    """
    import datasets
    _check_source(source)
    paths, first = _mirror_paths("instructions", source)
    if paths:
        path = paths[1] if preference else paths[0]
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise CourseError(f"{path} is not UTF-8 text ({err}). Copy the instructions mirror again.") from None
        records = _parse_instructions(text, path, preference)
    else:
        _no_mirror("instructions", source)
        url = INSTRUCTION_URLS[bool(preference)]
        try:
            text = _fetch_url(url)
        except Exception as err:
            raise _hub_failure("the instruction data", err, first, hub=f"GitHub ({url})") from err
        records = _parse_instructions(text, url, preference)
    features = instruction_features(preference)
    out = {}
    for split, indices in instruction_split(len(records), seed).items():
        columns = {"id": indices, **{k: [records[i][k] for i in indices] for k in list(features)[1:]}}
        out[split] = datasets.Dataset.from_dict(columns, features=features)
    return datasets.DatasetDict(out)


# ---------------------------------------------------------------- download-data

def _tsv_field(value: str, what: str) -> str:
    if "\t" in value or "\n" in value or "\r" in value:
        raise CourseError(f"Cannot write the mirror: {what} holds a tab or a line break, which its file format "
                          f"cannot hold: {value[:60]!r}.")
    return value


def _write_sst2(out: Path) -> None:
    sst2 = load_sst2(source="hub")
    for split, fname in (("train", "train.tsv"), ("validation", "dev.tsv")):
        lines = ["label\tsentence\n"] + [f"{row['label']}\t{row['sentence']}\n" for row in sst2[split]]
        _write_text(out / "sst2" / fname, "".join(lines))


def _write_tinyshakespeare(out: Path) -> None:
    shakespeare = load_tinyshakespeare(source="hub")
    text = "".join(shakespeare[s][0]["text"] for s in ("train", "validation", "test"))
    _write_text(out / "tinyshakespeare" / "input.txt", text)


def _write_pairs(out: Path) -> None:
    pairs = load_translation_pairs(source="hub")
    lines = [f"{r['en']}\t{r['zh']}\tOPUS-100 en-zh" for s in ("train", "validation", "test") for r in pairs[s]
             if "\t" not in r["en"] + r["zh"] and "\n" not in r["en"] + r["zh"]]
    _write_text(out / "tatoeba_cmn_eng" / "cmn.txt", "\n".join(lines) + "\n")


def _write_squad(out: Path) -> None:
    """The hub's validation split as the official dev-v1.1.json (articles by title, paragraphs by
    context, in the hub's order): the same file the CI mirror holds, split by article when loaded."""
    validation = load_squad(source="hub")["validation"]
    articles = []
    for row in validation:
        if not articles or articles[-1]["title"] != row["title"]:
            articles.append({"title": row["title"], "paragraphs": []})
        paragraphs = articles[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != row["context"]:
            paragraphs.append({"context": row["context"], "qas": []})
        answers = [{"answer_start": s, "text": t}
                   for s, t in zip(row["answers"]["answer_start"], row["answers"]["text"])]
        paragraphs[-1]["qas"].append({"answers": answers, "question": row["question"], "id": row["id"]})
    _write_text(out / "squad_v1.1" / "dev-v1.1.json",
                json.dumps({"data": articles, "version": "1.1"}, ensure_ascii=False))


def _write_wnut17(out: Path) -> None:
    wnut = load_wnut17(source="hub")
    names = wnut["train"].features["ner_tags"].feature.names
    for split, fname in zip(("train", "validation", "test"), MIRROR_FILES["WNUT-17"]):
        blocks = []
        for row in wnut[split]:
            if not row["tokens"]:
                raise CourseError(f"Cannot write the mirror: WNUT-17 {split} sentence {row['id']} has no tokens.")
            blocks.append("".join(f"{_tsv_field(tok, 'a WNUT-17 token')}\t{names[tag]}\n"
                                  for tok, tag in zip(row["tokens"], row["ner_tags"])))
        _write_text(out / fname, "\n".join(blocks) + "\n")


def _write_mrpc(out: Path) -> None:
    mrpc = load_mrpc(source="hub")
    for split, fname in zip(("train", "validation", "test"), MIRROR_FILES["MRPC"]):
        header = MRPC_TEST_HEADER if split == "test" else MRPC_HEADER
        lines = ["\t".join(header) + "\n"]
        for row in mrpc[split]:
            first = row["idx"] if split == "test" else row["label"]
            lines.append(f"{first}\t\t\t{_tsv_field(row['sentence1'], 'an MRPC sentence')}\t"
                         f"{_tsv_field(row['sentence2'], 'an MRPC sentence')}\n")
        _write_text(out / fname, "".join(lines), encoding="utf-8-sig" if split != "test" else "utf-8")


def _write_instructions(out: Path) -> None:
    for preference, fname in zip((False, True), MIRROR_FILES["instructions"]):
        url = INSTRUCTION_URLS[preference]
        try:
            text = _fetch_url(url)
        except Exception as err:
            raise _hub_failure("the instruction data", err, None, hub=f"GitHub ({url})") from err
        _parse_instructions(text, url, preference)          # only a well-formed file is written
        _write_text(out / fname, text)


_WRITERS = {"SST-2": _write_sst2, "tinyshakespeare": _write_tinyshakespeare,
            "Chinese-English pairs": _write_pairs, "SQuAD": _write_squad, "WNUT-17": _write_wnut17,
            "MRPC": _write_mrpc, "instructions": _write_instructions}


def download(folder: str, names=None) -> Path:
    """Write a mirror of the course data sets into ``folder`` (needs the internet once), in the
    formats the loaders read. ``names``: the data sets to write (keys of ``MIRROR_FILES``), all by
    default."""
    names = list(MIRROR_FILES) if names is None else list(names)
    unknown = [n for n in names if n not in _WRITERS]
    if unknown:
        raise CourseError(f"Unknown data set {unknown[0]!r}: choose from {', '.join(MIRROR_FILES)}.")
    out = Path(folder).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        _WRITERS[name](out)
    return out
