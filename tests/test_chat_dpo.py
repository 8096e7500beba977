"""ftlib.chat (SFT examples, response-only loss) and ftlib.dpo (DPO loss), checked by hand and
against TRL's SFTTrainer / DPOTrainer on the same batches; each check is shown to reject a wrong variant."""
import math
import tempfile
import warnings

import pytest
import torch
import torch.nn.functional as F

import ftlib
from ftlib import CourseError
from ftlib.chat import build_example, pack_examples, pad_examples, record_messages, render, response_loss
from ftlib.dpo import dpo_loss, dpo_task, pair_batches, pair_logprobs, preference_gain, sequence_logprobs
from ftlib.train import fit, lm_loss

from conftest import make_tiny_llama

RECORDS = [
    {"instruction": "Convert 45 kilometers to meters.", "input": "", "output": "45 kilometers is 45000 meters.",
     "chosen": "45 kilometers is equivalent to 45000 meters.", "rejected": "45 kilometers is 45000 meters."},
    {"instruction": "Edit the following sentence for grammar.", "input": "He go to the park every day.",
     "output": "He goes to the park every day.", "chosen": "He goes to the park every day.",
     "rejected": "He goes to the stupid park every single day."},
    {"instruction": "What is the plural of mouse?", "input": "", "output": "Mice.",
     "chosen": "The plural of mouse is mice.", "rejected": "Mice, obviously."},
    {"instruction": "Name a primary colour.", "input": "", "output": "Red.", "chosen": "Red is a primary colour.",
     "rejected": "Red, duh."},
]


@pytest.fixture(scope="module")
def tok():
    return ftlib.load_tokenizer("course-gpt")


def tiny(tok, seed=0):
    return make_tiny_llama(vocab=len(tok), seed=seed).eval()


def examples(tok, key="output"):
    return [build_example(tok, record_messages(r), r[key]) for r in RECORDS]


# ------------------------------------------------------------------------------ examples
def test_record_messages_joins_instruction_and_input():
    assert record_messages(RECORDS[1])[0]["content"] == "Edit the following sentence for grammar.\n\nHe go to the park every day."
    assert record_messages(RECORDS[0]) == [{"role": "user", "content": "Convert 45 kilometers to meters."}]
    with pytest.raises(CourseError, match="input"):
        record_messages({"instruction": "x"})


def test_build_example_labels_the_response_and_its_end_of_turn_only(tok):
    ex = build_example(tok, record_messages(RECORDS[0]), RECORDS[0]["output"])
    prompt = render(tok, record_messages(RECORDS[0]), add_generation_prompt=True)
    n = len(prompt)
    assert ex["input_ids"][:n] == prompt and ex["labels"][:n] == [-100] * n
    assert ex["labels"][n:] == ex["input_ids"][n:]
    assert tok.decode(ex["input_ids"][n:]) == RECORDS[0]["output"] + "<|im_end|>\n"
    assert tok.convert_tokens_to_ids("<|im_end|>") in ex["labels"][n:]


def test_build_example_refuses_what_it_cannot_label(tok):
    with pytest.raises(CourseError, match="non-empty"):
        build_example(tok, record_messages(RECORDS[0]), "")
    with pytest.raises(CourseError, match="max_length"):
        build_example(tok, record_messages(RECORDS[0]), "x", max_length=10)
    cut = build_example(tok, record_messages(RECORDS[0]), RECORDS[0]["output"], max_length=40)
    assert len(cut["input_ids"]) == 40 and cut["labels"][-1] != -100


def test_build_example_refuses_a_template_whose_prompt_is_not_a_prefix(tok):
    import copy
    odd = copy.deepcopy(tok)
    # a template that renders the generation prompt differently from the assistant turn it opens
    odd.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant:\n{% endif %}")
    with pytest.raises(CourseError, match="prefix"):
        build_example(odd, record_messages(RECORDS[0]), "yes")
    odd.chat_template = None
    with pytest.raises(CourseError, match="chat template"):
        render(odd, record_messages(RECORDS[0]))


def test_padding_is_found_by_position_so_the_end_of_turn_target_survives(tok):
    assert tok.pad_token_id == tok.convert_tokens_to_ids("<|im_end|>")      # the trap this guards against
    exs = examples(tok)
    batch = pad_examples(exs, tok.pad_token_id)
    lengths = [len(e["input_ids"]) for e in exs]
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert int((batch["labels"] == tok.pad_token_id).sum()) == len(exs)        # one end-of-turn target per row
    careless = torch.where(batch["input_ids"] == tok.pad_token_id, -100, batch["labels"])
    assert int((careless == tok.pad_token_id).sum()) == 0                       # masking by id loses them all
    for row, n in zip(batch["labels"], lengths):
        assert (row[n:] == -100).all()
    with pytest.raises(CourseError, match="labels"):
        pad_examples([{"input_ids": [1, 2], "labels": [1]}], 0)
    with pytest.raises(CourseError, match="no examples"):
        pad_examples([], 0)


# ------------------------------------------------------------------------------ the loss
def test_packed_examples_give_the_padded_loss_and_naive_packing_does_not(tok):
    ex = examples(tok)
    model = tiny(tok)
    padded = pad_examples(ex, tok.pad_token_id)
    packed = pack_examples(ex, tok.pad_token_id)
    n_tokens = sum(len(e["input_ids"]) for e in ex)
    assert packed["input_ids"].shape == (1, n_tokens) and "attention_mask" not in packed
    assert (packed["labels"] != -100).sum() == (padded["labels"] != -100).sum()     # no target lost or added
    # transformers' padding-free collator builds the same row
    from transformers import DataCollatorWithFlattening
    hf = DataCollatorWithFlattening(return_position_ids=True)(ex)
    for key in ("input_ids", "labels", "position_ids"):
        assert torch.equal(hf[key], packed[key]), key
    rows = pack_examples(ex, tok.pad_token_id, max_tokens=max(len(e["input_ids"]) for e in ex) + 5)
    assert rows["input_ids"].shape[0] > 1 and (rows["labels"] != -100).sum() == (padded["labels"] != -100).sum()
    with torch.no_grad():
        want = float(response_loss(model, padded)[0])
        assert abs(float(response_loss(model, packed)[0]) - want) < 1e-5
        assert abs(float(response_loss(model, rows)[0]) - want) < 1e-5
        # the wrong way: one long causal row, each answer attending to the examples before it
        naive = {k: packed[k] for k in ("input_ids", "labels")}
        assert abs(float(response_loss(model, naive)[0]) - want) > 1e-4     # 20x the tolerance above
        # per token it is plain: the second example's logits change once it sees the first
        logits = lambda **kw: model(input_ids=packed["input_ids"], use_cache=False, **kw).logits[0]
        right, wrong = logits(position_ids=packed["position_ids"]), logits()
        first = len(ex[0]["input_ids"])
        assert (right[:first] - wrong[:first]).abs().max() < 1e-5 and (right[first:] - wrong[first:]).abs().max() > 1e-2
        # and what a KV cache does to the packed row: transformers then skips the block mask it derives from them
        cached = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=True).logits[0]
        assert (cached - right).abs().max() > 1e-2
    # trains through the engine in the packed form too
    model.train()
    loss = response_loss(model, packed)[0]
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(CourseError, match="max_tokens"):
        pack_examples(ex, tok.pad_token_id, max_tokens=5)
    with pytest.raises(CourseError, match="no examples"):
        pack_examples([], tok.pad_token_id)


def test_response_loss_is_the_mean_over_response_tokens(tok):
    model = tiny(tok)
    batch = pad_examples(examples(tok), tok.pad_token_id)
    with torch.no_grad():
        loss, n, _ = response_loss(model, batch)
        full, n_full, _ = lm_loss(model, batch)                  # the same loss, output layer everywhere
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    by_hand = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                              ignore_index=-100)
    assert int(n) == int(n_full) == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(loss, by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full, by_hand, rtol=1e-5, atol=1e-6)
    # the wrong average (mean of the rows' means) is measurably different on this batch
    per_tok = F.cross_entropy(logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], ignore_index=-100,
                              reduction="none")
    mask = batch["labels"][:, 1:] != -100
    row_means = ((per_tok * mask).sum(1) / mask.sum(1)).mean()
    assert abs(float(row_means) - float(loss)) > 1e-4


def test_response_loss_refuses_a_model_without_separate_body_and_head():
    class Plain(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None):
            raise AssertionError
    with pytest.raises(CourseError, match="get_decoder"):
        lm_loss(Plain(), {"input_ids": torch.ones(1, 3, dtype=torch.long), "labels": torch.ones(1, 3, dtype=torch.long)},
                labelled_only=True)


def test_sequence_logprobs_sums_the_labelled_tokens_of_each_row(tok):
    model = tiny(tok)
    batch = pad_examples(examples(tok), tok.pad_token_id)
    batch["labels"][3] = -100                                    # a row with nothing scored
    with torch.no_grad():
        got = sequence_logprobs(model, batch)
        logp = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.log_softmax(-1)
    target = batch["labels"][:, 1:]
    tok_lp = logp[:, :-1].gather(-1, target.clamp(min=0)[..., None])[..., 0] * (target != -100)
    torch.testing.assert_close(got, tok_lp.sum(1), rtol=1e-5, atol=1e-5)
    assert float(got[3]) == 0.0
    assert not torch.allclose(got[:3], (tok_lp.sum(1) / (target != -100).sum(1).clamp(min=1))[:3])  # not a mean


# ------------------------------------------------------------------------------ DPO
def test_dpo_loss_formula_start_value_and_direction():
    pc, pr = torch.tensor([-12.0, -30.0]), torch.tensor([-15.0, -28.0])
    rc, rr = torch.tensor([-13.0, -29.0]), torch.tensor([-14.0, -29.0])
    loss, cr, rrw = dpo_loss(pc, pr, rc, rr, 0.1)
    margins = 0.1 * ((pc - rc) - (pr - rr))
    assert math.isclose(float(loss), float(-F.logsigmoid(margins).mean()), rel_tol=1e-6)
    torch.testing.assert_close(cr - rrw, margins)
    assert math.isclose(float(dpo_loss(pc, pr, pc, pr, 0.1)[0]), math.log(2), rel_tol=1e-6)
    # the loss falls when the chosen answer becomes likelier, rises when the rejected one does
    assert float(dpo_loss(pc + 1, pr, rc, rr, 0.1)[0]) < float(loss) < float(dpo_loss(pc, pr + 1, rc, rr, 0.1)[0])
    # the reference matters: leaving it out gives another value
    assert abs(float(dpo_loss(pc, pr, torch.zeros(2), torch.zeros(2), 0.1)[0]) - float(loss)) > 1e-3
    with pytest.raises(CourseError, match="beta"):
        dpo_loss(pc, pr, rc, rr, 0.0)
    with pytest.raises(CourseError, match="shape"):
        dpo_loss(pc, pr[:1], rc, rr)


def test_pair_batches_keep_pairs_and_reference_aligned(tok):
    ch, rj = examples(tok, "chosen"), examples(tok, "rejected")
    ref = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, -3.0, -4.0]])
    bs = pair_batches(ch, rj, tok.pad_token_id, 2, ref_logps=ref, order=[2, 0, 3, 1])
    assert len(bs) == 2 and bs[0]["input_ids"].shape[0] == 4
    assert bs[0]["ref_logps"].tolist() == [3.0, 1.0, -3.0, -1.0]
    assert bs[0]["input_ids"][0, :len(ch[2]["input_ids"])].tolist() == ch[2]["input_ids"]
    assert bs[0]["input_ids"][2, :len(rj[2]["input_ids"])].tolist() == rj[2]["input_ids"]
    model = tiny(tok)
    lp = pair_logprobs(model, pair_batches(ch, rj, tok.pad_token_id, 3))
    assert lp.shape == (2, 4)
    with torch.no_grad():
        direct = sequence_logprobs(model, pad_examples([ch[3], rj[3]], tok.pad_token_id))
    torch.testing.assert_close(lp[:, 3], direct, rtol=1e-5, atol=1e-5)
    with pytest.raises(CourseError, match="as many"):
        pair_batches(ch, rj[:3], tok.pad_token_id, 2)
    with pytest.raises(CourseError, match="reference"):
        dpo_task()(model, pair_batches(ch, rj, tok.pad_token_id, 2)[0])


def test_shared_prompt_batches_score_and_train_like_the_full_rows(tok):
    """share_prompt=True runs each prompt once (left-padded, its KV cache reused by both answers): the
    log-probabilities and the DPO gradient equal those of the full rows, for prompts of different lengths."""
    ch, rj = examples(tok, "chosen"), examples(tok, "rejected")
    assert len({len(e["input_ids"]) - sum(y != -100 for y in e["labels"]) for e in ch}) > 1   # prompts differ in length
    model = tiny(tok)
    full = pair_logprobs(model, pair_batches(ch, rj, tok.pad_token_id, 3, order=[3, 1, 0, 2]))
    shared = pair_logprobs(model, pair_batches(ch, rj, tok.pad_token_id, 3, order=[3, 1, 0, 2], share_prompt=True))
    torch.testing.assert_close(shared, full, rtol=1e-5, atol=1e-4)
    b = pair_batches(ch, rj, tok.pad_token_id, 4, share_prompt=True)[0]
    assert b["prompt_ids"].shape[0] == 4 and b["response_ids"].shape[0] == 8
    assert (b["prompt_mask"][:, -1] == 1).all() and (b["prompt_mask"][:, 0] == 0).any()    # left padding
    n_full = sum(len(e["input_ids"]) for e in ch + rj)
    assert int(b["prompt_mask"].sum() + b["response_mask"].sum()) < 0.8 * n_full          # fewer tokens run
    # the gradient of the DPO loss too (the prompt pass is trained through the cache)
    ref = full[:, [3, 1, 0, 2]].flip(0)                      # any reference; in the batches' pair order
    grads = []
    for share in (False, True):
        model.zero_grad()
        batch = pair_batches(ch, rj, tok.pad_token_id, 4, ref_logps=ref, order=[3, 1, 0, 2], share_prompt=share)[0]
        dpo_task(0.1)(model, batch)[0].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)
    assert grads[0].abs().max() > 1e-3
    # through the engine: the same steps, the same rows counted, fewer tokens run
    runs = {}
    for share in (False, True):
        m = tiny(tok, seed=1)
        batches = pair_batches(ch, rj, tok.pad_token_id, 2, ref_logps=ref[:, [2, 1, 3, 0]], share_prompt=share)
        runs[share] = fit(m, batches, task=dpo_task(0.1), max_steps=3, lr=3e-3, warmup_ratio=0.0, verbose=False,
                          progress=False)
    assert runs[True].step_loss == pytest.approx(runs[False].step_loss, rel=1e-4, abs=1e-5)
    assert runs[True].examples == runs[False].examples == 12          # 3 steps of 2 pairs, 2 answers each
    run_tokens = [int(b["prompt_mask"].sum() + b["response_mask"].sum())
                  for b in pair_batches(ch, rj, tok.pad_token_id, 2, share_prompt=True)]
    assert runs[True].tokens == sum(run_tokens) + run_tokens[0]                 # steps 1, 2, then 1 again
    assert runs[True].tokens < runs[False].tokens
    # the wrong answer it rejects: a rejected answer scored after another pair's prompt
    swapped = [dict(e) for e in rj]
    swapped[0], swapped[1] = rj[1], rj[0]
    with pytest.raises(CourseError, match="same prompt"):
        pair_batches(ch, swapped, tok.pad_token_id, 2, share_prompt=True)
    with pytest.raises(CourseError, match="no prompt"):
        pair_batches([{"input_ids": [1, 2], "labels": [1, 2]}], rj[:1], tok.pad_token_id, 1, share_prompt=True)
    with pytest.raises(CourseError, match="share_prompt=True"):
        sequence_logprobs(model, {"prompt_ids": b["prompt_ids"]})


def test_dpo_through_the_engine_raises_the_margin_on_its_pairs(tok):
    ch, rj = examples(tok, "chosen"), examples(tok, "rejected")
    model = tiny(tok, seed=1)
    ref = pair_logprobs(model, pair_batches(ch, rj, tok.pad_token_id, 4))
    batches = pair_batches(ch, rj, tok.pad_token_id, 4, ref_logps=ref)
    before = ftlib.train.evaluate(model, batches, task=dpo_task(0.1))
    assert math.isclose(before["loss"], math.log(2), rel_tol=1e-5) and before["n"] == 4
    fit(model, batches, task=dpo_task(0.1), max_steps=15, lr=3e-3, warmup_ratio=0.0, verbose=False, progress=False)
    after = ftlib.train.evaluate(model, batches, task=dpo_task(0.1))
    assert after["loss"] < 0.6 and after["accuracy"] == 1.0
    lp = pair_logprobs(model, pair_batches(ch, rj, tok.pad_token_id, 4))
    assert ((lp[0] - ref[0]) - (lp[1] - ref[1]) > 0).all()


def test_preference_gain_rejects_a_policy_that_ranks_no_more_pairs_right():
    """Lesson 13's verdict: held-out preference accuracy after DPO beats the SFT model's beyond the
    paired interval. 110 pairs as in the lesson: the SFT model ranks 61 right, by several nats."""
    g = torch.Generator().manual_seed(0)
    chosen = -40 + 10 * torch.randn(110, generator=g)
    gap = torch.where(torch.arange(110) < 61, 5.0, -5.0) + torch.rand(110, generator=g)
    before = torch.stack([chosen, chosen - gap])
    verdict = lambda after: preference_gain(after, before)["gain"].low > 0
    # a policy that did nothing, or lowered both answers by the same amount, ranks the same pairs right
    assert not verdict(before) and not verdict(before - 7.0)
    # a larger margin than the reference's on every pair (reward accuracy 1.0) that flips no pair
    nudged = before + torch.stack([torch.full((110,), 1.0), torch.zeros(110)])
    assert ((nudged[0] - before[0]) - (nudged[1] - before[1]) > 0).all() and not verdict(nudged)
    # a policy that ranks every pair the other way
    swapped = before.flip(0)
    r = preference_gain(swapped, before)
    assert math.isclose(r["accuracy_after"], 1 - r["accuracy_before"]) and r["gain"].estimate < 0
    assert not verdict(swapped)
    # two pairs flipped: within the noise of 110 pairs
    two = before.clone()
    two[1, 61:63] = two[0, 61:63] - 1.0
    assert not verdict(two)
    # fifteen wrong pairs ranked right: beyond it
    fifteen = before.clone()
    fifteen[1, 61:76] = fifteen[0, 61:76] - 1.0
    r = preference_gain(fifteen, before)
    assert verdict(fifteen) and r["accuracy_before"] == 61 / 110 and r["accuracy_after"] == 76 / 110
    assert r["right_after"].sum() == 76 and r["right_before"].sum() == 61
    with pytest.raises(CourseError, match=r"\(2, pairs\)"):
        preference_gain(before[:, :50], before)
    with pytest.raises(CourseError, match=r"\(2, pairs\)"):
        preference_gain(before.T, before.T)


# ------------------------------------------------------------------------------ against TRL
def _quiet():
    import logging
    logging.getLogger("trl").setLevel(logging.ERROR)
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("ignore")
    return w


def test_sft_batch_and_loss_equal_trl_sfttrainer(tok):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    model = tiny(tok)
    rows = Dataset.from_list([{"prompt": record_messages(r), "completion": [{"role": "assistant", "content": r["output"]}]}
                              for r in RECORDS])
    w = _quiet()
    try:
        trainer = SFTTrainer(model=model, train_dataset=rows, processing_class=tok,
                             args=SFTConfig(output_dir=tempfile.mkdtemp(), report_to="none", use_cpu=True,
                                            per_device_train_batch_size=4, bf16=False))
    finally:
        w.__exit__(None, None, None)
    trl_batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    ours = pad_examples(examples(tok), tok.pad_token_id)
    assert torch.equal(trl_batch["input_ids"], ours["input_ids"])
    assert torch.equal(trl_batch["labels"], ours["labels"])
    model.eval()
    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(model, dict(trl_batch)))
        our_loss = float(response_loss(model, ours)[0])
        everything = float(lm_loss(model, {**ours, "labels": torch.where(ours["attention_mask"] == 1,
                                                                           ours["input_ids"], -100)})[0])
    assert abs(trl_loss - our_loss) < 1e-5
    assert abs(trl_loss - everything) > 1e-3          # a loss on the prompt too would fail the 1e-5 check


def test_dpo_loss_equals_trl_dpotrainer(tok):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer
    policy, reference = tiny(tok, seed=0), tiny(tok, seed=1)
    rows = Dataset.from_list([{"prompt": record_messages(r), "chosen": [{"role": "assistant", "content": r["chosen"]}],
                               "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in RECORDS])
    w = _quiet()
    try:
        trainer = DPOTrainer(model=policy, ref_model=reference, train_dataset=rows, processing_class=tok,
                             args=DPOConfig(output_dir=tempfile.mkdtemp(), report_to="none", use_cpu=True, beta=0.1,
                                            per_device_train_batch_size=4, bf16=False))
    finally:
        w.__exit__(None, None, None)
    trl_batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    policy.eval()
    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(policy, dict(trl_batch)))
        batch = pair_batches(examples(tok, "chosen"), examples(tok, "rejected"), tok.pad_token_id, 4)[0]
        pol, ref = sequence_logprobs(policy, batch), sequence_logprobs(reference, batch)
        ours = float(dpo_loss(*pol.chunk(2), *ref.chunk(2), 0.1)[0])
        shared = pair_batches(examples(tok, "chosen"), examples(tok, "rejected"), tok.pad_token_id, 4,
                              share_prompt=True)[0]
        ours_shared = float(dpo_loss(*sequence_logprobs(policy, shared).chunk(2),
                                     *sequence_logprobs(reference, shared).chunk(2), 0.1)[0])
        no_ref = float(dpo_loss(*pol.chunk(2), torch.zeros(4), torch.zeros(4), 0.1)[0])
        per_token = float(dpo_loss(*(pol / 10).chunk(2), *(ref / 10).chunk(2), 0.1)[0])
    assert abs(trl_loss - ours) < 1e-5 and abs(trl_loss - ours_shared) < 1e-5
    assert abs(ours - math.log(2)) > 1e-4             # two different models: not the trivial start value
    assert abs(trl_loss - no_ref) > 1e-4 and abs(trl_loss - per_token) > 1e-5
