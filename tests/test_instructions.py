import copy
import json

import pytest
import torch

from course_lib.data.collate import IGNORE_INDEX
from course_lib.instruct import (ALPACA_TEMPLATE, COMPACT_TEMPLATE, GROUPS, PackingCollator, PaddingCollator,
                                 add_header_tokens, exact_match, exact_match_by, instruction_types, load_alpaca,
                                 load_alpaca_hub, load_alpaca_json, make_instruction_set, normalize_answer,
                                 pack_examples, padding_share, tokenize_record, tokenize_records, unknown_token_share,
                                 validate_records)

WITH_INPUT = {"instruction": "Identify the odd one out.", "input": "Twitter, Instagram, Telegram", "output": "Telegram"}
NO_INPUT = {"instruction": "Name a primary colour.", "input": "", "output": "Blue"}


@pytest.fixture()
def tok(small_tokenizer):
    tok = copy.deepcopy(small_tokenizer)
    add_header_tokens(tok, COMPACT_TEMPLATE)
    return tok


def record(instruction="first item", given="soup , cake", output="soup"):
    return {"instruction": instruction, "input": given, "output": output}


# ---- records ---------------------------------------------------------------------------------------------------

def test_validate_fills_missing_input():
    out = validate_records([{"instruction": "say hi", "output": "hi"}, {"instruction": "a", "input": None, "output": "b"}])
    assert out[0]["input"] == "" and out[1]["input"] == ""


@pytest.mark.parametrize("bad, index, field", [
    ({"input": "", "output": "x"}, 1, "instruction"),
    ({"instruction": "do it", "input": ""}, 1, "output"),
    ({"instruction": "do it", "input": 3, "output": "x"}, 1, "input"),
    ({"instruction": "   ", "input": "", "output": "x"}, 1, "instruction"),
    ({"instruction": "do it", "input": "", "output": ["x"]}, 1, "output"),
])
def test_invalid_records_name_index_and_field(bad, index, field):
    with pytest.raises(ValueError, match=rf"record {index}: field '{field}'"):
        validate_records([WITH_INPUT, bad])


def test_non_dict_record_names_index():
    with pytest.raises(ValueError, match="record 2: expected a dict"):
        validate_records([WITH_INPUT, NO_INPUT, "not a record"])


# ---- templates ---------------------------------------------------------------------------------------------------

def test_alpaca_template_with_input_exact():
    assert ALPACA_TEMPLATE.render(WITH_INPUT, "</s>") == (
        "Here is an instruction that describes a task, together with an input that gives more context. "
        "Write a response that carries out the request.\n\n"
        "### Instruction:\nIdentify the odd one out.\n\n"
        "### Input:\nTwitter, Instagram, Telegram\n\n"
        "### Response:\nTelegram</s>")


def test_alpaca_template_without_input_exact():
    assert ALPACA_TEMPLATE.render(NO_INPUT, "</s>") == (
        "Here is an instruction that describes a task. Write a response that carries out the request.\n\n"
        "### Instruction:\nName a primary colour.\n\n"
        "### Response:\nBlue</s>")
    whitespace_input = dict(NO_INPUT, input="  ")  # blank input counts as none
    assert ALPACA_TEMPLATE.prompt(whitespace_input) == ALPACA_TEMPLATE.prompt(NO_INPUT)


def test_compact_template_exact():
    assert COMPACT_TEMPLATE.render(record(), "[EOS]") == \
        "### Instruction: first item ### Input: soup , cake ### Response: soup [EOS]"
    assert COMPACT_TEMPLATE.render(record(given=""), "[EOS]") == "### Instruction: first item ### Response: soup [EOS]"
    assert COMPACT_TEMPLATE.prompt(record()) == "### Instruction: first item ### Input: soup , cake ### Response: "


def test_header_tokens_are_single_ids(tok, small_tokenizer):
    ids = add_header_tokens(tok, COMPACT_TEMPLATE)  # adding again is a no-op
    assert len(tok) == len(small_tokenizer) + 3 and len(set(ids)) == 3
    encoded = tok(COMPACT_TEMPLATE.prompt(record()), add_special_tokens=False)["input_ids"]
    assert [i for i in encoded if i in ids] == ids
    assert unknown_token_share(tok, [COMPACT_TEMPLATE.render(record(), tok.eos_token)]) == 0.0


# ---- tokenization and masking ------------------------------------------------------------------------------------

def test_masking_covers_exactly_the_prompt(tok):
    ex = tokenize_record(record(), tok, COMPACT_TEMPLATE, mask_prompt=True)
    prompt_ids = tok(COMPACT_TEMPLATE.prompt(record()), add_special_tokens=False)["input_ids"]
    response_ids = tok("soup", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ex["prompt_len"] == len(prompt_ids)
    assert ex["input_ids"] == prompt_ids + response_ids
    assert ex["labels"][:len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert ex["labels"][len(prompt_ids):] == response_ids  # response and EOS are learned
    assert ex["input_ids"][-1] == tok.eos_token_id


def test_unmasked_labels_equal_inputs(tok):
    ex = tokenize_record(record(), tok, COMPACT_TEMPLATE, mask_prompt=False)
    assert ex["labels"] == ex["input_ids"]


def test_tokenize_records_too_long_policies(tok):
    recs = [record(), record(given="soup , cake , pie , stew , bread , curry , pasta")]
    lengths = [len(tokenize_record(r, tok, COMPACT_TEMPLATE)["input_ids"]) for r in recs]
    limit = lengths[0]
    assert lengths[1] > limit
    assert len(tokenize_records(recs, tok, COMPACT_TEMPLATE, max_len=limit)) == 1
    cut = tokenize_records(recs, tok, COMPACT_TEMPLATE, max_len=limit, too_long="truncate")
    assert [len(e["input_ids"]) for e in cut] == [limit, limit]
    with pytest.raises(ValueError, match="record 1"):
        tokenize_records(recs, tok, COMPACT_TEMPLATE, max_len=limit, too_long="error")
    with pytest.raises(ValueError, match="too_long"):
        tokenize_records(recs, tok, COMPACT_TEMPLATE, too_long="skip")


# ---- padding and packing -----------------------------------------------------------------------------------------

def examples(tok, n=7):
    items = ["soup", "cake , pie", "tom , anna , ben", "stew"]
    recs = [record(given=items[i % 4], output=items[(i + 1) % 4]) for i in range(n)]
    return tokenize_records(recs, tok, COMPACT_TEMPLATE)


def test_padding_collator(tok):
    exs = examples(tok)
    batch = PaddingCollator(tok.pad_token_id)(exs)
    longest = max(len(e["input_ids"]) for e in exs)
    assert batch["input_ids"].shape == (len(exs), longest)
    for row, e in enumerate(exs):
        n = len(e["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == e["input_ids"]
        assert batch["labels"][row, :n].tolist() == e["labels"]
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all() and (batch["attention_mask"][row, n:] == 0).all()
    fixed = PaddingCollator(tok.pad_token_id, pad_to=40)(exs)
    assert fixed["input_ids"].shape == (len(exs), 40)
    assert padding_share(fixed) > padding_share(batch) > 0
    with pytest.raises(ValueError, match="pad_to"):
        PaddingCollator(tok.pad_token_id, pad_to=3)(exs)


@pytest.mark.parametrize("strategy", ["first_fit", "next_fit"])
def test_packing_keeps_every_token_exactly_once(tok, strategy):
    exs = examples(tok, n=9)
    max_len = 48
    batch = PackingCollator(tok.pad_token_id, max_len, strategy, return_example_ids=True)(exs)
    ids, labels, owner, mask = batch["input_ids"], batch["labels"], batch["example_ids"], batch["attention_mask"]
    assert ids.shape[1] <= max_len and ids.shape[0] < len(exs)  # fewer rows than examples
    assert mask[:, -1].any()  # padded to the longest row only
    fixed = PackingCollator(tok.pad_token_id, max_len, strategy, pad_to_max_len=True)(exs)
    assert fixed["input_ids"].shape == (ids.shape[0], max_len)
    assert torch.equal(mask.bool(), owner >= 0)
    assert int(mask.sum()) == sum(len(e["input_ids"]) for e in exs)  # nothing lost, nothing added
    for i, e in enumerate(exs):  # boundaries: each example is one contiguous run inside a single row
        rows, cols = (owner == i).nonzero(as_tuple=True)
        assert rows.unique().numel() == 1
        assert cols.tolist() == list(range(int(cols[0]), int(cols[0]) + len(e["input_ids"])))
        assert ids[rows, cols].tolist() == e["input_ids"] and labels[rows, cols].tolist() == e["labels"]
        assert labels[rows[0], cols[0]] == IGNORE_INDEX  # masked prompt: no label crosses a boundary
    for r in range(ids.shape[0]):  # within a row, examples keep their original order
        owners = owner[r][owner[r] >= 0].tolist()
        assert owners == sorted(owners)
    assert (labels[~mask.bool()] == IGNORE_INDEX).all()
    assert "example_ids" not in PackingCollator(tok.pad_token_id, max_len)(exs)


def test_next_fit_keeps_the_example_order_across_rows(tok):
    exs = examples(tok, n=9)
    rows = pack_examples(exs, 48, strategy="next_fit")
    assert [i for r in rows for i in dict.fromkeys(r["example_ids"])] == list(range(len(exs)))
    assert len(pack_examples(exs, 48, strategy="first_fit")) <= len(rows)
    with pytest.raises(ValueError, match="strategy"):
        pack_examples(exs, 48, strategy="best")


def test_packing_rejects_an_example_longer_than_a_row(tok):
    exs = examples(tok, n=2)
    with pytest.raises(ValueError, match="example 0"):
        pack_examples(exs, max_len=3)


def test_packing_has_less_padding(tok):
    exs = examples(tok, n=16)
    padded = PaddingCollator(tok.pad_token_id, pad_to=48)(exs)
    packed = PackingCollator(tok.pad_token_id, 48, pad_to_max_len=True)(exs)
    assert padding_share(packed) < padding_share(padded)
    assert int(packed["attention_mask"].sum()) == int(padded["attention_mask"].sum())


# ---- exact match -------------------------------------------------------------------------------------------------

def test_normalize_and_exact_match():
    assert normalize_answer("  Tom said the SOUP was superb . ") == "tom said the soup was superb."
    assert normalize_answer("soup , cake") == normalize_answer("soup, cake")
    assert exact_match(["five", "Four ", "six"], ["five", "four", "seven"]) == pytest.approx(2 / 3)
    assert exact_match(["soup and cake"], ["soup"]) == 0.0  # no partial credit
    assert exact_match_by(["a", "b", "c"], ["a", "x", "c"], ["g1", "g2", "g1"]) == {"g1": 1.0, "g2": 0.0}
    with pytest.raises(ValueError, match="pair up"):
        exact_match(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="same length"):
        exact_match_by(["a"], ["a"], ["g", "h"])


# ---- the generated instruction set -------------------------------------------------------------------------------

def test_instruction_set_structure():
    ds = make_instruction_set(n_train=300, n_test_per_type=6, seed=0)
    train, test = ds["train"], ds["test"]
    assert len(train) == 300
    validate_records(train)
    heldout = {t.name for t in instruction_types(heldout=True)}
    assert heldout and not heldout & set(train["type"])  # held-out types never trained on
    assert set(test["group"]) == set(GROUPS)
    assert {r["type"] for r in test if r["group"] == "held-out type"} == heldout
    train_keys = {(r["instruction"], r["input"]) for r in train}
    assert not train_keys & {(r["instruction"], r["input"]) for r in test}  # no test pair is trained on
    last_phrasing = {t.name: t.phrasings[-1] for t in instruction_types(heldout=False)}
    assert not any(r["instruction"] == last_phrasing[r["type"]] for r in train)
    assert all(r["instruction"] == last_phrasing[r["type"]] for r in test if r["group"] == "new wording")
    assert len({t.family for t in instruction_types()}) >= 5
    again = make_instruction_set(n_train=300, n_test_per_type=6, seed=0)
    assert again["train"]["output"] == train["output"]  # deterministic


def test_instruction_set_answers_are_right():
    ds = make_instruction_set(n_train=400, n_test_per_type=4, seed=1)
    for r in ds["train"]:
        if r["type"] == "reverse":
            assert r["output"].split(" , ") == r["input"].split(" , ")[::-1]
        if r["type"] == "count":
            assert r["output"] == ["zero", "one", "two", "three", "four"][len(r["input"].split(" , "))]
        if r["type"] == "copy":
            assert r["output"] == r["input"]


def test_instruction_set_tokenizes_without_unknown_tokens():
    from course_lib.pretrain import course_tokenizer
    from course_lib.profiles import get_profile

    tok = copy.deepcopy(course_tokenizer(get_profile("ci")))
    add_header_tokens(tok, COMPACT_TEMPLATE)
    ds = make_instruction_set(n_train=400, n_test_per_type=10, seed=0)
    texts = [COMPACT_TEMPLATE.render(r, tok.eos_token) for split in ds.values() for r in split]
    assert unknown_token_share(tok, texts) == 0.0


# ---- loaders -----------------------------------------------------------------------------------------------------

def test_load_alpaca_json_list_and_jsonl(tmp_path):
    rows = [WITH_INPUT, NO_INPUT, {"instruction": "Say hi.", "output": "Hi!", "text": "ignored"}]
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps(rows))
    ds = load_alpaca_json(path)
    assert ds.column_names == ["instruction", "input", "output"] and len(ds) == 3
    assert ds[2]["input"] == "" and ds[0]["output"] == "Telegram"
    lines = tmp_path / "alpaca.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in rows))
    assert load_alpaca_json(lines)["instruction"] == ds["instruction"]
    assert load_alpaca(str(path))["output"] == ds["output"]  # a local path goes to the JSON loader


def test_load_alpaca_json_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_alpaca_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([WITH_INPUT, {"instruction": "x", "input": ""}]))
    with pytest.raises(ValueError, match="record 1: field 'output'"):
        load_alpaca_json(bad)


def test_load_alpaca_hub_refuses_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="load_alpaca_json"):
        load_alpaca_hub("tatsu-lab/alpaca")


def test_load_alpaca_hub_code_path_with_a_stub(monkeypatch):
    import datasets

    rows = [WITH_INPUT, NO_INPUT, {"instruction": "Say hi.", "input": "", "output": "Hi!"}]
    table = datasets.Dataset.from_dict({**{f: [r[f] for r in rows] for f in ("instruction", "input", "output")},
                                        "text": ["full prompt"] * 3})
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: calls.append((name, split)) or table)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    ds = load_alpaca_hub(limit=2)
    assert calls == [("tatsu-lab/alpaca", "train")]
    assert ds.column_names == ["instruction", "input", "output"] and ds["output"] == ["Telegram", "Blue"]
    assert load_alpaca("tatsu-lab/alpaca")["output"] == ["Telegram", "Blue", "Hi!"]  # not a path: the Hub
