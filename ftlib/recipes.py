"""``python -m ftlib train``: a fine-tuning run as a script, from flags, through the one engine.

    python -m ftlib train --data sst2 --recipe lora --train-size 2000 --output runs/sst2-lora
    torchrun --nproc_per_node=2 -m ftlib train ...                          (data parallel)
    accelerate launch --multi_gpu --num_processes 8 -m ftlib train ...      (the same, via Accelerate)
    accelerate launch --config_file configs/accelerate_multi_gpu.yaml -m ftlib train ...

It builds what a notebook builds -- a slice of the data set (:mod:`ftlib.data`), tokenised and
batched with dynamic padding (:mod:`ftlib.text`), a course model with a classification head
(:mod:`ftlib.models`), a recipe (``full`` fine-tuning, ``lora``: :func:`ftlib.lora.add_lora`,
``head``: :func:`ftlib.strategies.freeze` all but the classifier) -- and trains it with
:func:`ftlib.train.fit`, the loop every lesson uses. There is no second training loop: started by
``torchrun``, or by ``accelerate launch`` with its torchrun launcher (``--multi_gpu`` or a
``MULTI_GPU`` config; both set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``), ``fit`` trains data-parallel through :mod:`ftlib.distributed`
(each process builds the same global batches and takes its shard), and the weights are those of
the one-process run with the same (global) batch size, up to float32 rounding -- with
``--dropout 0``: each process draws its own dropout masks.

``--output DIR`` receives, from rank 0 only: ``run.json`` (the settings, checked again by
``--resume``), ``checkpoint.pt`` (``fit``'s checkpoint, written at the end of every epoch and
every ``--checkpoint-every`` steps; it resumes on any number of processes), ``metrics.json`` (the
final evaluation and the run's numbers) and ``model/`` (:func:`ftlib.deploy.save`, LoRA merged:
``python -m ftlib predict DIR/model "a fine film"``). A folder that already holds files is never
overwritten: ``--resume`` continues the run saved there (with the same settings), anything else is
refused.

Accelerate and the CPU: ``accelerate launch --cpu --num_processes N`` starts **one** process (its
several-CPU-process mode goes through MPI, ``--mpirun_hostfile``, which sets no ``RANK`` /
``WORLD_SIZE``); this command refuses that launch instead of training alone while N were asked
for. ``accelerate launch --multi_gpu --num_processes N`` (or ``--config_file
configs/accelerate_cpu_2proc.yaml``) starts N processes through torchrun on any machine: without a
GPU ftlib trains them on the CPU with gloo.

Precision: ``--precision auto`` is ``fit``'s default (bf16 autocast on GPUs with native bf16,
float16 on older GPUs, float32 on a CPU), except under ``accelerate launch``, whose
``mixed_precision`` (``no`` / ``bf16`` / ``fp16``, from its flag or config file) is obeyed.

``--model tiny-bert`` (not listed in ``--help``) is a randomly initialised 2-layer BERT (hidden 32)
on course-bert's vocabulary, built here from ``transformers.BertConfig``: it trains in seconds on a
CPU, for the tests and for trying the command out. Its accuracy is meaningless.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from ftlib.deploy import _Parser      # the CLI's parser: a usage mistake is one line (as `python -m ftlib`)
from ftlib.errors import CourseError

__all__ = ["DATASETS", "RECIPES", "DEFAULT_LR", "TINY_MODEL", "parser", "run", "main"]

DATASETS = {"sst2": "SST-2 sentences, positive or negative (ftlib.load_sst2)",
            "mrpc": "MRPC sentence pairs, paraphrase or not (ftlib.load_mrpc; encoded as pairs)"}
RECIPES = {"full": "fine-tune every weight",
           "lora": "LoRA on query/value (ftlib.lora.add_lora), the classifier trained too",
           "head": "train the classifier only (ftlib.strategies.freeze)"}
DEFAULT_LR = {"full": 5e-5, "lora": 5e-4, "head": 1e-3}
TASKS = ("classification",)
TINY_MODEL = "tiny-bert"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# the settings that make a run what it is: --resume refuses to continue a run saved with others
SETTINGS = ("task", "data", "model", "recipe", "lora_r", "lora_alpha", "train_size", "eval_size", "epochs",
            "max_steps", "lr", "batch_size", "grad_accum_steps", "max_length", "dropout", "warmup_ratio",
            "weight_decay", "seed")
RUN_FILE, METRICS_FILE, CHECKPOINT_FILE, MODEL_DIR = "run.json", "metrics.json", "checkpoint.pt", "model"


def _everywhere(err: CourseError) -> CourseError:
    """Mark an error every process raises alike (bad flags, a refused folder): only rank 0 prints it."""
    err.every_rank = True
    return err


# ----------------------------------------------------------------------------------- the flags
def parser(prog: str = "python -m ftlib train") -> argparse.ArgumentParser:
    ap = _Parser(prog=prog, description=(
        "Fine-tune a course model from flags with ftlib's engine (ftlib.train.fit). Data parallel when started "
        "by `torchrun --nproc_per_node=N -m ftlib train ...` or `accelerate launch --multi_gpu --num_processes N "
        "-m ftlib train ...` (same weights as one process with the same --batch-size, given --dropout 0). Unset "
        "sizes come from the budget (ftlib.get_budget: FTLIB_BUDGET=small|full)."))
    ap.add_argument("--task", default="classification", metavar="{classification}",
                    help="what to train (default classification)")
    ap.add_argument("--data", default="sst2", metavar="{sst2,mrpc}",
                    help="; ".join(f"{k}: {v}" for k, v in DATASETS.items()) + " (default sst2)")
    ap.add_argument("--model", default="course-bert",
                    help="course-bert (default), a hub id or a local model folder")
    ap.add_argument("--recipe", default="full", metavar="{full,lora,head}",
                    help="; ".join(f"{k}: {v}" for k, v in RECIPES.items()) + " (default full)")
    ap.add_argument("--lora-r", type=int, default=8, help="LoRA rank (recipe lora; default 8)")
    ap.add_argument("--lora-alpha", type=float, default=16.0, help="LoRA alpha (recipe lora; default 16)")
    ap.add_argument("--train-size", default=None, metavar="N|all",
                    help="training examples, a seeded random slice of the train split (default: the budget's)")
    ap.add_argument("--eval-size", default=None, metavar="N|all",
                    help="evaluation examples from the validation split (default: the budget's)")
    ap.add_argument("--epochs", type=int, default=None, help="passes over the training slice (default: the "
                    "budget's, or as many as --max-steps needs)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    ap.add_argument("--lr", type=float, default=None,
                    help="peak learning rate (default: full 5e-5, lora 5e-4, head 1e-3)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="examples per batch, over all processes together (the global batch; default: the budget's)")
    ap.add_argument("--grad-accum-steps", type=int, default=1, help="batches per optimiser step (default 1)")
    ap.add_argument("--max-length", type=int, default=None, help="tokens per example (default: the budget's)")
    ap.add_argument("--dropout", type=float, default=None,
                    help="set every dropout probability of the model (default: the model's own; 0 makes "
                         "data-parallel runs equal to one process)")
    ap.add_argument("--warmup-ratio", type=float, default=0.1, help="share of the steps for warm-up (default 0.1)")
    ap.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the slice, the shuffle and the new weights "
                    "(default 0; the same on every process)")
    ap.add_argument("--precision", default="auto", metavar="{auto,fp32,bf16,fp16}",
                    help="autocast dtype (default auto: ftlib's choice for the device, or accelerate "
                         "launch's mixed_precision)")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: FTLIB_DEVICE or the best there is)")
    ap.add_argument("--output", required=True, metavar="DIR",
                    help="new (or empty) folder for run.json, checkpoint.pt, metrics.json and model/")
    ap.add_argument("--resume", action="store_true",
                    help="continue the run saved in --output (same settings; any number of processes)")
    ap.add_argument("--checkpoint-every", type=int, default=None,
                    help="also checkpoint every this many steps (always at the end of an epoch)")
    return ap


def _size(flag: str, text, default):
    if text is None:
        return default
    if str(text).strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise _everywhere(CourseError(f"{flag} {text}: give a whole number of examples >= 1, or 'all'."))
    return value


def check_settings(args, budget) -> dict:
    """The run's settings (flags, with the budget's defaults filled in), or a CourseError for a bad flag."""
    def bad(message):
        return _everywhere(CourseError(message))
    if args.task not in TASKS:
        raise bad(f"--task {args.task!r} is not one this command trains: use {' or '.join(TASKS)} (other tasks: "
                  "ftlib.train.fit from Python, see lessons 12-15).")
    if args.data not in DATASETS:
        raise bad(f"Unknown data set --data {args.data!r}: use one of {', '.join(DATASETS)}.")
    if args.recipe not in RECIPES:
        raise bad(f"Unknown recipe --recipe {args.recipe!r}: use one of {', '.join(RECIPES)} "
                  f"({'; '.join(f'{k}: {v}' for k, v in RECIPES.items())}).")
    if args.precision not in PRECISIONS:
        raise bad(f"Unknown --precision {args.precision!r}: use one of {', '.join(PRECISIONS)}.")
    s = {k: getattr(args, k) for k in ("task", "data", "model", "recipe", "max_steps", "grad_accum_steps",
                                       "dropout", "warmup_ratio", "weight_decay", "seed")}
    s["lora_r"], s["lora_alpha"] = (args.lora_r, args.lora_alpha) if args.recipe == "lora" else (None, None)
    s["train_size"] = _size("--train-size", args.train_size, budget.train_size)
    s["eval_size"] = _size("--eval-size", args.eval_size, budget.eval_size)
    s["epochs"] = args.epochs if args.epochs is not None else (budget.epochs if args.max_steps is None else None)
    s["lr"] = args.lr if args.lr is not None else DEFAULT_LR[args.recipe]
    s["batch_size"] = args.batch_size if args.batch_size is not None else budget.batch_size
    s["max_length"] = args.max_length if args.max_length is not None else budget.max_length
    for flag, value in (("--epochs", s["epochs"]), ("--max-steps", s["max_steps"]), ("--batch-size", s["batch_size"]),
                        ("--grad-accum-steps", s["grad_accum_steps"]), ("--lora-r", s["lora_r"]),
                        ("--checkpoint-every", args.checkpoint_every)):
        if value is not None and value < 1:
            raise bad(f"{flag} {value}: it must be at least 1.")
    if s["max_length"] < 4:
        raise bad(f"--max-length {s['max_length']}: an example needs room for [CLS], [SEP] and some words "
                  "(the budget uses 64; SST-2 sentences fit in 66 tokens).")
    if not (s["lr"] > 0 and math.isfinite(s["lr"])):
        raise bad(f"--lr {s['lr']}: the learning rate must be a positive number (e.g. {DEFAULT_LR[args.recipe]:g}).")
    if s["dropout"] is not None and not 0 <= s["dropout"] < 1:
        raise bad(f"--dropout {s['dropout']}: a probability 0 <= p < 1.")
    if not 0 <= s["warmup_ratio"] < 1:
        raise bad(f"--warmup-ratio {s['warmup_ratio']}: a share 0 <= r < 1.")
    if s["weight_decay"] < 0:
        raise bad(f"--weight-decay {s['weight_decay']}: it must be >= 0.")
    if args.recipe == "lora" and not s["lora_alpha"] > 0:
        raise bad(f"--lora-alpha {s['lora_alpha']}: it must be > 0 (16 is usual).")
    return s


def _accelerate_cpu(env) -> bool:
    """Whether ``accelerate launch --cpu`` (or a config with ``use_cpu``) started this process."""
    return str(env.get("ACCELERATE_USE_CPU", "")).lower() in ("1", "true", "yes")


def check_launcher(env=None):
    """Refuse a launch that asked for several processes but left ftlib without a process group: ftlib
    joins one only from torchrun's variables (``WORLD_SIZE`` > 1, ``RANK``, ``MASTER_ADDR``/``PORT``)."""
    env = os.environ if env is None else env
    if int(env.get("WORLD_SIZE", "1") or 1) > 1:
        return
    mpi = next((int(env[k]) for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
                if str(env.get(k, "")).isdigit()), 1)
    cpu = _accelerate_cpu(env)
    if mpi > 1 or (cpu and "MASTER_ADDR" in env):
        how = (f"MPI started {mpi} processes" if mpi > 1 else
               "`accelerate launch --cpu --num_processes N` started ONE process (Accelerate runs several CPU "
               "processes only through MPI, --mpirun_hostfile)")
        raise _everywhere(CourseError(
            f"{how}, but none has WORLD_SIZE/RANK, so each would train alone. Start the processes with torchrun's "
            "variables instead: `accelerate launch --multi_gpu --num_processes N -m ftlib train ...` (on a machine "
            "without a GPU it trains on the CPU with gloo; or --config_file configs/accelerate_cpu_2proc.yaml) or "
            "`torchrun --nproc_per_node=N -m ftlib train ...`; for one process drop --num_processes."))


def _precision(flag: str, device, env=None):
    """``(dtype, words)``: the autocast dtype for fit and how it was chosen."""
    import torch

    from ftlib.device import pick_dtype

    env = os.environ if env is None else env
    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    why = "--precision"
    if flag == "auto" and env.get("ACCELERATE_MIXED_PRECISION"):
        launcher = env["ACCELERATE_MIXED_PRECISION"].lower()
        flag = {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}.get(launcher)
        if flag is None:
            raise _everywhere(CourseError(
                f"accelerate launch asked for mixed_precision={launcher!r}, which ftlib's engine does not do: "
                "use no, bf16 or fp16 there, or pass --precision fp32|bf16|fp16."))
        why = f"accelerate launch's mixed_precision={launcher}"
    if flag == "auto":
        return pick_dtype(device), "ftlib's choice for the device"
    return names[flag], why


# --------------------------------------------------------------------------------- the output
def _output_problem(out: Path, resume: bool, settings: dict) -> str | None:
    """Why ``out`` cannot take this run (a message), or None. Never lets a saved run be overwritten."""
    if out.exists() and not out.is_dir():
        return f"--output {out} is a file, not a folder: choose a folder for the run."
    files = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not files:
        return None
    if not resume:
        shown = ", ".join(files[:5]) + (" ..." if len(files) > 5 else "")
        return (f"--output {out} already holds files ({shown}): a new run would overwrite them. Choose a new "
                "folder, or pass --resume to continue the run saved there.")
    run_file = out / RUN_FILE
    if not run_file.is_file():
        return (f"--resume: {out} holds files but no {RUN_FILE}, so it is not a run of `python -m ftlib train`; "
                "it is left alone. Choose another --output.")
    try:
        saved = json.loads(run_file.read_text(encoding="utf-8"))["settings"]
    except (ValueError, KeyError, TypeError):
        return f"--resume: {run_file} is not readable as a run's settings; it is left alone. Choose another --output."
    diff = {k: (saved.get(k), settings[k]) for k in SETTINGS if saved.get(k) != settings[k]}
    if diff:
        shown = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
        return (f"--resume: the run in {out} was started with other settings ({shown}). Resume with the same flags, "
                "or start a new run in another --output folder.")
    return None


def _write_json(path: Path, payload: dict):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------ data, model, recipe
def label_names(data: str) -> list[str]:
    """The class names of ``--data`` (index = label id)."""
    from ftlib.data import MRPC_LABELS, SST2_LABELS

    return list(SST2_LABELS if data == "sst2" else MRPC_LABELS)


def load_data(name: str, tokenizer, max_length: int, train_size, eval_size, seed: int, budget=None):
    """``(train, eval, label_names, (train rows available, eval rows available))``: seeded slices of the
    train and validation splits, tokenised without padding (MRPC as sentence pairs, with token_type_ids)."""
    import ftlib
    from ftlib.text import check_labels, tokenize_dataset

    ds = ftlib.load_sst2() if name == "sst2" else ftlib.load_mrpc()
    names = label_names(name)
    available = (len(ds["train"]), len(ds["validation"]))
    take = (budget or ftlib.get_budget()).take        # a seeded shuffle, then the first rows
    train = take(ds["train"], train_size, seed=seed)
    evals = take(ds["validation"], eval_size, seed=seed)
    if name == "sst2":
        return (tokenize_dataset(train, tokenizer, max_length), tokenize_dataset(evals, tokenizer, max_length),
                names, available)

    def pairs(split):
        check_labels(split, "label", len(names))

        def encode(batch):
            return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=max_length)
        out = split.map(encode, batched=True, remove_columns=["sentence1", "sentence2", "idx"])
        return out.rename_column("label", "labels")
    return pairs(train), pairs(evals), names, available


def tiny_bert(vocab_size: int, num_labels: int, dropout: float = 0.1):
    """A random 2-layer BERT classifier (hidden 32, 2 heads, 512 positions): ``--model tiny-bert``."""
    import transformers

    cfg = transformers.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=512, num_labels=num_labels,
                                  hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return transformers.BertForSequenceClassification(cfg)


def load_classifier(name: str, names, dropout):
    """``(model, tokenizer)``: a float32 classifier with a new head of ``len(names)`` classes."""
    import ftlib

    labels = dict(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    if name == TINY_MODEL:
        tokenizer = ftlib.load_tokenizer("course-bert")
        model = tiny_bert(len(tokenizer), len(names), 0.1 if dropout is None else dropout)
        model.config.update(labels)
    else:
        tokenizer = ftlib.load_tokenizer(name)
        model = ftlib.load_model(name, "classification", num_labels=len(names), **labels)
    if dropout is not None:                        # every dropout of the model, whatever its config calls it
        import torch
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "dropout",
                    "attention_dropout"):
            if getattr(model.config, key, None) is not None:
                setattr(model.config, key, dropout)
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = dropout
    return model, tokenizer


def apply_recipe(model, recipe: str, r: int | None = None, alpha: float | None = None):
    """``full``: unchanged; ``lora``: :func:`ftlib.lora.add_lora` (query, value; classifier trainable);
    ``head``: every weight frozen but the classifier's."""
    if recipe == "lora":
        from ftlib.lora import add_lora
        add_lora(model, r=r, alpha=alpha)
    elif recipe == "head":
        from ftlib.strategies import freeze
        freeze(model, keep=("classifier",))
    return model


# -------------------------------------------------------------------------------------- a run
def run(args, callbacks=()) -> dict | None:
    """One run from parsed flags (:func:`parser`); returns the metrics (on rank 0; None elsewhere).
    ``callbacks`` go to :func:`ftlib.train.fit` (a function returning True stops the run, checkpointed)."""
    import ftlib
    from ftlib import distributed
    from ftlib.device import pick_device, seed_everything
    from ftlib.strategies import count_parameters
    from ftlib.text import input_limit, make_loader
    from ftlib.train import evaluate, fit

    check_launcher()
    budget = ftlib.get_budget()
    settings = check_settings(args, budget)
    out = Path(args.output).expanduser()
    device = pick_device(args.device or ("cpu" if _accelerate_cpu(os.environ) else None))
    dtype, dtype_why = _precision(args.precision, device)
    world = distributed.init_from_env(device)       # torchrun / accelerate: join the process group now
    bars = _quiet_libraries(distributed.is_main())
    try:
        if world > 1:
            device = distributed.local_device(device)
        main = distributed.is_main()

        def say(*parts):
            if main:
                print(*parts, flush=True)
        # rank 0 looks at the folder, every process hears its answer (a refusal stops them all alike)
        problem = distributed.gather_objects(_output_problem(out, args.resume, settings) if main else None)[0]
        if problem:
            raise _everywhere(CourseError(problem))

        per = f", {math.ceil(settings['batch_size'] / world)} or fewer rows per process" if world > 1 else ""
        say(f"{'device':10s} {device} x {world} process{'es' if world > 1 else ''}"
            f"{' (' + ('nccl' if device.type == 'cuda' else 'gloo') + ')' if world > 1 else ''}")
        say(f"{'precision':10s} {str(dtype).replace('torch.', '')} ({dtype_why})")
        say(f"{'budget':10s} {budget.name}: train-size {budget.train_size or 'all'}, eval-size "
            f"{budget.eval_size or 'all'}, epochs {budget.epochs}, batch-size {budget.batch_size}, max-length "
            f"{budget.max_length} (FTLIB_BUDGET; flags override)")

        seed_everything(settings["seed"])              # the same new weights (head, LoRA) on every process
        names = label_names(settings["data"])
        model, tokenizer = load_classifier(settings["model"], names, settings["dropout"])
        limit = input_limit(model, tokenizer)
        if settings["max_length"] > limit:
            raise _everywhere(CourseError(f"--max-length {settings['max_length']}: {settings['model']} reads at most "
                                          f"{limit} tokens. Use --max-length {limit} or less."))
        apply_recipe(model, settings["recipe"], settings["lora_r"], settings["lora_alpha"])
        trainable, total = count_parameters(model)
        train_ds, eval_ds, _, available = load_data(settings["data"], tokenizer, settings["max_length"],
                                                    settings["train_size"], settings["eval_size"], settings["seed"],
                                                    budget)
        n_train, n_eval = len(train_ds), len(eval_ds)
        what = "sentences" if settings["data"] == "sst2" else "sentence pairs"
        say(f"{'data':10s} {settings['data']}: {n_train:,} training {what} (of {available[0]:,}), {n_eval:,} "
            f"evaluation {what} (of {available[1]:,} in validation), max-length {settings['max_length']}")
        say(f"{'model':10s} {settings['model']}, recipe {settings['recipe']}: {trainable:,} of {total:,} weights "
            f"trainable; lr {settings['lr']:g}, batch-size {settings['batch_size']}{per}")
        last = n_train % settings["batch_size"]
        if world > 1 and (settings["batch_size"] < world or 0 < last < world):
            rows = settings["batch_size"] if settings["batch_size"] < world else last
            raise _everywhere(CourseError(
                f"A batch of {rows} row(s) cannot be split over {world} processes (--train-size {n_train}, "
                f"--batch-size {settings['batch_size']}): every process needs at least one row of every batch. "
                f"Use a --batch-size of at least {world} and a --train-size whose last batch keeps {world} rows or "
                "more (a multiple of --batch-size), or fewer processes."))

        if main:                                       # nothing is written before the run can start
            out.mkdir(parents=True, exist_ok=True)
            if not (out / RUN_FILE).is_file():
                _write_json(out / RUN_FILE, {"settings": settings, "command": "python -m ftlib train"})
        distributed.barrier()
        train_batches = make_loader(train_ds, tokenizer, settings["batch_size"], shuffle=True, seed=settings["seed"],
                                    num_labels=len(names))
        eval_batches = make_loader(eval_ds, tokenizer, settings["batch_size"], num_labels=len(names))
        history = fit(model, train_batches, eval_batches, task="classification", epochs=settings["epochs"],
                      max_steps=settings["max_steps"], lr=settings["lr"], weight_decay=settings["weight_decay"],
                      warmup_ratio=settings["warmup_ratio"], grad_accum_steps=settings["grad_accum_steps"],
                      device=device, dtype=dtype, checkpoint_dir=out, checkpoint_every=args.checkpoint_every,
                      resume=args.resume, callbacks=list(callbacks), progress=main and sys.stderr.isatty(),
                      verbose=True)
        steps = len(history.step_loss)
        if history.eval_loss and history.step and history.step[-1] == steps:
            final = {"loss": history.eval_loss[-1], "accuracy": history.eval_accuracy[-1]}
        else:                                          # stopped inside an epoch: evaluate now (every process)
            final = evaluate(model, eval_batches, device, dtype=dtype)
        metrics = {
            "eval_accuracy": final["accuracy"], "eval_loss": final["loss"], "eval_size": n_eval,
            "train_size": n_train, "train_loss": history.train_loss[-1] if history.train_loss else None,
            "steps": steps, "epochs_done": len(history.epoch), "stopped": history.stopped,
            "examples": history.examples, "tokens": history.tokens, "train_seconds": history.train_seconds,
            "examples_per_s": history.examples_per_s if history.train_seconds else None,
            "world_size": world, "device": str(device), "precision": str(dtype).replace("torch.", ""),
            "trainable_parameters": trainable, "total_parameters": total,
            "checkpoint": str(out / CHECKPOINT_FILE), "model_dir": str(out / MODEL_DIR),
            "settings": settings, "history": {"epoch": history.epoch, "step": history.step,
                                              "train_loss": history.train_loss, "eval_loss": history.eval_loss,
                                              "eval_accuracy": history.eval_accuracy,
                                              "step_loss": history.step_loss}}
        if main:
            from ftlib.deploy import save
            if settings["recipe"] == "lora":
                from ftlib.lora import merge_lora
                merge_lora(model)                      # a plain BERT for predict (the checkpoint keeps LoRA)
            save(model.cpu(), tokenizer, out / MODEL_DIR, overwrite=True)
            _write_json(out / METRICS_FILE, metrics)
            say(f"final eval accuracy {final['accuracy']:.4f} on {n_eval:,} {what} (eval loss {final['loss']:.4f}), "
                f"{steps} steps{', stopped: ' + history.stopped if history.stopped else ''}")
            say(f"wrote {out / METRICS_FILE}, {out / CHECKPOINT_FILE} and {out / MODEL_DIR}/"
                + (f" (python -m ftlib predict {out / MODEL_DIR} \"a fine film\")" if settings["data"] == "sst2"
                   else ""))
        distributed.barrier()
        return metrics if main else None
    finally:
        distributed.shutdown()
        _restore_libraries(*bars)


def _quiet_libraries(main: bool):
    """No progress bars from datasets/transformers (errors stay one line); other ranks: warnings off too.
    Returns what to restore (for a run called from Python)."""
    import datasets
    from transformers.utils import logging as hf_logging

    state = (datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity())
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    if not main:
        hf_logging.set_verbosity_error()
    return state


def _restore_libraries(datasets_bars: bool, hf_bars: bool, verbosity: int):
    import datasets
    from transformers.utils import logging as hf_logging

    if datasets_bars:
        datasets.enable_progress_bars()
    if hf_bars:
        hf_logging.enable_progress_bar()
    hf_logging.set_verbosity(verbosity)


def main(argv=None, prog: str = "python -m ftlib train") -> int:
    """``python -m ftlib train [flags]``: 0 on success; a mistake is one ``error: ...`` line and status 2."""
    args = parser(prog).parse_args(argv)
    try:
        run(args)
    except CourseError as err:
        sys.stdout.flush()
        rank = os.environ.get("RANK", "0")
        if rank in ("", "0") or not getattr(err, "every_rank", False):
            where = "" if rank in ("", "0") else f" (rank {rank})"
            print(f"error{where}: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0
