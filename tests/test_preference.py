"""Preference tuning: records, synthetic pairs, tokenization, the DPO loss, DPOModel with an adapter-off reference."""

import copy
import json
import math

import pytest
import torch

from course_lib.models import GPT, GPTConfig
from course_lib.peft.lora import add_lora, lora_layers, mark_lora_trainable, set_active_lora
from course_lib.preference import (PREFERENCE_HUB_NAME, DPOModel, PreferenceCollator, dpo_loss, load_preference_hub,
                                   load_preference_json, make_preference_pairs, preference_metrics, sampled_kl,
                                   sequence_logprobs, tokenize_pair, tokenize_pairs, validate_preference_record,
                                   validate_preference_records)
from course_lib.train import TrainConfig, evaluate, train

GOOD = {"prompt": "Is the soup good?", "chosen": "yes", "rejected": "no"}
EOS, PAD, PROMPT_LEN = 1, 0, 4
CPU = torch.device("cpu")


# ---------------------------------------------------------------- records

@pytest.mark.parametrize("bad, field", [
    ({"prompt": "p", "chosen": "a"}, "rejected"),
    ({"chosen": "a", "rejected": "b"}, "prompt"),
    ({"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt"),
    ({"prompt": "p", "chosen": "  ", "rejected": "b"}, "chosen"),
    ({"prompt": "p", "chosen": "a", "rejected": None}, "rejected"),
    ({"prompt": "p", "chosen": "same", "rejected": "same "}, "chosen"),
])
def test_validation_errors_name_the_index_and_the_field(bad, field):
    with pytest.raises(ValueError, match=rf"record 1: field.*'{field}'"):
        validate_preference_records([GOOD, bad])


def test_validation_keeps_extra_keys_and_refuses_non_dicts_and_empty_lists():
    checked = validate_preference_record({**GOOD, "type": "sentiment", "group": "seen"}, index=5)
    assert checked == {**GOOD, "type": "sentiment", "group": "seen"}
    with pytest.raises(ValueError, match="record 2: expected a dict"):
        validate_preference_record("yes", index=2)
    with pytest.raises(ValueError, match="No records"):
        validate_preference_records([])


def test_load_preference_json_reads_the_orca_schema_and_json_lines(tmp_path):
    orca = [{"system": "You are terse.", "question": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."},
            {"system": "", "question": "2 + 2?", "chosen": "4", "rejected": "5", "id": 7}]
    path = tmp_path / "orca.json"
    path.write_text(json.dumps(orca))
    records = load_preference_json(path)
    assert records[0] == {"prompt": "You are terse.\n\nCapital of France?", "chosen": "Paris.", "rejected": "Rome."}
    assert records[1] == {"id": 7, "prompt": "2 + 2?", "chosen": "4", "rejected": "5"}

    lines = tmp_path / "pairs.jsonl"
    lines.write_text("\n".join(json.dumps({**GOOD, "type": t}) for t in ("a", "b")) + "\n")
    assert [r["type"] for r in load_preference_json(lines)] == ["a", "b"]

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([orca[0], {"system": "", "question": "q", "chosen": "x"}]))
    with pytest.raises(ValueError, match="record 1: field 'rejected' is missing"):
        load_preference_json(broken)
    with pytest.raises(FileNotFoundError, match="No preference file"):
        load_preference_json(tmp_path / "missing.json")


def test_load_preference_hub_refuses_offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="load_preference_json"):
        load_preference_hub()


def test_load_preference_hub_maps_the_orca_schema_with_a_stub(monkeypatch):
    import datasets

    table = datasets.Dataset.from_dict({"system": ["Be kind.", ""], "question": ["Hi?", "Bye?"],
                                        "chosen": ["Hello!", "See you."], "rejected": ["Go away.", "No."]})
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: calls.append((name, split)) or table)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    records = load_preference_hub(limit=1)
    assert calls == [(PREFERENCE_HUB_NAME, "train")]
    assert records == [{"prompt": "Be kind.\n\nHi?", "chosen": "Hello!", "rejected": "Go away."}]


# ---------------------------------------------------------------- synthetic pairs

@pytest.fixture(scope="module")
def instruction_rows():
    from course_lib.instruct import make_instruction_set

    return list(make_instruction_set(n_train=80, n_test_per_type=2, seed=0)["train"])


def test_make_preference_pairs_rejects_a_wrong_answer_of_the_same_type(instruction_rows):
    from course_lib.instruct import COMPACT_TEMPLATE

    pairs = make_preference_pairs(instruction_rows, COMPACT_TEMPLATE, seed=0)
    outputs_by_type = {}
    for r in instruction_rows:
        outputs_by_type.setdefault(r["type"], set()).add(r["output"])
    assert len(pairs) == len(instruction_rows)  # every training type has several different answers
    for pair, row in zip(pairs, instruction_rows):
        assert pair["prompt"] == COMPACT_TEMPLATE.prompt(row) and pair["chosen"] == row["output"]
        assert pair["rejected"] != pair["chosen"] and pair["rejected"] in outputs_by_type[row["type"]]
        assert (pair["type"], pair["group"]) == (row["type"], row["group"])
    validate_preference_records(pairs)
    assert make_preference_pairs(instruction_rows, COMPACT_TEMPLATE, seed=0) == pairs
    assert make_preference_pairs(instruction_rows, COMPACT_TEMPLATE, seed=1) != pairs


def test_make_preference_pairs_skips_types_without_a_different_answer():
    from course_lib.instruct import COMPACT_TEMPLATE

    rows = [{"instruction": "say yes", "input": "", "output": "yes", "type": "constant"},
            {"instruction": "good or bad", "input": "a fine meal", "output": "good", "type": "sentiment"},
            {"instruction": "good or bad", "input": "an awful meal", "output": "bad", "type": "sentiment"}]
    pairs = make_preference_pairs(rows, COMPACT_TEMPLATE)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("good", "bad"), ("bad", "good")]
    with pytest.raises(ValueError, match="No pair could be made"):
        make_preference_pairs(rows[:1], COMPACT_TEMPLATE)
    with pytest.raises(ValueError, match="record 0: field 'type' is missing"):
        make_preference_pairs([{"instruction": "x", "output": "y"}], COMPACT_TEMPLATE)


# ---------------------------------------------------------------- tokenization and batches

def test_tokenize_pair_masks_the_prompt_exactly_and_ends_with_eos(small_tokenizer):
    record = {"prompt": "tom said the soup was", "chosen": "superb .", "rejected": "awful ."}
    example = tokenize_pair(record, small_tokenizer)
    prompt_ids = small_tokenizer(record["prompt"], add_special_tokens=False)["input_ids"]
    eos = small_tokenizer.eos_token_id
    assert example["prompt_len"] == len(prompt_ids)
    for side in ("chosen", "rejected"):
        ids, labels = example[f"{side}_input_ids"], example[f"{side}_labels"]
        response = small_tokenizer(record[side], add_special_tokens=False)["input_ids"]
        assert ids == prompt_ids + response + [eos]
        assert labels == [-100] * len(prompt_ids) + response + [eos]
    without = tokenize_pair(record, small_tokenizer, add_eos=False)
    assert without["chosen_input_ids"] == example["chosen_input_ids"][:-1]


def test_tokenize_pairs_drops_or_refuses_pairs_over_max_len(small_tokenizer):
    records = [GOOD | {"prompt": "tom said"}, GOOD | {"prompt": "tom said the soup was superb and the laptop dull"}]
    short = len(tokenize_pair(records[0], small_tokenizer)["chosen_input_ids"])
    assert len(tokenize_pairs(records, small_tokenizer, max_len=short)) == 1
    with pytest.raises(ValueError, match="record 1:"):
        tokenize_pairs(records, small_tokenizer, max_len=short, too_long="error")
    with pytest.raises(ValueError, match="record 1: field 'chosen'"):
        tokenize_pairs([records[0], GOOD | {"chosen": ""}], small_tokenizer)


def test_synthetic_pairs_tokenize_and_collate(instruction_rows, small_tokenizer):
    from course_lib.instruct import COMPACT_TEMPLATE

    pairs = make_preference_pairs(instruction_rows[:6], COMPACT_TEMPLATE)
    batch = PreferenceCollator(small_tokenizer.pad_token_id)(tokenize_pairs(pairs, small_tokenizer))
    assert batch["input_ids"].shape[0] == 2 * len(pairs)


def _pair(prompt, chosen, rejected):
    """A tokenized pair from integer ids (prompt masked, EOS closing each response)."""
    out = {"prompt_len": len(prompt)}
    for side, response in (("chosen", chosen), ("rejected", rejected)):
        out[f"{side}_input_ids"] = prompt + response + [EOS]
        out[f"{side}_labels"] = [-100] * len(prompt) + response + [EOS]
    return out


def test_collator_stacks_chosen_then_rejected_rows_padded_to_one_length():
    pairs = [_pair([5, 6], [7], [8, 9, 10]), _pair([5], [7, 7], [8])]
    batch = PreferenceCollator(PAD)(pairs)
    assert {k: tuple(v.shape) for k, v in batch.items()} == {k: (4, 6) for k in ("input_ids", "attention_mask",
                                                                                  "labels")}
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1, 0, 0], [5, 7, 7, 1, 0, 0],
                                           [5, 6, 8, 9, 10, 1], [5, 8, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 1, -100, -100], [-100, 7, 7, 1, -100, -100],
                                        [-100, -100, 8, 9, 10, 1], [-100, 8, 1, -100, -100, -100]]
    assert batch["attention_mask"].sum(1).tolist() == [4, 4, 6, 3]
    assert PreferenceCollator(PAD, pad_to=8)(pairs)["input_ids"].shape == (4, 8)
    with pytest.raises(ValueError, match="pad_to=5"):
        PreferenceCollator(PAD, pad_to=5)(pairs)
    with pytest.raises(ValueError, match="zero pairs"):
        PreferenceCollator(PAD)([])
    broken = {k: v for k, v in pairs[1].items() if k != "rejected_labels"}
    with pytest.raises(ValueError, match=r"pair 1: missing \['rejected_labels'\]"):
        PreferenceCollator(PAD)([pairs[0], broken])


# ---------------------------------------------------------------- log-probabilities and the loss

def test_sequence_logprobs_matches_a_hand_loop():
    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[-100, -100, 3, 4, 1], [-100, 2, 6, -100, -100]])
    expected = []
    for b in range(2):
        total = 0.0
        for t in range(1, 5):
            if labels[b, t] != -100:
                total += torch.log_softmax(logits[b, t - 1], -1)[labels[b, t]].item()
        expected.append(total)
    got = sequence_logprobs(logits.to(torch.bfloat16), labels)
    assert got.dtype == torch.float32
    assert torch.allclose(sequence_logprobs(logits, labels), torch.tensor(expected), atol=1e-5)
    with pytest.raises(ValueError, match="logits"):
        sequence_logprobs(logits, labels[:, :3])


def test_dpo_loss_on_hand_computed_numbers():
    # rewards = 0.5 * (policy - reference): chosen [0.5, 0.0], rejected [-0.5, 0.5]; differences [1.0, -0.5]
    # loss = mean(-log sigmoid(1.0), -log sigmoid(-0.5)) = mean(0.3132617, 0.9740770) = 0.6436693
    terms = dpo_loss(torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0]),
                     torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0]), beta=0.5)
    assert terms.chosen_rewards.tolist() == [0.5, 0.0] and terms.rejected_rewards.tolist() == [-0.5, 0.5]
    assert terms.loss.item() == pytest.approx(0.6436693, abs=1e-6)
    assert terms.margin == pytest.approx(0.25) and terms.accuracy == 0.5
    with pytest.raises(ValueError, match="one shape"):
        dpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2), beta=0.1)


@pytest.mark.parametrize("beta", [0, -0.1, math.nan, math.inf, True, "0.1", None])
def test_beta_must_be_a_finite_positive_number(beta, policy):
    zeros = torch.zeros(2)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        dpo_loss(zeros, zeros, zeros, zeros, beta)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        DPOModel(policy[0], beta=beta)


# ---------------------------------------------------------------- DPOModel on a tiny GPT with LoRA

def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=40, max_len=16, d_model=32, n_layers=2, n_heads=2, d_ff=64, dropout=0.1))


def with_lora(model):
    add_lora(model, target_modules=("q_proj", "v_proj", "fc1", "fc2"), r=4, alpha=8)
    mark_lora_trainable(model, "default", head_patterns=())
    return model


@pytest.fixture()
def policy():
    """(policy with a fresh LoRA, a copy of the base model taken before add_lora)."""
    model = tiny_gpt()
    base = copy.deepcopy(model).eval()
    return with_lora(model), base


def nudge_lora(model, seed=1, scale=0.2):
    """Non-zero LoRA B matrices, so the policy differs from its reference."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["default"].weight.copy_(scale * torch.randn(layer.lora_B["default"].weight.shape, generator=g))


def make_pairs(n=16, seed=0):
    """Pairs the prompt decides: chosen answers [k, 7], rejected [7, k] with k from the first prompt token."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        prompt = torch.randint(10, 40, (PROMPT_LEN,), generator=g).tolist()
        k = 2 + prompt[0] % 4
        pairs.append(_pair(prompt, [k, 7], [7, k]))
    return pairs


@pytest.fixture()
def batch():
    return PreferenceCollator(PAD)(make_pairs(4))


def base_logprobs(base, batch):
    with torch.no_grad():
        return sequence_logprobs(base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                 batch["labels"])


def test_adapter_off_reference_equals_the_base_model_before_lora(policy, batch):
    model, base = policy
    nudge_lora(model)
    dpo = DPOModel(model).train()  # dropout on in the policy; the reference pass must switch it off
    reference = dpo.reference_logprobs(**batch)
    assert torch.allclose(reference, base_logprobs(base, batch), atol=1e-6)
    assert torch.equal(reference, dpo.reference_logprobs(**batch))  # no dropout: the same twice
    assert not torch.allclose(dpo.eval().policy_logprobs(**batch), reference, atol=1e-3)
    dpo.train()
    dpo.reference_logprobs(**batch)
    assert all(m.training for m in model.modules())  # every module's mode is restored
    assert dpo.reference is None and sum(p.numel() for p in dpo.parameters()) == sum(
        p.numel() for p in model.parameters())  # one copy of the weights


def test_reference_pass_makes_no_gradient(policy, batch):
    model, base = policy
    nudge_lora(model)
    model.requires_grad_(True)
    reference = DPOModel(model).reference_logprobs(**batch)
    assert not reference.requires_grad and reference.grad_fn is None
    assert all(p.grad is None for p in model.parameters())

    mark_lora_trainable(model, "default", head_patterns=())
    dpo = DPOModel(model, beta=0.3).eval()
    dpo(**batch).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(".lora_" in n for n in grads)
    model.zero_grad()
    half = batch["input_ids"].size(0) // 2
    ref = base_logprobs(base, batch)  # the reference as constants: the gradient must be the same
    pol = dpo.policy_logprobs(**batch)
    dpo_loss(pol[:half], pol[half:], ref[:half], ref[half:], beta=0.3).loss.backward()
    for n, p in model.named_parameters():
        if n in grads:
            assert torch.allclose(p.grad, grads[n], atol=1e-6), n


def test_training_moves_the_policy_but_not_the_reference(policy):
    model, base = policy
    pairs = make_pairs(16)
    collate = PreferenceCollator(PAD)
    dpo = DPOModel(model, beta=0.5)
    whole = collate(pairs)
    ref_before, pol_before = dpo.reference_logprobs(**whole), dpo.eval().policy_logprobs(**whole).detach()
    before = preference_metrics(dpo, pairs, collate)
    assert before["margin"] == 0.0 and before["accuracy"] == 0.0  # fresh LoRA: policy == reference, all ties
    assert before["loss"] == pytest.approx(math.log(2))

    history = train(dpo, pairs, collate, TrainConfig(steps=20, batch_size=8, lr=2e-2, eval_every=10,
                                                     warmup_ratio=0.0), eval_data=pairs, device=CPU,
                    show_progress=False)
    after = preference_metrics(dpo, pairs, collate, batch_size=5)
    assert torch.allclose(dpo.reference_logprobs(**whole), ref_before, atol=1e-6)
    assert torch.allclose(ref_before, base_logprobs(base, whole), atol=1e-6)
    assert not torch.allclose(dpo.policy_logprobs(**whole), pol_before, atol=1e-2)
    assert after["margin"] > 0.5 and after["accuracy"] > 0.9 and after["loss"] < before["loss"]
    steps, margins = history.series("val_margin")
    assert steps == [10, 20] and margins[-1] == pytest.approx(after["margin"], abs=1e-5)
    assert history.last("val_accuracy") == pytest.approx(after["accuracy"])
    assert {"val_loss", "val_chosen_reward", "val_rejected_reward"} <= set(history.records[-1])


def test_evaluate_weights_batches_by_size(policy):
    model, _ = policy
    nudge_lora(model)
    dpo, pairs, collate = DPOModel(model, beta=0.2), make_pairs(7), PreferenceCollator(PAD)
    uneven = evaluate(dpo, pairs, collate, batch_size=3)  # batches of 3, 3 and 1 pairs
    whole = evaluate(dpo, pairs, collate, batch_size=64)
    assert set(whole) == {"loss", "margin", "accuracy", "chosen_reward", "rejected_reward"}
    for key, value in whole.items():
        assert uneven[key] == pytest.approx(value, abs=1e-5), key


def test_dpo_model_without_lora_needs_an_explicit_reference():
    with pytest.raises(ValueError, match="no LoRA layers"):
        DPOModel(tiny_gpt())


def test_lora_setups_that_would_break_the_reference_are_refused(batch):
    merging = tiny_gpt()
    add_lora(merging, target_modules=("q_proj",), r=2, merge_on_eval=True)
    with pytest.raises(ValueError, match="merge_on_eval"):
        DPOModel(merging)
    inactive = tiny_gpt()
    add_lora(inactive, target_modules=("q_proj",), r=2)
    with pytest.raises(ValueError, match="No LoRA adapter is active"):
        DPOModel(inactive)(**batch)
    set_active_lora(inactive, "default")  # active, but the base weights are still trainable
    with pytest.raises(ValueError, match="outside LoRA are trainable"):
        DPOModel(inactive)(**batch)
    with pytest.raises(ValueError, match=r"input_ids \[2B, T\]"):
        DPOModel(with_lora(tiny_gpt()))(batch["input_ids"][:3], batch["attention_mask"][:3], batch["labels"][:3])


def test_explicit_reference_matches_the_adapter_off_reference(policy, batch):
    model, base = policy
    nudge_lora(model)
    adapter_off = DPOModel(model, beta=0.1).eval()
    explicit = DPOModel(model, beta=0.1, reference=base).eval()
    a, b = adapter_off(**batch), explicit(**batch)
    assert a.logits is None and set(a.metrics) == {"margin", "accuracy", "chosen_reward", "rejected_reward"}
    assert b.loss.item() == pytest.approx(a.loss.item(), abs=1e-6)
    assert b.metrics == pytest.approx(a.metrics, abs=1e-6)
    explicit.train()
    assert explicit.reference is base and not base.training and not any(p.requires_grad for p in base.parameters())
    assert {id(p) for p in explicit.parameters()}.isdisjoint(id(p) for p in base.parameters())
    with pytest.raises(ValueError, match="reference is the policy itself"):
        DPOModel(model, reference=model)
    with pytest.raises(ValueError, match="shares"):
        DPOModel(model, reference=model.layers[0])


# ---------------------------------------------------------------- sampled KL

def test_sampled_kl_is_zero_for_a_fresh_adapter_and_matches_the_exact_kl():
    model = tiny_gpt()
    with torch.no_grad():
        model.tok_embed.weight.mul_(5.0)  # sharper next-token distributions (the tied head), so the KL is not tiny
    base = copy.deepcopy(model).eval()
    with_lora(model)
    prompts = [p["chosen_input_ids"][:PROMPT_LEN] for p in make_pairs(3)]
    fresh = sampled_kl(model, prompts, max_new_tokens=6, samples=4, generator=torch.Generator().manual_seed(0),
                       eos_token_id=EOS)
    assert abs(fresh) < 1e-6
    nudge_lora(model, seed=2)
    with torch.no_grad():  # one generated token: the exact KL of the next-token distributions
        ids = torch.tensor(prompts)
        p = torch.log_softmax(model.eval()(ids).logits[:, -1], -1)
        q = torch.log_softmax(base(ids).logits[:, -1], -1)
        exact = float((p.exp() * (p - q)).sum(-1).mean())
    estimate = sampled_kl(model, prompts, max_new_tokens=1, samples=2000, generator=torch.Generator().manual_seed(0))
    assert exact > 0.1 and estimate == pytest.approx(exact, rel=0.05)  # Monte-Carlo error here is about 2%
    explicit = sampled_kl(model, prompts, max_new_tokens=1, samples=2000, generator=torch.Generator().manual_seed(0),
                          reference=base)
    assert explicit == pytest.approx(estimate, abs=1e-5)
    with pytest.raises(ValueError, match="max_len=16"):
        sampled_kl(model, prompts, max_new_tokens=13)
    with pytest.raises(ValueError, match="no LoRA layers"):
        sampled_kl(base, prompts, max_new_tokens=2)


def test_sampled_kl_grows_with_dpo_training(policy):
    model, _ = policy
    pairs = make_pairs(16)
    train(DPOModel(model, beta=0.5), pairs, PreferenceCollator(PAD),
          TrainConfig(steps=20, batch_size=8, lr=2e-2, eval_every=20, warmup_ratio=0.0), device=CPU,
          show_progress=False)
    prompts = [p["chosen_input_ids"][:PROMPT_LEN] for p in pairs[:4]]
    kl = sampled_kl(model, prompts, max_new_tokens=3, samples=256, generator=torch.Generator().manual_seed(0),
                    eos_token_id=EOS)
    assert kl > 0.01


def test_sampled_kl_scores_generated_tokens_up_to_the_first_eos_and_restores_modes(policy):
    from course_lib.preference.dpo import _generated_labels

    sequences = torch.tensor([[5, 6, 3, 1, 4, 1], [5, 6, 3, 4, 2, 2]])
    assert _generated_labels(sequences, 2, EOS).tolist() == [[-100, -100, 3, 1, -100, -100],
                                                             [-100, -100, 3, 4, 2, 2]]
    assert _generated_labels(sequences, 2, None).tolist()[0] == [-100, -100, 3, 1, 4, 1]
    model, _ = policy
    model.train()
    sampled_kl(model, [[5, 6]], max_new_tokens=2, samples=2, eos_token_id=EOS)
    assert all(m.training for m in model.modules())


def test_lora_policy_and_run_dpo_train_only_the_adapter_and_measure_the_run():
    from course_lib.preference import DPORun, lora_policy, run_dpo

    base = tiny_gpt()
    policy = lora_policy(base, r=2, seed=0, target_modules=("q_proj", "v_proj"))
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(p.requires_grad for p in base.parameters())  # the SFT model itself is untouched (a copy was adapted)
    pairs, collate, seen = make_pairs(16), PreferenceCollator(PAD), []
    run = run_dpo(policy, 0.5, pairs, pairs[:8], collate,
                  TrainConfig(steps=10, batch_size=8, lr=2e-2, eval_every=5, warmup_ratio=0.0),
                  score=lambda model: seen.append(model) or "scored", kl=lambda model, ref: 0.25, device=CPU,
                  show_progress=False)
    assert isinstance(run, DPORun) and run.scores == "scored" and run.kl == 0.25 and seen == [policy]
    assert run.heldout["accuracy"] > 0.5 and run.history.series("val_margin")[0] == [5, 10]
