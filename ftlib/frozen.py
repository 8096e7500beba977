"""Train only the top of an encoder: the frozen bottom blocks run once (derived in notebook 15, used again in 06, 16, 17).

Fine-tuning every layer of course-bert costs a forward *and* a backward pass through all six
blocks at every step of every epoch. If the bottom ``k`` blocks are frozen, their output for
a sentence never changes, so it can be computed once and kept; each training step then runs
only the top ``n - k`` blocks and the head. That is exact, not an approximation: the top
blocks see the same hidden states they would see in the full model (checked in
``tests/test_frozen.py``), with dropout off in the frozen blocks. (Freezing by
``requires_grad=False`` alone, with the model in ``train()`` mode, keeps dropout on in the
frozen blocks: a slightly different, noisier model than this one.)

* :func:`bottom_hidden` -- the hidden states after the bottom ``k`` blocks of an
  :class:`ftlib.bert.Bert`, one ``(tokens, hidden)`` tensor per example, no padding kept;
* :class:`TopBlocks` -- a copy of the top blocks and a task head (``"sequence"``: BERT's pooler
  on [CLS] then a linear layer, as ``BertForSequenceClassification``, or with ``pooling="mean"``
  the mean of the token states, as course-bert was pre-trained; ``"token"``: a linear
  layer on every token, as ``BertForTokenClassification``; ``"span"``: a start and an end score
  per token, as ``BertForQuestionAnswering``, notebook 17), with an optional learned
  embedding of word shape (``shape_ids``) added to its input, and a ``forward`` that returns
  ``.loss`` / ``.logits`` like a transformers model, so ``ftlib.train.fit(task="model")``
  trains it;
* :func:`pad_hidden` -- a DataLoader ``collate_fn`` that pads cached rows into a batch;
* :class:`PairTop` -- the top blocks and a :class:`ftlib.heads.PairHead` that reads two sentence
  vectors: a bi-encoder (each sentence through the blocks alone) or a cross-encoder (the pair
  through them together, one vector per segment), trained through its blocks (notebook 16);
  :func:`pad_pairs` batches a bi-encoder's rows;
* :class:`FrozenBottom` -- the same frozen part inside the model (``TopBlocks(bottom="per_batch")``),
  run at every step, when caching every example's hidden states would not fit in memory (all of
  SQuAD's windows: tens of GB).

On a GPU the full budget simply fine-tunes every block (``k = 0``) with the same code.
"""
from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from ftlib.bert import Bert
from ftlib.errors import CourseError
from ftlib.heads import PairHead, mean_pool

__all__ = ["bottom_hidden", "FrozenBottom", "TopBlocks", "PairTop", "pad_hidden", "pad_pairs", "IGNORE"]

IGNORE = -100


def _check_k(bert, k: int) -> int:
    n = len(bert.layers)
    if not isinstance(k, int) or not 0 <= k <= n:
        raise CourseError(f"k (the number of frozen bottom blocks) must be a whole number from 0 to {n} "
                          f"(the model has {n} blocks), not {k!r}.")
    return n


def _run_blocks(layers, x, mask):
    """``x`` through ``layers``, padding masked (``mask``: 1 for a real token): every stack of blocks here."""
    keep = mask.bool()[:, None, None, :]
    for layer in layers:
        x = layer(x, keep)
    return x


def _run_bottom(embed, layers, ids, types, mask):
    """Embeddings, then ``layers`` with padding masked: the frozen part, for one padded batch."""
    return _run_blocks(layers, embed(ids, types), mask)


class FrozenBottom(nn.Module):
    """A copy of ``bert``'s embeddings and bottom ``k`` blocks, frozen and always in eval mode (no
    dropout, no gradients): :func:`bottom_hidden` for one batch at a time, inside the model.

    For data too large to cache (the hidden states of every example must fit in memory): the
    frozen part then runs at every step, which costs its forward pass each time but no memory."""

    def __init__(self, bert, k: int):
        super().__init__()
        _check_k(bert, k)
        self.word_emb, self.pos_emb, self.type_emb, self.ln_emb = (
            copy.deepcopy(m) for m in (bert.word_emb, bert.pos_emb, bert.type_emb, bert.ln_emb))
        self.layers = copy.deepcopy(bert.layers[:k])
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True):
        return super().train(False)          # frozen means eval mode too: model.train() does not turn dropout on

    def embed(self, input_ids, token_type_ids=None):
        return Bert.embed(self, input_ids, token_type_ids)     # the same four modules, the same maths

    @torch.no_grad()
    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return _run_bottom(self.embed, self.layers, input_ids, token_type_ids, attention_mask)


@torch.no_grad()
def bottom_hidden(bert, encodings, k: int, batch_size: int = 64, device=None) -> list[torch.Tensor]:
    """The output of ``bert``'s embeddings and bottom ``k`` blocks for every example.

    ``encodings``: a list of dicts with ``input_ids`` (and optionally ``token_type_ids``), one
    per example, unpadded (what a tokenizer returns for one example). Returns a list of float32
    CPU tensors of shape ``(len(input_ids), hidden_size)``, in the order given. Examples are run
    in batches of similar length (less padding); padding is masked, so each row equals the
    example run alone.
    """
    _check_k(bert, k)
    if not len(encodings):
        raise CourseError("No examples to encode: the list of encodings is empty.")
    for i, e in enumerate(encodings):
        if "input_ids" not in e or not len(e["input_ids"]):
            raise CourseError(f"Example {i} has no input_ids: tokenise every example first.")
    device = torch.device(device) if device is not None else next(bert.parameters()).device
    was_training = bert.training
    bert.eval()
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]["input_ids"]))
    out: list = [None] * len(encodings)
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            rows = [torch.as_tensor(encodings[i]["input_ids"]) for i in idx]
            ids = pad_sequence(rows, batch_first=True).to(device)
            types = pad_sequence([torch.as_tensor(encodings[i].get("token_type_ids", torch.zeros_like(r)))
                                  for i, r in zip(idx, rows)], batch_first=True).to(device)
            mask = pad_sequence([torch.ones_like(r) for r in rows], batch_first=True).to(device)
            x = _run_bottom(bert.embed, bert.layers[:k], ids, types, mask)
            for j, i in enumerate(idx):
                out[i] = x[j, :len(rows[j])].float().cpu().clone()
    finally:
        bert.train(was_training)
    return out


class TopBlocks(nn.Module):
    """The top ``n - k`` blocks of a :class:`ftlib.bert.Bert` (copied, trainable) and a task head.

    ``kind="sequence"``: ``num_labels`` logits per example from the pooled [CLS] state;
    ``kind="token"``: ``num_labels`` logits per token; ``kind="span"`` (``num_labels=2``): a start
    and an end score per token, trained from ``start_positions``/``end_positions``; with
    ``question_aware=True`` each context token's scores also depend on the question (a bilinear
    term between the token and the mean of the segment-0 states -- [CLS], the question and its
    [SEP]; needs ``token_type_ids``).
    ``n_top``: how many blocks above the frozen ``k`` to train (default: all of them; ``0``: the
    head reads block ``k``'s output, the blocks above it are not used). ``n_shapes``: if given, a learned
    embedding of a per-token shape id (``shape_ids`` in the batch), initialised to zero so the
    untrained model equals the one without it, is added to the cached hidden states.
    ``bottom``: ``"cached"`` (default) -- the batch brings the frozen part's output, ``hidden``, from
    :func:`bottom_hidden`; ``"per_batch"`` -- the model keeps a :class:`FrozenBottom` and the batch
    brings ``input_ids`` (what to choose when the cache would not fit in memory).
    ``forward(hidden, attention_mask, labels=None, shape_ids=None, ..., input_ids=None)`` returns an
    object with ``.logits`` and ``.loss`` (cross-entropy, labels of -100 ignored), as transformers' heads do.
    """

    def __init__(self, bert, k: int, num_labels: int, kind: str = "token", dropout: float = 0.1,
                 n_shapes: int | None = None, pooling: str = "pooler", n_top: int | None = None,
                 question_aware: bool = False, bottom: str = "cached"):
        super().__init__()
        _check_k(bert, k)
        if bottom not in ("cached", "per_batch"):
            raise CourseError(f"bottom must be 'cached' (batches bring the hidden states of bottom_hidden) or "
                              f"'per_batch' (batches bring input_ids; the frozen blocks run in every step), not {bottom!r}.")
        if kind not in ("sequence", "token", "span"):
            raise CourseError(f"kind must be 'sequence' (one label per example), 'token' (one per token) or 'span' "
                              f"(a start and an end score per token, extractive QA), not {kind!r}.")
        if kind == "span" and num_labels != 2:
            raise CourseError(f"kind='span' scores each token twice (start, end): num_labels must be 2, not {num_labels!r}.")
        if pooling not in ("pooler", "mean"):
            raise CourseError(f"pooling must be 'pooler' (BERT's tanh(W h_CLS)) or 'mean' (the mean of the token "
                              f"states, how course-bert was pre-trained), not {pooling!r}.")
        if not isinstance(num_labels, int) or num_labels < 2:
            raise CourseError(f"num_labels must be a whole number >= 2, not {num_labels!r}.")
        n = len(bert.layers)
        if n_top is None:
            n_top = n - k
        if not isinstance(n_top, int) or not 0 <= n_top <= n - k:
            raise CourseError(f"n_top (trainable blocks above the {k} frozen ones) must be a whole number from 0 to "
                              f"{n - k}, or None for all of them; not {n_top!r}.")
        if question_aware and kind != "span":
            raise CourseError("question_aware scores context tokens against the question: only for kind='span'.")
        hidden = bert.cfg.hidden_size
        self.kind, self.num_labels, self.k, self.pooling = kind, num_labels, k, pooling
        self.layers = copy.deepcopy(bert.layers[k:k + n_top])
        self.pooler = copy.deepcopy(bert.pooler) if kind == "sequence" and pooling == "pooler" else None
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_labels)
        self.question = self.keys = None
        if question_aware:
            # start/end += tanh(W_k h_t) . (W_q q): q is the mean of the question's states. W_q starts at zero,
            # so the untrained head equals BertForQuestionAnswering's
            self.keys = nn.Linear(hidden, 128)
            self.question = nn.Linear(hidden, 2 * 128)
            nn.init.zeros_(self.question.weight)
            nn.init.zeros_(self.question.bias)
        self.bottom = FrozenBottom(bert, k) if bottom == "per_batch" else None
        self.shape_emb = None                # made last: with or without it, the same seed gives the same head
        if n_shapes is not None:
            # from zeros, drawing no random numbers: the run with the feature sees the same dropout
            # masks and batches as the run without it
            self.shape_emb = nn.Embedding.from_pretrained(torch.zeros(n_shapes, hidden), freeze=False)

    def forward(self, hidden=None, attention_mask=None, labels=None, shape_ids=None, start_positions=None,
                end_positions=None, token_type_ids=None, input_ids=None):
        if self.bottom is not None:
            if input_ids is None or hidden is not None:
                raise CourseError("This model runs its frozen bottom itself (bottom='per_batch'): give it input_ids "
                                  "and attention_mask, not cached hidden states.")
            hidden = self.bottom(input_ids, attention_mask, token_type_ids)
        elif hidden is None:
            raise CourseError("This model reads cached hidden states (bottom='cached'): batch the rows of "
                              "bottom_hidden with pad_hidden, or build it with bottom='per_batch' to give it input_ids.")
        if attention_mask is None or hidden.ndim != 3 or attention_mask.shape != hidden.shape[:2]:
            raise CourseError(f"Expected hidden states (batch, tokens, hidden) and an attention_mask "
                              f"(batch, tokens); got {tuple(hidden.shape)} and "
                              f"{None if attention_mask is None else tuple(attention_mask.shape)}. "
                              "Batch cached rows with ftlib.frozen.pad_hidden.")
        x = hidden
        if self.shape_emb is not None:
            if shape_ids is None:
                raise CourseError("This model adds a word-shape embedding: the batch needs shape_ids.")
            x = x + self.shape_emb(shape_ids)
        x = _run_blocks(self.layers, x, attention_mask)
        if self.kind == "sequence" and self.pooling == "mean":
            logits = self.classifier(self.drop(mean_pool(x, attention_mask)))
        elif self.kind == "sequence":
            logits = self.classifier(self.drop(torch.tanh(self.pooler(x[:, 0]))))
        else:
            logits = self.classifier(self.drop(x))
        if self.kind == "span":
            if self.question is not None:
                if token_type_ids is None:
                    raise CourseError("A question-aware span head needs token_type_ids (0: question, 1: context) "
                                      "in the batch.")
                in_q = (attention_mask.bool() & (token_type_ids == 0)).to(x.dtype)[..., None]
                q = (x * in_q).sum(1) / in_q.sum(1).clamp(min=1)
                q_start, q_end = self.question(q).chunk(2, dim=-1)
                keys = torch.tanh(self.keys(self.drop(x)))
                logits = logits + torch.stack([torch.einsum("btd,bd->bt", keys, q_start),
                                               torch.einsum("btd,bd->bt", keys, q_end)], dim=-1)
            return self._span(logits, attention_mask, start_positions, end_positions)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, self.num_labels).float(), labels.reshape(-1),
                                   ignore_index=IGNORE)
        return SimpleNamespace(loss=loss, logits=logits)

    @staticmethod
    def _span(logits, attention_mask, start_positions, end_positions):
        """Extractive QA, as ``BertForQuestionAnswering``: start and end scores per token; the loss is
        the mean of the cross-entropies of the true start and the true end over the positions.
        Padding gets the lowest score, so it takes no probability (transformers leaves it in)."""
        pad = ~attention_mask.bool()
        start, end = (z.squeeze(-1).float().masked_fill(pad, torch.finfo(torch.float32).min)
                      for z in logits.split(1, dim=-1))
        loss = None
        if (start_positions is None) != (end_positions is None):
            raise CourseError("Give both start_positions and end_positions (or neither).")
        if start_positions is not None:
            loss = (F.cross_entropy(start, start_positions) + F.cross_entropy(end, end_positions)) / 2
        return SimpleNamespace(loss=loss, logits=logits, start_logits=start, end_logits=end)


def _pad_per_token(rows, tokens: str, key: str, padding_value: int, what: str):
    """``rows[i][key]`` (one value per token of ``rows[i][tokens]``) padded into a batch; a row of
    another length is one clear error, ending with ``what``."""
    for r in rows:
        if len(r[key]) != len(r[tokens]):
            raise CourseError(f"A row has {len(r[tokens])} tokens ({tokens}) but {len(r[key])} {what}")
    return pad_sequence([torch.as_tensor(r[key]) for r in rows], batch_first=True, padding_value=padding_value)


def pad_hidden(rows) -> dict:
    """Batch rows: each a dict with ``hidden`` (tokens, hidden; cached by :func:`bottom_hidden`) --
    or ``input_ids``, for a model with ``bottom="per_batch"`` -- and optionally ``labels`` (an int,
    or one per token), ``shape_ids``, ``token_type_ids`` (one per token) and ``start_positions`` /
    ``end_positions``. Pads to the longest row: hidden states and input ids with 0,
    ``attention_mask`` 0 there, token labels with -100, shape ids and token types with 0."""
    if not rows:
        raise CourseError("An empty batch: nothing to pad.")
    tokens = "hidden" if "hidden" in rows[0] else "input_ids"
    if any(tokens not in r for r in rows):
        raise CourseError("Every row needs 'hidden' (cached by bottom_hidden) or, for a model with "
                          "bottom='per_batch', 'input_ids' -- the same in every row of a batch.")
    per_row = [torch.as_tensor(r[tokens]) for r in rows]
    batch = {tokens: pad_sequence(per_row, batch_first=True),
             "attention_mask": pad_sequence([torch.ones(len(t), dtype=torch.long) for t in per_row], batch_first=True)}
    if "labels" in rows[0]:
        first = rows[0]["labels"]
        if isinstance(first, int) or (torch.is_tensor(first) and first.ndim == 0):
            batch["labels"] = torch.tensor([int(r["labels"]) for r in rows])
        else:
            batch["labels"] = _pad_per_token(rows, tokens, "labels", IGNORE,
                                             "token labels: align the labels to the same tokenisation.")
    if "token_type_ids" in rows[0]:                      # question (0) / context (1), padded with 0
        batch["token_type_ids"] = _pad_per_token(rows, tokens, "token_type_ids", 0,
                                                 "token_type_ids: take both from the same tokenisation.")
    for key in ("start_positions", "end_positions"):     # extractive QA: one token index per row
        if key in rows[0]:
            batch[key] = torch.tensor([int(r[key]) for r in rows])
    if "shape_ids" in rows[0]:
        batch["shape_ids"] = _pad_per_token(rows, tokens, "shape_ids", 0,
                                            "shape ids: compute them from the same tokenisation (tasks.token_shapes).")
    return batch


class PairTop(nn.Module):
    """A sentence-pair classifier trained through the top ``n - k`` blocks: the blocks (copied,
    trainable) make two unit-length sentence vectors ``u`` and ``v``, and a :class:`~ftlib.heads.PairHead`
    reads ``[u, v, |u - v|, u * v]``.

    ``encoder="bi"``: each sentence runs through the blocks **alone** (a bi-encoder, fine-tuned with
    SBERT's classification objective); a batch (:func:`pad_pairs`) brings ``hidden_a``/``mask_a`` and
    ``hidden_b``/``mask_b``, each sentence's cached bottom states. ``u``, ``v``: each sentence's mean.
    Untrained, ``u`` is exactly course-bert's sentence embedding.

    ``encoder="cross"``: the pair ``[CLS] a [SEP] b [SEP]`` runs through the blocks **together** (a
    cross-encoder: every token of one sentence attends to the other); a batch (:func:`pad_hidden`)
    brings ``hidden``, ``attention_mask`` and ``token_type_ids``. ``u``: the mean of segment 0's states
    (``[CLS] a [SEP]``), ``v``: the mean of segment 1's (``b [SEP]``).

    ``forward(..., labels=None)`` returns ``.logits``, ``.loss``, the vectors ``.u``, ``.v`` and ``.cosine`` (``u . v``), so
    :func:`ftlib.train.fit` trains it; :meth:`score` runs it over rows in eval mode.
    ``head.start_at_threshold(t)`` starts the head as the rule "cosine > t".
    """

    def __init__(self, bert, k: int, encoder: str = "bi"):
        super().__init__()
        _check_k(bert, k)
        if encoder not in ("bi", "cross"):
            raise CourseError(f"encoder must be 'bi' (each sentence through the blocks alone) or 'cross' (the pair "
                              f"through them together), not {encoder!r}.")
        self.encoder, self.k = encoder, k
        self.layers = copy.deepcopy(bert.layers[k:])
        self.head = PairHead(bert.cfg.hidden_size)        # on the vectors as they are, as SBERT's SoftmaxLoss

    def vectors(self, hidden_a=None, mask_a=None, hidden_b=None, mask_b=None, hidden=None, attention_mask=None,
                token_type_ids=None):
        """The two unit-length sentence vectors ``(u, v)``, each ``(batch, hidden_size)``."""
        if self.encoder == "bi":
            if hidden_a is None or hidden_b is None or mask_a is None or mask_b is None:
                raise CourseError("A bi-encoder reads each sentence alone: the batch needs hidden_a, mask_a, hidden_b "
                                  "and mask_b (batch rows of 'hidden_a', 'hidden_b' with ftlib.frozen.pad_pairs).")
            u = mean_pool(_run_blocks(self.layers, hidden_a, mask_a), mask_a)
            v = mean_pool(_run_blocks(self.layers, hidden_b, mask_b), mask_b)
        else:
            if hidden is None or attention_mask is None or token_type_ids is None:
                raise CourseError("A cross-encoder reads the pair together: the batch needs hidden, attention_mask "
                                  "and token_type_ids (cache the pair's [CLS] a [SEP] b [SEP] with bottom_hidden, "
                                  "batch the rows with ftlib.frozen.pad_hidden).")
            real = attention_mask.bool()
            in_a, in_b = real & (token_type_ids == 0), real & (token_type_ids == 1)
            if not bool(in_a.any(1).all() and in_b.any(1).all()):
                raise CourseError("A cross-encoder row needs tokens of both segments (token_type_ids 0 for "
                                  "[CLS] a [SEP], 1 for b [SEP]); some row has none of one. Encode each pair as "
                                  "tokenizer(a, b), which sets them.")
            x = _run_blocks(self.layers, hidden, attention_mask)
            u = mean_pool(x, in_a.long())
            v = mean_pool(x, in_b.long())
        return F.normalize(u, dim=-1), F.normalize(v, dim=-1)

    def forward(self, labels=None, **batch):
        u, v = self.vectors(**batch)
        out = self.head(u, v, labels)
        out.u, out.v, out.cosine = u, v, (u * v).sum(-1)
        return out

    @torch.no_grad()
    def score(self, rows, batch_size: int = 128, device=None):
        """Eval mode over a list of rows (batched with :func:`pad_pairs` or :func:`pad_hidden`): an object
        with ``.logits`` ``(rows, 2)``, ``.cosine`` ``(rows,)`` and the vectors ``.u``, ``.v``, on the CPU,
        in the order given."""
        if not len(rows):
            raise CourseError("No rows to score: the list is empty.")
        was_training = self.training
        self.eval()
        device = torch.device(device) if device is not None else next(self.parameters()).device
        collate = pad_pairs if self.encoder == "bi" else pad_hidden
        logits, us, vs = [], [], []
        try:
            for s in range(0, len(rows), batch_size):
                batch = collate([{k: v for k, v in r.items() if k != "labels"} for r in rows[s:s + batch_size]])
                out = self(**{k: v.to(device) for k, v in batch.items()})
                logits.append(out.logits.float().cpu())
                us.append(out.u.float().cpu())
                vs.append(out.v.float().cpu())
        finally:
            self.train(was_training)
        u, v = torch.cat(us), torch.cat(vs)
        return SimpleNamespace(logits=torch.cat(logits), cosine=(u * v).sum(-1), u=u, v=v)


def pad_pairs(rows) -> dict:
    """Batch a bi-encoder's rows: each a dict with ``hidden_a`` and ``hidden_b`` (the two sentences'
    cached bottom states, ``(tokens, hidden)``) and optionally ``labels`` (an int). Returns ``hidden_a``,
    ``mask_a``, ``hidden_b``, ``mask_b`` (each sentence padded to its own longest) and ``labels``."""
    if not rows:
        raise CourseError("An empty batch: nothing to pad.")
    if any("hidden_a" not in r or "hidden_b" not in r for r in rows):
        raise CourseError("Every row of a bi-encoder batch needs 'hidden_a' and 'hidden_b': the two sentences' "
                          "states from bottom_hidden, each sentence cached alone.")
    a = pad_hidden([{"hidden": r["hidden_a"]} for r in rows])
    b = pad_hidden([{"hidden": r["hidden_b"]} for r in rows])
    batch = {"hidden_a": a["hidden"], "mask_a": a["attention_mask"], "hidden_b": b["hidden"], "mask_b": b["attention_mask"]}
    if any("labels" in r for r in rows):
        if not all("labels" in r for r in rows):
            raise CourseError("Some rows of the batch have 'labels' and some have not: label every row or none.")
        batch["labels"] = torch.tensor([int(r["labels"]) for r in rows])
    return batch
