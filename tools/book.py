"""Build the course book (Jupyter Book 1.x, offline).

    python tools/book.py                 # execute notebooks (cached) and build book/_build/html
    python tools/book.py --no-execute    # build from the stored notebooks only (fast; used by the tests)
    python tools/book.py --out DIR       # write the site to DIR/_build/html instead
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def build(execute: bool = True, out: Path | None = None) -> Path:
    out = Path(out) if out else ROOT / "book"
    config = ROOT / "book" / "_config.yml"
    with tempfile.TemporaryDirectory() as tmp:
        if not execute:
            cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
            cfg["execute"]["execute_notebooks"] = "off"
            config = Path(tmp) / "_config.yml"
            config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(ROOT),
               "--config", str(config), "--toc", str(ROOT / "book" / "_toc.yml"),
               "--path-output", str(out), "--keep-going", "-W"]
        subprocess.run(cmd, check=True, cwd=ROOT)
    return out / "_build" / "html"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-execute", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    html = build(execute=not args.no_execute, out=args.out)
    print(f"book built: {html / 'index.html'}")
