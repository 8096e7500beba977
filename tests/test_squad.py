"""Extractive QA on SQuAD (notebook 17): the official v1.1 scores, windows with a stride, n-best answers
across windows, the first-sentence baseline, and the span head of ftlib.frozen.TopBlocks.

The official evaluation script (``evaluate-v1.1.py``, Rajpurkar et al. 2016) cannot be fetched offline, so
``_official`` below writes it again from its published definition -- independently of ftlib -- and the
tests compare ftlib.tasks.squad_scores with it on the real dev set (mirror) and on hand-made cases.
"""
import json
import os
import random
import re
import string
from collections import Counter
from pathlib import Path

import pytest
import torch

import ftlib
from ftlib import CourseError, tasks


# ----------------------------------------------------------------- the official script, written again
def _normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _f1_score(prediction, ground_truth):
    prediction_tokens = _normalize_answer(prediction).split()
    ground_truth_tokens = _normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def _exact_match_score(prediction, ground_truth):
    return _normalize_answer(prediction) == _normalize_answer(ground_truth)


def _max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def _official(questions, predictions):
    """``questions``: [(id, [answer texts])]; ``predictions``: {id: text}. As evaluate-v1.1.py's evaluate()."""
    f1 = exact_match = total = 0
    for qid, ground_truths in questions:
        total += 1
        exact_match += _max_over_ground_truths(_exact_match_score, predictions[qid], ground_truths)
        f1 += _max_over_ground_truths(_f1_score, predictions[qid], ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


HAND_CASES = [
    ("The Eiffel Tower!", ["eiffel tower"]),             # punctuation, case, article: exact
    ("Paris France", ["Paris", "Paris, France"]),         # the second reference matches exactly
    ("an apple a day", ["apple day"]),                    # articles removed inside the text too
    ("", ["Denver Broncos"]),                             # empty prediction: 0 / 0
    ("the", ["a"]),                                       # both normalise to nothing: EM 1, F1 0 in v1.1
    ("Denver Broncos Broncos", ["Denver Broncos"]),       # repeated words: counted with multiplicity
    ("1,000", ["1000"]),                                  # punctuation inside numbers goes too
    ("Théâtre   du Châtelet", ["théâtre du châtelet"]),   # whitespace collapsed, accents kept
]


def test_squad_scores_equal_the_official_definition_on_hand_cases():
    for pred, refs in HAND_CASES:
        ours = tasks.squad_em_f1(pred, refs)
        assert ours == (float(_max_over_ground_truths(_exact_match_score, pred, refs)),
                        float(_max_over_ground_truths(_f1_score, pred, refs))), (pred, refs)
    qs = [(str(i), refs) for i, (_, refs) in enumerate(HAND_CASES)]
    official = _official(qs, {str(i): p for i, (p, _) in enumerate(HAND_CASES)})
    ours = tasks.squad_scores([p for p, _ in HAND_CASES], [r for _, r in HAND_CASES])
    assert ours == pytest.approx(official, abs=1e-12)


def _dev_questions():
    root = os.environ.get("FTLIB_DATA_DIR")
    path = Path(root or "") / "squad_v1.1" / "dev-v1.1.json"
    if not root or not path.is_file():
        pytest.skip("the SQuAD mirror (FTLIB_DATA_DIR/squad_v1.1) is not here")
    out = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for par in article["paragraphs"]:
            for qa in par["qas"]:
                out.append((qa["id"], par["context"], [a["text"] for a in qa["answers"]]))
    return out


def test_squad_scores_equal_the_official_definition_on_the_dev_set():
    dev = _dev_questions()
    assert len(dev) == 10_570
    rng = random.Random(0)
    # three kinds of prediction: the first sentence, a random span of 1-6 words, a reference answer with
    # a word dropped or an article added -- all scored both ways over all 10,570 questions
    preds = {}
    for qid, context, refs in dev:
        words = context.split()
        kind = rng.randrange(3)
        if kind == 0:
            preds[qid] = tasks.first_sentence(context)
        elif kind == 1:
            i = rng.randrange(len(words))
            preds[qid] = " ".join(words[i:i + rng.randint(1, 6)])
        else:
            w = rng.choice(refs).split()
            preds[qid] = "The " + " ".join(w[:-1] if len(w) > 1 and rng.random() < 0.5 else w)
    questions = [(qid, refs) for qid, _, refs in dev]
    official = _official(questions, preds)
    ours = tasks.squad_scores([preds[q] for q, _ in questions], [refs for _, refs in questions])
    assert ours == pytest.approx(official, abs=1e-9)
    assert 5 < official["exact_match"] < 60 and official["f1"] > official["exact_match"]   # a real mix
    # the usual wrong versions are not the official score: only the first reference, no normalisation
    first_only = tasks.squad_scores([preds[q] for q, _ in questions], [refs[0] for _, refs in questions])
    assert first_only["exact_match"] < official["exact_match"] - 0.5
    raw_em = 100 * sum(max(preds[q] == r for r in refs) for q, refs in questions) / len(questions)
    assert raw_em < official["exact_match"] - 0.5


def test_sentence_spans_cover_the_sentences():
    text = "Paris is big. Mr. Smith lives there! He said: \"Fine.\" The end"
    spans = tasks.sentence_spans(text)
    assert [text[a:b] for a, b in spans] == ["Paris is big.", "Mr. Smith lives there!", "He said: \"Fine.\"", "The end"]
    assert tasks.sentence_spans("") == []


def test_first_sentence():
    assert tasks.first_sentence("Paris is big. It has 2 million people.") == "Paris is big."
    assert tasks.first_sentence("In 1998 Mr. Smith won. Later he lost.") == "In 1998 Mr. Smith won."
    assert tasks.first_sentence("No end here") == "No end here"
    assert tasks.first_sentence("It cost $3.50 in total! \"Wow,\" she said.") == "It cost $3.50 in total!"


LONG = ("The river rises in the hills. " * 12 + "The bridge was built in 1887 by Gustave Eiffel. "
        + "Boats pass under it every day. " * 12)


def test_qa_windows_overlap_by_the_stride_and_find_the_answer(bert_tok):
    q, answer = "When was the bridge built?", "1887"
    a0 = LONG.index(answer)
    w = tasks.qa_windows(bert_tok, [q, "Who?"], [LONG, "Ann came."], [a0, 0], [answer, "Ann"], max_length=64, stride=16)
    feats = [f for f, ex in enumerate(w["example"]) if ex == 0]
    assert len(feats) > 3 and w["example"][-1] == 1                 # the long context gives several windows
    assert all(len(ids) <= 64 for ids in w["input_ids"])
    # neighbouring windows share exactly `stride` context tokens
    for f, g in zip(feats, feats[1:]):
        a = [o for o in w["offsets"][f] if o is not None]
        b = [o for o in w["offsets"][g] if o is not None]
        assert a[-16:] == b[:16]
    # every window that holds the whole answer points at it; the others point at [CLS]
    hits = 0
    for f in feats:
        s, e = w["start_positions"][f], w["end_positions"][f]
        offs = w["offsets"][f]
        ctx = [o for o in offs if o is not None]
        if ctx[0][0] <= a0 and ctx[-1][1] >= a0 + len(answer):
            hits += 1
            assert LONG[offs[s][0]:offs[e][1]] == answer
        else:
            assert (s, e) == (0, 0)
    assert hits >= 1
    assert w["offsets"][feats[0]][0] is None and w["token_type_ids"][feats[0]][-2] == 1
    with pytest.raises(CourseError, match="stride"):
        tasks.qa_windows(bert_tok, [q], [LONG], max_length=64, stride=40)
    with pytest.raises(CourseError, match="both"):
        tasks.qa_windows(bert_tok, [q], [LONG], answer_starts=[a0])


def test_qa_answers_pick_the_best_span_across_windows(bert_tok):
    q, answer = "When was the bridge built?", "1887"
    w = tasks.qa_windows(bert_tok, [q], [LONG], max_length=64, stride=16)
    n = max(len(ids) for ids in w["input_ids"])
    start = torch.full((len(w["input_ids"]), n), -5.0)
    end = torch.full_like(start, -5.0)
    # window 0 scores "The" of its context highest; the window holding 1887 scores it higher still
    start[0, 10], end[0, 10] = 3.0, 3.0
    f = next(f for f, offs in enumerate(w["offsets"])
             if any(o is not None and LONG[o[0]:o[1]] == "1887" for o in offs))
    j = next(j for j, o in enumerate(w["offsets"][f]) if o is not None and LONG[o[0]:o[1]] == "1887")
    start[f, j], end[f, j] = 4.0, 4.0
    # and a higher score on a question token, which must never be an answer
    start[f, 2], end[f, 2] = 50.0, 50.0
    best = tasks.qa_answers(start, end, w, [LONG])
    assert best[0][0] == (8.0, "1887", LONG.index("1887"))
    assert best[0][1][0] == 6.0                                 # window 0's span is the runner-up
    # the n-best top equals the exhaustive search of tasks.best_span within the winning window
    allowed = [o is not None for o in w["offsets"][f]]
    s, e = tasks.best_span(start[f, :len(allowed)], end[f, :len(allowed)], allowed)
    assert LONG[w["offsets"][f][s][0]:w["offsets"][f][e][1]] == "1887"
    # an end before the start is not a span, nor a span longer than max_answer_tokens
    start2, end2 = torch.zeros(1, 6), torch.zeros(1, 6)
    start2[0, 4], end2[0, 2] = 9.0, 9.0
    offs = [None, (0, 1), (2, 3), (4, 5), (6, 7), None]
    top = tasks.qa_nbest(start2[0], end2[0], offs)[0]
    assert (top[1], top[2]) != (6, 3) and top[0] == 9.0
    assert all(e - s <= 3 for _, s, e in tasks.qa_nbest(start2[0], end2[0], offs, max_answer_tokens=2))
    with pytest.raises(CourseError, match="one row of logits per feature"):
        tasks.qa_answers(start[:1], end[:1], w, [LONG])


def test_span_head_loss_is_the_mean_of_start_and_end_cross_entropy(tiny_bert):
    from ftlib.bert import Bert
    from ftlib.frozen import TopBlocks, pad_hidden

    torch.manual_seed(0)
    hf = tiny_bert()
    bert = Bert.from_hf(hf)
    top = TopBlocks(bert, 1, 2, kind="span").eval()
    rows = [{"hidden": torch.randn(n, bert.cfg.hidden_size), "start_positions": s, "end_positions": e}
            for n, s, e in ((5, 1, 3), (3, 2, 2))]
    b = pad_hidden(rows)
    out = top(**b)
    assert out.start_logits.shape == (2, 5) and out.start_logits[1, 3:].max() < -1e30   # padding never wins
    by_hand = (torch.nn.functional.cross_entropy(out.start_logits, torch.tensor([1, 2]))
               + torch.nn.functional.cross_entropy(out.end_logits, torch.tensor([3, 2]))) / 2
    assert torch.allclose(out.loss, by_hand)
    # only the start's loss is not the QA loss
    assert not torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.start_logits, torch.tensor([1, 2])))
    with pytest.raises(CourseError, match="num_labels must be 2"):
        TopBlocks(bert, 1, 3, kind="span")
    with pytest.raises(CourseError, match="both"):
        top(b["hidden"], b["attention_mask"], start_positions=b["start_positions"])


def test_question_aware_span_head_starts_as_the_plain_head_and_reads_the_question(tiny_bert):
    from ftlib.bert import Bert
    from ftlib.frozen import TopBlocks, pad_hidden

    torch.manual_seed(0)
    bert = Bert.from_hf(tiny_bert(layers=3))
    torch.manual_seed(0)
    plain = TopBlocks(bert, 2, 2, kind="span", n_top=0).eval()
    torch.manual_seed(0)
    aware = TopBlocks(bert, 2, 2, kind="span", n_top=0, question_aware=True).eval()
    assert len(plain.layers) == 0 and len(TopBlocks(bert, 1, 2, kind="span").layers) == 2
    d = bert.cfg.hidden_size
    rows = [{"hidden": torch.randn(6, d), "token_type_ids": [0, 0, 0, 1, 1, 1], "start_positions": 3, "end_positions": 4}]
    b = pad_hidden(rows)
    assert b["token_type_ids"].tolist() == [[0, 0, 0, 1, 1, 1]]
    a = aware(**b)
    assert torch.allclose(a.start_logits, plain(**{k: v for k, v in b.items() if k != "token_type_ids"}).start_logits)
    # once W_q is trained, the same context scores differently under another question
    with torch.no_grad():
        aware.question.weight.normal_()
    other = dict(b, hidden=b["hidden"].clone())
    other["hidden"][0, :3] += 1.0                            # change only the question's states
    s1, s2 = aware(**b).start_logits[0, 3:], aware(**other).start_logits[0, 3:]
    assert not torch.allclose(s1, s2)
    assert torch.allclose(plain(b["hidden"], b["attention_mask"]).start_logits[0, 3:],
                          plain(other["hidden"], other["attention_mask"]).start_logits[0, 3:])   # the plain head cannot
    with pytest.raises(CourseError, match="token_type_ids"):
        aware(b["hidden"], b["attention_mask"])
    with pytest.raises(CourseError, match="n_top"):
        TopBlocks(bert, 2, 2, kind="span", n_top=2)
    with pytest.raises(CourseError, match="only for kind='span'"):
        TopBlocks(bert, 2, 2, kind="token", question_aware=True)


def test_error_kinds_follow_characters_not_shared_words():
    ctx = "The river is 1,320 kilometres long. It was measured in 1932. Later it was 230 kilometres shorter."
    refs, starts = ["1,320 kilometres"], [ctx.index("1,320")]
    kind = lambda pred: tasks.qa_error_kind(ctx, pred, ctx.index(pred), refs, starts)
    assert kind("1,320 kilometres") == "exact"
    assert kind("1,320 kilometres long") == "boundary"
    assert kind("river is 1,320") == "boundary"
    assert kind("The river") == "right sentence"               # same sentence, no overlap
    assert kind("230 kilometres") == "wrong sentence"            # a shared word, but the wrong number elsewhere
    assert kind("long. It was") == "wrong sentence"              # crosses out of the reference's sentence
    assert tasks.QA_ERROR_KINDS == ("exact", "boundary", "right sentence", "wrong sentence")
    with pytest.raises(CourseError):
        tasks.qa_error_kind(ctx, "x", 0, ["a", "b"], [0])


def test_qa_bad_input_gets_one_clear_error(bert_tok):
    with pytest.raises(CourseError, match="not at character"):
        tasks.qa_windows(bert_tok, ["Who?"], ["Ann came."], [4], ["Ann"])
    with pytest.raises(CourseError, match="not at character"):
        tasks.qa_windows(bert_tok, ["Who?"], ["Ann came."], [0], [""])
    with pytest.raises(CourseError, match="not at character"):
        tasks.qa_windows(bert_tok, ["Who?"], ["Ann came."], [50], ["Ann"])
    w = tasks.qa_windows(bert_tok, ["Who?", "What?"], ["Ann came.", "Bob left."])
    z = torch.zeros(2, len(w["input_ids"][0]) + 2)
    with pytest.raises(CourseError, match="contexts"):
        tasks.qa_answers(z, z, w, ["Ann came."])
    with pytest.raises(CourseError, match="n_best"):
        tasks.qa_nbest(z[0], z[0], w["offsets"][0], n_best=0)
    from ftlib.frozen import pad_hidden
    with pytest.raises(CourseError, match="token_type_ids"):
        pad_hidden([{"hidden": torch.zeros(3, 4), "token_type_ids": [0, 1]}])


def test_lesson17_verdicts_fail_for_the_baseline_itself_and_for_empty_answers():
    """Lesson 17's checks are `gain.low > 0` (beats the first sentence) and `em.low > 0`: the baseline
    copied, an empty answer and a fixed answer fail them; the reference answers pass them."""
    dev = _dev_questions()[:400]
    first = [tasks.first_sentence(c) for _, c, _ in dev]
    refs = [r for _, _, r in dev]
    verdict = lambda preds: (lambda c: (c["gain"].low > 0, c["em"].low > 0))(tasks.squad_comparison(preds, first, refs))
    assert verdict(first) == (False, False)                       # the baseline against itself: gain exactly 0
    assert verdict([""] * len(dev)) == (False, False)
    assert verdict(["Denver Broncos"] * len(dev)) == (False, True)   # right on the Super Bowl article's questions
    assert verdict([r[0] for r in refs]) == (True, True)
    # a system that is the first sentence on half the questions and right on the rest is judged on the pairs
    half = [r[0] if i % 2 else f for i, (f, r) in enumerate(zip(first, refs))]
    c = tasks.squad_comparison(half, first, refs)
    assert c["gain"].low > 0 and c["gain"].estimate == pytest.approx(c["f1"].estimate - c["baseline_f1"].estimate)
    with pytest.raises(CourseError, match="one prediction, one baseline answer"):
        tasks.squad_comparison(first[:-1], first, refs)
