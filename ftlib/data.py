"""The course's data sets, from a local mirror folder or from the hub.

===============  ====================================  =====================================
data set         mirror file (under FTLIB_DATA_DIR)    hub source (online)
===============  ====================================  =====================================
SST-2            sst2/train.tsv, sst2/dev.tsv           ``glue`` / ``sst2``
                 (``label<TAB>sentence``)
tinyshakespeare  tinyshakespeare/input.txt             the char-rnn corpus's raw text file
Chinese-English  tatoeba_cmn_eng/cmn.txt               ``Helsinki-NLP/opus-100`` ``en-zh``
                 (``english<TAB>chinese<TAB>credit``)  (another corpus: OPUS, not Tatoeba)
===============  ====================================  =====================================

``FTLIB_DATA_DIR`` names the mirror folder (CI points it at its own copy).
Without it the hub is used.  ``python -m ftlib download-data FOLDER`` writes a
mirror from the hub once, so a learner can work offline afterwards.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from ftlib.errors import CourseError

SST2_LABELS = ["negative", "positive"]
# the files a mirror folder holds for each data set (python -m ftlib download-data writes them all)
MIRROR_FILES = {"SST-2": ("sst2/train.tsv", "sst2/dev.tsv"),
                "tinyshakespeare": ("tinyshakespeare/input.txt",),
                "Chinese-English pairs": ("tatoeba_cmn_eng/cmn.txt",)}
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"

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


def _hub_failure(what: str, err: Exception, mirror_file: Path | None):
    where = (f"the mirror file {mirror_file} does not exist" if mirror_file else
             "no mirror is configured (FTLIB_DATA_DIR is unset)")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CourseError(f"Cannot load {what}: {where}, and the hub could not be reached "
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


def download(folder: str) -> Path:
    """Write a mirror of the course data sets into ``folder`` (needs the internet once)."""
    out = Path(folder).expanduser()
    (out / "sst2").mkdir(parents=True, exist_ok=True)
    sst2 = load_sst2(source="hub")
    for split, fname in (("train", "train.tsv"), ("validation", "dev.tsv")):
        target = out / "sst2" / fname
        tmp = target.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write("label\tsentence\n")
            for row in sst2[split]:
                f.write(f"{row['label']}\t{row['sentence']}\n")
        os.replace(tmp, target)
    shakespeare = load_tinyshakespeare(source="hub")
    (out / "tinyshakespeare").mkdir(exist_ok=True)
    text = "".join(shakespeare[s][0]["text"] for s in ("train", "validation", "test"))
    (out / "tinyshakespeare" / "input.txt").write_text(text, encoding="utf-8")
    pairs = load_translation_pairs(source="hub")
    (out / "tatoeba_cmn_eng").mkdir(exist_ok=True)
    lines = [f"{r['en']}\t{r['zh']}\tOPUS-100 en-zh" for s in ("train", "validation", "test") for r in pairs[s]
             if "\t" not in r["en"] + r["zh"] and "\n" not in r["en"] + r["zh"]]
    (out / "tatoeba_cmn_eng" / "cmn.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
