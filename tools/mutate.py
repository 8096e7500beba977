"""Mutation check: does the test suite notice when ftlib's core code is wrong?

Each mutation below changes one line of a core module (losses, attention, the training
engine, batches, text, LoRA, metrics, language modelling, the benchmark's Trainer
baseline) into a plausible mistake that changes a result. For each one the script
copies the repository (without notebooks and results) into a scratch folder, applies the
mutation there, and runs the tests that cover that code. A mutation is *killed* when a
test fails, and *survives* when every test still passes: a survivor is a hole in the
suite. Nothing in your working tree is changed.

    python tools/mutate.py                 # every mutation; report on stdout
    python tools/mutate.py --only T1 T2    # some of them
    python tools/mutate.py --list          # what each one does
    python tools/mutate.py --report results/mutations.md

Run it with the course's environment (``.venv/bin/python tools/mutate.py``) and the same
variables as the tests (``FTLIB_DATA_DIR``, ``HF_HUB_OFFLINE=1`` offline). It takes about
as long as the fast unit tests it runs, once per mutation (~10-20 minutes on 2 cores).
The first run is the unmutated copy: if its tests fail, the script stops there.
Exit status: 0 when every mutation is killed, 1 when any survives, 2 on an error.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str          # relative to the repository root
    old: str           # must occur exactly once in the file
    new: str
    what: str          # the mistake, in words
    tests: tuple       # pytest arguments: the tests that cover this code


LOSS = ("tests/test_losses.py",)
ATTN = ("tests/test_attention.py",)
ENGINE = ("tests/test_train.py", "tests/test_engine.py", "-m", "not compile")
BATCH = ("tests/test_engine.py", "tests/test_train.py", "-m", "not compile")
TEXT = ("tests/test_train.py", "tests/test_bad_input.py", "-m", "not compile")
LORA = ("tests/test_lora.py",)
METRICS = ("tests/test_metrics.py",)
SQUAD = ("tests/test_squad.py",)
LM = ("tests/test_lm.py",)
BENCH = ("tests/test_bench.py",)
DIST = ("tests/test_distributed.py",)
MEM = ("tests/test_memory.py",)
PAIRS = ("tests/test_heads.py", "tests/test_frozen.py")

MUTATIONS = [
    # ------------------------------------------------------------------ losses (lesson 01)
    Mutation("L1", "ftlib/losses.py", "shifted = logits - m\n", "shifted = logits\n",
             "log_softmax without the max shift (overflows for large logits)", LOSS),
    Mutation("L2", "ftlib/losses.py", "loss = loss + label_smoothing / n_classes * smooth",
             "loss = loss + label_smoothing * smooth", "label smoothing spread without dividing by C", LOSS),
    Mutation("L3", "ftlib/losses.py", "return _reduce(loss, reduction, w_y.sum())",
             "return _reduce(loss, reduction, keep.sum())", "weighted mean divided by the count, not the weights",
             LOSS),
    Mutation("L4", "ftlib/losses.py", "pos = pos * pos_weight", "neg = neg * pos_weight",
             "pos_weight applied to the negative term", LOSS),
    Mutation("L5", "ftlib/losses.py", "ratio = torch.where(p > 0, p / q, torch.ones_like(p))",
             "ratio = torch.where(p > 0, q / p, torch.ones_like(p))", "KL divergence with p and q swapped", LOSS),
    Mutation("L6", "ftlib/losses.py", "q = target * (1 - label_smoothing) + label_smoothing / n_classes",
             "q = target", "label smoothing ignored for probability targets", LOSS),
    # --------------------------------------------------------------- attention (lesson 02)
    Mutation("A1", "ftlib/attention.py", "scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale",
             "scale = 1.0 / q.shape[-1] if scale is None else scale", "scores scaled by 1/d instead of 1/sqrt(d)",
             ATTN),
    Mutation("A2", "ftlib/attention.py", "    if causal:\n        scores", "    if False:\n        scores",
             "causal=True ignored", ATTN),
    Mutation("A3", "ftlib/attention.py", "scores = scores.masked_fill(~mask, float(\"-inf\"))",
             "scores = scores.masked_fill(mask, float(\"-inf\"))", "boolean mask inverted", ATTN),
    Mutation("A4", "ftlib/attention.py", "weights = torch.softmax(scores, dim=-1)",
             "weights = torch.softmax(scores, dim=-2)", "softmax over the queries instead of the keys", ATTN),
    Mutation("A5", "ftlib/attention.py", "return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)",
             "return x.view(B, self.n_heads, T, self.head_dim)", "heads split without the transpose", ATTN),
    Mutation("A6", "ftlib/attention.py", "        return mask & pad\n", "        return mask | pad\n",
             "a boolean mask combined with the padding mask by OR", ATTN),
    # ------------------------------------------------------------- the training engine
    Mutation("T1", "ftlib/train.py",
             "group = min(grad_accum_steps, n_batches - (i // grad_accum_steps) * grad_accum_steps)",
             "group = grad_accum_steps", "the last accumulation group divided by the full group size (M1)", ENGINE),
    Mutation("T2", "ftlib/train.py", "if stop or (checkpoint_every and pos[\"step\"] % checkpoint_every == 0):",
             "if stop:", "checkpoint_every ignored (M3)", ENGINE),
    Mutation("T3", "ftlib/train.py", "([p for p in g[\"params\"] if p.ndim < 2], 0.0)",
             "([p for p in g[\"params\"] if p.ndim < 2], decay)", "weight decay on biases and norm weights",
             ENGINE),
    Mutation("T4", "ftlib/train.py", "linear_schedule(optimizer, math.ceil(warmup_ratio * total_steps), total_steps)",
             "linear_schedule(optimizer, 0, total_steps)", "warm-up ignored", ENGINE),
    Mutation("T5", "ftlib/train.py", "return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))",
             "return 1.0", "no decay after warm-up", ENGINE),
    Mutation("T6", "ftlib/train.py", "torch.nn.utils.clip_grad_norm_(params, max_grad_norm)", "pass",
             "gradient clipping skipped", ENGINE),
    Mutation("T7", "ftlib/train.py", "        model.load_state_dict(best_weights)\n", "        pass\n",
             "early stopping keeps the last weights, not the best", ENGINE),
    Mutation("T8", "ftlib/train.py", "total += loss.double() * items", "total += loss.double()",
             "evaluation averages batch means instead of items", ENGINE),
    Mutation("T9", "ftlib/train.py", "    return loss, valid.sum(), correct",
             "    return loss, labels.new_tensor(labels.shape[0]), correct",
             "ignored (-100) rows counted as examples (loss weights, accuracy)", ENGINE),
    Mutation("T10", "ftlib/train.py", "        _set_rng_state(saved[\"rng\"], gen)\n", "        pass\n",
             "resume does not restore the shuffling state", ENGINE),
    Mutation("T11", "ftlib/train.py", "optimizer.zero_grad(set_to_none=True)", "pass",
             "gradients never zeroed between steps", ENGINE),
    Mutation("T12", "ftlib/train.py", "    n = (labels[:, 1:] != IGNORE).sum()\n    return total / n.clamp(min=1), n, None",
             "    n = (labels != IGNORE).sum()\n    return total / n.clamp(min=1), n, None",
             "causal LM mean over every label, not the predicted ones", ENGINE),
    Mutation("T13", "ftlib/train.py", "examples += _rows(batch)", "examples += batch[\"input_ids\"].shape[0]",
             "throughput counts padding rows", ENGINE),
    Mutation("T14", "ftlib/train.py", "if diverge_factor and step > 1 and value > diverge_factor * max(first, 1e-3):",
             "if False:", "divergence never flagged", ENGINE),
    Mutation("T15", "ftlib/train.py", "    if pos[\"bad_epochs\"] >= early_stopping_patience:",
             "    if pos[\"bad_epochs\"] > early_stopping_patience:", "early stopping one epoch late", ENGINE),
    # ------------------------------------------------------------------------ batches
    Mutation("B1", "ftlib/batches.py", "        return pad / total\n", "        return 0.0\n",
             "padding_fraction() returns 0 (M2)", BATCH),
    Mutation("B2", "ftlib/batches.py", "labels[-pad:] = IGNORE", "pass",
             "static padding rows keep real labels (counted twice)", BATCH),
    Mutation("B3", "ftlib/batches.py", "self.generator = torch.Generator().manual_seed(seed)",
             "self.generator = torch.Generator().manual_seed(0)", "seed ignored (M4)", BATCH),
    Mutation("B4", "ftlib/batches.py",
             "return min(self.input_ids.shape[1], _round_up(max(self.lengths[i] for i in rows), self.pad_multiple))",
             "return self.input_ids.shape[1]", "every batch padded to the longest row of the data set", BATCH),
    Mutation("B5", "ftlib/batches.py", "            return self.n_examples // self.batch_size",
             "            return math.ceil(self.n_examples / self.batch_size)",
             "static shuffled batches keep the short last batch", BATCH),
    # --------------------------------------------------------------------------- text
    Mutation("X1", "ftlib/text.py", "order = torch.randperm(len(full), generator=self.generator).tolist()",
             "order = list(range(len(full)))", "length-grouped batches not shuffled (M5)", TEXT),
    Mutation("X2", "ftlib/text.py", "mega = sorted(perm[start:start + self.mega], key=lambda i: -self.lengths[i])",
             "mega = perm[start:start + self.mega]", "mega-batches not sorted by length", TEXT),
    Mutation("X3", "ftlib/text.py", "generator = torch.Generator().manual_seed(seed)",
             "generator = torch.Generator()", "make_loader's seed ignored", TEXT),
    # --------------------------------------------------------------------------- LoRA
    Mutation("R1", "ftlib/lora.py", "self.scaling = alpha / r", "self.scaling = alpha",
             "LoRA scaled by alpha instead of alpha / r", LORA),
    Mutation("R2", "ftlib/lora.py", "self.base.weight -= self.delta_weight()", "self.base.weight += self.delta_weight()",
             "unmerge adds the update again", LORA),
    Mutation("R3", "ftlib/lora.py", "        for p in base.parameters():\n            p.requires_grad_(False)\n",
             "", "the base layer is not frozen", LORA),
    Mutation("R4", "ftlib/lora.py", "        if any(t in n for t in trainable):\n            p.requires_grad_(True)",
             "        if any(t in n for t in trainable):\n            pass", "the classification head stays frozen",
             LORA),
    Mutation("R5", "ftlib/lora.py", "return (self.lora_B @ self.lora_A) * self.scaling",
             "return (self.lora_B @ self.lora_A)", "merged update without the scaling", LORA),
    # ------------------------------------------------------------------------ metrics
    Mutation("M1", "ftlib/metrics.py", "f1 = ratio(2 * prec * rec, prec + rec)", "f1 = (prec + rec) / 2",
             "F1 as the arithmetic mean of P and R", METRICS),
    Mutation("M2", "ftlib/metrics.py",
             "w = np.ones_like(tp) / len(tp) if average == \"macro\" else true_pos / true_pos.sum()",
             "w = np.ones_like(tp) / len(tp)", "weighted average computed as macro", METRICS),
    Mutation("M3", "ftlib/metrics.py", "i = rng.integers(0, n, n)", "i = rng.permutation(n)",
             "bootstrap without replacement", METRICS),
    Mutation("M4", "ftlib/metrics.py", "sum(min(c, max_ref[g]) for g, c in hyp_counts.items())",
             "sum(c for g, c in hyp_counts.items() if g in max_ref)", "BLEU n-gram matches not clipped", METRICS),
    Mutation("M5", "ftlib/metrics.py", "bp = 1.0 if sys_len >= ref_len else",
             "bp = 1.0 if True else", "no brevity penalty", METRICS),
    Mutation("M6", "ftlib/metrics.py", "ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]",
             "ref_len += max(len(r) for r in rs)", "reference length: the longest, not the closest", METRICS),
    Mutation("M7", "ftlib/metrics.py", "return float(np.sum(rc[\"count\"][full] / rc[\"count\"].sum() * gaps))",
             "return float(np.mean(gaps))", "ECE without weighting bins by their size", METRICS),
    Mutation("M8", "ftlib/metrics.py", "sizes[: n % k] += 1", "sizes[-1] += n % k",
             "k-fold remainder all in the last fold", METRICS),
    Mutation("M9", "ftlib/metrics.py", "return 100.0 * (1 + beta ** 2) * p * r / (beta ** 2 * p + r)",
             "return 100.0 * 2 * p * r / (p + r)", "chrF with beta = 1 (precision and recall alike)", METRICS),
    # -------------------------------------------------------------- extractive QA (lesson 17)
    Mutation("Q1", "ftlib/tasks.py", "        em = max(em, float(pt == rt))\n", "        em = float(pt == rt)\n",
             "SQuAD exact match of the last reference, not the best over all of them", SQUAD),
    Mutation("Q2", "ftlib/tasks.py", "stride=stride, return_overflowing_tokens=True",
             "stride=0, return_overflowing_tokens=True", "windows that do not overlap", SQUAD),
    Mutation("Q3", "ftlib/frozen.py",
             "loss = (F.cross_entropy(start, start_positions) + F.cross_entropy(end, end_positions)) / 2",
             "loss = F.cross_entropy(start, start_positions)", "QA loss on the start position only", SQUAD),
    Mutation("Q4", "ftlib/tasks.py", "            per[ex].append((score, contexts[ex][a:b], a))\n",
             "            per[ex] = [(score, contexts[ex][a:b], a)]\n",
             "a question's answer taken from its last window's candidates, not gathered across windows", SQUAD),
    Mutation("Q5", "ftlib/tasks.py", '"gain": ci(ours[:, 1], base[:, 1], fn=lambda a, b: a.mean() - b.mean())',
             '"gain": ci(ours[:, 1], base[:, 1], fn=lambda a, b: a.mean() - a.mean())',
             "the F1 gain over the baseline compares the system with itself (always 0)", SQUAD),
    Mutation("N1", "ftlib/tasks.py", "lambda x, y: f1_from_counts(*x.T) - f1_from_counts(*y.T), a, b,",
             "lambda x, y: f1_from_counts(*y.T) - f1_from_counts(*x.T), a, b,",
             "the entity F1 gain subtracts the wrong way round", ("tests/test_tasks.py",)),
    Mutation("O1", "ftlib/models.py", "            _HUB_REACHABLE[endpoint] = False\n",
             "            _HUB_REACHABLE[endpoint] = True\n",
             "an unreachable hub taken for a reachable one (a minute of retries before the error)",
             ("tests/test_foundation.py", "-k", "unreachable")),
    Mutation("P1", "ftlib/dpo.py", '"gain": paired_bootstrap_diff(right_after, right_before,',
             '"gain": paired_bootstrap_diff(right_after, right_after,',
             "the preference gain compares the DPO model with itself (always 0)",
             ("tests/test_chat_dpo.py", "-k", "preference_gain")),
    Mutation("P2", "ftlib/dpo.py", "    rejected_reward = beta * (policy_rejected - ref_rejected)\n",
             "    rejected_reward = beta * policy_rejected\n",
             "the rejected answer's reward forgets the reference",
             ("tests/test_chat_dpo.py", "-k", "dpo_loss_formula")),
    Mutation("K1", "ftlib/data.py", "kept = np.array([i for i in held_idx if sentences[i] in clean], dtype=int)",
             "kept = np.array(list(held_idx), dtype=int)",
             "leak-free folds that keep the held-out phrases found in their training phrases (plain k-fold)",
             ("tests/test_data_sets.py", "-k", "leak")),
    Mutation("P3", "ftlib/dpo.py", "position_ids=length[:, None] + steps,", "position_ids=steps[None].expand(len(length), -1),",
             "shared-prompt answers start again at position 0 instead of after their prompt",
             ("tests/test_chat_dpo.py", "-k", "shared_prompt")),
    Mutation("P4", "ftlib/dpo.py", "    r_ids, r_labels, r_mask = (batch[k][inter] for k in",
             "    r_ids, r_labels, r_mask = (batch[k] for k in",
             "shared-prompt answers not put in the repeated cache's order (a pair's answer after another prompt)",
             ("tests/test_chat_dpo.py", "-k", "shared_prompt")),
    Mutation("P5", "ftlib/dpo.py", "head_at_labels(head, hidden, r_labels)",
             "head_at_labels(head, hidden, r_labels.where(steps > 0, IGNORE))",
             "shared-prompt scoring skips each answer's first token (the one the prompt's last state predicts)",
             ("tests/test_chat_dpo.py", "-k", "shared_prompt")),
    # ------------------------------------------------------------- language modelling
    Mutation("G1", "ftlib/lm.py", "    target = labels[:, 1:].reshape(-1)\n", "    target = labels[:, :-1].reshape(-1)\n",
             "causal LM loss without the shift (predicts the current token)", LM),
    Mutation("G2", "ftlib/lm.py", "stream += list(d) + ([eos_id] if eos_id is not None else [])",
             "stream += list(d)", "pack_blocks drops the end-of-document token", LM),
    Mutation("G3", "ftlib/lm.py", "    y = labels[:, 1:].reshape(-1)\n", "    y = labels[:, :-1].reshape(-1)\n",
             "chunked LM loss without the shift", LM),
    Mutation("G4", "ftlib/lm.py", "last_labels[0, :rest] = last[0, :rest]", "pass",
             "the kept remainder block has no labels", LM),
    # ----------------------------------------------------- the benchmark's Trainer baseline
    Mutation("H1", "ftlib/bench.py", "warmup_steps=s[\"warmup_ratio\"]", "warmup_steps=0",
             "the Trainer baseline runs without warm-up (M6)", BENCH),
    Mutation("H2", "ftlib/bench.py", "lr_scheduler_type=\"linear\"", "lr_scheduler_type=\"constant\"",
             "the Trainer baseline without linear decay", BENCH),
    # --------------------------------------------------- data parallelism (torchrun, gloo)
    Mutation("D1", "ftlib/distributed.py", "return loss * (items * self.world / total.clamp(min=1))",
             "return loss", "every process's mean loss weighted alike, whatever its share of the items", DIST),
    Mutation("D2", "ftlib/train.py",
             "examples, tokens = distributed.all_reduce_sum(examples), distributed.all_reduce_sum(tokens)",
             "pass", "example and token counts of rank 0 only", DIST),
    Mutation("D3", "ftlib/train.py", "            dp.check_same(\"first batches of the epoch\", _checksum(batch))\n",
             "            pass\n", "no check that every process builds the same global batches", DIST),
    # ------------------------------------------------------ the memory arithmetic (lesson 19)
    Mutation("Y1", "ftlib/memory.py", "attention=3 * layers * batch * heads * seq_len * seq_len * b",
             "attention=layers * batch * heads * seq_len * seq_len * b",
             "one L x L matrix a layer saved, not three (probabilities, dropout mask, dropped)", MEM),
    Mutation("Y2", "ftlib/memory.py", "if key not in self._params and key not in self._seen:",
             "if key not in self._seen:", "the parameters counted as activations", MEM),
    Mutation("Y3", "ftlib/memory.py", '"gradients": stage >= 2', '"gradients": stage >= 1',
             "ZeRO stage 1 splits the gradients too", MEM),
    # ------------------------------------------------------ reading training curves (lesson 06)
    Mutation("E1", "ftlib/train.py", "and train_loss[-1] < train_loss[best])", ")",
             "overfits() forgets that the training loss must go on falling (a diverging run counts)", ("tests/test_train.py", "-k", "overfit")),
    Mutation("E2", "ftlib/train.py", "return int(np.argmin(eval_loss))",
             "return int(np.argmax(eval_loss))",
             "the best epoch (best_epoch, overfits) is the one with the highest validation loss", ("tests/test_train.py", "-k", "overfit or best_epoch")),
    # ------------------------------------------------------ sentence pairs (lesson 16)
    Mutation("C1", "ftlib/heads.py", "torch.tensor([scale * threshold / 2, -scale * threshold / 2])",
             "torch.tensor([-scale * threshold / 2, scale * threshold / 2])",
             "the head started at a threshold has the threshold's sign flipped (cosine > -t)", PAIRS),
    Mutation("C2", "ftlib/heads.py", "possible[1:n] = s[1:] > s[:-1]", "pass",
             "best_threshold puts cuts between two equal scores (a cut that cannot be made)", PAIRS),
    Mutation("C3", "ftlib/frozen.py", "v = mean_pool(x, in_b.long())",
             "v = mean_pool(x, real.long())",
             "the cross-encoder's second vector is the mean of the whole pair, not of segment 1", PAIRS),
]

IGNORE_DIRS = {".git", ".venv", "notebooks", "results", "book", "data", "__pycache__", ".pytest_cache",
               "ftlib.egg-info", ".gpu", "_build"}


def copy_tree(dest: Path):
    def ignore(folder, names):
        return [n for n in names if n in IGNORE_DIRS or n.endswith((".ipynb", ".pyc"))]
    shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True)


def run_tests(where: Path, args, timeout: int) -> tuple[str, float, str]:
    env = {**os.environ, "PYTHONPATH": str(where), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           "--no-header", "-o", "addopts=", *args]
    t0 = time.time()
    try:
        out = subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed (timeout)", time.time() - t0, ""
    seconds = time.time() - t0
    tail = (out.stdout + out.stderr).strip().splitlines()
    summary = tail[-1] if tail else ""
    if out.returncode == 0:
        return "survived", seconds, summary
    if out.returncode == 1:
        failed = [ln[len("FAILED "):].split(" - ")[0] for ln in tail if ln.startswith("FAILED ")]
        return "killed", seconds, (failed[0] if failed else summary)
    return f"error (pytest exit {out.returncode})", seconds, summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="mutation ids to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--report", help="also write the report (markdown) to this file")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per test run (default 900)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    ap.add_argument("--update", action="store_true",
                    help="with --report: replace only the rows of the mutations run now in the existing report")
    a = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not a.only or m.id in a.only]
    unknown = set(a.only or ()) - {m.id for m in MUTATIONS}
    if unknown:
        print(f"unknown mutation ids: {sorted(unknown)}; --list shows them", file=sys.stderr)
        return 2
    if a.list:
        for m in chosen:
            print(f"{m.id:4} {m.file:20} {m.what}")
        return 0
    for m in chosen:                                    # every mutation must apply to today's code
        text = (ROOT / m.file).read_text()
        if text.count(m.old) != 1:
            print(f"{m.id}: the text to mutate occurs {text.count(m.old)} times in {m.file} (must be once); "
                  "update the mutation to today's code", file=sys.stderr)
            return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="ftlib-mutate-") as tmp:
        where = Path(tmp)
        copy_tree(where)
        check = subprocess.run([sys.executable, "-c", "import ftlib; print(ftlib.__file__)"], cwd=where,
                               env={**os.environ, "PYTHONPATH": str(where)}, capture_output=True, text=True)
        if not check.stdout.strip().startswith(str(where)):
            print(f"the copy's ftlib is not the one imported ({check.stdout.strip() or check.stderr})", file=sys.stderr)
            return 2
        if not a.no_baseline:
            suites = sorted({m.tests for m in chosen})
            for tests in suites:
                result, seconds, summary = run_tests(where, tests, a.timeout)
                print(f"baseline {' '.join(tests)}: {result} in {seconds:.0f} s ({summary})", flush=True)
                if result != "survived":
                    print("the unmutated code fails these tests: fix that first", file=sys.stderr)
                    return 2
        for m in chosen:
            path = where / m.file
            original = path.read_text()
            path.write_text(original.replace(m.old, m.new))
            try:
                result, seconds, summary = run_tests(where, m.tests, a.timeout)
            finally:
                path.write_text(original)
            rows.append((m, result, seconds, summary))
            print(f"{m.id:4} {result:9} {seconds:5.0f} s  {m.what}  [{summary}]", flush=True)
    table = {}
    if a.update and a.report and Path(a.report).is_file():         # keep the other mutations' rows
        for line in Path(a.report).read_text().splitlines():
            cells = [c.strip() for c in line.split(" | ")]
            if line.startswith("| ") and cells[0][2:] in {m.id for m in MUTATIONS}:
                table[cells[0][2:]] = line
    for m, result, seconds, summary in rows:
        tests = " ".join(t.replace("tests/", "") for t in m.tests if t.startswith("tests/"))
        caught = summary.replace("tests/", "").replace("|", "\\|") if result.startswith("killed") else ""
        table[m.id] = f"| {m.id} | `{m.file}` | {m.what} | {tests} | {result} ({seconds:.0f} s) | {caught} |"
    order = [m.id for m in MUTATIONS if m.id in table]
    lines = ["| id | module | mutation | tests run | result | caught by |", "|---|---|---|---|---|---|"]
    lines += [table[i] for i in order]
    results = {i: table[i].split(" | ")[4] for i in order}
    killed = sum(r.startswith("killed") for r in results.values())
    survivors = [i for i, r in results.items() if r.startswith("survived")]
    errors = [i for i, r in results.items() if r.startswith("error")]
    lines.append("")
    lines.append(f"{killed} of {len(order)} mutations killed; survivors: {', '.join(survivors) or 'none'}"
                 f"{'; errors: ' + ', '.join(errors) if errors else ''}.")
    report = "\n".join(lines)
    print("\n" + report)
    if a.report:
        head = (f"# Mutation check\n\n`python tools/mutate.py --report {a.report}` on "
                f"{time.strftime('%Y-%m-%d')} (Python {sys.version.split()[0]}). Each row: one mistake put into a "
                "copy of ftlib, and whether the tests that cover that code noticed it (see tools/mutate.py).\n\n")
        Path(a.report).write_text(head + report + "\n")
    return 1 if survivors else (2 if errors else 0)


if __name__ == "__main__":
    sys.exit(main())
