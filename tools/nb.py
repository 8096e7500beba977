"""Keep the notebooks in their stored form.

Stored form (enforced by tests/test_course_layout.py and tests/test_stored_outputs.py):

* no execution counts (checked cells with outputs carry a constant 1, which nbval
  requires), no cell metadata except ``tags``, notebook metadata
  limited to the kernel and language;
* outputs are stored only for cells marked ``# NBVAL_CHECK_OUTPUT``: those hold
  deterministic maths (a loss value, a shape) that nbval compares on every run;
  only their plain-text outputs are kept.  Everything else (plots, timings,
  progress bars) is regenerated when the notebook runs or the book is built.

    python tools/nb.py clean   notebooks/*.ipynb   # strip to the stored form
    python tools/nb.py check   notebooks/*.ipynb   # exit 1 if any is not clean
    python tools/nb.py refresh notebooks/01_x.ipynb  # execute, then store checked outputs
"""
from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path

import nbformat

CHECK_MARK = "NBVAL_CHECK_OUTPUT"
KEEP_NB_METADATA = {"kernelspec", "language_info"}


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and CHECK_MARK in cell.source


def _clean_output(out):
    out = copy.deepcopy(out)
    out.pop("metadata", None) if out.get("output_type") == "stream" else None
    if out.get("output_type") in ("execute_result", "display_data"):
        out["data"] = {k: v for k, v in out.get("data", {}).items() if k == "text/plain"}
        out["metadata"] = {}
        if out["output_type"] == "execute_result":
            out["execution_count"] = None
    return out


def clean(nb):
    """Return a copy of ``nb`` in the stored form."""
    nb = copy.deepcopy(nb)
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_NB_METADATA}
    if "language_info" in nb.metadata:
        nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags")
        cell.metadata = {"tags": tags} if tags else {}
        if cell.cell_type != "code":
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
            if cell.cell_type == "markdown":
                cell.pop("attachments", None) if not cell.get("attachments") else None
            continue
        cell.execution_count = None
        if is_checked(cell):
            outs = [_clean_output(o) for o in cell.outputs
                    if o.get("output_type") in ("stream", "execute_result", "display_data")]
            kept = [o for o in outs if o.get("output_type") == "stream"
                    and o.get("name") == "stdout" or o.get("data")]
            # one stdout stream, however the kernel happened to flush it (nbval joins them too)
            cell.outputs = []
            for o in kept:
                if cell.outputs and o.get("output_type") == "stream" and cell.outputs[-1].get("output_type") == "stream":
                    cell.outputs[-1]["text"] += o["text"]
                else:
                    cell.outputs.append(o)
            # nbval refuses a reference cell that has outputs but no execution count
            # ("Unrun reference cell has outputs"), so checked cells carry a constant 1.
            if cell.outputs:
                cell.execution_count = 1
        else:
            cell.outputs = []
    return nb


def _write(text: str, path: Path):
    """Replace ``path`` atomically: an interrupted write never leaves half a notebook."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ipynb.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read(path):
    return nbformat.read(path, as_version=4)


def serialise(nb) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv):
    if len(argv) < 2 or argv[0] not in ("clean", "check", "refresh"):
        print(__doc__)
        return 2
    cmd, paths = argv[0], [Path(p) for p in argv[1:]]
    dirty = []
    for path in paths:
        nb = read(path)
        if cmd == "refresh":
            from nbclient import NotebookClient
            print(f"executing {path} ...", flush=True)
            NotebookClient(nb, timeout=1800, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        new = clean(nb)
        if cmd == "check":
            if serialise(new) != path.read_text(encoding="utf-8"):
                dirty.append(path)
        elif serialise(new) != path.read_text(encoding="utf-8"):
            _write(serialise(new), path)
            print(f"wrote {path}")
    if dirty:
        print("not in stored form (run `make nb-clean`):", *dirty, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
