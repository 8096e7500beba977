"""How the book gets its outputs: executed copies written by the notebook tests (tools/executed.py,
conftest.py) and turned into pages by tools/book.py. The browser tests of the built site are in
tests/test_site.py."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import book  # noqa: E402
import executed  # noqa: E402


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A repository in miniature: one notebook and an ftlib module; executed copies in tmp_path/executed."""
    (tmp_path / "ftlib").mkdir()
    (tmp_path / "ftlib" / "losses.py").write_text("X = 1\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 99 — A lesson"),
                                         nbformat.v4.new_code_cell("print(6 * 7)")])
    path = tmp_path / "99_lesson.ipynb"
    nbformat.write(nb, str(path))
    monkeypatch.setattr(executed, "ROOT", tmp_path)
    monkeypatch.setattr(executed, "EXECUTED_DIR", tmp_path / "executed")
    return path


def test_a_copy_is_fresh_until_its_notebook_or_ftlib_changes(scratch):
    nb = nbformat.read(str(scratch), as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    executed.write(nb, scratch, seconds=12.34)
    info = executed.run_info(scratch)
    assert info["seconds"] == 12.3 and info["budget"] and info["cpu"] and info["torch"]
    copy = nbformat.read(str(executed.copy_path(scratch)), as_version=4)
    assert copy.cells[1].outputs[0]["text"] == "42\n"

    (executed.ROOT / "ftlib" / "losses.py").write_text("X = 2\n")          # ftlib changed
    assert executed.run_info(scratch) is None
    (executed.ROOT / "ftlib" / "losses.py").write_text("X = 1\n")
    assert executed.run_info(scratch) is not None
    scratch.write_text(scratch.read_text().replace("6 * 7", "6 * 8"))       # the notebook changed
    assert executed.run_info(scratch) is None
    executed.discard(scratch)
    assert not executed.copy_path(scratch).exists()


def test_pages_drop_progress_bar_widgets_and_say_where_an_interactive_one_went():
    widget = {"application/vnd.jupyter.widget-view+json": {"model_id": "m"}}
    outputs = [nbformat.v4.new_output("display_data", data={**widget, "text/plain": "Loading weights:   0%|"}),
               nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"}),
               nbformat.v4.new_output("display_data", data={**widget, "text/plain": "interactive(children=(FloatSlider"}),
               nbformat.v4.new_output("stream", name="stdout", text="loss 0.69\n")]
    kept = book._static_outputs(outputs)
    assert [o.get("text", "") or list(o["data"]) for o in kept] == [["image/png", "text/plain"], book.WIDGET_NOTE + "\n",
                                                                   "loss 0.69\n"]


def test_the_teachers_table_adds_up_the_lessons_and_names_a_missing_one():
    info = {"seconds": 90.0, "budget": "small", "cpu": "Some CPU, 2 logical cores", "accelerator": "none (CPU only)"}
    table = book._times_table({"00_a": info, "01_b": {**info, "seconds": 150.0}, "02_c": None})
    assert "| [00_a](../notebooks/00_a.ipynb) | 90 s | small |" in table
    assert "| 02_c | not executed in this build |" in table
    assert "**4 min**" in table                                     # 240 s, not counting the missing one


def test_every_lesson_page_gets_a_box_with_its_run(scratch):
    nb = nbformat.read(str(scratch), as_version=4)
    executed.write(nb, scratch, seconds=200)
    page = book._page(scratch, executed.run_info(scratch))
    assert [c.cell_type for c in page.cells] == ["markdown", "markdown", "code"]      # after the title
    box = page.cells[1].source
    assert "Run budget **" in box and "3.3 min" in box and "Python " in box and ":class: note run-info" in box


def test_the_book_refuses_stale_copies_when_told_not_to_execute(tmp_path, monkeypatch):
    monkeypatch.setattr(executed, "EXECUTED_DIR", tmp_path / "nothing_here")
    with pytest.raises(SystemExit, match="no fresh executed copy of 00_start_here.*make test"):
        book.prepare(tmp_path / "src", mode="no-execute")


NOTEBOOK_TEST = textwrap.dedent("""
    import nbformat, sys
    cells = [nbformat.v4.new_markdown_cell("# 98 — A test"), nbformat.v4.new_code_cell("x = 6 * 7\\nprint(x)"),
             nbformat.v4.new_code_cell(sys.argv[2])]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), sys.argv[1])
""")


def _run_notebook_test(tmp_path, second_cell: str):
    nb_path = tmp_path / "98_test.ipynb"
    subprocess.run([sys.executable, "-c", NOTEBOOK_TEST, str(nb_path), second_cell], check=True)
    env = {**__import__("os").environ, "FTLIB_EXECUTED_DIR": str(tmp_path / "executed"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-q", "-p", "no:cacheprovider",
                        "--nbval-lax", "--nbval-current-env", "--rootdir", str(tmp_path), str(nb_path)],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    return r, tmp_path / "executed" / nb_path.name


@pytest.mark.slow
def test_the_notebook_tests_write_an_executed_copy_and_a_failed_run_leaves_none(tmp_path):
    r, copy = _run_notebook_test(tmp_path, "print(x + 1)")
    assert r.returncode == 0, r.stdout + r.stderr
    nb = json.loads(copy.read_text())
    outs = [c["outputs"] for c in nb["cells"] if c["cell_type"] == "code"]
    assert ["".join(o[0]["text"]) for o in outs] == ["42\n", "43\n"]
    assert [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code"] == [1, 2]
    assert nb["metadata"]["ftlib_run"]["seconds"] >= 0 and nb["metadata"]["ftlib_run"]["budget"]

    r, copy = _run_notebook_test(tmp_path, "raise ValueError('broken lesson')")
    assert r.returncode == 1 and "broken lesson" in r.stdout
    assert not copy.exists(), "a failed run must not leave (or keep) an executed copy"
