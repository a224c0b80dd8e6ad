"""Many LoRAs in one batch: row i uses its own adapter, equal to running it alone and to peft's adapter_names=."""

import pytest
import torch

from course_lib.peft import mixed_batch
from course_lib.peft.lora import disable_lora, lora_layers, merge_lora, set_active_lora, unmerge_lora

from test_lora import tiny_gpt2
from test_lora_merging import NAMES, twin_loras
from tiny_models import tiny_classifier

ROWS = ["topic", "__base__", "sent", "topic", "nli", "sent"]


def batch(rows=len(ROWS), vocab=50, seed=1):
    return torch.randint(1, vocab, (rows, 10), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def hidden(model, ids, **kw):
    """The last hidden states of a Hugging Face model (a tiny BERT's logits barely move, these do)."""
    return model(ids, output_hidden_states=True, **kw).hidden_states[-1]


@torch.no_grad()
def row_by_row(model, ids, names, run=hidden):
    """Each row alone with set_active_lora (or the base model for "__base__")."""
    out = []
    for row, name in zip(ids, names):
        set_active_lora(model, None if name == "__base__" else name)
        out.append(run(model, row[None]))
    set_active_lora(model, None)
    return torch.cat(out)


@pytest.mark.parametrize("make, targets", [
    (None, None),                                                                  # tiny BERT, overlapping targets
    (tiny_gpt2, (["c_attn"], ["c_attn", "c_proj"], ["c_fc"])),                      # GPT-2 Conv1D layers
])
def test_mixed_batch_equals_each_row_alone_and_peft(make, targets):
    kw = {} if make is None else {"make": make, "targets": targets, "fan_in_fan_out": True}
    peft_model, course = twin_loras(**kw)
    ids = batch()
    set_active_lora(course, "sent")  # the active adapter is ignored inside the block, and restored after it
    with torch.no_grad(), mixed_batch(course, ROWS):
        mixed, mixed_logits = hidden(course, ids), course(ids).logits
    assert all(layer.row_adapters is None for layer in lora_layers(course).values())
    still_sent = hidden(course, ids)
    torch.testing.assert_close(mixed, row_by_row(course, ids, ROWS), atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed, hidden(peft_model, ids, adapter_names=ROWS), atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(mixed_logits, peft_model(ids, adapter_names=ROWS).logits, atol=1e-5, rtol=0)
    base = hidden(course, ids)  # no adapter active now
    set_active_lora(course, "sent")
    torch.testing.assert_close(hidden(course, ids), still_sent, atol=0, rtol=0)
    torch.testing.assert_close(mixed[1], base[1], atol=1e-5, rtol=0)            # "__base__" row = the base model
    for i, name in enumerate(ROWS):                                              # and every row differs from it
        assert name == "__base__" or not torch.allclose(mixed[i], base[i], atol=1e-4)


def test_all_rows_one_adapter_equals_the_active_adapter_and_disable_wins():
    _, course = twin_loras()
    ids = batch(4)
    with torch.no_grad():
        with mixed_batch(course, ["nli"] * 4):
            mixed = hidden(course, ids)
            with disable_lora(course):  # disabled LoRA means the base model, also for a mixed batch (as peft)
                disabled = hidden(course, ids)
        set_active_lora(course, "nli")
        torch.testing.assert_close(mixed, hidden(course, ids), atol=1e-6, rtol=0)
        assert not torch.allclose(mixed, disabled, atol=1e-3)
        with mixed_batch(course, ["__base__"] * 4):
            torch.testing.assert_close(hidden(course, ids), disabled, atol=1e-6, rtol=0)


def test_mixed_batch_on_a_course_model_and_in_greedy_generation():
    from course_lib.peft.lora import add_lora

    model = tiny_classifier()
    for i, name in enumerate(NAMES):
        add_lora(model, name, ["q_proj", "v_proj"], r=2)
        with torch.no_grad():
            for layer in lora_layers(model).values():
                layer.lora_B[name].weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(i))
    ids = batch(3, vocab=120)
    names = ["nli", "__base__", "sent"]
    with torch.no_grad(), mixed_batch(model, names):
        mixed = model(ids).logits
    torch.testing.assert_close(mixed, row_by_row(model, ids, names, lambda m, x: m(x).logits), atol=1e-5, rtol=0)

    peft_model, gpt2 = twin_loras(tiny_gpt2, targets=(["c_attn"], ["c_attn", "c_proj"], ["c_fc"]),
                                  fan_in_fan_out=True)
    prompt, names = batch(3, seed=4)[:, :5], ["topic", "nli", "__base__"]
    settings = {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False, "pad_token_id": 0}
    mask = torch.ones_like(prompt)
    with mixed_batch(gpt2, names):  # every step of generate runs the same 3 rows
        ours = gpt2.generate(prompt, attention_mask=mask, **settings)
    alone = []
    for row, name in zip(prompt, names):
        set_active_lora(gpt2, None if name == "__base__" else name)
        alone.append(gpt2.generate(row[None], attention_mask=mask[:1], **settings))
    assert torch.equal(ours, torch.cat(alone))
    assert torch.equal(ours, peft_model.generate(input_ids=prompt, attention_mask=mask, adapter_names=names,
                                                 **settings))


def test_mixed_batch_errors():
    _, course = twin_loras()
    with pytest.raises(ValueError, match=r"got 2 adapter names for a batch of 6 rows"):
        with torch.no_grad(), mixed_batch(course, ["sent", "nli"]):
            course(batch())
    assert all(layer.row_adapters is None for layer in lora_layers(course).values())  # cleaned up after an error
    with pytest.raises(ValueError, match=r"No LoRA adapter named \['nope', 'snet'\].*'sent'.*'__base__'"):
        with mixed_batch(course, ["sent", "snet", "nope"]):
            pass
    with pytest.raises(ValueError, match="one per row"):
        with mixed_batch(course, "sent"):
            pass
    with pytest.raises(ValueError, match="is empty"):
        with mixed_batch(course, []):
            pass
    set_active_lora(course, "sent")
    merge_lora(course)
    with pytest.raises(ValueError, match=r"\['sent'\] are merged.*unmerge_lora"):
        with mixed_batch(course, ["sent", "nli"]):
            pass
    unmerge_lora(course)
    course.train()
    with pytest.raises(ValueError, match="inference: call model.eval"):
        with mixed_batch(course, ["sent", "nli"]):
            pass
    course.eval()
    with mixed_batch(course, ["sent", "nli"]):  # a merge inside the block is refused at forward time
        merge_lora(course)
        with pytest.raises(RuntimeError, match="merged into the base weight: unmerge_lora"):
            course(batch(2))
    unmerge_lora(course)
