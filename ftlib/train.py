"""The fine-tuning loop, kept small (derived by hand in notebook 05).

* :func:`fit` -- AdamW (no weight decay on biases and LayerNorm), linear warm-up then
  linear decay (warm-up as a *fraction* of all steps), gradient clipping, gradient
  accumulation, mixed precision on a GPU, evaluation every epoch, early stopping, and
  checkpoints you can resume from to the same result;
* :func:`evaluate` -- mean loss per example and accuracy;
* :func:`predict` -- labels and probabilities for new sentences;
* :func:`make_optimizer`, :func:`linear_schedule`, :func:`plot_history`.

A checkpoint (``checkpoint_dir/checkpoint.pt``) holds the model, optimizer, scheduler,
gradient scaler, every random-number state and the position (epoch, batch, step), so
``fit(..., resume=True)`` continues a stopped run exactly where it left off. It is written
to a temporary file and renamed, so a crash never leaves half a checkpoint; a NaN/inf loss
raises :class:`ftlib.CourseError` before anything is saved.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ftlib import CourseError
from ftlib.device import autocast, pick_device, pick_dtype

__all__ = ["History", "fit", "evaluate", "predict", "make_optimizer", "linear_schedule", "plot_history"]


@dataclass
class History:
    """What a run did: one entry per epoch, plus the loss and learning rate of every step."""
    epoch: list = field(default_factory=list)
    step: list = field(default_factory=list)          # optimizer steps done at the end of the epoch
    train_loss: list = field(default_factory=list)
    eval_loss: list = field(default_factory=list)
    eval_accuracy: list = field(default_factory=list)
    lr: list = field(default_factory=list)            # learning rate at the end of the epoch
    seconds: list = field(default_factory=list)       # wall time of the epoch (this process)
    step_loss: list = field(default_factory=list)     # training loss of every optimizer step
    step_lr: list = field(default_factory=list)       # learning rate used by every step
    stopped: str = ""                                 # "", "early stopping" or "callback"


def make_optimizer(model, lr: float, weight_decay: float = 0.0, param_groups=None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and LayerNorm weights (1-D) get no decay.

    ``param_groups``: your own list of parameter groups (dicts, as ``torch.optim`` takes them,
    e.g. one learning rate per layer) instead of the two default groups.
    """
    if param_groups is not None:
        param_groups = list(param_groups)
        if not param_groups or not any(list(g["params"]) for g in param_groups):
            raise CourseError("param_groups holds no parameters: give a list of dicts with 'params'.")
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise CourseError("The model has no trainable parameters (all have requires_grad=False): "
                          "unfreeze at least the head before training.")
    return torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=lr)


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Learning-rate factor rising 0 -> 1 over ``warmup_steps``, then falling to 0 at ``total_steps``."""
    def factor(step):
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


def _check_model_inputs(model, tokenizer=None, batch=None):
    """Clear errors for what would otherwise be an IndexError (CPU) or a device-side assert (GPU)."""
    n_emb = model.get_input_embeddings().num_embeddings
    if tokenizer is not None and len(tokenizer) > n_emb:
        raise CourseError(f"The tokenizer knows {len(tokenizer)} tokens but the model's embedding has only "
                          f"{n_emb} rows: they do not belong together. Load both from the same name, or "
                          "call model.resize_token_embeddings(len(tokenizer)) after adding tokens.")
    if batch is None:
        return
    if int(batch["input_ids"].max()) >= n_emb:
        raise CourseError(f"A batch holds token id {int(batch['input_ids'].max())}, but the model has only "
                          f"{n_emb} embeddings: tokenise with the model's own tokenizer.")
    labels, n = batch.get("labels"), model.config.num_labels
    if labels is not None and (labels.min() < 0 or labels.max() >= n):
        raise CourseError(f"Labels must be 0 .. {n - 1} for a model with num_labels={n}, found "
                          f"{sorted(set(labels.tolist()))[:5]}. Fix the labels or load the model "
                          "with num_labels=<number of classes>.")


def _forward_loss(model, batch, device, dtype, reduction="mean", loss_fn=None):
    batch = {k: v.to(device) for k, v in batch.items()}
    labels = batch.pop("labels")
    with autocast(device, dtype):
        logits = model(**batch).logits
    if loss_fn is not None:
        return loss_fn(logits.float(), labels, model), logits, labels
    return F.cross_entropy(logits.float(), labels, reduction=reduction), logits, labels


@torch.no_grad()
def evaluate(model, loader, device=None, mixed_precision: bool = True) -> dict:
    """Mean cross-entropy per example and accuracy of ``model`` over ``loader``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = pick_dtype(device) if mixed_precision else torch.float32
    model.eval()
    total, correct, n = 0.0, 0, 0
    for batch in loader:
        _check_model_inputs(model, batch=batch)
        loss_sum, logits, labels = _forward_loss(model, batch, device, dtype, reduction="sum")
        total += loss_sum.item()
        correct += (logits.argmax(-1) == labels).sum().item()
        n += len(labels)
    if n == 0:
        raise CourseError("The evaluation loader yields no examples: is the data set empty?")
    return {"loss": total / n, "accuracy": correct / n}


@torch.no_grad()
def predict(model, tokenizer, sentences, *, device=None, batch_size: int = 32, max_length: int | None = None):
    """``[{"sentence", "label", "probability"}, ...]`` for new sentences (label names from the config)."""
    sentences = [sentences] if isinstance(sentences, str) else list(sentences)
    if not sentences:
        raise CourseError("predict() got no sentences.")
    _check_model_inputs(model, tokenizer)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start:start + batch_size]
        enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        probs = model(**enc.to(device)).logits.float().softmax(-1).cpu()
        for s, p in zip(chunk, probs):
            k = int(p.argmax())
            out.append({"sentence": s, "label": model.config.id2label.get(k, k), "probability": float(p[k])})
    return out


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
        axes[1].plot(history.step, history.eval_accuracy, "s-", color="C3")
        for x, y in zip(history.step, history.eval_accuracy):
            axes[1].annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center")
    axes[0].set(xlabel="optimizer step", ylabel="cross-entropy (nats)", title="loss")
    axes[0].legend()
    axes[1].set(xlabel="optimizer step", ylabel="accuracy", title="eval accuracy (per epoch)",
                xlim=(0, max(len(loss), 1) * 1.05), ylim=(0, 1.05))
    return axes[0].figure


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
        return get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except ImportError:
        return False


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


def fit(model, train_loader, eval_loader=None, *, epochs: int = 1, lr: float = 5e-5,
        weight_decay: float = 0.01, warmup_ratio: float = 0.1, max_grad_norm: float | None = 1.0,
        grad_accum_steps: int = 1, device=None, mixed_precision: bool = True,
        early_stopping_patience: int | None = None, checkpoint_dir=None, checkpoint_every: int | None = None,
        resume: bool = False, callbacks=(), plot: bool = False, progress: bool = True,
        verbose: bool = True, loss_fn=None, param_groups=None) -> History:
    """Fine-tune a sequence classifier; see the module docstring. Returns a :class:`History`.

    ``callbacks``: functions called after every optimizer step with a dict (step, epoch,
    loss, lr, total_steps); one that returns True stops the run (after saving a
    checkpoint, if ``checkpoint_dir`` is set). ``checkpoint_every``: also save every that
    many optimizer steps (checkpoints are always saved at the end of every epoch).
    ``loss_fn(logits, labels, model) -> scalar``: the training loss instead of the mean
    cross-entropy (class weights, an L1 penalty, a rule constraint, ...); evaluation always
    reports plain cross-entropy. ``param_groups``: see :func:`make_optimizer`.
    """
    from tqdm.auto import tqdm

    if epochs < 1 or grad_accum_steps < 1 or not 0 <= warmup_ratio < 1:
        raise CourseError("Need epochs >= 1, grad_accum_steps >= 1 and 0 <= warmup_ratio < 1.")
    if len(train_loader) == 0:
        raise CourseError("The training loader yields no batches: is the training set empty?")
    if resume and checkpoint_dir is None:
        raise CourseError("resume=True needs checkpoint_dir= (the folder the stopped run saved into).")
    _check_model_inputs(model, getattr(train_loader.collate_fn, "tokenizer", None))
    device = torch.device(device) if device is not None else pick_device()
    dtype = pick_dtype(device) if mixed_precision else torch.float32
    model.to(device)
    n_batches = len(train_loader)
    steps_per_epoch = math.ceil(n_batches / grad_accum_steps)
    total_steps = steps_per_epoch * epochs
    optimizer = make_optimizer(model, lr, weight_decay, param_groups)
    scheduler = linear_schedule(optimizer, math.ceil(warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    # the loader's shuffling RNG (a RandomSampler's or a LengthGroupedSampler's)
    gen = getattr(train_loader.sampler, "generator", None) or train_loader.generator
    config = dict(epochs=epochs, lr=lr, weight_decay=weight_decay, warmup_ratio=warmup_ratio,
                  max_grad_norm=max_grad_norm, grad_accum_steps=grad_accum_steps, batches=n_batches)
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

    def save():
        if ckpt is not None:
            _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                          "config": config, "position": dict(pos), "history": asdict(history),
                          "best_weights": best_weights, "rng": _rng_state(gen)}, ckpt)

    live = _LivePlot(plot)
    bar = tqdm(total=total_steps, initial=pos["step"], desc="training", disable=not progress)
    stop = history.stopped != ""
    while pos["epoch"] < epochs and not stop:
        t0, epoch = time.perf_counter(), pos["epoch"]
        if pos["batch"] == 0:
            pos["epoch_rng"] = _rng_state(gen)         # how this epoch's shuffle begins
            batches = iter(train_loader)
        else:                                          # resuming inside an epoch:
            resume_rng = _rng_state(gen)
            _set_rng_state(pos["epoch_rng"], gen)      # replay the epoch's shuffle,
            batches = iter(train_loader)
            for _ in range(pos["batch"]):              # skip what the stopped run already did,
                next(batches)
            _set_rng_state(resume_rng, gen)            # and go on with the saved random state
        model.train()
        group_loss = 0.0
        for i, batch in enumerate(batches, start=pos["batch"]):
            _check_model_inputs(model, batch=batch)
            group = min(grad_accum_steps, n_batches - (i // grad_accum_steps) * grad_accum_steps)
            loss = _forward_loss(model, batch, device, dtype, loss_fn=loss_fn)[0]
            if not torch.isfinite(loss):
                raise CourseError(f"The loss is {loss.item()} at step {pos['step'] + 1} (epoch {epoch + 1}). "
                                  f"Try a lower learning rate (now {lr}), check the labels and inputs, or "
                                  "train in fp32 (mixed_precision=False). No checkpoint was written for it.")
            scaler.scale(loss / group).backward()
            group_loss += loss.item() / group
            if (i + 1) % grad_accum_steps and i + 1 < n_batches:
                continue
            scaler.unscale_(optimizer)
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm or math.inf)
            if not torch.isfinite(norm) and not scaler.is_enabled():
                raise CourseError(f"The gradient norm is {norm.item()} at step {pos['step'] + 1}: try a lower "
                                  "learning rate or check the inputs. No checkpoint was written for it.")
            history.step_lr.append(scheduler.get_last_lr()[0])
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            history.step_loss.append(group_loss)
            pos["step"], pos["batch"], group_loss = pos["step"] + 1, i + 1, 0.0
            bar.update(1)
            bar.set_postfix(loss=f"{history.step_loss[-1]:.4f}", lr=f"{history.step_lr[-1]:.2e}")
            info = dict(step=pos["step"], epoch=epoch + 1, loss=history.step_loss[-1],
                        lr=history.step_lr[-1], total_steps=total_steps)
            stop = any([bool(cb(info)) for cb in callbacks])
            if stop or (checkpoint_every and pos["step"] % checkpoint_every == 0):
                save()
            if pos["step"] % max(1, total_steps // 20) == 0:
                live.update(history)
            if stop:
                history.stopped = "callback"
                break
        if stop:
            break
        history.epoch.append(epoch + 1)
        history.step.append(pos["step"])
        history.train_loss.append(float(np.mean(history.step_loss[epoch * steps_per_epoch:])))
        history.lr.append(scheduler.get_last_lr()[0])
        if eval_loader is not None:
            metrics = evaluate(model, eval_loader, device, mixed_precision)
            history.eval_loss.append(metrics["loss"])
            history.eval_accuracy.append(metrics["accuracy"])
        history.seconds.append(time.perf_counter() - t0)
        if verbose:
            ev = (f", eval loss {history.eval_loss[-1]:.4f}, eval accuracy {history.eval_accuracy[-1]:.4f}"
                  if eval_loader is not None else "")
            print(f"epoch {epoch + 1}/{epochs}: train loss {history.train_loss[-1]:.4f}{ev}, "
                  f"{history.seconds[-1]:.0f} s")
        if eval_loader is not None and early_stopping_patience is not None:
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
    return history
