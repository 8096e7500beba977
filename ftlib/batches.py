"""Batches that live on the device (derived in notebooks 11 and 12).

A :class:`torch.utils.data.DataLoader` collates every batch in Python on the host and copies
it to the device. :class:`DeviceBatches` instead stores the whole tokenised data set once, as
one padded integer tensor **on the device**, and cuts batches out of it with an index that is
also on the device, so a training step starts no host work and no copy:

* **few shapes** -- a batch is cut to its own longest row rounded up to ``pad_multiple``, so
  there are at most ``max_length / pad_multiple`` widths; with ``static=True`` every batch
  also has exactly ``batch_size`` rows (training drops the short last batch, which a new
  shuffle moves every epoch; evaluation pads it with copies of a real row labelled ``-100``,
  which every loss and count in ftlib skips). A compiled model then sees a handful of shapes
  it can compile once each before training starts (:meth:`warmup_batches`).
* **length-grouped order** (:class:`ftlib.text.LengthGroupedSampler`) when ``shuffle=True``,
  a new order every pass, repeatable from ``seed``; sorted by length otherwise (evaluation).
* **an attention mask that needs no host read** -- ``mask="4d"`` gives a boolean
  ``(B, 1, T, T)`` key-padding mask that transformers passes straight to attention
  (a 2-D mask makes transformers' masking code ask ``mask.all()`` in Python: one
  host-device synchronisation per step). ``mask="none"`` gives no mask at all: right for
  packed language-model blocks and for right-padded rows of a *causal* model (a token never
  attends to the padding after it), and it lets attention use its causal fast path.
  ``mask="2d"`` is the ordinary ``attention_mask`` (always right; the default).

``data`` is a tokenised ``datasets.Dataset`` (``input_ids`` lists and integer ``labels``, as
:func:`ftlib.text.tokenize_dataset` makes them) or a dict of tensors ``input_ids (N, T)``,
``labels`` ``(N,)`` or ``(N, T)`` and optionally ``attention_mask (N, T)`` (right padding),
as :func:`ftlib.lm.pack_blocks` and :func:`ftlib.lm.prompt_examples` make them.
"""
from __future__ import annotations

import math

import torch

from ftlib.errors import CourseError
from ftlib.text import LengthGroupedSampler

__all__ = ["DeviceBatches", "IGNORE"]

IGNORE = -100      # the label every loss in ftlib (and transformers) skips


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class DeviceBatches:
    """An iterable of batches (dicts of tensors) held on ``device``; see the module docstring."""

    def __init__(self, data, batch_size: int, pad_id: int = 0, device="cpu", *, shuffle: bool = False,
                 pad_multiple: int = 8, static: bool = False, mask: str = "2d", seed: int = 0):
        if batch_size < 1 or pad_multiple < 1:
            raise CourseError(f"batch_size and pad_multiple must be >= 1, got {batch_size}, {pad_multiple}.")
        if mask not in ("2d", "4d", "none"):
            raise CourseError(f"mask must be '2d', '4d' or 'none', not {mask!r} (see ftlib.batches).")
        if isinstance(data, dict):
            if "input_ids" not in data or "labels" not in data:
                raise CourseError(f"DeviceBatches needs 'input_ids' and 'labels', got keys {sorted(data)}.")
            ids = torch.as_tensor(data["input_ids"], dtype=torch.long)
            am = data.get("attention_mask")
            self.lengths = (am.sum(1) if am is not None else torch.full((len(ids),), ids.shape[1])).tolist()
            labels = torch.as_tensor(data["labels"], dtype=torch.long)
        else:
            columns = getattr(data, "column_names", [])
            if "input_ids" not in columns or "labels" not in columns:
                raise CourseError(f"DeviceBatches needs 'input_ids' and 'labels' columns, found {columns}: "
                                  "tokenise with ftlib.text.tokenize_dataset(ds, tokenizer, max_length) first.")
            rows = data["input_ids"]
            self.lengths = [len(r) for r in rows]
            ids = torch.full((len(rows), max(self.lengths, default=1)), pad_id, dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, :len(r)] = torch.as_tensor(r)
            labels = torch.as_tensor(list(data["labels"]), dtype=torch.long)
        if len(ids) == 0:
            raise CourseError("The data set is empty: there is nothing to batch. Check the split and any "
                              "`budget.take(...)` size.")
        if labels.shape[0] != len(ids) or labels.ndim not in (1, 2):
            raise CourseError(f"labels {tuple(labels.shape)} do not fit input_ids {tuple(ids.shape)}: one label "
                              "per row (classification) or one per token (language modelling, tagging).")
        self.device = torch.device(device)
        self.input_ids = ids.to(self.device)
        self.labels = labels.to(self.device)
        self.length_t = torch.tensor(self.lengths, device=self.device)
        self.positions = torch.arange(ids.shape[1], device=self.device)
        self.batch_size, self.pad_multiple, self.shuffle = batch_size, pad_multiple, shuffle
        self.static, self.mask = static, mask
        self.generator = torch.Generator().manual_seed(seed)
        self.n_examples = len(ids)
        if static and shuffle and self.n_examples < batch_size:
            raise CourseError(f"static batches of {batch_size} rows need at least that many examples; "
                              f"there are {self.n_examples}. Lower batch_size.")

    def __len__(self):
        if self.static and self.shuffle:
            return self.n_examples // self.batch_size            # the short last batch is dropped
        return math.ceil(self.n_examples / self.batch_size)

    def order(self, peek: bool = False) -> list[int]:
        """Example indices in batch order for one pass (a shuffled pass draws from ``generator``;
        ``peek=True`` shows the next pass's order without using up the random state)."""
        if self.shuffle and peek:
            state = self.generator.get_state()
            try:
                return self.order()
            finally:
                self.generator.set_state(state)
        if self.shuffle:
            return list(LengthGroupedSampler(self.lengths, self.batch_size, generator=self.generator))
        return sorted(range(self.n_examples), key=lambda i: -self.lengths[i])

    def width(self, rows) -> int:
        """Padded width of a batch of these rows: the longest, rounded up to ``pad_multiple``."""
        return min(self.input_ids.shape[1], _round_up(max(self.lengths[i] for i in rows), self.pad_multiple))

    def _plan(self, order):
        """``(start, stop, width, n_pad)`` of every batch of a pass over ``order``."""
        plan = []
        for b in range(len(self)):
            start = b * self.batch_size
            rows = order[start:start + self.batch_size]
            pad = self.batch_size - len(rows) if self.static else 0
            plan.append((start, start + len(rows), self.width(rows), pad))
        return plan

    def _batch(self, idx, width: int) -> dict:
        ids = self.input_ids[idx, :width]
        labels = self.labels[idx] if self.labels.ndim == 1 else self.labels[idx, :width]
        batch = {"input_ids": ids, "labels": labels}
        if self.mask != "none":
            keep = self.positions[:width] < self.length_t[idx, None]            # (B, T) real tokens
            batch["attention_mask"] = (keep.long() if self.mask == "2d"
                                       else keep[:, None, None, :].expand(-1, 1, width, width))
        return batch

    def _cut(self, order_t, start, stop, width, pad) -> dict:
        idx = order_t[start:stop]
        if not pad:
            return self._batch(idx, width)
        batch = self._batch(torch.cat([idx, idx[:1].expand(pad)]), width)     # copies of a real row ...
        labels = batch["labels"].clone()
        labels[-pad:] = IGNORE                                                  # ... that count for nothing
        batch["labels"] = labels
        return batch

    def __iter__(self):
        order = self.order()
        order_t = torch.tensor(order).to(self.device)          # one copy per pass, not one per step
        for start, stop, width, pad in self._plan(order):
            yield self._cut(order_t, start, stop, width, pad)

    def shapes(self) -> list[tuple[int, int]]:
        """Every distinct ``(rows, width)`` a pass can produce (for static batches: at most a few)."""
        widths = sorted({_round_up(n, self.pad_multiple) for n in self.lengths})
        widths = sorted({min(self.input_ids.shape[1], w) for w in widths})
        if self.static:
            return [(self.batch_size, w) for w in widths]
        return sorted({(stop - start, width) for start, stop, width, _ in self._plan(self.order(peek=True))})

    def warmup_batches(self):
        """One real batch of every shape in :meth:`shapes` (to compile before the clock starts)."""
        by_width = {}
        for i in sorted(range(self.n_examples), key=lambda i: self.lengths[i]):
            by_width.setdefault(self.width([i]), []).append(i)
        for rows, width in self.shapes():
            pool = [i for w, idx in by_width.items() if w <= width for i in idx]
            pool = [i for i in pool if self.width([i]) == width] or pool
            take = (pool * math.ceil(rows / len(pool)))[:rows]
            yield self._batch(torch.tensor(take).to(self.device), width)

    def padding_fraction(self) -> float:
        """Share of the token slots of one pass that are padding (rows added by ``static`` included)."""
        order, pad, total = self.order(peek=True), 0, 0
        for start, stop, width, extra in self._plan(order):
            real = sum(self.lengths[i] for i in order[start:stop])
            total += width * (stop - start + extra)
            pad += width * (stop - start + extra) - real
        return pad / total
