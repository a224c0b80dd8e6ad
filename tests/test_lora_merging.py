"""Merging LoRA adapters: the tensor merges (task arithmetic, TIES, DARE) and add_weighted_lora, against peft."""

import copy
import math

import pytest
import torch

from course_lib.peft import add_weighted_lora, dare, magnitude_prune, task_arithmetic, ties
from course_lib.peft.lora import (add_lora, delete_lora, list_lora, lora_layers, mark_lora_trainable, merge_lora,
                                  save_lora, set_active_lora)
from course_lib.peft.lora_merging import COMBINATION_TYPES, drop_and_rescale, elect_sign, trim

from test_lora import tiny_gpt2
from tiny_models import logits, requires_reference_peft, tiny_bert

NAMES = ("sent", "topic", "nli")  # not 'a', 'b': peft warns about names contained in its prefix "lora_"
BERT_TARGETS = (["query", "value"], ["query", "key"], ["value", "dense"])  # overlapping: some layers lack some
WEIGHTS = [0.7, -0.4, 1.3]
PRUNING = ("ties", "ties_svd", "dare_linear", "dare_linear_svd", "dare_ties", "dare_ties_svd", "magnitude_prune",
           "magnitude_prune_svd")


def twin_loras(make=tiny_bert, ranks=(4, 4, 4), targets=BERT_TARGETS, use_rslora=False, fan_in_fan_out=False):
    """The same base with the same LoRA adapters (random non-zero B) twice: as a peft model and in course_lib."""
    from peft import LoraConfig, get_peft_model

    base = make()
    course = copy.deepcopy(base)
    peft_model = None
    for name, r, target in zip(NAMES, ranks, targets):
        config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=target, use_rslora=use_rslora,
                            fan_in_fan_out=fan_in_fan_out)
        if peft_model is None:
            peft_model = get_peft_model(base, config, adapter_name=name)
        else:
            peft_model.add_adapter(name, config)
        add_lora(course, name, target, r=r, alpha=2 * r, use_rslora=use_rslora)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, p in peft_model.named_parameters():
            if ".lora_B." in key:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        # course keys are peft's without its "base_model.model." prefix: copy every tensor across
        course.load_state_dict({k.removeprefix("base_model.model."): v for k, v in peft_model.state_dict().items()})
    return peft_model.eval(), course.eval()


def peft_layers(peft_model, name):
    """peft's LoRA layers holding adapter ``name``, by module path (the same paths as course_lib's)."""
    return {path: m for path, m in peft_model.base_model.model.named_modules()
            if hasattr(m, "lora_A") and name in m.lora_A}


def assert_same_adapter(peft_model, course, name, vocab=50):
    """Same layers, same update ΔW per layer, same logits with the adapter on."""
    ours, theirs = lora_layers(course), peft_layers(peft_model, name)
    assert {p for p, layer in ours.items() if name in layer.lora_A} == set(theirs)
    for path, layer in theirs.items():
        torch.testing.assert_close(ours[path].delta_weight(name), layer.get_delta_weight(name), atol=1e-5, rtol=0)
    peft_model.set_adapter(name)
    set_active_lora(course, name)
    torch.testing.assert_close(logits(course, vocab), logits(peft_model, vocab), atol=1e-5, rtol=0)


# -- the tensor merges -----------------------------------------------------------------------------------------

@requires_reference_peft
@pytest.mark.filterwarnings("ignore:The density 1.0")  # peft warns that density 1 prunes nothing
def test_tensor_merges_match_peft_merge_utils():
    from peft.utils import merge_utils

    g = torch.Generator().manual_seed(0)
    deltas = [torch.randn(6, 5, generator=g) for _ in range(3)]
    w = torch.tensor(WEIGHTS)
    torch.testing.assert_close(task_arithmetic(deltas, WEIGHTS), merge_utils.task_arithmetic(deltas, w))
    for density in (0.3, 0.5, 1.0):
        torch.testing.assert_close(magnitude_prune(deltas, WEIGHTS, density),
                                   merge_utils.magnitude_prune(deltas, w, density))
        for method in ("total", "frequency"):
            torch.testing.assert_close(ties(deltas, WEIGHTS, density, method),
                                       merge_utils.ties(deltas, w, density, method))
            torch.manual_seed(5)
            ours = dare(deltas, WEIGHTS, density, sign_election=True, majority_sign_method=method)
            torch.manual_seed(5)
            torch.testing.assert_close(ours, merge_utils.dare_ties(deltas, w, density, method))
        torch.manual_seed(5)
        ours = dare(deltas, WEIGHTS, density)
        torch.manual_seed(5)
        torch.testing.assert_close(ours, merge_utils.dare_linear(deltas, w, density))


def test_ties_by_hand():
    t1 = torch.tensor([3.0, -1.0, 0.5, -4.0])
    t2 = torch.tensor([-2.0, -2.0, 0.1, 1.0])
    # trim to the top half by magnitude: t1 -> [3, 0, 0, -4], t2 -> [-2, -2, 0, 0]
    assert torch.equal(trim(t1, 0.5), torch.tensor([3.0, 0.0, 0.0, -4.0]))
    assert torch.equal(trim(t2, 0.5), torch.tensor([-2.0, -2.0, 0.0, 0.0]))
    stacked = torch.stack([trim(t1, 0.5), trim(t2, 0.5)])
    # elect ("total"): sums [1, -2, 0, -4] -> signs [+, -, + (a tie goes to +), -]
    assert elect_sign(stacked).tolist() == [[True, False, False, True], [False, True, False, False]]
    # disjoint mean of w_i t_i over the agreeing entries (an entry nobody keeps stays 0)
    merged = ties([t1, t2], [1.0, 0.5], density=0.5)
    assert torch.equal(merged, torch.tensor([3.0, -1.0, 0.0, -4.0]))
    # "frequency" counts signs instead: entry 0 has one + and one - -> a tie -> +
    assert elect_sign(stacked, "frequency")[:, 0].tolist() == [True, False]
    assert torch.equal(task_arithmetic([t1, t2], [1.0, 0.5]), t1 + 0.5 * t2)


def test_dare_drops_with_p_and_rescales_exactly():
    x = torch.randn(200, 500, generator=torch.Generator().manual_seed(0))
    density = 0.7  # p = 0.3
    out = drop_and_rescale(x, density, generator=torch.Generator().manual_seed(1))
    kept = out != 0
    assert abs(kept.float().mean().item() - density) < 0.01          # kept fraction ≈ 1 - p
    assert torch.equal(out[kept], x[kept] / density)                   # survivors times exactly 1 / (1 - p)
    assert torch.equal(out, drop_and_rescale(x, density, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(drop_and_rescale(x, 1.0), x)                     # density 1 drops nothing
    # in expectation DARE keeps the task vector: the mean over many draws approaches x
    g = torch.Generator().manual_seed(2)
    mean = torch.stack([dare([x[:20, :20]], [1.0], 0.5, generator=g) for _ in range(2000)]).mean(0)
    assert (mean - x[:20, :20]).abs().max() < 0.25


def test_tensor_merge_errors():
    t = [torch.ones(2, 2), torch.ones(2, 2)]
    for bad in (0, -0.1, 1.5, None, True):
        with pytest.raises(ValueError, match=r"density .* \(0, 1\]"):
            ties(t, [1, 1], bad)
    with pytest.raises(ValueError, match="one weight per tensor"):
        task_arithmetic(t, [1.0])
    with pytest.raises(ValueError, match="same shape"):
        task_arithmetic([torch.ones(2), torch.ones(3)], [1, 1])
    with pytest.raises(ValueError, match="majority_sign_method"):
        ties(t, [1, 1], 0.5, "mean")


# -- add_weighted_lora against peft's add_weighted_adapter ---------------------------------------------------

@requires_reference_peft
@pytest.mark.parametrize("combination_type", COMBINATION_TYPES)
def test_add_weighted_lora_matches_peft(combination_type):
    peft_model, course = twin_loras()
    density = {"density": 0.5} if combination_type in PRUNING else {}
    torch.manual_seed(123)  # DARE draws its masks from the global RNG: the same seed gives peft's masks
    peft_model.add_weighted_adapter(list(NAMES), WEIGHTS, "merged", combination_type=combination_type, **density)
    torch.manual_seed(123)
    paths = add_weighted_lora(course, list(NAMES), WEIGHTS, "merged", combination_type, **density)
    assert paths == list(peft_layers(peft_model, "merged"))
    assert_same_adapter(peft_model, course, "merged")
    config = course._course_lora.configs["merged"]
    assert config.r == config.alpha == peft_model.peft_config["merged"].r
    assert set(config.target_modules) == set(peft_model.peft_config["merged"].target_modules)


@requires_reference_peft
@pytest.mark.parametrize("combination_type, density", [("linear", None), ("ties", 0.6),
                                                       ("magnitude_prune", 0.3), ("dare_ties", 0.8)])
def test_frequency_sign_and_other_densities_match_peft(combination_type, density):
    peft_model, course = twin_loras(targets=(["query", "value"],) * 3)
    kw = {"density": density, "majority_sign_method": "frequency"} if density else {}
    torch.manual_seed(7)
    peft_model.add_weighted_adapter(list(NAMES), [1.0, 0.5, -0.25], "m", combination_type=combination_type, **kw)
    torch.manual_seed(7)
    add_weighted_lora(course, list(NAMES), [1.0, 0.5, -0.25], "m", combination_type, **kw)
    assert_same_adapter(peft_model, course, "m")


@requires_reference_peft
@pytest.mark.parametrize("combination_type, svd", [("cat", {}), ("svd", {}), ("svd", {"svd_rank": 3}),
                                                   ("svd", {"svd_rank": 2, "svd_clamp": 0.9}),
                                                   ("ties_svd", {"svd_rank": 5, "density": 0.5}),
                                                   ("svd", {"svd_full_matrices": False})])
def test_different_ranks_cat_and_svd_match_peft(combination_type, svd):
    peft_model, course = twin_loras(ranks=(2, 4, 3))
    peft_model.add_weighted_adapter(list(NAMES), WEIGHTS, "m", combination_type=combination_type, **svd)
    add_weighted_lora(course, list(NAMES), WEIGHTS, "m", combination_type, **svd)
    assert_same_adapter(peft_model, course, "m")
    rank = {"cat": 9}.get(combination_type, svd.get("svd_rank", 4))
    layer = lora_layers(course)["bert.encoder.layer.0.attention.self.query"]
    assert layer.lora_A["m"].weight.shape[0] == rank and layer.scaling["m"] == 1.0


def test_cat_is_exact_and_svd_is_the_best_rank_r_approximation():
    _, course = twin_loras(ranks=(2, 4, 3), targets=(["query"],) * 3)
    add_weighted_lora(course, list(NAMES), WEIGHTS, "cat", "cat")
    add_weighted_lora(course, list(NAMES), WEIGHTS, "svd2", "svd", svd_rank=2)
    for layer in lora_layers(course).values():
        target = sum(w * layer.delta_weight(n) for n, w in zip(NAMES, WEIGHTS))
        torch.testing.assert_close(layer.delta_weight("cat"), target, atol=1e-6, rtol=0)
        s = torch.linalg.svdvals(target)
        error = torch.linalg.matrix_norm(layer.delta_weight("svd2") - target)   # Eckart-Young: the tail's energy
        torch.testing.assert_close(error, s[2:].square().sum().sqrt(), atol=1e-5, rtol=1e-4)


@requires_reference_peft
def test_one_adapter_is_rescaled_exactly_whatever_the_type():
    peft_model, course = twin_loras()
    peft_model.add_weighted_adapter(["topic"], [-0.6], "solo", combination_type="svd")  # peft: one adapter -> linear
    add_weighted_lora(course, ["topic"], [-0.6], "solo", "svd")
    assert_same_adapter(peft_model, course, "solo")
    for layer in lora_layers(course).values():
        if "solo" in layer.lora_A:
            torch.testing.assert_close(layer.delta_weight("solo"), -0.6 * layer.delta_weight("topic"),
                                       atol=1e-6, rtol=0)


def test_linear_merges_factors_so_it_is_only_approximate():
    _, course = twin_loras(targets=(["query"],) * 3)
    add_weighted_lora(course, list(NAMES[:2]), [1.0, 1.0], "lin", "linear")
    layer = lora_layers(course)["bert.encoder.layer.0.attention.self.query"]
    s = [layer.scaling[n] for n in NAMES[:2]]
    a = sum(math.sqrt(si) * layer.lora_A[n].weight for si, n in zip(s, NAMES[:2]))
    b = sum(math.sqrt(si) * layer.lora_B[n].weight for si, n in zip(s, NAMES[:2]))
    torch.testing.assert_close(layer.delta_weight("lin"), b @ a, atol=1e-6, rtol=0)  # cross terms B_j A_i included
    exact = layer.delta_weight(NAMES[0]) + layer.delta_weight(NAMES[1])
    assert not torch.allclose(layer.delta_weight("lin"), exact, atol=1e-3)


def test_rslora_sources_merge_correctly_where_peft_scales_by_sqrt_r():
    # peft copies use_rslora from the first adapter but sets alpha = r, so its merged adapter is scaled by
    # r / sqrt(r) = sqrt(r) on top of factors that already carry every scale; course_lib keeps scaling 1.
    peft_model, course = twin_loras(use_rslora=True)
    peft_model.add_weighted_adapter(list(NAMES), WEIGHTS, "m", combination_type="cat")
    add_weighted_lora(course, list(NAMES), WEIGHTS, "m", "cat")
    ours = lora_layers(course)
    for path, layer in peft_layers(peft_model, "m").items():
        assert layer.scaling["m"] == pytest.approx(math.sqrt(12)) and ours[path].scaling["m"] == 1.0
        torch.testing.assert_close(ours[path].delta_weight("m"), layer.get_delta_weight("m") / math.sqrt(12),
                                   atol=1e-6, rtol=0)
        target = sum(w * ours[path].delta_weight(n) for n, w in zip(NAMES, WEIGHTS) if n in ours[path].lora_A)
        torch.testing.assert_close(ours[path].delta_weight("m"), target, atol=1e-6, rtol=0)
    assert course._course_lora.configs["m"].use_rslora is False


@requires_reference_peft
@pytest.mark.parametrize("combination_type", ["cat", "svd", "ties", "dare_linear_svd"])
def test_gpt2_conv1d_matches_peft(combination_type):
    peft_model, course = twin_loras(tiny_gpt2, targets=(["c_attn"], ["c_attn", "c_proj"], ["c_fc"]),
                                    fan_in_fan_out=True)
    density = {"density": 0.4} if combination_type in PRUNING else {}
    torch.manual_seed(3)
    peft_model.add_weighted_adapter(list(NAMES), WEIGHTS, "m", combination_type=combination_type, **density)
    torch.manual_seed(3)
    add_weighted_lora(course, list(NAMES), WEIGHTS, "m", combination_type, **density)
    assert_same_adapter(peft_model, course, "m")


def test_merged_adapter_is_an_ordinary_adapter(tmp_path):
    from peft import PeftModel

    _, course = twin_loras()
    fresh = tiny_bert()
    add_weighted_lora(course, list(NAMES), WEIGHTS, "merged", "svd", svd_rank=2)
    assert list_lora(course) == [*NAMES, "merged"]
    assert course._course_lora.active == []  # inactive, like add_lora
    set_active_lora(course, "merged")
    expected = logits(course, vocab=50)
    out = save_lora(course, "merged", tmp_path / "merged")
    peft_model = PeftModel.from_pretrained(fresh, out).eval()
    torch.testing.assert_close(logits(peft_model, vocab=50), expected, atol=1e-5, rtol=0)
    trainable = mark_lora_trainable(course, "merged", head_patterns=())
    assert trainable and all(".merged." in n for n in trainable)
    merge_lora(course)  # merging works too, and the merged source adapters are unaffected
    torch.testing.assert_close(logits(course, vocab=50), expected, atol=1e-5, rtol=0)
    delete_lora(course, "merged")
    assert list_lora(course) == list(NAMES)


def test_add_weighted_lora_errors():
    _, course = twin_loras(ranks=(2, 4, 4))
    with pytest.raises(ValueError, match=r"No LoRA adapter named \['nope'\].*sent"):
        add_weighted_lora(course, ["sent", "nope"], [1, 1], "m")
    with pytest.raises(ValueError, match="one weight per adapter: 2 adapters.*1 weights"):
        add_weighted_lora(course, ["sent", "topic"], [1.0], "m", "cat")
    with pytest.raises(ValueError, match="finite numbers"):
        add_weighted_lora(course, ["sent", "topic"], [1.0, float("nan")], "m", "cat")
    with pytest.raises(ValueError, match=r"Unknown combination_type 'mean'.*'linear', 'cat', 'svd', 'ties'"):
        add_weighted_lora(course, ["sent", "topic"], [1, 1], "m", "mean")
    with pytest.raises(ValueError, match=r"same rank r; got \{'sent': 2, 'topic': 4\}"):
        add_weighted_lora(course, ["sent", "topic"], [1, 1], "m", "linear")
    with pytest.raises(ValueError, match="give density"):
        add_weighted_lora(course, ["topic", "nli"], [1, 1], "m", "ties")
    for bad in (0, 1.2, -0.5):
        with pytest.raises(ValueError, match=r"density .* \(0, 1\]"):
            add_weighted_lora(course, ["topic", "nli"], [1, 1], "m", "dare_ties", density=bad)
    with pytest.raises(ValueError, match="majority_sign_method"):
        add_weighted_lora(course, ["topic", "nli"], [1, 1], "m", "ties", density=0.5, majority_sign_method="x")
    with pytest.raises(ValueError, match="already exists"):
        add_weighted_lora(course, ["topic", "nli"], [1, 1], "sent", "cat")
    with pytest.raises(ValueError, match="svd_rank"):
        add_weighted_lora(course, ["topic", "nli"], [1, 1], "m", "svd", svd_rank=0)
    with pytest.raises(ValueError, match=r"gives rank 20, more than layer .* allows \(16\)"):
        add_weighted_lora(course, ["sent", "topic", "nli"] * 2, [1] * 6, "m", "cat")
    with pytest.raises(ValueError, match="at least one"):
        add_weighted_lora(course, [], [], "m")
    with pytest.raises(ValueError, match="No LoRA adapter"):
        add_weighted_lora(tiny_bert(), ["sent"], [1], "m")
    assert list_lora(course) == list(NAMES)  # nothing was added by a failed call
