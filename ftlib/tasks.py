"""Beyond sentence classification: token classification (NER, notebook 15), extractive QA on SQuAD
(notebook 17) and translation with a decoder (notebook 18).

Notebook 15 trains NER on WNUT-17 (``ftlib.load_wnut17``), notebook 17 QA on SQuAD v1.1
(``ftlib.load_squad``). :data:`NER_TAGS` is a small tag set (people, places, organisations) for
examples and exercises.

* NER: :func:`align_labels` (word labels -> sub-token labels, -100 for the rest),
  :func:`bio_spans`, :func:`entity_f1` (entity-level, per type, as seqeval computes it),
  :func:`entity_counts` / :func:`f1_from_counts` (for a bootstrap over sentences),
  :func:`entity_f1_interval` / :func:`entity_f1_gain` (F1 and a paired gain, with intervals),
  :func:`entity_type_confusion`, :func:`word_shape` / :func:`token_shapes` (the casing an
  uncased tokenizer drops), :func:`group_entities` (tags -> entities).
* QA: :func:`qa_windows` (long contexts -> overlapping windows with ``stride``; answer
  characters -> start/end token positions through the offset mapping, [CLS] when a window does
  not hold the answer), :func:`qa_nbest` / :func:`qa_answers` (n-best spans, gathered across a
  question's windows), :func:`best_span` (the exhaustive search), :func:`squad_em_f1` /
  :func:`squad_scores` (the official SQuAD v1.1 exact match and F1), :func:`squad_comparison`
  (a system against a baseline, paired intervals), :func:`sentence_spans` /
  :func:`first_sentence` (the first-sentence baseline), :func:`qa_error_kind` (exact, boundary,
  right or wrong sentence); :func:`qa_features` is the one-window
  version for short contexts.
* Translation with a decoder-only model: :func:`prompt_target_example` (labels -100 on the
  prompt, so only the target is learned).

Training goes through the course's one engine: ``ftlib.train.fit(model, loader, task="model")``
uses the loss the model computes itself from ``labels`` (or ``start_positions``/``end_positions``).
"""
from __future__ import annotations

import re
import string
from collections import Counter

import numpy as np

from ftlib.errors import CourseError
from ftlib.metrics import bootstrap_ci

__all__ = ["NER_TAGS", "align_labels", "bio_spans", "entity_f1", "entity_counts",
           "f1_from_counts", "entity_type_confusion", "SHAPES", "word_shape", "token_shapes", "group_entities",
           "qa_features", "best_span", "squad_em_f1", "squad_scores", "qa_windows", "qa_nbest",
           "qa_answers", "sentence_spans", "first_sentence", "QA_ERROR_KINDS", "qa_error_kind",
           "prompt_target_example"]

NER_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]

def align_labels(word_ids, word_labels, label_all_subtokens: bool = False, names=None) -> list[int]:
    """Sub-token labels from word labels: the first piece of a word gets the word's label,
    special tokens and (unless ``label_all_subtokens``) the later pieces get -100.

    ``word_ids`` is what a fast tokenizer's ``encoding.word_ids()`` returns (None for
    [CLS]/[SEP]/padding). ``names``: the tag names the label ids index (default the synthetic
    :data:`NER_TAGS`); only ``label_all_subtokens`` reads them, to turn a ``B-`` into its ``I-``.
    """
    tag_names = NER_TAGS if names is None else list(names)
    out, previous = [], None
    for w in word_ids:
        if w is None:
            out.append(-100)
        elif w >= len(word_labels):
            raise CourseError(f"word id {w} but only {len(word_labels)} word labels: tokenise with "
                              "is_split_into_words=True and the same words the labels belong to.")
        elif w != previous:
            out.append(word_labels[w])
        else:
            label = word_labels[w]
            if label_all_subtokens:  # an inside piece of a B- entity continues it as I-
                name = tag_names[label] if 0 <= label < len(tag_names) else ""
                label = tag_names.index("I-" + name[2:]) if name.startswith("B-") else label
            out.append(label if label_all_subtokens else -100)
        previous = w
    return out


def _tag_names(tags, names=None) -> list[str]:
    names = None if names is None else list(names)
    out = []
    for t in tags:
        if isinstance(t, str):
            out.append(t)
        elif names is None:
            raise CourseError(f"Tag id {t} needs the tag names to mean anything: pass names= (the data set's "
                              "label names, e.g. ds.features['ner_tags'].feature.names, or tasks.NER_TAGS), "
                              "or pass the tags as strings ('B-PER').")
        elif 0 <= int(t) < len(names):
            out.append(names[int(t)])
        else:
            raise CourseError(f"Tag id {t} is not one of the {len(names)} tag names. If it is -100, drop the "
                              "ignored positions first (keep labels != -100); otherwise pass names= (the data "
                              "set's label names, e.g. ds.features['ner_tags'].feature.names).")
    return out


def bio_spans(tags, names=None) -> set[tuple[str, int, int]]:
    """Entities ``(type, start, end)`` (end exclusive) in a BIO sequence of tag names, or of ids
    into ``names`` (required with ids: an id means nothing without its data set's names).

    An ``I-X`` that does not continue an ``X`` entity starts a new one (as seqeval does)."""
    spans, kind, start = set(), None, 0
    for i, tag in enumerate(_tag_names(tags, names) + ["O"]):
        prefix, _, typ = tag.partition("-")
        if kind is not None and (prefix != "I" or typ != kind):
            spans.add((kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and kind is None):
            kind, start = typ, i
    return spans


def _prf(tp: int, n_true: int, n_pred: int) -> dict:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    return {"precision": precision, "recall": recall, "f1": f1_from_counts([tp], [n_true], [n_pred]),
            "entities": n_true, "predicted": n_pred}


def _sentence_spans(true_seqs, pred_seqs, names):
    if len(true_seqs) != len(pred_seqs):
        raise CourseError(f"{len(true_seqs)} true sequences but {len(pred_seqs)} predicted ones.")
    for t, p in zip(true_seqs, pred_seqs):
        if len(t) != len(p):
            raise CourseError("A predicted tag sequence has another length than its true one: "
                              "drop the -100 positions from both the same way.")
        yield bio_spans(t, names), bio_spans(p, names)


def entity_f1(true_seqs, pred_seqs, names=None, by_type: bool = False) -> dict:
    """Entity-level precision, recall and F1: an entity counts only if type and both ends match
    (seqeval's default mode, the CoNLL script's rule). ``names``: the tag names, if the sequences
    hold ids. ``by_type``: add ``"per_type"``, the same scores for each entity type."""
    tp = n_true = n_pred = 0
    per = {}
    for st, sp in _sentence_spans(true_seqs, pred_seqs, names):
        tp, n_true, n_pred = tp + len(st & sp), n_true + len(st), n_pred + len(sp)
        for spans, slot in ((st & sp, 0), (st, 1), (sp, 2)):
            for typ, _, _ in spans:
                per.setdefault(typ, [0, 0, 0])[slot] += 1
    out = _prf(tp, n_true, n_pred)
    if by_type:
        out["per_type"] = {typ: _prf(*per[typ]) for typ in sorted(per)}
    return out


def entity_counts(true_seqs, pred_seqs, names=None):
    """Per sentence ``(correct, true, predicted)`` entity counts, as three integer lists: entity F1
    of any subset of sentences is ``2 * sum(correct) / (sum(true) + sum(predicted))``, which is
    what a bootstrap over sentences needs."""
    rows = [(len(st & sp), len(st), len(sp)) for st, sp in _sentence_spans(true_seqs, pred_seqs, names)]
    return [list(col) for col in zip(*rows)] if rows else [[], [], []]


def f1_from_counts(correct, n_true, n_pred) -> float:
    """Entity F1 from summed counts (see :func:`entity_counts`); 0 when nothing is true or predicted."""
    c, t, p = (float(sum(x)) for x in (correct, n_true, n_pred))
    return 2 * c / (t + p) if t + p else 0.0


def _count_rows(counts):
    rows = np.asarray(counts, dtype=float)
    if rows.ndim != 2 or rows.shape[0] != 3:
        raise CourseError("Pass the three per-sentence count lists that entity_counts returns "
                          "(correct, true, predicted).")
    return rows.T


def entity_f1_interval(counts, n_boot: int = 1000, seed: int = 0):
    """Entity F1 with a 95 % bootstrap interval over sentences; ``counts`` from :func:`entity_counts`."""
    return bootstrap_ci(lambda c: f1_from_counts(*c.T), _count_rows(counts), n_boot=n_boot, seed=seed)


def entity_f1_gain(counts_a, counts_b, n_boot: int = 1000, seed: int = 0):
    """F1(A) - F1(B) with a paired 95 % bootstrap interval: the same sentences drawn for both systems.

    ``counts_a``, ``counts_b``: :func:`entity_counts` of two systems on the same sentences, in order."""
    a, b = _count_rows(counts_a), _count_rows(counts_b)
    if len(a) != len(b):
        raise CourseError(f"Both systems must be scored on the same sentences: {len(a)} rows vs {len(b)}.")
    return bootstrap_ci(lambda x, y: f1_from_counts(*x.T) - f1_from_counts(*y.T), a, b, n_boot=n_boot, seed=seed)


def entity_type_confusion(true_seqs, pred_seqs, names=None):
    """Where the true entities went: ``(types, matrix)`` with rows = true type, columns = the type
    predicted on exactly the same words, plus a last column "missed" (no predicted entity with those
    boundaries) and a last row "spurious" (a predicted entity with no true one there)."""
    pairs, missed, spurious, types = [], [], [], set()
    for st, sp in _sentence_spans(true_seqs, pred_seqs, names):
        pred_at = {(a, b): typ for typ, a, b in sp}
        true_at = {(a, b): typ for typ, a, b in st}
        for typ, a, b in st:
            types.add(typ)
            (pairs.append((typ, pred_at[(a, b)])) if (a, b) in pred_at else missed.append(typ))
        for typ, a, b in sp:
            types.add(typ)
            if (a, b) not in true_at:
                spurious.append(typ)
    types = sorted(types)
    at = {t: i for i, t in enumerate(types)}
    matrix = [[0] * (len(types) + 1) for _ in range(len(types) + 1)]
    for t, p in pairs:
        matrix[at[t]][at[p]] += 1
    for t in missed:
        matrix[at[t]][len(types)] += 1
    for p in spurious:
        matrix[len(types)][at[p]] += 1
    return types, matrix


SHAPES = ["none", "lower", "Capitalised", "UPPER", "other"]


def word_shape(word: str) -> int:
    """The index in :data:`SHAPES` of a word's casing: ``lower``, ``Capitalised`` (first letter
    upper, the rest not), ``UPPER`` (two or more letters, all upper), ``other`` (no letters,
    or mixed like "iPhone"). ``none`` (0) is kept for [CLS]/[SEP]/padding."""
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return 4
    if all(c.islower() for c in letters):
        return 1
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return 3
    if letters[0].isupper() and all(not c.isupper() for c in letters[1:]):
        return 2
    return 4                                     # letters without case (Chinese), or mixed like "iPhone"


def token_shapes(word_ids, words) -> list[int]:
    """One :func:`word_shape` per token (every piece of a word gets its word's shape; 0 for the
    tokens of no word): the casing an uncased tokenizer threw away, put back as a feature."""
    if any(w is not None and not 0 <= w < len(words) for w in word_ids):
        raise CourseError(f"word_ids point past the {len(words)} words given: pass the same words the "
                          "tokenizer was called with (is_split_into_words=True).")
    return [0 if w is None else word_shape(words[w]) for w in word_ids]


def group_entities(words, tags, names=None) -> list[tuple[str, str]]:
    """Inference output as a person reads it: ``[(type, "the words"), ...]`` from one word-level
    BIO sequence -- the word-level counterpart of transformers' pipeline
    ``aggregation_strategy="first"`` (each word takes its first piece's label)."""
    if len(words) != len(tags):
        raise CourseError(f"{len(words)} words but {len(tags)} tags: give one tag per word.")
    return [(typ, " ".join(words[a:b])) for typ, a, b in sorted(bio_spans(tags, names), key=lambda s: s[1])]


def _answer_tokens(offsets, a0: int, a1: int) -> list[int]:
    """The context tokens (``offsets`` not ``None``) whose characters overlap ``[a0, a1)``, in order."""
    return [j for j, o in enumerate(offsets) if o is not None and o[0] < a1 and o[1] > a0]


def qa_features(tokenizer, questions, contexts, answers=None, answer_starts=None, max_length: int = 128) -> dict:
    """Tokenise (question, context) pairs; with answers, add ``start_positions``/``end_positions``.

    The answer's characters ``[answer_start, answer_start + len(answer))`` are mapped to the
    first and last context tokens that overlap them, through ``offset_mapping`` and
    ``sequence_ids`` (1 marks context tokens). A pair whose answer was truncated away raises.
    """
    if not questions or len(questions) != len(contexts):
        raise CourseError("qa_features needs as many contexts as questions (and at least one).")
    enc = tokenizer(list(questions), list(contexts), truncation="only_second", max_length=max_length,
                    padding=True, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")
    if answers is None:
        enc["offset_mapping"] = offsets
        return enc
    starts, ends = [], []
    for i, (ans, a0) in enumerate(zip(answers, answer_starts)):
        context_offsets = [tuple(o) if s == 1 else None for s, o in zip(enc.sequence_ids(i), offsets[i].tolist())]
        tok = _answer_tokens(context_offsets, a0, a0 + len(ans))
        if not tok:
            raise CourseError(f"Example {i}: the answer {ans!r} is not inside the (truncated) context; "
                              f"raise max_length (now {max_length}) or use a document stride.")
        starts.append(tok[0])
        ends.append(tok[-1])
    import torch
    enc["start_positions"] = torch.tensor(starts)
    enc["end_positions"] = torch.tensor(ends)
    enc["offset_mapping"] = offsets
    return enc


def best_span(start_logits, end_logits, allowed=None, max_answer_tokens: int = 30) -> tuple[int, int]:
    """``(start, end)`` maximising ``start_logits[s] + end_logits[e]`` with ``s <= e < s + max_answer_tokens``.

    ``allowed``: a boolean mask of positions an answer may use (the context tokens)."""
    import torch

    s, e = torch.as_tensor(start_logits).float(), torch.as_tensor(end_logits).float()
    n = len(s)
    score = s[:, None] + e[None, :]
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    ok = (j >= i) & (j < i + max_answer_tokens)
    if allowed is not None:
        a = torch.as_tensor(allowed, dtype=torch.bool)
        ok &= a[:, None] & a[None, :]
    if not ok.any():
        raise CourseError("No position may start an answer: is the context empty?")
    flat = score.masked_fill(~ok, float("-inf")).argmax()
    return int(flat // n), int(flat % n)


def _normalise(text: str) -> list[str]:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def squad_em_f1(prediction: str, references) -> tuple[float, float]:
    """Exact match (0 or 1) and token F1 (0..1) of one answer, as the official SQuAD v1.1 evaluation
    script defines them: both texts normalised (lower case, punctuation and the articles a/an/the
    removed, whitespace collapsed); F1 from the bag of shared tokens (0 when none is shared); with
    several reference answers (SQuAD's dev set has up to 5 per question), the best score over them."""
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise CourseError("A question needs at least one reference answer.")
    pt = _normalise(prediction)
    em = f1 = 0.0
    for r in refs:
        rt = _normalise(r)
        em = max(em, float(pt == rt))
        common = sum((Counter(pt) & Counter(rt)).values())
        if common:
            prec, rec = common / len(pt), common / len(rt)
            f1 = max(f1, 2 * prec * rec / (prec + rec))
    return em, f1


def squad_scores(predictions, references) -> dict:
    """SQuAD v1.1's exact match and F1 (:func:`squad_em_f1`), averaged over the questions, in percent.

    ``references``: one answer (a string) or a list of acceptable answers per prediction."""
    if len(predictions) != len(references) or not predictions:
        raise CourseError("squad_scores needs equally many predictions and references (at least one).")
    scores = [squad_em_f1(p, r) for p, r in zip(predictions, references)]
    n = len(scores)
    return {"exact_match": 100 * sum(e for e, _ in scores) / n, "f1": 100 * sum(f for _, f in scores) / n}


def squad_comparison(predictions, baseline, references, n_boot: int = 1000, seed: int = 0) -> dict:
    """A QA system against a baseline on the same questions, with SQuAD's EM and F1 in percent.

    Returns ``per_question`` (n x 2: EM, F1 of each question) and ``baseline_per_question``, 95 %
    bootstrap intervals ``em``, ``f1`` and ``baseline_f1``, and ``gain``: F1(system) - F1(baseline)
    with a *paired* interval (each resample draws the same questions for both)."""
    if not (len(predictions) == len(baseline) == len(references)) or not references:
        raise CourseError(f"squad_comparison needs one prediction, one baseline answer and one set of references "
                          f"per question: got {len(predictions)}, {len(baseline)} and {len(references)}.")
    ours = 100 * np.array([squad_em_f1(p, r) for p, r in zip(predictions, references)])
    base = 100 * np.array([squad_em_f1(p, r) for p, r in zip(baseline, references)])
    ci = lambda *cols, fn=np.mean: bootstrap_ci(fn, *cols, n_boot=n_boot, seed=seed)
    return {"per_question": ours, "baseline_per_question": base,
            "em": ci(ours[:, 0]), "f1": ci(ours[:, 1]), "baseline_f1": ci(base[:, 1]),
            "gain": ci(ours[:, 1], base[:, 1], fn=lambda a, b: a.mean() - b.mean())}


def qa_windows(tokenizer, questions, contexts, answer_starts=None, answers=None, max_length: int = 256,
               stride: int = 64) -> dict:
    """Cut (question, context) pairs into features a model can read: ``[CLS] question [SEP] window [SEP]``.

    A context longer than ``max_length`` allows becomes several **overlapping windows**, each
    sharing ``stride`` tokens with the next (the tokenizer's ``return_overflowing_tokens``), so an
    answer cut by one window's edge lies whole in another. Returns a dict of lists, one entry
    per feature: ``input_ids``, ``token_type_ids``, ``example`` (the index of the pair it came
    from), ``offsets`` (each token's ``(start, end)`` characters in its context; ``None`` for
    question and special tokens). With ``answer_starts``/``answers`` (characters), also
    ``start_positions``/``end_positions``: the first and last token of the answer in this window,
    or ``(0, 0)`` -- the [CLS] token -- when the answer is not wholly inside it.
    """
    if not questions or len(questions) != len(contexts):
        raise CourseError("qa_windows needs as many contexts as questions (and at least one).")
    if (answer_starts is None) != (answers is None):
        raise CourseError("Give both answer_starts and answers (the answer texts), or neither.")
    if not isinstance(stride, int) or not 0 <= stride < max_length // 2:
        raise CourseError(f"stride (tokens shared by neighbouring windows) must be a whole number from 0 to "
                          f"{max_length // 2 - 1} for max_length={max_length}, not {stride!r}.")
    enc = tokenizer(list(questions), list(contexts), truncation="only_second", max_length=max_length,
                    stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    out = {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
           "example": list(enc["overflow_to_sample_mapping"]), "offsets": []}
    for f in range(len(enc["input_ids"])):
        out["offsets"].append([tuple(o) if s == 1 else None
                               for s, o in zip(enc.sequence_ids(f), enc["offset_mapping"][f])])
    if answers is not None:
        if len(answers) != len(questions) or len(answer_starts) != len(questions):
            raise CourseError("qa_windows needs one answer and one answer_start per question.")
        for i, (a0, ans) in enumerate(zip(answer_starts, answers)):
            if not ans or not 0 <= a0 <= len(contexts[i]) - len(ans) or contexts[i][a0:a0 + len(ans)] != ans:
                raise CourseError(f"Question {i}: the answer {ans!r} is not at character {a0} of its context "
                                  f"(found {contexts[i][a0:a0 + len(ans)]!r}); give each answer's text and its "
                                  "first character in the context (SQuAD's answers['answer_start']).")
        out["start_positions"], out["end_positions"] = [], []
        for ex, offs in zip(out["example"], out["offsets"]):
            a0 = answer_starts[ex]
            a1 = a0 + len(answers[ex])
            inside = [j for j, o in enumerate(offs) if o is not None]
            if inside and offs[inside[0]][0] <= a0 and offs[inside[-1]][1] >= a1:
                tok = _answer_tokens(offs, a0, a1)
                out["start_positions"].append(tok[0])
                out["end_positions"].append(tok[-1])
            else:
                out["start_positions"].append(0)
                out["end_positions"].append(0)
    return out


def qa_nbest(start_logits, end_logits, offsets, n_best: int = 20, max_answer_tokens: int = 30) -> list:
    """Candidate answers of one feature: ``(score, char_start, char_end)``, best first.

    Only the ``n_best`` highest start and end scores are paired: a shortcut, not an exhaustive
    search (a valid pair outside them can score higher when the top ones pair badly;
    :func:`best_span` searches every pair, and notebook 17 measures how often they differ). A pair
    is valid when both tokens are in the context (``offsets`` not ``None``), the start is not after
    the end, and the span has at most ``max_answer_tokens`` tokens. The score is ``start + end``."""
    if not isinstance(n_best, int) or n_best < 1:
        raise CourseError(f"n_best must be a whole number >= 1 (20 is usual), not {n_best!r}.")
    import torch

    s = torch.as_tensor(start_logits).float()[:len(offsets)]
    e = torch.as_tensor(end_logits).float()[:len(offsets)]
    k = min(n_best, len(s))
    ends = e.topk(k).indices.tolist()
    cands = []
    for i in s.topk(k).indices.tolist():
        for j in ends:
            if offsets[i] is None or offsets[j] is None or j < i or j - i + 1 > max_answer_tokens:
                continue
            cands.append((float(s[i] + e[j]), offsets[i][0], offsets[j][1]))
    return sorted(cands, key=lambda c: -c[0])[:n_best]


def qa_answers(start_logits, end_logits, windows: dict, contexts, n_best: int = 20,
               max_answer_tokens: int = 30) -> list[list[tuple[float, str, int]]]:
    """The n-best answers of every example, gathered **across its features** (windows).

    ``start_logits``/``end_logits``: one row per feature of ``windows`` (:func:`qa_windows`),
    padding beyond a feature's length ignored. Returns, per example (in the order of
    ``contexts``), a list of ``(score, answer text, first character)`` best first; ``[0][1]`` is
    the prediction. An example with no valid span in any window gets ``[(-inf, "", 0)]``."""
    if windows["example"] and max(windows["example"]) >= len(contexts):
        raise CourseError(f"The windows come from {max(windows['example']) + 1} questions but {len(contexts)} "
                          "contexts were given: pass the contexts the windows were made from, in the same order.")
    if len(start_logits) != len(windows["offsets"]) or len(end_logits) != len(windows["offsets"]):
        raise CourseError(f"Expected one row of logits per feature ({len(windows['offsets'])}); got "
                          f"{len(start_logits)} and {len(end_logits)}.")
    per = [[] for _ in contexts]
    for f, ex in enumerate(windows["example"]):
        for score, a, b in qa_nbest(start_logits[f], end_logits[f], windows["offsets"][f], n_best, max_answer_tokens):
            per[ex].append((score, contexts[ex][a:b], a))
    return [sorted(c, key=lambda x: -x[0])[:n_best] or [(float("-inf"), "", 0)] for c in per]


_NOT_AN_END = "".join(rf"(?<!\b{a}\.)" for a in ("Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "No", "vs", "Mt", "Gen", "Col",
                                                      "Fig", "Inc", "Co", "Ltd", "Jan", "Feb", "Aug", "Sept", "Oct", "Nov",
                                                      "Dec")) + r"(?<!\b[A-Z]\.)"
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)]))" + _NOT_AN_END + r"\s+(?=[A-Z0-9\"'(])")


def sentence_spans(context: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` characters of each sentence of ``context``: a sentence ends at ., ! or ?
    followed by a space and a capital letter, digit or quote, not after a common abbreviation such
    as "Mr." or an initial. A rule, good enough to sort QA errors by sentence."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(context):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(context.rstrip())))
    return [(a, b) for a, b in spans if b > a]


def first_sentence(context: str) -> str:
    """The first sentence of a context (:func:`sentence_spans`): the answer of SQuAD's simplest baseline."""
    context = context.strip()
    spans = sentence_spans(context)
    return context[spans[0][0]:spans[0][1]] if spans else ""


QA_ERROR_KINDS = ("exact", "boundary", "right sentence", "wrong sentence")


def qa_error_kind(context: str, prediction: str, pred_start: int, answers, answer_starts) -> str:
    """Sort one extractive-QA answer into a kind (notebook 17), from characters, not words:

    ``"exact"`` -- exact match with a reference (:func:`squad_em_f1`); ``"boundary"`` -- the
    predicted characters overlap a reference's but start or stop elsewhere; ``"right sentence"`` --
    no overlap, but the whole prediction lies in a sentence that holds a reference
    (:func:`sentence_spans`); ``"wrong sentence"`` -- anywhere else."""
    if len(answers) != len(answer_starts) or not answers:
        raise CourseError("Give each reference answer with its first character (answers and answer_starts alike).")
    if squad_em_f1(prediction, answers)[0] == 1:
        return "exact"
    p0, p1 = pred_start, pred_start + len(prediction)
    if any(p0 < a0 + len(a) and a0 < p1 for a, a0 in zip(answers, answer_starts)):
        return "boundary"
    for s, e in sentence_spans(context):
        if s <= p0 and p1 <= e and any(s <= a0 < e for a0 in answer_starts):
            return "right sentence"
    return "wrong sentence"


def prompt_target_example(tokenizer, prompt: str, target: str, max_length: int = 64) -> dict:
    """``input_ids`` = prompt + target + end-of-text; ``labels`` = -100 on the prompt, the target's
    ids after it: a decoder learns to continue a prompt with its target, not to repeat prompts."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    t = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(p) >= max_length:
        raise CourseError(f"The prompt alone has {len(p)} tokens; max_length is {max_length}.")
    ids = (p + t)[:max_length]
    labels = ([-100] * len(p) + t)[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
