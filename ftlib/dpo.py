"""Direct preference optimisation from scratch (derived in notebook 13).

DPO (Rafailov et al. 2023) trains a policy :math:`\\pi_\\theta` on pairs of responses to one
prompt, a *chosen* :math:`y_w` and a *rejected* :math:`y_l`, against a frozen reference
:math:`\\pi_{ref}` (the SFT model it starts from):

.. math::

    L = -\\log \\sigma\\Big(\\beta \\big[(\\log \\pi_\\theta(y_w) - \\log \\pi_{ref}(y_w))
                               - (\\log \\pi_\\theta(y_l) - \\log \\pi_{ref}(y_l))\\big]\\Big)

where :math:`\\log \\pi(y)` is the **sum** of the response tokens' log-probabilities given the
prompt. :math:`r = \\beta (\\log \\pi_\\theta(y) - \\log \\pi_{ref}(y))` is the *implicit reward*;
the loss pushes the chosen reward above the rejected one, and :math:`\\beta` sets how far the
policy may move from the reference for a given margin.

* :func:`sequence_logprobs` -- the summed log-probability of each row's labelled tokens;
* :func:`dpo_loss` -- the loss and both rewards from four vectors of log-probabilities;
* :func:`pair_batches` -- batches of ``[chosen rows; rejected rows]`` (examples from
  :func:`ftlib.chat.build_example`) with the reference's log-probabilities stored alongside;
  with ``share_prompt=True`` each pair's prompt is stored, and run, once (its keys and values are
  reused by both answers: about a third fewer tokens when prompts are long and answers short);
* :func:`dpo_task` -- a task for :func:`ftlib.train.fit` / :func:`ftlib.train.evaluate`
  (items = pairs, correct = pairs whose chosen reward beats the rejected one);
* :func:`preference_gain` -- held-out preference accuracy of two models on the same pairs and
  the paired bootstrap interval of the difference (did DPO rank more pairs right than its start?).

Checked against TRL's ``DPOTrainer`` loss on the same batch in the notebook and the tests.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from ftlib.chat import pad_examples
from ftlib.errors import CourseError
from ftlib.batches import IGNORE
from ftlib.lm import body_and_head, head_at_labels, labelled_logits

__all__ = ["sequence_logprobs", "shared_prompt_logprobs", "dpo_loss", "pair_batches", "dpo_task", "pair_logprobs",
           "preference_gain"]

_NOT_MODEL = ("labels", "ref_logps")
_SHARED = ("prompt_ids", "prompt_mask", "response_ids", "response_labels", "response_mask")


def sequence_logprobs(model, batch: dict) -> torch.Tensor:
    """``(rows,)`` float32: for each row, the sum over its labelled positions t of
    ``log p(labels[t] | tokens < t)`` (logits at t - 1 score the token at t; -100 skipped).

    The output layer runs only where a label is set (as :func:`ftlib.chat.response_loss`).
    A batch from ``pair_batches(..., share_prompt=True)`` is scored by :func:`shared_prompt_logprobs`."""
    if "prompt_ids" in batch:
        return shared_prompt_logprobs(model, batch)
    inputs = {k: v for k, v in batch.items() if k not in _NOT_MODEL}
    labels = batch["labels"]
    return _summed(*labelled_logits(model, inputs, labels), labels.shape[0])


def _summed(logits, target, rows, n_rows: int) -> torch.Tensor:
    """``(n_rows,)``: each row's sum of the log-probabilities its ``logits`` give its ``target`` tokens."""
    token = torch.log_softmax(logits, dim=-1).gather(-1, target[:, None])[:, 0]
    return torch.zeros(n_rows, dtype=torch.float32, device=logits.device).index_add(0, rows, token)


def shared_prompt_logprobs(model, batch: dict) -> torch.Tensor:
    """``(2B,)``: :func:`sequence_logprobs` of the B pairs of a shared-prompt batch (chosen rows, then
    rejected rows), running each prompt once.

    The prompts (B, P) are **left**-padded, so every prompt ends in the last column; one pass over them
    fills the KV cache and its last hidden state predicts each answer's first token. The cache is then
    repeated, each prompt twice (chosen, rejected), and the answers (right-padded) run on top of it with
    positions that continue from each prompt's true length. Gradients flow through the cache into the
    prompt pass, so the result, and its gradient, equal scoring the two full rows apart."""
    missing = [k for k in _SHARED if k not in batch]
    if missing:
        raise CourseError(f"A shared-prompt batch needs {', '.join(_SHARED)}; missing {', '.join(missing)}. "
                          "Build it with pair_batches(..., share_prompt=True).")
    body, head = body_and_head(model, required_for="Sharing the prompt")
    p_ids, p_mask = batch["prompt_ids"], batch["prompt_mask"]
    pairs = p_ids.shape[0]
    # rows in the order the repeated cache has them: pair 0 chosen, pair 0 rejected, pair 1 chosen ...
    inter = torch.arange(2 * pairs, device=p_ids.device).view(2, pairs).t().reshape(-1)
    r_ids, r_labels, r_mask = (batch[k][inter] for k in ("response_ids", "response_labels", "response_mask"))
    first = body(input_ids=p_ids, attention_mask=p_mask, position_ids=(p_mask.cumsum(1) - 1).clamp(min=0),
                 use_cache=True)
    # transformers 5.24 renamed the argument past_key_values to cache (the old name goes in 5.40)
    cache_arg = "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"
    cache = first["cache"] if "cache" in first else first["past_key_values"]
    cache.batch_repeat_interleave(2)
    length = p_mask.sum(1).repeat_interleave(2)
    steps = torch.arange(r_ids.shape[1], device=p_ids.device)
    rest = body(input_ids=r_ids, attention_mask=torch.cat([p_mask.repeat_interleave(2, 0), r_mask], 1),
                position_ids=length[:, None] + steps, use_cache=True, **{cache_arg: cache})
    # the hidden state before each answer token: the prompt's last one, then the answer's own
    hidden = torch.cat([first.last_hidden_state[:, -1:].repeat_interleave(2, 0), rest.last_hidden_state[:, :-1]], 1)
    per_row = _summed(*head_at_labels(head, hidden, r_labels), 2 * pairs)
    return per_row.view(pairs, 2).t().reshape(-1)           # back to chosen rows, then rejected rows


def _split_prompt(example: dict, i: int, which: str) -> int:
    """The prompt's length in an example from build_example: its leading -100 labels."""
    n = next((k for k, y in enumerate(example["labels"]) if y != IGNORE), None)
    if n is None or n == 0:
        raise CourseError(f"The {which} example of pair {i} has " + ("no labelled token" if n is None else
                          "no prompt (its first token is labelled)") + "; share_prompt needs examples from "
                          "build_example: a prompt labelled -100, then the answer.")
    return n


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float = 0.1):
    """``(mean loss, chosen rewards, rejected rewards)``: the sigmoid DPO loss.

    Each argument is a ``(pairs,)`` tensor of summed response log-probabilities."""
    if beta <= 0:
        raise CourseError(f"beta must be > 0 (typical: 0.1), got {beta}.")
    shapes = {t.shape for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1:
        raise CourseError(f"The four log-probability vectors must have one shape, got {sorted(map(tuple, shapes))}.")
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
    return loss, chosen_reward.detach(), rejected_reward.detach()


def pair_batches(chosen, rejected, pad_id: int, batch_size: int, ref_logps=None, order=None,
                 share_prompt: bool = False) -> list[dict]:
    """Batches for DPO: each holds the chosen rows of ``batch_size`` pairs, then their rejected rows
    (``input_ids``, ``labels``, ``attention_mask`` of shape (2B, T)); with ``ref_logps`` (a
    ``(2, pairs)`` tensor: chosen, rejected) also ``ref_logps`` of shape (2B,).

    ``chosen`` / ``rejected``: lists of examples from :func:`ftlib.chat.build_example`, pair i
    in position i of both. ``order``: the pairs' order (default: as given).

    ``share_prompt=True``: the two answers of a pair follow the same prompt, so store it once:
    ``prompt_ids`` / ``prompt_mask`` (B, P), left-padded, and ``response_ids`` / ``response_labels`` /
    ``response_mask`` (2B, R), right-padded, chosen rows then rejected rows. Every function here
    (:func:`sequence_logprobs`, :func:`pair_logprobs`, :func:`dpo_task`) takes either kind."""
    if len(chosen) != len(rejected) or not chosen:
        raise CourseError(f"Need as many chosen as rejected examples (at least one), got {len(chosen)} and "
                          f"{len(rejected)}.")
    order = list(range(len(chosen))) if order is None else [int(i) for i in order]
    out = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = (_shared_batch([chosen[i] for i in idx], [rejected[i] for i in idx], idx, pad_id) if share_prompt
                 else pad_examples([chosen[i] for i in idx] + [rejected[i] for i in idx], pad_id))
        if ref_logps is not None:
            batch["ref_logps"] = torch.cat([ref_logps[0, idx], ref_logps[1, idx]]).float()
        out.append(batch)
    return out


def _shared_batch(chosen, rejected, idx, pad_id: int) -> dict:
    prompts, answers = [], {"chosen": [], "rejected": []}
    for c, r, i in zip(chosen, rejected, idx):
        nc, nr = _split_prompt(c, i, "chosen"), _split_prompt(r, i, "rejected")
        if c["input_ids"][:nc] != r["input_ids"][:nr]:
            raise CourseError(f"Pair {i}: the chosen and rejected examples do not start with the same prompt, so "
                              "it cannot be shared; build both with build_example from the same messages, or "
                              "use share_prompt=False.")
        prompts.append(c["input_ids"][:nc])
        for kind, e, n in (("chosen", c, nc), ("rejected", r, nr)):
            answers[kind].append({"input_ids": e["input_ids"][n:], "labels": e["labels"][n:]})
    width = max(map(len, prompts))
    p_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    p_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for k, p in enumerate(prompts):                       # left padding: every prompt ends in the last column
        p_ids[k, width - len(p):] = torch.tensor(p)
        p_mask[k, width - len(p):] = 1
    r = pad_examples(answers["chosen"] + answers["rejected"], pad_id)    # answers: right padding
    return {"prompt_ids": p_ids, "prompt_mask": p_mask, "response_ids": r["input_ids"],
            "response_labels": r["labels"], "response_mask": r["attention_mask"]}


def pair_logprobs(model, batches) -> torch.Tensor:
    """``(2, pairs)``: the summed response log-probabilities of every pair's chosen (row 0) and
    rejected (row 1) response under ``model`` (eval mode, no gradients), in batch order."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = []
    with torch.no_grad():
        for batch in batches:
            lp = sequence_logprobs(model, {k: v.to(device) for k, v in batch.items()}).cpu()
            parts.append(lp.view(2, -1))
    model.train(was)
    return torch.cat(parts, dim=1)


def dpo_task(beta: float = 0.1):
    """A task for ``fit`` / ``evaluate``: ``(model, batch) -> (mean DPO loss, pairs, pairs whose
    chosen reward > rejected reward)``. Batches from :func:`pair_batches` with ``ref_logps``."""
    def dpo(model, batch):
        if "ref_logps" not in batch:
            raise CourseError("A DPO batch needs the reference's log-probabilities: build it with "
                              "pair_batches(..., ref_logps=pair_logprobs(reference, batches)).")
        logps = sequence_logprobs(model, batch)
        pc, pr = logps.chunk(2)
        rc, rr = batch["ref_logps"].chunk(2)
        loss, chosen_reward, rejected_reward = dpo_loss(pc, pr, rc, rr, beta)
        return loss, torch.tensor(pc.shape[0], device=loss.device), (chosen_reward > rejected_reward).sum()
    dpo.__name__ = f"dpo_beta{beta:g}"
    return dpo


def preference_gain(after, before, n_boot: int = 1000, seed: int = 0) -> dict:
    """Held-out preference accuracy of two models on the same pairs, and the paired difference.

    ``after`` / ``before``: ``(2, pairs)`` summed response log-probabilities, row 0 the chosen
    answers, row 1 the rejected ones (e.g. the DPO policy and the SFT model it started from). A
    pair is ranked right when ``log pi(chosen) > log pi(rejected)``: a question any model can be
    asked, unlike the implicit reward, which is 0 for the reference by definition. Returns
    ``accuracy_before``, ``accuracy_after``, ``right_before`` / ``right_after`` (one bool per
    pair) and ``gain``: the paired bootstrap interval (:func:`ftlib.metrics.paired_bootstrap_diff`)
    of after minus before. ``gain.low > 0`` is the verdict "ranks more pairs right, beyond noise"."""
    from ftlib.metrics import paired_bootstrap_diff
    a, b = torch.as_tensor(after), torch.as_tensor(before)
    if a.ndim != 2 or a.shape[0] != 2 or a.shape != b.shape or a.shape[1] == 0:
        raise CourseError(f"after and before must both be (2, pairs) log-probabilities (row 0 chosen, row 1 "
                          f"rejected) of the same pairs, got shapes {tuple(a.shape)} and {tuple(b.shape)}.")
    right_after, right_before = (a[0] > a[1]).cpu().numpy(), (b[0] > b[1]).cpu().numpy()
    return {"accuracy_before": float(right_before.mean()), "accuracy_after": float(right_after.mean()),
            "right_before": right_before, "right_after": right_after,
            "gain": paired_bootstrap_diff(right_after, right_before, n_boot=n_boot, seed=seed)}
