"""Benchmarks of notebooks 11 and 12, and carrying weights to an offline machine.

    python -m ftlib bench [--budget small|full] [--out results]      (or: python -m ftlib.bench ...)
    python -m ftlib bench export-weights DIR [--model course-gpt] [--max-shard-size 60MB]

``run`` measures, on whatever device ``ftlib.pick_device()`` finds:

* **BERT**: SST-2 fine-tuning of course-bert through ``ftlib.train.fit`` (notebook 11's recipe:
  static length buckets, a mask with no host read, bf16, fused AdamW, torch.compile with the
  compilation before the clock), transformers' ``Trainer`` at the same hyper-parameters with its
  defaults and tuned, and an ablation that adds one ingredient at a time: dev accuracy per
  epoch, training samples/s, compile seconds, peak memory;
* **GPT**: causal-LM training of course-gpt through the same ``fit``: tokens/s, FLOPs per token
  (``ftlib.flops``: matmul weights only), achieved TFLOP/s and model FLOPs utilisation (MFU; no
  peak is known for a CPU). ``--random-init`` measures a random model of course-gpt's
  configuration, for a GPU machine that cannot receive the weights.

Size flags (``--train-size``, ``--epochs``, ``--steps``, ``--seq-len``, ``--batch-size``) rehearse the
``full`` settings on a CPU in minutes; rows that need CUDA (CUDA graphs) are reported as skipped.

It writes ``OUT/<timestamp>-<device>.json`` (hardware, software versions, settings, every
number) and rewrites ``OUT/latest.md``, a table of every results file in ``OUT``.
Nothing here invents a number: a GPU row exists only where the benchmark ran on that GPU.

``export-weights`` (:func:`ftlib.deploy.export_weights`) saves a model as bfloat16 safetensors in shards smaller than
``--max-shard-size`` (plus its tokenizer and a ``MANIFEST.txt`` of sizes and SHA-256 sums), for
copying to a machine without internet through a channel that limits file sizes. course-gpt's
GGUF file is 98 MB, over a 64 MiB per-transfer limit; de-quantised to bfloat16 its largest
tensor, the 49,152 x 576 embedding, is 56.6 MB, so 60 MB shards fit (float32 would not:
113 MB for that one tensor). On the offline machine ``ftlib.load_model(DIR, task="causal-lm")``
loads the folder.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
from pathlib import Path

import torch

import ftlib
from ftlib.errors import CourseError

__all__ = ["SETTINGS", "run", "hardware_info", "software_info", "write_results", "render_table",
           "main"]

# course-gpt's architecture (SmolLM2-135M): tokens/s and MFU do not depend on the weights, so a GPU
# machine without the weights measures a randomly initialised model of this configuration.
COURSE_GPT_CONFIG = dict(model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)

SETTINGS = {
    # `tiny` checks the machinery (tests); `small` is the CPU run; `full` the GPU run. `python -m ftlib
    # bench --budget full --train-size 512 --epochs 1 --seq-len 64 --steps 2` rehearses `full` on a CPU.
    "tiny": {"bert": dict(model="course-bert", train_size=64, eval_size=64, epochs=1, batch_size=32, lr=1e-4,
                          warmup_ratio=0.06, max_length=64, compile=False, eval_batch_size=64, pad_multiple=16,
                          trainer=True, ablation=False),
             "gpt": dict(model="course-gpt", batch_size=2, seq_len=32, warmup_steps=1, steps=2, lr=5e-5,
                         compile=False, random_init=False)},
    "small": {"bert": dict(model="course-bert", train_size=512, eval_size=400, epochs=1, batch_size=32, lr=1e-4,
                           warmup_ratio=0.06, max_length=64, compile=False, eval_batch_size=256, pad_multiple=16,
                           trainer=True, ablation=True),
              "gpt": dict(model="course-gpt", batch_size=4, seq_len=64, warmup_steps=1, steps=3, lr=5e-5,
                          compile=False, random_init=False)},
    "full": {"bert": dict(model="course-bert", train_size=None, eval_size=None, epochs=3, batch_size=256, lr=2e-4,
                          warmup_ratio=0.06, max_length=64, compile=True, eval_batch_size=1024, pad_multiple=16,
                          trainer=True, ablation=True, ablation_epochs=1),
             "gpt": dict(model="course-gpt", batch_size=16, seq_len=1024, warmup_steps=3, steps=20, lr=5e-5,
                         compile=True, random_init=False)},
}

# The ablation: one ingredient added at a time, each row a full fit() of the same run.
ABLATION = [
    ("eager fp32", dict(dtype="float32", fused=False, static=False, mask="2d", compile=False)),
    ("+ bf16 autocast", dict(dtype="bfloat16", fused=False, static=False, mask="2d", compile=False)),
    ("+ fused AdamW", dict(dtype="bfloat16", fused=True, static=False, mask="2d", compile=False)),
    ("+ static shapes, 4-D mask", dict(dtype="bfloat16", fused=True, static=True, mask="4d", compile=False)),
    ("+ torch.compile", dict(dtype="bfloat16", fused=True, static=True, mask="4d", compile=True)),
    ("+ CUDA graphs", dict(dtype="bfloat16", fused=True, static=True, mask="4d", compile="reduce-overhead")),
]


def hardware_info(device, info: dict | None = None) -> dict:
    """What ran the benchmark: ``ftlib.device.describe_device`` (kept under this name for old results)."""
    info = info or ftlib.describe_device(device)
    return {"device": info["device"], "cpu": info["cpu"], "cpu_threads": info["cpu threads"],
            "gpu": info.get("gpu"), "gpu_memory_gib": info.get("gpu memory (GiB)"), "cuda": info.get("cuda"),
            "driver": info.get("driver"), "compute_capability": info.get("compute capability")}


def software_info(info: dict | None = None) -> dict:
    info = info or ftlib.describe_device("cpu")
    return {k: info[k] for k in ("python", "torch", "transformers", "peft", "datasets")} | {"ftlib": ftlib.__version__}


def _sst2(s: dict):
    from ftlib.text import tokenize_dataset

    sst2 = ftlib.load_sst2()
    tokenizer = ftlib.load_tokenizer(s["model"])
    train = sst2["train"] if s["train_size"] is None else sst2["train"].shuffle(seed=0).select(
        range(min(s["train_size"], len(sst2["train"]))))
    dev = sst2["validation"] if s["eval_size"] is None else sst2["validation"].select(
        range(min(s["eval_size"], len(sst2["validation"]))))
    return tokenizer, tokenize_dataset(train, tokenizer, s["max_length"]), tokenize_dataset(dev, tokenizer,
                                                                                         s["max_length"])


def engine_fit(s: dict, train_tok, dev_tok, tokenizer, device, *, dtype="bfloat16", fused=True, static=True,
               mask="4d", compile=None, progress=False) -> dict:
    """One ``ftlib.train.fit`` of course-bert on SST-2 with these ingredients; what it measured."""
    from ftlib.batches import DeviceBatches
    from ftlib.device import PeakMemory
    from ftlib.train import fit

    compile = s["compile"] if compile is None else compile
    dtype = getattr(torch, dtype) if device.type != "mps" else torch.float32
    ftlib.seed_everything(0)
    model = ftlib.load_model(s["model"], task="classification", num_labels=2)
    pad = s["pad_multiple"] if static else 8
    train = DeviceBatches(train_tok, s["batch_size"], tokenizer.pad_token_id, device, shuffle=True, static=static,
                          pad_multiple=pad, mask=mask)
    dev = DeviceBatches(dev_tok, s["eval_batch_size"], tokenizer.pad_token_id, device, static=static,
                        pad_multiple=pad, mask=mask)
    with PeakMemory(device) as mem:
        h = fit(model, train, dev, epochs=s["epochs"], lr=s["lr"], warmup_ratio=s["warmup_ratio"], dtype=dtype,
                fused=fused, compile=compile, device=device, progress=progress, verbose=False)
    del model
    return {"epoch_accuracy": h.eval_accuracy, "epoch_loss": h.train_loss, "train_seconds": h.train_seconds,
            "compile_seconds": h.compile_seconds, "wall_seconds": sum(h.seconds) + h.compile_seconds,
            "samples_per_s": h.examples / h.train_seconds, "examples": h.examples, "peak_memory_mb": mem.peak_mb,
            "settings": dict(dtype=str(dtype).replace("torch.", ""), fused_adamw=fused, static=static, mask=mask,
                             compile=compile, pad_multiple=pad, n_train=train.n_examples,
                             steps=len(h.step_loss))}


def trainer_arguments(s: dict, device, dtype, out_dir, *, tuned: bool = False):
    """``TrainingArguments`` for the ``Trainer`` baseline: the engine's recipe (AdamW, weight decay 0.01,
    clipping at 1, linear decay after a warm-up of ``warmup_ratio`` of the steps -- transformers 5 reads
    a ``warmup_steps`` below 1 as that ratio -- length-grouped batches, seed 0), and for ``tuned`` its
    speed settings."""
    import transformers

    extra = {}
    if tuned:
        extra = dict(length_column_name="length", dataloader_num_workers=2, dataloader_pin_memory=device.type == "cuda",
                     logging_nan_inf_filter=False, optim="adamw_torch_fused" if device.type == "cuda" else "adamw_torch")
    return transformers.TrainingArguments(
        output_dir=out_dir, num_train_epochs=s["epochs"], learning_rate=s["lr"],
        per_device_train_batch_size=s["batch_size"], per_device_eval_batch_size=s["eval_batch_size"],
        warmup_steps=s["warmup_ratio"], weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length", eval_strategy="no", save_strategy="no",
        logging_strategy="no", report_to=[], use_cpu=device.type == "cpu", seed=0,
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, disable_tqdm=True, **extra)


def trainer_fit(s: dict, train_tok, dev_tok, tokenizer, device, *, tuned: bool = False) -> dict:
    """The same run with transformers' ``Trainer``: its defaults, or ``tuned`` (precomputed lengths,
    data-loader workers, pinned memory, no per-step NaN filter, padding to a multiple of 8, the fused
    AdamW kernel on CUDA). Training time is ``trainer.train()`` less the per-epoch evaluation, which a
    callback times apart; set-up is outside the clock, as for ``engine_fit``."""
    import tempfile
    import time

    import numpy as np
    import transformers

    from ftlib.device import PeakMemory, sync, pick_dtype

    dtype = pick_dtype(device)
    accuracies = []

    def accuracy(eval_pred):
        logits, labels = eval_pred
        return {"accuracy": float((np.argmax(logits, -1) == labels).mean())}

    class EpochEval(transformers.TrainerCallback):
        seconds = 0.0

        def on_epoch_end(self, args, state, control, **kw):
            t0 = time.perf_counter()
            accuracies.append(trainer.evaluate()["eval_accuracy"])
            sync(device)
            self.seconds += time.perf_counter() - t0

    timer = EpochEval()
    ftlib.seed_everything(0)
    model = ftlib.load_model(s["model"], task="classification", num_labels=2)
    train_ds = train_tok.add_column("length", [len(r) for r in train_tok["input_ids"]]) if tuned else train_tok
    collator = transformers.DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if tuned else None)
    with tempfile.TemporaryDirectory() as out_dir, PeakMemory(device) as mem:
        args = trainer_arguments(s, device, dtype, out_dir, tuned=tuned)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_tok,
                                       processing_class=tokenizer, data_collator=collator,
                                       compute_metrics=accuracy, callbacks=[timer])
        sync(device)
        t0 = time.perf_counter()
        out = trainer.train()
        sync(device)
        wall = time.perf_counter() - t0
    train_s = wall - timer.seconds
    del model, trainer
    return {"epoch_accuracy": accuracies, "epoch_loss": [out.training_loss], "train_seconds": train_s,
            "compile_seconds": 0.0, "wall_seconds": wall, "samples_per_s": len(train_tok) * s["epochs"] / train_s,
            "examples": len(train_tok) * s["epochs"], "peak_memory_mb": mem.peak_mb,
            "settings": dict(dtype=str(dtype).replace("torch.", ""), optim=str(args.optim.value), tuned=tuned,
                             n_train=len(train_tok))}


def plain_loop_fit(s: dict, train_tok, tokenizer, device) -> dict:
    """The engine's overhead, measured: the same eager float32 run as a bare loop (no checks, no
    history, no checkpoints) -- the ablation's first row divided by this is the engine's cost."""
    import time

    import torch.nn.functional as F

    from ftlib.batches import DeviceBatches
    from ftlib.device import sync
    from ftlib.train import linear_schedule, make_optimizer

    ftlib.seed_everything(0)
    model = ftlib.load_model(s["model"], task="classification", num_labels=2).to(device)
    train = DeviceBatches(train_tok, s["batch_size"], tokenizer.pad_token_id, device, shuffle=True, mask="2d")
    opt = make_optimizer(model, s["lr"], 0.01, fused=False)
    total = len(train) * s["epochs"]
    sched = linear_schedule(opt, int(s["warmup_ratio"] * total + 0.999), total)
    model.train()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(s["epochs"]):
        for b in train:
            loss = F.cross_entropy(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                                   b["labels"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
    sync(device)
    seconds = time.perf_counter() - t0
    del model
    return {"train_seconds": seconds, "samples_per_s": train.n_examples * s["epochs"] / seconds}


def bench_bert(s: dict, device, progress: bool = False) -> dict:
    """ftlib's engine (the recipe of notebook 11), transformers' Trainer (default and tuned) and the
    ablation, on the same SST-2 subset with the same hyper-parameters."""
    tokenizer, train_tok, dev_tok = _sst2(s)
    out = {"settings": dict(s, n_train=len(train_tok), n_dev=len(dev_tok))}
    recipe = dict(ABLATION[-2][1], compile=s["compile"], dtype=str(ftlib.pick_dtype(device)).replace("torch.", ""))
    out["ftlib"] = engine_fit(s, train_tok, dev_tok, tokenizer, device, progress=progress, **recipe)
    if s.get("trainer", True):
        out["trainer"] = trainer_fit(s, train_tok, dev_tok, tokenizer, device)
        out["trainer_tuned"] = trainer_fit(s, train_tok, dev_tok, tokenizer, device, tuned=True)
        out["speedup"] = out["ftlib"]["samples_per_s"] / out["trainer"]["samples_per_s"]
        out["speedup_tuned"] = out["ftlib"]["samples_per_s"] / out["trainer_tuned"]["samples_per_s"]
    if s.get("ablation"):
        s = dict(s, epochs=s.get("ablation_epochs") or s["epochs"])       # (1 epoch on a GPU: 8 minutes in all)
        out["ablation_epochs"] = s["epochs"]
        rows = []
        for name, ingredients in ABLATION:
            if ingredients["compile"] == "reduce-overhead" and device.type != "cuda":
                rows.append({"name": name, "skipped": "needs a CUDA GPU"})
                continue
            if ingredients["dtype"] == "bfloat16" and device.type == "cuda" and not ftlib.pick_dtype(device) == torch.bfloat16:
                rows.append({"name": name, "skipped": "this GPU has no native bf16"})
                continue
            if device.type == "cpu" and ingredients["dtype"] == "bfloat16" and not s.get("cpu_bf16"):
                # most CPUs emulate bf16 matmuls (many times slower): keep every other ingredient, in float32
                ingredients, name = dict(ingredients, dtype="float32"), name + " (float32 on a CPU)"
            r = engine_fit(s, train_tok, dev_tok, tokenizer, device, progress=progress, **ingredients)
            rows.append({"name": name, **r})
            if progress:
                print(f"[bench] {name:28s} {r['samples_per_s']:10,.1f} samples/s  compile {r['compile_seconds']:.1f} s")
        out["ablation"] = rows
        plain = plain_loop_fit(s, train_tok, tokenizer, device)
        out["plain_loop"] = plain
        out["engine_vs_plain_loop"] = rows[0]["samples_per_s"] / plain["samples_per_s"]
    return out


def gpt_model(s: dict, device):
    """course-gpt (or ``s["model"]``) in float32, or with ``random_init`` a random model of its configuration."""
    import transformers

    ftlib.seed_everything(0)
    if s.get("random_init"):
        cfg = transformers.LlamaConfig(**{k: v for k, v in COURSE_GPT_CONFIG.items() if k != "model_type"})
        return transformers.LlamaForCausalLM(cfg).to(device)
    return ftlib.load_model(s["model"], task="causal-lm", dtype=torch.float32).to(device)


def bench_gpt(s: dict, device, progress: bool = False) -> dict:
    """Causal-LM training throughput (tokens/s) and MFU of course-gpt through ``ftlib.train.fit``: packed
    blocks with no mask (attention's causal fast path), the chunked loss, bf16, fused AdamW, compile.
    The first ``warmup_steps`` steps (compilation included) are not timed. Data: tinyshakespeare, or random
    tokens with ``random_init`` (speed does not depend on either)."""
    from ftlib.batches import DeviceBatches
    from ftlib.device import PeakMemory
    from ftlib.flops import mfu, peak_flops, training_flops_per_token
    from ftlib.lm import pack_blocks
    from ftlib.train import fit

    need = s["batch_size"] * s["seq_len"] * (s["steps"] + s["warmup_steps"])
    model = gpt_model(s, device)
    if s.get("random_init"):
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, model.config.vocab_size, (need,), generator=g).tolist()
    else:
        tokenizer = ftlib.load_tokenizer(s["model"])
        text = ftlib.load_tinyshakespeare()["train"][0]["text"]
        ids = tokenizer(text[:need * 8], add_special_tokens=False)["input_ids"]   # ~4 characters per token
    blocks = pack_blocks(ids, s["seq_len"])
    batches = DeviceBatches(blocks, s["batch_size"], 0, device, shuffle=True, static=True, mask="none",
                            pad_multiple=s["seq_len"])
    dtype = ftlib.pick_dtype(device)
    common = dict(task="causal_lm", lr=s["lr"], warmup_ratio=0.0, dtype=dtype, compile=s["compile"], device=device,
                  progress=progress, verbose=False, log_every=10**6)
    warm = fit(model, batches, max_steps=s["warmup_steps"], **common)      # compilation and first steps: not timed
    with PeakMemory(device) as mem:
        h = fit(model, batches, max_steps=s["steps"], **common)     # compiled graphs are reused: no compile
    fpt = training_flops_per_token(model, s["seq_len"])        # PaLM's convention: full attention
    peak = peak_flops(device)
    tps = h.tokens / h.train_seconds
    n_params = sum(p.numel() for p in model.parameters())
    del model
    return {"settings": dict(s), "n_params": n_params, "flops_per_token": fpt, "tokens_per_s": tps,
            "achieved_tflops": tps * fpt / 1e12, "peak_bf16_tflops": peak / 1e12 if peak else None,
            "mfu": mfu(tps, fpt, peak), "seconds": h.train_seconds, "tokens": h.tokens,
            "compile_seconds": warm.compile_seconds + h.compile_seconds, "peak_memory_mb": mem.peak_mb,
            "loss_first": warm.step_loss[0], "loss_last": h.step_loss[-1],
            "dtype": str(dtype).replace("torch.", "")}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def write_results(result: dict, out_dir) -> Path:
    """Write ``<timestamp>-<device>.json`` and refresh ``latest.md``; returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hw = result["hardware"]
    label = _slug(hw["gpu"] or "cpu")
    stamp = result["timestamp"].replace(":", "").replace("-", "")[:15]
    path = out / f"{stamp}-{label}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    (out / "latest.md").write_text(render_table(out))
    return path


def _fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def _num(x: float) -> str:
    """Throughputs from 0.5/s (a busy CPU) to 100,000/s (a GPU), readably."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def render_table(out_dir) -> str:
    """A markdown table of every results file in ``out_dir``, newest first, then the newest ablation."""
    rows, ablation = [], None
    for p in sorted(Path(out_dir).glob("*.json"), reverse=True):
        r = json.loads(p.read_text())
        hw, b, g = r["hardware"], r.get("bert"), r.get("gpt")
        where = hw["gpu"] or f"CPU ({hw['cpu'] or 'unknown'}, torch threads: {hw['cpu_threads']})"
        if b and "trainer" in b:
            tuned = _get(b, "trainer_tuned", "samples_per_s")
            bert = (f"| {b['settings']['n_train']:,} x {b['settings']['epochs']} | {_num(b['ftlib']['samples_per_s'])} "
                    f"| {_num(b['trainer']['samples_per_s'])} | {'n/a' if tuned is None else _num(tuned)} "
                    f"| {b['speedup']:.2f}x | {_fmt(b.get('speedup_tuned'), '.2f')}{'x' if b.get('speedup_tuned') else ''} "
                    f"| {b['ftlib']['epoch_accuracy'][-1]:.3f} / {b['trainer']['epoch_accuracy'][-1]:.3f} "
                    f"| {b['ftlib']['train_seconds']:.1f} | {_fmt(b['ftlib'].get('compile_seconds'), '.1f')} ")
        else:
            bert = "| n/a" * 9 + " "
        gpt = ("| n/a" * 3) if not g else (
            f"| {_num(g['tokens_per_s'])} | {_fmt(g['mfu'] and 100 * g['mfu'], '.1f')}"
            f"{'' if g['mfu'] is None else ' %'} | {g['achieved_tflops']:.3f} ")
        note = f" ({r['note']})" if r.get("note") else ""
        rows.append(f"| {r['timestamp'][:16].replace('T', ' ')} | {where}{note} | {r['budget']} "
                    f"{bert}{gpt}| `{p.name}` |")
        if ablation is None and b and b.get("ablation"):
            ablation = (p.name, where, b)
    head = ("# Benchmark results\n\n"
            "Written by `python -m ftlib bench` (`ftlib/bench.py`); every row was measured on the hardware it "
            "names.\nBERT: SST-2 fine-tuning of course-bert, ftlib's engine vs transformers' Trainer (its defaults, "
            "and tuned) at the\nsame hyper-parameters (training samples/s, set-up and compilation excluded; dev "
            "accuracy after the last epoch).\nGPT: causal-LM training of course-gpt (tokens/s; MFU against the "
            "GPU's dense bf16 peak, n/a on a CPU).\n\n"
            "| when (UTC) | hardware | budget | BERT train examples x epochs | ftlib samples/s "
            "| Trainer samples/s | tuned Trainer samples/s | speed-up | speed-up vs tuned | dev acc. ftlib / Trainer "
            "| ftlib train s | ftlib compile s | GPT tokens/s | MFU | achieved TFLOP/s | file |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    text = head + "\n".join(rows) + "\n"
    if ablation:
        name, where, b = ablation
        text += (f"\n## Ablation ({where}, `{name}`)\n\nOne ingredient added at a time; each row is a whole "
                 f"`fit()` of the same run, {b.get('ablation_epochs', b['settings']['epochs'])} epoch(s).\n\n| ingredients | samples/s | train s | compile s | dev acc. |\n"
                 "|---|---:|---:|---:|---:|\n")
        for row in b["ablation"]:
            if "skipped" in row:
                text += f"| {row['name']} | skipped: {row['skipped']} | | | |\n"
            else:
                text += (f"| {row['name']} | {_num(row['samples_per_s'])} | {row['train_seconds']:.1f} "
                         f"| {row['compile_seconds']:.1f} | {row['epoch_accuracy'][-1]:.3f} |\n")
        if b.get("engine_vs_plain_loop"):
            text += (f"\nThe engine (eager fp32 row) runs at {b['engine_vs_plain_loop']:.2f}x the speed of a bare "
                     "hand-written loop over the same batches.\n")
    return text


def run(budget: str = "small", out_dir="results", parts=("bert", "gpt"), progress: bool = True,
        overrides: dict | None = None, note: str = "") -> Path:
    """Run the benchmarks of ``SETTINGS[budget]`` (``overrides``: {"bert": {...}, "gpt": {...}}) and write the results.

    ``note``: free text kept in the results file and its table row (e.g. "shared machine, busy")."""
    if budget not in SETTINGS:
        raise CourseError(f"Unknown benchmark budget {budget!r}; choose one of {sorted(SETTINGS)}.")
    device = ftlib.pick_device()
    info = ftlib.describe_device(device)
    result = {"schema": 1, "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "budget": budget, "note": note, "hardware": hardware_info(device, info), "software": software_info(info)}
    for part in parts:
        s = dict(SETTINGS[budget][part], **(overrides or {}).get(part, {}))
        if progress:
            print(f"[bench] {part} on {device}: {s}")
        result[part] = (bench_bert if part == "bert" else bench_gpt)(s, device, progress=progress)
    return write_results(result, out_dir)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m ftlib bench", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="run the benchmarks (the default)")
    ex = sub.add_parser("export-weights", help="save a model as small bf16 safetensors shards")
    ex.add_argument("folder")
    ex.add_argument("--model", default="course-gpt")
    ex.add_argument("--task", default="causal-lm")
    ex.add_argument("--max-shard-size", default="60MB")
    ex.add_argument("--dtype", default="bfloat16")
    for p in (ap, r):
        p.add_argument("--budget", choices=sorted(SETTINGS), default=None,
                       help="tiny (checks only), small (CPU) or full (GPU); default: full on CUDA, else small")
        p.add_argument("--out", default="results", help="folder for the results files")
        p.add_argument("--only", choices=["bert", "gpt"], default=None, help="run one of the two benchmarks")
        p.add_argument("--bert-model", default=None, help="another encoder (hub id or folder) for the BERT part")
        p.add_argument("--gpt-model", default=None, help="another decoder (hub id or folder) for the GPT part")
        p.add_argument("--note", default="", help="free text stored with the results (conditions of the run)")
        p.add_argument("--train-size", type=int, default=None, help="BERT: training sentences (0: all)")
        p.add_argument("--epochs", type=int, default=None, help="BERT: epochs")
        p.add_argument("--batch-size", type=int, default=None, help="BERT and GPT: batch size")
        p.add_argument("--steps", type=int, default=None, help="GPT: timed steps")
        p.add_argument("--seq-len", type=int, default=None, help="GPT: tokens per block")
        p.add_argument("--random-init", action="store_true",
                       help="GPT: a random model of course-gpt's configuration (no weights needed)")
        p.add_argument("--no-ablation", action="store_true", help="BERT: skip the ablation rows")
        p.add_argument("--no-trainer", action="store_true", help="BERT: skip the two Trainer rows")
        p.add_argument("--compile", choices=["yes", "no", "reduce-overhead"], default=None,
                       help="override the budget's torch.compile setting")
        p.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "export-weights":
        from ftlib.deploy import export_weights

        files = export_weights(args.folder, args.model, args.task, args.max_shard_size, args.dtype)
        biggest = max(f.stat().st_size for f in files)
        print(f"wrote {len(files)} files to {args.folder}; the largest is {biggest / 2**20:.1f} MiB")
        return files
    budget = args.budget or ("full" if torch.cuda.is_available() else "small")
    overrides = {"bert": {"model": args.bert_model} if args.bert_model else {},
                 "gpt": {"model": args.gpt_model} if args.gpt_model else {}}
    if args.train_size is not None:
        overrides["bert"]["train_size"] = args.train_size or None
    for flag, part, key in ((args.epochs, "bert", "epochs"), (args.steps, "gpt", "steps"),
                            (args.seq_len, "gpt", "seq_len")):
        if flag is not None:
            overrides[part][key] = flag
    if args.batch_size is not None:
        overrides["bert"]["batch_size"] = overrides["gpt"]["batch_size"] = args.batch_size
    if args.random_init:
        overrides["gpt"]["random_init"] = True
    if args.no_ablation:
        overrides["bert"]["ablation"] = False
    if args.no_trainer:
        overrides["bert"]["trainer"] = False
    if args.compile is not None:
        c = {"yes": True, "no": False}.get(args.compile, args.compile)
        overrides["bert"]["compile"] = overrides["gpt"]["compile"] = c
    parts = (args.only,) if args.only else ("bert", "gpt")
    path = run(budget, args.out, parts, progress=not args.quiet, overrides=overrides, note=args.note)
    print(f"results written to {path} and {Path(args.out) / 'latest.md'}")
    return path


if __name__ == "__main__":
    main()
