"""ftlib.bert and ftlib.gpt against transformers, on the real course-bert / course-gpt weights."""
import pytest
import torch
import transformers

import ftlib
from ftlib.bert import Bert, BertConfig, hf_key_map
from ftlib.gpt import GPT, GPTConfig, apply_rope, generate, rope_cos_sin, sample_next

SENTENCES = ["The movie was surprisingly good.",
             "I hated every minute of this unbelievably long, boring film!",
             "Fine."]


@pytest.fixture(scope="module")
def bert_pair():
    hf = ftlib.load_model("course-bert", task="base").eval()
    return hf, Bert.from_hf(hf), ftlib.load_tokenizer("course-bert")


@pytest.fixture(scope="module")
def gpt_pair():
    hf = ftlib.load_model("course-gpt", task="causal-lm").eval()
    return hf, GPT.from_hf(hf), ftlib.load_tokenizer("course-gpt")


@pytest.fixture(scope="module")
def chat_ids(gpt_pair):
    tok = gpt_pair[2]
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    return tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                   return_dict=True)["input_ids"]


# ------------------------------------------------------------------ BERT
def test_bert_matches_transformers_on_padded_batch(bert_pair):
    hf, ours, tok = bert_pair
    enc = tok(SENTENCES, ["A second segment.", "Another one here.", "x"], padding=True, return_tensors="pt")
    assert (enc["attention_mask"] == 0).any() and (enc["token_type_ids"] == 1).any()
    with torch.no_grad():
        ref = hf(**enc)
        hidden = ours(**enc)
    assert hidden.shape == ref.last_hidden_state.shape
    assert (hidden - ref.last_hidden_state).abs().max().item() < 1e-4
    assert (ours.pool(hidden) - ref.pooler_output).abs().max().item() < 1e-4


def test_bert_key_map_uses_every_tensor_and_counts_match(bert_pair):
    hf, ours, _ = bert_pair
    key_map = hf_key_map(ours.cfg.num_layers)
    assert set(key_map) == set(ours.state_dict())
    assert set(key_map.values()) == set(hf.state_dict())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_bert_dropout_only_in_train_mode(bert_pair):
    _, ours, tok = bert_pair
    enc = tok(SENTENCES[:1], return_tensors="pt")
    with torch.no_grad():
        a, b = ours(**enc), ours(**enc)
        ours.train()
        try:
            c = ours(**enc)
        finally:
            ours.eval()
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_bert_errors():
    with pytest.raises(ftlib.CourseError, match="BERT config"):
        BertConfig.from_hf(transformers.LlamaConfig())
    tiny = Bert(BertConfig(vocab_size=50, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16,
                           max_position_embeddings=4))
    with pytest.raises(ftlib.CourseError, match="truncate"):
        tiny(torch.zeros(1, 5, dtype=torch.long))


def test_bert_from_state_dict_of_classification_model(bert_pair):
    hf, ours, tok = bert_pair
    cls = transformers.BertForSequenceClassification(hf.config)
    cls.bert.load_state_dict(hf.state_dict())
    copy = Bert.from_hf(cls)                       # "bert." prefix is removed
    enc = tok(SENTENCES[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(copy(**enc), ours(**enc))


# ------------------------------------------------------------------ GPT
def test_gpt_logits_match_transformers(gpt_pair):
    hf, ours, tok = gpt_pair
    with torch.no_grad():
        for text in SENTENCES:
            ids = tok(text, return_tensors="pt")["input_ids"]
            assert (ours(ids) - hf(ids).logits).abs().max().item() < 1e-4


def test_gpt_structure(gpt_pair):
    hf, ours, _ = gpt_pair
    cfg = ours.cfg
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.rope_theta) == (9, 3, 64, 100000.0)
    assert ours.lm_head.weight is ours.embed_tokens.weight
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_gpt_is_causal(gpt_pair):
    _, ours, tok = gpt_pair
    ids = tok("The film was wonderful", return_tensors="pt")["input_ids"]
    changed = ids.clone()
    changed[0, -1] = tok("dreadful", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        a, b = ours(ids), ours(changed)
    assert torch.equal(a[:, :-1], b[:, :-1]) and not torch.allclose(a[:, -1], b[:, -1])


def test_kv_cache_chunks_equal_one_pass(gpt_pair, chat_ids):
    _, ours, _ = gpt_pair
    with torch.no_grad():
        full = ours(chat_ids)
        cache = ours.new_cache()
        parts = [ours(chat_ids[:, :10], cache=cache), ours(chat_ids[:, 10:11], cache=cache),
                 ours(chat_ids[:, 11:], cache=cache)]
    assert cache[0]["k"].shape == (1, 3, chat_ids.shape[1], 64)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-4, rtol=1e-4)


def test_greedy_generation_cache_and_transformers_agree(gpt_pair, chat_ids):
    hf, ours, tok = gpt_pair
    n = 12
    eos = tok.eos_token_id
    with_cache = generate(ours, chat_ids, n, temperature=0, use_cache=True, eos_token_id=eos)
    without = generate(ours, chat_ids, n, temperature=0, use_cache=False, eos_token_id=eos)
    with torch.no_grad():
        ref = hf.generate(chat_ids, attention_mask=torch.ones_like(chat_ids), max_new_tokens=n,
                          do_sample=False)
    assert with_cache.shape[1] > chat_ids.shape[1]
    assert with_cache.tolist() == without.tolist()
    assert with_cache.tolist() == ref.tolist()          # transformers stops at eos: so do we here
    assert "Paris" in tok.decode(with_cache[0, chat_ids.shape[1]:])


def test_generation_stops_at_eos(gpt_pair, chat_ids):
    _, ours, tok = gpt_pair
    out = generate(ours, chat_ids, 40, temperature=0, eos_token_id=tok.eos_token_id)
    assert out[0, -1].item() == tok.eos_token_id and out.shape[1] < chat_ids.shape[1] + 40


def test_sampled_generation_is_seeded(gpt_pair, chat_ids):
    _, ours, _ = gpt_pair
    a = generate(ours, chat_ids, 5, top_p=0.9, generator=torch.Generator().manual_seed(1))
    b = generate(ours, chat_ids, 5, top_p=0.9, generator=torch.Generator().manual_seed(1))
    assert a.tolist() == b.tolist() and a.shape == (1, chat_ids.shape[1] + 5)


def test_rope_matches_transformers_and_is_relative():
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    cfg = transformers.LlamaConfig(hidden_size=64, num_attention_heads=4, rope_theta=100000.0)
    pos = torch.arange(7)
    cos, sin = rope_cos_sin(pos, 16, 100000.0)
    hf_cos, hf_sin = LlamaRotaryEmbedding(cfg)(torch.zeros(1), pos[None])
    torch.testing.assert_close(cos, hf_cos[0])
    torch.testing.assert_close(sin, hf_sin[0])
    q, k = torch.randn(1, 4, 7, 16), torch.randn(1, 4, 7, 16)
    torch.testing.assert_close(apply_rope(q, cos, sin), apply_rotary_pos_emb(q, k, cos[None], sin[None])[0])
    # the score of q at m and k at n depends on m - n only
    qv, kv = torch.randn(16), torch.randn(16)
    c, s = rope_cos_sin(torch.tensor([2, 5, 102, 105]), 16, 100000.0)
    near = apply_rope(qv, c[1], s[1]) @ apply_rope(kv, c[0], s[0])
    far = apply_rope(qv, c[3], s[3]) @ apply_rope(kv, c[2], s[2])
    torch.testing.assert_close(near, far, atol=1e-4, rtol=1e-4)


def test_sample_next_rules():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 3.0, 2.9, -1.0, 1.0]])
    assert sample_next(logits, temperature=0).item() == 1
    assert all(sample_next(logits, top_k=1, generator=g).item() == 1 for _ in range(20))
    assert all(sample_next(logits, top_p=1e-6, generator=g).item() == 1 for _ in range(20))
    seen = {sample_next(logits, temperature=5.0, top_k=2, generator=g).item() for _ in range(200)}
    assert seen == {1, 2}
    # top_p=0.6: token 1 has 0.47 of the mass (< 0.6), tokens 1 and 2 together 0.90 -> exactly {1, 2}
    seen = {sample_next(logits, top_p=0.6, generator=g).item() for _ in range(300)}
    assert seen == {1, 2}
    for bad in [dict(temperature=-1.0), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)]:
        with pytest.raises(ftlib.CourseError):
            sample_next(logits, **bad)


def test_gpt_errors(gpt_pair):
    _, ours, _ = gpt_pair
    with pytest.raises(ftlib.CourseError, match="Llama config"):
        GPTConfig.from_hf(transformers.BertConfig())
    with pytest.raises(ftlib.CourseError, match="idx must be"):
        generate(ours, torch.tensor([1, 2, 3]), 2)
    tiny = GPT(GPTConfig(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                         intermediate_size=32, max_position_embeddings=4))
    with pytest.raises(ftlib.CourseError, match="exceed"):
        tiny(torch.zeros(1, 5, dtype=torch.long))


def test_untied_tiny_llama_loads_and_matches():
    """A random tiny Llama from transformers loads into GPT and gives the same logits."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                                   rope_theta=500.0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    ours = GPT.from_hf(hf)
    assert ours.lm_head.weight is not ours.embed_tokens.weight
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-5, rtol=1e-5)


def test_left_padded_batch_generation_on_course_gpt(gpt_pair):
    """Lesson 04's batched generation on the real weights: a left-padded batch with its attention_mask
    continues every prompt exactly as the prompt alone does, and as transformers' generate does."""
    hf, ours, tok = gpt_pair
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        enc = tok(SENTENCES, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = side
    assert (enc["attention_mask"][:, 0] == 0).any()
    n = 6
    batch = generate(ours, enc["input_ids"], n, temperature=0, attention_mask=enc["attention_mask"])
    for i, text in enumerate(SENTENCES):
        one = generate(ours, tok(text, return_tensors="pt")["input_ids"], n, temperature=0)
        assert batch[i, -n:].tolist() == one[0, -n:].tolist()
    with torch.no_grad():
        ref = hf.generate(**enc, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id,
                          eos_token_id=None)
    assert batch.tolist() == ref.tolist()
    # without the mask the padded rows attend to the pads and continue differently (wrongly)
    assert generate(ours, enc["input_ids"], n, temperature=0).tolist() != batch.tolist()
