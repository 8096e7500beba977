"""The exercise checks of lessons 00-06: right answers pass, typical mistakes get their hint.

The right answers here are written independently of the checks (from the maths or the library),
so a check that computes the wrong expected value fails these tests.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from ftlib.exercises import check, list_exercises

IDS = ["00.1", "00.2", "01.1", "01.2", "01.3", "02.1", "02.2", "02.3", "02.4",
       "03.1", "04.1", "04.2", "05.1", "05.2", "05.3", "06.1", "06.2", "06.3"]


def run(capsys, exercise_id, *answer):
    ok = check(exercise_id, *answer)
    return ok, capsys.readouterr().out


def passes(capsys, exercise_id, *answer):
    ok, out = run(capsys, exercise_id, *answer)
    assert ok, out
    assert out.strip() == f"Exercise {exercise_id}: correct."


def fails(capsys, exercise_id, *answer, hint):
    ok, out = run(capsys, exercise_id, *answer)
    assert not ok
    assert "not yet" in out and hint in out, out


def test_all_registered():
    for lesson in ("00", "01", "02", "03", "04", "05", "06"):
        assert [i for i in IDS if i.startswith(lesson)] == list_exercises(lesson)


@pytest.mark.parametrize("exercise_id", IDS)
def test_unanswered_is_not_an_error(capsys, exercise_id):
    n_answers = {"01.1": 2, "02.2": 2}.get(exercise_id, 1)
    ok, out = run(capsys, exercise_id, *([...] * n_answers))
    assert ok is False
    assert "not answered yet" in out


# ---- 00 -----------------------------------------------------------------------------------------
DTYPES = {"H100": torch.bfloat16, "RTX 4090": torch.bfloat16, "A100": torch.bfloat16,
          "T4 (Colab)": torch.float16, "V100": torch.float16,
          "MacBook (Apple M2)": torch.float32, "laptop CPU": torch.float32}


def test_00_1(capsys):
    passes(capsys, "00.1", DTYPES)
    passes(capsys, "00.1", {k: str(v).replace("torch.", "") for k, v in DTYPES.items()})   # names work too
    fails(capsys, "00.1", {**DTYPES, "T4 (Colab)": torch.bfloat16}, hint="older than Ampere")
    fails(capsys, "00.1", {**DTYPES, "A100": torch.float16}, hint="Ampere or newer")
    fails(capsys, "00.1", {**DTYPES, "MacBook (Apple M2)": torch.float16}, hint="MPS")
    fails(capsys, "00.1", {**DTYPES, "laptop CPU": torch.bfloat16}, hint="CPU")
    fails(capsys, "00.1", {"H100": torch.bfloat16}, hint="missing")


def test_00_2(capsys):
    # small: 2,000 examples / 16 = 125 batches x 1 epoch; full: ceil(67,349 / 32) = 2,105 x 3 epochs
    passes(capsys, "00.2", {"small": 125, "full": 6315})
    fails(capsys, "00.2", {"small": 125, "full": 2104 * 3}, hint="round up")
    fails(capsys, "00.2", {"small": 125, "full": 2105}, hint="3 epochs")
    fails(capsys, "00.2", {"small": 4210, "full": 6315}, hint="train_size")
    fails(capsys, "00.2", {"small": 125, "full": 67_349 * 3}, hint="not examples")


# ---- 01 -----------------------------------------------------------------------------------------
def test_01_1(capsys):
    y = [0.7, 0.2, 0.1, 0.0]
    h_bits = -sum(p * math.log2(p) for p in y if p > 0)
    passes(capsys, "01.1", y, h_bits)
    passes(capsys, "01.1", torch.tensor(y), torch.tensor(h_bits))
    fails(capsys, "01.1", y, h_bits * math.log(2), hint="nats")
    fails(capsys, "01.1", y, 0.0, hint="one-hot")
    fails(capsys, "01.1", [1.0, 0.0, 0.0, 0.0], 0.0, hint="infinitely expensive")


def test_01_2(capsys):
    def numeric_best_margin(eps, C):
        # minimise the smoothed loss over the margin m by golden-section search (independent of the formula)
        def loss(m):
            z = torch.zeros(1, C, dtype=torch.float64)
            z[0, 0] = m
            return F.cross_entropy(z, torch.tensor([0]), label_smoothing=eps).item()
        a, b = 0.0, 20.0
        for _ in range(200):
            c, d = b - (b - a) / 1.618, a + (b - a) / 1.618
            a, b = (a, d) if loss(c) < loss(d) else (c, b)
        return (a + b) / 2

    passes(capsys, "01.2", numeric_best_margin)
    fails(capsys, "01.2", lambda eps, C: math.log((1 - eps) / (eps / C)), hint="true one included")
    fails(capsys, "01.2", lambda eps, C: math.log((1 - eps) / eps), hint="eps/C, not eps")
    fails(capsys, "01.2", lambda eps, C: math.inf, hint="finite")


def test_01_3(capsys):
    def ppl(logits, labels):
        V = logits.shape[-1]
        return torch.exp(F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1)))

    def unshifted(logits, labels):
        return torch.exp(F.cross_entropy(logits.flatten(0, 1), labels.flatten()))

    def in_bits(logits, labels):
        return 2 ** math.log(float(ppl(logits, labels)))

    def per_sequence(logits, labels):
        return math.exp(sum(F.cross_entropy(lg[:-1], lb[1:]).item() for lg, lb in zip(logits, labels)) / len(labels))

    passes(capsys, "01.3", ppl)
    fails(capsys, "01.3", unshifted, hint="shift")
    fails(capsys, "01.3", in_bits, hint="nats")
    fails(capsys, "01.3", lambda lg, lb: math.log(float(ppl(lg, lb))), hint="exp of it")
    fails(capsys, "01.3", per_sequence, hint="per sequence")


# ---- 02 -----------------------------------------------------------------------------------------
def test_02_1(capsys):
    passes(capsys, "02.1", lambda s, keep: s.masked_fill(~keep, float("-inf")))
    passes(capsys, "02.1", lambda s, keep: s.masked_fill(~keep, torch.finfo(s.dtype).min))
    fails(capsys, "02.1", lambda s, keep: s + torch.where(keep, 0.0, -10000.0).to(s.dtype), hint="-10000")
    fails(capsys, "02.1", lambda s, keep: s.masked_fill(keep, float("-inf")), hint="may attend")
    fails(capsys, "02.1", lambda s, keep: s * keep, hint="0 is an ordinary score")
    fails(capsys, "02.1", lambda s, keep: s.masked_fill(~keep, torch.finfo(torch.float32).min), hint="float16")


def test_02_2(capsys):
    def window(n, w):
        return torch.tensor([[abs(i - j) <= w for j in range(n)] for i in range(n)])

    pairs = sum(min(1023, i + 32) - max(0, i - 32) + 1 for i in range(1024))
    passes(capsys, "02.2", window, pairs)
    fails(capsys, "02.2", lambda n, w: ~window(n, w), pairs, hint="Inverted")
    fails(capsys, "02.2", lambda n, w: torch.tensor([[abs(i - j) < w for j in range(n)] for i in range(n)]),
          pairs, hint="Off by one")
    fails(capsys, "02.2", lambda n, w: torch.tensor([[0 <= i - j <= w for j in range(n)] for i in range(n)]),
          pairs, hint="one-sided")
    fails(capsys, "02.2", window, 1024 * 65, hint="edges")
    fails(capsys, "02.2", window, 1024 * 1024, hint="every pair")


def _online(q, K, V, block, rescale=True, scale_dim=None):
    """Online attention reading ``block`` rows of K and V at a time (the reference answer, or a mistake)."""
    starts = range(0, len(K), block)
    return _online_blocks(q, [K[s:s + block] for s in starts], [V[s:s + block] for s in starts], rescale, scale_dim)


def test_02_3(capsys):
    passes(capsys, "02.3", _online)
    fails(capsys, "02.3", lambda q, K, V, b: _online(q, K, V, b, rescale=False), hint="exp(m_old - m_new)")
    fails(capsys, "02.3", lambda q, K, V, b: _online(q, K, V, b, scale_dim=V.shape[-1]), hint="sqrt(d_k)")

    def no_max(q, K, V, block):                 # block-wise, but without the running maximum
        ps = [torch.exp(K[s:s + block] @ q / math.sqrt(q.shape[-1])) for s in range(0, len(K), block)]
        return sum(p @ V[s * block:(s + 1) * block] for s, p in enumerate(ps)) / sum(p.sum() for p in ps)
    fails(capsys, "02.3", no_max, hint="overflows")

    def by_split(q, K, V, block):               # K.split(block) reads blocks too: accepted
        return _online_blocks(q, K.split(block), V.split(block))
    passes(capsys, "02.3", by_split)
    # the shortcuts that skip the point -- all keys at once -- are refused, however they are written
    fails(capsys, "02.3", lambda q, K, V, b: torch.softmax(K @ q / math.sqrt(q.shape[-1]), -1) @ V,
          hint="all of K at once")
    fails(capsys, "02.3", lambda q, K, V, b: torch.softmax(torch.matmul(K, q) / math.sqrt(q.shape[-1]), -1)
          @ V, hint="all of K at once")
    fails(capsys, "02.3", lambda q, K, V, b: _online(q, K[:], V[:], len(K)), hint="reads 100 rows at once")
    fails(capsys, "02.3", lambda q, K, V, b: _online(q, torch.stack(list(K)), V, b), hint="all of K at once")


def _online_blocks(q, K_blocks, V_blocks, rescale=True, scale_dim=None):
    d = q.shape[-1] if scale_dim is None else scale_dim
    m, l, acc = torch.tensor(float("-inf"), dtype=q.dtype), 0.0, 0.0
    for k, v in zip(K_blocks, V_blocks):
        s = k @ q / math.sqrt(d)
        m_new = torch.maximum(m, s.max())
        c = torch.exp(m - m_new) if rescale else 1.0
        p = torch.exp(s - m_new)
        l, acc, m = l * c + p.sum(), acc * c + p @ v, m_new
    return acc / l


def test_02_4(capsys):
    def by_torch(x, mha, scale_by=None):
        B, L, D = x.shape
        H = mha.n_heads
        split = [t.view(B, L, H, D // H).transpose(1, 2) for t in (mha.q_proj(x), mha.k_proj(x), mha.v_proj(x))]
        scale = None if scale_by is None else 1 / math.sqrt(scale_by)
        y = F.scaled_dot_product_attention(*split, scale=scale)
        return mha.out_proj(y.transpose(1, 2).reshape(B, L, D))

    passes(capsys, "02.4", by_torch)
    fails(capsys, "02.4", lambda x, mha: by_torch(x, mha, scale_by=x.shape[-1]), hint="not by sqrt(d_model)")

    def one_head(x, mha):
        w = torch.softmax(mha.q_proj(x) @ mha.k_proj(x).transpose(-1, -2) / math.sqrt(mha.head_dim), -1)
        return mha.out_proj(w @ mha.v_proj(x))
    fails(capsys, "02.4", one_head, hint="one big head")
    # the shortcut: let the module compute it
    fails(capsys, "02.4", lambda x, mha: mha(x)[0], hint="computes the answer for you")
    fails(capsys, "02.4", lambda x, mha: mha.forward(x)[0], hint="not part of this exercise")


# ---- 03 -----------------------------------------------------------------------------------------
def test_03_1(capsys):
    def mean_pool(h, mask):
        out = []
        for row, m in zip(h, mask):
            v = row[m.bool()].mean(0)
            out.append(v / v.norm())
        return torch.stack(out)

    passes(capsys, "03.1", mean_pool)
    fails(capsys, "03.1", lambda h, m: F.normalize(h.mean(1), dim=-1), hint="padding")
    fails(capsys, "03.1", lambda h, m: F.normalize(h[:, 0], dim=-1), hint="[CLS]")
    fails(capsys, "03.1", lambda h, m: mean_pool(h, m) * 3.0, hint="Normalise")


# ---- 04 -----------------------------------------------------------------------------------------
def test_04_1(capsys):
    from ftlib.gpt import GPTConfig

    def kv(cfg, n, b=4):
        per_layer = 2 * cfg.num_kv_heads * (cfg.hidden_size // cfg.num_heads)
        return per_layer * cfg.num_layers * n * b

    passes(capsys, "04.1", kv)
    assert kv(GPTConfig(), 1) == 46_080          # course-gpt: 30 layers x 3 kv heads x 64 x 2 x 4 bytes
    fails(capsys, "04.1", lambda c, n, b=4: kv(c, n, b) // c.num_kv_heads * c.num_heads, hint="num_kv_heads")
    fails(capsys, "04.1", lambda c, n, b=4: kv(c, n, b) // 2, hint="keys AND values")
    fails(capsys, "04.1", lambda c, n, b=4: kv(c, n, b) // c.num_layers, hint="every layer")


def test_04_2(capsys):
    def nucleus(logits, p):
        out = torch.full_like(logits, float("-inf"))
        for r in range(logits.shape[0]):
            probs = logits[r].softmax(-1)
            total = 0.0
            for i in probs.argsort(descending=True).tolist():
                out[r, i] = logits[r, i]
                total += probs[i].item()
                if total >= p:
                    break
        return out

    passes(capsys, "04.2", nucleus)

    def drops_crossing(logits, p):
        s, o = logits.sort(-1, descending=True)
        drop = s.softmax(-1).cumsum(-1) > p
        return torch.full_like(logits, float("-inf")).scatter(-1, o, s.masked_fill(drop, float("-inf")))
    fails(capsys, "04.2", drops_crossing, hint="takes the sum past p")
    fails(capsys, "04.2", lambda lg, p: nucleus(lg, p).softmax(-1), hint="not probabilities")


def test_04_2_tiny_top_p_is_greedy():
    from ftlib.gpt import sample_next

    logits = torch.randn(5, 30, generator=torch.Generator().manual_seed(0))
    for seed in range(3):
        got = sample_next(logits, temperature=1.7, top_p=1e-6, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(got[:, 0], logits.argmax(-1))


# ---- 05 -----------------------------------------------------------------------------------------
def _padding(lengths, order, bs):
    batches = [order[i:i + bs] for i in range(0, len(order), bs)]
    slots = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return (slots - sum(lengths[i] for i in order)) / slots


def test_05_1(capsys):
    passes(capsys, "05.1", _padding)
    fails(capsys, "05.1", lambda l, o, b: 1 - _padding(l, o, b), hint="REAL tokens")
    fails(capsys, "05.1", lambda l, o, b: 1 - sum(l) / (len(l) * max(l)), hint="whole data set")
    fails(capsys, "05.1", lambda l, o, b: _padding(l, o[:len(o) // b * b], b), hint="smaller batch")


def test_05_2(capsys):
    import numpy as np

    def smallest(lengths, at_most=0.01):
        lengths = np.sort(np.asarray(lengths))
        for m in range(1, int(lengths.max()) + 1):
            if np.count_nonzero(lengths > m) <= at_most * len(lengths):
                return m

    passes(capsys, "05.2", smallest)

    def with_ge(lengths, at_most=0.01):
        lengths = np.asarray(lengths)
        return next(m for m in range(1, 10_000) if (lengths >= m).mean() <= at_most)
    fails(capsys, "05.2", with_ge, hint="not >=")
    fails(capsys, "05.2", lambda lengths, at_most=0.01: int(np.max(lengths)) + 5, hint="find the smallest")


def test_05_3(capsys):
    def no_leak(val, train):
        return [v for v in val if all(v not in t for t in train)]

    passes(capsys, "05.3", no_leak)
    fails(capsys, "05.3", lambda val, train: [v for v in val if v not in set(train)], hint="INSIDE")
    fails(capsys, "05.3", lambda val, train: [v for v in val if all(t not in v for t in train)], hint="other way round")
    fails(capsys, "05.3", lambda val, train: sorted(no_leak(val, train)), hint="order")
    import ftlib
    fails(capsys, "05.3", ftlib.drop_leaks, hint="write it here")       # the shortcut: ftlib's own


# ---- 06 -----------------------------------------------------------------------------------------
def test_06_1(capsys):
    def warmup(n, b, e, r):
        steps = (n + b - 1) // b * e
        return math.ceil(r * steps)

    passes(capsys, "06.1", warmup)
    assert warmup(67_349, 32, 3, 0.06) == 379
    fails(capsys, "06.1", lambda n, b, e, r: math.ceil(r * (n // b) * e), hint="smaller batch")
    fails(capsys, "06.1", lambda n, b, e, r: int(r * math.ceil(n / b) * e), hint="round up")
    fails(capsys, "06.1", lambda n, b, e, r: math.ceil(r * n * e), hint="not examples")


def test_06_2(capsys):
    def accumulate(model, x, y, micro):
        model.zero_grad()
        for xi, yi in zip(x.split(micro), y.split(micro)):
            F.cross_entropy(model(xi), yi, reduction="sum").div(len(x)).backward()

    def divide_by_k(model, x, y, micro):
        model.zero_grad()
        k = math.ceil(len(x) / micro)
        for xi, yi in zip(x.split(micro), y.split(micro)):
            (F.cross_entropy(model(xi), yi) / k).backward()

    def no_scaling(model, x, y, micro):
        model.zero_grad()
        for xi, yi in zip(x.split(micro), y.split(micro)):
            F.cross_entropy(model(xi), yi).backward()

    def no_zero(model, x, y, micro):
        for xi, yi in zip(x.split(micro), y.split(micro)):
            F.cross_entropy(model(xi), yi, reduction="sum").div(len(x)).backward()

    passes(capsys, "06.2", accumulate)
    fails(capsys, "06.2", divide_by_k, hint="same size")
    fails(capsys, "06.2", no_scaling, hint="SUM")
    fails(capsys, "06.2", no_zero, hint="zero_grad")

    def one_full_batch(model, x, y, micro):      # the shortcut: the right gradient, without accumulating
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
    fails(capsys, "06.2", one_full_batch, hint="rows at once")


def test_06_3(capsys):
    def weighted(means, sizes):
        return float(torch.tensor(means, dtype=torch.float64) @ torch.tensor(sizes, dtype=torch.float64) / sum(sizes))

    passes(capsys, "06.3", weighted)
    fails(capsys, "06.3", lambda means, sizes: sum(means) / len(means), hint="seed 000")
    fails(capsys, "06.3", lambda means, sizes: sum(means) / sum(sizes), hint="multiply it back")


def test_a_crashing_answer_is_reported_not_raised(capsys):
    ok, out = run(capsys, "01.3", lambda logits, labels: 1 / 0)
    assert not ok and "ZeroDivisionError" in out
