"""Simple text augmentation, EDA-style (derived in notebook 08).

Four operations on a sentence's words (Wei & Zou 2019, "EDA: Easy Data Augmentation
Techniques for Boosting Performance on Text Classification Tasks"):

* :func:`synonym_swap` -- replace ``n`` words that have a synonym with one of them;
* :func:`random_insertion` -- insert a synonym of a random word at a random place, ``n`` times;
* :func:`random_swap` -- swap two random words, ``n`` times (the multiset of words is kept);
* :func:`random_deletion` -- drop each word with probability ``p`` (never all of them).

Synonyms come from :data:`SYNONYMS`, a small dictionary written for this course (so nothing
is downloaded; WordNet would give many more, and more wrong ones). Words are what
``str.split()`` gives, lowercase as in SST-2. Every function takes ``rng``: a seed (int) or
a ``random.Random``; the same seed gives the same result on every machine.
:func:`eda` applies one randomly chosen operation, :func:`augment_dataset` adds augmented
copies to a ``datasets.Dataset``. By default :func:`eda` *forces a change*: an operation that
happens to leave the sentence as it was (a deletion that deletes nothing, a swap of two equal
words, a synonym operation on a sentence without a dictionary word) is redrawn, so a copy is
identical to its original only when no operation can change it (one word, without a synonym).
:func:`unchanged_share` measures how many copies still are. Bad arguments raise
:class:`ftlib.CourseError`.
"""
from __future__ import annotations

import random

from ftlib.errors import CourseError

__all__ = ["SYNONYMS", "synonym_swap", "random_insertion", "random_swap", "random_deletion",
           "eda", "augment_dataset", "unchanged_share", "OPERATIONS"]

# Groups of words that can stand for each other in a film review without changing its
# sentiment. Every word of a group maps to the others (see _build).
_GROUPS = [
    # positive
    ["good", "fine", "decent", "solid"],
    ["great", "excellent", "terrific", "superb", "wonderful"],
    ["beautiful", "lovely", "gorgeous"],
    ["funny", "hilarious", "amusing", "witty"],
    ["fun", "enjoyable", "entertaining"],
    ["smart", "clever", "intelligent"],
    ["moving", "touching", "poignant"],
    ["best", "finest"],
    ["love", "adore"],
    ["like", "enjoy"],
    ["charming", "delightful", "engaging"],
    ["interesting", "intriguing", "compelling"],
    ["fresh", "original"],
    ["powerful", "strong", "forceful"],
    ["brilliant", "dazzling"],
    # negative
    ["bad", "poor", "awful", "lousy"],
    ["terrible", "dreadful", "horrible", "atrocious"],
    ["boring", "dull", "tedious", "tiresome"],
    ["stupid", "dumb", "silly"],
    ["worst", "weakest"],
    ["hate", "loathe"],
    ["mess", "muddle", "shambles"],
    ["predictable", "formulaic"],
    ["pointless", "aimless"],
    ["ugly", "unpleasant"],
    ["lame", "feeble", "weak"],
    ["annoying", "irritating"],
    # neutral
    ["film", "movie", "picture"],
    ["story", "tale", "narrative", "plot"],
    ["director", "filmmaker"],
    ["actor", "performer"],
    ["actors", "cast", "performers"],
    ["performance", "portrayal"],
    ["scene", "sequence"],
    ["audience", "viewers"],
    ["character", "role"],
    ["characters", "roles"],
    ["script", "screenplay"],
    ["ending", "finale", "conclusion"],
    ["time", "while"],
    ["big", "large", "huge"],
    ["small", "little", "tiny"],
    ["old", "aged"],
    ["new", "recent"],
    ["really", "truly", "genuinely"],
    ["very", "extremely", "highly"],
    ["quite", "rather", "fairly"],
    ["often", "frequently"],
    ["almost", "nearly"],
    ["seems", "appears"],
    ["makes", "renders"],
    ["shows", "displays", "reveals"],
    ["comedy", "farce"],
    ["drama", "melodrama"],
    ["world", "universe"],
    ["life", "existence"],
    ["people", "folks"],
    ["man", "guy", "fellow"],
    ["woman", "lady"],
    ["kids", "children"],
    ["work", "piece", "effort"],
    ["way", "manner"],
    ["thing", "matter"],
    ["enough", "sufficient"],
    ["hard", "difficult", "tough"],
    ["easy", "simple"],
    ["long", "lengthy"],
    ["short", "brief"],
]


def _build(groups) -> dict:
    table: dict[str, list[str]] = {}
    for group in groups:
        for word in group:
            table.setdefault(word, [])
            table[word] += [w for w in group if w != word and w not in table[word]]
    return table


#: word -> list of synonyms (sentiment-preserving, for film reviews; lowercase).
SYNONYMS: dict[str, list[str]] = _build(_GROUPS)


def _rng(rng) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return random.Random(rng)
    raise CourseError(f"rng must be a seed (int) or a random.Random, got {type(rng).__name__}: "
                      "pass rng=0, or rng=random.Random(0) to share one generator between calls.")


def _words(sentence) -> list[str]:
    if not isinstance(sentence, str):
        raise CourseError(f"Augmentation works on one sentence (a str), got {type(sentence).__name__}. "
                          "For a data set use augment_dataset(ds, ...).")
    words = sentence.split()
    if not words:
        raise CourseError("The sentence is empty (or only spaces): there is nothing to augment. "
                          "Filter empty rows out first (ds.filter(lambda r: r['sentence'].strip())).")
    return words


def _count(n, name="n") -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise CourseError(f"{name} must be a whole number >= 0 (how many changes), got {n!r}.")
    return n


def _synonyms(synonyms) -> dict:
    table = SYNONYMS if synonyms is None else synonyms
    if not isinstance(table, dict):
        raise CourseError("synonyms must be a dict mapping a word to a list of its synonyms.")
    return table


def synonym_swap(sentence: str, n: int = 1, rng=0, synonyms: dict | None = None) -> str:
    """Replace up to ``n`` different words that have synonyms by a random synonym each.

    Only words found in ``synonyms`` (default :data:`SYNONYMS`) change; a sentence with no
    such word comes back unchanged.
    """
    words, n, table, rng = _words(sentence), _count(n), _synonyms(synonyms), _rng(rng)
    candidates = [i for i, w in enumerate(words) if table.get(w)]
    rng.shuffle(candidates)
    for i in candidates[:n]:
        words[i] = rng.choice(table[words[i]])
    return " ".join(words)


def random_insertion(sentence: str, n: int = 1, rng=0, synonyms: dict | None = None) -> str:
    """Insert a synonym of a random word (one that has synonyms) at a random position, ``n`` times.

    A sentence without any word in ``synonyms`` comes back unchanged.
    """
    words, n, table, rng = _words(sentence), _count(n), _synonyms(synonyms), _rng(rng)
    for _ in range(n):
        candidates = [w for w in words if table.get(w)]
        if not candidates:
            break
        new = rng.choice(table[rng.choice(candidates)])
        words.insert(rng.randint(0, len(words)), new)
    return " ".join(words)


def random_swap(sentence: str, n: int = 1, rng=0) -> str:
    """Swap the words at two random positions, ``n`` times; the same words, in another order."""
    words, n, rng = _words(sentence), _count(n), _rng(rng)
    if len(words) < 2:
        return " ".join(words)
    for _ in range(n):
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


def random_deletion(sentence: str, p: float = 0.1, rng=0) -> str:
    """Drop each word with probability ``p``; if every word would go, keep one at random."""
    words, rng = _words(sentence), _rng(rng)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
        raise CourseError(f"p is the probability of deleting each word and must be in [0, 1), got {p!r} "
                          "(0.1 is EDA's usual value).")
    kept = [w for w in words if rng.random() >= p]
    return " ".join(kept) if kept else rng.choice(words)


OPERATIONS = ("synonym_swap", "random_insertion", "random_swap", "random_deletion")


def _can_change(words, op, table) -> bool:
    """Whether ``op`` can give a sentence other than ``words`` at all."""
    if op in ("synonym_swap", "random_insertion"):
        return any(table.get(w) for w in words)
    if op == "random_swap":
        return len(set(words)) > 1
    return len(words) > 1                                   # random_deletion never deletes every word


def _force_change(force_change) -> bool:
    if not isinstance(force_change, bool):
        raise CourseError(f"force_change must be True or False, got {force_change!r}.")
    return force_change


def eda(sentence: str, alpha: float = 0.1, rng=0, ops=OPERATIONS, synonyms: dict | None = None,
        force_change: bool = True) -> str:
    """One augmented version of ``sentence``: one operation from ``ops``, chosen at random.

    ``alpha`` sets the strength as in EDA: ``n = max(1, round(alpha * number of words))``
    changes for the swap/insert operations, ``p = alpha`` for deletion.

    ``force_change=True`` (default): draw only among the operations that can change this
    sentence, and draw again (operation and all) while the result equals the input, at most
    :data:`MAX_TRIES` times; if every try left it unchanged (rare: short sentences and a small
    ``alpha``), delete one random word. The sentence comes back unchanged only when no
    operation in ``ops`` can change it. ``force_change=False`` is plain EDA: one draw, which
    may change nothing.
    """
    words, rng = _words(sentence), _rng(rng)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha < 1:
        raise CourseError(f"alpha is the fraction of words to change and must be in (0, 1), got {alpha!r}.")
    ops = tuple(ops)
    unknown = [o for o in ops if o not in OPERATIONS]
    if not ops or unknown:
        raise CourseError(f"ops must be a non-empty selection of {OPERATIONS}, got {ops!r}.")
    n = max(1, round(alpha * len(words)))

    def once(op):
        if op == "synonym_swap":
            return synonym_swap(sentence, n, rng, synonyms)
        if op == "random_insertion":
            return random_insertion(sentence, n, rng, synonyms)
        if op == "random_swap":
            return random_swap(sentence, n, rng)
        return random_deletion(sentence, alpha, rng)

    if not _force_change(force_change):
        return once(rng.choice(ops))
    table = _synonyms(synonyms)
    usable = tuple(o for o in ops if _can_change(words, o, table))
    if not usable:
        return " ".join(words)
    for _ in range(MAX_TRIES):
        out = once(rng.choice(usable))
        if out != " ".join(words):
            return out
    if "random_deletion" in usable:                       # len(words) > 1: dropping one word is a change
        del words[rng.randrange(len(words))]
        return " ".join(words)
    return out


#: how many draws ``eda(..., force_change=True)`` makes before its fallback.
MAX_TRIES = 10


def unchanged_share(originals, copies) -> float:
    """The share of ``copies`` that equal their ``originals`` word for word (same order, same length).

    For ``augment_dataset(ds, n_aug=1)``: ``unchanged_share(ds["sentence"], out["sentence"][len(ds):])``.
    """
    originals, copies = list(originals), list(copies)
    if not originals or len(originals) != len(copies):
        raise CourseError(f"Need one copy per original sentence, got {len(originals)} originals and "
                          f"{len(copies)} copies (for n_aug > 1, compare each block of copies in turn).")
    return sum(a.split() == b.split() for a, b in zip(originals, copies)) / len(originals)


def augment_dataset(ds, n_aug: int = 1, alpha: float = 0.1, seed: int = 0, ops=OPERATIONS,
                    text_column: str = "sentence", synonyms: dict | None = None, force_change: bool = True):
    """``ds`` followed by ``n_aug`` augmented copies of every row (other columns copied).

    Copy ``k`` of row ``i`` is made with ``eda(..., force_change=force_change)`` from one
    ``random.Random(seed)`` used in order, so the result depends only on ``ds`` and the
    arguments. Only the training set should ever be augmented.
    """
    import datasets

    if not isinstance(ds, datasets.Dataset):
        raise CourseError(f"augment_dataset needs a datasets.Dataset, got {type(ds).__name__}.")
    if text_column not in ds.column_names:
        raise CourseError(f"No column {text_column!r}; the columns are {ds.column_names}. Pass text_column=...")
    _count(n_aug, "n_aug")
    _force_change(force_change)
    rng = _rng(seed)
    rows = ds.to_dict()
    out = {k: list(v) for k, v in rows.items()}
    for _ in range(n_aug):
        for i, text in enumerate(rows[text_column]):
            out[text_column].append(eda(text, alpha, rng, ops, synonyms, force_change))
            for k in rows:
                if k != text_column:
                    out[k].append(rows[k][i])
    return datasets.Dataset.from_dict(out, features=ds.features)
