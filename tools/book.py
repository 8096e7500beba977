"""Build the course book: a static website that works with no network (Jupyter Book 1.x).

    python tools/book.py                   # build book/_build/html from executed notebooks
    python tools/book.py --stored          # from the stored notebooks, without outputs (fast, for editing prose)
    python tools/book.py --no-execute      # use only executed copies that exist; fail if one is missing
    python tools/book.py --out DIR         # write the site to DIR/_build/html instead

The pages show the outputs of a real run: the executed copies that the notebook tests write
(tools/executed.py, book/_build/executed/). `make test` leaves a fresh copy of every notebook, so
the book is built without executing anything again; a notebook with no fresh copy (never run, or
its notebook or ftlib changed since) is executed first, through the same test run
(`pytest notebooks/NN_x.ipynb`). Every page says which budget, machine and versions produced it;
the teachers' page gets its table of lesson run times from the same records.

Everything the site loads is inside it: MathJax 3 comes from the sphinx-mathjax-offline package
and is copied into _static/mathjax; tests/test_site.py fails on any external script, stylesheet,
font or image.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import executed  # noqa: E402

TIMES_MARK = "<!-- lesson-times -->"


def toc_notebooks() -> list[Path]:
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text(encoding="utf-8"))
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / (f + ".ipynb") for f in files if f.startswith("notebooks/")]


def stale(notebooks: list[Path]) -> list[Path]:
    return [nb for nb in notebooks if executed.run_info(nb) is None]


def execute(notebooks: list[Path]) -> None:
    """Run ``notebooks`` through the notebook tests, which write their executed copies."""
    print(f"executing {len(notebooks)} notebook(s) with no fresh executed copy: "
          + ", ".join(nb.stem for nb in notebooks), flush=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, notebooks)]
    r = subprocess.run(cmd, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit("book: a notebook failed its test run, so the book would show a broken lesson; "
                         "fix it (the failing cell is named above) and build again")


def _run_note(info: dict) -> str:
    minutes = info["seconds"] / 60
    took = f"{info['seconds']:.0f} s" if minutes < 2 else f"{minutes:.1f} min"
    return (":::{admonition} How these outputs were produced\n:class: note run-info\n"
            f"Run budget **{info['budget']}**, executed by the course's tests on {info['date']} in {took}. "
            f"CPU: {info['cpu']}; accelerator: {info['accelerator']}. "
            f"Python {info['python']}, torch {info['torch']}, transformers {info['transformers']}. "
            "Numbers that depend on the machine (timings, and on a GPU most results) will differ on yours; "
            "checked cells (`# NBVAL_CHECK_OUTPUT`) print the same everywhere.\n:::")


WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "(an interactive control was here: run the notebook in JupyterLab to use it)"


def _static_outputs(outputs: list) -> list:
    """A page cannot run widgets: a progress bar's widget holds only its first frame ("0%"), so it is
    dropped; an interactive control is replaced by a note that says where to use it."""
    kept = []
    for out in outputs:
        data = out.get("data", {})
        if WIDGET not in data:
            kept.append(out)
        elif "".join(data.get("text/plain", "")).startswith("interactive("):
            kept.append(nbformat.v4.new_output("stream", name="stdout", text=WIDGET_NOTE + "\n"))
    return kept


def _page(nb_path: Path, info: dict | None) -> nbformat.NotebookNode:
    src = executed.copy_path(nb_path) if info else nb_path
    nb = nbformat.read(str(src), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = _static_outputs(cell.outputs)
            # A worked solution (tagged hide-input) prints the answer too: on the page, its source and
            # its output stay folded until the reader opens them.
            tags = cell.metadata.get("tags", [])
            if "hide-input" in tags:
                cell.metadata["tags"] = ["hide-cell" if t == "hide-input" else t for t in tags]
    if info:
        first_md = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown")
        nb.cells.insert(first_md + 1, nbformat.v4.new_markdown_cell(_run_note(info)))
        nb.cells[first_md + 1].id = "run-info"
    return nb


def _times_table(records: dict[str, dict | None]) -> str:
    rows = ["| lesson | run time | budget | machine |", "|---|---|---|---|"]
    total = 0.0
    for stem, info in records.items():
        if info is None:
            rows.append(f"| {stem} | not executed in this build | | |")
            continue
        total += info["seconds"]
        rows.append(f"| [{stem}](../notebooks/{stem}.ipynb) | {info['seconds']:.0f} s | {info['budget']} | "
                    f"{info['cpu']}; accelerator: {info['accelerator']} |")
    rows.append(f"| **all lessons** | **{total / 60:.0f} min** | | |")
    return "\n".join(rows)


def prepare(src: Path, mode: str) -> dict[str, dict | None]:
    """Write the book's sources to ``src``: book/*, and the notebooks as the pages should show them."""
    notebooks = toc_notebooks()
    if mode != "stored":
        missing = stale(notebooks)
        if missing and mode == "no-execute":
            raise SystemExit("book: no fresh executed copy of " + ", ".join(nb.stem for nb in missing)
                             + f" in {executed.EXECUTED_DIR}; run `make test` (or `python tools/book.py`, "
                             "which executes them) first")
        if missing:
            execute(missing)
            if stale(missing):
                raise SystemExit("book: the test run left no executed copy of "
                                 + ", ".join(nb.stem for nb in stale(missing)))
    shutil.copytree(ROOT / "book", src / "book", ignore=shutil.ignore_patterns("_build"))
    (src / "notebooks").mkdir()
    records = {}
    for nb_path in notebooks:
        info = None if mode == "stored" else executed.run_info(nb_path)
        records[nb_path.stem] = info
        nbformat.write(_page(nb_path, info), str(src / "notebooks" / nb_path.name))
    teaching = src / "book" / "teaching.md"
    text = teaching.read_text(encoding="utf-8")
    assert TIMES_MARK in text, f"book/teaching.md lost its {TIMES_MARK} line"
    teaching.write_text(text.replace(TIMES_MARK, _times_table(records)), encoding="utf-8")
    return records


ROOT_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" href="data:,">
<meta http-equiv="Refresh" content="0; url={start}">
</head><body><p><a href="{start}">{title}</a></p></body></html>
"""


def root_page(html: Path, cfg: dict) -> None:
    """Replace Jupyter Book's bare redirect (``<meta http-equiv="Refresh">`` and nothing else) with a page.

    The bare one names no icon, so Chromium asks the server for ``/favicon.ico`` on every visit: a
    404 on the site's front door, seen in CI as a console error on some runs and not others (whether
    it is logged before the redirect is a race). Naming the real icon does not help: the redirect
    aborts its request, a failed request on most visits (measured). So the page names an empty
    ``data:`` icon, which nothing fetches, and ``favicon.ico`` is put at the root for browsers that
    ask anyway.
    """
    index = html / "index.html"
    start = re.search(r'url=([^"\s]+)"', index.read_text(encoding="utf-8"))
    if start is None:   # Jupyter Book wrote a real page: leave it
        return
    icon = Path(cfg["html"]["favicon"]).name
    index.write_text(ROOT_PAGE.format(title=cfg.get("title", "Book"), start=start.group(1)),
                     encoding="utf-8")
    shutil.copyfile(html / "_static" / icon, html / "favicon.ico")


def build(mode: str = "auto", out: Path | None = None) -> Path:
    out = Path(out) if out else ROOT / "book"
    cfg = yaml.safe_load((ROOT / "book" / "_config.yml").read_text(encoding="utf-8"))
    html = out / "_build" / "html"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        t0 = time.time()
        prepare(src, mode)
        config = Path(tmp) / "_config.yml"
        config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        shutil.rmtree(html, ignore_errors=True)
        cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(src),
               "--config", str(config), "--toc", str(src / "book" / "_toc.yml"),
               "--path-output", str(out), "--keep-going", "-W"]
        subprocess.run(cmd, check=True, cwd=src, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    root_page(html, cfg)
    print(f"book: built in {time.time() - t0:.0f} s (not counting notebook execution)")
    return html


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--stored", action="store_true", help="pages from the stored notebooks, without outputs")
    how.add_argument("--no-execute", action="store_true", help="fail instead of executing a notebook with no fresh copy")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    mode = "stored" if args.stored else "no-execute" if args.no_execute else "auto"
    html = build(mode, out=args.out)
    print(f"book built: {html / 'index.html'}")
