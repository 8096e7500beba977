"""ftlib.augment: EDA-style text augmentation."""
import random
from collections import Counter

import datasets
import pytest

from ftlib import CourseError
from ftlib.augment import (OPERATIONS, SYNONYMS, augment_dataset, eda, random_deletion, random_insertion,
                           random_swap, synonym_swap, unchanged_share)

S = "the film is a good and funny story with a great cast but a boring ending"


@pytest.mark.parametrize("op", [synonym_swap, random_insertion, random_swap])
def test_same_seed_same_result_other_seed_differs(op):
    outs = {op(S, 3, rng=seed) for seed in range(10)}
    assert op(S, 3, rng=7) == op(S, 3, rng=7) == op(S, 3, rng=random.Random(7))
    assert len(outs) > 1                      # the seed matters


def test_deletion_deterministic_and_never_empty():
    assert random_deletion(S, 0.5, rng=3) == random_deletion(S, 0.5, rng=3)
    for seed in range(200):
        out = random_deletion("one two", 0.99, rng=seed)
        assert out and out in ("one", "two", "one two")
    assert random_deletion("alone", 0.9, rng=0) == "alone"
    kept = random_deletion(S, 0.3, rng=1).split()
    assert 0 < len(kept) < len(S.split())
    # what is kept keeps its order
    it = iter(S.split())
    assert all(w in it for w in kept)
    assert random_deletion(S, 0.0, rng=5) == S


def test_swap_keeps_the_multiset_of_words():
    for seed in range(50):
        out = random_swap(S, 4, rng=seed)
        assert Counter(out.split()) == Counter(S.split())
    assert random_swap(S, 5, rng=0) != S
    assert random_swap("single", 3, rng=0) == "single"
    assert random_swap(S, 0, rng=0) == S


def test_synonym_swap_uses_the_dictionary():
    words = S.split()
    for seed in range(30):
        out = synonym_swap(S, 2, rng=seed).split()
        assert len(out) == len(words)
        changed = [(a, b) for a, b in zip(words, out) if a != b]
        assert 1 <= len(changed) <= 2
        for old, new in changed:
            assert new in SYNONYMS[old]
    table = {"cat": ["feline"]}
    assert synonym_swap("the cat sat", 1, rng=0, synonyms=table) == "the feline sat"
    assert synonym_swap("no entries here", 3, rng=0, synonyms=table) == "no entries here"


def test_dictionary_is_symmetric_and_clean():
    for word, syns in SYNONYMS.items():
        assert syns and word not in syns and word == word.lower()
        for s in syns:
            assert word in SYNONYMS[s]


def test_insertion_adds_synonyms_of_words_in_the_sentence():
    words = S.split()
    out = random_insertion(S, 3, rng=4).split()
    assert len(out) == len(words) + 3
    extra = Counter(out) - Counter(words)
    assert sum(extra.values()) == 3
    for w in extra:
        assert any(w in SYNONYMS.get(v, []) for v in out)
    assert random_insertion("zzz qqq", 2, rng=0) == "zzz qqq"


@pytest.mark.parametrize("call", [
    lambda: random_deletion(S, 1.0),
    lambda: random_deletion(S, -0.1),
    lambda: random_deletion("   ", 0.1),
    lambda: random_swap(["a", "b"], 1),
    lambda: random_swap(S, -1),
    lambda: synonym_swap(S, 1.5),
    lambda: synonym_swap(S, 1, rng="seed"),
    lambda: random_insertion(S, 1, synonyms=["good"]),
    lambda: eda(S, alpha=0),
    lambda: eda(S, ops=("shuffle_all",)),
    lambda: augment_dataset({"sentence": [S]}),
])
def test_bad_arguments_raise_course_error(call):
    with pytest.raises(CourseError):
        call()


def test_eda_and_augment_dataset():
    ds = datasets.Dataset.from_dict({"sentence": [S, "a dull , predictable movie", "fine"],
                                     "label": [1, 0, 1]})
    out = augment_dataset(ds, n_aug=2, seed=0)
    assert len(out) == 9
    assert list(out["sentence"])[:3] == list(ds["sentence"]) and list(out["label"]) == [1, 0, 1] * 3
    assert list(augment_dataset(ds, n_aug=2, seed=0)["sentence"]) == list(out["sentence"])
    assert list(augment_dataset(ds, n_aug=2, seed=1)["sentence"]) != list(out["sentence"])
    assert all(s.strip() for s in out["sentence"])
    assert len(augment_dataset(ds, n_aug=0)) == 3
    only_swaps = augment_dataset(ds, n_aug=1, seed=3, ops=("random_swap",))
    for a, b in zip(ds["sentence"], list(only_swaps["sentence"])[3:]):
        assert Counter(a.split()) == Counter(b.split())
    assert set(OPERATIONS) == {"synonym_swap", "random_insertion", "random_swap", "random_deletion"}
    # every operation gets chosen over many draws
    rng = random.Random(0)
    lengths = {len(eda(S, 0.2, rng).split()) for _ in range(100)}
    n = len(S.split())
    assert min(lengths) < n < max(lengths)


# ---- forcing a change (lesson 08: plain EDA left a third of the copies byte-identical) ----------------
SHORT = ["empty stud knockabout", "tiresomely", "a dull movie", "very very", ", but it also does the last thing we need"]


def test_plain_eda_can_return_the_sentence_unchanged():
    # the defect force_change removes: one draw, e.g. a deletion that deletes nothing
    s = "the story is predictable but the cast is great and the ending is moving"
    assert eda(s, alpha=0.2, rng=0, force_change=False) == s
    assert eda(s, alpha=0.2, rng=0) != s
    copies = [eda(x, 0.1, random.Random(k), force_change=False) for k in range(20) for x in SHORT]
    assert sum(c == x for c, x in zip(copies, SHORT * 20)) > 10


def test_forced_eda_changes_every_sentence_that_can_change():
    rng = random.Random(0)
    for _ in range(30):
        for x in SHORT:
            out = eda(x, 0.1, rng)
            if x == "tiresomely":                       # one word, no synonym: nothing can change it
                assert out == x
            else:
                assert out.split() != x.split(), x
    # only operations that cannot change the sentence: it comes back as it was
    assert eda("zzz qqq", 0.1, rng=0, ops=("synonym_swap", "random_insertion")) == "zzz qqq"
    assert eda("same same", 0.1, rng=0, ops=("random_swap",)) == "same same"
    # deletion that keeps drawing nothing falls back to dropping one word
    assert all(len(eda(S, 0.01, rng=k, ops=("random_deletion",)).split()) < len(S.split()) for k in range(20))


def test_augment_dataset_forces_changes_and_unchanged_share_counts_them():
    ds = datasets.Dataset.from_dict({"sentence": SHORT, "label": [0, 0, 0, 1, 1]})
    forced = augment_dataset(ds, n_aug=1, seed=0)
    copies = list(forced["sentence"])[len(SHORT):]
    assert unchanged_share(SHORT, copies) == 1 / 5             # only "tiresomely"
    plain = augment_dataset(ds, n_aug=1, seed=0, force_change=False)
    assert unchanged_share(SHORT, list(plain["sentence"])[len(SHORT):]) > 1 / 5
    assert unchanged_share(["a b"], ["a  b"]) == 1.0           # word for word, not byte for byte
    with pytest.raises(CourseError, match="one copy per original"):
        unchanged_share(SHORT, copies[:2])
    with pytest.raises(CourseError, match="force_change must be True or False"):
        augment_dataset(ds, force_change="yes")
    with pytest.raises(CourseError, match="force_change must be True or False"):
        eda(S, force_change=1)
