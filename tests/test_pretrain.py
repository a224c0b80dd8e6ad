"""Pretraining and the cache, on a profile shrunk further so the whole file runs in seconds."""

import pytest
import torch

from course_lib.finetune import finetune_classifier, finetune_config
from course_lib.data import load_task
from course_lib.models import GPT, EncoderForMaskedLM, EncoderForSequenceClassification
from course_lib.pretrain import (cache_dir, course_tokenizer, encoder_classifier, load_pretrained, model_config)
from course_lib.profiles import get_profile

TINY = dict(corpus_sentences=400, pretrain_steps=30, pretrain_batch=16, d_model=32, d_ff=64, n_layers=1,
            n_heads=2, finetune_steps=10, eval_every=5, task_train=32, task_val=32, task_test=32)


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    return get_profile("ci", **TINY)


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("COURSE_CACHE")
    assert "peft-from-scratch" in str(cache_dir())


@pytest.mark.parametrize("name, cls", [("gpt", GPT), ("encoder", EncoderForMaskedLM)])
def test_pretrain_learns_then_loads_identically_from_cache(tiny, name, cls):
    first = load_pretrained(name, tiny, device=torch.device("cpu"), show_progress=False)
    assert isinstance(first.model, cls) and not first.from_cache
    losses = [r["val_loss"] for r in first.history.records]
    assert losses[-1] < losses[0]  # pretraining reduced the held-out loss
    second = load_pretrained(name, tiny, show_progress=False)
    assert second.from_cache and second.path == first.path
    assert second.history.records == first.history.records
    for (n1, p1), (n2, p2) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_pretraining_is_deterministic(tiny):
    a = load_pretrained("gpt", tiny, show_progress=False)
    b = load_pretrained("gpt", tiny, force=True, show_progress=False)
    assert not b.from_cache
    assert torch.equal(a.model.lm_head.weight, b.model.lm_head.weight)


FROM_NOTHING = """
import hashlib
from safetensors.torch import load_file
from course_lib.pretrain import load_pretrained
from course_lib.profiles import get_profile
base = load_pretrained("encoder", get_profile("ci", **{tiny!r}), show_progress=False)
weights = load_file(str(base.path / "model.safetensors"))
digest = hashlib.sha256(b"".join(weights[k].numpy().tobytes() for k in sorted(weights)))
print(digest.hexdigest(), hashlib.sha256((base.path / "tokenizer" / "tokenizer.json").read_bytes()).hexdigest())
"""


def test_two_empty_caches_give_the_same_tokenizer_and_weights(tmp_path):
    """From nothing, twice, in two processes with different hash seeds: the same tokenizer file and weights."""
    import os
    import subprocess
    import sys

    outputs = []
    for run, hash_seed in enumerate(("1", "2")):
        env = dict(os.environ, COURSE_CACHE=str(tmp_path / f"cache{run}"), PYTHONHASHSEED=hash_seed,
                   OMP_NUM_THREADS="1")
        done = subprocess.run([sys.executable, "-c", FROM_NOTHING.format(tiny=TINY)], env=env, capture_output=True,
                              text=True, check=True)
        outputs.append(done.stdout.split())
    assert outputs[0] == outputs[1] and len(outputs[0]) == 2


def test_tokenizer_is_cached_and_covers_every_word(tiny):
    tok = course_tokenizer(tiny)
    again = course_tokenizer(tiny)
    assert tok.get_vocab() == again.get_vocab()
    from course_lib.data import LEXICON
    for word in sorted(LEXICON.content_words()):
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1, word


def test_classifier_copies_the_pretrained_encoder(tiny):
    base = load_pretrained("encoder", tiny, show_progress=False)
    clf = encoder_classifier(4, base)
    assert isinstance(clf, EncoderForSequenceClassification)
    w = clf.encoder.embeddings.tok_embed.weight
    assert torch.equal(w, base.model.encoder.embeddings.tok_embed.weight)
    assert w.data_ptr() != base.model.encoder.embeddings.tok_embed.weight.data_ptr()  # a copy, not shared
    rand = encoder_classifier(4, None, tiny)
    assert not torch.equal(rand.encoder.embeddings.tok_embed.weight, w)
    with pytest.raises(ValueError, match="'encoder' base"):
        encoder_classifier(2, load_pretrained("gpt", tiny, show_progress=False))
    with pytest.raises(ValueError, match="needs profile="):  # no silent read of $COURSE_PROFILE deep inside
        encoder_classifier(2, None)


def test_finetune_reports_a_row(tiny):
    base = load_pretrained("encoder", tiny, show_progress=False)
    splits = load_task("sentiment", tiny.task_train, tiny.task_val, tiny.task_test)
    result = finetune_classifier(encoder_classifier(2, base), base.tokenizer, splits, finetune_config(tiny),
                                 tiny.max_len, name="full", show_progress=False)
    row = result.row()
    assert row["method"] == "full" and row["trainable %"] == 100.0
    assert 0.0 <= row["test acc"] <= 1.0 and row["checkpoint bytes"] > 4 * row["trainable params"]
    assert len(result.history) == 2
    assert finetune_config(tiny, lr=1e-2).lr == 1e-2
    with pytest.raises(ValueError, match="missing"):
        finetune_classifier(encoder_classifier(2, base), base.tokenizer, {"train": splits["train"]}, finetune_config(tiny),
                            tiny.max_len)


def test_unknown_base_name(tiny):
    with pytest.raises(ValueError, match="available: gpt, encoder"):
        load_pretrained("t5", tiny)
    with pytest.raises(ValueError, match="available"):
        model_config("bart", tiny, None)


def test_pretraining_loss_measures_forgetting(tiny):
    from course_lib.pretrain import pretraining_loss

    base = load_pretrained("encoder", tiny, show_progress=False)
    before = pretraining_loss(base, profile=tiny)
    assert before == pretraining_loss(base, base.model.encoder, profile=tiny)  # same encoder, same seeded masks
    assert before == pytest.approx(base.history.last("val_loss"), rel=0.2)
    damaged = encoder_classifier(2, base).encoder
    with torch.no_grad():
        for p in damaged.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    assert pretraining_loss(base, damaged, profile=tiny) > before + 0.5
    with pytest.raises(ValueError, match="encoder"):
        pretraining_loss(load_pretrained("gpt", tiny, show_progress=False), damaged, profile=tiny)


CONCURRENT = """
from course_lib.pretrain import load_pretrained
from course_lib.profiles import get_profile
print(load_pretrained("gpt", get_profile("ci", **{tiny!r}), show_progress=False).from_cache)
"""


def test_concurrent_processes_pretrain_once_and_share_the_cache(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, COURSE_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    runs = [subprocess.Popen([sys.executable, "-c", CONCURRENT.format(tiny=TINY)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [run.communicate() for run in runs]
    assert all(run.returncode == 0 for run in runs), [err[-400:] for _, err in results]
    assert sorted(out.strip() for out, _ in results) == ["False", "True", "True"]  # one trained, two reused
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if ".tmp" in p.name]
    assert leftovers == []
