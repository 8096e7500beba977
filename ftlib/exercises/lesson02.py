"""Checks for the exercises of notebook 02 (attention)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ftlib.exercises import Wrong, close, exercise


def _same(a, b, atol=1e-6) -> bool:
    try:
        a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=1e-5, equal_nan=True))


# ---- 02.1: blocking keys so that they get exactly zero weight ---------------------------------
def _mask_cases():
    gen = torch.Generator().manual_seed(21)
    keep = torch.rand(4, 9, generator=gen) > 0.4
    keep[:, 0] = True                                   # every query may attend to something
    ordinary = torch.randn(4, 9, generator=gen)
    # Large scores: the real keys score around -20000 (a very dissimilar key), the padding 0.
    large = torch.where(keep, -20000.0 + torch.randn(4, 9, generator=gen), torch.zeros(4, 9))
    return [("ordinary scores", ordinary, keep), ("scores in the thousands", large, keep),
            ("float16 scores", ordinary.half(), keep)]


@exercise("02.1")
def check_mask_scores(mask_scores):
    if not callable(mask_scores):
        raise Wrong("Answer with your function: answer = mask_scores.")
    for what, scores, keep in _mask_cases():
        try:
            out = mask_scores(scores.clone(), keep.clone())
        except RuntimeError as err:
            if scores.dtype == torch.float16 and "overflow" in str(err):
                raise Wrong("With float16 scores your fill value does not fit into float16 (its largest "
                            "magnitude is 65504): use float('-inf') or torch.finfo(scores.dtype).min.") from None
            raise
        out = torch.as_tensor(out)
        if out.shape != scores.shape:
            raise Wrong(f"Return scores of the same shape {tuple(scores.shape)}, got {tuple(out.shape)}.")
        w = torch.softmax(out.float(), dim=-1)
        if _same(out.float(), (scores * keep).float()):
            raise Wrong("Setting blocked scores to 0 does not block them: 0 is an ordinary score, and e^0 = 1. "
                        "Blocked scores must become -infinity before the softmax.")
        inverted = torch.softmax(scores.float().masked_fill(keep, float("-inf")), dim=-1)
        if what == "ordinary scores" and _same(w, inverted, atol=1e-3):
            raise Wrong("keep=True means 'may attend'; you blocked the kept keys and let the others through.")
        if (w[~keep] > 0).any():
            leak = w.masked_fill(keep, 0).sum(-1).max().item()
            raise Wrong(f"With {what} up to {leak:.1%} of a row's weight still lands on blocked keys. Adding "
                        "-10000 (old BERT code) is only enough while real scores are much larger than "
                        "-10000: use float('-inf') or torch.finfo(scores.dtype).min.")
        want = torch.softmax(scores.float().masked_fill(~keep, float("-inf")), dim=-1)
        close(w, want, what=f"the softmax of your scores ({what})", atol=1e-3 if scores.dtype == torch.float16 else 1e-6)


# ---- 02.2: a sliding-window mask ---------------------------------------------------------------
def reference_window(n: int, w: int) -> torch.Tensor:
    i = torch.arange(n)
    return (i[:, None] - i[None, :]).abs() <= w


def window_pairs(n: int, w: int) -> int:
    """Query-key pairs with |i - j| <= w: n(2w + 1) minus the w(w + 1) missing at the two ends."""
    w = min(w, n - 1)
    return n * (2 * w + 1) - w * (w + 1)


_WINDOW_CASES = [(7, 2), (10, 3), (7, 0), (5, 10)]


@exercise("02.2")
def check_window(window_mask, pairs):
    if not callable(window_mask):
        raise Wrong("Answer with your function and the count: check('02.2', window_mask, pairs).")
    for n, w in _WINDOW_CASES:
        got, want = torch.as_tensor(window_mask(n, w)), reference_window(n, w)
        if got.shape != want.shape:
            raise Wrong(f"window_mask({n}, {w}) should be ({n}, {n}), got {tuple(got.shape)}.")
        if got.dtype != torch.bool:
            raise Wrong("Return booleans (True = may attend), like ftlib.attention.causal_mask.")
        if torch.equal(got, want):
            continue
        i = torch.arange(n)
        d = i[:, None] - i[None, :]
        if torch.equal(got, ~want):
            raise Wrong("Inverted: in ftlib's boolean masks True means 'may attend'.")
        if torch.equal(got, d.abs() < w):
            raise Wrong(f"Off by one: |i - j| <= w includes the ends, so a middle row has 2w + 1 = {2 * w + 1} "
                        "True entries.")
        if torch.equal(got, (d >= 0) & (d <= w)) or torch.equal(got, (d <= 0) & (d >= -w)):
            raise Wrong("That is a one-sided (causal) window; this exercise's window looks w tokens both ways.")
        raise Wrong(f"window_mask({n}, {w}) is not True exactly where |i - j| <= w.")
    n, w = 1024, 32
    want = window_pairs(n, w)
    if pairs == n * (2 * w + 1):
        raise Wrong("Not every row has 2w + 1 neighbours: the first and last w rows lose some at the edges.")
    if pairs == n * n:
        raise Wrong("That is every pair; count only the True entries of window_mask(1024, 32).")
    if pairs != want:
        raise Wrong(f"{pairs} is not the number of True entries of window_mask({n}, {w}).")


# ---- 02.3: online (blockwise) softmax attention ------------------------------------------------
def _attend(q, K, V, scale):
    return torch.softmax(K @ q * scale, dim=-1) @ V


def _no_rescale(q, K, V, block):
    m, l, acc = torch.tensor(float("-inf"), dtype=q.dtype), 0.0, torch.zeros(V.shape[-1], dtype=q.dtype)
    for s0 in range(0, K.shape[0], block):
        s = K[s0:s0 + block] @ q / math.sqrt(q.shape[-1])
        m = torch.maximum(m, s.max())
        p = torch.exp(s - m)
        l, acc = l + p.sum(), acc + p @ V[s0:s0 + block]
    return acc / l


class _BlockwiseOnly:
    """K or V as 02.3 hands them over: rows can be read ``block`` at a time (``K[s:s + block]``), and
    nothing else -- so an answer that attends over all keys at once cannot pass."""

    def __init__(self, t, block: int, name: str):
        self._t, self._block, self._name = t, block, name
        self.shape, self.dtype, self.device, self.ndim = t.shape, t.dtype, t.device, t.ndim

    def __len__(self):
        return len(self._t)

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def split(self, size, dim=0):
        """``K.split(block)``: the blocks themselves (fine); a bigger piece is not."""
        if dim in (0, -self.ndim) and size <= self._block:
            return self._t.split(size, dim)
        return self._whole()

    def __getitem__(self, key):
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(len(self._t))
            if stop - start <= self._block:
                return self._t[key]
            raise Wrong(f"{self._name}[{key.start}:{key.stop}] reads {stop - start} rows at once, but the point of "
                        f"online attention is to look at only block={self._block} keys at a time: loop over "
                        f"{self._name}[start:start + block].")
        raise Wrong(f"Read {self._name} in blocks of rows, {self._name}[start:start + block] (got index {key!r}).")

    def _whole(self, *args, **kwargs):
        raise Wrong(f"That uses all of {self._name} at once (the n x d matrix a fused kernel never holds): "
                    f"read it block by block, {self._name}[start:start + block], and combine the blocks with a "
                    "running maximum and running sums.")

    __matmul__ = __rmatmul__ = __array__ = __iter__ = _whole

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        for a in (*args, *(kwargs or {}).values()):
            if isinstance(a, cls):
                a._whole()
        return NotImplemented


@exercise("02.3")
def check_online(online_attention):
    if not callable(online_attention):
        raise Wrong("Answer with your function: answer = online_attention.")
    from ftlib.attention import scaled_dot_product_attention

    gen = torch.Generator().manual_seed(23)
    q = torch.randn(32, generator=gen, dtype=torch.float64)
    K = torch.randn(100, 32, generator=gen, dtype=torch.float64)
    V = torch.randn(100, 8, generator=gen, dtype=torch.float64)
    want = scaled_dot_product_attention(q[None], K, V)[0][0]
    for block in (16, 7, 1, 100, 128):
        got = torch.as_tensor(online_attention(q, _BlockwiseOnly(K, block, "K"), _BlockwiseOnly(V, block, "V"), block))
        if _same(got, want):
            continue
        if _same(got, _attend(q, K, V, 1 / math.sqrt(V.shape[-1]))):
            raise Wrong("Divide the scores by sqrt(d_k), the size of the queries and keys (q.shape[-1] = 32), "
                        "not by the size of the values (8).")
        if _same(got, _attend(q, K, V, 1.0)):
            raise Wrong("The scores are q . k / sqrt(d_k): you left out the 1/sqrt(d_k).")
        if _same(got, _no_rescale(q, K, V, block)):
            raise Wrong(f"With block={block}: when the running maximum grows, what was summed so far was "
                        "computed with the old maximum: multiply the running sum and the accumulator by "
                        "exp(m_old - m_new) before adding the new block.")
        close(got, want, what=f"online_attention(q, K, V, block={block})")
    # Scores in the thousands: exp() without the running maximum overflows.
    big = torch.as_tensor(online_attention(q * 1000, _BlockwiseOnly(K, 16, "K"), _BlockwiseOnly(V, 16, "V"), 16))
    if not torch.isfinite(big).all():
        raise Wrong("For large scores exp(s) overflows to inf: subtract the running maximum before exp.")
    close(big, scaled_dot_product_attention(q[None] * 1000, K, V)[0][0], what="the result for large scores")


# ---- 02.4: multi-head attention by hand --------------------------------------------------------
def _heads_by_hand(x, mha, scale, split=True, out=True):
    B, L, D = x.shape
    H = mha.n_heads if split else 1
    def heads(t):
        return t.view(B, L, H, D // H).transpose(1, 2)
    q, k, v = heads(mha.q_proj(x)), heads(mha.k_proj(x)), heads(mha.v_proj(x))
    y = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v
    y = y.transpose(1, 2).reshape(B, L, D)
    return mha.out_proj(y) if out else y


class _ProjectionsOnly:
    """What 02.4 hands over: the four projections and the sizes of a MultiHeadAttention, but not its forward."""

    def __init__(self, mha):
        for name in ("q_proj", "k_proj", "v_proj", "out_proj", "n_heads", "head_dim", "d_model"):
            setattr(self, name, getattr(mha, name))

    def __call__(self, *args, **kwargs):
        raise Wrong("mha(x) computes the answer for you: build it from mha.q_proj, k_proj, v_proj and out_proj "
                    "alone (split into heads, attend in each head, put the heads side by side, project).")

    def __getattr__(self, name):
        raise Wrong(f"mha.{name} is not part of this exercise: use only mha.q_proj, k_proj, v_proj, out_proj, "
                    "n_heads (and head_dim, d_model).")


@exercise("02.4")
def check_multi_head(multi_head):
    if not callable(multi_head):
        raise Wrong("Answer with your function: answer = multi_head.")
    from ftlib.attention import MultiHeadAttention

    torch.manual_seed(24)
    mha = MultiHeadAttention(d_model=24, n_heads=4).double().eval()
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    with torch.no_grad():
        want = mha(x)[0]
        got = torch.as_tensor(multi_head(x, _ProjectionsOnly(mha))).detach()
        if got.shape != want.shape:
            raise Wrong(f"The output should have shape {tuple(want.shape)} (batch, seq, d_model), got {tuple(got.shape)}.")
        if _same(got, want):
            return
        d_k = mha.head_dim
        if _same(got, _heads_by_hand(x, mha, 1 / math.sqrt(24))):
            raise Wrong(f"Each head's scores are divided by sqrt(d_k) with d_k = d_model / n_heads = {d_k}, the "
                        "size of one head, not by sqrt(d_model) = sqrt(24).")
        if _same(got, _heads_by_hand(x, mha, 1 / math.sqrt(d_k), out=False)):
            raise Wrong("After putting the heads side by side, apply mha.out_proj.")
        if _same(got, _heads_by_hand(x, mha, 1 / math.sqrt(24), split=False)) or \
           _same(got, _heads_by_hand(x, mha, 1 / math.sqrt(d_k), split=False)):
            raise Wrong("That is one big head: split q, k and v into n_heads heads of d_model / n_heads "
                        "features each and run attention in each head separately.")
        close(got, want, what="your multi-head attention output")
