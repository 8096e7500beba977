"""ftlib.losses against torch.nn.functional: same values, same gradients, clear errors."""
import math

import pytest
import torch
import torch.nn.functional as F

import ftlib
from ftlib import losses


def close(a, b, **kw):
    torch.testing.assert_close(a, b, **{"rtol": 1e-5, "atol": 1e-6, **kw})


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def rand_logits(gen, *shape, scale=3.0, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype) * scale


# --- softmax / log_softmax ---------------------------------------------------------------

@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_log_softmax_and_softmax_match_torch(gen, scale):
    z = rand_logits(gen, 5, 7, scale=scale, dtype=torch.float32)
    close(losses.log_softmax(z), F.log_softmax(z, dim=-1))
    close(losses.softmax(z), F.softmax(z, dim=-1))
    close(losses.log_softmax(z, dim=0), F.log_softmax(z, dim=0))
    assert torch.isfinite(losses.log_softmax(z)).all()


def test_log_softmax_is_finite_where_the_naive_formula_is_not():
    z = torch.tensor([1e4, 0.0, -1e4])
    naive = torch.log(torch.exp(z) / torch.exp(z).sum())
    assert not torch.isfinite(naive).all()                  # exp(1e4) overflows
    close(losses.log_softmax(z), torch.tensor([0.0, -1e4, -2e4]))


def test_log_softmax_keeps_minus_inf_logits_masked():
    z = torch.tensor([[0.0, -math.inf, 1.0], [-math.inf, -math.inf, -math.inf]])
    out = losses.log_softmax(z)
    close(out[0], F.log_softmax(z[0], dim=-1))
    assert torch.isneginf(out[0, 1])


# --- cross_entropy with class indices -----------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch_on_random_inputs(gen, reduction):
    z = rand_logits(gen, 16, 5)
    y = torch.randint(0, 5, (16,), generator=gen)
    close(losses.cross_entropy(z, y, reduction=reduction), F.cross_entropy(z, y, reduction=reduction))


def test_cross_entropy_seed_example_value():
    # seed 000 section 4.3: y = [0.9, 0.1], prediction [0.8, 0.2]; the seed says 0.350
    q = torch.tensor([0.8, 0.2], dtype=torch.float64)
    y = torch.tensor([0.9, 0.1], dtype=torch.float64)
    ce = losses.cross_entropy(q.log(), y)                   # log-probabilities are valid logits
    assert abs(ce.item() - (-(0.9 * math.log(0.8) + 0.1 * math.log(0.2)))) < 1e-12
    assert round(ce.item(), 4) == 0.3618 and round(ce.item() / math.log(2), 4) == 0.5219
    close(ce, losses.entropy(y) + losses.kl_divergence(y, q))


@pytest.mark.parametrize("scale", [1e2, 1e4])
def test_cross_entropy_extreme_logits_are_finite_and_match(gen, scale):
    z = rand_logits(gen, 8, 4, scale=scale, dtype=torch.float32)
    y = torch.randint(0, 4, (8,), generator=gen)
    ours = losses.cross_entropy(z, y, reduction="none")
    assert torch.isfinite(ours).all()
    close(ours, F.cross_entropy(z, y, reduction="none"), rtol=1e-5, atol=1e-2)
    # a confidently right prediction costs ~0, a confidently wrong one costs the margin
    z2 = torch.tensor([[1e4, -1e4], [1e4, -1e4]])
    close(losses.cross_entropy(z2, torch.tensor([0, 1]), reduction="none"), torch.tensor([0.0, 2e4]))


def test_cross_entropy_with_one_class_is_zero():
    z = torch.randn(6, 1)
    y = torch.zeros(6, dtype=torch.long)
    close(losses.cross_entropy(z, y), F.cross_entropy(z, y))
    assert losses.cross_entropy(z, y).item() == 0.0


def test_cross_entropy_unbatched(gen):
    z = rand_logits(gen, 5)
    close(losses.cross_entropy(z, torch.tensor(3)), F.cross_entropy(z, torch.tensor(3)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_weights_ignore_index_and_smoothing_match_torch(gen, reduction, smoothing):
    z = rand_logits(gen, 20, 6)
    y = torch.randint(0, 6, (20,), generator=gen)
    y[::4] = -100
    w = torch.rand(6, generator=gen, dtype=torch.float64) + 0.1
    for weight in (None, w):
        ours = losses.cross_entropy(z, y, weight=weight, reduction=reduction, label_smoothing=smoothing)
        ref = F.cross_entropy(z, y, weight=weight, reduction=reduction, label_smoothing=smoothing)
        close(ours, ref)


def test_weighted_mean_divides_by_the_weights_of_the_kept_targets():
    z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, -100])
    w = torch.tensor([1.0, 3.0], dtype=torch.float64)
    per = losses.cross_entropy(z, y, weight=w, reduction="none")
    assert per[2].item() == 0.0
    expected = per.sum() / (1.0 + 3.0)                      # not / 3 positions, not / 2 kept targets
    close(losses.cross_entropy(z, y, weight=w), expected)
    close(losses.cross_entropy(z, y, weight=w), F.cross_entropy(z, y, weight=w))


def test_custom_ignore_index(gen):
    z = rand_logits(gen, 10, 3)
    y = torch.randint(0, 3, (10,), generator=gen)
    y[3] = 7
    close(losses.cross_entropy(z, y, ignore_index=7), F.cross_entropy(z, y, ignore_index=7))


def test_sequence_logits_n_c_t_and_flattened_agree_with_torch(gen):
    n, t, c = 3, 5, 11
    z_ntc = rand_logits(gen, n, t, c)                       # what a language model returns
    y = torch.randint(0, c, (n, t), generator=gen)
    y[0, 3:] = -100                                         # padding
    ref = F.cross_entropy(z_ntc.transpose(1, 2), y)
    close(losses.cross_entropy(z_ntc.transpose(1, 2), y), ref)
    close(losses.cross_entropy(z_ntc.reshape(-1, c), y.reshape(-1)), ref)
    close(losses.cross_entropy(z_ntc.transpose(1, 2), y, reduction="none"),
          F.cross_entropy(z_ntc.transpose(1, 2), y, reduction="none"))
    w = torch.rand(c, generator=gen, dtype=torch.float64)
    close(losses.cross_entropy(z_ntc.transpose(1, 2), y, weight=w, label_smoothing=0.2),
          F.cross_entropy(z_ntc.transpose(1, 2), y, weight=w, label_smoothing=0.2))


# --- cross_entropy with probability targets -------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_probability_targets_match_torch(gen, reduction):
    z = rand_logits(gen, 9, 4)
    q = torch.softmax(rand_logits(gen, 9, 4), dim=-1)
    w = torch.rand(4, generator=gen, dtype=torch.float64)
    for kw in ({}, {"weight": w}, {"label_smoothing": 0.3}, {"weight": w, "label_smoothing": 0.3}):
        close(losses.cross_entropy(z, q, reduction=reduction, **kw),
              F.cross_entropy(z, q, reduction=reduction, **kw))


def test_one_hot_probabilities_equal_class_indices(gen):
    z = rand_logits(gen, 7, 5)
    y = torch.randint(0, 5, (7,), generator=gen)
    close(losses.cross_entropy(z, F.one_hot(y, 5).double()), losses.cross_entropy(z, y))
    close(losses.cross_entropy(z, F.one_hot(y, 5).double(), label_smoothing=0.1),
          losses.cross_entropy(z, y, label_smoothing=0.1))


# --- gradients ------------------------------------------------------------------------------

def test_gradient_is_softmax_minus_one_hot_over_n(gen):
    z = rand_logits(gen, 6, 4).requires_grad_()
    y = torch.randint(0, 4, (6,), generator=gen)
    losses.cross_entropy(z, y).backward()
    by_hand = (torch.softmax(z.detach(), -1) - F.one_hot(y, 4)) / 6
    close(z.grad, by_hand)


@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.1}, {"reduction": "sum"}])
def test_gradient_matches_torch_autograd_with_weights_and_ignore(gen, kw):
    z = rand_logits(gen, 12, 5)
    y = torch.randint(0, 5, (12,), generator=gen)
    y[1] = y[7] = -100
    w = torch.rand(5, generator=gen, dtype=torch.float64) + 0.5
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    losses.cross_entropy(a, y, weight=w, **kw).backward()
    F.cross_entropy(b, y, weight=w, **kw).backward()
    close(a.grad, b.grad)
    assert (a.grad[1] == 0).all() and (a.grad[7] == 0).all()


def test_gradient_stays_finite_for_huge_logits():
    z = torch.tensor([[1e4, -1e4, 0.0]], requires_grad=True)
    losses.cross_entropy(z, torch.tensor([1])).backward()
    close(z.grad, torch.tensor([[1.0, -1.0, 0.0]]))


# --- binary cross-entropy ---------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_torch(gen, reduction):
    z = rand_logits(gen, 8, 3, scale=10)
    y = torch.rand(8, 3, generator=gen, dtype=torch.float64).round()
    w = torch.rand(8, 3, generator=gen, dtype=torch.float64)
    pw = torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64)
    for kw in ({}, {"weight": w}, {"pos_weight": pw}, {"weight": w, "pos_weight": pw}):
        close(losses.binary_cross_entropy_with_logits(z, y, reduction=reduction, **kw),
              F.binary_cross_entropy_with_logits(z, y, reduction=reduction, **kw))


def test_bce_with_logits_extreme_and_gradient():
    z = torch.tensor([1e4, -1e4, 30.0, -30.0, 0.0], requires_grad=True)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    ours = losses.binary_cross_entropy_with_logits(z, y, reduction="none")
    close(ours, F.binary_cross_entropy_with_logits(z.detach(), y, reduction="none"))
    assert torch.isfinite(ours).all()
    ours.sum().backward()
    close(z.grad, torch.sigmoid(z.detach()) - y)


def test_bce_accepts_integer_targets():
    z = torch.tensor([0.5, -1.0])
    close(losses.binary_cross_entropy_with_logits(z, torch.tensor([1, 0])),
          F.binary_cross_entropy_with_logits(z, torch.tensor([1.0, 0.0])))


def test_binary_ce_is_two_class_ce_with_logit_zero_for_class_zero(gen):
    z = rand_logits(gen, 10)
    y = torch.randint(0, 2, (10,), generator=gen)
    two_class = torch.stack([torch.zeros_like(z), z], dim=1)
    close(losses.binary_cross_entropy_with_logits(z, y), losses.cross_entropy(two_class, y))


# --- entropy / KL -------------------------------------------------------------------------------

def test_entropy_and_kl_match_torch(gen):
    p = torch.softmax(rand_logits(gen, 4, 6), -1)
    q = torch.softmax(rand_logits(gen, 4, 6), -1)
    close(losses.entropy(p), torch.distributions.Categorical(probs=p).entropy())
    close(losses.kl_divergence(p, q), F.kl_div(q.log(), p, reduction="none").sum(-1))
    close(losses.kl_divergence(p, q),
          torch.distributions.kl_divergence(torch.distributions.Categorical(probs=p),
                                            torch.distributions.Categorical(probs=q)))
    # cross-entropy = entropy + KL, and KL(p||p) = 0
    close(-(p * q.log()).sum(-1), losses.entropy(p) + losses.kl_divergence(p, q))
    close(losses.kl_divergence(p, p), torch.zeros(4, dtype=torch.float64))


def test_entropy_edge_cases():
    assert losses.entropy(torch.tensor([1.0, 0.0])).item() == 0.0          # 0 log 0 = 0, no nan
    close(losses.entropy(torch.tensor([0.5, 0.5]), base=2), torch.tensor(1.0))
    close(losses.entropy(torch.full((8,), 1 / 8)), torch.tensor(math.log(8)))
    assert losses.kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])).item() == math.inf
    assert losses.kl_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])).item() == pytest.approx(
        math.log(2))


# --- errors ---------------------------------------------------------------------------------

def test_target_out_of_range_raises_course_error():
    z = torch.randn(3, 4)
    for bad in (torch.tensor([0, 4, 1]), torch.tensor([0, -1, 1])):
        with pytest.raises(ftlib.CourseError, match="only 4 classes"):
            losses.cross_entropy(z, bad)
    losses.cross_entropy(z, torch.tensor([0, -100, 3]))       # -100 is ignored, not out of range


def test_mismatched_batch_raises_course_error():
    with pytest.raises(ftlib.CourseError, match="Batch sizes must match"):
        losses.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ftlib.CourseError, match="reshape"):
        losses.cross_entropy(torch.randn(2, 3, 5), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ftlib.CourseError, match="probability targets"):
        losses.cross_entropy(torch.randn(4, 3), torch.rand(4, 2))
    with pytest.raises(ftlib.CourseError, match="same shape"):
        losses.binary_cross_entropy_with_logits(torch.randn(4, 1), torch.ones(4))


def test_nan_logits_raise_course_error():
    z = torch.tensor([[0.0, float("nan")]])
    with pytest.raises(ftlib.CourseError, match="NaN"):
        losses.cross_entropy(z, torch.tensor([0]))
    with pytest.raises(ftlib.CourseError, match="NaN"):
        losses.binary_cross_entropy_with_logits(z, torch.ones(1, 2))


def test_all_ignored_with_mean_raises_but_sum_is_zero():
    z = torch.randn(3, 2)
    y = torch.full((3,), -100)
    assert torch.isnan(F.cross_entropy(z, y))                 # what torch does: 0/0
    with pytest.raises(ftlib.CourseError, match="ignore_index"):
        losses.cross_entropy(z, y)
    assert losses.cross_entropy(z, y, reduction="sum").item() == 0.0
    assert (losses.cross_entropy(z, y, reduction="none") == 0).all()


def test_other_bad_arguments_raise_course_error():
    z = torch.randn(3, 4)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ftlib.CourseError):
        losses.cross_entropy(z, y, reduction="average")
    with pytest.raises(ftlib.CourseError):
        losses.cross_entropy(z, y, label_smoothing=1.5)
    with pytest.raises(ftlib.CourseError, match="one weight per class"):
        losses.cross_entropy(z, y, weight=torch.ones(3))
    with pytest.raises(ftlib.CourseError, match="float"):
        losses.cross_entropy(torch.ones(3, 4, dtype=torch.long), y)
    with pytest.raises(ftlib.CourseError, match=r"\[0, 1\]"):
        losses.binary_cross_entropy_with_logits(torch.zeros(2), torch.tensor([0.0, 2.0]))
    with pytest.raises(ftlib.CourseError, match="probabilities"):
        losses.entropy(torch.tensor([2.0, -1.0]))
    with pytest.raises(ftlib.CourseError, match="probabilities"):
        losses.kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([3.0, 1.0]))
