"""The training engine: one loop that trains every model in the course (derived in notebook 06).

Every lesson that trains -- classification (06-09, 11, 14), causal language modelling (12),
instruction tuning and DPO (13), tagging, question answering and translation (15, 17, 18), distillation
(14) -- goes through
:func:`fit`, and every evaluation through :func:`evaluate`. The parts:

* **one optimiser rule** -- :func:`make_optimizer`: AdamW over the trainable parameters,
  no weight decay on 1-D parameters (biases, LayerNorm/RMSNorm weights), the fused kernel
  where the device has one (CUDA; ``fused=`` to choose);
* **one schedule** -- :func:`linear_schedule`: linear warm-up, then linear decay to 0;
* **one loss per task, shared by training and evaluation** -- :data:`TASKS`:
  ``"classification"`` (cross-entropy over ``logits``), ``"causal_lm"`` (next-token
  cross-entropy, :func:`ftlib.lm.chunked_lm_loss`: the full float32 logits never exist), ``"model"``
  (the ``.loss`` a transformers model returns when the batch holds its targets). Labels
  ``-100`` count for nothing everywhere;
* **one step** -- autocast to the compute dtype (bf16 on a recent GPU, float32 on a CPU or
  MPS: :func:`ftlib.device.pick_dtype`), a gradient scaler only for float16, clipping,
  gradient accumulation; weights, gradients and optimiser state stay float32 ("master
  weights"), so ``fit`` refuses a model whose trainable weights are half precision;
* **speed without changing the maths** -- ``compile=True`` runs the model through
  ``torch.compile`` with static shapes and compiles every batch shape *before* the clock
  starts (:meth:`ftlib.batches.DeviceBatches.warmup_batches`), reported apart as
  ``History.compile_seconds``; on a GPU, losses stay on the device and are read every
  ``log_every`` steps, so the loop does not wait for the device after each step;
* **checkpoints for every run** -- model, optimiser, scheduler, scaler, every random state
  and the position (epoch, batch, step): ``fit(..., resume=True)`` continues a stopped run
  to the same result. A checkpoint is written to a temporary file and renamed, and only
  after the losses since the last one were checked: a NaN/inf loss, or a loss that grew
  ``diverge_factor`` times above the first one, raises :class:`ftlib.CourseError` instead;
* **one process or many** -- started by ``torchrun --nproc_per_node=N`` (gloo on the CPU, NCCL
  on GPUs), the same ``fit`` trains data-parallel (:mod:`ftlib.distributed`): each process
  takes its shard of every global batch, DistributedDataParallel averages the gradients, the
  losses and evaluation sums are reduced over the processes, only rank 0 prints and writes
  checkpoints, and a checkpoint resumes on any number of processes. The global batch and the
  optimiser steps are those of the one-process run, so the weights are the same (to rounding).

:func:`predict` labels new sentences; :func:`plot_history` draws a run; :func:`best_epoch` and
:func:`overfits` read its per-epoch train and validation curves.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ftlib.device import autocast, pick_device, pick_dtype, sync
from ftlib.batches import IGNORE
from ftlib import distributed
from ftlib.errors import CourseError
from ftlib.lm import body_and_head, causal_lm_loss, chunked_lm_loss, labelled_logits

__all__ = ["History", "fit", "evaluate", "predict", "make_optimizer", "linear_schedule", "TASKS",
           "classification_loss", "lm_loss", "model_loss", "plot_history", "best_epoch", "overfits"]


# ----------------------------------------------------------------------------- the losses
def classification_loss(model, batch: dict, loss_fn=None):
    """``(mean loss, items, correct)`` for a sequence classifier; rows labelled -100 are skipped.

    ``loss_fn(logits, labels, model)``: a training loss of your own (class weights, an L1
    penalty, a rule constraint ...) instead of the mean cross-entropy."""
    return _score(_logits(model, batch), batch["labels"], model, loss_fn)


def _logits(model, batch: dict):
    """A classifier's float32 logits for a batch (its labels are not passed to the model)."""
    return model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()


def _score(logits, labels, model=None, loss_fn=None):
    valid = labels != IGNORE
    if loss_fn is not None:
        loss = loss_fn(logits, labels, model)
    else:
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE)
    correct = ((logits.argmax(-1) == labels) & valid).sum()
    return loss, valid.sum(), correct


def lm_loss(model, batch: dict, chunk_tokens: int | None = 4096, labelled_only: bool = False):
    """``(mean loss, predicted tokens, None)`` for a causal LM: logits at t score the token at t + 1.

    Models with a separate body and output layer (``get_decoder()`` and
    ``get_output_embeddings()``, as every transformers ``...ForCausalLM``, LoRA-wrapped too) use
    :func:`ftlib.lm.chunked_lm_loss`; others (or ``chunk_tokens=None``) make the full logits.
    ``labelled_only=True`` applies the output layer only at positions whose next token has a
    label (the response of a chat example, :mod:`ftlib.chat`): the same loss, fewer FLOPs when
    most labels are -100 (its boolean selection reads the labels' count on the host)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    labels = batch["labels"]
    body, head = body_and_head(model)
    if labelled_only:
        logits, target, _ = labelled_logits(model, inputs, labels)
        total = F.cross_entropy(logits, target, reduction="sum")
    elif chunk_tokens and body is not None:
        total = chunked_lm_loss(body(**{"use_cache": False, **inputs}).last_hidden_state, head, labels, chunk_tokens)
    else:
        total = causal_lm_loss(model(**inputs).logits, labels, reduction="sum")
    n = (labels[:, 1:] != IGNORE).sum()
    return total / n.clamp(min=1), n, None


def model_loss(model, batch: dict):
    """``(mean loss, rows, None)`` from the model's own ``.loss`` (the batch holds its targets)."""
    loss = model(**batch).loss
    if loss is None:
        raise CourseError(f"The model returned no loss for a batch with keys {sorted(batch)}: the batch must "
                          "hold the targets (labels, or start_positions/end_positions for QA).")
    return loss, torch.tensor(next(iter(batch.values())).shape[0], device=loss.device), None


TASKS = {"classification": classification_loss, "causal_lm": lm_loss, "model": model_loss}


def _task(task, loss_fn=None):
    if callable(task):
        return task
    if task not in TASKS:
        raise CourseError(f"Unknown task {task!r}: use one of {sorted(TASKS)} or a function "
                          "(model, batch) -> (mean loss, items, correct or None).")
    if loss_fn is not None:
        if task != "classification":
            raise CourseError("loss_fn= replaces the classification loss; for other tasks pass task=<function>.")
        return lambda model, batch: classification_loss(model, batch, loss_fn)
    return TASKS[task]


# ----------------------------------------------------------------- optimiser and schedule
def make_optimizer(model, lr: float, weight_decay: float = 0.0, param_groups=None,
                   fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; 1-D ones (biases, norm weights) get no weight decay.

    ``param_groups``: your own list of groups (dicts, as ``torch.optim`` takes them, e.g. one
    learning rate per layer); their 1-D parameters get no decay either. ``fused``: the fused
    kernel (default: on CUDA)."""
    if param_groups is not None:
        param_groups = [dict(g, params=list(g["params"])) for g in param_groups]
        if not any(g["params"] for g in param_groups):
            raise CourseError("param_groups holds no parameters: give a list of dicts with 'params'.")
    else:
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
        if not param_groups[0]["params"]:
            raise CourseError("The model has no trainable parameters (all have requires_grad=False): "
                              "unfreeze at least the head before training.")
    groups = []
    for g in param_groups:                               # the one no-decay rule
        decay = g.get("weight_decay", weight_decay)
        for params, wd in (([p for p in g["params"] if p.ndim >= 2], decay),
                           ([p for p in g["params"] if p.ndim < 2], 0.0)):
            if params:
                groups.append({**g, "params": params, "weight_decay": wd})
    for p in (p for g in groups for p in g["params"]):
        if p.dtype != torch.float32:
            raise CourseError(f"A trainable parameter is {p.dtype}: ftlib trains float32 weights and computes in "
                              "low precision under autocast (mixed precision). Load the model in float32 "
                              "(ftlib.load_model does) or call model.float() first.")
    device = groups[0]["params"][0].device
    fused = device.type == "cuda" if fused is None else fused
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=fused or None)


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Learning-rate factor rising 0 -> 1 over ``warmup_steps``, then falling to 0 at ``total_steps``."""
    def factor(step):
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------- what a run reports
@dataclass
class History:
    """What a run did: one entry per epoch, plus the loss and learning rate of every step."""
    epoch: list = field(default_factory=list)
    step: list = field(default_factory=list)          # optimizer steps done at the end of the epoch
    train_loss: list = field(default_factory=list)
    eval_loss: list = field(default_factory=list)
    eval_accuracy: list = field(default_factory=list)  # None for tasks without accuracy
    lr: list = field(default_factory=list)            # learning rate at the end of the epoch
    seconds: list = field(default_factory=list)       # wall time of the epoch, evaluation included
    step_loss: list = field(default_factory=list)     # training loss of every optimizer step
    step_lr: list = field(default_factory=list)       # learning rate used by every step
    stopped: str = ""                                 # "", "early stopping", "callback" or "max_steps"
    train_seconds: float = 0.0                        # training steps only (no evaluation, no compilation)
    compile_seconds: float = 0.0                      # compiling before the clock (compile=True)
    examples: int = 0                                 # training rows processed (padding rows excluded)
    tokens: int = 0                                   # real (unpadded) input tokens processed

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.train_seconds if self.train_seconds else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds else float("nan")


# ------------------------------------------------------------------------- checkpoints
def _rng_state(gen):
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "loader": gen.get_state() if gen is not None else None}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state, gen):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if gen is not None and state["loader"] is not None:
        gen.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_atomic(payload: dict, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)      # readers see the old file or the new one, never half of one


def _generator(batches):
    """The random generator that shuffles ``batches`` (DataLoader, its sampler, DeviceBatches), if any."""
    for owner in (getattr(batches, "sampler", None), batches):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator):
            return gen
    return None


# ------------------------------------------------------------------------------- checks
def _check_model_inputs(model, tokenizer=None, batch=None):
    """Clear errors for what would otherwise be an IndexError (CPU) or a device-side assert (GPU)."""
    emb = getattr(model, "get_input_embeddings", lambda: None)()
    n_emb = emb.num_embeddings if emb is not None else None
    if tokenizer is not None and n_emb is not None and len(tokenizer) > n_emb:
        raise CourseError(f"The tokenizer knows {len(tokenizer)} tokens but the model's embedding has only "
                          f"{n_emb} rows: they do not belong together. Load both from the same name, or "
                          "call model.resize_token_embeddings(len(tokenizer)) after adding tokens.")
    if batch is None:
        return
    for key in ("input_ids", "prompt_ids", "response_ids"):    # the last two: DPO pairs sharing a prompt
        if n_emb is not None and key in batch and int(batch[key].max()) >= n_emb:
            raise CourseError(f"A batch holds token id {int(batch[key].max())}, but the model has only "
                              f"{n_emb} embeddings: tokenise with the model's own tokenizer.")
    labels, n = batch.get("labels"), getattr(getattr(model, "config", None), "num_labels", None)
    if labels is not None and labels.ndim == 1 and n is not None:
        real = labels[labels != IGNORE]
        if len(real) and (real.min() < 0 or real.max() >= n):
            raise CourseError(f"Labels must be 0 .. {n - 1} for a model with num_labels={n}, found "
                              f"{sorted(set(real.tolist()))[:5]}. Fix the labels or load the model "
                              "with num_labels=<number of classes>.")


def _to(batch, device):
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _count_tokens(batch):
    if "prompt_mask" in batch and "response_mask" in batch:   # DPO pairs sharing a prompt: the tokens run
        return batch["prompt_mask"].sum() + batch["response_mask"].sum()
    mask = batch.get("attention_mask")
    if mask is None and "input_ids" not in batch:        # vectors, not tokens (a head on cached features)
        return _rows(batch)
    if mask is None:                                     # packed blocks; right padding is counted too
        return batch["input_ids"].numel()
    if mask.ndim == 4:                                   # (B, 1, T, T) key-padding mask: read one query row
        mask = mask[:, 0, 0, :]
    labels = batch.get("labels")
    if labels is not None and labels.ndim == 1:          # static padding rows (label -100) are copies, not data
        return (mask.sum(1) * (labels != IGNORE)).sum()
    return mask.sum()


def _rows(batch):
    labels = batch.get("labels")
    if labels is not None and labels.ndim == 1:
        return (labels != IGNORE).sum()
    # cached hidden states have no ids; DPO pairs sharing a prompt count their answers (chosen and rejected)
    rows_of = batch.get("input_ids", batch.get("response_ids", batch.get("attention_mask", labels)))
    return rows_of.shape[0]


# ---------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model, batches, device=None, *, task="classification", dtype=None, mixed_precision: bool = True,
             compute=None, predictions: bool = False) -> dict:
    """Mean loss per item over ``batches`` (and accuracy for classification, perplexity for a causal LM).

    Uses the same loss function as training (:data:`TASKS`); one host-device synchronisation
    at the end. ``compute``: a function ``batch -> (loss, items, correct)`` to call instead of the task's
    loss on ``model`` (``fit`` passes its compiled one).

    ``predictions=True`` (classification): the same pass also returns numpy arrays ``predictions``
    (the arg-max class), ``labels`` and ``probabilities`` (softmax, one row per example), for every
    row whose label is not -100, in the order the batches yield them -- enough for F1, a confusion
    matrix or calibration without a second pass over the data."""
    loss_of = _task(task)
    if predictions and (task != "classification" or compute is not None):
        raise CourseError("predictions=True is for task='classification' evaluated eagerly (no compute=); for "
                          "other tasks run the model yourself, e.g. with ftlib.train.predict.")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = dtype or (pick_dtype(device) if mixed_precision else torch.float32)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    n = torch.zeros((), dtype=torch.long, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    has_correct = False
    kept = {"predictions": [], "labels": [], "probabilities": []}
    parts = distributed.world()                        # > 1: this process scores its shard of each batch
    for batch in batches:
        batch = _to(batch, device)
        if parts > 1:
            batch = distributed.shard(batch, distributed.rank(), parts)
            if next(iter(batch.values())).shape[0] == 0:      # fewer rows than processes
                for v in kept.values():
                    v.append(None)
                continue
        if device.type == "cpu":                       # reading ids on a GPU would sync every batch
            _check_model_inputs(model, batch=batch)
        with autocast(device, dtype):
            if predictions:
                labels, logits = batch["labels"], _logits(model, batch)
                loss, items, right = _score(logits, labels)
                keep = labels != IGNORE
                kept["predictions"].append(logits.argmax(-1)[keep])
                kept["labels"].append(labels[keep])
                kept["probabilities"].append(torch.softmax(logits, -1)[keep])
            else:
                loss, items, right = compute(batch) if compute is not None else loss_of(model, batch)
        if parts > 1:                                  # a shard of static padding rows only: mean of nothing
            loss = torch.where(torch.as_tensor(items, device=device) > 0, loss, torch.zeros_like(loss))
        total += loss.double() * items
        n += items
        if right is not None:
            correct += right
            has_correct = True
    model.train(was_training)
    if parts > 1:                                      # the sums of every process
        sums = distributed.all_reduce_sum(torch.stack([total, n.double(), correct.double(),
                                                       torch.tensor(float(has_correct), device=device)]))
        total, n, correct, has_correct = sums[0], sums[1].round().long(), sums[2].round().long(), bool(sums[3] > 0)
    n = int(n)
    if n == 0:
        raise CourseError("The evaluation batches hold no examples (or every label is -100): is the set empty?")
    out = {"loss": float(total) / n, "n": n}
    if has_correct:
        out["accuracy"] = int(correct) / n
    if task == "causal_lm":
        from ftlib.metrics import perplexity
        out["perplexity"] = perplexity(out["loss"])
    if predictions and parts > 1:                     # every shard, in the order of the global batches
        mine = {k: [None if t is None else t.cpu().numpy() for t in v] for k, v in kept.items()}
        every = distributed.gather_objects(mine)
        out.update({k: np.concatenate([g[k][b] for b in range(len(mine[k])) for g in every if g[k][b] is not None])
                    for k in mine})
    elif predictions:
        out.update({k: torch.cat(v).cpu().numpy() for k, v in kept.items()})
    return out


# ----------------------------------------------------------------------------- training
def _compile(model, loss_of, mode):
    """``batch -> loss_of(model, batch)``, compiled as one graph: the model's forward and the loss together."""
    import torch._dynamo

    cfg = torch._dynamo.config                           # one graph per static shape, train and eval
    limit = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, limit, max(getattr(cfg, limit), 64))

    def compute(batch):
        return loss_of(model, batch)
    compiled = torch.compile(compute, dynamic=False, mode=None if mode is True else mode)
    if mode != "reduce-overhead":
        return compiled

    def replay(batch):
        # CUDA graphs reuse their output memory: tell them a new step begins, so that the last
        # step's outputs (already read or copied by fit) may be overwritten (no-op off CUDA)
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(batch)
    return replay


def _call(module, batch):
    return module(batch)


def _checksum(batch) -> int:
    """An order-sensitive sum of a batch's first tensor (to compare the batches of two processes)."""
    t = next(iter(batch.values())).flatten().long()
    return int((t * torch.arange(1, t.numel() + 1, device=t.device)).sum())


def _warm_up(model, runs, device, dtype, gen, shard=None):
    """Compile every batch shape before the clock: ``runs`` are ``(compute, batches, grad)`` for
    training (with a backward pass) and evaluation; ``shard``: this process's rows of a batch (data
    parallel). Changes no weight and no random state."""
    state = _rng_state(gen)
    t0 = time.perf_counter()
    for compute, batches, grad in runs:
        if batches is None or not hasattr(batches, "warmup_batches"):
            continue
        model.train(grad)
        for batch in batches.warmup_batches():
            batch = _to(batch, device) if shard is None else shard(_to(batch, device))
            with torch.set_grad_enabled(grad), autocast(device, dtype):
                loss = compute(batch)[0]
            if grad:
                loss.backward()
    model.zero_grad(set_to_none=True)
    sync(device)
    _set_rng_state(state, gen)
    return time.perf_counter() - t0


class _LivePlot:
    """Redraws plot_history in place in a notebook; does nothing elsewhere."""

    def __init__(self, enabled: bool):
        self.enabled, self.handle = enabled and _in_notebook(), None

    def update(self, history):
        if not self.enabled:
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig = plot_history(history)
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)


def fit(model, train_batches, eval_batches=None, *, task="classification", epochs: int | None = None,
        max_steps: int | None = None, lr: float = 5e-5, weight_decay: float = 0.01, warmup_ratio: float = 0.1,
        max_grad_norm: float | None = 1.0, grad_accum_steps: int = 1, device=None, dtype=None,
        mixed_precision: bool = True, fused: bool | None = None, compile=False, log_every: int | None = None,
        diverge_factor: float | None = 10.0, early_stopping_patience: int | None = None, checkpoint_dir=None,
        checkpoint_every: int | None = None, resume: bool = False, callbacks=(), plot: bool = False,
        progress: bool = True, verbose: bool = True, loss_fn=None, param_groups=None) -> History:
    """Train ``model`` on ``train_batches``; see the module docstring. Returns a :class:`History`.

    ``train_batches`` / ``eval_batches``: any re-iterable of dict batches with a length -- a
    DataLoader (:func:`ftlib.text.make_loader`), :class:`ftlib.batches.DeviceBatches`, a list.
    ``task``: a key of :data:`TASKS` or a function ``(model, batch) -> (mean loss, items,
    correct or None)``. Run length: ``epochs`` (default 1), or ``max_steps`` optimizer steps
    (passes repeat as needed). ``dtype``: the autocast dtype (default :func:`pick_dtype`;
    ``mixed_precision=False`` means float32). ``compile``: ``True`` or a ``torch.compile``
    mode such as ``"reduce-overhead"`` (CUDA graphs). ``log_every``: read the loss from the
    device every that many steps (default: every step on a CPU, every 50 on a GPU).
    ``callbacks``: functions called after every optimizer step with a dict (step, epoch,
    loss, lr, total_steps); one that returns True stops the run (after a checkpoint, if
    ``checkpoint_dir`` is set). ``checkpoint_every``: also save every that many steps
    (a checkpoint is always saved at the end of an epoch). ``loss_fn(logits, labels, model)``:
    a classification training loss of your own; evaluation reports plain cross-entropy.
    ``param_groups``: see :func:`make_optimizer`.
    """
    from tqdm.auto import tqdm

    loss_of, eval_task = _task(task, loss_fn), task
    if epochs is None:
        epochs = 1 if max_steps is None else None
    if (epochs is not None and epochs < 1) or (max_steps is not None and max_steps < 1) or grad_accum_steps < 1 \
            or not 0 <= warmup_ratio < 1:
        raise CourseError("Need epochs >= 1 (or max_steps >= 1), grad_accum_steps >= 1 and 0 <= warmup_ratio < 1.")
    n_batches = len(train_batches)
    if n_batches == 0:
        raise CourseError("The training batches are empty: is the training set empty (or smaller than one "
                          "static batch)?")
    if resume and checkpoint_dir is None:
        raise CourseError("resume=True needs checkpoint_dir= (the folder the stopped run saved into).")
    collate = getattr(train_batches, "collate_fn", None)
    _check_model_inputs(model, getattr(collate, "tokenizer", None))
    device = torch.device(device) if device is not None else (
        getattr(train_batches, "device", None) or pick_device())
    dtype = dtype or (pick_dtype(device) if mixed_precision else torch.float32)
    parallel = distributed.init_from_env(device) > 1      # started by torchrun: data parallel
    if parallel:                                          # rank 0 alone prints, draws and writes
        device, main = distributed.local_device(device), distributed.is_main()
        progress, verbose, plot = progress and main, verbose and main, plot and main
    model.to(device)
    steps_per_epoch = math.ceil(n_batches / grad_accum_steps)
    if epochs is None:
        epochs = math.ceil(max_steps / steps_per_epoch)
    total_steps = min(steps_per_epoch * epochs, max_steps or math.inf)
    optimizer = make_optimizer(model, lr, weight_decay, param_groups, fused)
    scheduler = linear_schedule(optimizer, math.ceil(warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    gen = _generator(train_batches)
    log_every = log_every or (1 if device.type == "cpu" else 50)
    config = dict(epochs=epochs, max_steps=max_steps, lr=lr, weight_decay=weight_decay, warmup_ratio=warmup_ratio,
                  max_grad_norm=max_grad_norm, grad_accum_steps=grad_accum_steps, batches=n_batches,
                  task=task if isinstance(task, str) else getattr(task, "__name__", "custom"))
    ckpt = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir is not None else None
    pos = dict(epoch=0, batch=0, step=0, best=math.inf, bad_epochs=0, epoch_rng=None)
    history, best_weights = History(), None

    if resume and ckpt.is_file():
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)  # our own file
        if saved["config"] != config:
            diff = {k: (saved["config"].get(k), v) for k, v in config.items() if saved["config"].get(k) != v}
            raise CourseError(f"The checkpoint in {checkpoint_dir} was made with other settings "
                              f"(saved, now): {diff}. Resume with the same settings or start afresh.")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        pos, history, best_weights = saved["position"], History(**saved["history"]), saved["best_weights"]
        _set_rng_state(saved["rng"], gen)
        if verbose:
            print(f"resuming from {ckpt}: epoch {pos['epoch'] + 1}, step {pos['step']} of {total_steps}")
    elif resume and verbose:
        print(f"no checkpoint in {checkpoint_dir} yet: starting from the beginning")
    dp = distributed.DataParallel(model, loss_of, device) if parallel else None
    if dp is not None:
        dp.check_same("numbers of training batches", n_batches)

    def compute(batch):
        return loss_of(model, batch)
    if dp is not None:                                    # training runs the task through DDP's forward
        compute = dp.compute
    eval_compute = None                                   # evaluation: the task's own loss, eagerly
    if compile:
        compute = eval_compute = _compile(model, loss_of, compile)
        if dp is not None:
            compute = _compile(dp.module, _call, compile)
        if loss_fn is not None:                           # a loss of your own trains; plain CE evaluates
            eval_compute = _compile(model, _task(eval_task), compile)
        history.compile_seconds += _warm_up(model, [(compute, train_batches, True), (eval_compute, eval_batches, False)],
                                            device, dtype, gen, shard=dp.shard if dp is not None else None)

    pending = []                                          # (loss tensor, lr) of steps not read yet

    def flush():
        """Read the pending step losses from the device (one sync) and check them."""
        if not pending:
            return
        values = torch.stack([loss for loss, _ in pending])
        values = (values if dp is None else dp.mean(values)).tolist()   # data parallel: the global batch's loss
        for value, (_, step_lr) in zip(values, pending):
            step = len(history.step_loss) + 1
            if not math.isfinite(value):
                raise CourseError(f"The loss is {value} at step {step} (epoch {pos['epoch'] + 1}). Try a lower "
                                  f"learning rate (now {lr}), check the labels and inputs, or train in float32 "
                                  "(mixed_precision=False). No checkpoint was written for it.")
            first = history.step_loss[0] if history.step_loss else value
            if diverge_factor and step > 1 and value > diverge_factor * max(first, 1e-3):
                raise CourseError(f"The training loss rose from {first:.4g} (step 1) to {value:.4g} (step {step}): "
                                  f"the run is diverging. Lower the learning rate (now {lr}) or use warm-up; "
                                  "no checkpoint was written for it. (diverge_factor=None turns this check off.)")
            history.step_loss.append(value)
            history.step_lr.append(step_lr)
        pending.clear()
        bar.set_postfix(loss=f"{history.step_loss[-1]:.4f}", lr=f"{history.step_lr[-1]:.2e}")

    def save():
        if ckpt is not None:
            flush()
            if dp is None or dp.rank == 0:                # one file, the same for any number of processes
                _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                              "config": config, "position": dict(pos), "history": asdict(history),
                              "best_weights": best_weights, "rng": _rng_state(gen)}, ckpt)
            if dp is not None:
                distributed.barrier()

    live = _LivePlot(plot)
    bar = tqdm(total=total_steps, initial=pos["step"], desc="training", disable=not progress)
    stop = history.stopped != "" or pos["step"] >= total_steps
    check_inputs = device.type == "cpu"                 # reading ids on a GPU would sync every step
    while pos["epoch"] < epochs and not stop:
        t0, epoch = time.perf_counter(), pos["epoch"]
        if pos["batch"] == 0:
            pos["epoch_rng"] = _rng_state(gen)         # how this epoch's shuffle begins
            batches = iter(train_batches)
        else:                                          # resuming inside an epoch:
            resume_rng = _rng_state(gen)
            _set_rng_state(pos["epoch_rng"], gen)      # replay the epoch's shuffle,
            batches = iter(train_batches)
            for _ in range(pos["batch"]):              # skip what the stopped run already did,
                next(batches)
            _set_rng_state(resume_rng, gen)            # and go on with the saved random state
        model.train()
        epoch_first_step = epoch * steps_per_epoch
        group_loss = torch.zeros((), device=device)
        examples = torch.zeros((), dtype=torch.long, device=device)
        tokens = torch.zeros((), dtype=torch.long, device=device)
        sync(device)
        t_train = time.perf_counter()
        for i, batch in enumerate(batches, start=pos["batch"]):
            batch = _to(batch, device)
            if dp is not None:
                if i == pos["batch"]:                      # once an epoch: the same global batches everywhere?
                    dp.check_same("first batches of the epoch", _checksum(batch))
                batch = dp.shard(batch)
            if check_inputs:
                _check_model_inputs(model, batch=batch)
            group = min(grad_accum_steps, n_batches - (i // grad_accum_steps) * grad_accum_steps)
            last = not ((i + 1) % grad_accum_steps and i + 1 < n_batches)
            with contextlib.nullcontext() if dp is None else dp.no_sync(last):
                with autocast(device, dtype):
                    loss = compute(batch)[0] if dp is None else dp.weigh(*compute(batch)[:2])
                scaler.scale(loss / group).backward()
            group_loss += loss.detach().float() / group
            examples += _rows(batch)
            tokens += _count_tokens(batch)
            if (i + 1) % grad_accum_steps and i + 1 < n_batches:
                continue
            if max_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            pending.append((group_loss, scheduler.get_last_lr()[0]))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            pos["step"], pos["batch"] = pos["step"] + 1, i + 1
            group_loss = torch.zeros((), device=device)
            bar.update(1)
            if callbacks or pos["step"] % log_every == 0:
                flush()
            if callbacks:
                info = dict(step=pos["step"], epoch=epoch + 1, loss=history.step_loss[-1],
                            lr=history.step_lr[-1], total_steps=total_steps)
                stop = any([bool(cb(info)) for cb in callbacks])
                if dp is not None:                         # one process asks: every process stops
                    stop = dp.any(stop)
            if stop or (checkpoint_every and pos["step"] % checkpoint_every == 0):
                save()                                 # (a stopped run can be resumed from here)
            if stop:
                history.stopped = "callback"
            elif pos["step"] >= total_steps:
                stop = True
                if pos["step"] < steps_per_epoch * epochs:
                    history.stopped = "max_steps"
            if plot and pos["step"] % max(1, total_steps // 20) == 0:
                flush()
                live.update(history)
            if stop:
                break
        flush()
        sync(device)
        history.train_seconds += time.perf_counter() - t_train
        if dp is not None:
            examples, tokens = distributed.all_reduce_sum(examples), distributed.all_reduce_sum(tokens)
        history.examples += int(examples)
        history.tokens += int(tokens)
        if history.stopped == "callback":
            break
        history.epoch.append(epoch + 1)
        history.step.append(pos["step"])
        history.train_loss.append(float(np.mean(history.step_loss[epoch_first_step:] or [math.nan])))
        history.lr.append(scheduler.get_last_lr()[0])
        if eval_batches is not None:
            metrics = evaluate(model, eval_batches, task=eval_task, device=device, dtype=dtype, compute=eval_compute)
            history.eval_loss.append(metrics["loss"])
            history.eval_accuracy.append(metrics.get("accuracy"))
        history.seconds.append(time.perf_counter() - t0)
        if verbose:
            ev = f", eval loss {history.eval_loss[-1]:.4f}" if eval_batches is not None else ""
            if eval_batches is not None and history.eval_accuracy[-1] is not None:
                ev += f", eval accuracy {history.eval_accuracy[-1]:.4f}"
            print(f"epoch {epoch + 1}/{epochs}: train loss {history.train_loss[-1]:.4f}{ev}, "
                  f"{history.seconds[-1]:.0f} s")
        if eval_batches is not None and early_stopping_patience is not None:
            if history.eval_loss[-1] < pos["best"]:
                pos["best"], pos["bad_epochs"] = history.eval_loss[-1], 0
                best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                pos["bad_epochs"] += 1
            if pos["bad_epochs"] >= early_stopping_patience:
                history.stopped, stop = "early stopping", True
        pos["epoch"], pos["batch"] = epoch + 1, 0
        save()
        live.update(history)
    bar.close()
    if history.stopped == "early stopping" and best_weights is not None:
        model.load_state_dict(best_weights)
        if verbose:
            print(f"early stopping: eval loss did not improve for {early_stopping_patience} epoch(s); "
                  f"restored the best weights (eval loss {pos['best']:.4f})")
    model.eval()
    return history


# ------------------------------------------------------------------------------ predict
@torch.no_grad()
def predict(model, tokenizer, sentences, *, device=None, batch_size: int = 32, max_length: int | None = None,
            truncate: bool = False):
    """``[{"sentence", "label", "probability"}, ...]`` for new sentences (label names from the config).

    The sentences are checked like ``ftlib.deploy.Predictor`` checks them
    (:func:`ftlib.text.check_sentences`): a bare string is one sentence; ``None``, a non-string
    or an empty sentence is refused; a sentence longer than ``max_length`` tokens (default: what
    the model can read) is refused unless ``truncate=True``, which keeps its first tokens."""
    from ftlib.text import check_sentences, input_limit

    limit = max_length or input_limit(model, tokenizer)
    sentences = check_sentences(sentences, tokenizer=tokenizer, max_length=limit, truncate=truncate)
    _check_model_inputs(model, tokenizer)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start:start + batch_size]
        enc = tokenizer(chunk, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        probs = model(**enc.to(device)).logits.float().softmax(-1).cpu()
        for s, p in zip(chunk, probs):
            k = int(p.argmax())
            out.append({"sentence": s, "label": model.config.id2label.get(k, k), "probability": float(p[k])})
    return out


# -------------------------------------------------------------------------------- plots
def plot_history(history: History, axes=None):
    """Training loss per step (its running mean, and eval loss per epoch); eval accuracy per epoch."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    loss = np.asarray(history.step_loss, dtype=float)
    axes[0].plot(np.arange(1, len(loss) + 1), loss, alpha=0.35, label="train loss (step)")
    if len(loss) >= 10:
        w = max(5, len(loss) // 20)
        axes[0].plot(np.arange(w, len(loss) + 1), np.convolve(loss, np.ones(w) / w, "valid"),
                     label=f"running mean of {w}")
    if history.eval_loss:
        axes[0].plot(history.step, history.eval_loss, "o-", label="eval loss (per epoch)")
        acc = [(x, y) for x, y in zip(history.step, history.eval_accuracy) if y is not None]
        if acc:
            axes[1].plot(*zip(*acc), "s-", color="C3")
        for x, y in acc:
            axes[1].annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center")
    axes[0].set(xlabel="optimizer step", ylabel="loss (nats)", title="loss")
    axes[0].legend()
    axes[1].set(xlabel="optimizer step", ylabel="accuracy", title="eval accuracy (per epoch)",
                xlim=(0, max(len(loss), 1) * 1.05), ylim=(0, 1.05))
    return axes[0].figure


# ------------------------------------------------------------------ reading the curves
def _curves(history: History):
    if not history.eval_loss or len(history.eval_loss) != len(history.train_loss):
        raise CourseError("The run has no evaluation loss for every epoch: pass eval_batches to fit, which "
                          "evaluates after every epoch.")
    return history.train_loss, history.eval_loss


def _lowest(eval_loss) -> int:
    if not np.isfinite(eval_loss).all():
        raise CourseError("The evaluation loss is NaN or infinite at some epoch: the run diverged, so no epoch "
                          "is the best one. Lower the learning rate (or clip gradients) and run it again.")
    return int(np.argmin(eval_loss))


def best_epoch(history: History) -> int:
    """The epoch (as ``history.epoch`` counts, from 1) with the lowest evaluation loss, the first one on
    a tie: the weights that early stopping keeps."""
    _, eval_loss = _curves(history)
    return history.epoch[_lowest(eval_loss)]


def overfits(history: History, margin: float = 0.0) -> bool:
    """Did the run overfit? True when, after the epoch with the lowest evaluation loss, the evaluation
    loss ended more than ``margin`` above that lowest value while the training loss went on falling
    (lower at the last epoch than at the best one).

    False for a run still improving on the evaluation set, for one whose training loss rose too (a
    diverging run, or too high a learning rate) and for one that does not learn at all (both curves flat)."""
    train_loss, eval_loss = _curves(history)
    best = _lowest(eval_loss)
    return bool(eval_loss[-1] - eval_loss[best] > margin and train_loss[-1] < train_loss[best])


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
        return get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except ImportError:
        return False
