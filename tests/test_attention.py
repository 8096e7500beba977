"""ftlib.attention against torch.nn.functional.scaled_dot_product_attention and nn.MultiheadAttention."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ftlib
from ftlib.attention import (MultiHeadAttention, additive_mask, causal_mask, padding_mask,
                             scaled_dot_product_attention)


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("batch", [(), (3,), (2, 4)], ids=["no batch", "batch", "batch+heads"])
@pytest.mark.parametrize("L,S", [(5, 5), (3, 7)])
def test_sdpa_matches_torch_without_mask(batch, L, S):
    q, k, v = rand(*batch, L, 8, seed=1), rand(*batch, S, 8, seed=2), rand(*batch, S, 6, seed=3)
    out, w = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    assert w.shape == (*batch, L, S)
    torch.testing.assert_close(w.sum(-1), torch.ones(*batch, L, dtype=w.dtype))
    assert (w >= 0).all()


def test_sdpa_is_softmax_of_scaled_scores():
    q, k, v = rand(2, 4, 16, seed=4), rand(2, 6, 16, seed=5), rand(2, 6, 3, seed=6)
    _, w = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(w, torch.softmax(q @ k.transpose(-1, -2) / 4.0, -1))
    out, _ = scaled_dot_product_attention(q, k, v, scale=1.0)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=1.0))


@pytest.mark.parametrize("L,S", [(6, 6), (4, 6), (6, 4)])
def test_causal_matches_torch_and_blocks_the_future(L, S):
    q, k, v = rand(2, 3, L, 8, seed=7), rand(2, 3, S, 8, seed=8), rand(2, 3, S, 8, seed=9)
    out, w = scaled_dot_product_attention(q, k, v, causal=True)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    future = ~torch.ones(L, S, dtype=torch.bool).tril()
    assert (w[..., future] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, L, dtype=w.dtype))


def test_causal_mask_shape_and_values():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert m.tolist() == [[True, False, False, False], [True, True, False, False],
                          [True, True, True, False], [True, True, True, True]]
    assert causal_mask(2, 3).tolist() == [[True, False, False], [True, True, False]]


def test_boolean_and_additive_masks_agree_with_torch():
    q, k, v = rand(2, 3, 5, 8, seed=10), rand(2, 3, 7, 8, seed=11), rand(2, 3, 7, 4, seed=12)
    keep = torch.rand(5, 7, generator=torch.Generator().manual_seed(13)) > 0.4
    keep[:, 0] = True                                    # every query keeps at least one key
    out_b, w_b = scaled_dot_product_attention(q, k, v, mask=keep)
    out_f, w_f = scaled_dot_product_attention(q, k, v, mask=additive_mask(keep, torch.float64))
    torch.testing.assert_close(out_b, F.scaled_dot_product_attention(q, k, v, attn_mask=keep))
    torch.testing.assert_close(out_f, out_b)
    torch.testing.assert_close(w_f, w_b)
    assert (w_b[..., ~keep] == 0).all()
    torch.testing.assert_close(w_b.sum(-1), torch.ones(2, 3, 5, dtype=w_b.dtype))


def test_padding_mask_gives_padding_zero_weight():
    am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    pm = padding_mask(am)
    assert pm.shape == (2, 1, 1, 5) and pm.dtype == torch.bool
    q, k, v = rand(2, 4, 5, 8, seed=14), rand(2, 4, 5, 8, seed=15), rand(2, 4, 5, 8, seed=16)
    out, w = scaled_dot_product_attention(q, k, v, mask=pm)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=pm))
    assert (w[1, :, :, 3:] == 0).all() and (w[1, :, :, :3] > 0).all()
    # the padded keys' values do not matter at all
    v2 = v.clone()
    v2[1, :, 3:] = 1e6
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v2, mask=pm)[0], out)


def test_mask_and_causal_combine():
    q = k = v = rand(1, 2, 5, 4, seed=17)
    pm = padding_mask(torch.tensor([[1, 1, 1, 1, 0]]))
    _, w = scaled_dot_product_attention(q, k, v, mask=pm, causal=True)
    both = causal_mask(5) & pm
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=both)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask=pm, causal=True)[0], ref)
    assert (w[..., ~both[0, 0]] == 0).all()


def test_fully_blocked_row_gives_zeros_not_nan():
    q, k, v = rand(3, 4, seed=18), rand(5, 4, seed=19), rand(5, 2, seed=20)
    keep = torch.ones(3, 5, dtype=torch.bool)
    keep[1] = False
    out, w = scaled_dot_product_attention(q, k, v, mask=keep)
    assert not torch.isnan(out).any()
    assert (w[1] == 0).all() and (out[1] == 0).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=keep))


def test_dropout_only_when_asked():
    q = k = v = rand(2, 6, 8, seed=21)
    torch.manual_seed(0)
    _, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert (w == 0).any()                                 # some weights dropped
    _, w0 = scaled_dot_product_attention(q, k, v)
    kept = w != 0
    torch.testing.assert_close(w[kept], (w0 * 2)[kept])  # survivors scaled by 1 / (1 - p)


def test_gradients_match_torch():
    q, k, v = (rand(2, 5, 8, seed=s).requires_grad_() for s in (22, 23, 24))
    g = rand(2, 5, 8, seed=25)
    (scaled_dot_product_attention(q, k, v, causal=True)[0] * g).sum().backward()
    ours = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    (F.scaled_dot_product_attention(q, k, v, is_causal=True) * g).sum().backward()
    for a, t in zip(ours, (q, k, v)):
        torch.testing.assert_close(a, t.grad)


@pytest.mark.parametrize("bias", [True, False])
def test_mha_matches_torch_self_attention(bias):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, bias=bias, batch_first=True).double().eval()
    ours = MultiHeadAttention.from_torch(mha).eval()
    x = rand(3, 7, 32, seed=26)
    ref_out, ref_w = mha(x, x, x, average_attn_weights=False)
    out, w = ours(x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)
    assert w.shape == (3, 4, 7, 7)


def test_mha_matches_torch_with_padding_and_causal_masks():
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(24, 3, batch_first=True).double().eval()
    ours = MultiHeadAttention.from_torch(mha).eval()
    x = rand(2, 6, 24, seed=27)
    am = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    # torch's boolean masks mean the opposite: True = blocked
    ref_out, ref_w = mha(x, x, x, key_padding_mask=am == 0, attn_mask=~causal_mask(6),
                         average_attn_weights=False)
    out, w = ours(x, attention_mask=am, causal=True)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)
    assert (w[1, :, :, 4:] == 0).all()
    out2, _ = ours(x, attention_mask=am, mask=causal_mask(6))
    torch.testing.assert_close(out2, ref_out)


def test_mha_cross_attention_and_unbatched():
    torch.manual_seed(2)
    mha = nn.MultiheadAttention(16, 2, batch_first=True).double().eval()
    ours = MultiHeadAttention.from_torch(mha)
    x, memory = rand(2, 3, 16, seed=28), rand(2, 9, 16, seed=29)
    ref_out, ref_w = mha(x, memory, memory, average_attn_weights=False)
    out, w = ours(x, memory)
    torch.testing.assert_close(out, ref_out)
    assert w.shape == (2, 2, 3, 9)
    ref1, _ = mha(x[0], memory[0], memory[0])
    out1, w1 = ours(x[0], memory[0])
    torch.testing.assert_close(out1, ref1)
    assert out1.shape == (3, 16) and w1.shape == (2, 3, 9)


def test_mha_shapes_and_layout():
    m = MultiHeadAttention(12, 3)
    assert m.head_dim == 4
    assert [n for n, _ in m.named_children()] == ["q_proj", "k_proj", "v_proj", "out_proj"]
    assert m.q_proj.weight.shape == (12, 12)
    assert MultiHeadAttention(12, 3, bias=False).q_proj.bias is None


def test_errors_raise_course_error():
    with pytest.raises(ftlib.CourseError, match="not divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ftlib.CourseError, match="same size"):
        scaled_dot_product_attention(rand(4, 8), rand(4, 6), rand(4, 6))
    with pytest.raises(ftlib.CourseError, match="one value"):
        scaled_dot_product_attention(rand(4, 8), rand(4, 8), rand(5, 8))
    with pytest.raises(ftlib.CourseError, match="broadcast"):
        scaled_dot_product_attention(rand(2, 4, 8), rand(2, 4, 8), rand(2, 4, 8),
                                     mask=torch.ones(2, 4, dtype=torch.bool)[:, None, :].expand(2, 3, 4))
    with pytest.raises(ftlib.CourseError):
        scaled_dot_product_attention(rand(8), rand(8), rand(8))
    with pytest.raises(ftlib.CourseError, match="dropout_p"):
        scaled_dot_product_attention(rand(4, 8), rand(4, 8), rand(4, 8), dropout_p=1.0)
    with pytest.raises(ftlib.CourseError, match=r"\(batch, seq, 12\)"):
        MultiHeadAttention(12, 3)(torch.randn(2, 5, 10))
    with pytest.raises(ftlib.CourseError, match="keys"):
        MultiHeadAttention(12, 3)(torch.randn(2, 5, 12), attention_mask=torch.ones(2, 4))
    with pytest.raises(ftlib.CourseError, match="0 \\(padding\\) and 1"):
        padding_mask(torch.tensor([[1, 2, 0]]))
    with pytest.raises(ftlib.CourseError, match="batch, seq"):
        padding_mask(torch.tensor([1, 1, 0]))
    with pytest.raises(ftlib.CourseError):
        causal_mask(0)
    with pytest.raises(ftlib.CourseError):
        MultiHeadAttention.from_torch(nn.Linear(4, 4))
    with pytest.raises(ftlib.CourseError):
        additive_mask(torch.ones(3, 3))


def test_scores_variance_grows_with_dk_and_scaling_fixes_it():
    g = torch.Generator().manual_seed(30)
    for d in (16, 256):
        q, k = torch.randn(20000, d, generator=g), torch.randn(20000, d, generator=g)
        dots = (q * k).sum(-1)
        assert abs(dots.var().item() / d - 1) < 0.05
        assert abs((dots / math.sqrt(d)).var().item() - 1) < 0.05
    # ftlib's attention scales by 1/sqrt(d_k) by default, so its weights do not saturate as d_k grows;
    # without the scaling (scale=1) softmax is nearly one-hot at d_k = 256
    q, k, v = (torch.randn(64, 16, 256, generator=g) for _ in range(3))
    _, w = scaled_dot_product_attention(q, k, v)
    _, w_explicit = scaled_dot_product_attention(q, k, v, scale=1 / 16)
    _, w_unscaled = scaled_dot_product_attention(q, k, v, scale=1.0)
    torch.testing.assert_close(w, w_explicit)
    assert w.max(-1).values.mean() < 0.5 < 0.9 < w_unscaled.max(-1).values.mean()
