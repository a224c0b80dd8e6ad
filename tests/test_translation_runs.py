"""Translation runs: configs from the profile's sizes, the course's training loop, and one seed gives one run."""

import importlib

import pytest
import torch

from course_lib.profiles import get_profile
from course_lib.train import History, train
from course_lib.translation import (ADAM_BETAS, Seq2SeqTransformer, TranslationCollator, TranslationResult,
                                    load_translation, run_translation, summarize_runs, train_translation_tokenizers,
                                    translation_model_config, translation_train_config)

CPU = torch.device("cpu")
TRAIN_MODULE = importlib.import_module("course_lib.train")  # the attribute course_lib.train is the function


@pytest.fixture(scope="module")
def setup():
    data = load_translation(n_train=96, n_val=16, n_test=12, seed=1)
    src_tok, tgt_tok = train_translation_tokenizers(data["train"])
    sizes = get_profile("ci").translation
    return data, src_tok, tgt_tok, sizes


def small_config(sizes, src_tok, tgt_tok, **kw):
    return translation_model_config(sizes, src_tok, tgt_tok, d_model=16, n_heads=2, d_ff=32, dropout=0.1, **kw)


def test_train_config_from_sizes():
    sizes = get_profile("ci").translation
    config = translation_train_config(sizes, seed=3, steps=7)
    assert (config.steps, config.seed, config.lr, config.batch_size) == (7, 3, sizes.lr, sizes.batch_size)
    assert (config.warmup_ratio, config.eval_every) == (sizes.warmup_ratio, sizes.eval_every)


@pytest.mark.parametrize("name", ["ci", "cpu", "gpu"])
def test_train_config_has_the_transformer_betas_and_the_profile_precision(name):
    profile = get_profile(name)
    config = translation_train_config(profile.translation, seed=1, precision=profile.precision)
    assert config.betas == ADAM_BETAS == (0.9, 0.98)
    assert config.precision == profile.precision
    assert translation_train_config(profile.translation).precision == "fp32"  # the default
    assert get_profile("gpu").precision == "bf16"


def test_the_course_loop_learns_translation_and_logs(setup):
    data, src_tok, tgt_tok, sizes = setup
    torch.manual_seed(0)
    model = Seq2SeqTransformer(small_config(sizes, src_tok, tgt_tok))
    collate = TranslationCollator(src_tok, tgt_tok, max_len=sizes.max_len)
    config = translation_train_config(sizes, steps=24, batch_size=16, lr=3e-3, eval_every=8)
    history = train(model, data["train"], collate, config, eval_data=data["validation"], device=CPU,
                    show_progress=False)
    assert [r["step"] for r in history.records] == [8, 16, 24]
    assert set(history.records[0]) == {"step", "train_loss", "lr", "tokens_per_s", "wall_s", "val_loss"}
    assert history.last("val_loss") < history.records[0]["val_loss"] and not model.training
    assert all(r["tokens_per_s"] > 0 for r in history.records)  # counted from the labels (no input_ids here)
    with pytest.raises(ValueError, match="empty"):
        train(model, [], collate, config, device=CPU, show_progress=False)


def test_run_trains_with_the_configs_betas(setup, monkeypatch):
    data, src_tok, tgt_tok, sizes = setup
    seen = []
    make_optimizer = TRAIN_MODULE.make_optimizer

    def spy(model, lr, weight_decay, betas=(0.9, 0.999)):
        seen.append(tuple(betas))
        return make_optimizer(model, lr, weight_decay, betas)

    monkeypatch.setattr(TRAIN_MODULE, "make_optimizer", spy)
    config = translation_train_config(sizes, steps=1, batch_size=8, eval_every=1)
    run_translation(small_config(sizes, src_tok, tgt_tok), data, src_tok, tgt_tok, config, decode_max_len=2,
                    device=CPU, show_progress=False, keep_model=False)
    assert seen == [(0.9, 0.98)]


def test_a_run_uses_overridden_profile_sizes(setup):
    data, src_tok, tgt_tok, _ = setup
    profile = get_profile("ci", translation={"steps": 4, "eval_every": 2, "batch_size": 8, "d_model": 16,
                                             "n_heads": 2, "d_ff": 24, "n_layers": 1})
    sizes = profile.translation
    result = run_translation(translation_model_config(sizes, src_tok, tgt_tok), data, src_tok, tgt_tok,
                             translation_train_config(sizes, precision=profile.precision), decode_max_len=3,
                             device=CPU, show_progress=False)
    assert result.steps == 4 and [r["step"] for r in result.history.records] == [2, 4]
    model = result.model
    assert (model.config.d_model, model.config.d_ff, len(model.encoder_layers), len(model.decoder_layers)) == \
        (16, 24, 1, 1)
    assert get_profile("ci").translation.steps == 40  # the override changed only this profile object


@pytest.mark.parametrize("variant", [dict(architecture="base"), dict(architecture="p", layer_teacher_forcing=0.5)])
def test_run_is_deterministic_given_a_seed(setup, variant):
    data, src_tok, tgt_tok, sizes = setup
    config = small_config(sizes, src_tok, tgt_tok, **variant)

    def run(seed):
        train_config = translation_train_config(sizes, seed=seed, steps=12, batch_size=16, lr=3e-3, eval_every=6)
        return run_translation(config, data, src_tok, tgt_tok, train_config, decode_max_len=6, device=CPU,
                               show_progress=False)

    a, b, c = run(0), run(0), run(1)
    assert isinstance(a, TranslationResult) and a.params == sum(p.numel() for p in a.model.parameters())
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("wall_s", "tokens_per_s")} for r in h.records]
    assert strip(a.history) == strip(b.history)  # dropout, teacher forcing and data order are all seeded
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert (a.test_loss, a.bleu, a.examples) == (b.test_loss, b.bleu, b.examples)
    assert strip(a.history) != strip(c.history)
    row = a.row()
    assert row["BLEU-4"] == round(a.bleu, 4) and row["sacreBLEU"] == round(a.bleu_100, 2) and row["seed"] == 0


def test_same_seed_gives_every_variant_the_same_initial_weights(setup):
    data, src_tok, tgt_tok, sizes = setup
    initial = []

    def build(config):
        model = Seq2SeqTransformer(config)
        initial.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    train_config = translation_train_config(sizes, seed=5, steps=1, batch_size=8, eval_every=1)
    variants = (dict(architecture="base"), dict(architecture="p"), dict(architecture="p", layer_teacher_forcing=0.5))
    for variant in variants:
        run_translation(small_config(sizes, src_tok, tgt_tok, **variant), data, src_tok, tgt_tok, train_config,
                        build=build, decode_max_len=2, device=CPU, show_progress=False, keep_model=False)
    assert all(torch.equal(initial[0][k], other[k]) for other in initial[1:] for k in initial[0])


def test_run_needs_three_splits(setup):
    data, src_tok, tgt_tok, sizes = setup
    with pytest.raises(ValueError, match="validation"):
        run_translation(small_config(sizes, src_tok, tgt_tok), {"train": data["train"], "test": data["test"]}, src_tok,
                        tgt_tok, translation_train_config(sizes, steps=1), device=CPU, show_progress=False)


def fake_result(name, seed, bleu, loss):
    return TranslationResult(name=name, seed=seed, params=10, steps=5, train_seconds=1.0, val_loss=loss,
                             test_loss=loss, bleu=bleu, bleu_100=100 * bleu, precisions=[bleu] * 4,
                             brevity_penalty=1.0, history=History())


def test_summarize_runs_gives_mean_and_std_per_model_in_order():
    runs = [fake_result("base", s, b, 2.0 + s) for s, b in enumerate((0.2, 0.3, 0.4))] + [fake_result("P", 0, 0.5, 1.0)]
    table = summarize_runs(runs)
    assert list(table.index) == ["base", "P"]
    assert table.loc["base", "BLEU-4"] == "0.300 ± 0.100" and table.loc["base", "seeds"] == 3
    assert table.loc["base", "test loss"] == "3.000 ± 1.000" and table.loc["base", "sacreBLEU"] == "30.0 ± 10.0"
    assert table.loc["P", "BLEU-4"] == "0.500"  # one seed: no std
    with pytest.raises(ValueError, match="at least one"):
        summarize_runs([])
