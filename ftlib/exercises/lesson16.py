"""Checks for the exercises of lesson 16 (sentence pairs)."""
from ftlib.exercises import Wrong, exercise


@exercise("16.1")
def type_ids(fn):
    for n_a, n_b in [(3, 4), (1, 1), (6, 2), (0, 5)]:
        want = [0] * (n_a + 2) + [1] * (n_b + 1)
        got = list(fn(n_a, n_b))
        if got != want:
            hint = ""
            if len(got) == n_a + n_b:
                hint = " Count the special tokens too: [CLS] and the first [SEP] belong to segment 0, the last [SEP] to 1."
            elif got == [0] * (n_a + 1) + [1] * (n_b + 2):
                hint = " The first [SEP] closes the first sentence: it is segment 0."
            elif set(got) <= {0}:
                hint = " The second sentence's tokens are segment 1."
            raise Wrong(f"for n_a={n_a}, n_b={n_b} expected {want}, got {got}.{hint}")


@exercise("16.2")
def keep_question(strategy):
    if strategy == "only_second":
        return
    hints = {"longest_first": " longest_first cuts whichever segment is longer at each step: a long question gets cut too.",
             "only_first": " The question is the first segment: only_first cuts exactly what you want to keep.",
             True: " truncation=True means longest_first.",
             "do_not_truncate": " Then a long context overflows max_length (or raises an error); the context must give up tokens."}
    raise Wrong(f"{strategy!r} can cut the question.{hints.get(strategy, '')}")
