"""ftlib.deploy: saving safely, compressing, exporting, serving and drift statistics."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers

import ftlib
from ftlib import CourseError, deploy
from conftest import make_sentiment_bert as tiny_model


SENTENCES = ["a gorgeous , witty , seductive movie .", "it 's a mess .", "dull",
             "the acting is fine but the plot goes nowhere and the ending is worse"]


def logits(model, tokenizer, sentences):
    with torch.no_grad():
        return model(**tokenizer(sentences, padding=True, return_tensors="pt")).logits


# ----------------------------------------------------------------------------- save / load

def test_save_load_roundtrip_and_refuse_overwrite(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    target = tmp_path / "clf"
    deploy.save(model, tokenizer, target)
    assert (target / "model.safetensors").is_file() and not list(target.glob("*.bin"))
    loaded, tok = deploy.load(target)
    torch.testing.assert_close(logits(loaded, tok, SENTENCES), logits(model, tokenizer, SENTENCES))
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(CourseError, match="overwrite=True"):
        deploy.save(tiny_model(tokenizer, seed=1), tokenizer, target)
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp      # untouched
    other = tiny_model(tokenizer, seed=1)
    deploy.save(other, tokenizer, target, overwrite=True)
    torch.testing.assert_close(logits(deploy.load(target)[0], tokenizer, SENTENCES),
                               logits(other, tokenizer, SENTENCES))
    assert [p.name for p in tmp_path.iterdir()] == ["clf"]                  # no temporary folders left


def test_save_into_empty_folder_is_fine_and_a_file_is_not(tokenizer, tmp_path):
    (tmp_path / "empty").mkdir()
    deploy.save(tiny_model(tokenizer), tokenizer, tmp_path / "empty")
    assert (tmp_path / "empty" / "config.json").is_file()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CourseError, match="is a file"):
        deploy.save(tiny_model(tokenizer), tokenizer, tmp_path / "afile")


def test_save_refuses_a_quantised_model(tokenizer, tmp_path):
    with pytest.raises(CourseError, match="quantise after loading"):
        deploy.save(deploy.quantize_int8(tiny_model(tokenizer)), tokenizer, tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_check_model_dir_errors(tokenizer, tmp_path):
    with pytest.raises(CourseError, match="No model folder"):
        deploy.check_model_dir(tmp_path / "nowhere")
    deploy.save(tiny_model(tokenizer), tokenizer, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CourseError, match="missing model.safetensors"):
        deploy.check_model_dir(tmp_path / "m")
    torch.save({}, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(CourseError, match="pickled weights"):
        deploy.load(tmp_path / "m")
    model_only = tmp_path / "model_only"
    tiny_model(tokenizer).save_pretrained(model_only)
    with pytest.raises(CourseError, match="tokenizer"):
        deploy.Predictor(model_only)


# ----------------------------------------------------------------------------- Predictor and command line

@pytest.fixture(scope="module")
def saved(tokenizer, tmp_path_factory):
    return deploy.save(tiny_model(tokenizer), tokenizer, tmp_path_factory.mktemp("p") / "clf")


def test_predictor_predicts_like_the_model(saved, tokenizer):
    pred = deploy.Predictor(saved)
    assert pred.max_length == 128                        # the tiny model's max_position_embeddings
    out = pred.predict(SENTENCES)
    probs = logits(tiny_model(tokenizer), tokenizer, SENTENCES).softmax(-1)
    assert [r["sentence"] for r in out] == SENTENCES
    assert [r["label"] for r in out] == [["negative", "positive"][int(i)] for i in probs.argmax(-1)]
    assert np.allclose([r["probability"] for r in out], probs.max(-1).values.numpy(), atol=1e-5)


def test_predictor_errors(saved):
    pred = deploy.Predictor(saved)
    with pytest.raises(CourseError, match="empty list"):
        pred.predict([])
    with pytest.raises(CourseError, match="Sentence 1 is empty"):
        pred.predict(["fine", "   "])
    with pytest.raises(CourseError, match="not a string but int"):
        pred.predict(["fine", 3])
    long = " ".join(["great"] * 300)
    with pytest.raises(CourseError, match=r"at most 128.*truncate=True"):
        pred.predict(["ok", long])
    assert len(deploy.Predictor(saved, truncate=True).predict(["ok", long])) == 2
    with pytest.raises(CourseError, match="between 2 and 128"):
        deploy.Predictor(saved, max_length=1000)


def test_main_prints_and_fails_cleanly(saved, tmp_path, capsys):
    assert deploy.main([str(saved), "--json", "a fine film", "awful"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["sentence"] for r in rows] == ["a fine film", "awful"]
    assert deploy.main([str(tmp_path / "missing"), "hello"]) == 2
    assert "No model folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- compressing

def test_quantize_int8_keeps_course_bert_predictions(tokenizer):
    """A head fitted on course-bert's pooled outputs gives (almost) the same labels after int8."""
    from sklearn.linear_model import LogisticRegression

    sst2 = ftlib.load_sst2()
    train = sst2["train"].shuffle(seed=0).select(range(64))
    dev = sst2["validation"].select(range(48))
    model = ftlib.load_model("course-bert", task="classification", num_labels=2).eval()
    with torch.no_grad():
        enc = tokenizer(list(train["sentence"]), padding=True, return_tensors="pt")
        pooled = model.bert(**enc).pooler_output
    head = LogisticRegression(C=10.0, max_iter=2000).fit(pooled.numpy(), list(train["label"]))
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(np.vstack([-head.coef_, head.coef_]) / 2))
        model.classifier.bias.copy_(torch.tensor([-head.intercept_[0], head.intercept_[0]]) / 2)
    q = deploy.quantize_int8(model)
    assert any("quantized" in type(m).__module__ for m in q.modules())
    # Linear weights shrink to 1 byte each; embeddings, LayerNorms and biases stay float32
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    total = sum(p.numel() for p in model.parameters())
    assert deploy.size_mb(q) == pytest.approx((linear + 4 * (total - linear)) / 1e6, rel=0.03)
    a = logits(model, tokenizer, list(dev["sentence"])).argmax(-1)
    b = logits(q, tokenizer, list(dev["sentence"])).argmax(-1)
    assert (a == b).float().mean() >= 0.9
    assert (b == torch.tensor(list(dev["label"]))).float().mean() >= 0.6      # still far above chance


def test_prune_unstructured_hits_the_sparsity(tokenizer):
    model = tiny_model(tokenizer)
    assert deploy.sparsity(model) == 0.0
    pruned = deploy.prune_unstructured(model, 0.5)
    assert abs(deploy.sparsity(pruned) - 0.5) < 0.01
    assert deploy.sparsity(model) == 0.0                                   # the original is untouched
    assert abs(deploy.size_mb(pruned) - deploy.size_mb(model)) < 0.01     # zeros still take space
    layer = pruned.bert.encoder.layer[0].intermediate.dense
    orig = model.bert.encoder.layer[0].intermediate.dense.weight
    kept = layer.weight != 0
    assert orig[kept].abs().min() >= orig[~kept].abs().max()              # the smallest were removed
    with pytest.raises(CourseError):
        deploy.prune_unstructured(model, 1.0)


def test_prune_ffn_shrinks_and_keeps_everything_when_asked(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    same = deploy.prune_ffn(model, 64)
    torch.testing.assert_close(logits(same, tokenizer, SENTENCES), logits(model, tokenizer, SENTENCES))
    small = deploy.prune_ffn(model, 16)
    assert small.bert.encoder.layer[1].intermediate.dense.weight.shape == (16, 32)
    assert small.bert.encoder.layer[1].output.dense.weight.shape == (32, 16)
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in model.parameters()) - 2 * (2 * 48 * 32 + 48)
    deploy.save(small, tokenizer, tmp_path / "small")
    torch.testing.assert_close(logits(deploy.load(tmp_path / "small")[0], tokenizer, SENTENCES),
                               logits(small, tokenizer, SENTENCES))
    with pytest.raises(CourseError, match="between 1 and"):
        deploy.prune_ffn(model, 65)


def test_student_and_distillation_loss(tokenizer):
    teacher = tiny_model(tokenizer)
    student = deploy.make_student(teacher, 1)
    assert len(student.bert.encoder.layer) == 1 and student.config.num_hidden_layers == 1
    assert len(teacher.bert.encoder.layer) == 2
    torch.manual_seed(0)
    s, t, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    assert deploy.distillation_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    T = 3.0
    p_t = (t / T).softmax(-1)
    kl = (p_t * (p_t.log() - (s / T).log_softmax(-1))).sum(-1).mean() * T * T
    want = 0.3 * kl + 0.7 * F.cross_entropy(s, y)
    assert deploy.distillation_loss(s, t, y, temperature=T, alpha=0.3).item() == pytest.approx(want.item(), rel=1e-5)


# ----------------------------------------------------------------------------- export

def test_export_matches_eager_on_new_shapes(tokenizer):
    model = tiny_model(tokenizer)
    program = deploy.export_classifier(model, tokenizer, SENTENCES[:2], max_length=128)
    others = SENTENCES + ["one more sentence with quite a few more words in it than the others ."]
    enc = tokenizer(others, padding=True, return_tensors="pt")
    assert enc["input_ids"].shape != tokenizer(SENTENCES[:2], padding=True, return_tensors="pt")["input_ids"].shape
    with torch.no_grad():
        got = program.module()(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    torch.testing.assert_close(got, logits(model, tokenizer, others), atol=1e-5, rtol=1e-4)


def test_export_onnx_runs_in_onnx_runtime_on_new_shapes(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    path = deploy.export_onnx(model, tokenizer, tmp_path / "clf.onnx", SENTENCES[:2], max_length=128)
    assert path == tmp_path / "clf.onnx" and path.stat().st_size > 0
    run = deploy.onnx_runner(path, threads=1)
    traced = tokenizer(SENTENCES[:2], padding=True, return_tensors="pt")["input_ids"].shape
    for others in (SENTENCES + ["one more sentence with quite a few more words in it than the others ."],
                   ["dull"]):                                   # a longer batch of 5, and one short sentence
        enc = tokenizer(others, padding=True, return_tensors="pt")
        assert enc["input_ids"].shape[0] != traced[0] and enc["input_ids"].shape[1] != traced[1]
        torch.testing.assert_close(run(**enc), logits(model, tokenizer, others), atol=1e-5, rtol=1e-4)
    enc = tokenizer(SENTENCES, padding=True, return_tensors="np")              # NumPy in, no token types
    torch.testing.assert_close(run(enc["input_ids"], enc["attention_mask"]), logits(model, tokenizer, SENTENCES),
                               atol=1e-5, rtol=1e-4)
    with pytest.raises(CourseError, match=r"\.onnx"):
        deploy.export_onnx(model, tokenizer, tmp_path / "clf.bin")


def test_export_onnx_says_how_to_install_what_is_missing(tokenizer, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(CourseError, match="onnxruntime is not installed: pip install onnx onnxruntime"):
        deploy.export_onnx(tiny_model(tokenizer), tokenizer, tmp_path / "clf.onnx")
    with pytest.raises(CourseError, match="pip install onnx onnxruntime"):
        deploy.onnx_runner(tmp_path / "clf.onnx")
    assert not (tmp_path / "clf.onnx").exists()


def test_benchmark_reports_each_batch_size(tokenizer):
    """A callable whose cost is known (10 ms per sentence, plus calls of 200 ms injected at known
    places) against what benchmark reports: two slow batches of 20 reach the p95 and one does not;
    the p50 ignores them; the thread count asked for holds during the calls and is restored after."""
    import time

    calls, threads_seen = [], set()
    slow = {5, 12, 30}      # call numbers: bs 1 is calls 1-2 (warm-up) and 3-22, bs 4 is 23-24 and 25-44

    def fn(input_ids, **_):
        calls.append(len(input_ids))
        threads_seen.add(torch.get_num_threads())
        time.sleep(0.2 if len(calls) in slow else 0.01 * len(input_ids))

    before = torch.get_num_threads()
    want = 2 if before == 1 else 1
    out = deploy.benchmark(fn, tokenizer, SENTENCES * 4, batch_sizes=(1, 4), min_seconds=0.0, min_batches=20,
                           max_batches=20, warmup=2, threads=want)
    assert torch.get_num_threads() == before and threads_seen == {want}
    assert set(out) == {1, 4}
    assert calls == [1] * 22 + [4] * 22
    for bs, r in out.items():
        assert r["n_batches"] == 20 and r["threads"] == want
        assert r["ms_per_batch"] == r["p50_ms"]
        assert 10 * bs <= r["p50_ms"] < 10 * bs + 30           # sleep is a lower bound; the slow calls are ignored
        assert r["sentences_per_s"] == pytest.approx(bs / r["p50_ms"] * 1000)
        assert r["p95_ms"] >= r["p50_ms"]
    assert out[1]["p95_ms"] >= 200                              # 2 slow batches of 20: the p95 sees them
    assert out[4]["p95_ms"] < 200                               # 1 of 20: still below the 95th percentile
    # min_seconds keeps timing past min_batches
    quick = deploy.benchmark(lambda **_: None, tokenizer, SENTENCES, batch_sizes=(2,), min_seconds=0.05,
                             min_batches=3)[2]
    assert quick["n_batches"] > 3 and quick["threads"] == before
    assert deploy.benchmark(tiny_model(tokenizer), tokenizer, SENTENCES, batch_sizes=(2,), min_seconds=0.0)[2][
        "ms_per_batch"] > 0                                         # a real model runs too

    def broken(**_):
        raise ValueError("boom")

    with pytest.raises(ValueError):
        deploy.benchmark(broken, tokenizer, SENTENCES, batch_sizes=(2,), threads=want)
    assert torch.get_num_threads() == before                    # restored after an error too
    with pytest.raises(CourseError):
        deploy.benchmark(tiny_model(tokenizer), tokenizer, SENTENCES, batch_sizes=(8,))
    with pytest.raises(CourseError, match="threads"):
        deploy.benchmark(fn, tokenizer, SENTENCES, batch_sizes=(2,), threads=0)
    with pytest.raises(CourseError, match="max_batches"):
        deploy.benchmark(fn, tokenizer, SENTENCES, batch_sizes=(2,), min_batches=20, max_batches=10)


# ----------------------------------------------------------------------------- monitoring

def test_psi():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5000)
    assert deploy.psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert deploy.psi(ref, rng.normal(size=5000)) < 0.1
    assert deploy.psi(ref, rng.normal(loc=1.0, size=5000)) > 0.25
    # categorical: shares 0.5/0.5 against 0.8/0.2
    want = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    got = deploy.psi([0] * 50 + [1] * 50, [0] * 80 + [1] * 20, categorical=True)
    assert got == pytest.approx(want)
    with pytest.raises(CourseError):
        deploy.psi([], [1, 2])


def test_drift_windows_by_hand():
    # reference: half positive; stream: 4 windows of 10 -- two like the reference, then two at 80 %
    reference = [0] * 50 + [1] * 50
    stream = [0, 1] * 5 + [1, 0] * 5 + ([1] * 8 + [0] * 2) * 2 + [1, 1, 1]     # 3 left over: no 5th window
    rows = deploy.drift_windows(reference, stream, window=10, threshold=0.25, categorical=True)
    large = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)  # 0.416
    assert [r["window"] for r in rows] == [0, 1, 2, 3]
    assert [(r["start"], r["end"]) for r in rows] == [(0, 10), (10, 20), (20, 30), (30, 40)]
    assert [r["value"] for r in rows] == pytest.approx([0.0, 0.0, large, large])
    assert [r["alert"] for r in rows] == [False, False, True, True]             # fires on the drift, not before
    # numbers: each window's value is psi() of that slice; a custom statistic replaces it
    rng = np.random.default_rng(0)
    ref = rng.normal(size=2000)
    live = np.concatenate([rng.normal(size=600), rng.normal(loc=1.5, size=600)])
    rows = deploy.drift_windows(ref, live, window=200, threshold=0.25, bins=5)
    assert [r["value"] for r in rows] == pytest.approx([deploy.psi(ref, live[i:i + 200], bins=5)
                                                        for i in range(0, 1200, 200)])
    assert [r["alert"] for r in rows] == [False] * 3 + [True] * 3
    gap = deploy.drift_windows(ref, live, window=300, threshold=0.5,
                               statistic=lambda r, c: abs(np.mean(c) - np.mean(r)))
    assert [r["value"] for r in gap] == pytest.approx([abs(live[i:i + 300].mean() - ref.mean())
                                                      for i in range(0, 1200, 300)])
    assert [r["alert"] for r in gap] == [False, False, True, True]
    with pytest.raises(CourseError):
        deploy.drift_windows(ref, live[:5], window=10)
    with pytest.raises(CourseError):
        deploy.drift_windows(ref, live, window=0)
