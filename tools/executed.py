"""Executed copies of the notebooks: the outputs the book shows, written by the test run.

The notebooks are stored almost without outputs (see tools/nb.py). When pytest executes a notebook
(nbval, in `make test`), conftest.py hands every cell's outputs to :func:`write`, which saves the
whole executed notebook under ``book/_build/executed/`` together with how it was produced: the run
budget, the machine, the library versions, the time it took, and a hash of what it was produced
from (the stored notebook and ftlib's source). tools/book.py builds the site from these copies, so
CI executes each notebook once, and a copy whose notebook or ftlib has changed since is stale and
is never shown.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
EXECUTED_DIR = Path(os.environ.get("FTLIB_EXECUTED_DIR") or ROOT / "book" / "_build" / "executed")
RUN_KEY = "ftlib_run"


def source_hash(notebook: Path) -> str:
    """What an executed copy was produced from: the stored notebook and every ftlib module."""
    h = hashlib.sha256(Path(notebook).read_bytes())
    for f in sorted((ROOT / "ftlib").glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def machine() -> dict:
    """The hardware and versions that produce a run's outputs."""
    import torch
    import transformers

    from ftlib.device import _cpu_name               # the name notebook 00 and the benchmarks record

    if torch.cuda.is_available():
        accelerator = torch.cuda.get_device_name(0)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        accelerator = "Apple MPS"
    else:
        accelerator = "none (CPU only)"
    return {
        "cpu": f"{_cpu_name() or platform.machine()}, {os.cpu_count()} logical cores",
        "accelerator": accelerator,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "os": f"{platform.system()} {platform.release()}",
    }


def copy_path(notebook: Path) -> Path:
    return EXECUTED_DIR / Path(notebook).name


def write(nb, notebook: Path, seconds: float) -> Path:
    """Save ``nb`` (the notebook with the outputs of a complete, passing run) as the executed copy."""
    nb = nbformat.from_dict(nb)
    nb.metadata[RUN_KEY] = {
        "budget": os.environ.get("FTLIB_BUDGET", "unset"),
        "seconds": round(seconds, 1),
        "date": _dt.date.today().isoformat(),
        "source_hash": source_hash(notebook),
        **machine(),
    }
    path = copy_path(notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".ipynb.tmp")
    nbformat.write(nb, str(tmp))
    tmp.replace(path)
    return path


def log(line: str) -> None:
    """What the test run did with each notebook's copy (``_runs.log`` beside the copies)."""
    EXECUTED_DIR.mkdir(parents=True, exist_ok=True)
    with open(EXECUTED_DIR / "_runs.log", "a", encoding="utf-8") as f:
        f.write(f"{_dt.datetime.now():%H:%M:%S} {line}\n")


def discard(notebook: Path) -> None:
    """A run that failed or did not run every cell leaves no copy behind (an older copy would be stale)."""
    copy_path(notebook).unlink(missing_ok=True)


def run_info(notebook: Path) -> dict | None:
    """The run record of ``notebook``'s executed copy, or None if there is none or it is stale."""
    path = copy_path(notebook)
    if not path.is_file():
        return None
    info = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get(RUN_KEY)
    if not info or info.get("source_hash") != source_hash(notebook):
        return None
    return info
