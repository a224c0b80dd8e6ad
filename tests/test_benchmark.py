"""The real track's protocol: method specs, the run cache, the learning-rate pick, seeds and paired differences."""

from __future__ import annotations

import json

import pytest
import torch

from course_lib import benchmark
from course_lib.benchmark import (MethodResult, MethodSpec, RunRecord, evaluate_method, paired_difference, pick_lr,
                                  real_methods, real_run, results_table, run_key)
from course_lib.profiles import get_profile


def record(lr: float, seed: int = 0, val: float = 0.5, loss: float = 0.7, test: float = 0.5) -> RunRecord:
    return RunRecord(method="m", lr=lr, seed=seed, val_accuracy=val, val_loss=loss, test_accuracy=test,
                     method_params=10, head_params=2, total_params=1000, train_seconds=1.0)


def test_specs_are_validated():
    with pytest.raises(ValueError, match="unknown recipe 'qlora2'"):
        MethodSpec("x", "qlora2")
    with pytest.raises(ValueError, match="unknown lr grid 'fast'"):
        MethodSpec("x", "lora", grid="fast")
    with pytest.raises(ValueError, match="select= one of head_only, bitfit, top_k_layers"):
        MethodSpec("x", "selective", {"select": "everything"})
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['LoRA'\]"):
        real_methods(["LoRA"])


def test_a_run_is_trained_once_then_read_from_the_cache(real_env, monkeypatch):
    profile = get_profile("ci")
    spec = real_methods()["LoRA r=8 (q, v)"]
    first = real_run(spec, 1e-3, 0, profile, show_progress=False)
    # LoRA's own parameters, the head counted apart (as the LoRA paper counts): 6 layers x (q, v) x r(384 + 384)
    assert first.method_params == 6 * 2 * 8 * (384 + 384)
    assert first.head_params == 384 * 2 + 2
    assert first.method_percent < 1.0
    steps, losses = first.curve().series("val_loss")
    assert steps[-1] == profile.real.steps and len(losses) == profile.real.steps // profile.real.eval_every
    cached = json.loads((benchmark.runs_dir() / f"{first.key}.json").read_text())
    assert cached["test_accuracy"] == first.test_accuracy

    monkeypatch.setattr(benchmark, "train_real", lambda *a, **k: pytest.fail("a cached run must not retrain"))
    again = real_run(spec, 1e-3, 0, profile, show_progress=False)
    assert again == first
    other = {run_key(spec, 3e-3, 0, profile, benchmark.RealTask()), run_key(spec, 1e-3, 1, profile, benchmark.RealTask()),
             run_key(MethodSpec("r4", "lora", {"target_modules": ["query", "value"], "r": 4}), 1e-3, 0, profile,
                     benchmark.RealTask()),
             run_key(spec, 1e-3, 0, get_profile("ci", real={"steps": 5}), benchmark.RealTask())}
    assert first.key not in other and len(other) == 4, "rate, seed, options and budget all change the key"
    task = benchmark.RealTask()
    assert run_key(spec, 1e-3, 0, profile, task, torch.device("cpu")) == first.key
    assert run_key(spec, 1e-3, 0, profile, task, torch.device("cuda")) != first.key, "GPU runs are kept apart"


def test_a_damaged_cache_entry_is_retrained(real_env, monkeypatch):
    profile = get_profile("ci")
    spec = real_methods()["head only"]
    key = run_key(spec, 3e-3, 0, profile, benchmark.RealTask())
    benchmark.runs_dir().mkdir(parents=True)
    (benchmark.runs_dir() / f"{key}.json").write_text('{"method": "trunc')
    calls = []
    monkeypatch.setattr(benchmark, "train_real", lambda *a, **k: (calls.append(1) or record(3e-3), None))
    real_run(spec, 3e-3, 0, profile, show_progress=False)
    assert calls == [1]


def test_pick_lr_uses_validation_then_loss_then_the_smaller_rate():
    runs = [record(1e-4, val=0.80, test=0.99), record(1e-3, val=0.85, loss=0.5), record(3e-3, val=0.85, loss=0.4)]
    assert pick_lr(runs).lr == 3e-3, "best validation accuracy, ties broken by validation loss; test never looked at"
    assert pick_lr([record(1e-3, val=0.9), record(1e-4, val=0.9)]).lr == 1e-4
    with pytest.raises(ValueError, match="every grid run diverged"):
        pick_lr([record(1e-2, loss=float("nan"))])


def test_protocol_tunes_on_seed_0_then_runs_every_seed(monkeypatch):
    profile = get_profile("cpu")
    calls = []

    def fake_run(spec, lr, seed, *args, **kwargs):
        calls.append((lr, seed))
        return record(lr, seed, val=0.9 if lr == 1e-3 else 0.6, test=0.8 + seed / 100)

    monkeypatch.setattr(benchmark, "real_run", fake_run)
    result = evaluate_method(real_methods()["LoRA r=8 (q, v)"], profile, splits={})
    grid = profile.real.lr_grids["peft"]
    assert calls == [(lr, 0) for lr in grid] + [(1e-3, s) for s in range(1, profile.seeds)]
    assert result.lr == 1e-3 and [r.seed for r in result.runs] == list(range(profile.seeds))
    assert result.mean() == pytest.approx(0.81) and result.std() == pytest.approx(0.01)
    assert not benchmark.at_grid_edge(result), "1e-3 lies inside the peft grid"
    assert benchmark.grid_table({"LoRA": result}).loc["LoRA", "picked"] == "0.001"
    table = results_table({"LoRA": result})
    assert table.loc["LoRA", "picked lr"] == 1e-3 and table.loc["LoRA", "seeds"] == profile.seeds


def test_paired_differences_and_their_verdicts():
    spec = MethodSpec("a", "full_finetuning", grid="full")

    def result(scores):
        return MethodResult(spec, [], 1e-3, [record(1e-3, s, test=v) for s, v in enumerate(scores)])

    clear = paired_difference(result([0.90, 0.91, 0.92]), result([0.80, 0.80, 0.83]))
    assert clear.differences == pytest.approx([0.10, 0.11, 0.09]) and clear.verdict == "a better"
    noisy = paired_difference(result([0.90, 0.80, 0.85]), result([0.85, 0.86, 0.84]))
    assert noisy.verdict == "no difference (inside the seed spread)"
    assert paired_difference(result([0.9]), result([0.8])).verdict.startswith("one seed")
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference(result([0.9, 0.8]), result([0.9]))


def test_the_whole_protocol_runs_in_ci(real_env):
    profile = get_profile("ci")
    result = evaluate_method(real_methods()["head only"], profile, show_progress=False)
    assert [r.lr for r in result.grid_runs] == list(profile.real.lr_grids["head"])
    assert result.runs[0] in result.grid_runs and len(result.runs) == profile.seeds
    assert result.runs[0].method_params == 0, "head-only trains the head alone"


def test_method_spec_builders_name_their_options_and_share_cache_keys():
    profile, task = get_profile("ci"), benchmark.RealTask()
    assert benchmark.adapter_spec("houlsby").options == {"placement": "houlsby", "reduction_factor": 16}
    assert benchmark.adapter_spec("pfeiffer", 16, activation="gelu").name == "Pfeiffer adapter (rf=16, activation=gelu)"
    assert benchmark.prompt_spec(24).grid == "prompt" and benchmark.prefix_spec(2).grid == "peft"
    assert benchmark.prefix_spec(2, reparametrize=False).grid == "prompt"  # free vectors: soft-prompt rates
    assert benchmark.prefix_spec(2, reparametrize=False).name == "prefix tuning (n=2, direct)"
    # lora_spec() is the same run as real_methods()'s LoRA r=8 (q, v): one cache entry, whatever the label
    same = [run_key(spec, 1e-3, 0, profile, task) for spec in (benchmark.lora_spec(), real_methods()["LoRA r=8 (q, v)"])]
    assert same[0] == same[1]
    assert benchmark.lora_spec(benchmark.ALL_LINEAR, quantized=True).name == "QLoRA r=8 (all linear)"
    assert benchmark.lora_spec(quantized=True).recipe == "qlora"


def test_all_linear_targets_every_block_linear_and_nothing_else():
    from transformers import BertConfig, BertForSequenceClassification

    from course_lib.peft import add_lora

    bert = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=32, num_labels=2))
    paths = add_lora(bert, "x", benchmark.ALL_LINEAR, r=2)
    assert len(paths) == 2 * 6 and not any("pooler" in p or "classifier" in p for p in paths)


def test_capstone_contenders_and_their_deployed_forms(real_env):
    from course_lib.peft.lora import lora_layers
    from course_lib.peft.prefix_tuning import HFPrefixSelfAttention
    from course_lib.peft.prompt_tuning import PromptTuningModel
    from course_lib.peft.quant import Linear4bit
    from course_lib.real_capstone import contenders, deployed_model

    found = contenders()
    assert len(found) == len({c.spec.name for c in found.values()}) >= 12
    merged = deployed_model(found["LoRA r=8 (q, v)"])
    assert not lora_layers(merged), "merged LoRA serves the base architecture"
    assert isinstance(deployed_model(found["prompt tuning (n=24)"]), PromptTuningModel)
    prefixed = deployed_model(found["prefix tuning (n=2, direct)"])
    assert any(isinstance(m, HFPrefixSelfAttention) for m in prefixed.modules())
    assert not prefixed.prefix_encoder.reparametrized
    assert any(isinstance(m, Linear4bit) for m in deployed_model(found["QLoRA r=8 (q, v)"]).modules())
    with pytest.raises(ValueError, match="family must be one of"):
        type(found["BitFit"])(found["BitFit"].spec, "magic", "base architecture")


def test_adapter_fusion_joins_the_capstone_with_its_sources_counted(real_env):
    from course_lib.peft.fusion import FusionLayer
    from course_lib.real_capstone import contenders, deployed_model, training_steps
    from course_lib.real_fusion import SOURCE_DOMAINS

    found = contenders(get_profile("ci"), show_progress=False)
    fusion = found[f"AdapterFusion ({', '.join(SOURCE_DOMAINS)})"]
    assert (fusion.family, fusion.deployed) == ("adapter", "fused adapters") and len(found) == len(contenders()) + 1
    assert training_steps(fusion, 200) == 200 * (1 + len(SOURCE_DOMAINS)) and training_steps(found["BitFit"], 200) == 200
    assert sum(isinstance(m, FusionLayer) for m in deployed_model(fusion).modules()) == 6  # one per MiniLM layer


def test_markdown_table_has_a_row_per_method_and_rejects_unknown_columns():
    import pandas as pd

    from course_lib.real_capstone import markdown_table

    table = pd.DataFrame({"family": ["full", "reparametrization"], "method params": [22_700_000, 73_728],
                          "test acc": [0.825, 0.8123], "peak train MB": [512.5, None]}, index=["full FT", "LoRA"])
    lines = markdown_table(table, columns=("family", "method params", "test acc", "peak train MB")).splitlines()
    assert lines[0] == "| method | family | method params | test acc | peak train MB |" and len(lines) == 4
    assert lines[1] == "| --- | ---: | ---: | ---: | ---: |"
    assert lines[2] == "| full FT | full | 22,700,000 | 0.825 | 512.5 |"
    assert lines[3] == "| LoRA | reparametrization | 73,728 | 0.812 | nan |"
    assert markdown_table(table).splitlines()[0] == "| method | family | method params | test acc | peak train MB |"
    with pytest.raises(ValueError, match="not in the table"):
        markdown_table(table, columns=("latency ms",))
