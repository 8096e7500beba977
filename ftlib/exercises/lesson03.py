"""Checks for the exercises of notebook 03 (tokenizers and the encoder)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ftlib.exercises import Wrong, close, exercise


def _same(a, b, atol=1e-6) -> bool:
    try:
        a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=1e-5))


# ---- 03.1: sentence embeddings -----------------------------------------------------------------
def _embedding_case():
    gen = torch.Generator().manual_seed(32)
    hidden = torch.randn(3, 6, 8, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0]])
    return hidden, mask


def sentence_embedding_reference(hidden, attention_mask):
    m = attention_mask[..., None].to(hidden.dtype)
    return F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)


@exercise("03.1")
def check_sentence_embedding(sentence_embedding):
    if not callable(sentence_embedding):
        raise Wrong("Answer with your function: answer = sentence_embedding.")
    hidden, mask = _embedding_case()
    got = torch.as_tensor(sentence_embedding(hidden.clone(), mask.clone())).detach()
    want = sentence_embedding_reference(hidden, mask)
    if got.shape != want.shape:
        raise Wrong(f"One vector per sentence: expected shape {tuple(want.shape)} (batch, hidden), got {tuple(got.shape)}.")
    if _same(got, want):
        return
    if _same(got, F.normalize(hidden.mean(1), dim=-1)):
        raise Wrong("You averaged over the padding too: weight each token by the attention mask and divide "
                    "by the number of real tokens.")
    if _same(got, F.normalize(hidden[:, 0], dim=-1)) or _same(got, hidden[:, 0]):
        raise Wrong("That is the [CLS] vector; all-MiniLM-L6-v2 was trained with the MEAN over the real tokens.")
    m = mask[..., None].float()
    if _same(got, (hidden * m).sum(1) / m.sum(1)):
        raise Wrong("Right mean; now normalise each vector to length 1 (F.normalize(..., dim=-1)).")
    if _same(got, F.normalize((hidden * m).sum(1) / hidden.shape[1], dim=-1)):
        raise Wrong("Divide by the number of real tokens (attention_mask.sum), not by the padded length.")
    if not torch.allclose(got.double().norm(dim=-1), torch.ones(len(got), dtype=torch.float64), atol=1e-4):
        raise Wrong("Normalise each sentence vector to length 1 (F.normalize(..., dim=-1)): then a dot product "
                    "is the cosine similarity.")
    close(got, want, what="your sentence embeddings")
