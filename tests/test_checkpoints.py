import pytest
import torch

from course_lib.checkpoints import load_trainable, save_trainable
from course_lib.params import count_parameters, training_memory_bytes
from course_lib.peft.freezing import bitfit, freeze_all
from tiny_models import tiny_classifier


def test_trainable_checkpoint_reloads_to_identical_predictions(tmp_path, small_tokenizer):
    model = tiny_classifier(seed=0)
    bitfit(model)
    with torch.no_grad():  # stand-in for training: move every trainable tensor
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    path = save_trainable(model, tmp_path / "bitfit.safetensors", metadata={"method": "bitfit"})
    fresh = tiny_classifier(seed=0)  # the same frozen base, untrained
    ids = small_tokenizer(["tom said the soup was superb ."], return_tensors="pt")["input_ids"]
    model.eval(); fresh.eval()
    assert not torch.allclose(fresh(ids).logits, model(ids).logits)
    names = load_trainable(fresh, path)
    assert len(names) == sum(1 for p in model.parameters() if p.requires_grad)
    assert torch.equal(fresh(ids).logits, model(ids).logits)


def test_checkpoint_errors(tmp_path):
    model = freeze_all(tiny_classifier())
    with pytest.raises(ValueError, match="nothing to save"):
        save_trainable(model, tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError):
        load_trainable(model, tmp_path / "missing.safetensors")
    other = torch.nn.Linear(3, 3)
    save_trainable(other, tmp_path / "linear.safetensors")
    with pytest.raises(KeyError, match="lacks"):
        load_trainable(model, tmp_path / "linear.safetensors")


def test_training_memory_matches_a_real_adamw_step():
    model = tiny_classifier()
    bitfit(model)
    memory = training_memory_bytes(model)
    count = count_parameters(model)
    assert memory["weights"] == 4 * count.total and memory["gradients"] == 4 * count.trainable
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    opt.step()
    state_bytes = sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items()
                      if k in ("exp_avg", "exp_avg_sq"))
    assert state_bytes == memory["adamw states"]


def test_copy_saved_tensors_requires_matching_keys(tmp_path):
    from course_lib.checkpoints import copy_saved_tensors, load_head_if_saved

    layer = torch.nn.Linear(2, 2)
    params = dict(layer.named_parameters())
    copy_saved_tensors(params, {"weight": torch.ones(2, 2), "bias": torch.zeros(2)})
    assert torch.equal(layer.weight, torch.ones(2, 2))
    with pytest.raises(ValueError, match="missing \\['bias'\\]"):
        copy_saved_tensors(params, {"weight": torch.ones(2, 2)})
    load_head_if_saved(layer, tmp_path / "absent.safetensors")  # no file: nothing happens
    assert torch.equal(layer.weight, torch.ones(2, 2))


def test_training_memory_counts_quantized_weights_as_stored():
    from course_lib.peft.quant import quantize_model

    model = tiny_classifier()
    fp32 = training_memory_bytes(model)["weights"]
    quantize_model(model)
    nf4 = training_memory_bytes(model)["weights"]
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert 0 < buffers < nf4 < fp32


def test_read_saved_config_lists_what_the_folder_holds_when_a_file_is_missing(tmp_path):
    import json

    import pytest

    from course_lib.checkpoints import read_saved_config

    (tmp_path / "cfg.json").write_text(json.dumps({"r": 8}))
    with pytest.raises(FileNotFoundError, match=r"weights.safetensors not found .*\['cfg.json'\]"):
        read_saved_config(tmp_path, "cfg.json", "weights.safetensors")
    (tmp_path / "weights.safetensors").write_bytes(b"")
    assert read_saved_config(tmp_path, "cfg.json", "weights.safetensors") == {"r": 8}
    with pytest.raises(FileNotFoundError, match="no such directory"):
        read_saved_config(tmp_path / "missing", "cfg.json", "weights.safetensors")
