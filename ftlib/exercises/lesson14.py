"""Checks for the exercises of lesson 14 (deployment and compression)."""
from __future__ import annotations

import math

import torch

from ftlib.exercises import Wrong, close, exercise


def _int8_size_mb() -> tuple[float, float]:
    """(float32 MB, expected int8 MB) of course-bert with a 2-class head, counted from its parameters."""
    import ftlib

    model = ftlib.load_model("course-bert", task="classification", num_labels=2)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    total = sum(p.numel() for p in model.parameters())
    return total * 4 / 1e6, (linear * 1 + (total - linear) * 4) / 1e6


@exercise("14.1")
def int8_size(answer):
    """Expected megabytes of course-bert after dynamic int8 quantisation of every nn.Linear."""
    fp32, want = _int8_size_mb()
    try:
        got = float(answer)
    except (TypeError, ValueError):
        raise Wrong(f"Give a number of megabytes (10^6 bytes), got {type(answer).__name__}.") from None
    if math.isclose(got, fp32, rel_tol=0.02):
        raise Wrong("That is the float32 size: only the Linear *weights* become 1 byte each.")
    if math.isclose(got, fp32 / 4, rel_tol=0.02):
        raise Wrong("Not every parameter is quantised: embeddings, LayerNorm and biases stay 4 bytes each.")
    if not math.isclose(got, want, rel_tol=0.02):
        raise Wrong("Count the weights of the nn.Linear modules (1 byte each) and every other parameter "
                    "(4 bytes each); divide by 1e6.")


def _psi_reference(p, q):
    p, q = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
    return float(((q - p) * (q / p).log()).sum())


@exercise("14.2")
def psi_from_shares(fn):
    """``fn(p, q)``: the population stability index of two lists of shares (each summing to 1)."""
    if not callable(fn):
        raise Wrong("Give a function psi(p, q) that takes two lists of shares.")
    gen = torch.Generator().manual_seed(12)
    cases = [([0.5, 0.5], [0.5, 0.5]), ([0.5, 0.5], [0.8, 0.2]), ([0.2, 0.3, 0.5], [0.5, 0.3, 0.2])]
    for _ in range(3):
        p, q = torch.rand(5, generator=gen) + 0.05, torch.rand(5, generator=gen) + 0.05
        cases.append(((p / p.sum()).tolist(), (q / q.sum()).tolist()))
    for p, q in cases:
        got = fn(p, q)
        want = _psi_reference(p, q)
        kl = float((torch.tensor(q) * (torch.tensor(q) / torch.tensor(p)).log()).sum())
        if want > 1e-6 and math.isclose(float(got), kl, rel_tol=1e-4):
            raise Wrong(f"psi({p}, {q}) gave KL(q || p) only: PSI is symmetric, sum of (q - p) * ln(q / p).")
        close(got, want, what=f"psi({[round(x, 3) for x in p]}, {[round(x, 3) for x in q]})", rtol=1e-4, atol=1e-8)


@exercise("14.3")
def distillation_kl(fn):
    """``fn(student_logits, teacher_logits, T)``: T^2 * KL(teacher_T || student_T), mean over the batch."""
    if not callable(fn):
        raise Wrong("Give a function kd(student_logits, teacher_logits, T).")
    gen = torch.Generator().manual_seed(3)
    for T in (1.0, 2.0, 4.0):
        s, t = torch.randn(6, 4, generator=gen) * 3, torch.randn(6, 4, generator=gen) * 3
        p_t = (t / T).softmax(-1)
        want = (p_t * (p_t.log() - (s / T).log_softmax(-1))).sum(-1).mean() * T * T
        got = fn(s.clone(), t.clone(), T)
        got = float(got)
        if T != 1.0 and math.isclose(got, float(want) / (T * T), rel_tol=1e-4):
            raise Wrong("Multiply by T**2: softening by T shrinks the gradients by 1/T**2.")
        reverse = ((s / T).softmax(-1) * ((s / T).log_softmax(-1) - p_t.log())).sum(-1).mean() * T * T
        if math.isclose(got, float(reverse), rel_tol=1e-4) and not math.isclose(got, float(want), rel_tol=1e-4):
            raise Wrong("That is KL(student || teacher): the teacher's distribution is the target, "
                        "KL(teacher || student) = sum p_teacher * (log p_teacher - log p_student).")
        close(got, want, what=f"the loss at T={T}", rtol=1e-4, atol=1e-6)
