"""Checks for the exercises of notebook 00 (start here): precision and run budgets."""
from __future__ import annotations

import math

import torch

from ftlib.exercises import Wrong, exercise

# The machines of exercise 00.1: (device type, CUDA compute capability or None).
# Compute capabilities from NVIDIA's table (developer.nvidia.com/cuda-gpus); bfloat16 tensor
# cores arrived with Ampere, compute capability 8.0.
MACHINES = {
    "H100": ("cuda", (9, 0)),
    "RTX 4090": ("cuda", (8, 9)),
    "A100": ("cuda", (8, 0)),
    "T4 (Colab)": ("cuda", (7, 5)),
    "V100": ("cuda", (7, 0)),
    "MacBook (Apple M2)": ("mps", None),
    "laptop CPU": ("cpu", None),
}

_NAMES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def _as_dtype(value):
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        return _NAMES.get(value.lower().replace("torch.", "").strip())
    return None


def compute_dtype(kind: str, capability: tuple[int, int] | None) -> torch.dtype:
    """ftlib's rule (ftlib.device.pick_dtype) for a described machine."""
    if kind == "cuda":
        return torch.bfloat16 if capability >= (8, 0) else torch.float16
    import ftlib
    return ftlib.pick_dtype(kind)          # mps and cpu: what ftlib itself answers


@exercise("00.1")
def check_dtypes(answer):
    if not isinstance(answer, dict):
        raise Wrong("Answer with a dict: machine name -> dtype, e.g. {'H100': torch.bfloat16, ...}.")
    missing = [m for m in MACHINES if m not in answer]
    if missing:
        raise Wrong(f"Give a dtype for every machine; missing: {', '.join(missing)} "
                    "(use the names exactly as in `machines`).")
    for name, (kind, cap) in MACHINES.items():
        got, want = _as_dtype(answer[name]), compute_dtype(kind, cap)
        if got is None:
            raise Wrong(f"{name}: {answer[name]!r} is not a dtype; use torch.float32, torch.bfloat16 or torch.float16.")
        if got == want:
            continue
        if kind == "cuda" and want == torch.float16:
            raise Wrong(f"{name}: compute capability {cap[0]}.{cap[1]} is older than Ampere (8.0): no fast "
                        "bfloat16 there, so ftlib uses float16 with gradient scaling.")
        if kind == "cuda":
            raise Wrong(f"{name}: compute capability {cap[0]}.{cap[1]} is Ampere or newer, which has bfloat16 "
                        "tensor cores: float32's range, half the memory traffic, no gradient scaling needed.")
        if kind == "mps":
            raise Wrong(f"{name}: on Apple's MPS the course computes in float32 (mixed precision on MPS has "
                        "given wrong results in several PyTorch releases; see the table in section 2).")
        raise Wrong(f"{name}: on a CPU the course computes in float32 (bfloat16 is slow or emulated on most "
                    "laptop CPUs).")


# Exercise 00.2: optimiser steps for fine-tuning on all of SST-2's training split.
SST2_TRAIN = 67_349


def total_steps(preset, n_examples: int = SST2_TRAIN) -> int:
    """Optimiser steps (one per batch, the last batch may be smaller) over all epochs."""
    n = n_examples if preset.train_size is None else min(preset.train_size, n_examples)
    return math.ceil(n / preset.batch_size) * preset.epochs


@exercise("00.2")
def check_budget_steps(answer):
    from ftlib.budget import PRESETS

    if not isinstance(answer, dict) or set(answer) != {"small", "full"}:
        raise Wrong("Answer with a dict {'small': steps, 'full': steps}.")
    for name in ("small", "full"):
        p = PRESETS[name]
        got, want = answer[name], total_steps(p)
        if not isinstance(got, (int, float)) or got != int(got):
            raise Wrong(f"{name}: a number of steps is a whole number, got {got!r}.")
        got = int(got)
        if got == want:
            continue
        n = SST2_TRAIN if p.train_size is None else min(p.train_size, SST2_TRAIN)
        per_epoch = math.ceil(n / p.batch_size)
        if got == (n // p.batch_size) * p.epochs:
            raise Wrong(f"{name}: {n:,} / {p.batch_size} is not a whole number; the last, smaller batch is a "
                        "step too: round up.")
        if got == per_epoch and p.epochs > 1:
            raise Wrong(f"{name}: that is one epoch; this budget runs {p.epochs} epochs.")
        if p.train_size is not None and got in (math.ceil(SST2_TRAIN / p.batch_size) * p.epochs,
                                                SST2_TRAIN // p.batch_size * p.epochs):
            raise Wrong(f"{name}: this budget trains on train_size={p.train_size:,} examples, not all of them.")
        if got in (n * p.epochs, n):
            raise Wrong(f"{name}: count optimiser steps (one per batch of {p.batch_size}), not examples.")
        other = PRESETS["full" if name == "small" else "small"]
        if got == math.ceil(n / other.batch_size) * p.epochs:
            raise Wrong(f"{name}: this budget's batch size is {p.batch_size}.")
        raise Wrong(f"{name}: not {got}. Steps = ceil(examples / batch_size) x epochs, with the budget's fields.")
