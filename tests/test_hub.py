import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from course_lib.data.tokenizer import save_tokenizer, train_tokenizer
from course_lib.hub import load_hf_causal_lm, load_hf_classifier, load_minilm, minilm_path
from course_lib.params import count_parameters


def test_packaged_minilm_loads_offline_as_classifier():
    assert (minilm_path() / "model.safetensors").is_file()
    model, tok = load_minilm(num_labels=3, label_names=["a", "b", "c"])
    assert model.config.num_labels == 3 and model.config.id2label[2] == "c"
    assert 22_000_000 < count_parameters(model).total < 23_500_000
    batch = tok(["a quiet test sentence", "another one"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 3)


def test_causal_lm_loader_reads_a_local_directory(tmp_path):
    tok = train_tokenizer(["tom said the soup was superb ."] * 20, vocab_size=60)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=16, n_embd=16, n_layer=1, n_head=2))
    model.save_pretrained(tmp_path)
    save_tokenizer(tok, tmp_path)
    loaded, loaded_tok = load_hf_causal_lm(tmp_path)
    ids = loaded_tok("tom said", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model.eval()(ids).logits)
    assert loaded_tok.pad_token is not None


def test_offline_hub_name_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        load_hf_classifier("bert-base-uncased", num_labels=2)
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        load_hf_causal_lm("gpt2")


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_hf_classifier(tmp_path, num_labels=2)
    with pytest.raises(ValueError, match="num_labels"):
        load_minilm(num_labels=1)
    with pytest.raises(ValueError, match="label_names"):
        load_minilm(num_labels=2, label_names=["x"])
