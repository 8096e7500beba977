"""ftlib.heads: mean pooling over real tokens, on a tiny random BERT (fast, no download)."""
import copy

import pytest
import torch

import ftlib
from conftest import make_tiny_bert
from ftlib.heads import MeanPoolClassifier, MeanPoolHead, mean_pool
from ftlib.lora import add_lora
from ftlib.strategies import count_parameters, freeze, layer_depth
from ftlib.train import fit


def tiny_encoder(seed=0):
    return make_tiny_bert(vocab=50, hidden=16, layers=2, seed=seed).bert      # a BertModel with a pooler


def test_mean_pool_leaves_padding_out():
    h = torch.arange(2 * 3 * 2, dtype=torch.float).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    torch.testing.assert_close(mean_pool(h, mask), torch.stack([h[0, :2].mean(0), h[1].mean(0)]))
    assert not torch.allclose(mean_pool(h, mask)[0], h[0].mean(0))     # a plain mean would include padding
    with pytest.raises(ftlib.CourseError, match="attention_mask"):
        mean_pool(h, mask[:, :2])


def test_classifier_reads_the_mean_not_the_pooler():
    enc = tiny_encoder()
    reference = copy.deepcopy(enc).eval()
    model = MeanPoolClassifier(enc, num_labels=2).eval()
    assert model.bert.pooler is None and not any("pooler" in n for n, _ in model.named_parameters())
    ids, mask = torch.randint(1, 50, (3, 5)), torch.tensor([[1] * 5, [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    with torch.no_grad():
        out = reference(input_ids=ids, attention_mask=mask)
        want = model.classifier(mean_pool(out.last_hidden_state, mask))
        got = model(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(got, want)
        # the wrong head: the same classifier on BERT's pooler tanh(W h_CLS)
        assert not torch.allclose(got, model.classifier(out.pooler_output), atol=1e-3)
        # padding does not change a sentence's logits
        short = model(input_ids=ids[2:, :2], attention_mask=mask[2:, :2]).logits
        torch.testing.assert_close(short, got[2:], atol=1e-5, rtol=1e-5)


def test_classifier_fits_the_strategy_helpers_and_lora():
    model = MeanPoolClassifier(tiny_encoder())
    depth = layer_depth(model)
    assert depth["classifier.weight"] == 3 and depth["bert.embeddings.word_embeddings.weight"] == 0
    freeze(model, keep=("classifier",))
    assert count_parameters(model)[0] == 16 * 2 + 2
    lora = add_lora(MeanPoolClassifier(tiny_encoder()), target_modules=("query", "value"), r=2, alpha=4)
    assert count_parameters(lora)[0] == 2 * 2 * 2 * (16 + 16) + 16 * 2 + 2
    ids = torch.randint(1, 50, (4, 6))
    data = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 0, 1])}] * 3
    h = fit(model, data, epochs=1, lr=1e-2, device="cpu", mixed_precision=False, progress=False, verbose=False)
    assert len(h.step_loss) == 3
    out = model(input_ids=ids, labels=torch.tensor([0, 1, 0, 1]))
    assert out.loss is not None and out.logits.shape == (4, 2)


def test_classifier_refuses_bad_input():
    with pytest.raises(ftlib.CourseError, match="config"):
        MeanPoolClassifier(torch.nn.Linear(3, 3))
    with pytest.raises(ftlib.CourseError, match="at least 2"):
        MeanPoolClassifier(tiny_encoder(), num_labels=1)


def test_mean_pool_head_on_cached_vectors():
    head = MeanPoolHead(16, hidden=8, dropout=0.1).eval()
    h, mask = torch.randn(2, 4, 16), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    out = head(h, mask)
    assert out.logits.shape == (2, 2) and out.loss is None
    h2 = h.clone()
    h2[0, 3] = 100.0                                                  # change only a padded position
    torch.testing.assert_close(head(h2, mask).logits, out.logits)
    assert head(h, mask, labels=torch.tensor([0, 1])).loss.ndim == 0
    with pytest.raises(ftlib.CourseError, match="num_labels"):
        MeanPoolHead(16, num_labels=1)


def test_pair_head_reads_order_distance_and_agreement_and_trains_through_fit():
    from ftlib.heads import PairHead, pair_features
    from ftlib.train import fit
    u, v = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]])
    assert pair_features(u, v).tolist() == [[1.0, 2.0, 3.0, -1.0, 2.0, 3.0, 3.0, -2.0]]
    with pytest.raises(ftlib.CourseError, match="same shape"):
        pair_features(u, v[:, :1])
    # a task no single vector solves: equivalent when u and v point the same way
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(256, 8, generator=g), dim=-1)
    same = torch.rand(256, generator=g) < 0.5
    b = torch.where(same[:, None], a + 0.1 * torch.randn(256, 8, generator=g), torch.nn.functional.normalize(torch.randn(256, 8, generator=g), dim=-1))
    labels = same.long()
    torch.manual_seed(0)
    head = PairHead(8)
    batches = [{"u": a[i:i + 32], "v": b[i:i + 32], "labels": labels[i:i + 32]} for i in range(0, 256, 32)]
    fit(head, batches, task="model", epochs=30, lr=1e-2, verbose=False, progress=False)
    with torch.no_grad():
        acc = (head(a, b).logits.argmax(-1) == labels).float().mean().item()
    assert acc > 0.9
    with pytest.raises(ftlib.CourseError, match="dim"):
        PairHead(0)


def test_pair_head_started_at_a_threshold_is_the_cosine_rule():
    from ftlib.heads import PairHead
    g = torch.Generator().manual_seed(1)
    u = torch.nn.functional.normalize(torch.randn(200, 8, generator=g), dim=-1)
    v = torch.nn.functional.normalize(u + torch.randn(200, 8, generator=g), dim=-1)
    cos = (u * v).sum(-1)
    head = PairHead(8).start_at_threshold(0.6)
    with torch.no_grad():
        logits = head(u, v).logits
    assert torch.equal(logits.argmax(-1), (cos > 0.6).long())
    torch.testing.assert_close(logits[:, 1] - logits[:, 0], 20.0 * (cos - 0.6))
    # the wrong answers it rules out: the threshold's sign flipped, or the weights on |u - v| instead of u * v
    flipped = PairHead(8).start_at_threshold(-0.6)
    assert not torch.equal(flipped(u, v).logits.argmax(-1), (cos > 0.6).long())
    wrong_block = PairHead(8).start_at_threshold(0.6)
    with torch.no_grad():
        w = wrong_block.classifier.weight
        w[:, 16:24], w[:, 24:] = w[:, 24:].clone(), 0.0
    assert not torch.equal(wrong_block(u, v).logits.argmax(-1), (cos > 0.6).long())
    with pytest.raises(ftlib.CourseError, match="two-class"):
        PairHead(8, num_labels=3).start_at_threshold(0.5)
    with pytest.raises(ftlib.CourseError, match="scale"):
        PairHead(8).start_at_threshold(0.5, scale=0)


def test_best_threshold_is_the_best_cut_on_the_given_scores():
    from ftlib.heads import best_threshold
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.7, 0.2])
    labels = torch.tensor([0, 0, 1, 1, 1, 0])
    t, acc = best_threshold(scores, labels)
    # by brute force over a fine grid: no threshold does better, and ours reaches it
    grid = torch.linspace(-1, 2, 3001)
    brute = max(((scores > g).long() == labels).float().mean().item() for g in grid)
    assert acc == pytest.approx(brute) and ((scores > t).long() == labels).float().mean().item() == pytest.approx(acc)
    assert 0.2 < t < 0.35 and acc == pytest.approx(5 / 6)
    # all one class: the cut below every score (everything above it) is right for all
    t1, acc1 = best_threshold(scores, torch.ones(6, dtype=torch.long))
    assert acc1 == 1.0 and t1 < 0.1
    with pytest.raises(ftlib.CourseError, match="one score per label"):
        best_threshold(scores, labels[:5])
    with pytest.raises(ftlib.CourseError, match="0 or 1"):
        best_threshold(scores, labels * 2)


def test_best_threshold_ties_duplicates_all_zero_and_brute_force():
    from ftlib.heads import best_threshold
    # duplicate scores: a cut can only go between distinct values
    scores = torch.tensor([0.3, 0.3, 0.3, 0.7, 0.7])
    t, acc = best_threshold(scores, torch.tensor([0, 1, 0, 1, 1]))
    assert 0.3 < t < 0.7 and acc == pytest.approx(4 / 5)
    # every label 0: only the cut above every score gets them all
    t0, acc0 = best_threshold(scores, torch.zeros(5, dtype=torch.long))
    assert acc0 == 1.0 and t0 > 0.7
    # two cuts equally good: the lower one
    t2, acc2 = best_threshold(torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([0, 1, 0, 1]))
    assert acc2 == pytest.approx(0.75) and t2 < 0.2
    # random scores with many ties: no threshold on a fine grid does better, and ours is as good as it says
    g = torch.Generator().manual_seed(0)
    s = torch.round(torch.rand(300, generator=g) * 20) / 20
    y = (torch.rand(300, generator=g) < 0.3 + 0.5 * s).long()
    t, acc = best_threshold(s, y)
    brute = max(((s > c).long() == y).float().mean().item() for c in torch.linspace(-0.1, 1.1, 1201))
    assert acc == pytest.approx(brute) and ((s > t).long() == y).float().mean().item() == pytest.approx(acc)
    with pytest.raises(ftlib.CourseError, match="finite"):
        best_threshold(torch.tensor([0.1, float("nan")]), torch.tensor([0, 1]))
