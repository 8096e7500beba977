"""Subword tokenizers in plain Python: BPE training and encoding, WordPiece encoding.

A word-level vocabulary cannot cover every word a model will meet, and a character-level one
makes sequences long. Subword tokenizers sit in between: frequent words stay whole, rare words
are cut into frequent pieces (``"tokenization"`` -> ``token`` ``ization``). This module derives
the two algorithms the course's models use, in plain code that is checked, piece for piece,
against the Hugging Face ``tokenizers`` library (``tests/test_subwords.py``):

* :func:`train_bpe` / :func:`bpe_encode` -- **byte-pair encoding** (Sennrich et al. 2016, the
  family of GPT-2, RoBERTa and Llama's tokenizers). Training starts from single characters and
  repeatedly merges the most frequent adjacent pair of symbols into a new symbol, recording each
  merge; encoding replays the recorded merges on a new word, earliest-learned first.
* :func:`wordpiece_encode` -- **WordPiece** encoding as BERT does it (course-bert's tokenizer):
  greedy longest-match-first against a fixed vocabulary, pieces after the first marked ``##``.
* :func:`pre_tokenize` / :func:`word_counts` -- the step before both: cut text into words. Subword
  algorithms never merge across words, so BPE is trained on a word-frequency table.

The pre-tokenizer
-----------------
:func:`pre_tokenize` is ``tokenizers.pre_tokenizers.Whitespace``: the regular expression
``\\w+|[^\\w\\s]+``, i.e. runs of letters/digits/underscore, and runs of punctuation, with
whitespace dropped (``"Speak, speak."`` -> ``Speak`` ``,`` ``speak`` ``.``). Python's ``re``
and the Rust ``regex`` crate that ``tokenizers`` uses agree on ``\\w`` for ASCII and for letters,
accented ones included; they differ on combining marks (a decomposed ``é``, Hindi's vowel signs:
word characters for Rust, not for Python) and on digits such as ``"²"`` (the other way round), so
compare on such text before relying on equality there.

How BPE training breaks ties (and why it matters)
-------------------------------------------------
"Merge the most frequent pair" is not yet an algorithm: on real text many pairs are equally
frequent, and which one is merged first changes every merge after it. ``tokenizers``'
``BpeTrainer`` gives each symbol an integer id -- special tokens first, then the characters
of the corpus sorted by code point, then each new merged symbol in the order it was made -- and
among equally frequent pairs merges the one with the smallest ``(left id, right id)``. This module
does the same, so its merges equal ``tokenizers``' merges, in the same order.

End-of-word and continuing-subword markers
------------------------------------------
Sennrich et al. mark the last character of a word (``low`` -> ``l o w</w>``) so that ``est`` at
the end of a word and ``est`` inside one are different symbols; BERT-style tokenizers mark the
non-first characters instead (``l ##o ##w``). Both are supported (``end_of_word_suffix="</w>"``,
``continuing_subword_prefix="##"``), with ``tokenizers``' rules. The default is **no marker**
(``tokenizers``' default), and it is the convention the exact comparison uses, because:
``tokenizers`` gives the marked symbols (``w</w>``, ``##o``) their ids in the iteration order of
a Rust hash map, which changes from run to run -- so with a marker, ``tokenizers`` itself breaks
ties differently from one run to the next, and no fixed rule can always agree with it. Here the
marked symbols get their ids in sorted order instead (deterministic); passing ``symbol_order``
(the ids one ``tokenizers`` run chose, read from its vocabulary) reproduces that run exactly,
which shows that the ids are the whole difference. Without a marker, the pre-tokenizer already
keeps words apart, but the tokens no longer say where a word ended (decoding cannot put the
spaces back; byte-level BPE solves that with a space character ``Ġ`` inside the words).

Bad input (a vocabulary smaller than the alphabet, an empty corpus, something that is not text)
raises :class:`SubwordInputError` (a ``ValueError``) or :class:`SubwordTypeError` (a
``TypeError``); both are :class:`ftlib.CourseError`, the course's one error for a mistake.
"""
from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from ftlib.errors import CourseError

__all__ = ["pre_tokenize", "word_counts", "train_bpe", "BPEMerges", "bpe_encode", "wordpiece_encode",
           "SubwordInputError", "SubwordTypeError"]


class SubwordInputError(CourseError, ValueError):
    """A value this module cannot use (says what is wrong and what to do); a ``ValueError``."""


class SubwordTypeError(CourseError, TypeError):
    """An argument of the wrong type (says what was expected); a ``TypeError``."""


# tokenizers.pre_tokenizers.Whitespace: words (letters, digits, _) and runs of punctuation
_WHITESPACE_PRE_TOKENIZER = re.compile(r"\w+|[^\w\s]+")


def _what(obj) -> str:
    return f"{type(obj).__name__} {obj!r}" if len(repr(obj)) <= 60 else type(obj).__name__


def _check_str(value, name: str) -> str:
    if not isinstance(value, str):
        raise SubwordTypeError(f"{name} must be a str, not {_what(value)}.")
    return value


# ------------------------------------------------------------------------------- pre-tokenizing

def pre_tokenize(text: str) -> list[str]:
    """Cut ``text`` into words as ``tokenizers.pre_tokenizers.Whitespace`` does.

    Runs of word characters (``\\w``: letters, digits, underscore) and runs of other
    non-space characters become words; whitespace separates and is dropped:

    >>> pre_tokenize("First Citizen: we're all resolved!")
    ['First', 'Citizen', ':', 'we', "'", 're', 'all', 'resolved', '!']
    """
    return _WHITESPACE_PRE_TOKENIZER.findall(_check_str(text, "text"))


def word_counts(corpus: str | Iterable[str]) -> Counter:
    """The word-frequency table BPE trains on: how often each pre-tokenized word occurs.

    ``corpus`` is one string or an iterable of strings (lines, sentences, documents); each is
    cut with :func:`pre_tokenize`. Example: ``word_counts(["to be, or not to be"])`` is
    ``Counter({'to': 2, 'be': 2, ',': 1, 'or': 1, 'not': 1})``.
    """
    if isinstance(corpus, str):
        return Counter(pre_tokenize(corpus))
    if isinstance(corpus, (bytes, bytearray)) or not isinstance(corpus, Iterable):
        raise SubwordTypeError(f"The corpus must be a str or an iterable of str (e.g. a list of lines), "
                               f"not {_what(corpus)}. Decode bytes first (data.decode('utf-8')).")
    counts: Counter = Counter()
    for i, text in enumerate(corpus):
        if not isinstance(text, str):
            raise SubwordTypeError(f"Item {i} of the corpus is a {type(text).__name__} ({text!r:.60}), "
                                   "not a str: give text (lines or documents), or a dict word -> count.")
        counts.update(pre_tokenize(text))
    return counts


def _as_word_counts(words_or_corpus) -> dict[str, int]:
    """A checked ``{word: count}`` from a word-frequency table or a corpus."""
    if isinstance(words_or_corpus, Mapping):
        table = {}
        for word, count in words_or_corpus.items():
            if not isinstance(word, str):
                raise SubwordTypeError(f"The word-frequency table's keys must be str words, not "
                                       f"{_what(word)}.")
            if isinstance(count, bool) or not isinstance(count, int):
                raise SubwordTypeError(f"The count of {word!r} must be an int, not {_what(count)}.")
            if count < 0:
                raise SubwordInputError(f"The count of {word!r} is {count}; counts must be >= 0.")
            if word and count:
                table[word] = count
        where = "the word-frequency table has no non-empty word with a count above 0"
    else:
        table = dict(word_counts(words_or_corpus))
        where = "the corpus holds no words (it is empty or only whitespace)"
    if not table:
        raise SubwordInputError(f"Nothing to train on: {where}. Pass text (a str or a list of lines) or a "
                                "dict word -> count with at least one word.")
    return table


# --------------------------------------------------------------------------------------- BPE

class BPEMerges(NamedTuple):
    """What :func:`train_bpe` learned: unpack as ``merges, vocab = train_bpe(...)``.

    ``merges`` -- the merges in the order they were learned, each a pair of symbols
    ``(left, right)``; the position in the list is the merge's *rank* (0 = learned first).
    ``vocab`` -- every symbol (special tokens, characters, marked characters, merged
    symbols) -> its id, as ``tokenizers`` numbers them.
    """
    merges: list[tuple[str, str]]
    vocab: dict[str, int]


def _initial_symbols(word: str, suffix: str | None, prefix: str | None) -> list[str]:
    """``word`` as characters with the markers: ``low`` -> ``l ##o ##w`` / ``l o w</w>``."""
    last = len(word) - 1
    return [(prefix if prefix and i > 0 else "") + c + (suffix if suffix and i == last else "")
            for i, c in enumerate(word)]


def _join(left: str, right: str, prefix: str | None) -> str:
    """The symbol that merging ``left`` and ``right`` makes: ``th`` + ``##e`` -> ``the``."""
    if prefix and right.startswith(prefix):
        right = right[len(prefix):]
    return left + right


def _merge_in_word(symbols: list[int], left: int, right: int, new: int) -> list[int]:
    """Replace every ``left right`` in ``symbols`` by ``new``, scanning left to right
    (``a a a`` with the pair ``a a`` -> ``aa a``: occurrences do not overlap)."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
            out.append(new)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def _check_marker(value, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise SubwordTypeError(f"{name} must be None or a non-empty str (e.g. '</w>' or '##'), "
                               f"not {_what(value)}.")
    return value


def train_bpe(words_or_corpus: Mapping[str, int] | str | Iterable[str], vocab_size: int, *,
              min_frequency: int = 0, special_tokens: Iterable[str] = (),
              end_of_word_suffix: str | None = None, continuing_subword_prefix: str | None = None,
              symbol_order: Iterable[str] | None = None) -> BPEMerges:
    """Learn BPE merges (Sennrich et al. 2016) exactly as ``tokenizers.trainers.BpeTrainer`` does.

    Parameters
    ----------
    words_or_corpus
        A word-frequency table ``{word: count}`` (used as given: the words are not cut again),
        or text -- one str or an iterable of lines -- cut into words by :func:`pre_tokenize`.
    vocab_size
        The size of the final vocabulary: special tokens + alphabet + merged symbols. Training
        stops when the vocabulary reaches it (or when no pair is frequent enough).
    min_frequency
        Merge only pairs seen at least this often (0 and 1 are the same: a pair must occur).
    special_tokens
        Strings that get the first ids (e.g. ``["[UNK]"]``); they never take part in merges.
    end_of_word_suffix, continuing_subword_prefix
        The optional word-boundary markers (see the module's notes): ``"</w>"`` marks the last
        character of each word (``l o w</w>``), ``"##"`` every character but the first
        (``l ##o ##w``). Merging ``t`` and ``##h`` makes ``th`` (the right part loses its prefix).
    symbol_order
        The symbols training starts from (special tokens, characters, marked characters), in the
        id order to give them. Default: special tokens as given, the characters by code point
        (as ``tokenizers``), then the marked characters sorted. Only the marked characters'
        order can differ from ``tokenizers`` (which takes it from a hash map); pass one of its
        runs' order (``sorted(vocab, key=vocab.get)[:n]``) to reproduce that run exactly.

    The algorithm
    -------------
    1. The starting vocabulary: special tokens, then every character of the corpus, sorted by
       code point (then the marked characters); each word becomes its list of characters.
    2. Count every adjacent pair of symbols, weighted by the word's frequency.
    3. Take the most frequent pair; among equally frequent pairs, the one whose
       ``(left id, right id)`` is smallest. Stop if its count is below ``min_frequency``.
    4. Add the merged symbol to the vocabulary with the next id (if two different merges ever
       made the same string, as ``ab + c`` and ``a + bc`` would, it keeps its first id, as in
       ``tokenizers``), record the merge, and replace the pair by the merged symbol in every word
       that holds it.
    5. Repeat from 2 until the vocabulary has ``vocab_size`` symbols.

    Recounting all pairs at every step would be slow, so step 2 is done once and then kept up to
    date: merging a pair only changes the pairs inside the words that held it, so only those
    words are recounted. The most frequent pair is found with a heap of ``(-count, left id,
    right id)`` whose entries may be out of date (counts only ever go down, except for pairs that
    contain the new symbol, which are pushed as they appear): an entry whose count is out of date
    is pushed back with its current count and the next one is tried. That is the same method,
    and gives the same merges, as ``BpeTrainer``.

    Returns
    -------
    :class:`BPEMerges` ``(merges, vocab)``: the merges in the order learned (give them to
    :func:`bpe_encode`), and symbol -> id.

    >>> merges, vocab = train_bpe({"low": 5, "lower": 2, "newest": 6, "widest": 3}, vocab_size=14)
    >>> merges[:4]
    [('e', 's'), ('es', 't'), ('l', 'o'), ('lo', 'w')]
    >>> bpe_encode("lowest", merges)
    ['low', 'est']
    """
    table = _as_word_counts(words_or_corpus)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise SubwordTypeError(f"vocab_size must be an int, not {_what(vocab_size)}.")
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 0:
        raise SubwordInputError(f"min_frequency must be an int >= 0, not {_what(min_frequency)}.")
    suffix = _check_marker(end_of_word_suffix, "end_of_word_suffix")
    prefix = _check_marker(continuing_subword_prefix, "continuing_subword_prefix")
    if isinstance(special_tokens, str):
        raise SubwordTypeError(f"special_tokens must be a list of str, not the str {special_tokens!r} "
                               f"(write [{special_tokens!r}]).")
    specials = [_check_str(t, "Each special token") for t in special_tokens]

    # 1. the starting vocabulary and the words as lists of symbols
    words = [_initial_symbols(w, suffix, prefix) for w in table]
    alphabet = sorted({c for w in table for c in w})
    start = list(dict.fromkeys(specials + alphabet))
    start += sorted({s for w in words for s in w} - set(start))
    if symbol_order is not None:
        order = [_check_str(s, "Each symbol of symbol_order") for s in symbol_order]
        if len(set(order)) != len(order) or set(order) != set(start):
            missing, extra = sorted(set(start) - set(order)), sorted(set(order) - set(start))
            raise SubwordInputError(
                f"symbol_order must hold each starting symbol once ({len(start)} symbols: the special "
                f"tokens, the corpus's characters and the marked characters); it misses {missing[:5]} "
                f"and has extra {extra[:5]}{' or repeats' if len(set(order)) != len(order) else ''}.")
        start = order
    if vocab_size < len(start):
        n_marked = len(start) - len(set(specials + alphabet))
        raise SubwordInputError(
            f"vocab_size={vocab_size} is smaller than the {len(start)} symbols BPE starts from "
            f"({len(set(specials))} special token{'' if len(set(specials)) == 1 else 's'}, "
            f"{len(alphabet)} distinct characters"
            f"{f', {n_marked} marked characters' if n_marked else ''}), so no merge could be learned. "
            f"Use vocab_size >= {len(start)}: each merge adds one symbol to those.")
    vocab = {s: i for i, s in enumerate(start)}
    id_to_symbol = list(start)
    seqs = [[vocab[s] for s in w] for w in words]
    freqs = list(table.values())

    # 2. count the pairs once; remember which words hold each pair
    pair_count: Counter = Counter()
    where: defaultdict = defaultdict(set)
    for i, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:]):
            pair_count[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-count, *pair) for pair, count in pair_count.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size and heap:
        # 3. the most frequent pair, smallest ids first among equals
        neg_count, left, right = heapq.heappop(heap)
        count = pair_count.get((left, right), 0)
        if -neg_count != count:                 # out of date: push back with the true count
            if count > 0:
                heapq.heappush(heap, (-count, left, right))
            continue
        if count < max(min_frequency, 1):
            break
        # 4. the new symbol (or the existing one with the same string), then update the words
        symbol = _join(id_to_symbol[left], id_to_symbol[right], prefix)
        if symbol not in vocab:
            vocab[symbol] = len(id_to_symbol)
            id_to_symbol.append(symbol)
        new = vocab[symbol]
        merges.append((id_to_symbol[left], id_to_symbol[right]))
        grown = set()
        for i in where.pop((left, right)):
            before = Counter(zip(seqs[i], seqs[i][1:]))
            seqs[i] = _merge_in_word(seqs[i], left, right, new)
            after = Counter(zip(seqs[i], seqs[i][1:]))
            for pair in before.keys() | after.keys():
                change = after[pair] - before[pair]
                if change:
                    pair_count[pair] += change * freqs[i]
                    if pair_count[pair] == 0:
                        del pair_count[pair]
                if change > 0:
                    where[pair].add(i)
                    grown.add(pair)
        for pair in grown:                      # pairs that appeared or grew: push their count
            heapq.heappush(heap, (-pair_count[pair], *pair))
    return BPEMerges(merges, vocab)


def bpe_encode(word: str, merges: Iterable[tuple[str, str]] | Mapping[tuple[str, str], int], *,
               vocab: Mapping[str, int] | None = None, unk: str | None = None,
               end_of_word_suffix: str | None = None,
               continuing_subword_prefix: str | None = None) -> list[str]:
    """Cut one pre-tokenized ``word`` into BPE symbols by replaying ``merges`` in rank order.

    Start from the word's characters (with the same markers as in training), then repeatedly
    apply the merge of *lowest rank* (learned earliest) among the word's adjacent pairs -- at its
    leftmost place if it occurs more than once -- until no adjacent pair is a known merge. This
    is what ``tokenizers.models.BPE`` does. Replaying the whole merge list once, top to bottom, gives
    the same pieces (a merge only creates pairs holding its new symbol, which rank after it) but
    looks at every merge for every word; merging the leftmost mergeable pair whatever its rank
    gives other pieces (``tests/test_subwords.py`` counts them).

    ``merges`` is the list from :func:`train_bpe` (position = rank), or a dict ``pair -> rank``
    built once (``{p: r for r, p in enumerate(merges)}``) when encoding many words. If a pair is
    listed twice, its later rank counts (as in ``tokenizers``). With ``vocab``, characters that
    are not in it (never seen in training) become ``unk`` each (``tokenizers``' BPE with
    ``unk_token``); without ``vocab`` they stay as they are.

    >>> bpe_encode("lowest", [("e", "s"), ("es", "t"), ("l", "o"), ("lo", "w")])
    ['low', 'est']
    """
    _check_str(word, "word")
    suffix = _check_marker(end_of_word_suffix, "end_of_word_suffix")
    prefix = _check_marker(continuing_subword_prefix, "continuing_subword_prefix")
    if isinstance(merges, Mapping):
        ranks = merges
    elif isinstance(merges, (str, bytes)) or not isinstance(merges, Iterable):
        raise SubwordTypeError(f"merges must be the list of (left, right) pairs that train_bpe returns "
                               f"(or a dict pair -> rank), not {_what(merges)}.")
    else:
        ranks = {}
        for rank, pair in enumerate(merges):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
                raise SubwordTypeError(f"Merge {rank} is {pair!r:.60}; each merge must be a pair of str "
                                       "(left, right), as train_bpe returns.")
            ranks[tuple(pair)] = rank
    symbols = _initial_symbols(word, suffix, prefix)
    if vocab is not None:
        unknown = [s for s in symbols if s not in vocab]
        if unknown and unk is None:
            raise SubwordInputError(f"{word!r} has symbols that are not in the vocabulary ({unknown[:5]}): "
                                    "pass unk='[UNK]' (a token of the vocabulary) to encode them as that.")
        if unknown and unk not in vocab:
            raise SubwordInputError(f"unk={unk!r} is not in the vocabulary: train with "
                                    f"special_tokens=[{unk!r}] or pass a token the vocabulary has.")
        symbols = [s if s in vocab else unk for s in symbols]
    while len(symbols) > 1:
        # the adjacent pair with the lowest rank; the leftmost one among equals (min keeps the first)
        rank, i = min((ranks.get((a, b), float("inf")), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:])))
        if rank == float("inf"):
            break
        symbols[i:i + 2] = [_join(symbols[i], symbols[i + 1], prefix)]
    return symbols


# --------------------------------------------------------------------------------- WordPiece

def wordpiece_encode(word: str, vocab: Mapping[str, int] | Iterable[str], unk: str = "[UNK]",
                     prefix: str = "##", max_chars: int = 100) -> list[str]:
    """Cut one normalised, pre-tokenized ``word`` into WordPiece pieces, as BERT does.

    Greedy longest-match-first: from the start of the word, take the *longest* prefix that is
    in ``vocab``; then, from where it ended, the longest rest-of-word piece that is in ``vocab``
    written with the continuation ``prefix`` (``"##"``), and so on to the end of the word::

        "unaffable" -> "un", "##aff", "##able"

    If at some point no piece matches (not even one character), the *whole word* becomes
    ``[unk]`` -- not just that piece. Words longer than ``max_chars`` characters also become
    ``[unk]`` (BERT's ``max_input_chars_per_word``). An empty word gives ``[]``.

    Unlike BPE, WordPiece encoding needs only the vocabulary, no merge list. (BERT's tokenizer
    first normalises -- lowercase, strip accents -- and pre-tokenizes on whitespace and
    punctuation; ``word`` is one word after those steps.) ``vocab`` is a dict token -> id or a
    set of tokens (anything with fast ``in``).
    """
    _check_str(word, "word")
    _check_str(unk, "unk")
    _check_str(prefix, "prefix")
    if isinstance(vocab, str) or not (isinstance(vocab, Mapping) or hasattr(vocab, "__contains__")):
        raise SubwordTypeError(f"vocab must be a dict token -> id or a set of tokens, not {_what(vocab)}.")
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise SubwordInputError(f"max_chars must be an int >= 1, not {_what(max_chars)}.")
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):       # longest candidate first
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                break
        else:                                         # not even one character matched
            return [unk]
        pieces.append(piece)
        start = end
    return pieces
