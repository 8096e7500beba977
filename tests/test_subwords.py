"""ftlib.subwords (BPE training and encoding, WordPiece encoding in plain Python) against the
Hugging Face ``tokenizers`` library, piece for piece.

* BPE: ``tokenizers``' ``BpeTrainer`` and ftlib's ``train_bpe`` are trained on the same corpus
  (the first 2,000 lines of tinyshakespeare, Whitespace pre-tokenizer, no normalizer); the merge
  lists must be equal (same merges, same order), and so must the vocabularies (same ids) and
  the encodings of every word of the next 2,000 lines (held out).
* WordPiece: ftlib's ``wordpiece_encode`` with course-bert's vocabulary against course-bert's
  own WordPiece model, on every distinct word of 3,000 SST-2 sentences and 4,000 lines of
  tinyshakespeare after course-bert's normaliser and pre-tokenizer (7,600 words).

Every comparison must be able to fail: each one is also run on a plausible wrong
implementation, written below (a BPE trainer with another tie-break, BPE encoding that merges
the leftmost pair, WordPiece with shortest-match-first, without ``##``, with per-piece [UNK]),
and it must reject it. The same wrong trainer with the right tie-break is accepted, so the
tie-break alone makes the difference.

Needs the data mirror (``FTLIB_DATA_DIR``) and course-bert offline (``HF_HUB_OFFLINE=1``).
"""
import doctest
import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

import ftlib
from ftlib import subwords
from ftlib.errors import CourseError
from ftlib.subwords import (SubwordInputError, SubwordTypeError, bpe_encode, pre_tokenize, train_bpe,
                            word_counts, wordpiece_encode)

TRAIN = slice(0, 2000)          # tinyshakespeare lines BPE is trained on
HELD_OUT = slice(2000, 4000)    # lines whose words are encoded (987 of their 1,974 words are new)
VOCAB_SIZE = 1000
# The held-out lines have characters that the first 2,000 never show ('&', 'Q'): both
# tokenizers' BPE and ftlib's bpe_encode write them as [UNK], which must then be in the vocabulary.
UNK = "[UNK]"


def mirror_file(relative: str) -> Path:
    root = os.environ.get("FTLIB_DATA_DIR")
    if not root:
        pytest.skip("FTLIB_DATA_DIR is not set (the data mirror with tinyshakespeare/ and sst2/)")
    path = Path(root) / relative
    if not path.is_file():
        pytest.skip(f"the mirror in {root} has no {relative}")
    return path


@pytest.fixture(scope="module")
def shakespeare() -> list[str]:
    return mirror_file("tinyshakespeare/input.txt").read_text(encoding="utf-8").splitlines()


def hf_bpe(lines, vocab_size=VOCAB_SIZE, min_frequency=0, **markers):
    """tokenizers' BPE trained as ftlib's is: models.BPE + BpeTrainer, Whitespace, no normalizer.
    Returns the tokenizer, its merges in rank order, and its vocabulary (symbol -> id)."""
    tok = Tokenizer(models.BPE(unk_token=UNK, **markers))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=[UNK], **markers)
    tok.train_from_iterator(lines, trainer)
    model = json.loads(tok.to_str())["model"]
    return tok, [tuple(pair) for pair in model["merges"]], model["vocab"]


@pytest.fixture(scope="module")
def bpe_pair(shakespeare):
    """(tokenizers' tokenizer, its merges, its vocab, ftlib's result) for the main configuration."""
    tok, merges, vocab = hf_bpe(shakespeare[TRAIN])
    return tok, merges, vocab, train_bpe(shakespeare[TRAIN], VOCAB_SIZE, special_tokens=[UNK])


def first_difference(ours, theirs):
    """Where two merge lists first differ (None if equal, len of the shorter if one is a prefix)."""
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return i
    return None if len(ours) == len(theirs) else min(len(ours), len(theirs))


# ------------------------------------------------------------------------------ pre-tokenizer

def test_pre_tokenizer_is_tokenizers_whitespace(shakespeare):
    hf = pre_tokenizers.Whitespace()
    lines = shakespeare[:HELD_OUT.stop]
    assert all(pre_tokenize(line) == [w for w, _ in hf.pre_tokenize_str(line)] for line in lines)
    assert word_counts(shakespeare[TRAIN]) == Counter(w for line in shakespeare[TRAIN]
                                                      for w, _ in hf.pre_tokenize_str(line))
    # can fail: splitting on whitespace only (WhitespaceSplit) keeps "speak." whole
    differ = sum(line.split() != [w for w, _ in hf.pre_tokenize_str(line)] for line in lines)
    assert differ > 1000, differ


# ------------------------------------------------------------------------------- BPE training

def test_bpe_merges_and_vocab_equal_tokenizers(bpe_pair, shakespeare):
    _, hf_merges, hf_vocab, ours = bpe_pair
    table = word_counts(shakespeare[TRAIN])
    assert (len(table), sum(table.values())) == (2347, 12391)       # distinct words, words
    assert len(hf_vocab) == VOCAB_SIZE and len(hf_merges) == VOCAB_SIZE - 1 - 57   # [UNK], 57 characters
    assert first_difference(ours.merges, hf_merges) is None        # same merges, same order
    assert ours.vocab == hf_vocab                                   # same symbols, same ids


def test_bpe_min_frequency_stops_training_as_tokenizers_does(shakespeare):
    # a vocabulary too big to reach: training stops at the first pair seen fewer than 5 times
    _, hf_merges, hf_vocab = hf_bpe(shakespeare[TRAIN], vocab_size=50_000, min_frequency=5)
    ours = train_bpe(shakespeare[TRAIN], 50_000, min_frequency=5, special_tokens=[UNK])
    assert 500 < len(hf_merges) < 2000 and len(hf_vocab) < 50_000
    assert first_difference(ours.merges, hf_merges) is None and ours.vocab == hf_vocab


@pytest.mark.parametrize("markers", [{"end_of_word_suffix": "</w>"}, {"continuing_subword_prefix": "##"}],
                         ids=["end-of-word </w>", "continuing ##"])
def test_bpe_with_a_marker_equals_tokenizers_given_its_symbol_ids(shakespeare, markers):
    # With a marker, tokenizers numbers the marked characters ("e</w>", "##e") in the order it
    # iterates a Rust hash map of the words, which changes from run to run (measured: three runs
    # of one training in fresh processes gave 2 different merge lists with </w>, 3 with ##), and
    # ties between equally frequent pairs are broken by those ids. So no fixed rule can always
    # give its merges; given the ids of this run (read from its vocabulary), ftlib's merges,
    # vocabulary and encodings are exactly tokenizers'. The default (no marker) needs no such
    # help (the tests above).
    tok, hf_merges, hf_vocab = hf_bpe(shakespeare[TRAIN], **markers)
    # each merge added one symbol, so the symbols training started from are the lowest ids
    start = sorted(hf_vocab, key=hf_vocab.get)[:len(hf_vocab) - len(hf_merges)]
    assert len(start) > 1 + 57 + 30                       # [UNK], characters, marked characters
    ours = train_bpe(shakespeare[TRAIN], VOCAB_SIZE, special_tokens=[UNK], symbol_order=start, **markers)
    assert first_difference(ours.merges, hf_merges) is None and ours.vocab == hf_vocab
    words = sorted({w for line in shakespeare[HELD_OUT] for w in pre_tokenize(line)})
    ranks = {pair: r for r, pair in enumerate(ours.merges)}
    differ = [w for w in words if bpe_encode(w, ranks, vocab=ours.vocab, unk=UNK, **markers)
              != [t.value for t in tok.model.tokenize(w)]]
    assert not differ, differ[:10]


# -------------------------------------------------- wrong BPE trainers, rejected by the same check

def naive_bpe(table, n_merges, choose):
    """A plausible from-scratch BPE trainer: recount every pair at every step, merge the pair
    ``choose(counts, ids)`` picks. ``counts`` is a Counter filled word by word, so its order is
    the pairs' first occurrence in the word table."""
    ids = {s: i for i, s in enumerate([UNK] + sorted({c for w in table for c in w}))}
    words = [(list(w), n) for w, n in table.items()]
    merges = []
    for _ in range(n_merges):
        counts = Counter()
        for symbols, n in words:
            for pair in zip(symbols, symbols[1:]):
                counts[pair] += n
        if not counts:
            break
        left, right = choose(counts, ids)
        merges.append((left, right))
        ids.setdefault(left + right, len(ids))
        for k, (symbols, n) in enumerate(words):
            out, i = [], 0
            while i < len(symbols):
                if symbols[i:i + 2] == [left, right]:
                    out.append(left + right)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            words[k] = (out, n)
    return merges


TIE_BREAKS = {
    # tokenizers' rule: the most frequent pair, the smallest (left id, right id) among equals
    "right: smallest ids": lambda counts, ids: min(counts, key=lambda p: (-counts[p], ids[p[0]], ids[p[1]])),
    # max() keeps the first maximum it meets: the pair that occurs first in the corpus
    "wrong: first occurrence": lambda counts, ids: max(counts, key=counts.get),
    # the symbols' strings instead of their ids: same order for characters, not for merged symbols
    "wrong: alphabetical": lambda counts, ids: min(counts, key=lambda p: (-counts[p], p)),
    "wrong: largest ids": lambda counts, ids: min(counts, key=lambda p: (-counts[p], -ids[p[0]], -ids[p[1]])),
}
# the naive trainer is slow (7 s for all 942 merges), and the first 120 are enough: the wrong
# rules first differ from tokenizers at merge 26, 80 and 4 (measured); a list whose first 120
# merges differ differs.
N_NAIVE = 120


@pytest.mark.parametrize("rule", TIE_BREAKS)
def test_bpe_check_rejects_a_wrong_tie_break(bpe_pair, shakespeare, rule):
    _, hf_merges, _, _ = bpe_pair
    theirs = naive_bpe(word_counts(shakespeare[TRAIN]), N_NAIVE, TIE_BREAKS[rule])
    where = first_difference(theirs, hf_merges[:N_NAIVE])
    if rule.startswith("right"):
        assert where is None                       # the harness itself is fine
    else:
        assert where is not None and where < N_NAIVE, rule
        differ = sum(a != b for a, b in zip(theirs, hf_merges))
        assert differ >= 10, (rule, where, differ)     # measured: 20 to 60 of the 120 differ


def test_bpe_tie_break_on_many_small_tables():
    # tiny word tables over 4 letters: nearly every merge is a tie, so the tie-break decides all
    rng = random.Random(0)
    wrong_rejected = 0
    for _ in range(150):
        table = {"".join(rng.choice("abcd") for _ in range(rng.randint(1, 8))): rng.randint(1, 4)
                 for _ in range(rng.randint(2, 10))}
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.train_from_iterator([w for w, n in table.items() for _ in range(n)],
                                trainers.BpeTrainer(vocab_size=40, show_progress=False))
        model = json.loads(tok.to_str())["model"]
        hf_merges = [tuple(p) for p in model["merges"]]
        ours = train_bpe(table, 40)
        assert ours.merges == hf_merges and ours.vocab == model["vocab"], table
        assert all(bpe_encode(w, ours.merges) == [t.value for t in tok.model.tokenize(w)] for w in table)
        first = naive_bpe({w: n for w, n in table.items()}, len(hf_merges), TIE_BREAKS["wrong: first occurrence"])
        wrong_rejected += first != hf_merges
    assert wrong_rejected > 120, wrong_rejected         # measured: 149 of the 150 tables


# ------------------------------------------------------------------------------- BPE encoding

def leftmost_first_encode(word, ranks, vocab):
    """A plausible wrong BPE encoder: merge the leftmost pair that is any merge, whatever its rank."""
    symbols = [c if c in vocab else UNK for c in word]
    while True:
        i = next((i for i in range(len(symbols) - 1) if (symbols[i], symbols[i + 1]) in ranks), None)
        if i is None:
            return symbols
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]


def test_bpe_encodings_of_held_out_text_equal_tokenizers(bpe_pair, shakespeare):
    tok, _, _, ours = bpe_pair
    ranks = {pair: r for r, pair in enumerate(ours.merges)}
    lines = [line for line in shakespeare[HELD_OUT] if line.strip()]
    words = sorted({w for line in lines for w in pre_tokenize(line)})
    encoded = {w: bpe_encode(w, ranks, vocab=ours.vocab, unk=UNK) for w in words}
    # whole lines through tokenizers' full pipeline (pre-tokenizer + model) ...
    assert all([p for w in pre_tokenize(line) for p in encoded[w]] == tok.encode(line).tokens for line in lines)
    # ... and each word through its model alone
    assert all(encoded[w] == [t.value for t in tok.model.tokenize(w)] for w in words)
    assert len(lines) > 1500 and len(words) > 1200
    assert sum(len(p) > 1 for p in encoded.values()) > 1000      # words cut into several pieces (1,548)
    assert sum(UNK in p for p in encoded.values()) >= 2           # words with unseen characters
    # can fail: merging the leftmost mergeable pair instead of the lowest-ranked one
    wrong = [w for w in words if leftmost_first_encode(w, ranks, ours.vocab) != encoded[w]]
    assert len(wrong) > 500, len(wrong)            # measured: 1,062 of 1,974


# --------------------------------------------------------------------------------- WordPiece

@pytest.fixture(scope="module")
def bert_wordpiece():
    """course-bert's tokenizer pipeline pieces: normaliser, pre-tokenizer, WordPiece model + its settings."""
    backend = ftlib.load_tokenizer("course-bert").backend_tokenizer
    settings = json.loads(backend.to_str())["model"]
    assert settings["type"] == "WordPiece"
    return backend, settings


# letters missing from BERT's vocabulary ('ʬ'), and words around the 100-character limit
CONSTRUCTED = ["ʬ", "snowʬman", "unʬaffable", "x" * 100, "x" * 101, "unaffable" * 12]


@pytest.fixture(scope="module")
def bert_words(bert_wordpiece, shakespeare):
    """Distinct words of 3,000 SST-2 sentences and 4,000 Shakespeare lines as course-bert's
    WordPiece model sees them: after its normaliser (lowercase) and pre-tokenizer."""
    backend, _ = bert_wordpiece
    rows = mirror_file("sst2/train.tsv").read_text(encoding="utf-8").splitlines()[1:3001]
    texts = [row.split("\t", 1)[1] for row in rows] + shakespeare[:4000]
    words = {w for text in texts
             for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))}
    return sorted(words) + CONSTRUCTED


def shortest_first(word, vocab, unk="[UNK]", prefix="##", max_chars=100):
    """Wrong: the shortest matching piece at each step instead of the longest."""
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end = next((e for e in range(start + 1, len(word) + 1)
                    if (word[start:e] if start == 0 else prefix + word[start:e]) in vocab), None)
        if end is None:
            return [unk]
        pieces.append(word[start:end] if start == 0 else prefix + word[start:end])
        start = end
    return pieces


def per_piece_unk(word, vocab, unk="[UNK]", prefix="##", max_chars=100):
    """Wrong: only the character that matches nothing becomes [UNK], the rest is kept."""
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                break
        else:
            piece, end = unk, start + 1
        pieces.append(piece)
        start = end
    return pieces


WRONG_WORDPIECE = {
    "shortest match first": shortest_first,
    "no ## on continuations": lambda word, vocab, **kw: wordpiece_encode(word, vocab, prefix="", **kw),
    "[UNK] per piece": per_piece_unk,
}


def test_wordpiece_equals_course_bert(bert_wordpiece, bert_words):
    backend, settings = bert_wordpiece
    vocab = settings["vocab"]
    assert (settings["unk_token"], settings["continuing_subword_prefix"], settings["max_input_chars_per_word"]) \
        == ("[UNK]", "##", 100)
    theirs = {w: [t.value for t in backend.model.tokenize(w)] for w in bert_words}
    ours = {w: wordpiece_encode(w, vocab) for w in bert_words}
    differ = [w for w in bert_words if ours[w] != theirs[w]]
    assert not differ, [(w, ours[w], theirs[w]) for w in differ[:10]]
    assert len(bert_words) > 7000
    assert sum(len(p) > 1 for p in theirs.values()) > 2000            # cut into several pieces
    assert [w for w in bert_words if theirs[w] == ["[UNK]"]] == ["ʬ", "snowʬman", "unʬaffable", "x" * 101,
                                                                 "unaffable" * 12]


@pytest.mark.parametrize("name", WRONG_WORDPIECE)
def test_wordpiece_check_rejects_a_wrong_encoder(bert_wordpiece, bert_words, name):
    backend, settings = bert_wordpiece
    wrong = WRONG_WORDPIECE[name]
    differ = [w for w in bert_words
              if wrong(w, settings["vocab"]) != [t.value for t in backend.model.tokenize(w)]]
    # measured on the 7,649 words: shortest-first changes 7,598, no-## every word cut in pieces
    # (2,416); a per-piece [UNK] only the 2 constructed words with a missing letter inside
    assert len(differ) >= (2 if name == "[UNK] per piece" else 2000), (name, len(differ))


def test_wordpiece_small_cases():
    vocab = {"un", "##aff", "##able", "aff", "able", "a", "##a", "[UNK]"}
    assert wordpiece_encode("unaffable", vocab) == ["un", "##aff", "##able"]
    assert wordpiece_encode("unaffablez", vocab) == ["[UNK]"]          # the whole word, not one piece
    assert wordpiece_encode("", vocab) == []
    assert wordpiece_encode("aaa", vocab, max_chars=2) == ["[UNK]"]
    assert wordpiece_encode("aaa", vocab, max_chars=3) == ["a", "##a", "##a"]


# -------------------------------------------------------------------------------- bad input

def test_vocab_size_smaller_than_the_alphabet():
    with pytest.raises(SubwordInputError, match=r"vocab_size=5 is smaller than the 10 symbols BPE starts from "
                                                 r"\(1 special token, 9 distinct characters\).*"
                                                 r"Use vocab_size >= 10") as err:
        train_bpe("to be or not to be, that", 5, special_tokens=[UNK])
    assert isinstance(err.value, ValueError) and isinstance(err.value, CourseError)
    assert train_bpe("to be or not to be, that", 10, special_tokens=[UNK]).merges == []   # the alphabet only


@pytest.mark.parametrize("corpus", ["", "  \n\t ", [], ["", "   "], {}, {"word": 0}],
                         ids=["empty str", "whitespace", "empty list", "blank lines", "empty table", "zero count"])
def test_nothing_to_train_on(corpus):
    with pytest.raises(SubwordInputError, match=r"Nothing to train on: .*Pass text"):
        train_bpe(corpus, 100)


@pytest.mark.parametrize("call, message", [
    (lambda: train_bpe(123, 100), r"The corpus must be a str or an iterable of str.*not int 123"),
    (lambda: train_bpe(b"to be", 100), r"The corpus must be a str.*Decode bytes first"),
    (lambda: train_bpe(["to be", 3], 100), r"Item 1 of the corpus is a int \(3\), not a str"),
    (lambda: train_bpe({"to": "2"}, 100), r"The count of 'to' must be an int, not str '2'"),
    (lambda: train_bpe({1: 2}, 100), r"keys must be str words, not int 1"),
    (lambda: train_bpe("to be", "100"), r"vocab_size must be an int, not str '100'"),
    (lambda: train_bpe("to be", 100, special_tokens="[UNK]"), r"special_tokens must be a list of str"),
    (lambda: bpe_encode(42, [("a", "b")]), r"word must be a str, not int 42"),
    (lambda: bpe_encode("ab", "ab"), r"merges must be the list of \(left, right\) pairs"),
    (lambda: bpe_encode("ab", [("a", "b", "c")]), r"Merge 0 is \('a', 'b', 'c'\); each merge must be a pair"),
    (lambda: wordpiece_encode(None, {"a"}), r"word must be a str, not NoneType None"),
    (lambda: wordpiece_encode("a", 5), r"vocab must be a dict token -> id or a set of tokens, not int 5"),
], ids=["int corpus", "bytes corpus", "int line", "str count", "int word", "str vocab_size", "str specials",
        "int word to encode", "str merges", "triple merge", "None word", "int vocab"])
def test_wrong_types(call, message):
    with pytest.raises(SubwordTypeError, match=message) as err:
        call()
    assert isinstance(err.value, TypeError) and isinstance(err.value, CourseError)


def test_bad_values():
    with pytest.raises(SubwordInputError, match=r"min_frequency must be an int >= 0"):
        train_bpe("to be", 100, min_frequency=-1)
    with pytest.raises(SubwordInputError, match=r"symbol_order must hold each starting symbol once"):
        train_bpe("to be", 100, symbol_order=["t", "o", "b"])
    with pytest.raises(SubwordInputError, match=r"'toQ' has symbols that are not in the vocabulary \(\['Q'\]\): "
                                                r"pass unk='\[UNK\]'"):
        bpe_encode("toQ", [("t", "o")], vocab={"t": 0, "o": 1, "to": 2})
    with pytest.raises(SubwordInputError, match=r"unk='<unk>' is not in the vocabulary"):
        bpe_encode("toQ", [("t", "o")], vocab={"t": 0, "o": 1, "to": 2}, unk="<unk>")
    with pytest.raises(SubwordInputError, match=r"max_chars must be an int >= 1"):
        wordpiece_encode("a", {"a"}, max_chars=0)


def test_docstring_examples():
    result = doctest.testmod(subwords, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0
