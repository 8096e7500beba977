"""A fast fine-tuning loop for sequence classification (derived in notebook 10).

``ftlib.train.fit`` (notebook 05) is written to be read; this loop is written to keep a GPU
busy. It does the same maths (AdamW without decay on 1-D parameters, linear warm-up and
decay, clipping) and differs only in *how* the work reaches the device:

* :class:`DeviceBatches` -- the data set is tokenised once and stored as one padded integer
  tensor **on the device**; a batch is an index into it, cut to the batch's own longest row
  rounded up to a multiple of 8 (dynamic padding with few distinct shapes), in
  length-grouped order (:class:`ftlib.text.LengthGroupedSampler`). No DataLoader, no
  per-batch Python collation, no host-to-device copy per step.
* :func:`fast_fit` -- bfloat16 autocast where the device supports it (``pick_dtype``), a
  fused AdamW kernel on CUDA, optional ``torch.compile``, and no ``.item()`` (a host-device
  synchronisation) inside the step loop: losses and correct counts are summed on the
  device and read once per epoch.
* :func:`trainer_fit` -- the same run with transformers' ``Trainer``, for comparison.
* :func:`peak_memory_mb`, :func:`reset_peak_memory` -- GPU peak memory, or the process's
  peak resident memory on a CPU.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from ftlib import CourseError
from ftlib.device import autocast, pick_dtype
from ftlib.text import LengthGroupedSampler
from ftlib.train import linear_schedule

__all__ = ["DeviceBatches", "FastResult", "fast_fit", "evaluate_fast", "trainer_fit",
           "peak_memory_mb", "reset_peak_memory", "sync"]


class DeviceBatches:
    """Batches from a tokenised data set held as padded tensors on ``device``.

    ``ds`` needs ``input_ids`` and ``labels`` (``ftlib.text.tokenize_dataset`` makes them).
    Each batch is a dict with ``input_ids``, ``attention_mask`` and ``labels``, padded only to
    its own longest row rounded up to ``pad_multiple``. ``shuffle=True``: length-grouped
    random batches, new every pass (seeded); ``shuffle=False``: sorted by length (evaluation).
    """

    def __init__(self, ds, batch_size: int, pad_id: int, device="cpu", *, shuffle: bool = False,
                 pad_multiple: int = 8, seed: int = 0):
        if len(ds) == 0:
            raise CourseError("The data set is empty: there is nothing to batch. Check the split and "
                              "any `budget.take(...)` size.")
        if "input_ids" not in ds.column_names or "labels" not in ds.column_names:
            raise CourseError(f"DeviceBatches needs 'input_ids' and 'labels' columns, found {ds.column_names}: "
                              "tokenise with ftlib.text.tokenize_dataset(ds, tokenizer, max_length) first.")
        if batch_size < 1 or pad_multiple < 1:
            raise CourseError(f"batch_size and pad_multiple must be >= 1, got {batch_size}, {pad_multiple}.")
        rows = ds["input_ids"]
        self.lengths = [len(r) for r in rows]                 # kept on the host: no sync to read them
        width = max(self.lengths)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.as_tensor(r)
        self.device = torch.device(device)
        self.input_ids = ids.to(self.device)
        self.length_t = torch.tensor(self.lengths, device=self.device)
        self.labels = torch.as_tensor(list(ds["labels"]), dtype=torch.long, device=self.device)
        self.batch_size, self.pad_multiple, self.shuffle = batch_size, pad_multiple, shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.n_examples = len(rows)

    def __len__(self):
        return math.ceil(self.n_examples / self.batch_size)

    def order(self) -> list[int]:
        """Example indices in batch order for one pass."""
        if self.shuffle:
            return list(LengthGroupedSampler(self.lengths, self.batch_size, generator=self.generator))
        return sorted(range(self.n_examples), key=lambda i: -self.lengths[i])

    def __iter__(self):
        order = self.order()
        arange = torch.arange(self.input_ids.shape[1], device=self.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            longest = max(self.lengths[i] for i in idx)
            width = min(self.input_ids.shape[1], -(-longest // self.pad_multiple) * self.pad_multiple)
            idx_t = torch.tensor(idx).to(self.device, non_blocking=True)
            yield {"input_ids": self.input_ids[idx_t, :width],
                   "attention_mask": (arange[:width] < self.length_t[idx_t, None]).long(),
                   "labels": self.labels[idx_t]}

    def padding_fraction(self) -> float:
        """Share of the token slots of one pass that are padding."""
        order, pad = self.order(), 0
        total = 0
        for start in range(0, len(order), self.batch_size):
            lens = [self.lengths[i] for i in order[start:start + self.batch_size]]
            width = min(self.input_ids.shape[1], -(-max(lens) // self.pad_multiple) * self.pad_multiple)
            total += width * len(lens)
            pad += width * len(lens) - sum(lens)
        return pad / total


@dataclass
class FastResult:
    """What :func:`fast_fit` (or :func:`trainer_fit`) measured."""
    epoch_accuracy: list = field(default_factory=list)   # dev accuracy after every epoch
    epoch_loss: list = field(default_factory=list)       # mean training loss of every epoch
    epoch_seconds: list = field(default_factory=list)    # training time of every epoch (no evaluation)
    train_seconds: float = 0.0                           # all training steps (compilation included)
    wall_seconds: float = 0.0                            # training + evaluation
    samples_per_s: float = 0.0                           # training examples per second of training time
    peak_memory_mb: float = 0.0
    settings: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def sync(device) -> None:
    """Wait for the device to finish its queued work (needed before reading a clock)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak_memory(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device) -> float:
    """Peak GPU memory allocated by tensors (CUDA), or the process's peak resident memory (CPU).

    On a CPU the number covers the whole Python process since it started (libraries, data,
    earlier models), so it is an upper bound for the run, not the run's own need."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
        import sys
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 2**10   # bytes on macOS, KiB on Linux
    except ImportError:                                                    # Windows
        return float("nan")


@torch.no_grad()
def evaluate_fast(model, batches: DeviceBatches, dtype=None) -> float:
    """Accuracy of ``model`` over ``batches``; one host-device sync at the end."""
    device = batches.device
    dtype = dtype or pick_dtype(device)
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    for batch in batches:
        labels = batch.pop("labels")
        with autocast(device, dtype):
            logits = model(**batch).logits
        correct += (logits.argmax(-1) == labels).sum()
    return correct.item() / batches.n_examples


def _optimizer(model, lr, weight_decay, fused):
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise CourseError("The model has no trainable parameters: unfreeze at least the head.")
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def fast_fit(model, train: DeviceBatches, dev: DeviceBatches | None = None, *, epochs: int = 1,
             lr: float = 5e-5, weight_decay: float = 0.01, warmup_ratio: float = 0.06,
             max_grad_norm: float | None = 1.0, dtype=None, fused: bool | None = None,
             compile: bool = False, progress: bool = True) -> FastResult:
    """Fine-tune a sequence classifier on ``train``; dev accuracy after every epoch.

    ``dtype``: the autocast dtype (default ``pick_dtype``: bfloat16 on a recent GPU, float32 on
    a CPU). ``fused``: the fused AdamW kernel (default: on CUDA). ``compile``: run the model
    through ``torch.compile`` (the first steps then include compilation time).
    """
    from tqdm.auto import tqdm

    if epochs < 1 or not 0 <= warmup_ratio < 1:
        raise CourseError(f"Need epochs >= 1 and 0 <= warmup_ratio < 1, got {epochs}, {warmup_ratio}.")
    device = train.device
    dtype = dtype or pick_dtype(device)
    fused = device.type == "cuda" if fused is None else fused
    model.to(device)
    optimizer = _optimizer(model, lr, weight_decay, fused)
    total = len(train) * epochs
    scheduler = linear_schedule(optimizer, math.ceil(warmup_ratio * total), total)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    forward = torch.compile(model) if compile else model
    result = FastResult(settings=dict(epochs=epochs, lr=lr, batch_size=train.batch_size, weight_decay=weight_decay,
                                      warmup_ratio=warmup_ratio, max_grad_norm=max_grad_norm,
                                      dtype=str(dtype).replace("torch.", ""), fused_adamw=bool(fused),
                                      compile=compile, device=str(device), n_train=train.n_examples))
    reset_peak_memory(device)
    sync(device)
    start = time.perf_counter()
    bar = tqdm(total=total, desc="fast_fit", disable=not progress)
    for epoch in range(epochs):
        model.train()
        loss_sum = torch.zeros((), device=device)        # summed on the device: no sync per step
        sync(device)
        t0 = time.perf_counter()
        for batch in train:
            labels = batch.pop("labels")
            with autocast(device, dtype):
                logits = forward(**batch).logits
            loss = F.cross_entropy(logits.float(), labels)
            scaler.scale(loss).backward()
            if max_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            loss_sum += loss.detach()
            bar.update(1)
        sync(device)
        result.epoch_seconds.append(time.perf_counter() - t0)
        mean_loss = loss_sum.item() / len(train)         # the one sync of the epoch
        if not math.isfinite(mean_loss):
            raise CourseError(f"The training loss became {mean_loss} in epoch {epoch + 1}: lower the learning "
                              f"rate (now {lr}) or train in float32 (dtype=torch.float32).")
        result.epoch_loss.append(mean_loss)
        if dev is not None:
            result.epoch_accuracy.append(evaluate_fast(forward, dev, dtype))
    bar.close()
    sync(device)
    result.wall_seconds = time.perf_counter() - start
    result.train_seconds = sum(result.epoch_seconds)
    result.samples_per_s = train.n_examples * epochs / result.train_seconds
    result.peak_memory_mb = peak_memory_mb(device)
    return result


def trainer_fit(model, train_tok, dev_tok, tokenizer, *, epochs: int, lr: float, batch_size: int,
                weight_decay: float = 0.01, warmup_ratio: float = 0.06, max_grad_norm: float | None = 1.0,
                device="cpu", dtype=None, eval_batch_size: int | None = None) -> FastResult:
    """The same run with transformers' ``Trainer`` (its defaults otherwise), measured the same way.

    Training time is ``trainer.train()`` with evaluation switched off; the dev set is evaluated
    once per epoch afterwards from a callback-free loop, so both loops are timed alike.
    """
    import tempfile

    import numpy as np
    import transformers

    device = torch.device(device)
    dtype = dtype or pick_dtype(device)
    accuracies = []

    def accuracy(eval_pred):
        logits, labels = eval_pred
        return {"accuracy": float((np.argmax(logits, -1) == labels).mean())}

    class EpochEval(transformers.TrainerCallback):
        """Evaluates after each epoch; that time is subtracted from the training time."""
        seconds = 0.0

        def on_epoch_end(self, args, state, control, **kw):
            t0 = time.perf_counter()
            accuracies.append(trainer.evaluate()["eval_accuracy"])
            sync(device)
            self.seconds += time.perf_counter() - t0

    timer = EpochEval()

    reset_peak_memory(device)
    with tempfile.TemporaryDirectory() as out_dir:
        args = transformers.TrainingArguments(
            output_dir=out_dir, num_train_epochs=epochs, learning_rate=lr, per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=eval_batch_size or batch_size, warmup_steps=warmup_ratio,
            weight_decay=weight_decay, max_grad_norm=max_grad_norm if max_grad_norm is not None else 0.0,
            lr_scheduler_type="linear", train_sampling_strategy="group_by_length", eval_strategy="no",
            save_strategy="no", logging_strategy="no", report_to=[], use_cpu=device.type == "cpu", seed=0,
            bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, disable_tqdm=True)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=train_tok, eval_dataset=dev_tok,
                                       processing_class=tokenizer, compute_metrics=accuracy,
                                       callbacks=[timer])
        sync(device)
        t0 = time.perf_counter()
        out = trainer.train()
        sync(device)
        wall = time.perf_counter() - t0
    train_s = wall - timer.seconds
    return FastResult(epoch_accuracy=accuracies, epoch_loss=[out.training_loss], epoch_seconds=[],
                      train_seconds=train_s, wall_seconds=wall, samples_per_s=len(train_tok) * epochs / train_s,
                      peak_memory_mb=peak_memory_mb(device),
                      settings=dict(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                                    warmup_ratio=warmup_ratio, max_grad_norm=max_grad_norm,
                                    dtype=str(dtype).replace("torch.", ""), optim=str(args.optim.value),
                                    compile=bool(args.torch_compile), device=str(device), n_train=len(train_tok)))
