"""Causal language-model fine-tuning pieces (derived in notebook 12).

* :func:`pack_blocks` -- concatenate tokenised documents (with an end-of-text token between
  them) and cut the stream into blocks of ``block_size`` tokens: no padding inside, no token
  lost; an optional padded last block whose padding carries the label ``-100``;
* :func:`causal_lm_loss` -- the next-token loss written out: logits at position t are scored
  against the token at t + 1 (transformers' models shift ``labels`` the same way inside);
* perplexity -- ``exp`` of the mean next-token cross-entropy over every predicted token:
  ``ftlib.train.evaluate(model, batches, task="causal_lm")["perplexity"]`` (the loss is the
  one training uses, :func:`ftlib.train.lm_loss`);
* :func:`prompt_examples`, :func:`label_word_logprobs` -- sentiment as text generation
  (``Review: ... Sentiment: positive``): train only the answer token (``-100`` on the prompt),
  classify by comparing the next-token log-probabilities of the label words;
* training: ``ftlib.train.fit(model, DeviceBatches(blocks, ...), task="causal_lm")``, the
  same engine as every other lesson;
* FLOPs per token, the peak table and MFU live in :mod:`ftlib.flops`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ftlib.batches import IGNORE   # the label transformers' losses skip
from ftlib.errors import CourseError
from ftlib.device import autocast, pick_dtype

__all__ = ["pack_blocks", "causal_lm_loss", "chunked_lm_loss", "body_and_head", "head_at_labels", "labelled_logits", "PROMPT", "prompt_examples", "label_word_ids",
           "label_word_logprobs"]


def pack_blocks(docs, block_size: int, *, eos_id: int | None = None, pad_id: int = 0,
                keep_remainder: bool = False) -> dict:
    """Pack token-id lists into ``(n_blocks, block_size)`` tensors ``input_ids``, ``labels``, ``attention_mask``.

    ``docs``: one list of token ids, or a list of such lists (documents). With ``eos_id``,
    that token is put after every document, so the model learns where one ends. ``labels``
    equal ``input_ids`` (the model shifts them by one itself). ``keep_remainder``: keep the
    last, shorter piece as a padded block (padding: ``pad_id``, label ``-100``, mask 0);
    otherwise it is dropped (at most ``block_size - 1`` tokens).
    """
    if block_size < 2:
        raise CourseError(f"block_size must be at least 2 (a token and the next one), got {block_size}.")
    docs = list(docs)
    if docs and isinstance(docs[0], int):
        docs = [docs]
    stream = []
    for d in docs:
        stream += list(d) + ([eos_id] if eos_id is not None else [])
    n_full = len(stream) // block_size
    rest = len(stream) - n_full * block_size
    if n_full == 0 and not (keep_remainder and rest):
        raise CourseError(f"Only {len(stream)} tokens: not enough for one block of {block_size}. "
                          "Use a smaller block_size, more text, or keep_remainder=True.")
    ids = torch.tensor(stream[:n_full * block_size], dtype=torch.long).view(n_full, block_size)
    mask = torch.ones_like(ids)
    labels = ids.clone()
    if keep_remainder and rest:
        last = torch.full((1, block_size), pad_id, dtype=torch.long)
        last[0, :rest] = torch.tensor(stream[n_full * block_size:])
        last_labels = torch.full((1, block_size), IGNORE, dtype=torch.long)
        last_labels[0, :rest] = last[0, :rest]
        last_mask = (torch.arange(block_size) < rest).long()[None]
        ids, labels, mask = torch.cat([ids, last]), torch.cat([labels, last_labels]), torch.cat([mask, last_mask])
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def causal_lm_loss(logits, labels, reduction: str = "mean"):
    """Next-token cross-entropy: logits[:, t] predicts labels[:, t + 1]; ``-100`` labels are skipped.

    ``reduction="sum"`` gives the summed loss (divide by the number of predicted tokens,
    ``(labels[:, 1:] != -100).sum()``, for the mean)."""
    if logits.shape[:2] != labels.shape:
        raise CourseError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must agree on "
                          "(batch, tokens).")
    pred = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    target = labels[:, 1:].reshape(-1)
    return F.cross_entropy(pred, target, ignore_index=IGNORE, reduction=reduction)


def chunked_lm_loss(hidden, head, labels, chunk_tokens: int = 4096):
    """Summed next-token cross-entropy from the last hidden states, ``chunk_tokens`` positions at a time.

    ``hidden`` (B, T, d) at position t predicts ``labels[:, t + 1]`` through ``head`` (the
    output layer). Each chunk's logits are made, scored in float32 and dropped; the
    backward pass recomputes them (activation checkpointing), so at most one chunk of
    ``chunk_tokens x vocabulary`` logits exists at a time instead of ``B x T x vocabulary``.
    Returns the summed loss; divide by ``(labels[:, 1:] != -100).sum()`` for the mean."""
    from torch.utils.checkpoint import checkpoint

    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    y = labels[:, 1:].reshape(-1)

    def piece(h_part, y_part):
        return F.cross_entropy(head(h_part).float(), y_part, ignore_index=IGNORE, reduction="sum")

    total = hidden.new_zeros((), dtype=torch.float32)
    for s in range(0, h.shape[0], chunk_tokens):
        total = total + checkpoint(piece, h[s:s + chunk_tokens], y[s:s + chunk_tokens], use_reentrant=False)
    return total


def body_and_head(model, required_for: str | None = None):
    """``(body, output layer)`` of a model that has both separately (``get_decoder()`` and
    ``get_output_embeddings()``, as every transformers ``...ForCausalLM``, LoRA-wrapped too), else
    ``(None, None)`` -- or, with ``required_for`` (what needs them, e.g. "Sharing the prompt"), a
    :class:`CourseError` that says so."""
    get_body, get_head = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
    body = get_body() if callable(get_body) else None
    head = get_head() if callable(get_head) else None
    if body is not None and body is not model and head is not None:
        return body, head
    if required_for:
        raise CourseError(f"{required_for} needs a model with get_decoder() and get_output_embeddings() (a "
                          f"transformers ...ForCausalLM); {type(model).__name__} has not both.")
    return None, None


def head_at_labels(head, hidden, target):
    """``(logits, targets, rows)``: the output layer ``head`` run only on the ``hidden`` states (rows, T, H)
    whose ``target`` (rows, T) is labelled (not -100): float32 ``logits`` (n, vocab), their ``targets`` (n,)
    and the batch ``rows`` (n,) they belong to. The boolean selection reads a count on the host."""
    keep = target != IGNORE
    return head(hidden[keep]).float(), target[keep], keep.nonzero()[:, 0]


def labelled_logits(model, inputs: dict, labels):
    """``(logits, targets, rows)`` at the positions whose next token is labelled (not -100) only.

    The body of ``model`` (``get_decoder()``) runs on ``inputs``; the output layer
    (``get_output_embeddings()``) only at the kept positions: float32 ``logits`` (n, vocab), their
    ``targets`` (n,) and the batch ``rows`` (n,) they belong to. Shared by the response-only loss
    (:func:`ftlib.train.lm_loss` with ``labelled_only=True``) and DPO's sequence log-probabilities
    (:func:`ftlib.dpo.sequence_logprobs`); the output layer runs in :func:`head_at_labels`."""
    body, head = body_and_head(model, required_for="Scoring only the labelled tokens")
    # no KV cache while scoring: it is never read here, and with one transformers skips the
    # block-diagonal mask that packed rows (ftlib.chat.pack_examples) take from their position_ids
    hidden, target = body(**{"use_cache": False, **inputs}).last_hidden_state[:, :-1], labels[:, 1:]
    return head_at_labels(head, hidden, target)


def _batches(data: dict, batch_size: int, order=None):
    n = data["input_ids"].shape[0]
    order = range(n) if order is None else order
    order = list(order)
    for start in range(0, len(order), batch_size):
        idx = torch.tensor(order[start:start + batch_size])
        batch = {k: v[idx] for k, v in data.items()}
        width = int(batch["attention_mask"].sum(1).max())       # right padding: trim to the longest row
        yield {k: v[:, :width] for k, v in batch.items()}


PROMPT = "Review: {text}\nSentiment:"


def label_word_ids(tokenizer, words=(" negative", " positive")) -> list[int]:
    """The token id of each label word; each must be a single token (with its leading space)."""
    ids = []
    for w in words:
        toks = tokenizer(w, add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise CourseError(f"The label word {w!r} is {len(toks)} tokens {toks}; pick words that are one token "
                              "each (try a leading space), so one next-token probability scores each label.")
        ids.append(toks[0])
    return ids


def prompt_examples(texts, labels, tokenizer, *, words=(" negative", " positive"), max_length: int = 64,
                    prompt: str = PROMPT) -> dict:
    """Right-padded tensors for training a causal LM to answer the label word after ``prompt``.

    ``labels`` are -100 everywhere but on the answer token, so only the answer is learnt (the
    review itself is not the task). Reviews are truncated so prompt + answer fit ``max_length``.
    """
    answer = label_word_ids(tokenizer, words)
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels) or not texts:
        raise CourseError(f"Need as many labels as texts (and at least one): got {len(texts)} and {len(labels)}.")
    tail = tokenizer(prompt.split("{text}")[1], add_special_tokens=False)["input_ids"]
    rows = []
    for text, y in zip(texts, labels):
        body = tokenizer(prompt.split("{text}")[0] + text, add_special_tokens=False)["input_ids"]
        body = body[:max_length - len(tail) - 1]
        rows.append((body + tail + [answer[int(y)]], len(body) + len(tail)))
    width = max(len(r) for r, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    lab = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, a) in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
        lab[i, a] = r[a]                                       # only the answer token is a target
    return {"input_ids": ids, "labels": lab, "attention_mask": mask}


@torch.no_grad()
def label_word_logprobs(model, data: dict, label_ids, batch_size: int = 16, device=None, dtype=None):
    """(N, n_labels) log-probabilities of each label word as the token after each prompt.

    ``data`` is :func:`prompt_examples`' output: the prompt is everything before the answer,
    so the scores come from the position just before the answer token."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = dtype or pick_dtype(device)
    model.eval()
    out = []
    for batch in _batches(data, batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, dtype):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        # the position whose next token is the answer: the one before the first non -100 label
        where = (batch["labels"] != IGNORE).float().argmax(1) - 1
        last = logits[torch.arange(len(where), device=device), where].float().log_softmax(-1)
        out.append(last[:, list(label_ids)].cpu())
    return torch.cat(out)
