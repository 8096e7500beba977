"""Tests for ftlib.bench: the results file and the sharded weight export (tiny local models)."""
import json

import pytest
import torch
import transformers

import ftlib
from ftlib import bench, deploy


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tok = ftlib.load_tokenizer("course-bert")
    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=2))
    gpt = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, pad_token_id=tok.pad_token_id))
    for name, model in (("bert", bert), ("gpt", gpt)):
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


def test_bench_writes_a_valid_results_file(tiny_models, tmp_path):
    path = bench.main(["--budget", "tiny", "--out", str(tmp_path), "--quiet",
                       "--bert-model", str(tiny_models / "bert"), "--gpt-model", str(tiny_models / "gpt")])
    r = json.loads(path.read_text())
    assert r["budget"] == "tiny" and r["hardware"]["device"] == str(ftlib.pick_device())
    assert set(r["software"]) >= {"python", "torch", "transformers"}
    b, g = r["bert"], r["gpt"]
    assert b["settings"]["n_train"] == 64 and len(b["ftlib"]["epoch_accuracy"]) == 1
    for side in ("ftlib", "trainer", "trainer_tuned"):
        run = b[side]
        # throughput is examples over seconds (accuracy itself is checked where it is computed:
        # tests/test_engine.py compares evaluate() with a hand count)
        assert run["samples_per_s"] == pytest.approx(64 / run["train_seconds"], rel=1e-6)
    assert b["ftlib"]["examples"] == 64 and b["ftlib"]["settings"]["steps"] == 2
    assert b["trainer_tuned"]["settings"]["tuned"] and not b["trainer"]["settings"]["tuned"]
    assert b["speedup"] == pytest.approx(b["ftlib"]["samples_per_s"] / b["trainer"]["samples_per_s"])
    assert g["tokens"] == 2 * 2 * 32 and g["tokens_per_s"] == pytest.approx(g["tokens"] / g["seconds"])
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_models / "gpt")
    from ftlib.flops import training_flops_per_token
    assert g["flops_per_token"] == training_flops_per_token(model, 32)
    if r["hardware"]["gpu"] is None:
        assert g["mfu"] is None and g["peak_bf16_tflops"] is None
    table = (tmp_path / "latest.md").read_text()
    assert path.name in table and table.count("\n| 20") == 1      # one row per results file


def test_random_init_gpt_has_course_gpts_size():
    model = bench.gpt_model({"random_init": True, "model": "course-gpt"}, "cpu")
    # SmolLM2-135M: the README's 134.5M parameters (the output layer shares the embedding)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_the_ablation_changes_one_ingredient_per_row():
    names = [name for name, _ in bench.ABLATION]
    assert names[0] == "eager fp32" and names[-1] == "+ CUDA graphs"
    for (_, before), (_, after) in zip(bench.ABLATION, bench.ABLATION[1:]):
        changed = {k for k in after if after[k] != before[k]}
        assert len(changed) == 1 or changed == {"static", "mask"}, changed


def test_export_weights_shards_reload_to_identical_logits(tiny_models, tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "src"
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2))
    model.save_pretrained(src)
    ftlib.load_tokenizer(str(tiny_models / "gpt")).save_pretrained(src)
    out = tmp_path / "out"
    bench.main(["export-weights", str(out), "--model", str(src), "--max-shard-size", "40KB"])
    shards = sorted(out.glob("*.safetensors"))
    assert len(shards) >= 3 and all(p.stat().st_size < 48_000 for p in shards)
    manifest = (out / "MANIFEST.txt").read_text()
    assert all(p.name in manifest for p in shards)
    again = ftlib.load_model(str(out), task="causal-lm").eval()
    ids = torch.randint(0, 500, (2, 12))
    # the reference: the unsharded original, loaded in bfloat16 the same way (model.to(bfloat16) would
    # also round the rotary-embedding frequencies, which loading with dtype= keeps in float32)
    want = ftlib.load_model(str(src), task="causal-lm", dtype=torch.bfloat16).eval()(ids).logits
    assert again.dtype == torch.float32                    # float32 master weights, holding the bf16 values
    wanted = ftlib.load_model(str(src), task="causal-lm", dtype=torch.bfloat16)
    for (k, a), b in zip(again.state_dict().items(), wanted.state_dict().values()):
        assert torch.equal(a, b.float()), k
    assert torch.equal(ftlib.load_model(str(out), task="causal-lm", dtype=torch.bfloat16).eval()(ids).logits, want)
    torch.testing.assert_close(want.float(), model(ids).logits, atol=0.05, rtol=0.05)   # bf16 rounding only
    with pytest.raises(ftlib.CourseError):
        deploy.export_weights(out, str(src))                   # refuses a non-empty folder


def test_the_trainer_baseline_uses_the_engines_schedule_and_decay_rule(tmp_path):
    """The Trainer baseline is only a fair comparison if it trains with the same recipe: the same
    learning rate at every step (warm-up, then linear decay) and weight decay on the same weights."""
    import math

    from conftest import make_tiny_bert
    from ftlib.train import linear_schedule, make_optimizer

    s = dict(bench.SETTINGS["small"]["bert"], epochs=1)
    total = 50
    model = make_tiny_bert()
    args = bench.trainer_arguments(s, torch.device("cpu"), torch.float32, tmp_path)
    trainer = transformers.Trainer(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=total)
    ours_opt = make_optimizer(make_tiny_bert(), s["lr"], weight_decay=0.01)
    ours = linear_schedule(ours_opt, math.ceil(s["warmup_ratio"] * total), total)
    theirs, mine = [], []
    for _ in range(total):
        theirs.append(trainer.lr_scheduler.get_last_lr()[0])
        mine.append(ours.get_last_lr()[0])
        trainer.optimizer.step()
        ours_opt.step()
        trainer.lr_scheduler.step()
        ours.step()
    assert theirs == pytest.approx(mine, abs=1e-12)
    assert theirs[0] == 0.0 and max(theirs) == pytest.approx(s["lr"]) and theirs[-1] < s["lr"] / 10
    # wrong recipes this rejects: no warm-up (full rate at step 1), a constant rate (no decay)
    assert theirs[0] != s["lr"] and theirs[-1] != theirs[len(theirs) // 2]
    decayed = {n for n, p in model.named_parameters() for g in trainer.optimizer.param_groups
               if g["weight_decay"] == 0.01 and any(p is q for q in g["params"])}
    assert decayed == {n for n, p in model.named_parameters() if p.ndim >= 2}
