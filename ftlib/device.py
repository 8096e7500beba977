"""Where to run and in which precision, and how to make runs repeatable.

The rules (derived in notebook 00):

* CUDA GPU  -> compute in bfloat16 under autocast if the GPU supports it
  (Ampere and newer), otherwise float16 with a gradient scaler;
* Apple MPS -> float32: mixed precision on MPS has given wrong results with
  several PyTorch releases, and the speed-up is small for these model sizes;
* CPU       -> float32.

``FTLIB_DEVICE`` (cpu, cuda, cuda:1, mps) overrides the automatic choice; under ``torchrun`` each
process picks the GPU of its ``LOCAL_RANK``.

Measuring, for every lesson that times or sizes a run: :func:`sync` (wait for the device
before reading a clock), :class:`PeakMemory` (peak memory of a block of code) and
:func:`describe_device` (hardware and software, recorded with every benchmark).
"""
from __future__ import annotations

from ftlib.errors import CourseError
import contextlib
import os
import platform
import random
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the best available device, or ``prefer`` / ``$FTLIB_DEVICE``."""
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
    if torch.cuda.is_available():                  # under torchrun (LOCAL_RANK set): this process's own GPU
        local = os.environ.get("LOCAL_RANK")
        return torch.device("cuda", int(local)) if local else torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device | str) -> torch.dtype:
    """The compute dtype for autocast on ``device`` (float32 means: no autocast)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if _native_bf16(device) else torch.float16
    return torch.float32


def _native_bf16(device) -> bool:
    """bf16 tensor cores (compute capability 8.0+: Ampere, Ada, Hopper ...). T4 and V100 only
    emulate bf16 -- slowly -- and ``torch.cuda.is_bf16_supported()`` counts emulation as support."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


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


def sync(device) -> None:
    """Wait for the device to finish its queued work (GPUs run ahead of Python: read a clock after this)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class PeakMemory:
    """``with PeakMemory(device) as mem: ...`` then ``mem.peak``: extra bytes at the peak.

    CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation at the start (exact, tensors
    only). CPU: the process's resident set size (RSS), sampled every ``interval`` seconds by a
    thread, minus the RSS at the start (approximate: it includes everything the process
    allocates, and memory freed earlier and reused does not show up again).
    """

    def __init__(self, device="cpu", interval: float = 0.005):
        self.device, self.interval, self.peak = torch.device(device), interval, 0
        self.method = "torch.cuda.max_memory_allocated" if self.device.type == "cuda" else "RSS delta (psutil)"

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        import psutil
        self._proc = psutil.Process()
        self._start = self._max = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._max = max(self._max, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._start
        else:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, self._proc.memory_info().rss)
            self.peak = self._max - self._start
        return False


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _gpu_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.SubprocessError):
        return None


def describe_device(device: torch.device | str | None = None) -> dict:
    """The hardware and software in use: printed by notebook 00, recorded with every benchmark."""
    import importlib.metadata as md

    device = torch.device(device) if device is not None else pick_device()
    info = {
        "device": str(device),
        "compute dtype": str(pick_dtype(device)).replace("torch.", ""),
        "cpu": _cpu_name(),
        "cpu threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    for dist in ("torch", "transformers", "peft", "datasets"):
        try:
            info[dist] = md.version(dist)
        except md.PackageNotFoundError:
            info[dist] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu memory (GiB)"] = round(props.total_memory / 2**30, 1)
        info["compute capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        info["cuda"] = torch.version.cuda
        info["driver"] = _gpu_driver()
    return info
