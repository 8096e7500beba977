"""The errata chapter (notebooks/20_seed_errata.ipynb): every entry complete, ids unique and consecutive, and the
list that the summary table is computed from in step with the entries."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks" / "20_seed_errata.ipynb"
SEEDS_DIR = ROOT.parent / "shared" / "seeds"
SEED_FILES = {"000": "000_aea4686527de71d4.txt", "001": "001_2b010f8e0a5a471e.txt", "002": "002_3337590c4af5c086.txt",
              "003": "003_d740a05376a7b249.txt", "004": "004_cad6dd51d5e0edf7.txt"}
LESSONS = {"00_start_here", "01_cross_entropy", "02_attention", "03_tokenizers_and_encoder", "04_decoder_and_generation", "05_data",
           "06_training_loop", "07_strategies", "08_overfitting", "09_rules_and_hybrid", "10_evaluation",
           "11_bert_on_gpu", "12_gpt_on_gpu", "13_instruction_tuning", "14_deployment", "15_named_entities", "16_sentence_pairs", "17_question_answering", "18_translation",
           "19_scaling_out"}
KINDS = {"maths", "code", "API", "reference", "claim", "other"}     # kinds of error
UPDATE = "update"          # true when the seed was written, outdated now: listed, not counted as an error
HEAD = re.compile(r"^### (E\d{3}) · (\w+)\s*$", re.M)


def _cells():
    return json.loads(NB.read_text(encoding="utf-8"))["cells"]


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _entries():
    """id -> dict(kind, text, seed_section, code: [sources of the code cells that follow the entry])."""
    out, section, current = {}, None, None
    for cell in _cells():
        src = _src(cell)
        if cell["cell_type"] == "markdown":
            current = None
            m = re.match(r"## Seed `(\d{3})_", src)
            if m:
                section = m.group(1)
            elif src.startswith("## "):
                section = None
            h = HEAD.match(src)
            if h:
                assert h.group(1) not in out, f"{h.group(1)} appears twice"
                current = h.group(1)
                out[current] = dict(kind=h.group(2), text=src, seed_section=section, code=[])
        elif current is not None:
            out[current]["code"].append(src)
    return out


def _entries_list():
    for cell in _cells():
        src = _src(cell)
        if cell["cell_type"] == "code" and "ENTRIES = [" in src:
            tree = ast.parse(src)
            for node in tree.body:
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "ENTRIES":
                    return ast.literal_eval(node.value)
    raise AssertionError("no ENTRIES list in the notebook")


def test_ids_unique_and_consecutive():
    ids = sorted(_entries())          # each id once (_entries asserts it); shown per seed, so not in id order
    assert len(ids) >= 86, "the first list had 86 entries; none may disappear"
    assert ids == [f"E{i:03d}" for i in range(1, len(ids) + 1)]


@pytest.mark.parametrize("eid", [f"E{i:03d}" for i in range(1, 87)])
def test_original_entries_kept(eid):
    assert eid in _entries()


def test_every_entry_is_complete():
    problems = []
    for eid, e in _entries().items():
        t = e["text"]
        m = re.search(r"\*\*Seed\*\* `(\d{3})_[0-9a-f]{16}\.txt`, (lines? \d+[^·]*)·", t)
        if not m:
            problems.append(f"{eid}: no seed file + line")
            continue
        if f"`{SEED_FILES[m.group(1)]}`" not in t:
            problems.append(f"{eid}: unknown seed file")
        if m.group(1) != e["seed_section"]:
            problems.append(f"{eid}: listed under seed {e['seed_section']} but cites seed {m.group(1)}")
        if not re.search(r"\*\*Claim\.\*\* 「[^」]+」 — \*[^*]+\*", t):
            problems.append(f"{eid}: no quoted claim with an English gloss")
        if not re.search(r"\*\*What is right\.\*\* \S.{20,}", t):
            problems.append(f"{eid}: no 'what is right'")
        if not re.search(r"\*\*Checked\.\*\* \S", t):
            problems.append(f"{eid}: no 'checked'")
        links = re.findall(r"\[Lesson (\d\d)\]\((\d\d_\w+)\.ipynb\)", t.split("**Lesson.**")[-1])
        if "**Lesson.**" not in t or not links:
            problems.append(f"{eid}: no lesson link")
        for num, name in links:
            if name not in LESSONS or not name.startswith(num):
                problems.append(f"{eid}: bad lesson link {num} -> {name}")
        if e["kind"] not in KINDS | {UPDATE}:
            problems.append(f"{eid}: unknown kind {e['kind']}")
    assert not problems, "\n".join(problems)


def test_code_and_maths_entries_have_a_cell():
    missing = [eid for eid, e in _entries().items() if e["kind"] in ("code", "maths") and not e["code"]]
    assert not missing, f"entries about code or maths without a code cell: {missing}"


def test_summary_list_matches_entries():
    listed = _entries_list()
    entries = _entries()
    assert [row[0] for row in listed] == sorted(entries), "ENTRIES (in id order) differ from the notebook's entries"
    for eid, seed, kind, lessons in listed:
        e = entries[eid]
        assert kind == e["kind"], f"{eid}: kind {kind} in ENTRIES, {e['kind']} in the entry"
        assert seed == e["seed_section"], f"{eid}: seed {seed} in ENTRIES, section {e['seed_section']}"
        linked = {int(n) for n, _ in re.findall(r"\[Lesson (\d\d)\]\((\d\d_\w+)\.ipynb\)", e["text"].split("**Lesson.**")[-1])}
        assert set(lessons) == linked, f"{eid}: lessons {lessons} in ENTRIES, {sorted(linked)} linked"


def test_checked_cells_hold_no_exception_messages():
    """Messages change between library versions: checked cells may show exception types, never messages."""
    for cell in _cells():
        if cell["cell_type"] == "code" and "NBVAL_CHECK_OUTPUT" in _src(cell):
            assert "show_error(" not in _src(cell)
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", ""))
                assert "Traceback" not in text and "Error:" not in text, text


@pytest.mark.skipif(not SEEDS_DIR.is_dir(), reason="the seed articles are not in this checkout")
def test_lines_and_quotes_are_in_the_seeds():
    problems = []
    for eid, e in _entries().items():
        m = re.search(r"\*\*Seed\*\* `(\d{3}_[0-9a-f]{16}\.txt)`, (lines? [^·]*)·", e["text"])
        lines = (SEEDS_DIR / m.group(1)).read_text(encoding="utf-8").splitlines()
        cited = [int(n) for n in re.findall(r"\d+", m.group(2))]
        if max(cited) > len(lines):
            problems.append(f"{eid}: line {max(cited)} beyond the end of {m.group(1)} ({len(lines)} lines)")
        text = re.sub(r"[\s*\\`]", "", "".join(lines))
        quote = re.search(r"「([^」]+)」", e["text"]).group(1)
        quote = re.sub(r"\\(.)", r"\1", quote)                     # markdown escapes
        first = re.split(r"…|⏎", quote)[0]
        first = re.sub(r"[\s*\\`]", "", first.strip("「」…. "))
        if len(first) >= 4 and first not in text:
            problems.append(f"{eid}: quote {first[:30]!r} not found in {m.group(1)}")
            continue
        near = set()                                               # the cited lines and ranges, +-3
        for a, b in re.findall(r"(\d+)(?:-(\d+))?", m.group(2)):
            near.update(range(int(a) - 3, int(b or a) + 4))
        hits = {i + 1 for i, line in enumerate(lines) if first[:8] in re.sub(r"[\s*\\`]", "", line)}
        if hits and not hits & near:
            problems.append(f"{eid}: quote found on lines {sorted(hits)}, not at the cited {m.group(2).strip()}")
    assert not problems, "\n".join(problems)



def _count_problems(listed, texts, printed, readme_row):
    """What is wrong with the error count: updates (kind 'update') must say so in their text and be left out of
    the count that the summary cell prints and the README's errata row states."""
    updates = [eid for eid, _, kind, _ in listed if kind == UPDATE]
    n_errors = len(listed) - len(updates)
    problems = [f"{eid}: an update must say it is one" for eid in updates
                if not re.search(r"an update, not a correction", texts[eid])]
    expected = f"entries in all: {len(listed)}: {n_errors} errors, and {len(updates)} update"
    if expected not in printed:
        problems.append(f"the summary cell does not print {expected!r}")
    if f"{n_errors} errors" not in readme_row or f"E001–E{len(listed):03d}" not in readme_row:
        problems.append(f"README's errata row does not state E001–E{len(listed):03d} and {n_errors} errors")
    problems += [f"README's errata row does not name the update {eid}" for eid in updates if eid not in readme_row]
    return problems


def _readme_errata_row():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return next(line for line in readme.splitlines() if "20_seed_errata.ipynb) |" in line)


def _summary_output():
    summary = next(c for c in _cells() if c["cell_type"] == "code" and "ENTRIES = [" in _src(c))
    return "".join("".join(o.get("text", "")) for o in summary.get("outputs", []))


def test_updates_are_not_counted_as_errors():
    """A correction of a statement that was true when written is listed, not counted as a seed error."""
    listed = _entries_list()
    texts = {eid: e["text"] for eid, e in _entries().items()}
    assert any(kind == UPDATE for _, _, kind, _ in listed)
    assert _count_problems(listed, texts, _summary_output(), _readme_errata_row()) == []


def test_the_count_rule_rejects_an_update_counted_as_an_error():
    """The wrong answers the rule above rejects: the update counted among the errors (in the README or the
    printed count), or an entry marked 'update' whose text does not say it is one."""
    listed = _entries_list()
    texts = {eid: e["text"] for eid, e in _entries().items()}
    n, n_errors = len(listed), sum(kind != UPDATE for _, _, kind, _ in listed)
    row, printed = _readme_errata_row(), _summary_output()
    wrong_row = row.replace(f"{n_errors} errors", f"{n} errors")
    assert wrong_row != row and _count_problems(listed, texts, printed, wrong_row)
    wrong_print = printed.replace(f"{n_errors} errors", f"{n} errors")
    assert wrong_print != printed and _count_problems(listed, texts, wrong_print, row)
    update = next(eid for eid, _, kind, _ in listed if kind == UPDATE)
    texts[update] = texts[update].replace("an update, not a correction", "a correction")
    assert _count_problems(listed, texts, printed, row)
