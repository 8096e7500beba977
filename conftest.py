"""pytest set-up for the whole run: unit tests (tests/) and notebooks (nbval)."""
import os

# The tests pin the small budget (ftlib.budget): on a CUDA machine the default would be "full",
# while the checked outputs are those of the small runs, so a GPU machine reproduces CI. The
# notebook kernels nbval starts inherit this. (`FTLIB_BUDGET=full pytest notebooks/...` runs the
# full budget on purpose; its checked outputs are then expected to differ.)
os.environ.setdefault("FTLIB_BUDGET", "small")


def pytest_report_header(config):
    return f"ftlib budget: {os.environ['FTLIB_BUDGET']} (FTLIB_BUDGET)"


def pytest_collection_modifyitems(items):
    # After a cell finishes, nbval waits only 5 s between the kernel's remaining output messages
    # before it fails the cell ("Timeout of 5 seconds exceeded waiting for output"). A busy CI
    # machine once went quiet that long after lesson 08's longest cell, which had finished
    # correctly. 60 s is still far below the cell timeout (--nbval-cell-timeout in pyproject.toml).
    for item in items:
        if type(item).__name__ == "IPyNbCell" and hasattr(item, "output_timeout"):
            item.output_timeout = 60
    # The site tests (tests/test_site.py) build the book from the executed copies that the notebook
    # runs write (below), so they run last.
    items.sort(key=lambda item: item.get_closest_marker("site") is not None)


# ---- executed copies for the book (tools/executed.py) ----------------------------------------
# While nbval runs a notebook, every cell's outputs are kept; when the notebook's last cell has run
# and every cell passed, the executed notebook is saved under book/_build/executed/ and the book is
# built from it (tools/book.py), so CI executes each notebook once. A failed or partial run leaves
# no copy.
import importlib.util as _ilu
import time as _time
from pathlib import Path as _Path

import pytest

_spec = _ilu.spec_from_file_location("_ftlib_executed", _Path(__file__).parent / "tools" / "executed.py")
executed = _ilu.module_from_spec(_spec)
_spec.loader.exec_module(executed)
_RUNS = {}


def _is_cell(item):
    return type(item).__name__ == "IPyNbCell"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if not _is_cell(item):
        yield
        return
    run = _RUNS.setdefault(item.parent, {"start": _time.time(), "ran": 0, "failed": False})
    outcome = yield
    run["ran"] += 1
    if outcome.excinfo is not None:
        executed.log(f"{item.nodeid}: {outcome.excinfo[0].__name__}")
    run["failed"] |= outcome.excinfo is not None
    item.cell.outputs = list(item.test_outputs or [])
    item.cell.execution_count = run["ran"]
    for out in item.cell.outputs:
        if out.get("output_type") == "execute_result":
            out["execution_count"] = run["ran"]


def pytest_runtest_logreport(report):
    if report.when == "setup" and report.failed and "ipynb::Cell" in report.nodeid:
        for parent, run in _RUNS.items():
            if report.nodeid.startswith(parent.nodeid):
                run["failed"] = True


def pytest_runtest_teardown(item, nextitem):
    if not _is_cell(item) or (nextitem is not None and getattr(nextitem, "parent", None) is item.parent):
        return
    run = _RUNS.pop(item.parent, None)
    nb, path = item.parent.nb, _Path(str(item.parent.fspath))
    code_cells = sum(c.cell_type == "code" for c in nb.cells)
    if run and not run["failed"] and run["ran"] == code_cells:
        executed.write(nb, path, _time.time() - run["start"])
        executed.log(f"wrote {path.name}: {run['ran']} cells in {_time.time() - run['start']:.0f} s")
    else:
        executed.discard(path)
        executed.log(f"no copy of {path.name}: run={run}, code cells={code_cells}")
