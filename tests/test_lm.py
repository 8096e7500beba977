"""Tests for ftlib.lm: packing, the shifted loss, perplexity, prompts, MFU arithmetic."""
import math

import pytest
import torch
import torch.nn.functional as F

from ftlib import CourseError
from ftlib import lm


def tiny_llama(vocab=50, seed=0):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   pad_token_id=0, tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(cfg).eval()


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


def test_perplexity_is_exp_of_mean_cross_entropy():
    model = tiny_llama()
    data = lm.pack_blocks(list(range(1, 45)), 6, keep_remainder=True)   # 44 tokens -> 7 full blocks + 2
    got = lm.perplexity(model, data, batch_size=3, dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits
    mean_ce = lm.causal_lm_loss(logits, data["labels"]).item()
    assert got["tokens"] == 7 * 5 + 1
    assert got["perplexity"] == pytest.approx(math.exp(mean_ce), rel=1e-5)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, input_ids, attention_mask=None):
            from types import SimpleNamespace
            return SimpleNamespace(logits=torch.zeros(*input_ids.shape, 37) * self.w)

    data = lm.pack_blocks(list(range(30)), 5)
    assert lm.perplexity(Uniform(), data, dtype=torch.float32)["perplexity"] == pytest.approx(37, rel=1e-6)


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


def test_flops_and_mfu_arithmetic():
    # 6 N + 12 L d T
    assert lm.flops_per_token(100, 2, 8, 16) == 6 * 100 + 12 * 2 * 8 * 16
    fpt = lm.flops_per_token(135_000_000, 30, 576, 1024)
    assert fpt == pytest.approx(6 * 135e6 + 12 * 30 * 576 * 1024)
    # 1e5 tokens/s x fpt FLOPs/token against a 989 TFLOP/s peak
    assert lm.mfu(1e5, fpt, 989e12) == pytest.approx(1e5 * fpt / 989e12)
    assert lm.mfu(1e5, fpt, None) is None
    assert lm.peak_flops("cpu") is None
    with pytest.raises(CourseError):
        lm.flops_per_token(0, 1, 1, 1)


def test_lm_train_reduces_loss_on_one_repeated_batch():
    model = tiny_llama()
    data = lm.pack_blocks(list(range(1, 33)) * 2, 16)       # 4 blocks, a pattern to memorise
    before = lm.perplexity(model, data, dtype=torch.float32)["loss"]
    r = lm.lm_train(model, data, steps=30, batch_size=4, lr=1e-2, dtype=torch.float32, progress=False)
    after = lm.perplexity(model, data, dtype=torch.float32)["loss"]
    assert len(r["losses"]) == 30 and r["tokens"] == 30 * 4 * 16
    assert after < 0.5 * before
