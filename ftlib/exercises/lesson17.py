"""Checks for the exercises of lesson 17 (extractive question answering on SQuAD)."""
from ftlib.exercises import Wrong, exercise


@exercise("17.1")
def span_text(fn):
    from ftlib import load_tokenizer

    tok = load_tokenizer("course-bert")
    context = "Olga Petrova, a baker from Dublin, founded Nokia in 1921."
    offsets = tok(context, return_offsets_mapping=True)["offset_mapping"]
    for start, end in [(1, 3), (6, 6), (8, 8), (1, 1)]:
        want = context[offsets[start][0]:offsets[end][1]]
        got = fn(context, offsets, start, end)
        if got != want:
            hint = (" Use the end token's end offset (offsets[end][1]), not its start." if got == context[offsets[start][0]:offsets[end][0]]
                    else " Slice the context with character offsets, not token positions." if got == context[start:end + 1] or got == context[start:end]
                    else "")
            raise Wrong(f"for tokens {start}..{end} expected {want!r}, got {got!r}.{hint}")


# Exercise 17.2: SQuAD's F1 for one answer, written by hand.
_F1_CASES = [
    ("Denver Broncos", ["Denver Broncos", "The Broncos"], 1.0),
    ("the Broncos", ["Denver Broncos"], 2 * (1 * 0.5) / 1.5),        # "the" dropped: 1 shared of 1 and 2
    ("Broncos, Broncos!", ["Broncos Broncos Denver"], 0.8),          # shared tokens counted with multiplicity
    ("Carolina", ["Denver Broncos", "Carolina Panthers"], 2 * (1 * 0.5) / 1.5),   # best over the references
    ("Santa Clara, California", ["Santa Clara"], 0.8),
    ("", ["Denver"], 0.0),
]


@exercise("17.2")
def squad_f1(fn):
    names = set(getattr(getattr(fn, "__code__", None), "co_names", ()))
    if names & {"squad_em_f1", "squad_scores"}:
        raise Wrong("Write the F1 yourself: calling ftlib.tasks.squad_em_f1 / squad_scores checks nothing.")
    for pred, refs, want in _F1_CASES:
        got = fn(pred, refs)
        if not isinstance(got, (int, float)) or abs(got - want) > 1e-9:
            first_only = abs(want - 1.0) > 1e-9 and pred == "Carolina"
            hint = (" With several references, SQuAD takes the best score over them, not the first one's."
                    if first_only else
                    " Normalise first: lower case, drop punctuation and the articles a/an/the, split on spaces."
                    if pred in ("the Broncos", "Santa Clara, California") else
                    " Count shared tokens with multiplicity (collections.Counter's &), not as a set."
                    if pred.startswith("Broncos,") else "")
            raise Wrong(f"F1 of {pred!r} against {refs}: expected {want:.4f}, got {got!r}.{hint}")


# Exercise 17.3: how many windows a long context becomes.
@exercise("17.3")
def n_windows(fn):
    from ftlib import load_tokenizer

    tok = load_tokenizer("course-bert")
    question = "When was the bridge built?"
    n_q = len(tok(question, add_special_tokens=False)["input_ids"])
    for n_context, max_length, stride in [(10, 64, 16), (56, 64, 16), (57, 64, 16), (200, 64, 16), (300, 128, 32),
                                          (1000, 256, 64)]:
        context = " ".join(["river"] * n_context)           # one token per word
        want = len(tok(question, context, truncation="only_second", max_length=max_length, stride=stride,
                       return_overflowing_tokens=True)["input_ids"])
        got = fn(n_q, n_context, max_length, stride)
        if got != want:
            room = max_length - n_q - 3

            def windows(r, step):
                return 1 + max(0, -(-(n_context - r) // step))
            hint = (" Neighbouring windows overlap by `stride` tokens: each new window adds room - stride new ones."
                    if got == -(-n_context // room) else
                    " The step between window starts is room - stride, not stride." if got == windows(room, stride) else
                    " Each window holds max_length minus the question and 3 special tokens ([CLS], [SEP], [SEP])."
                    if got in (windows(max_length - n_q, max_length - n_q - stride), -(-n_context // (max_length - n_q)))
                    else "")
            raise Wrong(f"a question of {n_q} tokens, a context of {n_context}, max_length={max_length}, "
                        f"stride={stride}: the tokenizer makes {want} window(s), you said {got!r}.{hint}")
