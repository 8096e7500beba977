"""A BERT encoder written from scratch, that runs course-bert's real weights.

Derived in notebook 03.  The whole model is a stack of the same block::

    x = embeddings(word) + embeddings(position) + embeddings(token type)
    x = LayerNorm(x)                                   # then dropout
    for each layer:                                    # "post-LN": norm AFTER the residual add
        x = LayerNorm(x + Dropout(SelfAttention(x)))   # bidirectional: every token sees every
        x = LayerNorm(x + Dropout(FFN(x)))             #   non-padding token
    FFN(x) = W2 GELU(W1 x + b1) + b2                   # hidden -> 4*hidden -> hidden

``Bert.from_pretrained("course-bert")`` copies the weights of transformers'
``BertModel`` into this module through :func:`hf_key_map`, one readable line
per tensor, and ``Bert(...)(input_ids, attention_mask)`` then returns the same
``last_hidden_state`` as ``BertModel`` up to float32 round-off.
"""
from __future__ import annotations

from ftlib.errors import CourseError
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class BertConfig:
    """The sizes of a BERT encoder.  The defaults are bert-base-uncased's."""
    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    pad_token_id: int = 0

    @classmethod
    def from_hf(cls, hf) -> "BertConfig":
        """Read the fields we need from a ``transformers.BertConfig``."""
        if getattr(hf, "model_type", None) != "bert":
            raise CourseError(f"Expected a BERT config, got model_type={getattr(hf, 'model_type', None)!r}.")
        if hf.hidden_act != "gelu" or getattr(hf, "position_embedding_type", "absolute") != "absolute":
            raise CourseError("ftlib.bert supports BERT with exact GELU and absolute (learned) positions; "
                              f"this config has hidden_act={hf.hidden_act!r}.")
        return cls(vocab_size=hf.vocab_size, hidden_size=hf.hidden_size,
                   num_layers=hf.num_hidden_layers, num_heads=hf.num_attention_heads,
                   intermediate_size=hf.intermediate_size,
                   max_position_embeddings=hf.max_position_embeddings,
                   type_vocab_size=hf.type_vocab_size, layer_norm_eps=hf.layer_norm_eps,
                   dropout=hf.hidden_dropout_prob, pad_token_id=hf.pad_token_id or 0)


class SelfAttention(nn.Module):
    """Multi-head attention where every token may look at every (non-padding) token."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.hidden_size // cfg.num_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = cfg.dropout

    def forward(self, x, keep):                # x: (B, T, C); keep: (B, 1, 1, T) bool, True = real token
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)              # (B, H, T, T)
        scores = scores.masked_fill(~keep, float("-inf"))                       # never attend to padding
        weights = F.dropout(scores.softmax(dim=-1), self.dropout, self.training)
        y = (weights @ v).transpose(1, 2).reshape(B, T, C)                       # heads side by side
        return self.out(y)


class Block(nn.Module):
    """One encoder layer: attention and feed-forward, each followed by add-and-LayerNorm."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ln_attn = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.ln_ffn = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, keep):
        x = self.ln_attn(x + self.drop(self.attn(x, keep)))
        x = self.ln_ffn(x + self.drop(self.ffn_out(F.gelu(self.ffn_in(x)))))
        return x


class Bert(nn.Module):
    """BERT encoder: ``forward`` gives the last hidden state, ``pool`` the [CLS] pooler output."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.word_emb = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.pos_emb = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.type_emb = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.ln_emb = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)   # used by classification heads

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        """``input_ids`` (B, T) -> hidden states (B, T, hidden_size)."""
        B, T = input_ids.shape
        if T > self.cfg.max_position_embeddings:
            raise CourseError(f"{T} tokens, but BERT has only {self.cfg.max_position_embeddings} learned "
                              "positions: truncate (tokenizer(..., truncation=True)).")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.drop(self.embed(input_ids, token_type_ids))
        keep = attention_mask.bool()[:, None, None, :]          # broadcast over heads and queries
        for layer in self.layers:
            x = layer(x, keep)
        return x

    def embed(self, input_ids, token_type_ids=None):
        """The input of the first block, before dropout: LayerNorm(word + position + token type)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.ln_emb(self.word_emb(input_ids) + self.pos_emb(positions) + self.type_emb(token_type_ids))

    def pool(self, hidden):
        """BERT's pooler: tanh(W h_[CLS] + b), the input of BertForSequenceClassification's head."""
        return torch.tanh(self.pooler(hidden[:, 0]))

    @classmethod
    def from_pretrained(cls, name: str = "course-bert") -> "Bert":
        """Load a transformers BERT checkpoint (``ftlib.load_model``) and copy its weights in."""
        import ftlib

        return cls.from_hf(ftlib.load_model(name, task="base"))

    @classmethod
    def from_hf(cls, hf_model) -> "Bert":
        """A copy of a loaded transformers ``BertModel`` (or ``BertFor...``) as our module."""
        model = cls(BertConfig.from_hf(hf_model.config))
        load_hf_state_dict(model, hf_model.state_dict())
        return model.eval()


def hf_key_map(num_layers: int) -> dict[str, str]:
    """Our parameter name -> transformers ``BertModel`` parameter name."""
    m = {"word_emb.weight": "embeddings.word_embeddings.weight",
         "pos_emb.weight": "embeddings.position_embeddings.weight",
         "type_emb.weight": "embeddings.token_type_embeddings.weight",
         "ln_emb.weight": "embeddings.LayerNorm.weight", "ln_emb.bias": "embeddings.LayerNorm.bias",
         "pooler.weight": "pooler.dense.weight", "pooler.bias": "pooler.dense.bias"}
    per_layer = {"attn.query": "attention.self.query", "attn.key": "attention.self.key",
                 "attn.value": "attention.self.value", "attn.out": "attention.output.dense",
                 "ln_attn": "attention.output.LayerNorm", "ffn_in": "intermediate.dense",
                 "ffn_out": "output.dense", "ln_ffn": "output.LayerNorm"}
    for i in range(num_layers):
        for ours, theirs in per_layer.items():
            for p in ("weight", "bias"):
                m[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    return m


def load_hf_state_dict(model: Bert, hf_state: dict) -> None:
    """Copy a ``BertModel`` state dict into ``model``; every one of our tensors must be found."""
    hf_state = {k.removeprefix("bert."): v for k, v in hf_state.items()}   # BertFor... models
    mapping = hf_key_map(model.cfg.num_layers)
    missing = [theirs for theirs in mapping.values() if theirs not in hf_state]
    if missing:
        raise CourseError(f"The checkpoint lacks {len(missing)} BERT tensors, e.g. {missing[:3]}: "
                          "is it a BERT model?")
    model.load_state_dict({ours: hf_state[theirs] for ours, theirs in mapping.items()})
