"""Checks for the exercises of lesson 16 (extractive QA, translation)."""
from ftlib.exercises import Wrong, exercise


@exercise("16.1")
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
