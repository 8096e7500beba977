"""The checks of notebook 07's exercises: right answers pass, typical wrong ones get the hint."""
import pytest
import torch

from ftlib.exercises import check

H, N = 384, 6          # course-bert: hidden size, blocks


def test_07_1_lora_count(capsys):
    right = N * 3 * 4 * (H + H) + H * 2 + 2
    assert check("07.1", right)
    assert not check("07.1", N * 3 * 4 * (H + H))                  # forgot the head
    assert "head" in capsys.readouterr().out
    assert not check("07.1", N * 3 * 4 * H + H * 2 + 2)             # only A
    assert "A (r x in) *and* B" in capsys.readouterr().out
    assert not check("07.1", N * 2 * 4 * (H + H) + H * 2 + 2)       # query and value only
    assert "key" in capsys.readouterr().out
    assert not check("07.1", ...)
    assert "not answered" in capsys.readouterr().out


def test_07_2_layerwise_rates(capsys):
    right = [1e-4 * 0.8 ** (7 - d) for d in range(8)]
    assert check("07.2", right)
    assert check("07.2", torch.tensor(right, dtype=torch.float64))
    assert not check("07.2", right[::-1])
    assert "Reversed" in capsys.readouterr().out
    assert not check("07.2", right[:7])
    assert "8 numbers" in capsys.readouterr().out
    assert not check("07.2", [1e-4 * 0.9 ** (7 - d) for d in range(8)])


def test_07_3_merged_weight(capsys):
    assert check("07.3", lambda l: l.base.weight + l.scaling * l.lora_B @ l.lora_A)
    assert not check("07.3", lambda l: l.base.weight + l.lora_B @ l.lora_A)
    assert "scaling" in capsys.readouterr().out
    assert not check("07.3", lambda l: (l.base.weight + l.scaling * l.lora_B @ l.lora_A).T)
    assert "(3, 5)" in capsys.readouterr().out

    def in_place(l):
        l.merge()
        return l.base.weight
    assert not check("07.3", in_place)
    assert "changed layer.base.weight" in capsys.readouterr().out
