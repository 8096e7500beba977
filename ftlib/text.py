"""From sentences to padded batches (derived in notebook 05).

* :func:`tokenize_dataset` -- tokenise a ``datasets.Dataset`` in batches with ``map``,
  truncating to ``max_length`` but *not* padding, and rename the label column to
  ``labels`` (the name transformers' models and ``Trainer`` expect);
* :class:`LengthGroupedSampler` -- shuffled batches of similar lengths: shuffle, cut into
  "mega-batches" of ``batch_size * mega_batch_mult`` examples, sort each by length, cut
  into batches, shuffle the batches;
* :func:`make_loader` -- a ``DataLoader`` that pads each batch only to its own longest
  example (``transformers.DataCollatorWithPadding``), optionally length-grouped;
* :func:`fertility` -- tokens per character or per word: what a tokenizer does to a language
  (notebook 18: an English-centric BPE spends about two tokens on each Chinese character);
* :func:`check_sentences` / :func:`input_limit` -- the one check of the sentences given to a
  model for prediction (``ftlib.train.predict`` and ``ftlib.deploy.Predictor`` both use it).

Every loader made here owns a seeded ``torch.Generator``, so its shuffles repeat from run
to run and a training run can save and restore them (``ftlib.train`` does).
Empty data sets, labels that are not class ids ``0 .. num_labels - 1`` (strings such as
"yes"/"no" included: pass ``label_names=[...]``) and unusable sentences raise
:class:`ftlib.CourseError`.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from ftlib.errors import CourseError

__all__ = ["tokenize_dataset", "check_labels", "check_sentences", "input_limit", "LengthGroupedSampler",
           "make_loader", "count_padding", "fertility"]

# what transformers puts in tokenizer.model_max_length when the tokenizer does not know its limit
_NO_LIMIT = 10 ** 9


def _num_labels(ds, label_column: str, num_labels: int | None) -> int | None:
    if num_labels is not None:
        return num_labels
    feature = ds.features.get(label_column)
    return getattr(feature, "num_classes", None)   # a ClassLabel knows its classes


def _label_problem(values, label_column: str) -> str | None:
    """Why ``values`` are not class ids (a message), or None if they are numbers."""
    strings = [v for v in values if isinstance(v, str)]
    if strings:
        examples = sorted(set(strings))[:4]
        ids = ", ".join(f"{name!r}: {i}" for i, name in enumerate(examples))
        return (f"Column {label_column!r} holds label names ({', '.join(map(repr, examples))}"
                f"{' ...' if len(set(strings)) > 4 else ''}), but a classifier needs class ids 0, 1, 2, .... "
                f"Either pass label_names=[...] to tokenize_dataset (each name's position in the list is "
                f"its id; give the same list to the model as id2label), or map them first: "
                f"ds = ds.class_encode_column({label_column!r}) (ids in sorted order), or "
                f"ids = {{{ids}}}; ds = ds.map(lambda row: {{{label_column!r}: ids[row[{label_column!r}]]}}).")
    for i, v in enumerate(values):
        if v is None:
            return f"Row {i} has no label (None) in column {label_column!r}: drop it (ds.filter) or label it."
        if isinstance(v, (list, tuple, dict)):
            return (f"Row {i}'s label in column {label_column!r} is a {type(v).__name__} ({v!r}); "
                    "single-label classification needs one class id per row.")
    return None


def check_labels(ds, label_column: str = "labels", num_labels: int | None = None) -> None:
    """Raise CourseError if ``ds`` is empty or a label is not a class index in range."""
    if len(ds) == 0:
        raise CourseError("The data set is empty: check the split name and any filter or "
                          "`budget.take(...)` size before tokenising.")
    if label_column not in ds.column_names:
        return
    n = _num_labels(ds, label_column, num_labels)
    values = list(ds[label_column])
    problem = _label_problem(values, label_column)
    if problem:
        raise CourseError(problem)
    labels = torch.as_tensor(values)
    if labels.dtype.is_floating_point:
        raise CourseError(f"Column {label_column!r} holds floats ({labels[:3].tolist()} ...); "
                          "classification needs class indices 0, 1, ...: cast them with int().")
    bad = (labels < 0) | (labels >= n) if n is not None else labels < 0
    if bad.any():
        i = int(bad.nonzero()[0])
        want = f"0 .. {n - 1} ({n} classes)" if n is not None else "class indices 0, 1, 2, ..."
        raise CourseError(f"Row {i} has label {int(labels[i])}, but the labels must be {want}. Map the "
                          "labels to 0 .. num_labels-1 (ds.map / ds.filter) or load the model with more labels.")


def _names_to_ids(ds, label_column: str, label_names: list[str]):
    """``ds`` with the label names in ``label_column`` replaced by their positions in ``label_names``."""
    import datasets

    values = list(ds[label_column])
    if not any(isinstance(v, str) for v in values):
        return ds                                   # already ids: only their range is checked
    ids = {name: i for i, name in enumerate(label_names)}
    for i, v in enumerate(values):
        if v not in ids:
            raise CourseError(f"Row {i} has label {v!r}, which is not one of label_names {label_names}. "
                              "Add it to label_names, or fix / drop that row (ds.map / ds.filter).")
    out = ds.map(lambda batch: {label_column: [ids[v] for v in batch[label_column]]}, batched=True)
    return out.cast_column(label_column, datasets.ClassLabel(names=label_names))


def tokenize_dataset(ds, tokenizer, max_length: int, *, text_column: str = "sentence",
                     label_column: str = "label", num_labels: int | None = None,
                     label_names: list[str] | None = None):
    """Tokenise ``ds[text_column]`` (truncating to ``max_length``, no padding yet).

    Returns a data set with ``input_ids``, ``attention_mask`` (and ``token_type_ids`` for
    BERT) plus ``labels``; the text column is dropped. Padding happens per batch in
    :func:`make_loader`.

    Labels must be class ids ``0 .. num_labels - 1``. Labels given as names (``"no"``,
    ``"yes"``) are mapped when ``label_names`` lists them: each name's position is its id
    (``label_names=["no", "yes"]``: "no" -> 0, "yes" -> 1; give the model the same order,
    ``id2label=dict(enumerate(label_names))``). Without ``label_names`` they are refused.
    """
    if isinstance(ds, dict):                        # a DatasetDict is a dict of splits
        raise CourseError(f"tokenize_dataset takes one split, not a DatasetDict of {list(ds)}: "
                          "pass ds['train'] (and tokenise each split you need).")
    if len(ds) == 0:
        raise CourseError("The data set is empty: nothing to tokenise. Check the split and "
                          "any filter or `budget.take(...)` size.")
    if text_column not in ds.column_names:
        raise CourseError(f"No column {text_column!r}; the columns are {ds.column_names}. "
                          "Pass text_column=...")
    if label_names is not None:
        label_names = list(label_names)
        if not label_names or not all(isinstance(n, str) for n in label_names) \
                or len(set(label_names)) != len(label_names):
            raise CourseError(f"label_names must be a list of distinct strings, got {label_names!r}.")
        if num_labels is not None and num_labels != len(label_names):
            raise CourseError(f"num_labels={num_labels} but label_names has {len(label_names)} names: "
                              "give one of them (num_labels is len(label_names)).")
        num_labels = len(label_names)
        if label_column in ds.column_names:
            ds = _names_to_ids(ds, label_column, label_names)
    if label_column in ds.column_names:
        check_labels(ds, label_column, num_labels)

    def encode(batch):
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    out = ds.map(encode, batched=True, remove_columns=[text_column])
    if label_column in out.column_names and label_column != "labels":
        out = out.rename_column(label_column, "labels")
    return out


def input_limit(model, tokenizer) -> int:
    """The most tokens (special tokens included) ``model`` can read: the smaller of the
    tokenizer's ``model_max_length`` and the model's ``max_position_embeddings`` (whichever
    is known)."""
    limits = [int(tokenizer.model_max_length)] if tokenizer.model_max_length < _NO_LIMIT else []
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if positions:
        limits.append(int(positions))
    return min(limits) if limits else _NO_LIMIT


def check_sentences(sentences, *, tokenizer=None, max_length: int | None = None,
                    truncate: bool = False, how_to_truncate: str = "truncate=True") -> list[str]:
    """The sentences to classify as a list of strings, or one CourseError saying what is wrong.

    * a bare string is ONE sentence (``"a fine film"`` -> ``["a fine film"]``), not a list of
      characters;
    * anything else must be an iterable of strings (a list, tuple, generator, pandas Series ...),
      holding at least one sentence;
    * ``None`` or any other non-string item is refused (its index and type are named);
    * an empty or whitespace-only sentence is refused: a model returns a confident label even for
      nothing;
    * with a ``tokenizer``, a sentence of more than ``max_length`` tokens ([CLS] and [SEP]
      included; default: the tokenizer's ``model_max_length``) is refused unless
      ``truncate=True``, which lets the caller keep its first ``max_length`` tokens
      (``how_to_truncate``: how the error tells the caller to ask for that).
    """
    if isinstance(sentences, str):
        sentences = [sentences]
    if sentences is None or isinstance(sentences, (bytes, bytearray, dict)) or not hasattr(sentences, "__iter__"):
        raise CourseError(f"Give the sentences as a list of strings (or one string), not "
                          f"{type(sentences).__name__}.")
    sentences = list(sentences)
    if not sentences:
        raise CourseError("predict() got an empty list: give at least one sentence.")
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise CourseError(f"Sentence {i} is not a string but {type(s).__name__}: {s!r}.")
        if not s.strip():      # a model would still return a confident label for it
            raise CourseError(f"Sentence {i} is empty (or only spaces): there is nothing to classify.")
    if tokenizer is not None and not truncate:
        if max_length is None:
            max_length = int(tokenizer.model_max_length)
        if max_length < _NO_LIMIT:
            lengths = [len(ids) for ids in tokenizer(sentences, verbose=False)["input_ids"]]
            too_long = [(i, n) for i, n in enumerate(lengths) if n > max_length]
            if too_long:
                i, n = too_long[0]
                more = f" ({len(too_long)} sentences are too long)" if len(too_long) > 1 else ""
                raise CourseError(f"Sentence {i} has {n} tokens (with [CLS] and [SEP]); this model takes at most "
                                  f"{max_length}. Shorten it, or use {how_to_truncate} to keep its first "
                                  f"{max_length} tokens{more}.")
    return sentences


class LengthGroupedSampler(Sampler):
    """Indices in an order that puts examples of similar length into the same batch.

    Each pass: a random permutation, cut into mega-batches of ``batch_size *
    mega_batch_mult``; each mega-batch sorted by length (longest first) and cut into
    batches; then the batches themselves shuffled. Randomness comes from ``generator``.
    """

    def __init__(self, lengths, batch_size: int, mega_batch_mult: int = 50, generator=None):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.mega = batch_size * mega_batch_mult
        self.generator = generator

    def __len__(self):
        return len(self.lengths)

    def __iter__(self):
        perm = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        batches = []
        for start in range(0, len(perm), self.mega):
            mega = sorted(perm[start:start + self.mega], key=lambda i: -self.lengths[i])
            batches += [mega[j:j + self.batch_size] for j in range(0, len(mega), self.batch_size)]
        # keep the one short last batch last, so every batch but one is full
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        order = torch.randperm(len(full), generator=self.generator).tolist()
        for b in [full[k] for k in order] + short:
            yield from b


def make_loader(ds, tokenizer, batch_size: int, shuffle: bool = False, group_by_length: bool = False,
                seed: int = 0, num_labels: int | None = None) -> DataLoader:
    """A DataLoader over a tokenised data set that pads each batch to its own longest row.

    ``shuffle``: a new order every epoch (repeatable: the loader's generator is seeded
    with ``seed``). ``group_by_length``: shuffled batches of similar lengths (less padding).
    """
    from transformers import DataCollatorWithPadding

    if len(ds) == 0:
        raise CourseError("The data set is empty: a DataLoader over it yields no batches. "
                          "Check the split and any filter or `budget.take(...)` size.")
    if "input_ids" not in ds.column_names:
        raise CourseError(f"The data set has no 'input_ids' column (columns: {ds.column_names}): "
                          "tokenise it first with ftlib.text.tokenize_dataset(ds, tokenizer, max_length).")
    check_labels(ds, "labels", num_labels)
    keep = [c for c in ("input_ids", "attention_mask", "token_type_ids", "labels") if c in ds.column_names]
    ds = ds.select_columns(keep)
    generator = torch.Generator().manual_seed(seed)
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    if group_by_length:
        lengths = [len(ids) for ids in ds["input_ids"]]
        sampler = LengthGroupedSampler(lengths, batch_size, generator=generator)
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=collate)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)


def count_padding(loader) -> tuple[int, int]:
    """(real tokens, padding tokens) over one pass of ``loader`` (uses attention_mask)."""
    real = pad = 0
    for batch in loader:
        mask = batch["attention_mask"]
        real += int(mask.sum())
        pad += int(mask.numel() - mask.sum())
    return real, pad


def fertility(tokenizer, texts, per: str = "char") -> float:
    """Tokens per unit of text over ``texts``: ``per="char"`` (characters other than spaces: for
    Chinese, Japanese) or ``per="word"`` (pieces between spaces: for English).

    The ratio of the totals (all tokens / all units), special tokens left out: what a corpus
    costs, not the mean of per-sentence ratios (which short sentences would dominate).
    """
    if per not in ("char", "word"):
        raise CourseError(f"per={per!r}: use 'char' (Chinese, Japanese) or 'word' (space-separated languages).")
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise CourseError("fertility needs a non-empty list of strings.")
    units = sum(len("".join(t.split())) if per == "char" else len(t.split()) for t in texts)
    if units == 0:
        raise CourseError(f"the texts hold no {'characters' if per == 'char' else 'words'}.")
    tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return tokens / units
