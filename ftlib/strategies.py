"""Which parameters to train, and how fast (derived in notebook 06).

* :func:`count_parameters` -- ``(trainable, total)`` numbers of weights;
* :func:`freeze` / :func:`unfreeze` -- switch ``requires_grad`` off (on) for every parameter
  except those whose name contains one of ``keep``;
* :func:`encoder_layers` -- the transformer blocks of a BERT/GPT-style model, bottom to top;
* :func:`layer_depth` -- 0 for the embeddings, ``i + 1`` for block ``i``, ``n + 1`` above them;
* :func:`freeze_bottom_layers` -- freeze the embeddings and the bottom ``k`` blocks;
* :func:`layerwise_lr_groups` -- optimizer parameter groups with layer-wise learning-rate decay
  (``lr * decay ** (top - depth)``), for ``ftlib.train.fit(..., param_groups=...)``;
* :class:`GradualUnfreezing` -- a ``fit`` callback that unfreezes one more block, top down,
  every ``steps_per_stage`` optimizer steps (ULMFiT's gradual unfreezing), or with
  ``cumulative=False`` trains one block at a time (layer-by-layer, top down);
* :class:`ftlib.device.PeakMemory` -- peak memory of a block of code (also importable from here).

Freezing with these helpers only switches ``requires_grad``; ``fit`` builds its optimizer
from the parameters that are trainable *when it starts*, so a schedule that unfreezes later
must give ``fit`` every parameter (``param_groups=layerwise_lr_groups(model, lr, 1.0)``).
AdamW skips a parameter whose ``.grad`` is ``None``, so a frozen one is left exactly alone.
"""
from __future__ import annotations

import torch
from torch import nn

from ftlib.device import PeakMemory  # noqa: F401  (kept here for notebook 06's import)
from ftlib.errors import CourseError

__all__ = ["count_parameters", "freeze", "unfreeze", "encoder_layers", "layer_depth",
           "freeze_bottom_layers", "layerwise_lr_groups", "GradualUnfreezing", "PeakMemory"]

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
