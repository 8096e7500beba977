"""After fine-tuning: saving, compressing, exporting, serving and watching a classifier
(derived in notebook 14).

Saving and loading
    * :func:`save` -- ``save_pretrained`` of model and tokenizer (safetensors) into a temporary
      folder that is then renamed, refusing to overwrite a non-empty folder unless told to; it
      also writes ``ftlib_deploy.json``, the record that the folder holds a fine-tuned classifier;
    * :func:`check_model_dir` / :func:`load` -- a clear error for a missing or incomplete folder,
      or one without that record (a model whose classifier head was never trained: the course-bert
      package folder, ``save_pretrained`` of a freshly loaded model), then
      ``from_pretrained(..., use_safetensors=True)``: no pickle, no remote code.

Compressing (each returns a new model; the original is left alone)
    * :func:`quantize_int8` -- dynamic int8 quantisation of the ``nn.Linear`` layers (CPU);
    * :func:`prune_unstructured` / :func:`sparsity` -- L1 magnitude pruning of single weights;
    * :func:`prune_ffn` -- structured pruning: drop whole feed-forward neurons (a smaller model);
    * :func:`make_student` / :func:`distillation_loss` -- a shallower copy and the loss to teach it;
    * :func:`size_mb` and :func:`benchmark` -- bytes on disk; p50/p95 latency and throughput
      at a fixed thread count.

Exporting
    * :func:`export_classifier` -- ``torch.export`` of the logits, with dynamic batch and length;
    * :func:`export_onnx` / :func:`onnx_runner` -- the same logits as an ONNX file, run with ONNX
      Runtime (needs ``pip install onnx onnxruntime onnxscript``).

Serving
    * :class:`Predictor` -- load a saved folder, check the input, predict labels;
    * :func:`main` -- ``python -m ftlib.deploy MODEL_DIR "a sentence" ...`` (or lines on stdin;
      the same as ``python -m ftlib predict``).

Monitoring
    * :func:`psi` -- the population stability index of a numeric or categorical feature;
    * :func:`drift_windows` -- a statistic per window of a stream, and a threshold alert.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import os
import secrets
import shutil
import stat
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ftlib.errors import CourseError
from ftlib.text import check_sentences, input_limit

__all__ = ["save", "check_model_dir", "load", "quantize_int8", "prune_unstructured", "sparsity",
           "prune_ffn", "make_student", "distillation_loss", "size_mb", "benchmark",
           "export_classifier", "export_onnx", "onnx_runner", "Predictor", "main", "psi", "drift_windows",
           "export_weights"]

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json")
# written by save(): says the folder holds a classifier saved after fine-tuning (see check_model_dir)
MARKER = "ftlib_deploy.json"


# ----------------------------------------------------------------------------- saving and loading

def _is_quantized(model) -> bool:
    return any("quantized" in type(m).__module__.lower() or "Quantized" in type(m).__name__
               for m in model.modules())


def _new_dir(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder in ``parent``, with the permissions the umask gives (like
    ``save_pretrained``'s folder: 0755 under the usual umask 022), not ``mkdtemp``'s 0700."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir(mode=0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not make a temporary folder in {parent}")


def save(model, tokenizer, path, overwrite: bool = False) -> Path:
    """Save a fine-tuned ``model`` and its ``tokenizer`` with ``save_pretrained`` (safetensors)
    into ``path``.

    Everything is written into a temporary folder beside ``path`` and renamed at the end, so
    a crash never leaves half a model behind. A non-empty ``path`` is only replaced when
    ``overwrite=True``. The folder and its files get the permissions the umask gives (like
    ``save_pretrained``'s folder and ``config.json``: 0755 / 0644 under umask 022), so a service
    running as another user can read them. Returns ``path``.

    Besides the model and tokenizer files it writes ``ftlib_deploy.json``, which records that
    this is a classifier saved *after fine-tuning*: :func:`load`, :class:`Predictor` and
    ``python -m ftlib predict`` refuse a folder without it, because a classifier head that was
    never trained answers with confident random labels. Only save models you have trained.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise CourseError(f"{path} is a file, not a folder: choose a folder name to save the model into.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise CourseError(f"{path} already exists and is not empty: saving would overwrite what is there. "
                          "Choose a new folder, or pass overwrite=True if you mean to replace it.")
    if _is_quantized(model):
        raise CourseError("This model holds dynamically quantised layers, which save_pretrained cannot "
                          "store as safetensors. Save the float model and quantise after loading "
                          "(ftlib.deploy.quantize_int8 takes about a second).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_dir(path.parent, f".{path.name}.")
    old = None
    try:
        model.save_pretrained(tmp)          # transformers >= 5 always writes model.safetensors
        tokenizer.save_pretrained(tmp)
        _write_marker(model, tmp)
        _follow_umask(tmp)
        if path.exists():                   # an empty folder, or overwrite=True
            old = _new_dir(path.parent, f".{path.name}.old.")
            os.replace(path, old / "model")
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():       # put the old folder back
            os.replace(old / "model", path)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path


def _write_marker(model, folder: Path) -> None:
    import ftlib

    config = getattr(model, "config", None)
    id2label = getattr(config, "id2label", None) or {}
    record = {"saved_by": "ftlib.deploy.save", "ftlib_version": ftlib.__version__,
              "classifier_head": "fine-tuned", "model_class": type(model).__name__,
              "labels": [str(id2label[i]) for i in sorted(id2label)]}
    (folder / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _follow_umask(folder: Path) -> None:
    """Give every file under ``folder`` the mode a plain ``open()`` gives (0644 under umask 022).

    safetensors >= 0.8 writes model.safetensors through a temporary file, always mode 0600
    (safetensors issue #782), so a service running as another user could not read the weights.
    The marker was written with ``open()``, so its mode is the umask's answer.
    """
    file_mode = stat.S_IMODE((folder / MARKER).stat().st_mode)
    dir_mode = stat.S_IMODE(folder.stat().st_mode)
    for p in folder.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, dir_mode if p.is_dir() else file_mode)


def _untrained_head_error(path: Path, why: str) -> CourseError:
    return CourseError(
        f"{path} {why}, so its classifier head may never have been trained: its labels would be random "
        f"guesses. Fine-tune the model first (ftlib.train.fit, lesson 06), then "
        f"save it with ftlib.deploy.save(model, tokenizer, folder) and use that folder. If this folder does "
        f"hold a classifier you fine-tuned (saved with save_pretrained or a Trainer), load it with "
        f"transformers.AutoModelForSequenceClassification.from_pretrained and AutoTokenizer.from_pretrained "
        f"and save it again with ftlib.deploy.save.")


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
    import ftlib

    m = ftlib.load_model(model, task=task, dtype=getattr(torch, dtype))
    m.save_pretrained(out, max_shard_size=max_shard_size)
    ftlib.load_tokenizer(model).save_pretrained(out)
    files = sorted(p for p in out.iterdir() if p.is_file())
    lines = [f"{p.stat().st_size:>12d}  {_sha256(p)}  {p.name}" for p in files]
    (out / "MANIFEST.txt").write_text("# size (bytes)  sha256  file -- check with `sha256sum` after copying\n"
                                      + "\n".join(lines) + "\n")
    return files + [out / "MANIFEST.txt"]


def check_model_dir(path) -> Path:
    """Raise CourseError unless ``path`` holds a model saved by :func:`save`: config, safetensors
    weights, tokenizer, and the ``ftlib_deploy.json`` record that its classifier was fine-tuned."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise CourseError(f"No model folder at {path}. Save one with ftlib.deploy.save(model, tokenizer, "
                          f"{str(path)!r}) or check the path.")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not ((path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()):
        if list(path.glob("*.bin")) or list(path.glob("*.pt")):
            raise CourseError(f"{path} holds pickled weights (.bin/.pt) but no model.safetensors. Loading a "
                              "pickle runs code from the file: only do that for files you made yourself, then "
                              "re-save them with ftlib.deploy.save (safetensors).")
        missing.append("model.safetensors")
    if not (path / "tokenizer_config.json").is_file() or not any((path / f).is_file() for f in TOKENIZER_FILES):
        missing.append("the tokenizer (tokenizer_config.json and tokenizer.json or vocab.txt)")
    if missing:
        raise CourseError(f"{path} is not a complete saved model: missing {', '.join(missing)}. "
                          "Save model and tokenizer together with ftlib.deploy.save(model, tokenizer, folder).")
    if not (path / MARKER).is_file():
        raise _untrained_head_error(path, f"was not written by ftlib.deploy.save (it has no {MARKER})")
    try:
        record = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        record = None
    if not isinstance(record, dict) or record.get("classifier_head") != "fine-tuned":
        raise _untrained_head_error(path, f"has a damaged {MARKER} (not the one ftlib.deploy.save writes)")
    return path


def load(path, device="cpu"):
    """``(model, tokenizer)`` from a folder written by :func:`save`, in eval mode.

    Only safetensors weights are read (``use_safetensors=True``) and no code from the folder
    is run (``trust_remote_code`` stays off).
    """
    import transformers

    path = check_model_dir(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        path, use_safetensors=True, trust_remote_code=False)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    return model.to(device).eval(), tokenizer


# ----------------------------------------------------------------------------- compressing

def quantize_int8(model):
    """A copy of ``model`` whose ``nn.Linear`` layers compute in int8 (dynamic quantisation, CPU).

    Weights are stored as int8 with one scale per tensor; activations are quantised on the fly,
    batch by batch. Embeddings and LayerNorm stay float32. Uses
    ``torch.ao.quantization.quantize_dynamic``, which PyTorch has deprecated in favour of the
    separate ``torchao`` package (its ``quantize_`` API) but still ships.
    """
    m = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(deprecated|quantize_per_tensor).*")
        return torch.ao.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)


def _encoder_linears(model):
    """The ``nn.Linear`` layers of the encoder (not the embeddings, not the classifier head)."""
    body = getattr(model, "base_model", model)
    encoder = getattr(body, "encoder", None)
    if encoder is None:
        raise CourseError(f"{type(model).__name__} has no .encoder: prune a BERT-style encoder model.")
    return [(name, m) for name, m in encoder.named_modules() if isinstance(m, nn.Linear)]


def prune_unstructured(model, amount: float):
    """A copy of ``model`` with the ``amount`` smallest-magnitude weights of every encoder Linear set to 0.

    Layer by layer L1 (magnitude) pruning with ``torch.nn.utils.prune``, made permanent with
    ``prune.remove``: the result is an ordinary dense model that holds zeros.
    """
    from torch.nn.utils import prune

    if not 0.0 <= amount < 1.0:
        raise CourseError(f"amount is the fraction of weights to remove: 0 <= amount < 1, got {amount}.")
    m = copy.deepcopy(model)
    for _, layer in _encoder_linears(m):
        prune.l1_unstructured(layer, "weight", amount=amount)
        prune.remove(layer, "weight")
    return m


def sparsity(model) -> float:
    """The fraction of encoder Linear weights that are exactly zero."""
    zeros = total = 0
    for _, layer in _encoder_linears(model):
        w = layer.weight
        if not isinstance(w, torch.Tensor) or w.is_quantized:
            raise CourseError("sparsity() needs float Linear layers (measure before quantising).")
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / total


def prune_ffn(model, keep: int):
    """A copy of a BERT-style ``model`` keeping ``keep`` feed-forward neurons per layer (structured pruning).

    Neuron ``i`` of a layer reads row ``i`` of ``intermediate.dense`` and writes column ``i`` of
    ``output.dense``; its score is the product of their L1 norms. The lowest-scoring neurons are
    cut out, so the matrices really shrink and ``config.intermediate_size`` becomes ``keep`` (the
    model still saves and loads with ``save_pretrained`` / ``from_pretrained``).
    """
    m = copy.deepcopy(model)
    body = getattr(m, "base_model", m)
    try:
        layers = body.encoder.layer
        size = layers[0].intermediate.dense.out_features
    except AttributeError:
        raise CourseError(f"prune_ffn expects a BERT-style model (encoder.layer[i].intermediate.dense), "
                          f"not {type(model).__name__}.") from None
    if not 1 <= keep <= size:
        raise CourseError(f"keep must be between 1 and the feed-forward size {size}, got {keep}.")
    with torch.no_grad():
        for layer in layers:
            up, down = layer.intermediate.dense, layer.output.dense
            score = up.weight.abs().sum(1) * down.weight.abs().sum(0)
            idx = score.topk(keep).indices.sort().values
            new_up = nn.Linear(up.in_features, keep, bias=up.bias is not None).to(up.weight)
            new_up.weight.copy_(up.weight[idx])
            if up.bias is not None:
                new_up.bias.copy_(up.bias[idx])
            new_down = nn.Linear(keep, down.out_features, bias=down.bias is not None).to(down.weight)
            new_down.weight.copy_(down.weight[:, idx])
            if down.bias is not None:
                new_down.bias.copy_(down.bias)
            layer.intermediate.dense, layer.output.dense = new_up, new_down
    m.config.intermediate_size = keep
    return m


def make_student(teacher, n_layers: int):
    """A copy of a BERT-style ``teacher`` with only its first ``n_layers`` encoder layers."""
    m = copy.deepcopy(teacher)
    body = getattr(m, "base_model", m)
    layers = getattr(getattr(body, "encoder", None), "layer", None)
    if layers is None:
        raise CourseError(f"make_student expects a BERT-style model with encoder.layer, not {type(teacher).__name__}.")
    if not 1 <= n_layers <= len(layers):
        raise CourseError(f"n_layers must be between 1 and {len(layers)}, got {n_layers}.")
    body.encoder.layer = nn.ModuleList(list(layers)[:n_layers])
    m.config.num_hidden_layers = n_layers
    return m


def distillation_loss(student_logits, teacher_logits, labels=None, temperature: float = 2.0,
                      alpha: float = 0.5):
    """Hinton et al.'s loss: ``alpha`` * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels).

    ``teacher_T`` and ``student_T`` are the softmaxes at temperature ``T``; the T^2 keeps the
    gradient's size independent of T. Without ``labels`` only the KL term is used.
    """
    if temperature <= 0:
        raise CourseError(f"temperature must be > 0, got {temperature}.")
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits.detach() / t, -1),
                  log_target=True, reduction="batchmean") * t * t
    if labels is None:
        return kl
    return alpha * kl + (1 - alpha) * F.cross_entropy(student_logits, labels)


def size_mb(model) -> float:
    """Megabytes (10^6 bytes) of ``torch.save(model.state_dict())`` -- what a dense checkpoint weighs."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes / 1e6


@torch.inference_mode()
def benchmark(fn, tokenizer, sentences, batch_sizes=(1, 8, 32), max_length: int = 64,
              min_seconds: float = 0.5, min_batches: int = 20, max_batches: int | None = None,
              threads: int | None = None, warmup: int = 2) -> dict:
    """Latency per batch (p50 and p95) and throughput of ``fn(**encoded_batch)`` on the CPU.

    ``fn`` is a model (or any callable taking ``input_ids``, ``attention_mask``, ...). The
    ``sentences`` are cut into batches of each size and tokenised before any timing. Then, per
    batch size: ``warmup`` untimed calls, and timed calls cycling through the batches until at
    least ``min_batches`` were timed *and* ``min_seconds`` have passed (or ``max_batches`` were
    timed, if given).

    ``threads``: the number of CPU threads PyTorch may use for the measurement
    (``torch.set_num_threads``; the previous setting is restored afterwards). ``None`` keeps the
    current setting. Either way the result records it, because latencies measured with different
    thread counts are not comparable.

    Returns ``{batch_size: {"ms_per_batch", "p50_ms", "p95_ms", "sentences_per_s", "n_batches",
    "threads"}}``: ``ms_per_batch`` is the median (``p50_ms``), ``p95_ms`` the 95th percentile
    (nearest rank: the time that 95 % of the timed batches did not exceed; of 20 batches, the
    second slowest), and ``sentences_per_s`` is ``batch_size / p50``. With fewer than 20 timed
    batches the p95 is simply the slowest batch.
    """
    sentences = list(sentences)
    if min_batches < 1:
        raise CourseError(f"min_batches must be at least 1, got {min_batches}.")
    if max_batches is not None and max_batches < min_batches:
        raise CourseError(f"max_batches ({max_batches}) must be at least min_batches ({min_batches}).")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise CourseError(f"threads must be a positive whole number (or None for the current setting), got {threads!r}.")
    for bs in batch_sizes:
        if bs > len(sentences):
            raise CourseError(f"batch size {bs} needs at least {bs} sentences, got {len(sentences)}.")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        used = torch.get_num_threads()
        out = {}
        for bs in batch_sizes:
            batches = [sentences[i:i + bs] for i in range(0, len(sentences) - bs + 1, bs)]
            encoded = [tokenizer(b, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                       for b in batches]
            for i in range(warmup):
                fn(**encoded[i % len(encoded)])
            times, start = [], time.perf_counter()
            while True:
                enc = encoded[len(times) % len(encoded)]
                t0 = time.perf_counter()
                fn(**enc)
                times.append(time.perf_counter() - t0)
                if max_batches is not None and len(times) >= max_batches:
                    break
                if len(times) >= min_batches and time.perf_counter() - start >= min_seconds:
                    break
            p50 = float(np.median(times)) * 1000
            p95 = float(np.percentile(times, 95, method="inverted_cdf")) * 1000
            out[bs] = {"ms_per_batch": p50, "p50_ms": p50, "p95_ms": p95, "sentences_per_s": bs / (p50 / 1000),
                       "n_batches": len(times), "threads": used}
        return out
    finally:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------------------- exporting

class _Logits(nn.Module):
    """Wrap a transformers classifier so that it takes tensors and returns only the logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).logits


def export_classifier(model, tokenizer, example_sentences, max_length: int = 512):
    """``torch.export`` the logits of a BERT-style classifier, for any batch size and length.

    Returns a ``torch.export.ExportedProgram``; call ``program.module()(input_ids,
    attention_mask, token_type_ids)`` to run it, ``torch.export.save(program, "x.pt2")`` to keep it.
    """
    args, shapes = _export_inputs(tokenizer, example_sentences, max_length)
    wrapped = _Logits(copy.deepcopy(model).cpu().eval()).eval()
    with torch.no_grad():
        return torch.export.export(wrapped, args, dynamic_shapes=shapes)


_EXPORT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _export_inputs(tokenizer, example_sentences, max_length: int):
    """The example inputs (in :data:`_EXPORT_INPUTS` order) and their dynamic batch and length axes,
    shared by :func:`export_classifier` and :func:`export_onnx`."""
    from torch.export import Dim

    example_sentences = list(example_sentences)
    if len(example_sentences) < 2:
        raise CourseError("Give at least two example sentences of different lengths, so the batch and "
                          "sequence sizes can be traced as dynamic.")
    enc = tokenizer(example_sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    if "token_type_ids" not in enc:
        enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
    batch, seq = Dim("batch", min=1, max=1024), Dim("seq", min=2, max=max_length)
    return tuple(enc[k] for k in _EXPORT_INPUTS), {k: {0: batch, 1: seq} for k in _EXPORT_INPUTS}


def _need_onnx(*packages: str):
    """Import and return ``packages``, or one CourseError naming the pip command."""
    import importlib
    import importlib.util

    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise CourseError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
                          "pip install onnx onnxruntime onnxscript (they are in the course's dependencies; "
                          "`make setup` installs them).")
    return [importlib.import_module(p) for p in packages]


def export_onnx(model, tokenizer, path, example_sentences=None, max_length: int = 512) -> Path:
    """Export the logits of a BERT-style classifier to an ONNX file at ``path``; returns ``path``.

    Uses ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``-based exporter; it needs the
    ``onnx`` and ``onnxscript`` packages) with the batch and sequence axes of ``input_ids``,
    ``attention_mask`` and ``token_type_ids`` dynamic, so one file serves any batch of any length up
    to ``max_length``. The output is named ``logits``. Run it with :func:`onnx_runner` (ONNX Runtime).
    """
    _need_onnx("onnx", "onnxscript", "onnxruntime")
    import logging

    path = Path(path).expanduser()
    if path.suffix != ".onnx":
        raise CourseError(f"Give the ONNX file a name ending in .onnx, got {path.name!r}.")
    args, shapes = _export_inputs(tokenizer, example_sentences or ["a short one .", "a somewhat longer example sentence ."],
                                  max_length)
    wrapped = _Logits(copy.deepcopy(model).cpu().float().eval()).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)         # "torchvision is not installed. Skipping ..." lines
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")      # the exporter's deprecation and axis-name notes
            torch.onnx.export(wrapped, args, str(path), input_names=list(_EXPORT_INPUTS),
                              output_names=["logits"], dynamic_shapes=shapes,
                              dynamo=True, external_data=False, verbose=False)
    finally:
        onnx_logger.setLevel(level)
    return path


def onnx_runner(path, threads: int | None = None):
    """A callable ``fn(input_ids, attention_mask, token_type_ids=None, **_) -> logits`` (a torch
    tensor) that runs the ONNX file at ``path`` with ONNX Runtime on the CPU.

    ``threads``: ONNX Runtime's intra-op thread count (it keeps its own thread pool, so
    ``torch.set_num_threads`` does not reach it); ``None``: ONNX Runtime's default. It takes
    PyTorch tensors or NumPy arrays, like a model does, so :func:`benchmark` can time it.
    """
    (ort,) = _need_onnx("onnxruntime")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]

    def run(input_ids, attention_mask, token_type_ids=None, **_):
        arrays = {"input_ids": input_ids, "attention_mask": attention_mask,
                  "token_type_ids": torch.zeros_like(torch.as_tensor(input_ids)) if token_type_ids is None
                  else token_type_ids}
        feed = {k: np.asarray(torch.as_tensor(arrays[k]).cpu().numpy(), dtype=np.int64) for k in wanted}
        return torch.from_numpy(session.run(["logits"], feed)[0])

    run.session = session
    return run


# ----------------------------------------------------------------------------- serving

class Predictor:
    """Predict labels with a model folder written by :func:`save`.

    ``max_length``: the most tokens a sentence may have (default: the smaller of the tokenizer's
    ``model_max_length`` and the model's ``max_position_embeddings``). The sentences are checked by
    :func:`ftlib.text.check_sentences` (as ``ftlib.train.predict`` checks them): a bare string is one
    sentence; ``None``, non-strings, empty sentences, and sentences longer than ``max_length``
    (unless ``truncate=True``, which keeps their first ``max_length`` tokens) raise
    :class:`ftlib.CourseError`.
    """

    def __init__(self, path, max_length: int | None = None, truncate: bool = False,
                 batch_size: int = 32, device="cpu"):
        self.model, self.tokenizer = load(path, device)
        limit = input_limit(self.model, self.tokenizer)
        if max_length is not None and not 2 <= max_length <= limit:
            raise CourseError(f"max_length must be between 2 and {limit} for this model, got {max_length}.")
        self.max_length = max_length or limit
        self.truncate = truncate
        self.batch_size = batch_size
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def check(self, sentences) -> list[str]:
        """The sentences as a list, or a CourseError saying what is wrong with them
        (:func:`ftlib.text.check_sentences` with this predictor's tokenizer and limits)."""
        return check_sentences(sentences, tokenizer=self.tokenizer, max_length=self.max_length,
                               truncate=self.truncate, how_to_truncate="Predictor(path, truncate=True) (--truncate)")

    def predict(self, sentences) -> list[dict]:
        """``[{"sentence", "label", "probability"}, ...]``, one per sentence, in order."""
        from ftlib.train import predict

        sentences = self.check(sentences)
        # train.predict runs the same check_sentences; the lengths were checked just above (with
        # this predictor's truncate setting), so truncate=True only skips checking them twice
        return predict(self.model, self.tokenizer, sentences, batch_size=self.batch_size,
                       max_length=self.max_length, truncate=True)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit status 2), pointing at --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _read_stdin() -> list[str]:
    """One sentence per line of stdin; a blank line refuses the whole input (see :func:`main`)."""
    if sys.stdin is None or sys.stdin.isatty():
        raise CourseError("No sentences: pass them as arguments, or pipe them in, one per line.")
    try:
        lines = [line.rstrip("\r\n") for line in sys.stdin]
    except UnicodeDecodeError as err:
        raise CourseError(f"stdin is not UTF-8 text ({err.reason} at byte {err.start}): "
                          "convert it first, e.g. iconv -t UTF-8.") from None
    if not lines:
        raise CourseError("stdin was empty: pipe in the sentences, one per line.")
    blank = [n for n, line in enumerate(lines, start=1) if not line.strip()]
    if blank:
        shown = ", ".join(map(str, blank[:5])) + (" ..." if len(blank) > 5 else "")
        raise CourseError(f"stdin line{'s' if len(blank) > 1 else ''} {shown} {'are' if len(blank) > 1 else 'is'} "
                          f"empty ({len(blank)} of {len(lines)} lines). Each input line gets exactly one output "
                          "line, and an empty line has nothing to classify: remove the blank lines first "
                          "(e.g. grep -v '^[[:space:]]*$' FILE | python -m ftlib predict DIR).")
    return lines


def main(argv=None, prog: str = "python -m ftlib.deploy") -> int:
    """``python -m ftlib.deploy MODEL_DIR [SENTENCE ...]``; without sentences, one per line of stdin.

    Prints one line per sentence, in input order: ``label<TAB>probability<TAB>sentence`` (or one
    JSON object with ``--json``). Reading stdin, output line k answers input line k; a blank line
    (empty or only spaces) refuses the whole input, so the lines never get out of step.
    Bad input: one ``error: ...`` line on stderr and exit status 2; 0 on success.
    """
    ap = _Parser(prog=prog, description="Classify sentences with a model folder saved by ftlib.deploy.save. "
                                        "Prints label<TAB>probability<TAB>sentence, one line per sentence.")
    ap.add_argument("model_dir", help="folder written by ftlib.deploy.save after fine-tuning")
    ap.add_argument("sentences", nargs="*", help="sentences to classify; none: read one per line from stdin "
                                                 "(one output line per input line; a blank line is an error)")
    ap.add_argument("--truncate", action="store_true", help="cut over-long sentences instead of refusing them")
    ap.add_argument("--max-length", type=int, default=None, help="most tokens per sentence (default: the model's)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per line")
    args = ap.parse_intermixed_args(argv)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()           # no "Loading weights" bar on stderr: errors stay one line
    try:
        sentences = args.sentences or _read_stdin()
        predictor = Predictor(args.model_dir, max_length=args.max_length, truncate=args.truncate)
        for r in predictor.predict(sentences):
            print(json.dumps(r, ensure_ascii=False) if args.json else
                  f"{r['label']}\t{r['probability']:.3f}\t{r['sentence']}")
    except CourseError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return 0


# ----------------------------------------------------------------------------- monitoring

def psi(reference, current, bins: int = 10, categorical: bool = False) -> float:
    """Population stability index: sum over bins of (q - p) * ln(q / p).

    ``p`` and ``q`` are the shares of ``reference`` and ``current`` in each bin: the reference's
    deciles (``bins`` quantile bins) for numbers, or each category for ``categorical=True``.
    Empty bins count as a share of 1e-4. Rule of thumb: < 0.1 stable, 0.1-0.25 a moderate
    shift, > 0.25 a large one.
    """
    reference, current = np.asarray(reference), np.asarray(current)
    if reference.size == 0 or current.size == 0:
        raise CourseError("psi() needs non-empty reference and current samples.")
    if categorical:
        cats = np.union1d(np.unique(reference), np.unique(current))
        p = np.array([(reference == c).mean() for c in cats])
        q = np.array([(current == c).mean() for c in cats])
    else:
        edges = np.unique(np.quantile(reference.astype(float), np.linspace(0, 1, bins + 1)[1:-1]))
        p = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / reference.size
        q = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1) / current.size
    p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
    return float(np.sum((q - p) * np.log(q / p)))


def drift_windows(reference, stream, window: int, threshold: float = 0.25, statistic=None, bins: int = 10,
                  categorical: bool = False) -> list[dict]:
    """Watch a stream in consecutive windows of ``window`` observations and flag the ones that drifted.

    ``stream`` is what was observed per request, in arrival order (a confidence, a predicted label,
    a length); it is cut into windows ``stream[0:window]``, ``stream[window:2 * window]``, ... (a
    last, incomplete window is left for later: it has not been filled yet). For each window the
    statistic compares it with ``reference``: by default :func:`psi` (with ``bins`` and
    ``categorical``), or ``statistic(reference, window_values) -> float``. The alert rule is
    ``value > threshold``.

    Returns one dict per window: ``{"window", "start", "end", "value", "alert"}`` (``end`` is
    exclusive), ready to log or plot.
    """
    reference, stream = np.asarray(reference), np.asarray(stream)
    if window < 1:
        raise CourseError(f"window must be at least 1 observation, got {window}.")
    if len(stream) < window:
        raise CourseError(f"The stream has {len(stream)} observations, fewer than one window of {window}.")
    if statistic is None:
        def statistic(ref, cur):
            return psi(ref, cur, bins=bins, categorical=categorical)
    rows = []
    for i, start in enumerate(range(0, len(stream) - window + 1, window)):
        value = float(statistic(reference, stream[start:start + window]))
        rows.append({"window": i, "start": start, "end": start + window, "value": value,
                     "alert": bool(value > threshold)})
    return rows


if __name__ == "__main__":
    sys.exit(main())
