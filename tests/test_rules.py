"""Tests for ftlib.rules: the sentiment rules, their coverage numbers, the constraint loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from ftlib import CourseError
from ftlib.rules import (RulePrior, RuleResult, RuleScorer, constraint_loss, coverage_accuracy, override,
                         rule_distribution, tokenize)

S = RuleScorer()


def test_lexicon_words_score_with_their_sign():
    assert S.score("a wonderful film").label == 1
    assert S.score("a dreadful film").label == 0
    assert S.score("wonderful , wonderful").score == 2 * S.score("wonderful").score


def test_abstain_when_no_rule_fires():
    for text in ["the film runs 90 minutes .", "", "   ", "!!!"]:
        r = S.score(text)
        assert r.abstain and r.label is None and r.score == 0 and r.fired == []
    # rules that cancel out also abstain, but say what fired
    r = S.score("a masterpiece of boredom")
    assert r.abstain and len(r.fired) == 2


@pytest.mark.parametrize("negator", ["not", "never", "n't", "no"])
def test_negation_flips_the_next_words(negator):
    plain = S.score("it is funny").score
    assert plain > 0
    assert S.score(f"it is {negator} funny").score == -plain
    assert S.score("this is not bad").label == 1


def test_negation_window_and_scope():
    text = "it was not a very clever or funny film"         # not | a very clever or funny
    assert RuleScorer(negation_window=0).score(text).label == 1
    assert RuleScorer(negation_window=1).score(text).label == 1        # only "a" is in scope
    assert RuleScorer(negation_window=3).score(text).score == -2 + 1   # "very clever" flipped, "funny" not
    assert RuleScorer(negation_window=5).score(text).score == -2 - 1   # both flipped
    # punctuation ends the scope
    assert S.score("not , funny").label == 1


def test_contractions_and_sst2_spacing_agree():
    assert tokenize("It doesn't work") == ["it", "does", "n't", "work"]
    assert tokenize("it does n't work") == ["it", "does", "n't", "work"]
    assert tokenize("It doesn\u2019t work") == ["it", "does", "n't", "work"]
    assert S.score("It isn't funny!").score == S.score("it is n't funny .").score == -S.score("it is funny").score


def test_case_and_punctuation_do_not_matter():
    base = S.score("a brilliant film").score
    for text in ["A BRILLIANT film", "a brilliant, film!", "\"a brilliant\" (film)", "A Brilliant... Film?"]:
        assert S.score(text).score == base


def test_but_clause_decides():
    r = S.score("the plot is dull , but the acting is wonderful")
    assert r.label == 1 and any("decides" in f for f in r.fired)
    assert S.score("the acting is wonderful , but the plot is dull").label == 0
    # with the rule off, the two cancel
    assert RuleScorer(contrast=False).score("the plot is dull , but the acting is wonderful").abstain
    # an empty clause after "but" leaves the first clause in charge
    assert S.score("dull , but").label == 0
    # the *last* but decides
    assert S.score("good but bad but good").label == 1


def test_intensifiers_and_downtoners():
    assert S.score("very good").score == 2 * S.score("good").score
    assert S.score("somewhat good").score == 0.5 * S.score("good").score
    assert RuleScorer(intensify=1.0).score("very good").score == S.score("good").score


def test_bad_input_raises_course_error():
    for bad in [None, 3, b"good", ["good"]]:
        with pytest.raises(CourseError):
            S.score(bad)
    with pytest.raises(CourseError):
        S.score_many("good film")
    with pytest.raises(CourseError):
        RuleScorer(negation_window=-1)
    with pytest.raises(CourseError):
        RuleScorer(positive={"good"}, negative={"good"})


def test_coverage_accuracy_counts():
    predicted = [1, None, 0, 1, None, 0, 1]
    gold = [1, 1, 1, 1, 0, 0, 0]
    out = coverage_accuracy(predicted, gold, fallback=1)
    assert out["n"] == 7 and out["n_covered"] == 5
    assert math.isclose(out["coverage"], 5 / 7)
    assert math.isclose(out["accuracy_covered"], 3 / 5)       # 1=1, 0!=1, 1=1, 0=0, 1!=0
    assert math.isclose(out["accuracy"], 4 / 7)               # + the abstained 1 (fallback right), 0 (wrong)
    # RuleResult objects work the same way
    results = [RuleResult(1.0, 1), RuleResult(0.0, None)]
    assert coverage_accuracy(results, [1, 0])["coverage"] == 0.5
    assert math.isnan(coverage_accuracy([None, None], [0, 1])["accuracy_covered"])


def test_coverage_accuracy_bad_input():
    with pytest.raises(CourseError):
        coverage_accuracy([1, 0], [1])
    with pytest.raises(CourseError):
        coverage_accuracy([], [])
    with pytest.raises(CourseError):
        coverage_accuracy([2], [1])
    with pytest.raises(CourseError):
        coverage_accuracy([1], [1], fallback=5)


def test_rule_distribution():
    p = rule_distribution([0.0, 1.0, -2.0])
    torch.testing.assert_close(p.sum(-1), torch.ones(3))
    torch.testing.assert_close(p[0], torch.tensor([0.5, 0.5]))
    assert math.isclose(p[1, 1].item(), 1 / (1 + math.exp(-1)), rel_tol=1e-6)
    assert p[2, 0] > 0.85
    with pytest.raises(CourseError):
        rule_distribution([1.0], sharpness=0)


def test_constraint_loss_is_kl_and_zero_at_the_rules():
    q = rule_distribution([1.0, -0.5, 2.0])
    logits = q.log() + torch.tensor([[3.0], [-1.0], [0.2]])     # a shift does not change the softmax
    assert constraint_loss(logits, q).item() == pytest.approx(0.0, abs=1e-6)
    z = torch.randn(3, 2)
    p = z.softmax(-1)
    want = (p * (p.log() - q.log())).sum(-1)                     # KL(p || q) written out
    torch.testing.assert_close(constraint_loss(z, q, reduction="none"), want)
    torch.testing.assert_close(constraint_loss(z, q), want.mean())
    # torch's kl_div(input=log q, target=p) is KL(p || q) too
    torch.testing.assert_close(constraint_loss(z, q), F.kl_div(q.log(), p, reduction="batchmean"))
    mask = torch.tensor([True, False, True])
    torch.testing.assert_close(constraint_loss(z, q, mask), want[mask].mean())


def test_constraint_loss_gradient_points_to_the_rules():
    q = torch.tensor([[0.2, 0.8]])                               # the rules say positive
    z = torch.tensor([[1.0, -1.0]], requires_grad=True)          # the model says negative
    constraint_loss(z, q).backward()
    assert z.grad[0, 1] < 0 < z.grad[0, 0]                       # descent raises the positive logit
    # a small step down the gradient lowers the loss
    with torch.no_grad():
        before = constraint_loss(z, q).item()
        after = constraint_loss(z - 0.1 * z.grad, q).item()
    assert after < before
    # no rows masked in: zero loss, zero gradient
    z2 = torch.randn(2, 2, requires_grad=True)
    loss = constraint_loss(z2, rule_distribution([1.0, 1.0]), torch.tensor([False, False]))
    loss.backward()
    assert loss.item() == 0 and torch.all(z2.grad == 0)


def test_constraint_loss_bad_input():
    with pytest.raises(CourseError):
        constraint_loss(torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [0.5, 0.5]]))   # a zero probability
    with pytest.raises(CourseError):
        constraint_loss(torch.zeros(2, 2), torch.full((3, 2), 0.5))


def _tiny_model():
    from conftest import make_tiny_bert
    return make_tiny_bert(vocab=50, hidden=16, layers=1, dropout=0.1)


def test_rule_prior_looks_up_each_row_and_mixes_the_losses():
    model = _tiny_model()
    ids = [[2, 5, 6, 3], [2, 7, 3], [2, 8, 9, 10, 3]]
    q = rule_distribution([1.0, 0.0, -2.0])
    fires, labelled = [True, False, True], [True, True, False]
    prior = RulePrior(ids, q, fires, labelled, lam=0.5).attach(model)
    # a padded batch in another order, as a shuffled loader gives it
    order = [2, 0, 1]
    width = 5
    input_ids = torch.tensor([ids[i] + [0] * (width - len(ids[i])) for i in order])
    mask = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in order])
    labels = torch.tensor([0, 1, 0])        # row 0 (sentence 2) is unlabelled: its label is a placeholder
    model.train()
    logits = model(input_ids=input_ids, attention_mask=mask).logits
    loss = prior.loss_fn(logits, labels, model)
    ce = F.cross_entropy(logits[1:], labels[1:])                  # the labelled rows: sentences 0 and 1
    kl = constraint_loss(logits[:2], q[[2, 0]])                   # the rows whose rules fire: sentences 2 and 0
    torch.testing.assert_close(loss, ce + 0.5 * kl)
    prior.detach()
    model(input_ids=input_ids, attention_mask=mask)
    assert len(model._forward_pre_hooks) == 0


def test_rule_prior_errors():
    model = _tiny_model()
    prior = RulePrior([[2, 5, 3]], rule_distribution([1.0]), [True], [True])
    with pytest.raises(CourseError):
        prior.loss_fn(torch.zeros(1, 2), torch.tensor([1]), model)       # never attached
    prior.attach(model).detach()
    prior.attach(model)
    model.train()
    with pytest.raises(CourseError):
        model(input_ids=torch.tensor([[2, 6, 3]]), attention_mask=torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(CourseError):
        RulePrior([[1, 2], [1, 2]], rule_distribution([1.0, 1.0]), [True, True], [True, False])
    with pytest.raises(CourseError):
        RulePrior([[1, 2]], rule_distribution([1.0, 1.0]), [True], [True])


def test_override_replaces_only_unsure_model_where_rules_are_sure():
    probs = torch.tensor([[0.9, 0.1], [0.55, 0.45], [0.4, 0.6], [0.45, 0.55]])
    scores = [3.0, 3.0, -1.0, -2.0]
    labels, replaced = override(probs, scores, model_below=0.7, rules_at_least=2.0)
    assert replaced.tolist() == [False, True, False, True]
    assert labels.tolist() == [0, 1, 1, 0]
    with pytest.raises(CourseError):
        override(probs, scores[:2])


def _rule_batch():
    torch.manual_seed(0)
    return dict(hidden=torch.randn(4, 1, 8), attention_mask=torch.ones(4, 1, dtype=torch.long),
                labels=torch.tensor([1, 0, 0, 1]), rule_probs=rule_distribution([2.0, -1.0, 0.0, 1.5]),
                fires=torch.tensor([True, True, False, True]), labelled=torch.tensor([True, True, False, False]))


def test_rule_task_is_the_rule_prior_loss_on_batches_that_carry_the_rules():
    from ftlib.heads import MeanPoolHead
    from ftlib.rules import rule_loss, rule_task
    head, batch = MeanPoolHead(8), _rule_batch()
    loss, items, correct = rule_task(0.7)(head, batch)
    logits = head(batch["hidden"], batch["attention_mask"]).logits
    ce = F.cross_entropy(logits[:2], batch["labels"][:2])                     # labelled rows 0, 1
    kl = constraint_loss(logits[[0, 1, 3]], batch["rule_probs"][[0, 1, 3]])   # rows where the rules fire
    torch.testing.assert_close(loss, ce + 0.7 * kl)
    assert int(items) == 4 and correct is None
    # the wrong answers this rejects: the KL on every row, and the CE on the placeholder labels too
    assert not torch.allclose(loss, ce + 0.7 * constraint_loss(logits, batch["rule_probs"]))
    assert not torch.allclose(loss, F.cross_entropy(logits, batch["labels"]) + 0.7 * kl)
    # lam = 0 with every row labelled is plain cross-entropy
    plain = dict(batch, labelled=torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(rule_task(0.0)(head, plain)[0], F.cross_entropy(logits, batch["labels"]))
    torch.testing.assert_close(rule_loss(logits, batch["labels"], batch["rule_probs"], batch["fires"],
                                         batch["labelled"], 0.7), loss)


def test_rule_task_trains_a_head_towards_the_rules_through_fit():
    from ftlib.heads import MeanPoolHead
    from ftlib.rules import rule_task
    from ftlib.train import fit
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8)
    score = torch.where(x[:, 0, 0] > 0, 2.0, -2.0)            # "rules" that read one feature
    batch = dict(hidden=x, attention_mask=torch.ones(64, 1, dtype=torch.long), labels=torch.zeros(64, dtype=torch.long),
                 rule_probs=rule_distribution(score), fires=torch.ones(64, dtype=torch.bool),
                 labelled=torch.zeros(64, dtype=torch.bool))   # no gold label at all: only the rules teach
    head = MeanPoolHead(8)
    fit(head, [batch] * 60, task=rule_task(1.0), lr=0.05, weight_decay=0.0, device="cpu", verbose=False, progress=False)
    with torch.no_grad():
        agree = (head(x, batch["attention_mask"]).logits.argmax(-1) == (score > 0).long()).float().mean()
    assert agree > 0.95
    # and with the constant placeholder label as if it were gold (lam = 0), the head learns "always 0"
    head0 = MeanPoolHead(8)
    fit(head0, [dict(batch, labelled=torch.ones(64, dtype=torch.bool))] * 60, task=rule_task(0.0), lr=0.05,
        weight_decay=0.0, device="cpu", verbose=False, progress=False)
    with torch.no_grad():
        assert (head0(x, batch["attention_mask"]).logits.argmax(-1) == 0).all()


def test_rule_task_errors():
    from ftlib.heads import MeanPoolHead
    from ftlib.rules import rule_task
    batch = _rule_batch()
    del batch["fires"]
    with pytest.raises(CourseError, match="fires"):
        rule_task(1.0)(MeanPoolHead(8), batch)
    with pytest.raises(CourseError, match="lam"):
        rule_task(-1.0)
