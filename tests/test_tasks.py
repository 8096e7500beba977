"""ftlib.tasks: NER label alignment and entity F1, QA spans and scores, decoder examples."""
import os
import random
import re
import pytest
import torch

import ftlib
from ftlib import CourseError, tasks
from ftlib.train import fit


# Synthetic NER and QA data from templates (test names never occur in training): small, fast fixtures
# for the alignment, span-mapping and engine tests below. The lessons use WNUT-17 and SQuAD.
# two disjoint pools of names each: training sentences use the first, test sentences the second
_PEOPLE = (["Alice Martin", "Bob", "Chen Wei", "Maria Lopez", "John Smith", "Fatima", "Liu Yang", "Peter Brown",
            "Sara Ito", "Omar", "Anna Kowalski", "David Lee", "Nina", "Carlos Diaz", "Emma Wilson", "Raj Patel"],
           ["Hannah Scott", "Kenji", "Olga Petrova", "Mark Twain", "Zhang Min", "Lucy", "Ahmed Khan", "Ines Garcia"])
_PLACES = (["Paris", "New York", "Beijing", "Berlin", "Cairo", "Lima", "Tokyo", "Madrid", "Nairobi", "Toronto",
            "San Francisco", "Mumbai"],
           ["Oslo", "Buenos Aires", "Shanghai", "Dublin", "Hanoi", "Cape Town"])
_ORGS = (["Google", "United Nations", "Acme Corp", "Tsinghua University", "Red Cross", "Siemens",
          "World Bank", "Oxford University", "Tencent", "NASA"],
         ["Microsoft", "Louvre Museum", "Fudan University", "Unicef", "Nokia"])
_NER_TEMPLATES = [
    "{PER} works for {ORG} in {LOC} .", "{PER} moved to {LOC} last year .", "Yesterday {PER} met {PER} in {LOC} .",
    "{ORG} opened an office in {LOC} .", "{PER} joined {ORG} after leaving {ORG} .", "The mayor of {LOC} thanked {PER} .",
    "According to {ORG} , prices in {LOC} rose again .", "{PER} said the deal with {ORG} is off .",
    "We flew from {LOC} to {LOC} with {PER} .", "Researchers at {ORG} praised {PER} .",
    "{PER} lives near {LOC} and teaches at {ORG} .", "Nobody at {ORG} expected {PER} to win .",
]


def _pools(split):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}.")
    k = 0 if split == "train" else 1
    return {"PER": _PEOPLE[k], "LOC": _PLACES[k], "ORG": _ORGS[k]}


def make_ner_data(n: int, split: str = "train", seed: int = 0) -> dict:
    """``{"tokens": [[word, ...]], "tags": [[tag id, ...]]}`` for ``n`` synthetic sentences (BIO tags)."""
    if n < 1:
        raise ValueError("make_ner_data needs n >= 1.")
    rng, pools = random.Random(seed), _pools(split)
    tokens, tags = [], []
    for _ in range(n):
        words, labels = [], []
        for piece in rng.choice(_NER_TEMPLATES).split():
            m = re.fullmatch(r"\{(PER|LOC|ORG)\}", piece)
            if not m:
                words.append(piece)
                labels.append("O")
                continue
            kind = m.group(1)
            for i, w in enumerate(rng.choice(pools[kind]).split()):
                words.append(w)
                labels.append(("B-" if i == 0 else "I-") + kind)
        tokens.append(words)
        tags.append([tasks.NER_TAGS.index(t) for t in labels])
    return {"tokens": tokens, "tags": tags}


_QA_FACTS = [
    ("{PER} works for {ORG} in {LOC}.", [("Who works for {ORG}?", "PER"), ("Where does {PER} work?", "LOC"),
                                          ("Which organisation does {PER} work for?", "ORG")]),
    ("{PER} was born in {LOC} in {YEAR}.", [("Where was {PER} born?", "LOC"), ("When was {PER} born?", "YEAR"),
                                            ("Who was born in {LOC}?", "PER")]),
    ("In {YEAR}, {ORG} hired {PER} as a {JOB}.", [("What was {PER} hired as?", "JOB"),
                                                  ("Who did {ORG} hire?", "PER"), ("When was {PER} hired?", "YEAR")]),
    ("{PER}, a {JOB} from {LOC}, founded {ORG}.", [("Who founded {ORG}?", "PER"), ("What is {PER}'s job?", "JOB"),
                                                  ("Where is {PER} from?", "LOC")]),
]
_JOBS = (["teacher", "nurse", "pilot", "lawyer", "chemist", "farmer", "designer", "librarian"],
         ["baker", "architect", "journalist", "plumber"])
_FILLER = ["The weather was mild that week.", "Few people noticed at the time.", "It was a busy period.",
           "Later the story appeared in a local paper.", "Many details are still unknown."]


def make_qa_data(n: int, split: str = "train", seed: int = 0) -> dict:
    """``{"question", "context", "answer", "answer_start"}`` lists for ``n`` synthetic extractive-QA items.

    Each context is one fact between filler sentences; the answer is a span of the context."""
    if n < 1:
        raise ValueError("make_qa_data needs n >= 1.")
    rng, pools = random.Random(seed), dict(_pools(split))
    pools["JOB"] = _JOBS[0 if split == "train" else 1]
    out = {"question": [], "context": [], "answer": [], "answer_start": []}
    for _ in range(n):
        fact, questions = rng.choice(_QA_FACTS)
        values = {k: rng.choice(v) for k, v in pools.items()}
        values["YEAR"] = str(rng.randint(1950, 2020) if split == "train" else rng.randint(1900, 1949))
        sentence = fact.format(**values)
        sentence = sentence[0].upper() + sentence[1:]
        before, after = rng.sample(_FILLER, 2)
        context = " ".join(s for s in (before if rng.random() < 0.5 else "", sentence, after) if s)
        question, slot = rng.choice(questions)
        answer = values[slot]
        start = context.index(sentence) + sentence.index(answer) if answer in sentence else context.index(answer)
        out["question"].append(question.format(**values))
        out["context"].append(context)
        out["answer"].append(answer)
        out["answer_start"].append(start)
    return out


def test_synthetic_splits_do_not_share_names():
    train = make_ner_data(300, "train", seed=0)
    test = make_ner_data(100, "test", seed=1)

    def entities(d):
        return {" ".join(w[s:e]) for words, tags in zip(d["tokens"], d["tags"]) for _, s, e in tasks.bio_spans(tags, tasks.NER_TAGS)
                for w in [words]}
    assert entities(train) and entities(test)
    assert not entities(train) & entities(test)
    assert make_ner_data(5, seed=3) == make_ner_data(5, seed=3)
    with pytest.raises(ValueError):
        make_ner_data(5, split="dev")


def test_align_labels_first_piece_only(bert_tok):
    words, labels = ["Kowalski", "joined", "Tsinghua"], [1, 0, 5]
    enc = bert_tok(words, is_split_into_words=True)
    out = tasks.align_labels(enc.word_ids(), labels)
    assert len(out) == len(enc["input_ids"])
    assert out[0] == out[-1] == -100                       # [CLS], [SEP]
    kept = [x for x in out if x != -100]
    assert kept == labels                                  # one label per word, in order
    assert len(enc.tokens()) > len(words) + 2              # some word really was split


def test_align_labels_all_pieces_continue_entity():
    out = tasks.align_labels([None, 0, 0, 1, None], [1, 0], label_all_subtokens=True)
    assert out == [-100, 1, 2, 0, -100]                    # B-PER, then I-PER for its second piece
    with pytest.raises(CourseError):
        tasks.align_labels([0, 1, 2], [0, 0])


def test_bio_spans_and_entity_f1():
    assert tasks.bio_spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 2), ("LOC", 3, 4)}
    assert tasks.bio_spans(["I-ORG", "I-ORG", "B-ORG"]) == {("ORG", 0, 2), ("ORG", 2, 3)}
    assert tasks.bio_spans(["B-PER", "I-LOC"]) == {("PER", 0, 1), ("LOC", 1, 2)}
    r = tasks.entity_f1([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "O", "O", "B-LOC"]])
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(0.5) and r["entities"] == 2
    perfect = tasks.entity_f1([[1, 2, 0]], [[1, 2, 0]], tasks.NER_TAGS)
    assert perfect["f1"] == 1.0
    assert tasks.entity_f1([[0, 0]], [[0, 0]], tasks.NER_TAGS)["f1"] == 0.0
    # ids mean nothing without their names: WNUT-17's id 9 is B-person, the synthetic set has no id 9,
    # and its id 1 (B-PER) is WNUT's B-corporation -- so no default is guessed
    with pytest.raises(CourseError, match="needs the tag names"):
        tasks.entity_f1([[1, 2, 0]], [[1, 2, 0]])
    with pytest.raises(CourseError):
        tasks.entity_f1([[0, 1]], [[0]])


@pytest.mark.filterwarnings("ignore:.*ill-defined")        # seqeval on sequences with no entity: 0, as ours
def test_entity_f1_matches_seqeval_on_random_and_broken_sequences():
    """seqeval (default mode, the CoNLL script's rules) is the reference, on random BIO sequences that
    include what a tagger really produces: I- without a B-, I- of another type, entities at the ends."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    import random

    rng = random.Random(0)
    for trial in range(200):
        n_seqs = rng.randint(1, 5)
        true = [[rng.choice(tasks.NER_TAGS) for _ in range(rng.randint(1, 12))] for _ in range(n_seqs)]
        pred = [[t if rng.random() < 0.6 else rng.choice(tasks.NER_TAGS) for t in seq] for seq in true]
        ours = tasks.entity_f1(true, pred)
        assert ours["precision"] == pytest.approx(precision_score(true, pred), abs=1e-12), (true, pred)
        assert ours["recall"] == pytest.approx(recall_score(true, pred), abs=1e-12), (true, pred)
        assert ours["f1"] == pytest.approx(f1_score(true, pred), abs=1e-12), (true, pred)
    # what entity-level scoring rejects and a token-level score would accept: one tag short is a miss
    true, pred = [["B-PER", "I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O", "O"]]
    assert tasks.entity_f1(true, pred)["f1"] == f1_score(true, pred) == 0.0


def test_qa_features_map_answers_to_tokens(bert_tok):
    d = make_qa_data(20, "test", seed=2)
    f = tasks.qa_features(bert_tok, d["question"], d["context"], d["answer"], d["answer_start"])
    for i in range(20):
        s, e = int(f["start_positions"][i]), int(f["end_positions"][i])
        assert 0 < s <= e
        assert bert_tok.decode(f["input_ids"][i][s:e + 1]) == d["answer"][i].lower()
        off = f["offset_mapping"][i]
        assert d["context"][i][int(off[s, 0]):int(off[e, 1])] == d["answer"][i]
    with pytest.raises(CourseError):
        tasks.qa_features(bert_tok, ["Who?"], ["word " * 200 + "Bob is here."], ["Bob"], [1000], max_length=32)


def test_best_span_respects_order_and_mask():
    start = torch.tensor([0.0, 1.0, 0.0, 9.0])
    end = torch.tensor([0.0, 7.0, 0.0, 0.0])
    # argmax gives start 3, end 1: not a span. Valid spans: (3, 3) scores 9 + 0, (1, 1) 1 + 7
    assert tasks.best_span(start, end) == (3, 3)
    assert tasks.best_span(start, end, allowed=[True, True, False, False]) == (1, 1)
    assert tasks.best_span(start, torch.tensor([0.0, 7.0, 0.0, 9.5])) == (3, 3)
    assert tasks.best_span(torch.zeros(5), torch.arange(5.0), max_answer_tokens=2) in {(3, 4)}


def test_squad_scores():
    r = tasks.squad_scores(["The Eiffel Tower!", "Paris France"], ["eiffel tower", "Paris"])
    assert r["exact_match"] == pytest.approx(50.0)
    assert r["f1"] == pytest.approx(100 * (1.0 + 2 * 0.5 * 1.0 / 1.5) / 2)
    with pytest.raises(CourseError):
        tasks.squad_scores([], [])


def test_prompt_target_example_masks_prompt():
    tok = ftlib.load_tokenizer("course-gpt")
    ex = tasks.prompt_target_example(tok, "Chinese: 你好。\nEnglish:", " Hello.")
    n_prompt = len(tok("Chinese: 你好。\nEnglish:", add_special_tokens=False)["input_ids"])
    assert ex["labels"][:n_prompt] == [-100] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["input_ids"][-1] == tok.eos_token_id
    with pytest.raises(CourseError):
        tasks.prompt_target_example(tok, "word " * 100, " x", max_length=16)


def test_the_engine_trains_a_tagger_with_the_models_own_loss(bert_tok):
    ftlib.seed_everything(0)
    model = ftlib.load_model("course-bert", task="token-classification", num_labels=len(tasks.NER_TAGS))
    d = make_ner_data(16, seed=0)
    rows = []
    for words, tags in zip(d["tokens"], d["tags"]):
        enc = bert_tok(words, is_split_into_words=True, padding="max_length", max_length=24)
        rows.append({"input_ids": torch.tensor(enc["input_ids"]), "attention_mask": torch.tensor(enc["attention_mask"]),
                     "labels": torch.tensor(tasks.align_labels(enc.word_ids(), tags))})
    batch = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    losses = fit(model, [batch] * 8, task="model", lr=1e-3, warmup_ratio=0.0, device="cpu", progress=False,
                 verbose=False).step_loss
    assert len(losses) == 8 and losses[-1] < 0.5 * losses[0]
    with pytest.raises(CourseError):
        fit(model, [], task="model", progress=False)


WNUT = ["O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group", "I-group",
        "B-location", "I-location", "B-person", "I-person", "B-product", "I-product"]


@pytest.mark.filterwarnings("ignore:.*ill-defined")
def test_per_type_scores_match_seqeval_classification_report():
    """Per-type precision/recall/F1 equal seqeval's report on random WNUT-tag sequences with broken BIO."""
    import random
    from seqeval.metrics import classification_report
    rng = random.Random(3)
    true = [[rng.choice(WNUT) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    pred = [[t if rng.random() < 0.6 else rng.choice(WNUT) for t in s] for s in true]
    ours = tasks.entity_f1(true, pred, by_type=True)["per_type"]
    theirs = classification_report(true, pred, output_dict=True, zero_division=0)
    types = [t for t in theirs if t not in ("micro avg", "macro avg", "weighted avg")]
    assert sorted(types) == sorted(t for t in ours if ours[t]["entities"])
    for t in types:
        assert ours[t]["precision"] == pytest.approx(theirs[t]["precision"], abs=1e-12)
        assert ours[t]["recall"] == pytest.approx(theirs[t]["recall"], abs=1e-12)
        assert ours[t]["f1"] == pytest.approx(theirs[t]["f1-score"], abs=1e-12)
        assert ours[t]["entities"] == theirs[t]["support"]
    # the wrong answer it rejects: token-level F1 per type is another number
    flat_t = [x for s in true for x in s]
    flat_p = [x for s in pred for x in s]
    tok_tp = sum(a == b and a.endswith("person") for a, b in zip(flat_t, flat_p))
    tok_f1 = 2 * tok_tp / (sum(a.endswith("person") for a in flat_t) + sum(b.endswith("person") for b in flat_p))
    assert abs(tok_f1 - theirs["person"]["f1-score"]) > 1e-3


def test_ids_need_their_names_and_counts_give_the_same_f1():
    ids_t, ids_p = [[9, 10, 0, 7]], [[9, 0, 0, 7]]
    assert tasks.bio_spans(ids_t[0], WNUT) == {("person", 0, 2), ("location", 3, 4)}
    with pytest.raises(CourseError, match="names="):
        tasks.bio_spans([12, 13], WNUT)
    scores = tasks.entity_f1(ids_t, ids_p, WNUT)
    assert scores["f1"] == pytest.approx(0.5)
    correct, n_true, n_pred = tasks.entity_counts(ids_t, ids_p, WNUT)
    assert (correct, n_true, n_pred) == ([1], [2], [2])
    assert tasks.f1_from_counts(correct, n_true, n_pred) == pytest.approx(scores["f1"])
    assert tasks.f1_from_counts([0], [0], [0]) == 0.0


def test_entity_type_confusion_counts_types_misses_and_spurious():
    true = [["B-person", "I-person", "O", "B-location", "O", "B-product"]]
    pred = [["B-group", "I-group", "O", "B-location", "B-person", "O"]]
    types, m = tasks.entity_type_confusion(true, pred)
    at = {t: i for i, t in enumerate(types)}
    assert m[at["person"]][at["group"]] == 1          # right words, wrong type
    assert m[at["location"]][at["location"]] == 1
    assert m[at["product"]][len(types)] == 1          # missed
    assert m[len(types)][at["person"]] == 1           # spurious
    assert sum(map(sum, m)) == 4


def test_word_shapes_and_grouping():
    shapes = [tasks.SHAPES[tasks.word_shape(w)] for w in ["apple", "Apple", "NASA", "iPhone", "2017", "I", "@bob", "中", "中文"]]
    assert shapes == ["lower", "Capitalised", "UPPER", "other", "other", "Capitalised", "lower", "other", "other"]
    with pytest.raises(CourseError, match="same words"):
        tasks.token_shapes([None, 0, 2], ["one", "two"])
    assert tasks.token_shapes([None, 0, 0, 1, None], ["Toronto", "rocks"]) == [0, 2, 2, 1, 0]
    words = "Sarah went to New York".split()
    tags = ["B-person", "O", "O", "B-location", "I-location"]
    assert tasks.group_entities(words, tags) == [("person", "Sarah"), ("location", "New York")]
    with pytest.raises(CourseError, match="one tag per word"):
        tasks.group_entities(words, tags[:2])


def test_align_all_subtokens_reads_the_data_sets_own_names():
    # WNUT-17: 9 is B-person, 10 I-person. Without names the synthetic set would be read (9 is out of it).
    assert tasks.align_labels([None, 0, 0, 1, None], [9, 0], label_all_subtokens=True, names=WNUT) == [-100, 9, 10, 0, -100]
    # the wrong answer it rejects: each later piece kept as B- (every piece its own entity)
    assert tasks.align_labels([None, 0, 0, 1, None], [9, 0], label_all_subtokens=True, names=WNUT) != [-100, 9, 9, 0, -100]
    with pytest.raises(CourseError, match="-100"):
        tasks.bio_spans([9, -100], WNUT)


def test_lesson15_verdicts_fail_for_all_O_and_for_the_rule_itself():
    """Lesson 15 checks `f1.low > 0.2` and `gain over the capital-letter rule .low > 0`: predicting no entity,
    or the rule itself, fails both; the true tags pass; a half-right tagger is judged on the same sentences."""
    if not os.environ.get("FTLIB_DATA_DIR"):
        pytest.skip("the WNUT-17 mirror (FTLIB_DATA_DIR) is not here")
    test = ftlib.load_wnut17(source="mirror")["test"]
    names = test.features["ner_tags"].feature.names
    true = [list(t) for t in test["ner_tags"]]
    rule = [[names.index("B-person") if i and w[:1].isupper() else 0 for i, w in enumerate(words)]
            for words in test["tokens"]]
    rule_counts = tasks.entity_counts(true, rule, names)

    def verdict(pred):
        counts = tasks.entity_counts(true, pred, names)
        return tasks.entity_f1_interval(counts).low > 0.2, tasks.entity_f1_gain(counts, rule_counts).low > 0

    all_o = [[0] * len(t) for t in true]
    assert tasks.entity_f1_interval(tasks.entity_counts(true, all_o, names)).high == 0.0
    assert verdict(all_o) == (False, False)
    assert verdict(rule) == (False, False)            # its gain over itself is exactly 0
    # cell 21's first line, "more than 100 true entities found with the right type": all-O finds none
    right_type = lambda pred: int(torch.tensor(tasks.entity_type_confusion(true, pred, names)[1])[:-1, :-1].trace())
    assert right_type(all_o) == 0 and right_type(true) > 100
    assert verdict(true) == (True, True)
    # the truth on every other sentence, no entity on the rest: F1 2/3 on its half of the entities
    half = [t if i % 2 else [0] * len(t) for i, t in enumerate(true)]
    assert verdict(half) == (True, True)
    gain = tasks.entity_f1_gain(tasks.entity_counts(true, half, names), rule_counts)
    assert gain.estimate == pytest.approx(tasks.f1_from_counts(*tasks.entity_counts(true, half, names))
                                          - tasks.f1_from_counts(*rule_counts))
    with pytest.raises(CourseError, match="same sentences"):
        tasks.entity_f1_gain(rule_counts, tasks.entity_counts(true[:-1], rule[:-1], names))
    with pytest.raises(CourseError, match="three per-sentence count lists"):
        tasks.entity_f1_interval([[1, 2], [3, 4]])
