"""Checks for the exercises of notebook 05 (data)."""
from __future__ import annotations

import math

import numpy as np

from ftlib.exercises import Wrong, close, exercise


# ---- 05.1: padding fraction of a batch order ---------------------------------------------------
def padding_fraction_reference(lengths, order, batch_size) -> float:
    """Consecutive batches of ``order``, each padded to its longest row: the share of padding slots."""
    slots = real = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start:start + batch_size]]
        slots += len(batch) * max(batch)
        real += sum(batch)
    return 1 - real / slots


def _padding_cases():
    rng = np.random.default_rng(41)
    lengths = [int(x) for x in rng.integers(3, 60, size=103)]
    order = [int(i) for i in rng.permutation(103)]
    by_length = sorted(range(103), key=lambda i: lengths[i])
    return [(lengths, order, 16), (lengths, order, 7), (lengths, by_length, 10)]


@exercise("05.1")
def check_padding_fraction(padding_fraction):
    if not callable(padding_fraction):
        raise Wrong("Answer with your function: answer = padding_fraction.")
    for lengths, order, bs in _padding_cases():
        got = float(padding_fraction(list(lengths), list(order), bs))
        want = padding_fraction_reference(lengths, order, bs)
        if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
            continue
        real = sum(lengths)
        if math.isclose(got, 1 - want, rel_tol=1e-9):
            raise Wrong("That is the share of REAL tokens; the exercise asks for the share of padding.")
        if math.isclose(got, 1 - real / (len(lengths) * max(lengths)), rel_tol=1e-9):
            raise Wrong("You padded every row to the longest row of the whole data set; dynamic padding pads "
                        "each batch only to its own longest row.")
        n_full = len(order) // bs * bs
        full_only = padding_fraction_reference(lengths, order[:n_full], bs)
        padded_last = sum(bs * max(lengths[i] for i in order[s:s + bs]) for s in range(0, len(order), bs))
        if math.isclose(got, full_only, rel_tol=1e-9) or math.isclose(got, 1 - real / padded_last, rel_tol=1e-9):
            raise Wrong(f"{len(order)} rows in batches of {bs} leave a last, smaller batch of "
                        f"{len(order) - n_full}: count it, with its own size.")
        per_batch = [padding_fraction_reference(lengths, order[s:s + bs], bs) for s in range(0, len(order), bs)]
        if math.isclose(got, sum(per_batch) / len(per_batch), rel_tol=1e-9):
            raise Wrong("You averaged the batches' padding fractions; divide the total padding slots by the "
                        "total slots instead (batches of different widths weigh differently).")
        close(got, want, what=f"padding_fraction with batch size {bs}", rtol=1e-9)


# ---- 05.2: the smallest max_length that truncates at most a given share ------------------------
def smallest_max_length_reference(token_lengths, at_most: float = 0.01) -> int:
    lengths = np.asarray(token_lengths)
    m = 1
    while (lengths > m).mean() > at_most:       # a row of exactly m tokens is not truncated
        m += 1
    return m


def _length_cases():
    rng = np.random.default_rng(42)
    a = rng.integers(2, 80, size=500)
    b = np.concatenate([np.full(95, 10), np.arange(11, 16)])      # exactly 5 rows longer than 10
    c = rng.poisson(20, size=1000) + 2
    return [(a, 0.01), (b, 0.05), (b, 0.04), (c, 0.0), (c, 0.1)]


@exercise("05.2")
def check_smallest_max_length(smallest_max_length):
    if not callable(smallest_max_length):
        raise Wrong("Answer with your function: answer = smallest_max_length.")
    for lengths, at_most in _length_cases():
        got = smallest_max_length(lengths.copy(), at_most)
        want = smallest_max_length_reference(lengths, at_most)
        if not isinstance(got, (int, np.integer)) and not (isinstance(got, float) and got.is_integer()):
            raise Wrong(f"max_length is a whole number of tokens, got {got!r}.")
        got = int(got)
        if got == want:
            continue
        truncated = (lengths > got).mean()
        if truncated > at_most:
            raise Wrong(f"At max_length={got}, {truncated:.2%} of the rows are longer (more than {at_most:.2%}). "
                        "A row is truncated only when it has MORE than max_length tokens.")
        if got == want + 1:
            raise Wrong(f"{got - 1} already truncates at most {at_most:.2%}: a row of exactly max_length tokens "
                        "fits, so compare with > (not >=).")
        raise Wrong(f"{got} works, but a smaller max_length truncates at most {at_most:.2%} too: find the smallest.")


# ---- 05.3: a held-out split without the leak ---------------------------------------------------
VAL = ["a gorgeous film", "the acting", "not worth the ticket", "dull", "a triumph of style",
       "oddly moving", "the acting is superb"]
TRAIN = ["the acting is superb , the plot is not", "a dull , plodding mess", "oddly moving",
         "in the end a triumph", "gorgeous"]


def drop_leaks_reference(val_sentences, train_sentences) -> list[str]:
    """The validation phrases that occur nowhere inside (or as) a training phrase, in their order."""
    return [s for s in val_sentences if not any(s in t for t in train_sentences)]


@exercise("05.3")
def check_drop_leaks(drop_leaks):
    if not callable(drop_leaks):
        raise Wrong("Answer with your function: answer = drop_leaks.")
    from ftlib.data import drop_leaks as kept_in_ftlib
    if drop_leaks is kept_in_ftlib:
        raise Wrong("That is ftlib's drop_leaks, which lesson 06 uses once you have written your own: write it here.")
    got = list(drop_leaks(list(VAL), list(TRAIN)))
    want = drop_leaks_reference(VAL, TRAIN)
    if got == want:
        return
    if sorted(got) == sorted(want):
        raise Wrong("Right phrases, but keep them in the order of val_sentences.")
    if got == [s for s in VAL if s not in TRAIN]:
        raise Wrong("You dropped exact duplicates only. SST-2's training phrases are pieces of whole sentences: "
                    "a validation phrase also leaks when it occurs INSIDE a longer training phrase "
                    "(e.g. 'the acting' inside 'the acting is superb , the plot is not').")
    if got == [s for s in VAL if not any(t in s for t in TRAIN)]:
        raise Wrong("The other way round: drop a validation phrase when it occurs inside a training phrase "
                    "(s in t), not when a training phrase occurs inside it.")
    if got == [s for s in VAL if not any(s in t for t in TRAIN if len(t) > len(s))]:
        raise Wrong("An identical training phrase is a leak too: drop the validation phrases that equal a "
                    "training phrase as well.")
    missing = [s for s in want if s not in got]
    extra = [s for s in got if s not in want]
    raise Wrong(f"On a toy example: kept {extra} that should go, dropped {missing} that should stay.")
