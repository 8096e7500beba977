"""Causal language-model fine-tuning pieces (derived in notebook 11).

* :func:`pack_blocks` -- concatenate tokenised documents (with an end-of-text token between
  them) and cut the stream into blocks of ``block_size`` tokens: no padding inside, no token
  lost; an optional padded last block whose padding carries the label ``-100``;
* :func:`causal_lm_loss` -- the next-token loss written out: logits at position t are scored
  against the token at t + 1 (transformers' models shift ``labels`` the same way inside);
* :func:`perplexity` -- ``exp`` of the mean next-token cross-entropy over every predicted
  token of a set of blocks;
* :func:`prompt_examples`, :func:`label_word_logprobs` -- sentiment as text generation
  (``Review: ... Sentiment: positive``): train only the answer token (``-100`` on the prompt),
  classify by comparing the next-token log-probabilities of the label words;
* :func:`lm_train` -- a small AdamW loop over such tensors (right-padded rows), measuring
  tokens per second;
* :func:`flops_per_token`, :func:`peak_flops`, :func:`mfu` and ``PEAK_BF16_TFLOPS`` -- model
  FLOPs utilisation: achieved training FLOP/s over the device's dense bf16 peak.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from ftlib import CourseError
from ftlib.device import autocast, pick_dtype

__all__ = ["pack_blocks", "causal_lm_loss", "perplexity", "PROMPT", "prompt_examples", "label_word_ids",
           "label_word_logprobs", "lm_train", "flops_per_token", "PEAK_BF16_TFLOPS", "peak_flops", "mfu",
           "count_parameters"]

IGNORE = -100   # the label transformers' losses skip


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


def _batches(data: dict, batch_size: int, order=None):
    n = data["input_ids"].shape[0]
    order = range(n) if order is None else order
    order = list(order)
    for start in range(0, len(order), batch_size):
        idx = torch.tensor(order[start:start + batch_size])
        batch = {k: v[idx] for k, v in data.items()}
        width = int(batch["attention_mask"].sum(1).max())       # right padding: trim to the longest row
        yield {k: v[:, :width] for k, v in batch.items()}


@torch.no_grad()
def perplexity(model, data: dict, batch_size: int = 8, device=None, dtype=None) -> dict:
    """``{"loss", "perplexity", "tokens"}``: mean next-token cross-entropy over every predicted token, and its exp."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = dtype or pick_dtype(device)
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for batch in _batches(data, batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, dtype):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total += causal_lm_loss(logits, batch["labels"], reduction="sum").double()
        count += int((batch["labels"][:, 1:] != IGNORE).sum())
    if count == 0:
        raise CourseError("No token to predict: every label is -100 (or the blocks are one token long).")
    loss = total.item() / count
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": count}


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


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of parameters (tied weights counted once)."""
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        n += p.numel()
    return n


def lm_train(model, data: dict, *, steps: int, batch_size: int, lr: float, warmup_steps: int = 0,
             weight_decay: float = 0.0, max_grad_norm: float | None = 1.0, device=None, dtype=None,
             fused: bool | None = None, compile: bool = False, seed: int = 0, progress: bool = True) -> dict:
    """``steps`` AdamW steps of causal-LM training on random batches of ``data`` (right-padded rows).

    Returns ``{"losses", "seconds", "tokens", "tokens_per_s", "peak_memory_mb"}``; ``tokens``
    counts the real (unpadded) input tokens processed. Losses are collected on the device and
    read at the end. ``compile``: run the model through ``torch.compile`` (timed with the rest).
    """
    from tqdm.auto import tqdm

    from ftlib.fast import peak_memory_mb, reset_peak_memory, sync
    from ftlib.train import linear_schedule

    if steps < 1 or batch_size < 1:
        raise CourseError(f"Need steps >= 1 and batch_size >= 1, got {steps}, {batch_size}.")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = dtype or pick_dtype(device)
    fused = device.type == "cuda" if fused is None else fused
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise CourseError("The model has no trainable parameters.")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    scheduler = linear_schedule(optimizer, warmup_steps, steps)
    gen = torch.Generator().manual_seed(seed)
    n = data["input_ids"].shape[0]
    order = []
    while len(order) < steps * batch_size:
        order += torch.randperm(n, generator=gen).tolist()
    forward = torch.compile(model) if compile else model
    model.train()
    losses, tokens = [], 0
    reset_peak_memory(device)
    sync(device)
    t0 = time.perf_counter()
    for batch in tqdm(_batches(data, batch_size, order[:steps * batch_size]), total=steps, desc="lm_train",
                      disable=not progress):
        tokens += int(batch["attention_mask"].sum())
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device, dtype):
            logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = causal_lm_loss(logits, batch["labels"])
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        losses.append(loss.detach())
    sync(device)
    seconds = time.perf_counter() - t0
    model.eval()
    return {"losses": torch.stack(losses).tolist(), "seconds": seconds, "tokens": tokens,
            "tokens_per_s": tokens / seconds, "peak_memory_mb": peak_memory_mb(device)}


def flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per token: ``6 N + 12 L d T`` (PaLM paper, appendix B).

    ``6 N``: every parameter does one multiply-add (2 FLOPs) per token forward and twice that
    backward. ``12 L d T``: attention's scores and weighted sum, which grow with the context
    length ``T`` and own no parameters."""
    if min(n_params, n_layers, d_model, seq_len) < 1:
        raise CourseError("n_params, n_layers, d_model and seq_len must all be positive.")
    return 6.0 * n_params + 12.0 * n_layers * d_model * seq_len


# Dense (no sparsity) bfloat16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s.
# Checked in order: the first name contained in the GPU's name wins.
PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.0,       # SXM (the name reads e.g. "NVIDIA H100 80GB HBM3")
    "H200": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
}


def peak_flops(device=None) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None when unknown (every CPU, unlisted GPUs)."""
    device = torch.device(device) if device is not None else None
    if device is None or device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


def mfu(tokens_per_s: float, flops_per_tok: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s (tokens/s x FLOPs per token) over the peak; None without a peak."""
    if peak is None:
        return None
    if peak <= 0 or tokens_per_s < 0:
        raise CourseError(f"peak must be positive and tokens_per_s non-negative, got {peak}, {tokens_per_s}.")
    return tokens_per_s * flops_per_tok / peak
