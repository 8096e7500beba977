"""ftlib.text and ftlib.train: batching, the training loop, resuming, and clear errors."""
import math

import datasets
import pytest
import torch
import transformers

import ftlib
from ftlib import CourseError
from ftlib.text import LengthGroupedSampler, count_padding, make_loader, tokenize_dataset
from ftlib.train import History, best_epoch, evaluate, fit, linear_schedule, make_optimizer, overfits, predict
from conftest import make_tiny_bert


@pytest.fixture(scope="module")
def sst2_small():
    ds = ftlib.load_sst2()["train"]
    return ds.shuffle(seed=0).select(range(96))


def tiny_model(tokenizer, seed=0, dropout=0.1, vocab_size=None):
    """A random 2-layer BERT (hidden 32) that uses course-bert's vocabulary."""
    return make_tiny_bert(vocab=vocab_size or len(tokenizer), seed=seed, dropout=dropout)


def tiny_loader(ds, tokenizer, batch_size=8, **kw):
    return make_loader(tokenize_dataset(ds, tokenizer, max_length=32), tokenizer, batch_size,
                       shuffle=True, seed=0, **kw)


QUIET = dict(device="cpu", progress=False, verbose=False)


# ---------------------------------------------------------------- ftlib.text

def test_tokenize_dataset_matches_the_tokenizer_and_renames_labels(tokenizer, sst2_small):
    tok = tokenize_dataset(sst2_small, tokenizer, max_length=16)
    assert "labels" in tok.column_names and "sentence" not in tok.column_names
    want = tokenizer(sst2_small["sentence"][:5], truncation=True, max_length=16)["input_ids"]
    assert tok["input_ids"][:5] == want
    assert max(len(x) for x in tok["input_ids"]) <= 16
    assert tok["labels"] == sst2_small["label"]


def test_loader_pads_each_batch_to_its_longest_row(tokenizer, sst2_small):
    tok = tokenize_dataset(sst2_small, tokenizer, max_length=64)
    loader = make_loader(tok, tokenizer, batch_size=8)
    lengths = [len(x) for x in tok["input_ids"]]
    for k, batch in enumerate(loader):
        assert batch["input_ids"].shape == (8, max(lengths[8 * k:8 * k + 8]))
        assert batch["attention_mask"].sum().item() == sum(lengths[8 * k:8 * k + 8])
        assert batch["labels"].dtype == torch.long
    real, pad = count_padding(loader)
    assert real == sum(lengths) and pad == sum(8 * max(lengths[i:i + 8]) for i in range(0, 96, 8)) - real


def test_length_grouping_keeps_every_example_once_and_pads_less(tokenizer):
    ds = ftlib.load_sst2()["train"].shuffle(seed=1).select(range(800))
    tok = tokenize_dataset(ds, tokenizer, max_length=64)
    plain = make_loader(tok, tokenizer, batch_size=16, shuffle=True)
    grouped = make_loader(tok, tokenizer, batch_size=16, group_by_length=True)
    assert count_padding(grouped)[1] < count_padding(plain)[1] / 2
    lengths = list(range(50)) * 2
    sampler = LengthGroupedSampler(lengths, batch_size=8, mega_batch_mult=4,
                                   generator=torch.Generator().manual_seed(0))
    order = list(sampler)
    assert sorted(order) == list(range(100))
    assert order != list(sampler)          # a new order every pass


def test_length_grouped_order_is_the_documented_algorithm():
    """A reference written from the docstring: permute, sort each mega-batch longest first, cut into
    batches, shuffle the full batches (the short one last). Unshuffled batches or unsorted mega-batches
    give another order."""
    g = torch.Generator().manual_seed(4)
    lengths = torch.randint(1, 60, (103,), generator=g).tolist()

    def reference(seed, bs=8, mult=4):
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(lengths), generator=gen).tolist()
        batches = []
        for s in range(0, len(perm), bs * mult):
            mega = sorted(perm[s:s + bs * mult], key=lambda i: -lengths[i])
            batches += [mega[j:j + bs] for j in range(0, len(mega), bs)]
        full = [b for b in batches if len(b) == bs]
        short = [b for b in batches if len(b) < bs]
        order = torch.randperm(len(full), generator=gen).tolist()
        return [i for b in [full[k] for k in order] + short for i in b]

    for seed in (0, 1):
        got = list(LengthGroupedSampler(lengths, 8, mega_batch_mult=4, generator=torch.Generator().manual_seed(seed)))
        assert got == reference(seed)
    batch_max = [max(lengths[i] for i in got[j:j + 8]) for j in range(0, 96, 8)]
    assert batch_max != sorted(batch_max, reverse=True)        # the batches are not left longest first


def test_make_loader_shuffles_by_its_seed(tokenizer, sst2_small):
    tok = tokenize_dataset(sst2_small, tokenizer, max_length=32)
    for kw in (dict(shuffle=True), dict(group_by_length=True)):
        def first_labels(seed):
            return [b["labels"].tolist() for b in make_loader(tok, tokenizer, 8, seed=seed, **kw)]
        assert first_labels(0) == first_labels(0)               # the same seed, the same order
        assert first_labels(0) != first_labels(1)               # another seed, another order


def test_bad_data_raises_course_errors(tokenizer, sst2_small):
    with pytest.raises(CourseError, match="empty"):
        tokenize_dataset(sst2_small.select([]), tokenizer, max_length=16)
    with pytest.raises(CourseError, match="empty"):
        make_loader(tokenize_dataset(sst2_small, tokenizer, 16).select([]), tokenizer, 8)
    bad = datasets.Dataset.from_dict({"sentence": ["good", "bad", "meh"], "label": [0, 1, 2]})
    with pytest.raises(CourseError, match="labels must be 0 .. 1"):
        tokenize_dataset(bad, tokenizer, max_length=16, num_labels=2)
    neg = datasets.Dataset.from_dict({"sentence": ["good", "bad"], "label": [0, -1]})
    with pytest.raises(CourseError, match="label -1"):
        tokenize_dataset(neg, tokenizer, max_length=16)


# ---------------------------------------------------------------- schedule and optimizer

def test_linear_schedule_matches_transformers():
    p = torch.nn.Parameter(torch.zeros(1))
    ours = linear_schedule(torch.optim.SGD([p], lr=1.0), warmup_steps=7, total_steps=50)
    ref = transformers.get_linear_schedule_with_warmup(torch.optim.SGD([p], lr=1.0), 7, 50)
    for _ in range(55):
        assert ours.get_last_lr()[0] == pytest.approx(ref.get_last_lr()[0], abs=1e-12)
        ours.optimizer.step(), ref.optimizer.step()
        ours.step(), ref.step()


def test_no_weight_decay_on_biases_and_layernorm(tokenizer):
    model = tiny_model(tokenizer)
    decay, no_decay = make_optimizer(model, lr=1e-3, weight_decay=0.1).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(n.endswith("bias") or "LayerNorm" in n for n in map(lambda p: names[id(p)], no_decay["params"]))
    assert all(n.endswith("weight") and "LayerNorm" not in n for n in map(lambda p: names[id(p)], decay["params"]))
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


# ---------------------------------------------------------------- fit

def test_loss_goes_down_on_a_real_batch(tokenizer):
    ds = ftlib.load_sst2()["train"].shuffle(seed=0).select(range(16))
    model = ftlib.load_model("course-bert", task="classification", num_labels=2)
    loader = make_loader(tokenize_dataset(ds, tokenizer, 32), tokenizer, batch_size=16)
    before = evaluate(model, loader, "cpu")
    ftlib.seed_everything(0)
    h = fit(model, loader, epochs=8, lr=2e-4, warmup_ratio=0.0, **QUIET)
    after = evaluate(model, loader, "cpu")
    assert after["loss"] < before["loss"] - 0.2, (before, after)
    assert h.step_loss[-1] < h.step_loss[0]


@pytest.mark.parametrize("stop_at,group", [(5, False), (12, False), (7, True)])
def test_resume_after_stop_gives_the_same_weights(tokenizer, sst2_small, tmp_path, stop_at, group):
    settings = dict(epochs=2, lr=3e-3, warmup_ratio=0.2, **QUIET)
    ftlib.seed_everything(0)
    whole = tiny_model(tokenizer)
    h_whole = fit(whole, tiny_loader(sst2_small, tokenizer, group_by_length=group), **settings)

    ftlib.seed_everything(0)
    first = tiny_model(tokenizer)
    h1 = fit(first, tiny_loader(sst2_small, tokenizer, group_by_length=group), checkpoint_dir=tmp_path,
             callbacks=[lambda info: info["step"] == stop_at], **settings)
    assert h1.stopped == "callback" and len(h1.step_loss) == stop_at

    ftlib.seed_everything(123)      # a fresh process: other weights, other random state
    again = tiny_model(tokenizer, seed=1)
    h2 = fit(again, tiny_loader(sst2_small, tokenizer, group_by_length=group), checkpoint_dir=tmp_path,
             resume=True, **settings)
    for (name, a), b in zip(whole.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert h2.step_loss == pytest.approx(h_whole.step_loss, abs=1e-6)
    assert h2.train_loss == pytest.approx(h_whole.train_loss, abs=1e-6)


def test_gradient_accumulation_equals_the_bigger_batch(tokenizer, sst2_small):
    settings = dict(epochs=1, lr=1e-3, warmup_ratio=0.0, **QUIET)
    big = tiny_model(tokenizer, dropout=0.0)
    small = tiny_model(tokenizer, dropout=0.0)
    fit(big, tiny_loader(sst2_small, tokenizer, batch_size=16), **settings)
    h = fit(small, tiny_loader(sst2_small, tokenizer, batch_size=8), grad_accum_steps=2, **settings)
    assert len(h.step_loss) == 6
    for a, b in zip(big.state_dict().values(), small.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_early_stopping_restores_the_best_weights(tokenizer, sst2_small):
    model = tiny_model(tokenizer)
    loader = tiny_loader(sst2_small, tokenizer)
    # a huge learning rate makes the eval loss worse after the first epoch
    h = fit(model, loader, loader, epochs=6, lr=0.5, warmup_ratio=0.0, early_stopping_patience=1,
            diverge_factor=None, **QUIET)
    assert h.stopped == "early stopping" and len(h.epoch) < 6
    best = min(h.eval_loss)
    assert evaluate(model, loader)["loss"] == pytest.approx(best, rel=1e-5)


def test_checkpoint_is_written_atomically_and_kept_on_nan(tokenizer, sst2_small, tmp_path):
    model = tiny_model(tokenizer)
    loader = tiny_loader(sst2_small, tokenizer)
    fit(model, loader, epochs=1, checkpoint_dir=tmp_path, **QUIET)
    ckpt = tmp_path / "checkpoint.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]   # no temp file left
    good = ckpt.read_bytes()
    with torch.no_grad():
        model.classifier.weight[0, 0] = math.nan
    with pytest.raises(CourseError, match="lower learning rate"):
        fit(model, loader, epochs=1, checkpoint_dir=tmp_path, **QUIET)
    assert ckpt.read_bytes() == good


def test_resume_with_other_settings_is_refused(tokenizer, sst2_small, tmp_path):
    model = tiny_model(tokenizer)
    fit(model, tiny_loader(sst2_small, tokenizer), epochs=1, checkpoint_dir=tmp_path, **QUIET)
    with pytest.raises(CourseError, match="other settings"):
        fit(model, tiny_loader(sst2_small, tokenizer), epochs=1, lr=1.0, checkpoint_dir=tmp_path,
            resume=True, **QUIET)


def test_bad_inputs_raise_one_clear_error_each(tokenizer, sst2_small):
    loader = tiny_loader(sst2_small, tokenizer)
    # tokenizer larger than the model's embedding table
    with pytest.raises(CourseError, match="do not belong together"):
        fit(tiny_model(tokenizer, vocab_size=1000), loader, **QUIET)
    # labels out of range for the model (3 classes in the data, 2 in the model)
    three = datasets.Dataset.from_dict({"sentence": ["a", "b", "c", "d"], "label": [0, 1, 2, 1]})
    bad_loader = make_loader(tokenize_dataset(three, tokenizer, 16), tokenizer, 4)
    with pytest.raises(CourseError, match="num_labels=2"):
        fit(tiny_model(tokenizer), bad_loader, **QUIET)
    # an empty training set
    empty = torch.utils.data.DataLoader([], batch_size=4)
    with pytest.raises(CourseError, match="empty"):
        fit(tiny_model(tokenizer), empty, **QUIET)
    # NaN loss
    model = tiny_model(tokenizer)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.fill_(math.nan)
    with pytest.raises(CourseError, match="float32"):
        fit(model, loader, **QUIET)
    with pytest.raises(CourseError, match="checkpoint_dir"):
        fit(tiny_model(tokenizer), loader, resume=True, **QUIET)


def test_predict_names_labels_and_gives_probabilities(tokenizer):
    model = tiny_model(tokenizer)
    model.config.id2label = {0: "negative", 1: "positive"}
    out = predict(model, tokenizer, ["a fine film", "dull"], device="cpu")
    assert [o["label"] in ("negative", "positive") for o in out] == [True, True]
    assert all(0.5 <= o["probability"] <= 1 for o in out)
    with pytest.raises(CourseError):
        predict(model, tokenizer, [])


def _run(train_loss, eval_loss):
    return History(epoch=list(range(1, len(train_loss) + 1)), train_loss=list(train_loss), eval_loss=list(eval_loss))


def test_overfits_and_best_epoch_read_the_train_and_validation_curves():
    # lesson 06's curve (a head on 400 cached sentences, 10 epochs): overfitting from epoch 2 on
    overfit = _run([0.614, 0.390, 0.266, 0.187, 0.133, 0.116, 0.071, 0.053, 0.041, 0.036],
                   [0.482, 0.474, 0.539, 0.722, 0.905, 0.972, 1.077, 1.166, 1.215, 1.232])
    assert best_epoch(overfit) == 2
    assert overfits(overfit) and overfits(overfit, margin=0.25)
    assert not overfits(overfit, margin=1.0)                         # the rise is 0.76, not more than 1
    # still learning: the validation loss is lowest at the last epoch
    learning = _run([0.66, 0.49, 0.36, 0.28], [0.60, 0.47, 0.44, 0.43])
    assert best_epoch(learning) == 4 and not overfits(learning)
    # no learning at all (seed 000's run, lesson 06 section 3): both curves flat
    assert not overfits(_run([0.693] * 3, [0.693, 0.693, 0.6931]), margin=0.0)
    # a diverging run: the validation loss rises, but so does the training loss
    assert not overfits(_run([0.60, 0.50, 0.70, 0.90], [0.55, 0.50, 0.75, 0.95]))
    # a small rise within the margin (a linear head at a high learning rate, measured: +0.06)
    assert not overfits(_run([0.62, 0.41, 0.34, 0.30], [0.52, 0.45, 0.44, 0.50]), margin=0.25)
    # ties: the first of equal lowest losses
    assert best_epoch(_run([0.5, 0.4, 0.3], [0.45, 0.45, 0.5])) == 1
    with pytest.raises(CourseError, match="eval_batches"):
        best_epoch(_run([0.6, 0.5], []))
    with pytest.raises(CourseError, match="eval_batches"):
        overfits(History(epoch=[1, 2], train_loss=[0.6, 0.5]))


def test_overfits_measures_from_the_best_epoch_to_the_last_and_refuses_a_nan_curve():
    # the best epoch is in the middle and the last epoch came down a little: still overfitting. A version that
    # measured from the first epoch (0.55 - 0.60 < 0) or used the highest loss (0.70) instead of the last says otherwise
    mid = _run([0.70, 0.50, 0.40, 0.30, 0.20], [0.60, 0.45, 0.40, 0.70, 0.55])
    assert best_epoch(mid) == 3 and overfits(mid, margin=0.1)
    assert not overfits(mid, margin=0.2)                             # the rise to the last epoch is 0.15
    with pytest.raises(CourseError, match="NaN"):
        best_epoch(_run([0.6, 0.5, 0.4], [0.5, float("nan"), 0.45]))
