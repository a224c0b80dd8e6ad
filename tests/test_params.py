import pytest
import torch
from torch import nn

from course_lib.params import (count_parameters, human_bytes, parameter_breakdown, parameter_table,
                               print_trainable_parameters, state_dict_bytes, trainable_bytes,
                               trainable_state_dict)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_embed = nn.Embedding(10, 4)
        self.attn = nn.Module()
        self.attn.q_proj = nn.Linear(4, 4)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(4, 8)
        self.final_norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.tok_embed.weight  # tied: must count once


def wrap(module):
    outer = nn.Module()
    outer.layers = nn.ModuleList([module])
    return outer


def test_counts_tied_weights_once_and_respects_freezing():
    m = Tiny()
    c = count_parameters(m)
    assert c.total == 40 + 20 + 40 + 8
    assert c.trainable == c.total
    m.tok_embed.weight.requires_grad_(False)
    c = count_parameters(m)
    assert c.trainable == c.total - 40
    assert abs(c.percent - 100 * 68 / 108) < 1e-9


def test_peft_style_print(capsys):
    m = nn.Linear(3, 2)
    m.bias.requires_grad_(False)
    print_trainable_parameters(m)
    assert capsys.readouterr().out.strip() == "trainable params: 6 || all params: 8 || trainable%: 75.0000"


def test_parameter_table_groups_by_depth():
    rows = parameter_table(Tiny(), depth=1)
    by_name = {r["module"]: r for r in rows}
    assert by_name["attn"]["params"] == 20 and by_name["mlp"]["params"] == 40
    assert abs(sum(r["share %"] for r in rows) - 100) < 0.1
    with pytest.raises(ValueError):
        parameter_table(Tiny(), depth=0)


def test_breakdown_by_component():
    b = parameter_breakdown(wrap(Tiny()))
    assert b["embeddings"] == 40 and b["attention"] == 20 and b["feed-forward (MLP)"] == 40
    assert b["layer norms"] == 8 and b["task / LM head"] == 0


def test_trainable_bytes_match_safetensors_size():
    m = nn.Linear(100, 10)
    m.weight.requires_grad_(False)
    sd = trainable_state_dict(m)
    assert list(sd) == ["bias"]
    assert trainable_bytes(m) == state_dict_bytes(sd)
    assert 40 < trainable_bytes(m) < 40 + 200  # 10 float32 values + a small JSON header
    assert state_dict_bytes({}) == 0


def test_human_bytes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(2048) == "2.0 KB"
    assert human_bytes(3 * 1024 ** 3) == "3.0 GB"
