"""Checks for the exercises of notebook 07 (fine-tuning strategies)."""
from __future__ import annotations

import torch

from ftlib.exercises import Wrong, close, exercise


def _course_bert_config():
    import transformers

    from ftlib.models import _local_source

    return transformers.AutoConfig.from_pretrained(_local_source("course-bert").source)


@exercise("07.1")
def lora_parameter_count(answer):
    """Trainable parameters of course-bert (2 labels) with LoRA r=4 on query, key and value."""
    cfg = _course_bert_config()
    h, n = cfg.hidden_size, cfg.num_hidden_layers
    lora = n * 3 * 4 * (h + h)          # per wrapped layer: A (r x in) + B (out x r)
    head = h * 2 + 2
    if not isinstance(answer, (int, float)) or isinstance(answer, bool):
        raise Wrong(f"Give one whole number, got {type(answer).__name__}.")
    if answer == lora:
        raise Wrong("That is the LoRA matrices only: the new classification head trains too.")
    if answer == n * 3 * 4 * h + head or answer == n * 3 * h * h + head:
        raise Wrong("Each wrapped layer has A (r x in) *and* B (out x r): r * (in + out) numbers.")
    if answer == 2 * 4 * (h + h) * n + head:
        raise Wrong("This time key is wrapped too: three layers per block, not two.")
    if answer != lora + head:
        raise Wrong(f"Count r * (in + out) for each wrapped layer ({n} blocks x 3), plus the head "
                    f"(a {h} -> 2 linear layer with bias). Or build it and use count_parameters.")


@exercise("07.2")
def layerwise_rates(answer):
    """Learning rates, embeddings first, head last, for lr=1e-4, decay=0.8, 6 blocks."""
    want = [1e-4 * 0.8 ** (7 - d) for d in range(8)]
    try:
        got = [float(x) for x in answer]
    except (TypeError, ValueError):
        raise Wrong("Give a list of 8 numbers: embeddings, block 0 ... block 5, head.") from None
    if len(got) != 8:
        raise Wrong(f"Give 8 numbers (embeddings, 6 blocks, the head), got {len(got)}.")
    if torch.allclose(torch.tensor(got[::-1], dtype=torch.float64), torch.tensor(want, dtype=torch.float64)):
        raise Wrong("Reversed: the *top* (the head) gets the full lr, lower layers get less.")
    if abs(got[-1] - 1e-4) > 1e-12:
        raise Wrong("The head (last number) gets lr itself, 1e-4.")
    close(got, want, what="the learning rates", rtol=1e-6, atol=0)


@exercise("07.3")
def merged_weight(fn):
    """A function merged_weight(layer) -> W + (alpha / r) B A for a LoRALinear."""
    from torch import nn

    from ftlib.lora import LoRALinear

    if not callable(fn):
        raise Wrong("Give a function: merged_weight(layer) -> a tensor of shape (out, in).")
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(5, 3), r=2, alpha=6)
    with torch.no_grad():
        layer.lora_B.normal_()
    w0 = layer.base.weight.detach().clone()
    want = w0 + 3.0 * layer.lora_B.detach() @ layer.lora_A.detach()
    got = fn(layer)
    if not isinstance(got, torch.Tensor):
        raise Wrong(f"Return a tensor, got {type(got).__name__}.")
    if not torch.equal(layer.base.weight, w0):
        raise Wrong("Your function changed layer.base.weight: compute a new tensor instead.")
    if tuple(got.shape) != (3, 5):
        raise Wrong(f"The merged weight has nn.Linear's shape (out, in) = (3, 5), got {tuple(got.shape)}.")
    got = got.detach()
    if torch.allclose(got, w0 + layer.lora_B.detach() @ layer.lora_A.detach(), atol=1e-5):
        raise Wrong("Forgot the scaling: the update is (alpha / r) * B @ A.")
    close(got, want, what="the merged weight", atol=1e-5)
