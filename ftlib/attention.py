"""Scaled dot-product attention and multi-head attention, as derived in lesson 02.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V,   the softmax taken over the keys (last axis)

Shapes (the same names are used throughout):

=========  ===============================================  ==============================
tensor     shape                                            meaning
=========  ===============================================  ==============================
q          (..., L, E)                                      L queries of size E (= d_k)
k          (..., S, E)                                      S keys, the same size as queries
v          (..., S, Ev)                                     one value per key
weights    (..., L, S)                                      each row sums to 1 over the keys
output     (..., L, Ev)                                     weights @ v
=========  ===============================================  ==============================

``...`` is any batch shape, usually ``(batch, heads)``.

Masks follow :func:`torch.nn.functional.scaled_dot_product_attention`:

* a **boolean** mask is ``True`` where a query *may* look at a key (``False`` = blocked);
* a **float** mask is *added* to the scores (0 = allowed, ``-inf`` = blocked);

and either must broadcast to ``(..., L, S)``.  Careful: ``torch.nn.MultiheadAttention``
uses the opposite convention for its boolean masks (``True`` = blocked), and
transformers' ``attention_mask`` is ``1`` for real tokens and ``0`` for padding
(:func:`padding_mask` turns that into the boolean form used here).

A query row whose keys are *all* blocked gets weights 0 and output 0 (not NaN),
as PyTorch's fused attention does.

:class:`MultiHeadAttention` keeps four ``nn.Linear`` layers, ``q_proj``, ``k_proj``,
``v_proj`` and ``out_proj``, each ``(d_model, d_model)``. ``nn.MultiheadAttention``
stores the first three stacked in one ``in_proj_weight`` of shape ``(3 * d_model, d_model)``
(rows in the order query, key, value); :meth:`MultiHeadAttention.from_torch` splits it.
"""
from __future__ import annotations

from ftlib.errors import CourseError
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["scaled_dot_product_attention", "causal_mask", "padding_mask", "additive_mask",
           "MultiHeadAttention"]


def _error(msg: str):
    return CourseError(msg)


def causal_mask(n: int, m: int | None = None, device=None) -> torch.Tensor:
    """Boolean ``(n, m)`` mask, ``True`` where query i may look at key j, i.e. j <= i.

    ``m`` defaults to ``n``. Like ``is_causal=True`` in PyTorch, the triangle starts at
    the top-left corner when ``n != m``.
    """
    m = n if m is None else m
    if not (isinstance(n, int) and isinstance(m, int)) or n < 1 or m < 1:
        raise _error(f"causal_mask needs positive whole numbers of queries and keys, got n={n!r}, m={m!r}.")
    return torch.ones(n, m, dtype=torch.bool, device=device).tril()


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Turn a tokenizer's ``attention_mask`` (batch, S) of 1 = token / 0 = padding into a
    boolean mask of shape ``(batch, 1, 1, S)`` that broadcasts over heads and queries."""
    attention_mask = torch.as_tensor(attention_mask)
    if attention_mask.dim() != 2:
        raise _error(f"padding_mask expects the tokenizer's attention_mask of shape (batch, seq), "
                     f"got shape {tuple(attention_mask.shape)}. Add a batch axis with [None] for one sequence.")
    if attention_mask.dtype != torch.bool:
        if not ((attention_mask == 0) | (attention_mask == 1)).all():
            raise _error("attention_mask must hold only 0 (padding) and 1 (real token).")
        attention_mask = attention_mask == 1
    return attention_mask[:, None, None, :]


def additive_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Boolean mask (``True`` = allowed) -> float mask of 0 and ``-inf`` to add to the scores."""
    if mask.dtype != torch.bool:
        raise _error(f"additive_mask converts a boolean mask, got dtype {mask.dtype}.")
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))


def scaled_dot_product_attention(q, k, v, mask=None, causal=False, dropout_p=0.0, scale=None):
    """softmax(q kᵀ · scale + mask) v, returning ``(output, weights)``.

    q: (..., L, E), k: (..., S, E), v: (..., S, Ev); the batch axes ``...`` broadcast.
    mask: boolean (True = may attend) or float (added to the scores), broadcastable to (..., L, S).
    causal: also block every key j > i (combined with ``mask`` if both are given).
    dropout_p: dropout on the weights (pass 0.0 at evaluation time); the returned weights are
        the ones actually used, so with dropout their rows no longer sum to exactly 1.
    scale: defaults to 1 / sqrt(E).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            raise _error(f"{name} must be a tensor of shape (..., seq, dim), got "
                         f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}.")
    if q.shape[-1] != k.shape[-1]:
        raise _error(f"Queries and keys must have the same size to be compared: q has {q.shape[-1]} "
                     f"features, k has {k.shape[-1]}. Check the head dimension of the projections.")
    if k.shape[-2] != v.shape[-2]:
        raise _error(f"Every key needs one value: k has {k.shape[-2]} positions, v has {v.shape[-2]}.")
    if not 0.0 <= dropout_p < 1.0:
        raise _error(f"dropout_p must be in [0, 1), got {dropout_p}.")
    L, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale

    scores = (q * scale) @ k.transpose(-2, -1)                        # (..., L, S)
    if mask is not None:
        mask = torch.as_tensor(mask, device=scores.device)
        try:
            torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            raise _error(f"The mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                         f"{tuple(scores.shape)} (..., queries, keys). A padding mask from a (batch, seq) "
                         "attention_mask needs padding_mask() to become (batch, 1, 1, seq).") from None
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(scores.dtype)
    if causal:
        scores = scores.masked_fill(~causal_mask(L, S, device=scores.device), float("-inf"))

    weights = torch.softmax(scores, dim=-1)
    if mask is not None or causal:
        # a query that may look at no key at all: softmax of all -inf is NaN; use 0 instead
        blocked = torch.isneginf(scores).all(dim=-1, keepdim=True)
        weights = weights.masked_fill(blocked, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention with input and output projections, batch first.

    x (B, L, d_model) -> q, k, v projections -> split into n_heads of head_dim = d_model / n_heads
    -> (B, H, L, head_dim) -> scaled dot-product attention per head -> heads side by side
    (B, L, d_model) -> out_proj.  Unbatched input (L, d_model) works too.

    Weight layout: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` are ``nn.Linear(d_model, d_model)``;
    head h uses rows ``h * head_dim : (h + 1) * head_dim`` of each of q/k/v_proj.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if not (isinstance(d_model, int) and isinstance(n_heads, int)) or d_model < 1 or n_heads < 1:
            raise _error(f"d_model and n_heads must be positive whole numbers, got {d_model!r}, {n_heads!r}.")
        if d_model % n_heads:
            divisors = [h for h in range(1, d_model + 1) if d_model % h == 0]
            raise _error(f"d_model={d_model} is not divisible by n_heads={n_heads}: every head gets "
                         f"d_model / n_heads features. Pick n_heads from {divisors}.")
        self.d_model, self.n_heads, self.head_dim, self.dropout = d_model, n_heads, d_model // n_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _split(self, x):                      # (B, T, d_model) -> (B, H, T, head_dim)
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, query, key=None, value=None, mask=None, attention_mask=None, causal=False):
        """Self-attention with ``mha(x)``; cross-attention with ``mha(x, memory)``.

        mask: boolean (True = may attend) or float, broadcastable to (B, H, L, S).
        attention_mask: a tokenizer's (B, S) 1/0 mask over the keys (padding).
        Returns ``(output (B, L, d_model), weights (B, H, L, S))``.
        """
        key = query if key is None else key
        value = key if value is None else value
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query[None], key[None], value[None]
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.dim() != 3 or t.shape[-1] != self.d_model:
                raise _error(f"{name} must have shape (batch, seq, {self.d_model}) or (seq, {self.d_model}), "
                             f"got {tuple(t.shape)}.")
        if attention_mask is not None:
            pad = padding_mask(attention_mask).to(query.device)
            if pad.shape[-1] != key.shape[1]:
                raise _error(f"attention_mask covers {pad.shape[-1]} positions but there are {key.shape[1]} keys.")
            mask = pad if mask is None else _combine(mask, pad)
        q, k, v = self._split(self.q_proj(query)), self._split(self.k_proj(key)), self._split(self.v_proj(value))
        y, weights = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal,
                                                  dropout_p=self.dropout if self.training else 0.0)
        B, H, L, D = y.shape
        y = self.out_proj(y.transpose(1, 2).reshape(B, L, H * D))      # heads side by side
        return (y[0], weights[0]) if unbatched else (y, weights)

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """A copy of a ``torch.nn.MultiheadAttention`` (same weights, same outputs)."""
        if not isinstance(mha, nn.MultiheadAttention):
            raise _error(f"from_torch expects a torch.nn.MultiheadAttention, got {type(mha).__name__}.")
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise _error("from_torch supports MultiheadAttention with kdim = vdim = embed_dim, "
                         "add_bias_kv=False and add_zero_attn=False.")
        has_bias = mha.in_proj_bias is not None
        ours = cls(mha.embed_dim, mha.num_heads, bias=has_bias, dropout=mha.dropout)
        ours = ours.to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)
        d = mha.embed_dim
        with torch.no_grad():
            for i, proj in enumerate((ours.q_proj, ours.k_proj, ours.v_proj)):
                proj.weight.copy_(mha.in_proj_weight[i * d:(i + 1) * d])
                if has_bias:
                    proj.bias.copy_(mha.in_proj_bias[i * d:(i + 1) * d])
            ours.out_proj.weight.copy_(mha.out_proj.weight)
            if has_bias:
                ours.out_proj.bias.copy_(mha.out_proj.bias)
        return ours


def _combine(mask, pad):
    """Both masks must allow a position: AND for booleans, sum for float masks."""
    mask = torch.as_tensor(mask, device=pad.device)
    if mask.dtype == torch.bool:
        return mask & pad
    return mask + additive_mask(pad, mask.dtype)
