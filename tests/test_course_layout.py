"""The course as a whole: notebooks stored clean, in order, listed in the book and README (the book's build and
pages are tested in tests/test_site.py)."""
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nb as nbtool  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")


def toc_files():
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [ch["file"] for ch in part["chapters"]]
    return files


def test_notebooks_exist_and_are_numbered_in_order():
    assert NOTEBOOKS, "no notebooks found"
    numbers = []
    for path in NOTEBOOKS:
        m = NAME.match(path.name)
        assert m, f"{path.name}: name notebooks NN_lower_case_words.ipynb"
        numbers.append(int(m.group(1)))
    assert numbers == list(range(len(numbers))), f"notebook numbers must run 00, 01, ... without gaps: {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_stored_form(path):
    stored = path.read_text(encoding="utf-8")
    assert nbtool.serialise(nbtool.clean(nbtool.read(path))) == stored, (
        f"{path.name} is not in stored form: run `make nb-clean` (or `make nb-refresh NB={path}`)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_its_title(path):
    first = nbtool.read(path).cells[0]
    number = path.name[:2]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {number} — "), (
        f"{path.name}: the first cell must be markdown starting '# {number} — Title'")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_checked_cells_hold_their_expected_output(path):
    for cell in nbtool.read(path).cells:
        if nbtool.is_checked(cell):
            assert cell.outputs, f"{path.name}: a '# NBVAL_CHECK_OUTPUT' cell has no stored output; run make nb-refresh"


def test_every_notebook_is_in_the_book_and_every_page_exists():
    files = toc_files()
    listed = [f for f in files if f.startswith("notebooks/")]
    assert sorted(listed) == [f"notebooks/{p.stem}" for p in NOTEBOOKS]
    for f in files:
        assert list(ROOT.glob(f + ".*")), f"book/_toc.yml names {f}, which does not exist"


def test_every_notebook_is_in_the_readme_syllabus():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}" in readme, f"README.md's syllabus does not link {path.name}"


def test_every_mutation_of_the_mutation_check_applies_to_todays_code():
    """tools/mutate.py is only useful while its mutations match the code: each must find its text once,
    change it, and name test files that exist."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("mutate", ROOT / "tools" / "mutate.py")
    mutate = importlib.util.module_from_spec(spec)
    sys.modules["mutate"] = mutate                       # dataclasses look their module up there
    spec.loader.exec_module(mutate)
    assert len({m.id for m in mutate.MUTATIONS}) == len(mutate.MUTATIONS) >= 40
    for m in mutate.MUTATIONS:
        assert (ROOT / m.file).read_text().count(m.old) == 1, f"{m.id}: its text is not in {m.file} exactly once"
        assert m.old != m.new
        assert all((ROOT / t).is_file() for t in m.tests if t.startswith("tests/")), m.id


def test_the_test_run_pins_the_small_budget():
    """On a GPU the budget would default to "full"; the checked outputs are those of the small runs."""
    import os

    from ftlib.budget import get_budget
    assert os.environ.get("FTLIB_BUDGET") == "small" and get_budget().name == "small"
