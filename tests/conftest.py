import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the hub clients read their settings at import)."""
    full_env = {**os.environ, **{k: v for k, v in env.items() if v is not None}}
    for k, v in env.items():
        if v is None:
            full_env.pop(k, None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=300)


@pytest.fixture
def python_subprocess():
    return run_python


# --------------------------------------------------------------- shared tiny models and data
# The real course models only where a test is about them; everything else uses these: the real
# transformers BERT and Llama classes at a size that trains in milliseconds on a CPU.

def make_tiny_bert(vocab: int = 64, num_labels: int = 2, seed: int = 0, dropout: float = 0.0, layers: int = 2,
                   hidden: int = 32, **config):
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                  num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
                                  num_labels=num_labels, hidden_dropout_prob=dropout,
                                  attention_probs_dropout_prob=dropout, **config)
    return transformers.BertForSequenceClassification(cfg)


def make_sentiment_bert(tokenizer, seed: int = 0):
    """A random 2-layer BERT sentiment classifier (hidden 32, at most 128 positions, labels named
    negative/positive) on ``tokenizer``'s vocabulary, in eval mode: for saving, loading and predicting."""
    return make_tiny_bert(vocab=len(tokenizer), seed=seed, dropout=0.1, id2label={0: "negative", 1: "positive"},
                          label2id={"negative": 0, "positive": 1}).eval()


def make_tiny_llama(vocab: int = 64, seed: int = 0, tied: bool = True, layers: int = 2, hidden: int = 32):
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                   num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=256, tie_word_embeddings=tied, pad_token_id=0)
    return transformers.LlamaForCausalLM(cfg)


def make_classification_data(n: int = 40, vocab: int = 64, max_len: int = 20, seed: int = 0) -> dict:
    """Right-padded rows of random lengths whose label is learnable (is token 5 in the row?)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, max_len + 1, (n,), generator=g)
    ids = torch.randint(6, vocab, (n, max_len), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    mask = (torch.arange(max_len)[None] < lengths[:, None]).long()
    for i in range(n):
        if labels[i]:
            ids[i, torch.randint(0, int(lengths[i]), (1,), generator=g)] = 5
    ids = ids * mask                                   # pad id 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.fixture
def tiny_bert():
    return make_tiny_bert


@pytest.fixture
def tiny_llama():
    return make_tiny_llama


@pytest.fixture
def classification_data():
    return make_classification_data


@pytest.fixture(scope="session")
def bert_tok():
    """course-bert's tokenizer (the real one: tests of tokenisation, offsets and windows need it)."""
    import ftlib
    return ftlib.load_tokenizer("course-bert")


@pytest.fixture(scope="session")
def tokenizer(bert_tok):
    """The same tokenizer under the name the training, deployment and bad-input tests use."""
    return bert_tok
