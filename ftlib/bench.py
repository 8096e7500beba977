"""Benchmarks of notebooks 10 and 11, and carrying weights to an offline machine.

    python -m ftlib bench [--budget small|full] [--out results]      (or: python -m ftlib.bench ...)
    python -m ftlib bench export-weights DIR [--model course-gpt] [--max-shard-size 60MB]

``run`` measures, on whatever device ``ftlib.pick_device()`` finds:

* **BERT**: SST-2 fine-tuning of course-bert with ``ftlib.fast.fast_fit`` and with
  transformers' ``Trainer`` at the same hyper-parameters: dev accuracy per epoch,
  training samples/s, wall time, peak memory;
* **GPT**: causal-LM training of course-gpt on tinyshakespeare: tokens/s, FLOPs per token,
  achieved TFLOP/s and model FLOPs utilisation (MFU; unknown peak on a CPU).

It writes ``OUT/<timestamp>-<device>.json`` (hardware, software versions, settings, every
number) and rewrites ``OUT/latest.md``, a table of every results file in ``OUT``.
Nothing here invents a number: a GPU row exists only where the benchmark ran on that GPU.

``export-weights`` saves a model as bfloat16 safetensors in shards smaller than
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
import hashlib
import json
import platform
import re
import subprocess
from pathlib import Path

import torch

import ftlib
from ftlib import CourseError

__all__ = ["SETTINGS", "run", "hardware_info", "software_info", "write_results", "render_table",
           "export_weights", "main"]

SETTINGS = {
    # `tiny` only checks that the machinery works (tests); `small` is the CPU run; `full` the GPU run
    # (untested on a GPU so far: designed for notebook 10's target of 3 epochs of SST-2 in seconds).
    "tiny": {"bert": dict(model="course-bert", train_size=64, eval_size=64, epochs=1, batch_size=32, lr=1e-4,
                          warmup_ratio=0.06, max_length=64, compile=False, eval_batch_size=64),
             "gpt": dict(model="course-gpt", batch_size=2, seq_len=32, warmup_steps=1, steps=2, lr=5e-5,
                         compile=False)},
    "small": {"bert": dict(model="course-bert", train_size=512, eval_size=400, epochs=1, batch_size=32, lr=1e-4,
                           warmup_ratio=0.06, max_length=64, compile=False, eval_batch_size=256),
              "gpt": dict(model="course-gpt", batch_size=4, seq_len=64, warmup_steps=1, steps=3, lr=5e-5,
                          compile=False)},
    "full": {"bert": dict(model="course-bert", train_size=None, eval_size=None, epochs=3, batch_size=256, lr=2e-4,
                          warmup_ratio=0.06, max_length=64, compile=True, eval_batch_size=1024),
             "gpt": dict(model="course-gpt", batch_size=16, seq_len=1024, warmup_steps=5, steps=30, lr=5e-5,
                         compile=True)},
}


def _run_cmd(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def hardware_info(device) -> dict:
    """Device, GPU name / memory / CUDA / driver, CPU model and threads."""
    device = torch.device(device)
    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"device": str(device), "cpu": cpu, "cpu_threads": torch.get_num_threads(), "gpu": None,
            "gpu_memory_gib": None, "cuda": None, "driver": None}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    driver=_run_cmd(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]))
    return info


def software_info() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "datasets"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    out["ftlib"] = ftlib.__version__
    return out


def bench_bert(s: dict, device, progress: bool = False) -> dict:
    """ftlib's fast loop and Trainer on the same SST-2 subset with the same hyper-parameters."""
    from ftlib.fast import DeviceBatches, fast_fit, trainer_fit
    from ftlib.text import tokenize_dataset

    sst2 = ftlib.load_sst2()
    tokenizer = ftlib.load_tokenizer(s["model"])
    train = sst2["train"] if s["train_size"] is None else sst2["train"].shuffle(seed=0).select(
        range(min(s["train_size"], len(sst2["train"]))))
    dev = sst2["validation"] if s["eval_size"] is None else sst2["validation"].select(
        range(min(s["eval_size"], len(sst2["validation"]))))
    train_tok = tokenize_dataset(train, tokenizer, s["max_length"])
    dev_tok = tokenize_dataset(dev, tokenizer, s["max_length"])
    hp = dict(epochs=s["epochs"], lr=s["lr"], warmup_ratio=s["warmup_ratio"])
    out = {"settings": dict(s, n_train=len(train_tok), n_dev=len(dev_tok))}

    ftlib.seed_everything(0)
    model = ftlib.load_model(s["model"], task="classification", num_labels=2)
    train_b = DeviceBatches(train_tok, s["batch_size"], tokenizer.pad_token_id, device, shuffle=True)
    dev_b = DeviceBatches(dev_tok, s["eval_batch_size"], tokenizer.pad_token_id, device)
    out["ftlib"] = fast_fit(model, train_b, dev_b, compile=s["compile"], progress=progress, **hp).as_dict()
    del model, train_b, dev_b
    if device.type == "cuda":
        torch.cuda.empty_cache()

    ftlib.seed_everything(0)
    model = ftlib.load_model(s["model"], task="classification", num_labels=2)
    out["trainer"] = trainer_fit(model, train_tok, dev_tok, tokenizer, batch_size=s["batch_size"], device=device,
                                 eval_batch_size=s["eval_batch_size"], **hp).as_dict()
    out["speedup"] = out["ftlib"]["samples_per_s"] / out["trainer"]["samples_per_s"]
    del model
    return out


def bench_gpt(s: dict, device, progress: bool = False) -> dict:
    """Causal-LM training throughput (tokens/s) and MFU of course-gpt on tinyshakespeare."""
    from ftlib.lm import count_parameters, flops_per_token, lm_train, mfu, pack_blocks, peak_flops

    tokenizer = ftlib.load_tokenizer(s["model"])
    text = ftlib.load_tinyshakespeare()["train"][0]["text"]
    need = s["batch_size"] * s["seq_len"] * (s["steps"] + s["warmup_steps"])
    ids = tokenizer(text[:need * 8], add_special_tokens=False)["input_ids"]   # ~4 characters per token
    blocks = pack_blocks(ids, s["seq_len"])
    ftlib.seed_everything(0)
    model = ftlib.load_model(s["model"], task="causal-lm").to(device)
    n_params = count_parameters(model)
    cfg = model.config
    fpt = flops_per_token(n_params, cfg.num_hidden_layers, cfg.hidden_size, s["seq_len"])
    common = dict(batch_size=s["batch_size"], lr=s["lr"], device=device, progress=progress, compile=s["compile"])
    lm_train(model, blocks, steps=s["warmup_steps"], **common)          # warm-up (and compilation): not timed
    r = lm_train(model, blocks, steps=s["steps"], seed=1, **common)
    peak = peak_flops(device)
    u = mfu(r["tokens_per_s"], fpt, peak)
    del model
    return {"settings": dict(s), "n_params": n_params, "flops_per_token": fpt, "tokens_per_s": r["tokens_per_s"],
            "achieved_tflops": r["tokens_per_s"] * fpt / 1e12, "peak_bf16_tflops": peak / 1e12 if peak else None,
            "mfu": u, "seconds": r["seconds"], "tokens": r["tokens"], "peak_memory_mb": r["peak_memory_mb"],
            "loss_first": r["losses"][0], "loss_last": r["losses"][-1],
            "dtype": str(ftlib.pick_dtype(device)).replace("torch.", "")}


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


def render_table(out_dir) -> str:
    """A markdown table of every results file in ``out_dir``, newest first."""
    rows = []
    for p in sorted(Path(out_dir).glob("*.json"), reverse=True):
        r = json.loads(p.read_text())
        hw, b, g = r["hardware"], r.get("bert"), r.get("gpt")
        where = hw["gpu"] or f"CPU ({hw['cpu'] or 'unknown'}, {hw['cpu_threads']} threads)"
        bert = ("| n/a" * 6) if not b else (
            f"| {b['settings']['n_train']:,} x {b['settings']['epochs']} | {_num(b['ftlib']['samples_per_s'])} "
            f"| {_num(b['trainer']['samples_per_s'])} | {b['speedup']:.2f}x "
            f"| {b['ftlib']['epoch_accuracy'][-1]:.3f} / {b['trainer']['epoch_accuracy'][-1]:.3f} "
            f"| {b['ftlib']['train_seconds']:.1f} ")
        gpt = ("| n/a" * 3) if not g else (
            f"| {_num(g['tokens_per_s'])} | {_fmt(g['mfu'] and 100 * g['mfu'], '.1f')}"
            f"{'' if g['mfu'] is None else ' %'} | {g['achieved_tflops']:.3f} ")
        note = f" ({r['note']})" if r.get("note") else ""
        rows.append(f"| {r['timestamp'][:16].replace('T', ' ')} | {where}{note} | {r['budget']} "
                    f"{bert}{gpt}| `{p.name}` |")
    head = ("# Benchmark results\n\n"
            "Written by `python -m ftlib bench` (`ftlib/bench.py`); every row was measured on the hardware it "
            "names.\nBERT: SST-2 fine-tuning of course-bert, ftlib's fast loop vs transformers' Trainer at the "
            "same hyper-parameters\n(training samples/s; dev accuracy after the last epoch; training seconds of "
            "the fast loop).\nGPT: causal-LM training of course-gpt on tinyshakespeare (tokens/s; MFU against "
            "the GPU's dense bf16 peak,\nn/a on a CPU).\n\n"
            "| when (UTC) | hardware | budget | BERT train examples x epochs | fast loop samples/s "
            "| Trainer samples/s | speed-up | dev acc. fast / Trainer | fast loop train s "
            "| GPT tokens/s | MFU | achieved TFLOP/s | file |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    return head + "\n".join(rows) + "\n"


def run(budget: str = "small", out_dir="results", parts=("bert", "gpt"), progress: bool = True,
        overrides: dict | None = None, note: str = "") -> Path:
    """Run the benchmarks of ``SETTINGS[budget]`` (``overrides``: {"bert": {...}, "gpt": {...}}) and write the results.

    ``note``: free text kept in the results file and its table row (e.g. "shared machine, busy")."""
    if budget not in SETTINGS:
        raise CourseError(f"Unknown benchmark budget {budget!r}; choose one of {sorted(SETTINGS)}.")
    device = ftlib.pick_device()
    result = {"schema": 1, "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "budget": budget, "note": note, "hardware": hardware_info(device), "software": software_info()}
    for part in parts:
        s = dict(SETTINGS[budget][part], **(overrides or {}).get(part, {}))
        if progress:
            print(f"[bench] {part} on {device}: {s}")
        result[part] = (bench_bert if part == "bert" else bench_gpt)(s, device, progress=progress)
    return write_results(result, out_dir)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_weights(folder, model: str = "course-gpt", task: str = "causal-lm", max_shard_size: str = "60MB",
                   dtype: str = "bfloat16") -> list[Path]:
    """Save ``model`` (and its tokenizer) into ``folder`` as ``dtype`` safetensors shards of at most
    ``max_shard_size``; write ``MANIFEST.txt`` (size and SHA-256 of every file). Returns the files."""
    out = Path(folder)
    if out.exists() and any(out.iterdir()):
        raise CourseError(f"{out} is not empty: export into a new folder, so no old shard mixes with the new ones.")
    if not hasattr(torch, dtype):
        raise CourseError(f"Unknown dtype {dtype!r}: use bfloat16, float16 or float32.")
    m = ftlib.load_model(model, task=task, dtype=getattr(torch, dtype))
    m.save_pretrained(out, max_shard_size=max_shard_size)
    ftlib.load_tokenizer(model).save_pretrained(out)
    files = sorted(p for p in out.iterdir() if p.is_file())
    lines = [f"{p.stat().st_size:>12d}  {_sha256(p)}  {p.name}" for p in files]
    (out / "MANIFEST.txt").write_text("# size (bytes)  sha256  file -- check with `sha256sum` after copying\n"
                                      + "\n".join(lines) + "\n")
    return files + [out / "MANIFEST.txt"]


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
        p.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "export-weights":
        files = export_weights(args.folder, args.model, args.task, args.max_shard_size, args.dtype)
        biggest = max(f.stat().st_size for f in files)
        print(f"wrote {len(files)} files to {args.folder}; the largest is {biggest / 2**20:.1f} MiB")
        return files
    budget = args.budget or ("full" if torch.cuda.is_available() else "small")
    overrides = {"bert": {"model": args.bert_model} if args.bert_model else {},
                 "gpt": {"model": args.gpt_model} if args.gpt_model else {}}
    parts = (args.only,) if args.only else ("bert", "gpt")
    path = run(budget, args.out, parts, progress=not args.quiet, overrides=overrides, note=args.note)
    print(f"results written to {path} and {Path(args.out) / 'latest.md'}")
    return path


if __name__ == "__main__":
    main()
