"""A Llama-style decoder written from scratch, that runs course-gpt's real weights.

Derived in notebook 04.  course-gpt (SmolLM2-135M) is a stack of 30 identical blocks::

    x = embedding(token)                               # no position embedding here ...
    for each layer:                                    # "pre-norm": norm BEFORE each sub-layer
        x = x + Attention(RMSNorm(x))                  # ... positions enter as a rotation of q and k
        x = x + MLP(RMSNorm(x))                        #     (rotary embeddings, RoPE)
    logits = RMSNorm(x) @ embedding.T                  # tied: the output layer IS the embedding

    RMSNorm(x)   = w * x / sqrt(mean(x**2) + eps)      # no mean subtraction, no bias
    MLP(x)       = W_down (SiLU(W_gate x) * W_up x)    # SwiGLU
    Attention:   causal (a token sees only itself and the past), grouped-query: 9 query heads
                 share 3 key/value heads, 3 query heads per key/value head.

``GPT.from_pretrained("course-gpt")`` copies the weights of transformers'
``LlamaForCausalLM`` in (the parameter names are kept the same as transformers',
so the mapping is the identity), and :func:`generate` samples from it with a
key/value cache.

Batches of prompts of different lengths are LEFT-padded for generation (the next token is
predicted from the last column, which must be a real token).  Two things then keep a padded row
equal to the same prompt alone: an ``attention_mask`` (B, T) of 0/1 hides the pad keys, and
``position_ids`` count only the real tokens (``attention_mask.cumsum(-1) - 1``, clamped at 0), so
the first real token is at position 0 whatever the padding::

    ids  = [[pad, pad, 11, 12],        mask = [[0, 0, 1, 1],      positions = [[0, 0, 0, 1],
            [ 21,  22, 23, 24]]                [1, 1, 1, 1]]                   [0, 1, 2, 3]]
"""
from __future__ import annotations

from ftlib.errors import CourseError
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GPTConfig:
    """The sizes of a Llama-style decoder.  The defaults are SmolLM2-135M's (course-gpt)."""
    vocab_size: int = 49152
    hidden_size: int = 576
    num_layers: int = 30
    num_heads: int = 9
    num_kv_heads: int = 3
    intermediate_size: int = 1536
    rope_theta: float = 100000.0
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 8192
    tie_word_embeddings: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf(cls, hf) -> "GPTConfig":
        """Read the fields we need from a ``transformers.LlamaConfig``."""
        if getattr(hf, "model_type", None) != "llama":
            raise CourseError(f"Expected a Llama config, got model_type={getattr(hf, 'model_type', None)!r}.")
        rope = getattr(hf, "rope_parameters", None) or {"rope_theta": hf.rope_theta, "rope_type": "default"}
        if rope.get("rope_type", "default") != "default" or hf.hidden_act != "silu":
            raise CourseError("ftlib.gpt supports plain RoPE and SiLU; this config has "
                              f"rope_type={rope.get('rope_type')!r}, hidden_act={hf.hidden_act!r}.")
        if getattr(hf, "head_dim", None) not in (None, hf.hidden_size // hf.num_attention_heads):
            raise CourseError("ftlib.gpt assumes head_dim = hidden_size / num_attention_heads.")
        return cls(vocab_size=hf.vocab_size, hidden_size=hf.hidden_size,
                   num_layers=hf.num_hidden_layers, num_heads=hf.num_attention_heads,
                   num_kv_heads=hf.num_key_value_heads, intermediate_size=hf.intermediate_size,
                   rope_theta=float(rope["rope_theta"]), rms_norm_eps=hf.rms_norm_eps,
                   max_position_embeddings=hf.max_position_embeddings,
                   tie_word_embeddings=hf.tie_word_embeddings)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps), times a learned gain: LayerNorm without centring and bias."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope_cos_sin(positions, head_dim: int, theta: float):
    """cos and sin of the rotation angles ``position * theta**(-2i/head_dim)``: (T, head_dim) each.

    ``positions`` may also be (B, T), one row of positions per sequence: then (B, T, head_dim).
    Each angle appears twice, once for each half of the head (transformers' layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
    angles = positions.float()[..., None] * inv_freq.to(positions.device)  # (..., T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x):
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):
    """Rotate the pairs (x[i], x[i + head_dim/2]) of every head by their position's angles."""
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    """Causal grouped-query self-attention with rotary positions and an optional KV cache."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.hidden_size, cfg.head_dim
        self.q_proj = nn.Linear(d, cfg.num_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, cfg.num_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, cfg.num_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * hd, d, bias=False)

    def forward(self, x, cos, sin, cache=None, key_mask=None):
        """``cache`` is None or a dict holding this layer's past keys/values ("k", "v"): updated in place.

        ``key_mask`` is None or a bool (B, past + T): False marks a padding key no query may see."""
        B, T, _ = x.shape
        H, KV, hd = self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim
        q = self.q_proj(x).view(B, T, H, hd).transpose(1, 2)     # (B, H, T, hd)
        k = self.k_proj(x).view(B, T, KV, hd).transpose(1, 2)    # (B, KV, T, hd)
        v = self.v_proj(x).view(B, T, KV, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:                                    # keys/values of earlier tokens
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        past = k.shape[2] - T
        # grouped-query attention: each key/value head serves H // KV query heads
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
        # causal mask: query i (at position past + i) sees keys 0 .. past + i
        mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
        if key_mask is not None:                                 # and no query sees a padding key
            mask = mask & key_mask[:, None, None, :]             # (B, 1, T, past + T)
            # a query with nothing left to see (a left-pad token: its past is all padding) would
            # get softmax over all -inf = NaN; let it see itself only: its output is junk, but
            # finite, and no real token ever attends to it
            keys = torch.arange(past + T, device=x.device)
            itself = keys == keys[past:, None]                   # (T, past + T): query i is key past + i
            mask = mask | (itself & ~mask.any(dim=-1, keepdim=True))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * hd))


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """One decoder layer: pre-norm attention and pre-norm MLP, each on a residual path."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, cache=None, key_mask=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, key_mask)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x


class GPT(nn.Module):
    """Llama-style causal language model: token ids (B, T) -> next-token logits (B, T, vocab)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight   # one matrix, used twice

    def new_cache(self) -> list[dict]:
        """An empty KV cache: one dict per layer, filled by ``forward(..., cache=...)``."""
        return [{} for _ in self.layers]

    def forward(self, idx, attention_mask=None, position_ids=None, cache: list[dict] | None = None):
        """Logits (B, T, vocab) for every position.  With a ``cache``, ``idx`` holds only the new tokens.

        ``attention_mask``: None (every token is real) or (B, past + T) of 0/1, 0 marking padding:
        no query attends to a padding key.  With a cache it covers the cached tokens too (as in
        transformers).  ``position_ids``: (B, T) or (T,) positions of the new tokens for RoPE;
        by default ``past .. past + T - 1``, or with a mask ``attention_mask.cumsum(-1) - 1``
        clamped at 0 (its last T columns), so that padding does not shift the real tokens."""
        if isinstance(attention_mask, list) and attention_mask and isinstance(attention_mask[0], dict):
            raise CourseError("The second argument of GPT.forward is now attention_mask; "
                              "pass the KV cache by name: model(idx, cache=cache).")
        past = cache[0]["k"].shape[2] if cache and "k" in cache[0] else 0
        B, T = idx.shape
        if past + T > self.cfg.max_position_embeddings:
            raise CourseError(f"{past + T} tokens exceed the {self.cfg.max_position_embeddings} "
                              "positions the model was trained on.")
        key_mask = None
        if attention_mask is not None:
            key_mask = check_attention_mask(attention_mask, (B, past + T),
                                            "(batch, cached + new tokens)" if past else "idx.shape").to(idx.device)
            if position_ids is None:
                position_ids = (key_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
        if position_ids is None:
            positions = torch.arange(past, past + T, device=idx.device)
        else:
            positions = torch.as_tensor(position_ids, device=idx.device)
            if positions.shape not in ((T,), (1, T), (B, T)) or positions.is_floating_point():
                raise CourseError(f"position_ids must be integers of shape (batch, tokens) = {(B, T)} "
                                  f"or (tokens,), got {tuple(positions.shape)} ({positions.dtype}).")
            if T and (positions.min() < 0 or positions.max() >= self.cfg.max_position_embeddings):
                raise CourseError(f"position_ids must lie in 0 .. {self.cfg.max_position_embeddings - 1}, "
                                  f"got {positions.min().item()} .. {positions.max().item()}.")
        cos, sin = rope_cos_sin(positions, self.cfg.head_dim, self.cfg.rope_theta)
        if cos.dim() == 3:                             # (B, T, hd) -> (B, 1, T, hd): same for all heads
            cos, sin = cos[:, None], sin[:, None]
        x = self.embed_tokens(idx)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if cache is None else cache[i], key_mask)
        return self.lm_head(self.norm(x))

    @classmethod
    def from_pretrained(cls, name: str = "course-gpt") -> "GPT":
        """Load a transformers Llama checkpoint (``ftlib.load_model``) and take its weights."""
        import ftlib

        return cls.from_hf(ftlib.load_model(name, task="causal-lm"))

    @classmethod
    def from_hf(cls, hf_model) -> "GPT":
        """Our model on the weights of a loaded ``LlamaForCausalLM``.

        The tensors are shared, not copied (a 135M-parameter model is 0.5 GB in float32):
        training one of the two models changes the other."""
        with torch.device("meta"):                   # skip the random init we would overwrite
            model = cls(GPTConfig.from_hf(hf_model.config))
        load_hf_state_dict(model, hf_model.state_dict(), assign=True)
        return model.eval()


def check_attention_mask(attention_mask, shape: tuple, what: str = "idx.shape"):
    """``attention_mask`` as a bool tensor, after checking it has ``shape`` and only 0/1 values."""
    mask = torch.as_tensor(attention_mask)
    if tuple(mask.shape) != tuple(shape):
        raise CourseError(f"attention_mask must have the shape of {what}, {tuple(shape)}; got "
                          f"{tuple(mask.shape)}. Pass the tokenizer's attention_mask with its input_ids.")
    if mask.dtype != torch.bool:
        if mask.is_complex() or not bool(((mask == 0) | (mask == 1)).all()):
            raise CourseError("attention_mask must hold only 0 (padding) and 1 (real token); got values "
                              f"{sorted(set(mask.flatten().tolist()))[:6]}.")
        mask = mask == 1
    return mask


def load_hf_state_dict(model: GPT, hf_state: dict, assign: bool = False) -> None:
    """Copy a ``LlamaForCausalLM`` state dict: our names are ``model.``-less transformers names."""
    ours = {k.removeprefix("model."): v for k, v in hf_state.items()}
    if model.cfg.tie_word_embeddings:
        ours.pop("lm_head.weight", None)             # the same tensor as embed_tokens.weight
    expected = set(model.state_dict()) - ({"lm_head.weight"} if model.cfg.tie_word_embeddings else set())
    missing, extra = expected - set(ours), set(ours) - expected
    if missing or extra:
        raise CourseError(f"Checkpoint does not fit: missing {sorted(missing)[:3]}, "
                          f"unexpected {sorted(extra)[:3]}.")
    model.load_state_dict(ours, strict=False, assign=assign)
    if model.cfg.tie_word_embeddings:               # assign=True replaced the shared tensor: re-tie
        model.lm_head.weight = model.embed_tokens.weight


def sample_next(logits, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator=None):
    """Pick one token id per row of ``logits`` (B, vocab).  ``temperature=0`` means greedy."""
    if temperature < 0 or (top_k is not None and top_k < 1) or (top_p is not None and not 0 < top_p <= 1):
        raise CourseError(f"Need temperature >= 0, top_k >= 1 and 0 < top_p <= 1; got "
                          f"temperature={temperature}, top_k={top_k}, top_p={top_p}.")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:                          # keep the k most likely tokens
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:                          # keep the smallest set with probability >= top_p
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum - sorted_logits.softmax(dim=-1) >= top_p   # mass BEFORE this token already enough
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)


@torch.no_grad()
def generate(model: GPT, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, use_cache: bool = True, eos_token_id: int | None = None,
             generator=None, attention_mask=None):
    """Extend ``idx`` (B, T) by up to ``max_new_tokens`` tokens; returns (B, T + new).

    ``temperature=0`` is greedy decoding.  With ``use_cache`` only the newest token goes
    through the model at each step; without, the whole sequence is recomputed every step
    (same tokens, slower).  Generation stops early once every row has produced ``eos_token_id``.

    For a batch of prompts of different lengths, pad on the LEFT (``tokenizer.padding_side =
    "left"``) and pass the tokenizer's ``attention_mask`` (B, T): the mask grows by a 1 for every
    new token, the pads stay hidden, and each row's positions count its real tokens only, so every
    row continues exactly as its prompt alone would.
    """
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise CourseError(f"idx must be (batch, tokens) with at least one token, got shape {tuple(idx.shape)}; "
                          "use tokenizer(..., return_tensors='pt').input_ids.")
    if attention_mask is not None:
        attention_mask = check_attention_mask(attention_mask, idx.shape).to(idx.device)
        if not bool(attention_mask[:, -1].all()):
            raise CourseError("generate needs LEFT padding: some rows of attention_mask end in 0, so their next "
                              "token would follow a pad. Set tokenizer.padding_side = 'left'.")
    cache = model.new_cache() if use_cache else None
    done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    step_input = idx
    for _ in range(max_new_tokens):
        logits = model(step_input if use_cache else idx, attention_mask=attention_mask, cache=cache)[:, -1, :]
        nxt = sample_next(logits.float(), temperature, top_k, top_p, generator)
        if eos_token_id is not None:               # finished rows keep emitting eos
            nxt = nxt.masked_fill(done[:, None], eos_token_id)
            done |= nxt[:, 0] == eos_token_id
        idx = torch.cat([idx, nxt], dim=1)
        if attention_mask is not None:             # the new token is real: the mask grows by a 1
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(idx.shape[0], 1)], dim=1)
        step_input = nxt
        if eos_token_id is not None and bool(done.all()):
            break
    return idx
