"""ftlib: the helpers the course's notebooks derive and keep.

Each module is written in a notebook first (plain code, checked against the
library), then kept here so later notebooks can import it:

=================  ==========================================  ========
module             what it keeps                               notebook
=================  ==========================================  ========
``ftlib.errors``   ``CourseError``, the one error for a mistake  all
``ftlib.device``   device, precision, seeding; sync, peak memory 00
``ftlib.budget``   CPU-small vs GPU-full run sizes             00
``ftlib.models``   ``course-bert`` / ``course-gpt`` loading    00
``ftlib.data``     the 7 data sets, from a mirror or the hub    00, 15
``ftlib.losses``   cross-entropy and friends, by hand          01
``ftlib.attention``  scaled dot-product and multi-head attention 02
``ftlib.bert``     a BERT encoder that runs course-bert        03
``ftlib.gpt``      a Llama-style decoder that runs course-gpt  04
``ftlib.subwords``  BPE training, WordPiece, in plain code     03
``ftlib.text``     tokenising, dynamic padding, length groups  05
``ftlib.train``    the engine: fit / evaluate / predict         06
``ftlib.strategies``  freezing, layer-wise LR, unfreezing      07
``ftlib.heads``    mean-pooling and sentence-pair heads         07, 08, 16
``ftlib.lora``     LoRA from scratch, merge                    07
``ftlib.augment``  text augmentation                           08
``ftlib.imbalance``  class imbalance: resampling, class weights 08
``ftlib.rules``    sentiment rules, rule constraint, override  09
``ftlib.metrics``  classification, calibration, bootstrap, BLEU 10
``ftlib.batches``  batches held on the device, static shapes   11
``ftlib.flops``    FLOPs per token, GPU peaks, MFU             11, 12
``ftlib.lm``       packing, next-token losses, prompts         12
``ftlib.bench``    benchmarks and weight export                11, 12
``ftlib.chat``     chat-format SFT examples, response-only loss 13
``ftlib.dpo``      sequence log-probs and the DPO loss         13
``ftlib.deploy``   save/load, compress, export, serve, drift   14
``ftlib.tasks``    NER, extractive QA, decoder translation     15, 17, 18
``ftlib.frozen``   a frozen bottom run once, the top trained   06, 15, 16, 17
``ftlib.exercises``  the checks of every lesson's exercises    all
``ftlib.memory``   bytes/param, activations, ZeRO, GPU table  19
``ftlib.distributed``  fit under torchrun: shards, DDP, reduce  19
``ftlib.recipes``  ``python -m ftlib train``: a run from flags  19
=================  ==========================================  ========
"""

__version__ = "0.1.0"


from ftlib.errors import CourseError  # noqa: E402  (first: every module imports it from there)
from ftlib.device import pick_device, pick_dtype, autocast, seed_everything, describe_device  # noqa: E402
from ftlib.budget import Budget, get_budget  # noqa: E402
from ftlib.models import resolve_model, load_tokenizer, load_model, COURSE_MODELS  # noqa: E402
from ftlib.data import (load_sst2, load_tinyshakespeare, load_translation_pairs, load_squad,  # noqa: E402
                        load_wnut17, load_mrpc, load_instructions, data_dir, drop_leaks,
                        leak_free_folds)

__all__ = [
    "CourseError",
    "pick_device", "pick_dtype", "autocast", "seed_everything", "describe_device",
    "Budget", "get_budget",
    "resolve_model", "load_tokenizer", "load_model", "COURSE_MODELS",
    "load_sst2", "load_tinyshakespeare", "load_translation_pairs", "load_squad", "load_wnut17", "load_mrpc",
    "load_instructions", "data_dir", "drop_leaks", "leak_free_folds",
]
