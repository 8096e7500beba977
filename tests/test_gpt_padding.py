"""ftlib.gpt on padded batches: attention_mask and position_ids, as lesson 04 teaches.

A tiny random Llama (transformers' own class, tests/conftest.py) and ftlib.gpt.GPT on the same weights.
Rows of different lengths are padded with id PAD; each padded row must give, at its real tokens, what the
same sequence gives alone.
"""
import pytest
import torch

import ftlib
from conftest import make_tiny_llama
from ftlib.gpt import GPT, generate

PAD = 3                # not 0: the tiny Llama has pad_token_id=0, whose embedding row is all zeros
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19]]


@pytest.fixture(scope="module")
def pair():
    hf = make_tiny_llama(vocab=64, layers=2, tied=False).eval()
    with torch.no_grad():       # at transformers' init (std 0.02) a tiny model only repeats its last token:
        for p in hf.parameters():                      # larger weights make the continuation use the context
            if p.dim() == 2:
                p.mul_(10)
    hf.generation_config.eos_token_id = None          # generate the full number of tokens, both models
    return hf, GPT.from_hf(hf)


def pad(prompts, side):
    """(ids, mask) of ``prompts`` padded with PAD on ``side``."""
    T = max(len(p) for p in prompts)
    rows = [[PAD] * (T - len(p)) + p if side == "left" else p + [PAD] * (T - len(p)) for p in prompts]
    masks = [[0] * (T - len(p)) + [1] * len(p) if side == "left" else [1] * len(p) + [0] * (T - len(p))
             for p in prompts]
    return torch.tensor(rows), torch.tensor(masks)


def real(logits_row, mask_row):
    return logits_row[mask_row.bool()]


@torch.no_grad()
def alone(model, prompt):
    return model(torch.tensor([prompt]))[0]


@torch.no_grad()
def test_left_padded_batch_equals_each_row_alone(pair):
    _, ours = pair
    ids, mask = pad(PROMPTS, "left")
    assert (mask == 0).any()
    out = ours(ids, attention_mask=mask)
    assert torch.isfinite(out).all()
    # a left pad has only pads in its past: rather than a softmax over nothing (NaN in older torch
    # versions), it sees itself only, so it gives the logits of a lone pad token -- junk, but finite
    # and the same whatever the rest of the batch or the KV-cache chunking
    lone_pad = alone(ours, [PAD])[0]
    for i, p in enumerate(PROMPTS):
        for j in range(ids.shape[1] - len(p)):
            torch.testing.assert_close(out[i, j], lone_pad, atol=1e-5, rtol=1e-5)
    for i, p in enumerate(PROMPTS):
        torch.testing.assert_close(real(out[i], mask[i]), alone(ours, p), atol=1e-5, rtol=1e-5)
    # the mask's default positions count real tokens only: the first real token is at position 0
    explicit = ours(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
    torch.testing.assert_close(explicit, out, atol=0, rtol=0)


@torch.no_grad()
def test_left_padding_without_the_mask_is_wrong(pair):
    """The wrong answer the test above rejects: without the mask the short rows attend to the pads."""
    _, ours = pair
    ids, mask = pad(PROMPTS, "left")
    unmasked = ours(ids)
    short = PROMPTS[1]
    err = (real(unmasked[1], mask[1]) - alone(ours, short)).abs().max().item()
    assert err > 1e-2, err
    # the full-length row has no padding: the same with or without the mask
    torch.testing.assert_close(unmasked[0], alone(ours, PROMPTS[0]), atol=1e-5, rtol=1e-5)
    # RoPE is relative (a score depends on m - n only), so with the mask the positions 0 .. T-1
    # (every real token shifted by its row's padding) agree up to rounding; a model with absolute
    # position embeddings (GPT-2) would not -- position_ids matter for it, and for matching transformers.
    shifted = ours(ids, attention_mask=mask, position_ids=torch.arange(ids.shape[1]))
    torch.testing.assert_close(real(shifted[1], mask[1]), alone(ours, short), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_right_padded_batch_equals_each_row_alone(pair):
    _, ours = pair
    ids, mask = pad(PROMPTS, "right")
    out = ours(ids, attention_mask=mask)
    assert torch.isfinite(out).all()
    for i, p in enumerate(PROMPTS):
        torch.testing.assert_close(real(out[i], mask[i]), alone(ours, p), atol=1e-5, rtol=1e-5)


def test_no_mask_and_all_ones_mask_give_the_old_outputs(pair):
    _, ours = pair
    ids = torch.tensor([PROMPTS[0], PROMPTS[0][::-1]])
    with torch.no_grad():
        plain = ours(ids)
        ones = ours(ids, attention_mask=torch.ones_like(ids))
        arange = ours(ids, position_ids=torch.arange(ids.shape[1]))
    torch.testing.assert_close(ones, plain, atol=1e-6, rtol=1e-6)
    assert torch.equal(arange, plain)


@torch.no_grad()
def test_masked_kv_cache_chunks_equal_one_pass(pair):
    _, ours = pair
    ids, mask = pad(PROMPTS, "left")
    full = ours(ids, attention_mask=mask)
    cache = ours.new_cache()
    parts = [ours(ids[:, :4], attention_mask=mask[:, :4], cache=cache),    # the mask covers cached + new
             ours(ids[:, 4:], attention_mask=mask, cache=cache)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)   # pads too: each sees itself


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_of_left_padded_batch_equals_each_prompt_alone(pair, use_cache):
    _, ours = pair
    n = 6
    ids, mask = pad(PROMPTS, "left")
    batch = generate(ours, ids, n, temperature=0, use_cache=use_cache, attention_mask=mask)
    assert batch.shape == (len(PROMPTS), ids.shape[1] + n)
    for i, p in enumerate(PROMPTS):
        one = generate(ours, torch.tensor([p]), n, temperature=0, use_cache=use_cache)
        assert batch[i, -n:].tolist() == one[0, -n:].tolist()
    # without the mask the short rows continue from the pads: a different (wrong) continuation
    unmasked = generate(ours, ids, n, temperature=0, use_cache=use_cache)
    assert unmasked[1:, -n:].tolist() != batch[1:, -n:].tolist()


@torch.no_grad()
def test_left_padded_batch_matches_transformers(pair):
    hf, ours = pair
    ids, mask = pad(PROMPTS, "left")
    positions = (mask.cumsum(-1) - 1).clamp(min=0)   # transformers' forward takes them as given
    ref = hf(ids, attention_mask=mask, position_ids=positions).logits
    out = ours(ids, attention_mask=mask)
    keep = mask.bool()
    torch.testing.assert_close(out[keep], ref[keep], atol=1e-5, rtol=1e-5)
    n = 6
    ref_gen = hf.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False, pad_token_id=PAD)
    for use_cache in (True, False):
        assert generate(ours, ids, n, temperature=0, use_cache=use_cache,
                        attention_mask=mask).tolist() == ref_gen.tolist()


def test_bad_masks_and_positions_raise(pair):
    _, ours = pair
    ids, mask = pad(PROMPTS, "left")
    with pytest.raises(ftlib.CourseError, match=r"attention_mask must have the shape of idx.shape, \(3, 7\)"):
        ours(ids, attention_mask=mask[:, 1:])
    with pytest.raises(ftlib.CourseError, match="attention_mask must have the shape"):
        generate(ours, ids, 2, attention_mask=mask[:2])
    with pytest.raises(ftlib.CourseError, match=r"only 0 \(padding\) and 1"):
        ours(ids, attention_mask=mask * 2)
    with pytest.raises(ftlib.CourseError, match=r"only 0 \(padding\) and 1"):
        generate(ours, ids, 2, attention_mask=mask.float() * 0.5)
    right_ids, right_mask = pad(PROMPTS, "right")
    with pytest.raises(ftlib.CourseError, match="LEFT padding"):
        generate(ours, right_ids, 2, attention_mask=right_mask)
    with pytest.raises(ftlib.CourseError, match="position_ids must be integers of shape"):
        ours(ids, position_ids=torch.arange(3))
    with pytest.raises(ftlib.CourseError, match="position_ids must lie in"):
        ours(ids, position_ids=torch.arange(ids.shape[1]) - 1)
    torch.testing.assert_close(ours(ids, attention_mask=mask.tolist()), ours(ids, attention_mask=mask))  # lists do
    with pytest.raises(ftlib.CourseError, match="cache by name"):
        ours(ids, ours.new_cache())
    cache = ours.new_cache()
    with torch.no_grad():
        ours(ids[:, :4], cache=cache)
    with pytest.raises(ftlib.CourseError, match=r"cached \+ new tokens"):
        ours(ids[:, 4:], attention_mask=mask[:, 4:], cache=cache)    # must cover the cached tokens too
