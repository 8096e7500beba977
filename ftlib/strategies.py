"""Which parameters to train, and how fast (derived in notebook 07).

* :func:`count_parameters` -- ``(trainable, total)`` numbers of weights;
* :func:`freeze` / :func:`unfreeze` -- switch ``requires_grad`` off (on) for every parameter
  except those whose name contains one of ``keep``;
* :func:`encoder_layers` -- the transformer blocks of a BERT/GPT-style model, bottom to top;
* :func:`layer_depth` -- 0 for the embeddings, ``i + 1`` for block ``i``, ``n + 1`` above them;
* :func:`freeze_bottom_layers` -- freeze the embeddings and the bottom ``k`` blocks;
* :func:`layerwise_lr_groups` -- optimizer parameter groups with layer-wise learning-rate decay
  (``lr * decay ** (top - depth)``), for ``ftlib.train.fit(..., param_groups=...)``;
* :func:`unfreezing_stages` -- the parameter names that train at each stage of gradual
  unfreezing (head; + top block; ...; everything), or of layer-by-layer (``cumulative=False``);
* :func:`gradual_unfreezing` -- ULMFiT's recipe (Howard & Ruder 2018): one ``fit`` epoch per
  stage, each with its own slanted triangular schedule (a short linear rise, then a linear
  fall) and discriminative learning rates (``lr / 2.6`` per layer going down);
* :class:`GradualUnfreezing` -- a ``fit`` callback that unfreezes one more block, top down,
  every ``steps_per_stage`` optimizer steps *inside one run* (one schedule for the whole run,
  so the blocks unfrozen late only see its decayed tail: not ULMFiT; kept for short demos);
* :func:`above_majority` -- does a classifier beat the majority-class baseline by more than
  the bootstrap interval, and predict every class? (fails on a constant predictor);
* :class:`ftlib.device.PeakMemory` -- peak memory of a block of code (also importable from here).

Freezing with these helpers only switches ``requires_grad``; ``fit`` builds its optimizer
from the parameters that are trainable *when it starts*, so a schedule that unfreezes later
must give ``fit`` every parameter (``param_groups=layerwise_lr_groups(model, lr, 1.0)``).
AdamW skips a parameter whose ``.grad`` is ``None``, so a frozen one is left exactly alone.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ftlib.device import PeakMemory  # noqa: F401  (kept here for notebook 07's import)
from ftlib.errors import CourseError

__all__ = ["count_parameters", "freeze", "unfreeze", "encoder_layers", "layer_depth",
           "freeze_bottom_layers", "layerwise_lr_groups", "GradualUnfreezing", "PeakMemory",
           "unfreezing_stages", "gradual_unfreezing", "above_majority"]

HEAD = ("classifier", "score", "pooler")     # what sits above the transformer blocks


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)``: numbers of weights with and without ``requires_grad``."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def _as_tuple(names) -> tuple:
    return (names,) if isinstance(names, str) else tuple(names)


def freeze(model: nn.Module, keep=("classifier",)) -> nn.Module:
    """Freeze every parameter except those whose name contains one of ``keep``; returns ``model``.

    ``freeze(model, keep=())`` freezes everything. A ``keep`` that matches no parameter
    raises :class:`ftlib.CourseError` (a typo would otherwise silently freeze the head too).
    """
    keep = _as_tuple(keep)
    names = [n for n, _ in model.named_parameters()]
    missing = [k for k in keep if not any(k in n for n in names)]
    if missing:
        raise CourseError(f"freeze(keep={keep!r}): no parameter name contains {missing}. "
                          f"Names look like {names[0]!r} ... {names[-1]!r}.")
    for n, p in model.named_parameters():
        p.requires_grad_(any(k in n for k in keep))
    return model


def unfreeze(model: nn.Module, names=None) -> nn.Module:
    """Make parameters trainable again: all of them, or those whose name contains one of ``names``."""
    names = None if names is None else _as_tuple(names)
    for n, p in model.named_parameters():
        if names is None or any(k in n for k in names):
            p.requires_grad_(True)
    return model


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks, bottom (next to the embeddings) to top.

    Finds the longest ``nn.ModuleList`` called ``layer``, ``layers`` or ``h`` (BERT,
    Llama, GPT-2 naming).
    """
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, nn.ModuleList) and name.split(".")[-1] in ("layer", "layers", "h")]
    if not found:
        raise CourseError(f"{type(model).__name__} has no list of transformer blocks named "
                          "'layer', 'layers' or 'h'; give the blocks to the helper yourself.")
    return max(found, key=lambda nm: len(nm[1]))[1]


def _block_names(model: nn.Module) -> tuple[list, str]:
    """(prefix of each block's parameter names, e.g. 'bert.encoder.layer.3.'), and the list's own prefix."""
    layers = encoder_layers(model)
    prefix = next(name for name, m in model.named_modules() if m is layers)
    return [f"{prefix}.{i}." for i in range(len(layers))], prefix


def layer_depth(model: nn.Module) -> dict:
    """``{parameter name: depth}``: 0 below the blocks (embeddings), ``i + 1`` in block ``i``,
    ``n + 1`` above them (pooler, head)."""
    blocks, prefix = _block_names(model)
    names = [n for n, _ in model.named_parameters()]
    first = min(i for i, n in enumerate(names) if n.startswith(prefix + "."))
    depth = {}
    for i, n in enumerate(names):
        inside = [b for b, pre in enumerate(blocks) if n.startswith(pre)]
        if inside:
            depth[n] = inside[0] + 1
        else:   # registered before the blocks: embeddings; after them: pooler, final norm, head
            depth[n] = 0 if i < first else len(blocks) + 1
    return depth


def freeze_bottom_layers(model: nn.Module, k: int) -> nn.Module:
    """Freeze the embeddings and the bottom ``k`` transformer blocks; train everything above."""
    n = len(encoder_layers(model))
    if not 0 <= k <= n:
        raise CourseError(f"k={k}: the model has {n} transformer blocks, so k must be 0 .. {n} "
                          f"(k={n} freezes the whole encoder: a linear probe plus pooler).")
    for name, d in layer_depth(model).items():
        model.get_parameter(name).requires_grad_(d > k)
    return model


def layerwise_lr_groups(model: nn.Module, lr: float, decay: float = 0.9, weight_decay: float = 0.0,
                        trainable_only: bool = False) -> list[dict]:
    """Parameter groups whose learning rate shrinks by ``decay`` per layer going down.

    The top (pooler, head) gets ``lr``, block ``i`` of ``n`` gets ``lr * decay ** (n - i)``,
    the embeddings ``lr * decay ** (n + 1)``. ``decay=1`` gives one learning rate for all.
    Biases and LayerNorm weights (1-D) get no weight decay, as in ``ftlib.train``.
    ``trainable_only=False`` includes frozen parameters too (needed when a callback
    unfreezes them later; AdamW leaves a parameter without a gradient untouched).
    """
    if not 0 < decay <= 1:
        raise CourseError(f"decay={decay}: use a factor in (0, 1]; 1 means no decay, 0.8-0.95 is usual.")
    depth = layer_depth(model)
    top = max(depth.values())
    groups = {}
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        d = depth[name]
        key = (d, p.ndim >= 2)
        if key not in groups:
            groups[key] = {"params": [], "lr": lr * decay ** (top - d), "depth": d,
                           "weight_decay": weight_decay if p.ndim >= 2 else 0.0}
        groups[key]["params"].append(p)
    if not groups:
        raise CourseError("layerwise_lr_groups found no parameters (all frozen and trainable_only=True).")
    return [groups[k] for k in sorted(groups)]


class GradualUnfreezing:
    """A ``fit`` callback: train the head first, then one more block every ``steps_per_stage`` steps.

    Stage 0 trains only ``keep`` (the head). After every ``steps_per_stage`` optimizer steps
    the next group down becomes trainable: the top block, the one below it, ..., the
    embeddings last (``include_embeddings``). With ``cumulative=True`` (gradual unfreezing,
    Howard & Ruder 2018) the groups already unfrozen stay trainable; with ``cumulative=False``
    (layer-by-layer fine-tuning) only the head and the newest group train.
    Pass ``steps_per_stage=len(train_loader)`` for one stage per epoch. ``log`` records
    ``(step, trainable parameters)`` at every change.

    All stages share the one learning-rate schedule of the ``fit`` run, so a group unfrozen late
    trains only on the decayed tail of it: that is *not* ULMFiT's recipe, which restarts a slanted
    triangular schedule for every stage -- use :func:`gradual_unfreezing` for that.
    """

    def __init__(self, model: nn.Module, steps_per_stage: int, cumulative: bool = True,
                 keep=HEAD, include_embeddings: bool = True):
        if steps_per_stage < 1:
            raise CourseError(f"steps_per_stage={steps_per_stage}: must be at least 1 optimizer step.")
        self.model, self.steps_per_stage, self.cumulative = model, steps_per_stage, cumulative
        self.keep = tuple(k for k in _as_tuple(keep) if any(k in n for n, _ in model.named_parameters()))
        depth = layer_depth(model)
        n = len(encoder_layers(model))
        lowest = 0 if include_embeddings else 1
        # the groups in the order they are unfrozen: block n-1 (depth n), ..., block 0, embeddings
        self.groups = [[name for name, d in depth.items() if d == k] for k in range(n, lowest - 1, -1)]
        self.stage = 0
        freeze(model, keep=self.keep)
        self.log = [(0, count_parameters(model)[0])]

    def _apply(self):
        if not self.cumulative:
            freeze(self.model, keep=self.keep)
        todo = self.groups[:self.stage] if self.cumulative else self.groups[self.stage - 1:self.stage]
        for group in todo:
            for name in group:
                self.model.get_parameter(name).requires_grad_(True)

    def __call__(self, info: dict) -> bool:
        stage = min(info["step"] // self.steps_per_stage, len(self.groups))
        if stage != self.stage:
            self.stage = stage
            self._apply()
            self.log.append((info["step"], count_parameters(self.model)[0]))
        return False                                   # never stops the run


def unfreezing_stages(model: nn.Module, blocks_per_stage: int = 1, cumulative: bool = True, keep=HEAD,
                      include_embeddings: bool = True) -> list[list[str]]:
    """The names of the parameters that train at each stage, top down.

    Stage 0: the head (``keep``) alone. Each later stage adds the next ``blocks_per_stage``
    transformer blocks going down; the embeddings join the last stage. ``cumulative=False``
    (layer-by-layer): the head and only the newest blocks train.
    """
    if blocks_per_stage < 1:
        raise CourseError(f"blocks_per_stage={blocks_per_stage}: unfreeze at least 1 block per stage.")
    keep = tuple(k for k in _as_tuple(keep) if any(k in n for n, _ in model.named_parameters()))
    if not keep:
        raise CourseError("unfreezing_stages: no parameter belongs to the head (names with 'classifier' or 'score').")
    depth = layer_depth(model)
    n = len(encoder_layers(model))
    head = [name for name in depth if any(k in name for k in keep)]
    tops = list(range(n, 0, -1))                       # block depths, top first
    chunks = [tops[i:i + blocks_per_stage] for i in range(0, n, blocks_per_stage)]
    if include_embeddings:
        chunks[-1] = chunks[-1] + [0]
    stages, done = [head], []
    for chunk in chunks:
        new = [name for name, d in depth.items() if d in chunk]
        done = done + new if cumulative else new
        stages.append(head + done)
    return stages


def gradual_unfreezing(model: nn.Module, train_batches, eval_batches=None, *, lr: float, decay: float = 1 / 2.6,
                       cut_frac: float = 0.1, blocks_per_stage: int = 1, cumulative: bool = True,
                       weight_decay: float = 0.01, keep=HEAD, include_embeddings: bool = True, **fit_kwargs) -> list:
    """ULMFiT's gradual unfreezing: one epoch of ``ftlib.train.fit`` per stage of :func:`unfreezing_stages`.

    Every stage builds a new optimizer over what trains in it, with discriminative learning
    rates (``layerwise_lr_groups(model, lr, decay)``: the head ``lr``, each layer below
    ``decay`` times the one above it; ULMFiT's 1/2.6) and its own *slanted triangular* schedule:
    the rate rises linearly for the first ``cut_frac`` of the stage's steps and falls linearly
    to 0 over the rest (``fit``'s linear schedule with ``warmup_ratio=cut_frac``). So a block
    unfrozen late starts at its full rate, not at the tail of one decay shared by the whole run.
    ``eval_batches`` are evaluated after the last stage only. Returns one History per stage.
    ``cumulative=False`` is layer-by-layer fine-tuning with the same schedule.
    """
    from ftlib.train import fit

    if not 0 <= cut_frac < 1:
        raise CourseError(f"cut_frac={cut_frac}: the share of each stage spent rising, in [0, 1) (ULMFiT: 0.1).")
    stages = unfreezing_stages(model, blocks_per_stage, cumulative, keep, include_embeddings)
    histories = []
    for i, names in enumerate(stages):
        names = set(names)
        for name, p in model.named_parameters():
            p.requires_grad_(name in names)
        groups = layerwise_lr_groups(model, lr, decay, weight_decay, trainable_only=True)
        last = i == len(stages) - 1
        histories.append(fit(model, train_batches, eval_batches if last else None, epochs=1, lr=lr,
                             warmup_ratio=cut_frac, param_groups=groups, **fit_kwargs))
    return histories


def above_majority(labels, predictions, num_labels: int | None = None, n_boot: int = 1000, alpha: float = 0.05,
                   seed: int = 0) -> dict:
    """Is a classifier better than always answering the most frequent class, beyond the noise?

    ``labels``, ``predictions``: one class per test example. Returns a dict: ``accuracy``,
    ``majority`` (the baseline's accuracy), ``gain`` (the paired bootstrap
    :class:`ftlib.metrics.Interval` of accuracy minus baseline), ``shares`` (the share of
    each predicted class) and ``ok``: True only if the whole interval lies above 0 **and**
    every class is predicted at least once. A constant predictor fails (one class predicted,
    and it can at best equal the baseline).
    """
    from ftlib.metrics import paired_bootstrap_diff

    y, p = np.asarray(labels).ravel(), np.asarray(predictions).ravel()
    if len(y) == 0 or y.shape != p.shape:
        raise CourseError(f"labels and predictions must be non-empty and of equal length, got {len(y)} and {len(p)}.")
    k = num_labels or int(max(y.max(), p.max())) + 1
    counts = np.bincount(y, minlength=k)
    majority = int(counts.argmax())
    gain = paired_bootstrap_diff(p == y, y == majority, n_boot=n_boot, alpha=alpha, seed=seed)
    shares = np.bincount(p, minlength=k) / len(p)
    return {"accuracy": float((p == y).mean()), "majority": float(counts[majority] / len(y)), "gain": gain,
            "shares": shares, "ok": bool(gain.low > 0 and (shares > 0).all())}
