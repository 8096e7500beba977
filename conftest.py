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
    # machine once went quiet that long after lesson 07's longest cell, which had finished
    # correctly. 60 s is still far below the cell timeout (--nbval-cell-timeout in pyproject.toml).
    for item in items:
        if type(item).__name__ == "IPyNbCell" and hasattr(item, "output_timeout"):
            item.output_timeout = 60
