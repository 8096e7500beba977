"""Where to run and in which precision, and how to make runs repeatable.

The rules (derived in notebook 00):

* CUDA GPU  -> compute in bfloat16 under autocast if the GPU supports it
  (Ampere and newer), otherwise float16 with a gradient scaler;
* Apple MPS -> float32: mixed precision on MPS has given wrong results with
  several PyTorch releases, and the speed-up is small for these model sizes;
* CPU       -> float32.

``FTLIB_DEVICE`` (cpu, cuda, cuda:1, mps) overrides the automatic choice.
"""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the best available device, or ``prefer`` / ``$FTLIB_DEVICE``."""
    from ftlib import CourseError

    want = prefer or os.environ.get("FTLIB_DEVICE")
    if want:
        dev = torch.device(want)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise CourseError(f"Device {want!r} was asked for, but PyTorch sees no CUDA GPU here. "
                              "Unset FTLIB_DEVICE (or pass prefer=None) to use the CPU.")
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise CourseError(f"Device {want!r} was asked for, but MPS is not available here. "
                              "Unset FTLIB_DEVICE to let ftlib choose.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device | str) -> torch.dtype:
    """The compute dtype for autocast on ``device`` (float32 means: no autocast)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def autocast(device: torch.device | str, dtype: torch.dtype | None = None):
    """A mixed-precision context for ``device``; a no-op for float32."""
    device = torch.device(device)
    dtype = dtype or pick_dtype(device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and PyTorch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed


def describe_device(device: torch.device | str | None = None) -> dict:
    """A small, printable summary of the hardware and software in use."""
    import platform

    device = torch.device(device) if device is not None else pick_device()
    info = {
        "device": str(device),
        "compute dtype": str(pick_dtype(device)).replace("torch.", ""),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu memory (GiB)"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info
