"""The scaling rules of the rank sweep: anchored at r = 8, and the multiplier is the one the LoRA layer uses."""

import math

import pytest

from course_lib import lora_rank
from course_lib.lora_rank import ANCHOR_RANK, SCALING_RULES, multiplier, rank_spec
from course_lib.peft.lora import LoRALinear
from tiny_models import tiny_bert


def test_rules_agree_at_the_anchor_and_scale_as_documented():
    for rule in SCALING_RULES:
        assert multiplier(rule, ANCHOR_RANK) == 2.0
        assert rank_spec(ANCHOR_RANK, rule) == rank_spec(ANCHOR_RANK)  # one model at r = 8: one cached run
    assert multiplier("α = 2r", 64) == 2.0
    assert multiplier("α/r, α = 16", 64) == 0.25
    assert multiplier("rsLoRA, α = 2√8", 32) == pytest.approx(2 * math.sqrt(8) / math.sqrt(32)) == \
        pytest.approx(1.0)
    assert rank_spec(4).options == {"target_modules": ["query", "value"], "r": 4}


@pytest.mark.parametrize("rule", SCALING_RULES)
@pytest.mark.parametrize("r", [2, 8, 16])  # the tiny BERT is 16 wide
def test_the_built_lora_uses_the_rule_multiplier(rule, r):
    model = rank_spec(r, rule).prepare()(tiny_bert())
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert len(layers) == 2 * 2  # query and value in both layers
    assert all(layer.scaling["task"] == pytest.approx(multiplier(rule, r)) for layer in layers)


def test_bad_rule_or_rank():
    with pytest.raises(ValueError, match="unknown scaling rule 'α/√r'; allowed: α = 2r"):
        lora_rank.rank_spec(8, "α/√r")
    with pytest.raises(ValueError, match="rank r must be an int >= 1, got 0"):
        lora_rank.multiplier("α = 2r", 0)
