"""Checks for the exercises of notebook 04 (the decoder and generation)."""
from __future__ import annotations

import torch

from ftlib.exercises import Wrong, exercise


# ---- 04.1: KV-cache size -----------------------------------------------------------------------
def kv_cache_bytes_reference(cfg, n_tokens: int, bytes_per_value: int = 4) -> int:
    """Keys and values, every layer, num_kv_heads heads of head_dim numbers, per token."""
    return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * n_tokens * bytes_per_value


def _kv_cases():
    from ftlib.gpt import GPTConfig

    gpt2_like = GPTConfig(hidden_size=768, num_layers=12, num_heads=12, num_kv_heads=12)
    small_gqa = GPTConfig(hidden_size=256, num_layers=4, num_heads=8, num_kv_heads=2)
    return [(GPTConfig(), 1, 4), (GPTConfig(), 8192, 4), (GPTConfig(), 100, 2),
            (gpt2_like, 1, 4), (small_gqa, 10, 2)]


@exercise("04.1")
def check_kv_cache(kv_cache_bytes):
    if not callable(kv_cache_bytes):
        raise Wrong("Answer with your function: answer = kv_cache_bytes.")
    for cfg, n, b in _kv_cases():
        got, want = kv_cache_bytes(cfg, n, b), kv_cache_bytes_reference(cfg, n, b)
        if got == want:
            continue
        desc = (f"kv_cache_bytes(cfg with {cfg.num_layers} layers, {cfg.num_heads} heads, {cfg.num_kv_heads} "
                f"key/value heads of {cfg.head_dim}; n_tokens={n}, bytes_per_value={b})")
        if got == want // cfg.num_kv_heads * cfg.num_heads:
            raise Wrong(f"{desc}: with grouped-query attention only num_kv_heads = {cfg.num_kv_heads} heads of "
                        f"keys and values are cached, not num_heads = {cfg.num_heads}.")
        if got * 2 == want:
            raise Wrong(f"{desc}: the cache holds keys AND values: twice what you have.")
        if got * cfg.num_layers == want:
            raise Wrong(f"{desc}: every layer has its own keys and values: multiply by num_layers.")
        if got * b == want:
            raise Wrong(f"{desc}: that is a count of numbers; multiply by bytes_per_value for bytes.")
        raise Wrong(f"{desc} returned {got}; expected 2 x layers x kv heads x head_dim x tokens x bytes.")


# ---- 04.2: top-p (nucleus) filtering -----------------------------------------------------------
def top_p_reference(logits, p):
    """-inf outside the smallest set of most likely tokens whose probability reaches p."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    drop = probs.cumsum(dim=-1) - probs >= p           # the mass before this token already reaches p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


@exercise("04.2")
def check_top_p(top_p_filter):
    if not callable(top_p_filter):
        raise Wrong("Answer with your function: answer = top_p_filter.")
    gen = torch.Generator().manual_seed(33)
    logits = torch.randn(4, 20, generator=gen, dtype=torch.float64) * 2
    for p in (0.5, 0.9, 1e-6, 1.0):
        got = torch.as_tensor(top_p_filter(logits.clone(), p)).detach()
        want = top_p_reference(logits, p)
        if got.shape != want.shape:
            raise Wrong(f"Return logits of the same shape {tuple(want.shape)}, got {tuple(got.shape)}.")
        if not torch.isinf(got).any() and (got >= 0).all() and torch.allclose(got.double().sum(-1), torch.ones(4, dtype=torch.float64)):
            raise Wrong("Return logits, with -inf for the dropped tokens, not probabilities: sampling applies "
                        "the softmax afterwards.")
        kept, kept_want = torch.isfinite(got), torch.isfinite(want)
        if torch.equal(kept, kept_want):
            if torch.allclose(got[kept].double(), want[kept]):
                continue
            raise Wrong("The right tokens are kept, but return their logits unchanged (and -inf elsewhere), "
                        "not probabilities or rescaled values.")
        n_got, n_want = kept.sum(-1), kept_want.sum(-1)
        if (n_got <= n_want).all() and (n_got >= n_want - 1).all():
            raise Wrong(f"With top_p={p:g} you drop the token that takes the sum past p: keep the smallest set "
                        "whose probability reaches p, that token included (so even a tiny top_p keeps the most "
                        "likely token).")
        if not kept.any(dim=-1).all():
            raise Wrong(f"With top_p={p:g} some row keeps no token at all: always keep the most likely token "
                        "(that is why a tiny top_p is greedy decoding).")
        raise Wrong(f"With top_p={p:g} your function keeps {n_got.tolist()} tokens per row; the nucleus has "
                    f"{n_want.tolist()}. Sort by probability, keep the most likely tokens until their sum "
                    "reaches p, set the other logits to -inf.")
