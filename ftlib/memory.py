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
with batch size x sequence length x layers and are not in these numbers: :func:`activation_bytes`
estimates them for a BERT encoder, :class:`SavedTensors` measures them. ``shards=N`` is
full sharding (ZeRO-3 / FSDP ``FULL_SHARD``): every part split over N GPUs; :func:`zero_bytes`
gives the bytes per GPU of each ZeRO stage (1: optimiser state, 2: + gradients, 3: + weights).

:func:`training_bytes` is the formula, :func:`measured_bytes` sums the real tensors of a
model and its optimiser, :func:`compare` says where the two differ, and :func:`table` /
:func:`format_table` answer "which model fits on which GPU".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ftlib.errors import CourseError

__all__ = ["Recipe", "RECIPES", "Breakdown", "training_bytes", "measured_bytes", "compare", "table",
           "format_table", "LORA_FRACTION", "MODEL_SIZES", "GPU_SIZES_GB", "zero_bytes", "Activations",
           "activation_bytes", "SavedTensors", "check_estimate"]

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


def zero_bytes(n_params: float, recipe="bf16-mixed", *, world: int, stage: int, trainable: float | None = None,
               tensors: int = 0) -> Breakdown:
    """Bytes of training state on ONE of ``world`` data-parallel GPUs under ZeRO ``stage``:

    * 0: plain data parallelism (DDP): every GPU holds everything;
    * 1: the optimiser state (AdamW's moments and the float32 master weights) is split over the GPUs;
    * 2: the gradients too;
    * 3: the weights too (FSDP ``FULL_SHARD``): :func:`training_bytes` with ``shards=world``.

    Each GPU still holds, for a moment, the full weights of the layer it is computing (stage 3) and
    its activations: neither is counted here."""
    if stage not in (0, 1, 2, 3) or not isinstance(world, int) or world < 1:
        raise CourseError(f"Need a ZeRO stage of 0, 1, 2 or 3 and world >= 1 GPUs (an int); got stage={stage!r}, "
                          f"world={world!r}.")
    b = training_bytes(n_params, recipe, trainable=trainable, tensors=tensors)
    split = {"optimizer": stage >= 1, "master": stage >= 1, "gradients": stage >= 2, "weights": stage >= 3}
    return Breakdown(**{part: getattr(b, part) / (world if cut else 1) for part, cut in split.items()})


@dataclass(frozen=True)
class Activations:
    """Bytes a BERT encoder saves for the backward pass, by kind of tensor (see :func:`activation_bytes`)."""
    hidden: float          # tensors of the hidden size: 10 per layer, 3 outside the layers
    feed_forward: float    # the two intermediate-size tensors of each layer (before and after GELU)
    attention: float       # the batch x heads x L x L matrices: 3 per layer
    norm_stats: float      # LayerNorm's mean and 1/std per token: 2 per LayerNorm

    @property
    def total(self) -> float:
        return self.hidden + self.feed_forward + self.attention + self.norm_stats


def activation_bytes(*, layers: int, hidden: int, intermediate: int, heads: int, batch: int, seq_len: int,
                     bytes_per_value: float = 4) -> Activations:
    """What a BERT encoder (transformers' ``BertModel``, training mode, dropout on) saves for the backward
    pass on a batch of ``batch`` x ``seq_len`` tokens, counted tensor by tensor (lesson 19). With
    ``T = batch * seq_len`` tokens, each layer saves

    * 10 tensors of ``T x hidden``: the input of the Q/K/V projections (one tensor for all three), Q, K
      and V for the score matmul, the input of the attention's output projection, its dropout mask,
      the residual sum LayerNorm normalises; then the input of the feed-forward block, its dropout
      mask and the second residual sum;
    * 2 of ``T x intermediate``: GELU's input and output (the output is the input of the second matmul);
    * 3 of ``batch x heads x seq_len x seq_len``: the softmax probabilities, the dropout mask and the
      dropped probabilities (the math attention path, which the CPU takes when attention dropout is on);
    * LayerNorm's mean and 1/std per token (2 LayerNorms: 4 T values);

    and outside the layers 3 ``T x hidden`` -- the embeddings' LayerNorm input and dropout mask, and the
    last layer's output, which the pooler's ``[CLS]`` row keeps alive (a view holds its whole storage)
    -- and the embeddings' 2 T LayerNorm statistics.
    ``bytes_per_value``: 4 in float32 (dropout masks are saved as float32 on the CPU; a GPU saves them as
    1-byte booleans and fused attention kernels save no L x L matrix, so there the formula is an upper
    bound). Not counted: the token ids and the pooler's and head's ``batch x hidden`` values."""
    sizes = dict(layers=layers, hidden=hidden, intermediate=intermediate, heads=heads, batch=batch, seq_len=seq_len)
    bad = [f"{k}={v!r}" for k, v in sizes.items() if not isinstance(v, int) or v < 1]
    if bad or bytes_per_value <= 0:
        raise CourseError(f"activation_bytes needs whole numbers >= 1 for every size and bytes_per_value > 0; got "
                          f"{', '.join(bad) or f'bytes_per_value={bytes_per_value}'}. Read them from the model's "
                          "config (num_hidden_layers, hidden_size, intermediate_size, num_attention_heads).")
    t, b = batch * seq_len, bytes_per_value
    return Activations(hidden=(10 * layers + 3) * t * hidden * b, feed_forward=2 * layers * t * intermediate * b,
                       attention=3 * layers * batch * heads * seq_len * seq_len * b,
                       norm_stats=(4 * layers + 2) * t * b)


class SavedTensors:
    """Measure what autograd saves for the backward pass inside a ``with`` block::

        with SavedTensors(model) as saved:
            loss = model(**batch).loss
        saved.bytes, saved.count          # before loss.backward() frees them

    Every tensor saved for backward passes through ``torch.autograd.graph.saved_tensors_hooks``; the
    bytes of each *storage* are counted once (views and tensors saved by several operations share
    one), and the storages of ``model``'s parameters are not counted: they are the weights, not
    activations. ``by_dtype`` splits the bytes by dtype."""

    def __init__(self, model=None):
        if model is not None and not hasattr(model, "parameters"):
            raise CourseError(f"SavedTensors(model) takes a torch.nn.Module (its parameters are not counted), got "
                              f"{type(model).__name__}.")
        self._params = {p.untyped_storage().data_ptr() for p in model.parameters()} if model is not None else set()
        self._seen: dict = {}
        self.by_dtype: dict = {}

    def _pack(self, t):
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self._params and key not in self._seen:
            self._seen[key] = storage.nbytes()
            self.by_dtype[t.dtype] = self.by_dtype.get(t.dtype, 0) + storage.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())

    @property
    def count(self) -> int:
        return len(self._seen)

    def __enter__(self):
        import torch

        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        return False


def check_estimate(estimate: float, measured: float, rtol: float, what: str = "the estimate") -> float:
    """Raise :class:`ftlib.CourseError` unless ``estimate`` is within ``rtol`` (relative) of ``measured``;
    returns the relative difference (estimate - measured) / measured."""
    if measured <= 0 or rtol < 0:
        raise CourseError(f"check_estimate needs measured > 0 and rtol >= 0; got measured={measured}, rtol={rtol}.")
    rel = (estimate - measured) / measured
    if abs(rel) > rtol:
        raise CourseError(f"{what} does not match: {estimate:,.0f} bytes estimated, {measured:,.0f} measured "
                          f"({rel:+.1%}; allowed {rtol:.1%}).")
    return rel
