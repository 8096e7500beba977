"""One place that decides how big a run is.

Every notebook asks for a :class:`Budget` instead of hard-coding sizes, so the
same code runs a minutes-long version on a laptop CPU and the full version on
a GPU.  The budget is chosen, in this order, by

1. the ``name`` argument to :func:`get_budget` ("small" or "full");
2. the environment variable ``FTLIB_BUDGET``;
3. the hardware: "full" on a CUDA GPU, "small" everywhere else.

Any field can be overridden: ``get_budget(epochs=1)`` or
``FTLIB_BUDGET_EPOCHS=1``.  A value of ``None`` for a size means "all of it".
"""
from __future__ import annotations

from ftlib.errors import CourseError
import dataclasses
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    name: str
    train_size: int | None   # training examples to use (None: the whole split)
    eval_size: int | None    # evaluation examples to use (None: the whole split)
    epochs: int
    max_steps: int | None    # optimiser steps cap (None: as many as the epochs give)
    batch_size: int
    max_length: int          # tokens per example
    seq_len: int             # tokens per block for language modelling

    def pick(self, small, full):
        """Choose a notebook-specific value: ``budget.pick(small=200, full=None)``."""
        return full if self.name == "full" else small

    def take(self, dataset, size: int | None, seed: int = 0):
        """The first ``size`` rows of a shuffled ``datasets.Dataset`` (all rows if None)."""
        if size is None or size >= len(dataset):
            return dataset
        return dataset.shuffle(seed=seed).select(range(size))


PRESETS = {
    "small": Budget("small", train_size=2_000, eval_size=872, epochs=1, max_steps=None,
                    batch_size=16, max_length=64, seq_len=128),
    "full": Budget("full", train_size=None, eval_size=None, epochs=3, max_steps=None,
                   batch_size=32, max_length=128, seq_len=512),
}


def _coerce(field: dataclasses.Field, text: str):
    if text.lower() in ("none", "all", ""):
        return None
    return int(text) if field.name != "name" else text


def get_budget(name: str | None = None, **overrides) -> Budget:
    """The budget in force; see the module docstring for how it is chosen."""
    if name is None:
        name = os.environ.get("FTLIB_BUDGET")
    if name is None:
        import torch
        name = "full" if torch.cuda.is_available() else "small"
    if name not in PRESETS:
        raise CourseError(f"Unknown budget {name!r}: use one of {sorted(PRESETS)} "
                          "(argument or FTLIB_BUDGET).")
    fields = {f.name: f for f in dataclasses.fields(Budget)}
    from_env = {}
    for fname, f in fields.items():
        text = os.environ.get(f"FTLIB_BUDGET_{fname.upper()}")
        if text is not None and fname != "name":
            try:
                from_env[fname] = _coerce(f, text)
            except ValueError:
                raise CourseError(f"FTLIB_BUDGET_{fname.upper()}={text!r} is not a whole number "
                                  "(or 'none').") from None
    unknown = set(overrides) - set(fields)
    if unknown:
        raise CourseError(f"Unknown budget field(s) {sorted(unknown)}; the fields are "
                          f"{sorted(set(fields) - {'name'})}.")
    return dataclasses.replace(PRESETS[name], **{**from_env, **overrides})
