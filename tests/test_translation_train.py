"""The translation training loop: it learns, logs, and one seed gives one run."""

import pytest
import torch

from course_lib.data.translation import (TRANSLATION_SIZES, TranslationCollator, load_translation,
                                         train_translation_tokenizers, translation_model_config)
from course_lib.models import Seq2SeqTransformer
from course_lib.train import TrainConfig
from course_lib.translation_train import (TranslationResult, run_translation, train_translation_model,
                                          translation_train_config)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup():
    data = load_translation(n_train=96, n_val=16, n_test=12, seed=1)
    src_tok, tgt_tok = train_translation_tokenizers(data["train"])
    sizes = TRANSLATION_SIZES["ci"]
    return data, src_tok, tgt_tok, sizes


def small_config(sizes, src_tok, tgt_tok, **kw):
    return translation_model_config(sizes, src_tok, tgt_tok, d_model=16, n_heads=2, d_ff=32, dropout=0.1, **kw)


def test_train_config_from_sizes():
    sizes = TRANSLATION_SIZES["ci"]
    config = translation_train_config(sizes, seed=3, steps=7)
    assert (config.steps, config.seed, config.lr, config.batch_size) == (7, 3, sizes.lr, sizes.batch_size)


def test_loop_learns_and_logs(setup):
    data, src_tok, tgt_tok, sizes = setup
    torch.manual_seed(0)
    model = Seq2SeqTransformer(small_config(sizes, src_tok, tgt_tok))
    collate = TranslationCollator(src_tok, tgt_tok, max_len=sizes.max_len)
    history = train_translation_model(model, data["train"], collate, TrainConfig(steps=24, batch_size=16, lr=3e-3,
                                      eval_every=8), eval_data=data["validation"], device=CPU, show_progress=False)
    assert [r["step"] for r in history.records] == [8, 16, 24]
    assert set(history.records[0]) == {"step", "train_loss", "lr", "tokens_per_s", "wall_s", "val_loss"}
    assert history.last("val_loss") < history.records[0]["val_loss"] and not model.training
    with pytest.raises(ValueError, match="empty"):
        train_translation_model(model, [], collate, TrainConfig(steps=1), device=CPU, show_progress=False)


@pytest.mark.parametrize("variant", [dict(architecture="base"), dict(architecture="p", layer_teacher_forcing=0.5)])
def test_run_is_deterministic_given_a_seed(setup, variant):
    data, src_tok, tgt_tok, sizes = setup
    config = small_config(sizes, src_tok, tgt_tok, **variant)

    def run(seed):
        train = TrainConfig(steps=12, batch_size=16, lr=3e-3, eval_every=6, seed=seed)
        return run_translation(config, data, src_tok, tgt_tok, train, decode_max_len=6, device=CPU,
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

    train = TrainConfig(steps=1, batch_size=8, eval_every=1, seed=5)
    for variant in (dict(architecture="base"), dict(architecture="p"), dict(architecture="p", layer_teacher_forcing=0.5)):
        run_translation(small_config(sizes, src_tok, tgt_tok, **variant), data, src_tok, tgt_tok, train, build=build,
                        decode_max_len=2, device=CPU, show_progress=False, keep_model=False)
    assert all(torch.equal(initial[0][k], other[k]) for other in initial[1:] for k in initial[0])


def test_run_needs_three_splits(setup):
    data, src_tok, tgt_tok, sizes = setup
    with pytest.raises(ValueError, match="validation"):
        run_translation(small_config(sizes, src_tok, tgt_tok), {"train": data["train"], "test": data["test"]}, src_tok,
                        tgt_tok, TrainConfig(steps=1), device=CPU, show_progress=False)


def fake_result(name, seed, bleu, loss):
    from course_lib.train import History

    return TranslationResult(name=name, seed=seed, params=10, steps=5, train_seconds=1.0, val_loss=loss,
                             test_loss=loss, bleu=bleu, bleu_100=100 * bleu, precisions=[bleu] * 4,
                             brevity_penalty=1.0, history=History())


def test_summarize_runs_gives_mean_and_std_per_model_in_order():
    from course_lib.translation_train import summarize_runs

    runs = [fake_result("base", s, b, 2.0 + s) for s, b in enumerate((0.2, 0.3, 0.4))] + [fake_result("P", 0, 0.5, 1.0)]
    table = summarize_runs(runs)
    assert list(table.index) == ["base", "P"]
    assert table.loc["base", "BLEU-4"] == "0.300 ± 0.100" and table.loc["base", "seeds"] == 3
    assert table.loc["base", "test loss"] == "3.000 ± 1.000" and table.loc["base", "sacreBLEU"] == "30.0 ± 10.0"
    assert table.loc["P", "BLEU-4"] == "0.500"  # one seed: no std
    with pytest.raises(ValueError, match="at least one"):
        summarize_runs([])
