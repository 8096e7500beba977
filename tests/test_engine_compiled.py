"""The GPU recipe, rehearsed on the CPU: static length buckets, bf16 autocast, the fused AdamW kernel and
torch.compile, on the real transformers BERT and Llama classes at a tiny size. What must hold on any
device: no graph break, no recompilation once training has started, a falling loss, and -- in float32 --
the same weights as the eager loop."""
import pytest
import torch

import ftlib.train as engine
from conftest import make_classification_data, make_tiny_bert, make_tiny_llama
from ftlib.batches import DeviceBatches

pytestmark = pytest.mark.compile
QUIET = dict(progress=False, verbose=False)


def counters():
    from torch._dynamo.utils import counters as c
    return sum(c["graph_break"].values()), c["stats"]["unique_graphs"]


def run(model, train, dev, task, dtype, compile, monkeypatch, epochs=2):
    """fit(), recording the compiler's counters just after the warm-up (before the clock starts)."""
    torch._dynamo.reset()
    from torch._dynamo.utils import counters as c
    c.clear()
    seen = {}
    warm_up = engine._warm_up

    def recording_warm_up(*args, **kwargs):
        out = warm_up(*args, **kwargs)
        seen["after_warm_up"] = counters()
        return out

    monkeypatch.setattr(engine, "_warm_up", recording_warm_up)
    torch.manual_seed(0)
    h = engine.fit(model, train, dev, task=task, epochs=epochs, lr=3e-3, warmup_ratio=0.1, dtype=dtype, fused=True,
                   compile=compile, device="cpu", log_every=100, **QUIET)
    return h, seen.get("after_warm_up"), counters()


def lm_data(n=24, width=32):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(6, width + 1, (n,), generator=g)
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    ids = (torch.arange(width)[None] * 3 + torch.randint(0, 4, (n, 1), generator=g)) % 60 + 1   # learnable
    ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


CASES = {
    "bert": (make_tiny_bert, lambda: make_classification_data(48, max_len=32), "classification", "4d"),
    "llama": (make_tiny_llama, lm_data, "causal_lm", "none"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_full_recipe_compiles_once_per_shape_and_learns(name, monkeypatch):
    """BERT: two length buckets, training and evaluation (4 shapes x grad modes); Llama (slower to
    compile on a CPU): one bucket, training only, through the chunked loss."""
    make, data_of, task, mask = CASES[name]
    data = data_of()
    bucket = 16 if name == "bert" else 32
    train = DeviceBatches(data, 8, shuffle=True, static=True, pad_multiple=bucket, mask=mask)
    dev = DeviceBatches(data, 16, static=True, pad_multiple=bucket, mask=mask)
    model = make()
    before = engine.evaluate(model, dev, "cpu", task=task)["loss"]
    h, after_warm_up, at_end = run(model, train, dev if name == "bert" else None, task, torch.bfloat16, True,
                                   monkeypatch, epochs=8)
    breaks, graphs = at_end
    assert breaks == 0
    assert after_warm_up == at_end, "a recompilation happened after the warm-up"
    assert len(train.shapes()) == (2 if name == "bert" else 1)
    assert graphs >= len(train.shapes()) + (len(dev.shapes()) if name == "bert" else 0)   # all compiled first
    assert h.compile_seconds > 0 and h.train_seconds > 0
    after = engine.evaluate(model, dev, "cpu", task=task)["loss"]
    assert after < before - 0.05 and h.step_loss[-1] < h.step_loss[0]
    # the check can fail: the same run that does not learn (lr=0, eager) does not pass it
    still = make()
    engine.fit(still, train, None, task=task, epochs=8, lr=0.0, device="cpu", **QUIET)
    assert not engine.evaluate(still, dev, "cpu", task=task)["loss"] < before - 0.05


def test_compiled_float32_training_gives_the_eager_weights(monkeypatch):
    make, data_of, task, mask = CASES["bert"]
    data = data_of()
    results = []
    for compile in (False, True):
        model = make()
        train = DeviceBatches(data, 8, shuffle=True, static=True, pad_multiple=32, mask=mask)
        h, _, _ = run(model, train, None, task, torch.float32, compile, monkeypatch)
        results.append((model, h))
    (eager, h_eager), (compiled, h_compiled) = results
    # inductor fuses and reorders float32 arithmetic: the same maths to about 1e-6 per step
    assert h_compiled.step_loss == pytest.approx(h_eager.step_loss, abs=1e-4)
    for (k, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4, msg=k)
