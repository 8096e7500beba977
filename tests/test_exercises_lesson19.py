"""Lesson 19's exercise checks (scaling out): the right answers pass, the usual wrong ones get their hint."""
import pytest
import torch

from ftlib.exercises import Wrong, check
from ftlib.exercises import lesson19

RIGHT = {"weights": 2, "gradients": 2, "master": 4, "optimizer": 8}


def test_19_1(capsys):
    assert check("19.1", RIGHT)
    with pytest.raises(Wrong, match="TWO float32"):
        lesson19.bytes_per_parameter({**RIGHT, "optimizer": 4})                 # forgot AdamW's second moment
    with pytest.raises(Wrong, match="master copy"):
        lesson19.bytes_per_parameter({**RIGHT, "master": 0})                    # forgot the master weights
    with pytest.raises(Wrong, match="bf16 too"):
        lesson19.bytes_per_parameter({**RIGHT, "gradients": 4})                 # float32 gradients
    with pytest.raises(Wrong, match="weights"):
        lesson19.bytes_per_parameter({**RIGHT, "weights": 4})                   # float32 weights: not this recipe
    with pytest.raises(Wrong, match="keys"):
        lesson19.bytes_per_parameter(16)
    assert not check("19.1", ...)
    assert "not answered yet" in capsys.readouterr().out


def test_19_2():
    def weighted(grads, counts):
        return sum(g * n for g, n in zip(grads, counts)) / sum(counts)

    assert check("19.2", weighted)
    with pytest.raises(Wrong, match="summed"):
        lesson19.combine_gradients(lambda grads, counts: sum(grads))
    with pytest.raises(Wrong, match="weigh each mean"):
        lesson19.combine_gradients(lambda grads, counts: sum(grads) / len(grads))
    with pytest.raises(Wrong, match="not the expected"):
        lesson19.combine_gradients(lambda grads, counts: sum(g * n for g, n in zip(grads, counts)) / len(grads))
    with pytest.raises(Wrong, match="function"):
        lesson19.combine_gradients(torch.zeros(3))


def test_19_3():
    assert check("19.3", (2, 200, 1.6e-4))
    with pytest.raises(Wrong, match="already 128 rows"):
        lesson19.global_batch((16, 200, 1.6e-4))                                # forgot the 8 GPUs
    with pytest.raises(Wrong, match="micro-batches"):
        lesson19.global_batch((2, 400, 1.6e-4))                                 # counted micro-batch steps
    with pytest.raises(Wrong, match="linear scaling"):
        lesson19.global_batch((2, 200, 2e-5))                                   # kept the lr of batch 32
    with pytest.raises(Wrong, match="learning rate"):
        lesson19.global_batch((2, 200, 2e-5 * 8 ** 0.5))                        # some other lr
    with pytest.raises(Wrong, match="three numbers"):
        lesson19.global_batch(256)
