"""FLOPs, peaks and MFU (derived in lessons 11 and 12).

* :func:`matmul_parameters` -- the weights that *multiply* each token: every ``nn.Linear`` (and
  transformers' ``Conv1D``). Embedding tables are looked up, not multiplied, so they do no matmul
  work; norms and biases are elementwise. A tied output head (``lm_head`` sharing the embedding
  matrix) is a matmul, so it counts, once.
* :func:`forward_flops_per_token`, :func:`training_flops_per_token` -- ``2 N + 4 L d T`` forward,
  three times that for training (forward + backward), with ``N`` the matmul parameters;
* ``PEAK_BF16_TFLOPS``, :func:`peak_flops` -- dense bf16 tensor-core peaks, looked up by the exact
  name ``torch.cuda.get_device_name()`` returns, or stated with ``FTLIB_PEAK_TFLOPS``;
* :func:`mfu` -- model FLOPs utilisation: achieved FLOP/s over the peak.

``tests/test_flops.py`` checks the formulas against ``torch.utils.flop_counter.FlopCounterMode``
on real (tiny) BERT, Llama and GPT-2 models.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ftlib.errors import CourseError

__all__ = ["matmul_parameters", "forward_flops_per_token", "training_flops_per_token", "PEAK_BF16_TFLOPS",
           "PEAK_ENV", "peak_flops", "mfu"]


def _matmul_weight_size(module) -> int:
    """Multiply-adds per token of a module that is one matmul (in x out), else 0."""
    if isinstance(module, nn.Linear):                 # in x out, not weight.numel(): 4-bit weights are packed
        return module.in_features * module.out_features
    if type(module).__name__ == "Conv1D" and type(module).__module__.startswith("transformers"):
        return module.weight.numel()                  # GPT-2's linear layer, weight stored (in, out)
    return 0


def matmul_parameters(model) -> int:
    """Parameters that do matmul work for every token: the weights of the linear layers.

    Excluded: embeddings (word, position, token type: a lookup copies a row, no arithmetic), norms
    and biases (elementwise, negligible). Each linear *module* counts once, so a tied ``lm_head``
    counts although its weight is the embedding's parameter (the output layer multiplies by it).
    A model that calls one module several times (ALBERT's shared layers) does more than this.
    """
    return sum(_matmul_weight_size(m) for m in model.modules())


def _attention_shape(model) -> tuple[int, int]:
    """(layers L, attention width d = heads x head_dim) from ``model.config``."""
    config = getattr(model, "config", None)
    try:
        layers, heads = config.num_hidden_layers, config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    except AttributeError:
        raise CourseError("Need a transformers model whose config has num_hidden_layers, num_attention_heads "
                          "and hidden_size (or head_dim).") from None
    return layers, heads * head_dim


def forward_flops_per_token(model, seq_len: int, *, causal: bool = False) -> float:
    """FLOPs of one forward pass per token, over sequences of ``seq_len`` tokens: ``2 N + 4 L d T``.

    ``2 N``: each matmul weight does one multiply-add (2 FLOPs) per token. ``4 L d T``: per layer,
    the scores ``Q K^T`` and the weighted sum ``A V`` cost ``2 d T`` each per token; they own no
    parameters and grow with the length ``T`` (the padded length: padding is computed too).

    Convention: the whole ``T x T`` score matrix, as in the PaLM paper's ``12 L d T`` (appendix B),
    whatever the mask: that is what eager attention and SDPA's math backend compute and what
    ``FlopCounterMode`` counts. ``causal=True`` counts only the lower triangle (half), the useful
    work a causal flash kernel does (FlashAttention's convention); lower MFU, same run.
    Heads that read one token a sequence (BERT's pooler and classifier) are counted as if they
    read every token: an over-count of about 1/(12 L) of the ``N`` term (1.4 % for 6 layers).
    """
    if not isinstance(seq_len, int) or seq_len < 1:
        raise CourseError(f"seq_len must be a positive whole number of tokens, got {seq_len!r}.")
    layers, width = _attention_shape(model)
    attention = 4.0 * layers * width * seq_len
    return 2.0 * matmul_parameters(model) + (attention / 2 if causal else attention)


def training_flops_per_token(model, seq_len: int, *, causal: bool = False) -> float:
    """Training FLOPs per token: ``6 N + 12 L d T`` with ``N`` = :func:`matmul_parameters`.

    The backward pass does every matmul twice (the gradient for the input and the one for the
    weight), so training is 3 x :func:`forward_flops_per_token` (same conventions, see there).
    It assumes every weight trains; frozen weights (LoRA) skip their weight gradients.
    """
    return 3.0 * forward_flops_per_token(model, seq_len, causal=causal)


# Dense (no sparsity) bf16 tensor-core peaks with fp32 accumulation, TFLOP/s, from NVIDIA's data
# sheets and architecture white papers (where a data sheet gives the sparse figure, half of it).
# Keyed by the exact torch.cuda.get_device_name() string: a name fragment would give "H200 NVL"
# the SXM peak and "L40" the L4's. An unlisted name (MIG slices, new cards) has no peak: set
# FTLIB_PEAK_TFLOPS. Not listed: T4, V100 (no bf16 tensor cores).
PEAK_BF16_TFLOPS = {
    "NVIDIA H100 80GB HBM3": 989.4,      # H100 SXM5
    "NVIDIA H100 PCIe": 756.5,
    "NVIDIA H100 NVL": 835.5,            # 1,671 sparse
    "NVIDIA H200": 989.4,                # H200 SXM: the H100 SXM's compute
    "NVIDIA H200 NVL": 835.5,            # 1,671 sparse
    "NVIDIA GH200 480GB": 989.4,         # the 96 GB HBM3 Grace Hopper; its name string is from user reports
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA L40S": 362.05,
    "NVIDIA L40": 181.05,
    "NVIDIA L4": 121.0,
    "NVIDIA A10": 125.0,
    "NVIDIA A10G": 70.0,                 # AWS-only part, no NVIDIA data sheet: unsure (AWS/third-party figure)
    "NVIDIA GeForce RTX 4090": 165.2,    # Ada white paper, fp32 accumulate (330.3 with fp16 accumulate)
}

PEAK_ENV = "FTLIB_PEAK_TFLOPS"


def peak_flops(device=None, name: str | None = None) -> float | None:
    """Dense bf16 peak in FLOP/s of ``device`` (or of the GPU called ``name``); None when unknown.

    ``FTLIB_PEAK_TFLOPS`` (in TFLOP/s), when set, wins: the way to state a peak for an unlisted or
    power-capped GPU. Otherwise the exact name is looked up in ``PEAK_BF16_TFLOPS``; a CPU, no
    device, or an unlisted name gives None, and MFU is then reported as not available.
    """
    stated = os.environ.get(PEAK_ENV, "").strip()
    if stated:
        try:
            tflops = float(stated)
        except ValueError:
            tflops = float("nan")
        if not tflops > 0:
            raise CourseError(f"{PEAK_ENV}={stated!r}: give the peak as a positive number of TFLOP/s, e.g. 989.4.")
        return tflops * 1e12
    if name is None:
        if device is None or torch.device(device).type != "cuda":
            return None
        name = torch.cuda.get_device_name(torch.device(device))
    tflops = PEAK_BF16_TFLOPS.get(name.strip())
    return None if tflops is None else tflops * 1e12


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: tokens/s x FLOPs per token over the peak FLOP/s; None without a peak."""
    if peak is None:
        return None
    if peak <= 0 or tokens_per_s < 0 or flops_per_token <= 0:
        raise CourseError(f"Need peak > 0, tokens_per_s >= 0 and flops_per_token > 0, "
                          f"got {peak}, {tokens_per_s}, {flops_per_token}.")
    return tokens_per_s * flops_per_token / peak
