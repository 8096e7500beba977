"""The memory arithmetic of fine-tuning: bytes per parameter, by recipe, checked on real tensors.

Training with AdamW keeps, for every parameter it trains,

* the **weight** (4 bytes in float32, 2 in bfloat16, 1 or about 0.56 for 8-bit / 4-bit
  quantised base weights that are not trained),
* its **gradient** (same dtype as the weight it belongs to),
* AdamW's **two moments** ``m`` and ``v`` (float32: 8 bytes), plus one float32 ``step``
  counter per parameter *tensor* (negligible, but it is there: ``tensors=``),
* in "mixed precision with master weights", a **float32 master copy** (4 bytes) that the
  optimiser updates and that is rounded to bfloat16 for the next forward pass.

Recipes (:data:`RECIPES`), bytes per parameter without activations:

==============  ===================================================================  =========
recipe          what is stored                                                       bytes
==============  ===================================================================  =========
``fp32``        float32 weights, gradients, moments (ftlib's engine: autocast        16
                computes in bf16 but keeps these float32)
``bf16-mixed``  bf16 weights and gradients, float32 master weights and moments       16
``lora``        frozen bf16 base; float32 adapters (weights, grads, moments)          2 + 16 f
``lora-8bit``   frozen int8 base (per-row scales ignored); float32 adapters          1 + 16 f
``lora-4bit``   frozen 4-bit base, one float32 scale per 64 weights (QLoRA's NF4     0.5625 + 16 f
                without double quantisation); float32 adapters
==============  ===================================================================  =========

``f`` is the trainable (adapter) share of the parameters: a rank-16 LoRA on every linear
layer of a 7B Llama is about 40M parameters, 0.6 %; :data:`LORA_FRACTION` (1 %) is the default.

Activations -- what the forward pass saves for the backward pass -- come on top; they grow
with batch size x sequence length x layers and are not in these numbers. ``shards=N`` is
full sharding (ZeRO-3 / FSDP ``FULL_SHARD``): every part split over N GPUs.

:func:`training_bytes` is the formula, :func:`measured_bytes` sums the real tensors of a
model and its optimiser, :func:`compare` says where the two differ, and :func:`table` /
:func:`format_table` answer "which model fits on which GPU".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ftlib.errors import CourseError

__all__ = ["Recipe", "RECIPES", "Breakdown", "training_bytes", "measured_bytes", "compare", "table",
           "format_table", "LORA_FRACTION", "MODEL_SIZES", "GPU_SIZES_GB"]

LORA_FRACTION = 0.01                   # default trainable share for the LoRA recipes
MODEL_SIZES = {"1B": 1e9, "7B": 7e9, "70B": 70e9}
GPU_SIZES_GB = (24, 80, 141)           # e.g. RTX 4090, A100/H100, H200 (nominal capacity)
GB = 1e9


@dataclass(frozen=True)
class Recipe:
    """Bytes per parameter of one way of training (see the module docstring)."""
    name: str
    weight: float          # every weight of the model (the frozen base, for LoRA)
    grad: float            # per trainable parameter
    optimizer: float       # AdamW's moments per trainable parameter (two float32: 8)
    master: float = 0.0    # float32 master copy per trainable parameter (0: the weights are float32)
    adapter: float = 0.0   # LoRA: bytes per adapter weight (the adapters are extra parameters)
    lora: bool = False


RECIPES = {r.name: r for r in [
    Recipe("fp32", weight=4, grad=4, optimizer=8),
    Recipe("bf16-mixed", weight=2, grad=2, optimizer=8, master=4),
    Recipe("lora", weight=2, grad=4, optimizer=8, adapter=4, lora=True),
    Recipe("lora-8bit", weight=1, grad=4, optimizer=8, adapter=4, lora=True),
    Recipe("lora-4bit", weight=0.5 + 4 / 64, grad=4, optimizer=8, adapter=4, lora=True),
]}

STEP_BYTES = 4                         # AdamW's float32 step counter, one per parameter tensor


@dataclass(frozen=True)
class Breakdown:
    """Bytes of each part of the training state."""
    weights: float
    gradients: float
    optimizer: float
    master: float = 0.0

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.master

    def gb(self) -> dict:
        """The parts and the total in GB (10^9 bytes)."""
        return {**{f.name: getattr(self, f.name) / GB for f in fields(self)}, "total": self.total / GB}


def _recipe(recipe) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise CourseError(f"Unknown recipe {recipe!r}: use one of {sorted(RECIPES)} or a ftlib.memory.Recipe.")
    return RECIPES[recipe]


def training_bytes(n_params: float, recipe="fp32", *, trainable: float | None = None, tensors: int = 0,
                   shards: int = 1) -> Breakdown:
    """Bytes of weights, gradients, AdamW state and master weights for training ``n_params`` parameters.

    ``trainable``: how many parameters are trained (default: all of them; for a LoRA recipe,
    the adapter parameters, default ``LORA_FRACTION * n_params``, which come on top of the
    ``n_params`` base weights). ``tensors``: how many parameter tensors the optimiser holds
    (AdamW keeps a 4-byte step counter for each). ``shards``: split everything over that many
    GPUs (ZeRO-3 / FSDP full sharding). Activations are not included."""
    r = _recipe(recipe)
    if n_params <= 0 or shards < 1 or tensors < 0 or (trainable is not None and trainable < 0):
        raise CourseError(f"Need n_params > 0, trainable >= 0, tensors >= 0 and shards >= 1; got n_params={n_params}, "
                          f"trainable={trainable}, tensors={tensors}, shards={shards}.")
    if trainable is None:
        trainable = math.ceil(LORA_FRACTION * n_params) if r.lora else n_params
    if not r.lora and trainable > n_params:
        raise CourseError(f"trainable={trainable} is more than the model's {n_params} parameters.")
    weights = r.weight * n_params + r.adapter * trainable
    return Breakdown(weights=weights / shards, gradients=r.grad * trainable / shards,
                     optimizer=(r.optimizer * trainable + STEP_BYTES * tensors) / shards,
                     master=r.master * trainable / shards)


def _nbytes(t) -> int:
    return t.numel() * t.element_size()


def measured_bytes(model, optimizer=None, master=None) -> Breakdown:
    """The real sizes: ``model``'s parameters and their ``.grad``, every tensor in ``optimizer``'s state,
    and the ``master`` tensors (float32 copies, if the training keeps them apart from the model)."""
    import torch

    params = list({id(p): p for p in model.parameters()}.values())       # tied weights count once
    state = [t for s in (optimizer.state.values() if optimizer is not None else ())
             for t in s.values() if isinstance(t, torch.Tensor)]
    return Breakdown(weights=sum(_nbytes(p) for p in params),
                     gradients=sum(_nbytes(p.grad) for p in params if p.grad is not None),
                     optimizer=sum(_nbytes(t) for t in state),
                     master=sum(_nbytes(t) for t in (master or ())))


def compare(predicted: Breakdown, measured: Breakdown, rtol: float = 0.0) -> Breakdown:
    """Raise :class:`ftlib.CourseError` naming every part where the formula and the tensors differ
    by more than ``rtol``; returns ``measured``."""
    wrong = [f"{f.name}: formula {getattr(predicted, f.name):,.0f} bytes, tensors {getattr(measured, f.name):,.0f}"
             for f in fields(Breakdown)
             if abs(getattr(predicted, f.name) - getattr(measured, f.name)) > rtol * abs(getattr(measured, f.name))]
    if wrong:
        raise CourseError("The memory formula does not match the tensors: " + "; ".join(wrong) + ".")
    return measured


def _size_name(n: float) -> str:
    return next((k for k, v in MODEL_SIZES.items() if v == n), f"{n / 1e9:g}B")


def table(models=tuple(MODEL_SIZES.values()), gpus=GPU_SIZES_GB, recipes=tuple(RECIPES)) -> list[dict]:
    """One row per (model size, recipe): the GB of training state (no activations) and, per GPU size,
    how many such GPUs hold it with full sharding (1: it fits on one GPU)."""
    rows = []
    for n in models:
        for name in recipes:
            b = training_bytes(n, name)
            row = {"model": _size_name(n), "recipe": _recipe(name).name, "bytes/param": b.total / n,
                   "GB": b.total / GB}
            for g in gpus:
                if g <= 0:
                    raise CourseError(f"GPU sizes are in GB and must be > 0, got {g}.")
                row[f"{g:g} GB GPUs"] = math.ceil(b.total / (g * GB))
            rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """``rows`` of :func:`table` as a Markdown table."""
    if not rows:
        raise CourseError("format_table needs at least one row (from ftlib.memory.table()).")
    keys = list(rows[0])

    def cell(k, v):
        return (f"{v:,.2f}" if k == "bytes/param" else f"{v:,.1f}") if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join("---" for _ in keys) + "|"]
    lines += ["| " + " | ".join(cell(k, r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)
