"""LoRA, low-rank adaptation, written out (derived in notebook 07).

A frozen linear layer ``y = x W^T + b`` (``W``: out x in) gets a trainable low-rank update:

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T,     A: r x in,  B: out x r

``B`` starts at zero, so at the start the model computes exactly what the pretrained one
did; only ``A`` and ``B`` (``r * (in + out)`` numbers per layer instead of ``in * out``)
are trained. After training the update can be *merged*: ``W <- W + (alpha / r) B A`` gives
a plain ``nn.Linear`` that is as fast as the original. ``A`` is initialised like
``nn.Linear``'s weight (Kaiming-uniform), as in Hu et al. (2021) and ``peft``.

* :class:`LoRALinear` -- wraps an ``nn.Linear``; ``merge()`` / ``unmerge()`` in place;
* :func:`add_lora` -- freeze a model and wrap the linear layers named in ``target_modules``;
* :func:`merge_lora` -- replace every ``LoRALinear`` by the merged plain ``nn.Linear``;
* :func:`lora_layers` -- the ``(name, LoRALinear)`` pairs of a model.
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from ftlib.errors import CourseError

_BLOCK = re.compile(r"\.(?:layers|layer|h|blocks)\.(\d+)\.")

__all__ = ["LoRALinear", "add_lora", "block_index", "merge_lora", "lora_layers"]


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * dropout(x) @ A.T @ B.T`` with ``base`` frozen."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise CourseError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}.")
        if r < 1 or r > min(base.in_features, base.out_features):
            raise CourseError(f"r={r}: the rank must be 1 .. {min(base.in_features, base.out_features)} "
                              f"for a {base.in_features} -> {base.out_features} layer (4-16 is usual).")
        self.base, self.r, self.alpha = base, r, alpha
        self.scaling = alpha / r
        for p in base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def in_features(self):
        return self.base.in_features

    @property
    def out_features(self):
        return self.base.out_features

    @property
    def weight(self):
        """The frozen base weight (some model code reads ``.weight`` of its linear layers)."""
        return self.base.weight

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) B A``, shape (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x):
        y = self.base(x)
        if self.merged:
            return y
        return y + (self.dropout(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scaling

    @torch.no_grad()
    def merge(self):
        """Add the update into the base weight (faster inference; training A/B then has no effect)."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True
        return self

    @torch.no_grad()
    def unmerge(self):
        """Take the update out of the base weight again."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False
        return self

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the merged layer (a copy; ``self`` is unchanged)."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.base.bias is not None,
                        device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            delta = 0 if self.merged else self.delta_weight()
            out.weight.copy_(self.base.weight + delta)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out

    def extra_repr(self):
        return f"r={self.r}, alpha={self.alpha}, merged={self.merged}"


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """``[(name, LoRALinear), ...]`` in the order of ``model.named_modules()``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def _set_module(model: nn.Module, name: str, new: nn.Module):
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def block_index(name: str) -> int | None:
    """The transformer block a module belongs to, from its name (``...layers.7.mlp`` -> 7; BERT's
    ``...layer.7...``, GPT-2's ``...h.7...``); ``None`` outside the blocks (embeddings, head)."""
    m = _BLOCK.search(name)
    return int(m.group(1)) if m else None


def add_lora(model: nn.Module, target_modules=("query", "value"), r: int = 8, alpha: float = 16,
             dropout: float = 0.0, trainable=("classifier",), layers=None) -> nn.Module:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose own name is in ``target_modules``.

    ``trainable``: parameters (by name substring) that stay trainable besides A and B -- the
    new classification head, as ``peft`` does for ``task_type="SEQ_CLS"``. ``layers``: wrap only
    the linears of these blocks (indices, e.g. ``range(20, 30)``; peft's ``layers_to_transform``).
    LoRA on the top blocks alone also makes a step cheaper: the backward pass stops at the lowest
    LoRA layer, since nothing below it needs a gradient. Returns ``model`` (changed in place).
    Raises :class:`ftlib.CourseError` if a target matches no linear layer.
    """
    target_modules = (target_modules,) if isinstance(target_modules, str) else tuple(target_modules)
    trainable = (trainable,) if isinstance(trainable, str) else tuple(trainable)
    if lora_layers(model):
        raise CourseError("This model already has LoRA layers: load a fresh model, or merge_lora() it first.")
    hits = [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and n.split(".")[-1] in target_modules]
    if layers is not None:
        layers = sorted({int(i) for i in layers})
        blocks = sorted({b for n, _ in hits if (b := block_index(n)) is not None})
        if not layers or not set(layers) <= set(blocks):
            raise CourseError(f"layers={layers}: this model's {target_modules} linears are in blocks "
                              f"{blocks[0] if blocks else '-'}..{blocks[-1] if blocks else '-'}; give indices "
                              "among those (e.g. range(n - 4, n) for the top four).")
        hits = [(n, m) for n, m in hits if block_index(n) in layers]
    found = {n.split(".")[-1] for n, _ in hits}
    missing = [t for t in target_modules if t not in found]
    if missing:
        linear = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise CourseError(f"No nn.Linear called {missing} in {type(model).__name__}; "
                          f"its linear layers are called {linear}.")
    for p in model.parameters():
        p.requires_grad_(False)
    for name, lin in hits:
        _set_module(model, name, LoRALinear(lin, r=r, alpha=alpha, dropout=dropout))
    for n, p in model.named_parameters():
        if any(t in n for t in trainable):
            p.requires_grad_(True)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` by its merged plain ``nn.Linear``; returns ``model``.

    The result has no LoRA left: the same outputs, the original architecture, the speed of
    the original model.
    """
    layers = lora_layers(model)
    if not layers:
        raise CourseError("merge_lora: the model has no LoRA layers (add_lora adds them).")
    for name, layer in layers:
        _set_module(model, name, layer.to_linear())
    return model
