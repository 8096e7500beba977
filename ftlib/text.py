"""From sentences to padded batches (derived in notebook 04).

* :func:`tokenize_dataset` -- tokenise a ``datasets.Dataset`` in batches with ``map``,
  truncating to ``max_length`` but *not* padding, and rename the label column to
  ``labels`` (the name transformers' models and ``Trainer`` expect);
* :class:`LengthGroupedSampler` -- shuffled batches of similar lengths: shuffle, cut into
  "mega-batches" of ``batch_size * mega_batch_mult`` examples, sort each by length, cut
  into batches, shuffle the batches;
* :func:`make_loader` -- a ``DataLoader`` that pads each batch only to its own longest
  example (``transformers.DataCollatorWithPadding``), optionally length-grouped.

Every loader made here owns a seeded ``torch.Generator``, so its shuffles repeat from run
to run and a training run can save and restore them (``ftlib.train`` does).
Empty data sets and labels outside ``0 .. num_labels - 1`` raise :class:`ftlib.CourseError`.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from ftlib import CourseError

__all__ = ["tokenize_dataset", "check_labels", "LengthGroupedSampler", "make_loader", "count_padding"]


def _num_labels(ds, label_column: str, num_labels: int | None) -> int | None:
    if num_labels is not None:
        return num_labels
    feature = ds.features.get(label_column)
    return getattr(feature, "num_classes", None)   # a ClassLabel knows its classes


def check_labels(ds, label_column: str = "labels", num_labels: int | None = None) -> None:
    """Raise CourseError if ``ds`` is empty or a label is not a class index in range."""
    if len(ds) == 0:
        raise CourseError("The data set is empty: check the split name and any filter or "
                          "`budget.take(...)` size before tokenising.")
    if label_column not in ds.column_names:
        return
    n = _num_labels(ds, label_column, num_labels)
    labels = torch.as_tensor(list(ds[label_column]))
    if labels.dtype.is_floating_point:
        raise CourseError(f"Column {label_column!r} holds floats ({labels[:3].tolist()} ...); "
                          "classification needs class indices 0, 1, ...: cast them with int().")
    bad = (labels < 0) | (labels >= n) if n is not None else labels < 0
    if bad.any():
        i = int(bad.nonzero()[0])
        want = f"0 .. {n - 1} ({n} classes)" if n is not None else "class indices 0, 1, 2, ..."
        raise CourseError(f"Row {i} has label {int(labels[i])}, but the labels must be {want}. Map the "
                          "labels to 0 .. num_labels-1 (ds.map / ds.filter) or load the model with more labels.")


def tokenize_dataset(ds, tokenizer, max_length: int, *, text_column: str = "sentence",
                     label_column: str = "label", num_labels: int | None = None):
    """Tokenise ``ds[text_column]`` (truncating to ``max_length``, no padding yet).

    Returns a data set with ``input_ids``, ``attention_mask`` (and ``token_type_ids`` for
    BERT) plus ``labels``; the text column is dropped. Padding happens per batch in
    :func:`make_loader`.
    """
    if len(ds) == 0:
        raise CourseError("The data set is empty: nothing to tokenise. Check the split and "
                          "any filter or `budget.take(...)` size.")
    if text_column not in ds.column_names:
        raise CourseError(f"No column {text_column!r}; the columns are {ds.column_names}. "
                          "Pass text_column=...")
    if label_column in ds.column_names:
        check_labels(ds, label_column, num_labels)

    def encode(batch):
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    out = ds.map(encode, batched=True, remove_columns=[text_column])
    if label_column in out.column_names and label_column != "labels":
        out = out.rename_column(label_column, "labels")
    return out


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
