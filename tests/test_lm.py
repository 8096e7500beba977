"""Tests for ftlib.lm: packing, the shifted loss, perplexity, prompts, MFU arithmetic."""
import math

import pytest
import torch
import torch.nn.functional as F

from ftlib import CourseError
from ftlib import lm


def tiny_llama(vocab=50, seed=0):
    from conftest import make_tiny_llama
    return make_tiny_llama(vocab=vocab, seed=seed).eval()


def test_pack_blocks_loses_no_token_and_marks_padding():
    docs = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    out = lm.pack_blocks(docs, 4, eos_id=1, pad_id=0, keep_remainder=True)
    stream = [5, 6, 7, 1, 8, 9, 1, 10, 11, 12, 13, 1]           # 12 tokens: 3 full blocks
    assert out["input_ids"].shape == (3, 4)
    assert out["input_ids"].flatten().tolist() == stream
    assert torch.equal(out["labels"], out["input_ids"])
    assert bool(out["attention_mask"].all())
    out = lm.pack_blocks(docs, 5, eos_id=1, pad_id=0, keep_remainder=True)  # 12 = 5 + 5 + 2
    real = out["input_ids"][out["attention_mask"].bool()].tolist()
    assert real == stream                                       # every token, in order
    assert out["input_ids"][2].tolist() == [13, 1, 0, 0, 0]
    assert out["labels"][2].tolist() == [13, 1, -100, -100, -100]
    dropped = lm.pack_blocks(docs, 5, eos_id=1)
    assert dropped["input_ids"].flatten().tolist() == stream[:10]


def test_pack_blocks_rejects_too_little_text():
    with pytest.raises(CourseError):
        lm.pack_blocks([1, 2, 3], 8)
    with pytest.raises(CourseError):
        lm.pack_blocks([1, 2, 3], 1)


def test_causal_lm_loss_is_shifted_and_matches_transformers():
    model = tiny_llama()
    ids = torch.randint(1, 50, (3, 9))
    labels = ids.clone()
    labels[1, 6:] = -100
    out = model(input_ids=ids, labels=labels)
    torch.testing.assert_close(lm.causal_lm_loss(out.logits, labels), out.loss)
    # by hand: position t predicts token t + 1
    logits = out.logits
    terms = [F.cross_entropy(logits[b, t][None], ids[b, t + 1][None])
             for b in range(3) for t in range(8) if labels[b, t + 1] != -100]
    torch.testing.assert_close(lm.causal_lm_loss(logits, labels), torch.stack(terms).mean())
    # an unshifted loss is a different number
    unshifted = F.cross_entropy(logits.reshape(-1, 50), labels.reshape(-1), ignore_index=-100)
    assert not torch.allclose(unshifted, out.loss)


def test_perplexity_is_exp_of_the_mean_training_loss_over_every_predicted_token():
    from ftlib.batches import DeviceBatches
    from ftlib.train import evaluate

    model = tiny_llama()
    data = lm.pack_blocks(list(range(1, 45)), 6, keep_remainder=True)   # 44 tokens -> 7 full blocks + 2
    got = evaluate(model, DeviceBatches(data, 3, mask="2d"), "cpu", task="causal_lm")
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits
    mean_ce = lm.causal_lm_loss(logits, data["labels"]).item()
    assert got["n"] == 7 * 5 + 1
    assert got["perplexity"] == pytest.approx(math.exp(mean_ce), rel=1e-5)
    # the usual mistake -- averaging per block, so the 2-token block weighs as much as a full one
    per_block = torch.stack([lm.causal_lm_loss(logits[i:i + 1], data["labels"][i:i + 1]) for i in range(8)])
    assert abs(math.exp(per_block.mean().item()) - got["perplexity"]) > 1e-3


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    from ftlib.train import evaluate

    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, input_ids, attention_mask=None):
            from types import SimpleNamespace
            return SimpleNamespace(logits=torch.zeros(*input_ids.shape, 37) * self.w)

    data = lm.pack_blocks(list(range(30)), 5)
    assert evaluate(Uniform(), [data], "cpu", task="causal_lm")["perplexity"] == pytest.approx(37, rel=1e-6)


class FakeTokenizer:
    """Whitespace tokenizer: one id per distinct word (" word" and "word" differ)."""
    pad_token_id, eos_token_id = 0, 0

    def __init__(self):
        self.vocab = {}

    def __call__(self, text, add_special_tokens=False):
        import re
        pieces = re.findall(r"\s?\S+|\n", text)
        return {"input_ids": [self.vocab.setdefault(p, len(self.vocab) + 1) for p in pieces]}


def test_prompt_examples_train_only_the_answer_and_scores_label_words():
    tok = FakeTokenizer()
    data = lm.prompt_examples(["a fine film", "bad"], [1, 0], tok, max_length=16)
    neg, pos = lm.label_word_ids(tok)
    for row in range(2):
        targets = (data["labels"][row] != -100).nonzero().flatten().tolist()
        assert len(targets) == 1                                   # one target: the answer
        t = targets[0]
        assert data["labels"][row, t] == data["input_ids"][row, t] == (pos if row == 0 else neg)
        assert data["attention_mask"][row].sum() == t + 1          # the answer is the last real token
    model = tiny_llama(vocab=64)
    scores = lm.label_word_logprobs(model, data, [neg, pos], dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"][:1, :5]).logits   # row 0: 'Review: a fine film\nSentiment:'
    want = logits[0, -1].log_softmax(-1)[[neg, pos]]
    torch.testing.assert_close(scores[0], want, rtol=1e-5, atol=1e-5)


def test_label_words_must_be_single_tokens():
    class Two(FakeTokenizer):
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [1, 2]}
    with pytest.raises(CourseError):
        lm.label_word_ids(Two())


def test_the_engine_learns_a_pattern_as_a_causal_lm():
    from ftlib.batches import DeviceBatches
    from ftlib.train import evaluate, fit

    model = tiny_llama()
    data = lm.pack_blocks(list(range(1, 33)) * 2, 16)       # 4 blocks, a pattern to memorise
    batches = DeviceBatches(data, 4, shuffle=True, mask="none")
    before = evaluate(model, batches, "cpu", task="causal_lm")["loss"]
    h = fit(model, batches, task="causal_lm", max_steps=30, lr=1e-2, device="cpu", progress=False, verbose=False)
    after = evaluate(model, batches, "cpu", task="causal_lm")["loss"]
    assert len(h.step_loss) == 30 and h.tokens == 30 * 4 * 16
    assert after < 0.5 * before
