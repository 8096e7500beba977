"""ftlib.frozen: the frozen bottom computed once, the top trained -- exact, and refused when misused."""
import pytest
import torch

import ftlib
from ftlib.bert import Bert
from ftlib.errors import CourseError
from ftlib.frozen import TopBlocks, bottom_hidden, pad_hidden


@pytest.fixture(scope="module")
def bert():
    return Bert.from_pretrained("course-bert")


@pytest.fixture(scope="module")
def rows():
    tok = ftlib.load_tokenizer("course-bert")
    sentences = ["a short one", "a somewhat longer sentence about Toronto and Apple", "mid length text here"]
    return [{"input_ids": tok(s)["input_ids"], "labels": [0] * len(tok(s)["input_ids"])} for s in sentences]


@pytest.mark.parametrize("k", [0, 3, 6])
def test_cached_bottom_plus_top_equals_the_whole_model(bert, rows, k):
    torch.manual_seed(0)
    top = TopBlocks(bert, k, 5, kind="token").eval()
    for r, h in zip(rows, bottom_hidden(bert, rows, k, batch_size=2)):
        r["hidden"] = h
    batch = pad_hidden(rows)
    ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(r["input_ids"]) for r in rows], batch_first=True)
    with torch.no_grad():
        full = top.classifier(bert(ids, batch["attention_mask"]))
        cached = top(batch["hidden"], batch["attention_mask"]).logits
    real = batch["attention_mask"].bool()
    assert torch.allclose(full[real], cached[real], atol=1e-5)
    # each cached row equals the sentence run alone (padding in its batch changed nothing)
    for r in rows:
        alone = bottom_hidden(bert, [r], k)[0]
        assert torch.allclose(alone, r["hidden"], atol=1e-5)


def test_caching_without_the_mask_would_be_wrong(bert, rows):
    """The wrong answer the test above rejects: a padded batch run with every position attended."""
    ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(r["input_ids"]) for r in rows], batch_first=True)
    with torch.no_grad():
        unmasked = bert(ids)                     # attends to the padding of the short rows
    short = len(rows[0]["input_ids"])
    right = bottom_hidden(bert, rows, 6)[0]
    assert not torch.allclose(unmasked[0, :short], right, atol=1e-3)


def test_sequence_head_is_bert_for_sequence_classification_on_top(bert, rows):
    top = TopBlocks(bert, 4, 2, kind="sequence").eval()
    hidden = bottom_hidden(bert, rows[:1], 4)
    batch = pad_hidden([{"hidden": hidden[0], "labels": 1}])
    ids = torch.tensor([rows[0]["input_ids"]])
    with torch.no_grad():
        want = top.classifier(bert.pool(bert(ids)))
        out = top(**batch)
    assert torch.allclose(out.logits, want, atol=1e-5)
    assert out.loss.item() == pytest.approx(torch.nn.functional.cross_entropy(want, torch.tensor([1])).item(), abs=1e-5)


def test_shape_embedding_starts_at_zero_and_then_changes_the_output(bert, rows):
    torch.manual_seed(0)
    plain = TopBlocks(bert, 5, 3).eval()
    torch.manual_seed(0)
    shaped = TopBlocks(bert, 5, 3, n_shapes=5).eval()
    h = bottom_hidden(bert, rows[:1], 5)[0]
    batch = pad_hidden([{"hidden": h, "labels": [0] * len(h), "shape_ids": [2] * len(h)}])
    with torch.no_grad():
        assert torch.equal(plain(batch["hidden"], batch["attention_mask"]).logits, shaped(**batch).logits)
        shaped.shape_emb.weight[2] += 1.0
        assert not torch.allclose(plain(batch["hidden"], batch["attention_mask"]).logits, shaped(**batch).logits)
    with pytest.raises(CourseError, match="shape_ids"):
        shaped(batch["hidden"], batch["attention_mask"])


def test_top_blocks_train_through_fit_and_leave_the_source_model_alone(bert, rows):
    from ftlib.train import fit
    before = {n: p.clone() for n, p in bert.named_parameters()}
    for r, h in zip(rows, bottom_hidden(bert, rows, 5)):
        r["hidden"] = h
        r["labels"] = [i % 3 for i in r["input_ids"]]         # depends on the token: a bias alone cannot fit it
    model = TopBlocks(bert, 5, 3)
    block_before = {n: p.clone() for n, p in model.layers.named_parameters()}
    history = fit(model, [pad_hidden(rows)], task="model", max_steps=30, lr=1e-3, warmup_ratio=0.0,
                  verbose=False, progress=False)
    assert history.step_loss[-1] < 0.5 * history.step_loss[0]
    assert any(not torch.equal(p, block_before[n]) for n, p in model.layers.named_parameters())   # the block trained
    assert all(torch.equal(p, before[n]) for n, p in bert.named_parameters())


def test_bad_input_gets_one_clear_error(bert, rows):
    with pytest.raises(CourseError, match="from 0 to 6"):
        bottom_hidden(bert, rows, 7)
    with pytest.raises(CourseError, match="empty"):
        bottom_hidden(bert, [], 2)
    with pytest.raises(CourseError, match="'sequence'"):
        TopBlocks(bert, 2, 3, kind="spans")
    with pytest.raises(CourseError, match="num_labels"):
        TopBlocks(bert, 2, 1)
    h = torch.zeros(3, 384)
    with pytest.raises(CourseError, match="align the labels"):
        pad_hidden([{"hidden": h, "labels": [0, 0]}])
    with pytest.raises(CourseError, match="shape ids"):
        pad_hidden([{"hidden": h, "labels": [0, 0, 0], "shape_ids": [1]}])
    with pytest.raises(CourseError, match="pad_hidden"):
        TopBlocks(bert, 5, 3)(h, torch.ones(3, dtype=torch.long))


def test_mean_pooling_cross_encoder_equals_mean_of_the_whole_model(bert, rows):
    top = TopBlocks(bert, 5, 2, kind="sequence", pooling="mean").eval()
    hidden = bottom_hidden(bert, rows, 5)
    batch = pad_hidden([{"hidden": h, "labels": 0} for h in hidden])
    with torch.no_grad():
        got = top(**batch).logits
        want = torch.stack([top.classifier(bert(torch.tensor([r["input_ids"]]))[0].mean(0)) for r in rows])
        # the wrong answer: a mean over the padded positions too
        padded = top.classifier(top.layers[0](batch["hidden"], batch["attention_mask"].bool()[:, None, None, :]).mean(1))
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(padded, want, atol=1e-3)
    with pytest.raises(CourseError, match="pooling"):
        TopBlocks(bert, 5, 2, kind="sequence", pooling="max")


def test_per_batch_bottom_equals_the_cache_and_trains_through_fit(bert, rows):
    """bottom='per_batch' (the frozen part inside the model, for data too big to cache) gives the cached
    model's logits, stays frozen and in eval mode under model.train(), and trains through fit."""
    from ftlib.train import fit
    k = 4
    rows = [dict({key: v for key, v in r.items() if key != "hidden"}, token_type_ids=[0] * 2 + [1] * (len(r["input_ids"]) - 2),
                 start_positions=1, end_positions=len(r["input_ids"]) - 2) for r in rows]
    cached_rows = [dict(r, hidden=h) for r, h in
                   zip(rows, bottom_hidden(bert, [{"input_ids": r["input_ids"], "token_type_ids": r["token_type_ids"]}
                                                  for r in rows], k))]
    token_rows = [{key: v for key, v in r.items() if key not in ("labels", "hidden")} for r in rows]
    torch.manual_seed(0)
    cached = TopBlocks(bert, k, 2, kind="span", question_aware=True).eval()
    torch.manual_seed(0)
    per_batch = TopBlocks(bert, k, 2, kind="span", question_aware=True, bottom="per_batch").eval()
    a = cached(**{key: v for key, v in pad_hidden(cached_rows).items() if key != "labels"})
    b = per_batch(**pad_hidden(token_rows))
    real = pad_hidden(token_rows)["attention_mask"].bool()
    assert torch.allclose(a.start_logits[real], b.start_logits[real], atol=1e-5)
    assert torch.allclose(a.loss, b.loss, atol=1e-5)
    # trainable: the top and the head only; model.train() leaves the frozen bottom in eval mode
    frozen = {n: p.clone() for n, p in per_batch.bottom.named_parameters()}
    assert not any(p.requires_grad for p in per_batch.bottom.parameters())
    per_batch.train()
    assert not per_batch.bottom.training and per_batch.layers.training
    history = fit(per_batch, [pad_hidden(token_rows)] * 2, task="model", max_steps=20, lr=1e-3, warmup_ratio=0.0,
                  verbose=False, progress=False)
    assert history.step_loss[-1] < 0.5 * history.step_loss[0]
    assert all(torch.equal(p, frozen[n]) for n, p in per_batch.bottom.named_parameters())
    # each kind of model refuses the other kind of batch, with the way out in the message
    with pytest.raises(CourseError, match="bottom='per_batch'"):
        cached(**pad_hidden(token_rows))
    with pytest.raises(CourseError, match="give it input_ids"):
        per_batch(pad_hidden(cached_rows)["hidden"], real.long())
    with pytest.raises(CourseError, match="'cached'"):
        TopBlocks(bert, k, 2, bottom="stream")
    with pytest.raises(CourseError, match="the same in every row"):
        pad_hidden([cached_rows[0], token_rows[1]])


def _pair_rows(bert, k):
    tok = ftlib.load_tokenizer("course-bert")
    pairs = [("a cat sat on the mat", "the cat was sitting on a mat"), ("stocks fell sharply today", "it rained in Paris"),
             ("he said so", "that is what he said, more or less, in the end")]
    ids_a = [tok(a)["input_ids"] for a, _ in pairs]
    ids_b = [tok(b)["input_ids"] for _, b in pairs]
    ha = bottom_hidden(bert, [{"input_ids": i} for i in ids_a], k)
    hb = bottom_hidden(bert, [{"input_ids": i} for i in ids_b], k)
    bi = [{"hidden_a": a, "hidden_b": b, "labels": l} for a, b, l in zip(ha, hb, (1, 0, 1))]
    enc = tok([a for a, _ in pairs], [b for _, b in pairs])
    cross = [{"input_ids": i, "token_type_ids": t, "labels": l}
             for i, t, l in zip(enc["input_ids"], enc["token_type_ids"], (1, 0, 1))]
    for r, h in zip(cross, bottom_hidden(bert, cross, k)):
        r["hidden"] = h
    return ids_a, ids_b, bi, cross


def test_pair_top_bi_encoder_starts_as_course_bert_sentence_embeddings(bert):
    from ftlib.frozen import PairTop
    ids_a, ids_b, bi, _ = _pair_rows(bert, 5)
    model = PairTop(bert, 5, encoder="bi")
    emb = lambda ids: torch.nn.functional.normalize(bert(torch.tensor([ids]))[0].mean(0), dim=-1)
    with torch.no_grad():
        want = torch.stack([emb(a) @ emb(b) for a, b in zip(ids_a, ids_b)])
    out = model.score(bi)
    torch.testing.assert_close(out.cosine, want, atol=1e-5, rtol=0)
    # started at a threshold, the untrained model is the rule cosine > t; with a random head it is not
    t = float(want.sort().values[1:].mean())           # between the two highest cosines, on no one of them
    torch.manual_seed(3)
    random_head = PairTop(bert, 5, encoder="bi")        # a head from random weights is not the cosine rule
    assert not torch.allclose(random_head.score(bi).logits[:, 1] - random_head.score(bi).logits[:, 0],
                              20.0 * (want - t), atol=1e-2)
    model.head.start_at_threshold(t)
    assert torch.equal(model.score(bi).logits.argmax(-1), (want > t).long())
    # each sentence alone: the other sentence's padding must not change a vector
    alone = model.score(bi[:1]).cosine
    torch.testing.assert_close(alone, out.cosine[:1], atol=1e-6, rtol=0)


def test_pair_top_cross_encoder_pools_each_segment_and_trains_through_fit(bert):
    from ftlib.frozen import PairTop
    from ftlib.heads import mean_pool
    from ftlib.train import fit
    _, _, _, cross = _pair_rows(bert, 5)
    model = PairTop(bert, 5, encoder="cross")
    r = cross[0]
    with torch.no_grad():
        x = bert(torch.tensor([r["input_ids"]]), token_type_ids=torch.tensor([r["token_type_ids"]]))[0]
        types = torch.tensor(r["token_type_ids"])
        u, v = (torch.nn.functional.normalize(x[types == s].mean(0), dim=-1) for s in (0, 1))
        whole = torch.nn.functional.normalize(x.mean(0), dim=-1)
    scored = model.score(cross)
    got = scored.cosine
    torch.testing.assert_close(got[0], u @ v, atol=1e-5, rtol=0)
    # u is segment 0 ([CLS] a [SEP]), v segment 1 (b [SEP]), in that order: the head reads [u, v, ...]
    torch.testing.assert_close(scored.u[0], u, atol=1e-5, rtol=0)
    torch.testing.assert_close(scored.v[0], v, atol=1e-5, rtol=0)
    assert abs(float(got[0]) - float(whole @ whole)) > 1e-3           # not the whole pair's mean with itself
    before = [p.detach().clone() for p in model.layers.parameters()]
    source = [p.detach().clone() for p in bert.parameters()]
    model.head.start_at_threshold(0.9)
    fit(model, [pad_hidden(cross)] * 3, task="model", max_steps=3, lr=1e-3, verbose=False, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.layers.parameters()))   # the blocks learn
    assert all(torch.equal(a, b) for a, b in zip(source, bert.parameters()))               # the source does not


def test_pair_top_refuses_the_wrong_batch(bert):
    from ftlib.frozen import PairTop, pad_pairs
    _, _, bi, cross = _pair_rows(bert, 5)
    with pytest.raises(CourseError, match="'bi'"):
        PairTop(bert, 5, encoder="siamese")
    with pytest.raises(CourseError, match="hidden_a"):
        PairTop(bert, 5, encoder="bi")(**pad_hidden(cross))
    with pytest.raises(CourseError, match="token_type_ids"):
        PairTop(bert, 5, encoder="cross")(**pad_hidden([{"hidden": r["hidden"]} for r in cross]))
    with pytest.raises(CourseError, match="hidden_b"):
        pad_pairs([{"hidden_a": bi[0]["hidden_a"]}])
    with pytest.raises(CourseError, match="k"):
        PairTop(bert, 7)


def test_pair_top_bi_encoder_trains_both_sentences_through_fit_and_score_restores_the_mode(bert):
    from ftlib.frozen import PairTop, pad_pairs
    from ftlib.train import fit
    _, _, bi, _ = _pair_rows(bert, 5)
    model = PairTop(bert, 5, encoder="bi")
    model.head.start_at_threshold(0.5)
    batch = pad_pairs(bi)
    # both sentences reach the loss: changing the second sentence's states changes it
    other = dict(batch, hidden_b=batch["hidden_b"] + 0.5)
    with torch.no_grad():
        assert abs(float(model(**other).loss) - float(model(**batch).loss)) > 1e-4
    before = [p.detach().clone() for p in model.layers.parameters()]
    fit(model, [pad_pairs(bi)] * 3, task="model", max_steps=3, lr=1e-3, verbose=False, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.layers.parameters()))
    model.train()
    model.score(bi)
    assert model.training                               # score() runs in eval mode and puts the mode back
    model.eval()
    model.score(bi)
    assert not model.training


def test_pair_top_refuses_rows_without_both_segments_and_empty_or_half_labelled_batches(bert):
    from ftlib.frozen import PairTop, pad_pairs
    _, _, bi, cross = _pair_rows(bert, 5)
    one_segment = [dict(r, token_type_ids=[0] * len(r["token_type_ids"])) for r in cross]
    with pytest.raises(CourseError, match="both segments"):
        PairTop(bert, 5, encoder="cross").score(one_segment)
    with pytest.raises(CourseError, match="empty"):
        PairTop(bert, 5, encoder="bi").score([])
    with pytest.raises(CourseError, match="label every row"):
        pad_pairs([bi[0], {k: v for k, v in bi[1].items() if k != "labels"}])
