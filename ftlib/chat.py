"""Chat-format training examples with the loss on the response only (derived in notebook 13).

An instruction-tuned model reads its input in the **chat template** it was trained with:
``tokenizer.apply_chat_template`` renders a list of ``{"role", "content"}`` messages with
the model's special tokens (course-gpt: ``<|im_start|>role\\n ... <|im_end|>\\n``, a default
system turn when none is given) and, with ``add_generation_prompt=True``, ends with the
opening of the assistant's turn. Fine-tuning and prompting must use the same rendering.

Supervised fine-tuning (SFT) on an instruction/response pair scores only the **response**:

* :func:`build_example` renders the prompt alone (with the generation prompt) and the whole
  conversation, checks that the first is a prefix of the second, and labels the prompt's
  tokens ``-100``. The response keeps its end-of-turn token ``<|im_end|>`` (and the newline
  after it), so the model learns to stop;
* :func:`pad_examples` pads rows on the right; padding is labelled ``-100`` *by position*,
  never by comparing with the pad id -- course-gpt's pad token *is* ``<|im_end|>``, so
  masking by id would also drop every end-of-turn target;
* :func:`response_loss` is the engine's causal-LM loss (:func:`ftlib.train.lm_loss`) with the
  output layer applied only where a label is set: the same mean over response tokens that
  TRL's ``SFTTrainer`` computes with ``completion_only_loss``, in a fraction of the time when
  prompts are long.
"""
from __future__ import annotations

import torch

from ftlib.batches import IGNORE
from ftlib.errors import CourseError

__all__ = ["record_messages", "build_example", "pad_examples", "pack_examples", "response_loss", "render"]


def record_messages(record: dict) -> list[dict]:
    """The user turn of an instruction record ``{"instruction", "input", ...}``: the instruction,
    then a blank line and the input when there is one."""
    for key in ("instruction", "input"):
        if key not in record:
            raise CourseError(f"An instruction record needs the key {key!r}; this one has {sorted(record)}.")
    text = record["instruction"] + (f"\n\n{record['input']}" if record["input"] else "")
    return [{"role": "user", "content": text}]


def render(tokenizer, messages, *, add_generation_prompt: bool = False) -> list[int]:
    """Token ids of ``messages`` in the tokenizer's chat template (no extra special tokens)."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise CourseError(f"{type(tokenizer).__name__} has no chat template: load the tokenizer of an "
                          "instruction-tuned model (course-gpt has one), or set tokenizer.chat_template.")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def build_example(tokenizer, prompt_messages, response: str, *, max_length: int | None = None) -> dict:
    """``{"input_ids", "labels"}`` (lists) for one conversation: the prompt (rendered with the
    generation prompt) labelled ``-100``, the assistant's ``response`` and its end of turn labelled.

    ``max_length``: cut longer examples from the end (the prompt is kept whole; an example
    whose prompt alone reaches ``max_length`` raises, since it would have nothing to learn)."""
    if not isinstance(response, str) or not response.strip():
        raise CourseError(f"The response must be a non-empty string, got {response!r}.")
    prompt = render(tokenizer, prompt_messages, add_generation_prompt=True)
    full = render(tokenizer, list(prompt_messages) + [{"role": "assistant", "content": response}])
    if full[:len(prompt)] != prompt:
        raise CourseError("The rendered prompt is not a prefix of the rendered conversation, so the response's "
                          "tokens cannot be told apart; this chat template renders the prompt differently "
                          "alone than inside the conversation.")
    if max_length is not None:
        if len(prompt) >= max_length:
            raise CourseError(f"The prompt has {len(prompt)} tokens, max_length={max_length}: nothing of the "
                              "response would be left. Raise max_length or drop this example.")
        full = full[:max_length]
    return {"input_ids": full, "labels": [IGNORE] * len(prompt) + full[len(prompt):]}


def _lengths(examples: list, caller: str) -> list[int]:
    """The token count of each example, after checking there are some and each has a label per token."""
    if not examples:
        raise CourseError(f"{caller} got no examples.")
    for i, e in enumerate(examples):
        if len(e["labels"]) != len(e["input_ids"]):
            raise CourseError(f"Example {i}: {len(e['input_ids'])} input ids but {len(e['labels'])} labels.")
    return [len(e["input_ids"]) for e in examples]


def pad_examples(examples, pad_id: int) -> dict:
    """Right-pad examples from :func:`build_example` into tensors ``input_ids``, ``labels`` and
    ``attention_mask`` of shape (N, longest); padding gets label ``-100`` and mask 0."""
    examples = list(examples)
    width = max(_lengths(examples, "pad_examples"))
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def pack_examples(examples, pad_id: int, max_tokens: int | None = None) -> dict:
    """Pack examples from :func:`build_example` end to end into rows (no padding between them):
    ``input_ids``, ``labels`` and ``position_ids`` of shape (rows, width), **no** attention mask.

    Each example's ``position_ids`` restart at 0. A transformers decoder given ``position_ids`` and
    no attention mask reads every restart as the start of a new sequence and lets each token attend
    only to earlier tokens *of its own example* (a block-diagonal causal mask, built from the
    positions; ``DataCollatorWithFlattening``'s padding-free format), so the loss equals the padded
    batch's. Without the restarts every answer would also attend to the examples before it -- and
    so it does if the model builds a KV cache (``use_cache``, on by default): transformers then skips
    the mask from the positions. The course's losses run the body with ``use_cache=False``.
    ``max_tokens=None``: one row holding everything; otherwise examples go, in order, into rows of at
    most ``max_tokens`` tokens, and the end of a short row is padding (label -100, its own positions)."""
    examples = list(examples)
    lengths = _lengths(examples, "pack_examples")
    if max_tokens is None:
        rows, width = [examples], sum(lengths)
    else:
        for i, n in enumerate(lengths):
            if n > max_tokens:
                raise CourseError(f"Example {i} has {n} tokens, more than max_tokens={max_tokens}: raise "
                                  "max_tokens or truncate the examples (build_example(..., max_length=)).")
        rows, used, width = [[]], 0, max_tokens
        for e, n in zip(examples, lengths):
            if rows[-1] and used + n > max_tokens:
                rows.append([])
                used = 0
            rows[-1].append(e)
            used += n
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        start = 0
        for e in r:
            n = len(e["input_ids"])
            ids[i, start:start + n] = torch.tensor(e["input_ids"])
            labels[i, start:start + n] = torch.tensor(e["labels"])
            labels[i, start] = IGNORE          # never predict an example's first token from the one before
            positions[i, start:start + n] = torch.arange(n)
            start += n
        positions[i, start:] = torch.arange(width - start)
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


def response_loss(model, batch: dict):
    """The engine's causal-LM loss on the labelled (response) tokens only: ``(mean, tokens, None)``.
    A task for :func:`ftlib.train.fit` and :func:`ftlib.train.evaluate`."""
    from ftlib.train import lm_loss
    return lm_loss(model, batch, labelled_only=True)
