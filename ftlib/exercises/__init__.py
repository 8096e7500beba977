"""Checks for the exercises at the end of every lesson.

Each lesson notebook ends with a few exercises. The learner writes an answer and runs
``check("05.2", answer)``; the check says ``correct`` or what is wrong, and never raises, so
a notebook with unanswered exercises still runs top to bottom. ``...`` (Ellipsis) means "not
answered yet". The worked solutions (hidden in the book, executed in CI) call the same
checks, so a solution that stops being right fails the tests.

The checks for lesson ``NN`` live in ``ftlib/exercises/lessonNN.py``; each is a function
decorated with ``@exercise("NN.k")`` that takes the answer and raises :class:`Wrong` with a
hint when it is not right. Checks compute the expected answer themselves (from the maths
or from ftlib / the library), rather than comparing with a stored number.
"""
from __future__ import annotations

import importlib
import traceback

__all__ = ["check", "exercise", "Wrong", "close", "list_exercises"]

_CHECKS: dict = {}


class Wrong(Exception):
    """An answer that is not right yet; the message says why and gives a hint."""


def exercise(exercise_id: str):
    """Register the decorated function as the check of exercise ``exercise_id`` ("NN.k")."""
    def register(fn):
        _CHECKS[exercise_id] = fn
        fn.exercise_id = exercise_id
        return fn
    return register


def _load(exercise_id: str):
    lesson = exercise_id.split(".")[0]
    if exercise_id not in _CHECKS:
        try:
            importlib.import_module(f"ftlib.exercises.lesson{lesson}")
        except ModuleNotFoundError:
            pass
    if exercise_id not in _CHECKS:
        known = ", ".join(sorted(_CHECKS)) or "none loaded"
        raise KeyError(f"No exercise {exercise_id!r} (known: {known}). Ids look like '05.2': lesson.number.")
    return _CHECKS[exercise_id]


def check(exercise_id: str, *answer, quiet: bool = False) -> bool:
    """Check an answer; print ``correct`` or what is wrong. Returns True when correct.

    Pass the answer (or several, when the exercise asks for several things). ``...`` means
    "not answered yet" and is reported as such, not as wrong.
    """
    fn = _load(exercise_id)
    if not answer or any(a is Ellipsis for a in answer):
        print(f"Exercise {exercise_id}: not answered yet (replace ... with your answer).")
        return False
    try:
        fn(*answer)
    except Wrong as err:
        print(f"Exercise {exercise_id}: not yet. {err}")
        return False
    except Exception as err:                         # the learner's function crashed inside the check
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        print(f"Exercise {exercise_id}: your answer raised {last}")
        return False
    if not quiet:
        print(f"Exercise {exercise_id}: correct.")
    return True


def close(got, want, *, what: str = "the value", rtol: float = 1e-4, atol: float = 1e-6) -> None:
    """Raise :class:`Wrong` unless ``got`` equals ``want`` within tolerance (numbers or tensors)."""
    import torch

    try:
        g = torch.as_tensor(got, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise Wrong(f"{what} should be a number or an array of numbers, got {type(got).__name__}.") from None
    w = torch.as_tensor(want, dtype=torch.float64)
    if g.shape != w.shape:
        raise Wrong(f"{what} has shape {tuple(g.shape)}, expected {tuple(w.shape)}.")
    if not torch.allclose(g, w, rtol=rtol, atol=atol):
        raise Wrong(f"{what} is {g.tolist() if g.numel() <= 8 else 'off'}; not the expected value"
                    f"{'' if g.numel() > 8 else ' (close, but check your arithmetic)' if torch.allclose(g, w, rtol=0.05) else ''}.")


def list_exercises(lesson: str | None = None) -> list[str]:
    """Ids of the registered exercises (of one lesson, if given)."""
    import pkgutil
    import ftlib.exercises as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name.startswith("lesson"):
            importlib.import_module(f"ftlib.exercises.{mod.name}")
    return sorted(k for k in _CHECKS if lesson is None or k.startswith(f"{lesson}."))
