import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from course_lib.train import History, TrainConfig, evaluate, lr_multiplier, make_optimizer, predict, train


class BagClassifier(nn.Module):
    """Mean of token embeddings -> linear: enough to learn 'is token 3 present'."""

    def __init__(self, vocab=8, classes=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.out = nn.Linear(16, classes)

    def forward(self, input_ids, attention_mask, labels=None):
        logits = self.out(self.embed(input_ids).mean(1))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SimpleNamespace(loss=loss, logits=logits)


def make_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(4, 8, (5,), generator=g)
        label = int(torch.rand(1, generator=g) < 0.5)
        if label:
            ids[int(torch.randint(0, 5, (1,), generator=g))] = 3
        rows.append({"ids": ids, "label": label})
    return rows


def collate(rows):
    ids = torch.stack([r["ids"] for r in rows])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": torch.tensor([r["label"] for r in rows])}


def test_training_learns_and_logs():
    torch.manual_seed(0)
    model = BagClassifier()
    data = make_data()
    before = evaluate(model, data, collate)
    hist = train(model, data, collate, TrainConfig(steps=120, batch_size=16, lr=5e-2, eval_every=40),
                 eval_data=data, device=torch.device("cpu"), show_progress=False)
    after = evaluate(model, data, collate)
    assert after["loss"] < before["loss"] and after["accuracy"] > 0.9
    assert [r["step"] for r in hist.records] == [40, 80, 120]
    for key in ("train_loss", "val_loss", "val_accuracy", "tokens_per_s", "wall_s", "lr"):
        assert key in hist.records[-1]
    assert hist.last("val_accuracy") == pytest.approx(after["accuracy"])


def test_training_is_deterministic():
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = BagClassifier()
        train(model, make_data(), collate, TrainConfig(steps=10, batch_size=8, eval_every=5),
              device=torch.device("cpu"), show_progress=False)
        results.append(model.out.weight.detach().clone())
    assert torch.equal(*results)


def test_frozen_parameters_do_not_move():
    model = BagClassifier()
    model.embed.weight.requires_grad_(False)
    frozen = model.embed.weight.clone()
    train(model, make_data(), collate, TrainConfig(steps=5, batch_size=8, eval_every=5),
          device=torch.device("cpu"), show_progress=False)
    assert torch.equal(frozen, model.embed.weight)


def test_schedule_warmup_then_decay():
    values = [lr_multiplier(s, 100, 10, 0.1) for s in range(101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[100] == pytest.approx(0.1)


def test_optimizer_groups_and_errors():
    model = BagClassifier()
    opt = make_optimizer(model, 1e-3, 0.1)
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 0.1]
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer(model, 1e-3, 0.1)
    with pytest.raises(ValueError):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="warmup_ratio"):
        TrainConfig(warmup_ratio=1.5)
    with pytest.raises(ValueError, match="empty"):
        train(BagClassifier(), [], collate, TrainConfig(steps=1), show_progress=False)


def test_history_round_trip_and_plot():
    h = History()
    h.log(step=1, train_loss=2.0)
    h.log(step=2, train_loss=1.0, val_loss=1.5)
    assert h.series("val_loss") == ([2], [1.5])
    again = History.from_dict(h.to_dict())
    assert again.records == h.records and len(again) == 2
    fig = h.plot()
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(KeyError, match="logged keys"):
        h.series("val_bleu")


def test_predict_returns_logits_in_order():
    torch.manual_seed(0)
    model = BagClassifier()
    data = make_data(10)
    logits = predict(model, data, collate, batch_size=3)
    assert logits.shape == (10, 2)
    with torch.no_grad():
        expected = model(**collate(data)).logits
    assert torch.allclose(logits, expected)


def test_bf16_autocast_trains_and_fp32_is_the_default(data):
    from course_lib.train import mixed_precision
    from tiny_models import tiny_classifier

    rows, collate = data
    config = TrainConfig(steps=3, batch_size=8, lr=1e-2, eval_every=3)
    fp32 = train(tiny_classifier(), rows, collate, config, device=torch.device("cpu"), show_progress=False)
    bf16 = train(tiny_classifier(), rows, collate, dataclasses.replace(config, precision="bf16"),
                 device=torch.device("cpu"), show_progress=False)
    assert torch.isfinite(torch.tensor(bf16.last("train_loss"))) and bf16.last("train_loss") != fp32.last("train_loss")
    with mixed_precision(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with mixed_precision(torch.device("cpu"), "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        mixed_precision(torch.device("cpu"), "fp8")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp8")


def test_every_training_path_takes_the_profiles_precision(data, monkeypatch):
    """gpu profile (bf16): pretraining, fine-tuning and the run helper all enter bf16 autocast; ci stays fp32."""
    import sys

    import course_lib.train  # noqa: F401  (the package exports a function of the same name)
    train_module = sys.modules["course_lib.train"]
    from course_lib.finetune import finetune_config
    from course_lib.pretrain import pretrain_config
    from course_lib.profiles import get_profile
    from tiny_models import tiny_classifier

    gpu, ci = get_profile("gpu"), get_profile("ci")
    assert gpu.precision == "bf16" and ci.precision == "fp32"
    assert finetune_config(gpu).precision == pretrain_config(gpu).precision == "bf16"
    assert finetune_config(ci).precision == pretrain_config(ci).precision == "fp32"
    entered = []
    real = train_module.mixed_precision
    monkeypatch.setattr(train_module, "mixed_precision",
                        lambda device, precision="fp32": entered.append(precision) or real(device, precision))
    rows, collate = data
    for profile in (gpu, ci):
        config = finetune_config(profile, steps=2, batch_size=8, eval_every=2)
        train(tiny_classifier(), rows, collate, config, device=torch.device("cpu"), show_progress=False)
    assert entered == ["bf16", "fp32"]


def test_adam_betas_come_from_the_config(data):
    rows, collate = data
    from tiny_models import tiny_classifier

    model = tiny_classifier()
    from course_lib.train import make_optimizer

    assert make_optimizer(model, 1e-3, 0.0, (0.9, 0.98)).param_groups[0]["betas"] == (0.9, 0.98)
    with pytest.raises(ValueError, match="betas"):
        TrainConfig(betas=(0.9, 1.5))


def test_endless_batches_starts_a_new_epoch_and_rejects_empty_data():
    from torch.utils.data import DataLoader

    from course_lib.train import endless_batches

    batches = endless_batches(DataLoader(list(range(5)), batch_size=2))
    assert [next(batches).tolist() for _ in range(4)] == [[0, 1], [2, 3], [4], [0, 1]]
    with pytest.raises(ValueError, match="no batches"):
        next(endless_batches(DataLoader([], batch_size=2)))


def test_bf16_falls_back_to_fp32_with_a_warning_on_a_gpu_without_bf16(monkeypatch):
    import contextlib

    from course_lib.train import mixed_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "an old GPU")
    with pytest.warns(UserWarning, match="an old GPU has no bf16 support: training in fp32"):
        context = mixed_precision(torch.device("cuda"), "bf16")
    assert isinstance(context, contextlib.nullcontext)
    assert isinstance(mixed_precision(torch.device("cuda"), "fp32"), contextlib.nullcontext)


class Pulled(nn.Module):
    """A module whose regularization_loss pulls ``anchor`` towards 3.0 (the task loss never touches it)."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(4))

    def regularization_loss(self):
        return (self.anchor - 3.0).pow(2).sum()


def test_a_module_regularizer_is_minimised_and_the_history_keeps_the_task_loss():
    torch.manual_seed(0)
    model = BagClassifier()
    model.pull = Pulled()
    plain = BagClassifier()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("pull.")})
    config = TrainConfig(steps=30, batch_size=8, lr=0.1, eval_every=30, weight_decay=0.0, grad_clip=0.0)
    hist = train(model, make_data(), collate, config, device=torch.device("cpu"), show_progress=False)
    plain_hist = train(plain, make_data(), collate, config, device=torch.device("cpu"), show_progress=False)
    assert (model.pull.anchor > 1.0).all()  # moved from 0 towards 3 by the regularizer alone
    assert hist.last("train_loss") == pytest.approx(plain_hist.last("train_loss"))  # recorded: the task loss
