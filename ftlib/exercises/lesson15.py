"""Checks for the exercises of lesson 15 (named entities)."""
from ftlib.exercises import Wrong, exercise


@exercise("15.1")
def align_all(fn):
    from ftlib.tasks import NER_TAGS, align_labels

    cases = [([None, 0, 0, 1, 2, 2, 2, None], [1, 0, 3]),        # B-PER split in two, O, B-LOC in three
             ([None, 0, 1, 1, None], [5, 6]),                   # B-ORG, I-ORG split in two
             ([None, 0, None, None], [0])]                      # with padding positions
    for word_ids, labels in cases:
        want = align_labels(word_ids, labels, label_all_subtokens=True)
        got = list(fn(list(word_ids), list(labels)))
        if got != want:
            names = [NER_TAGS[x] if x >= 0 else -100 for x in want]
            hint = ""
            if len(got) != len(want):
                hint = " Return one label per token (len(word_ids) of them)."
            elif any(g == -100 and w != -100 for g, w in zip(got, want)):
                hint = " Only special tokens (word id None) get -100 here; later pieces get a label too."
            elif any(g != w and w >= 0 and NER_TAGS[w].startswith("I-") for g, w in zip(got, want)):
                hint = " A later piece of a B- word continues the entity: it gets the I- tag of the same type."
            raise Wrong(f"for word_ids {word_ids} and word labels {labels} expected {names}.{hint}")


@exercise("15.2")
def count_entities(n):
    from ftlib.tasks import bio_spans

    want = len(bio_spans("B-PER I-PER I-LOC O B-ORG B-ORG I-ORG O I-PER".split()))
    if n != want:
        hint = {3: " An I- tag that does not continue an entity of its own type starts a new one (I-LOC, I-PER).",
                4: " Two B-ORG in a row are two entities; and an I- after O starts one."}.get(n, "")
        raise Wrong(f"{n} is not the count.{hint}")
