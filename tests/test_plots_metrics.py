import math

import pytest
import torch

from course_lib.metrics import accuracy, bootstrap_ratio, perplexity, subset_accuracy, text_nll, text_perplexity
from course_lib.plots import (plot_bars, plot_curves, plot_grouped_bars, plot_histories, plot_param_counts,
                              plot_storage_vs_tasks, plot_tradeoff)
from course_lib.train import History


def test_bar_plots_return_figures_with_one_bar_per_value():
    fig = plot_param_counts({"full": 1_000_000, "lora": 2_000}, log=True)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 and ax.get_yscale() == "log"
    fig = plot_bars({"a": 0.5, "b": 0.9, "c": 0.7}, ylabel="accuracy")
    assert [p.get_height() for p in fig.axes[0].patches] == [0.5, 0.9, 0.7]


def test_curves_and_histories():
    fig = plot_curves({"run": ([1, 2, 3], [3.0, 2.0, 1.0])}, logy=True)
    assert fig.axes[0].lines[0].get_ydata().tolist() == [3.0, 2.0, 1.0]
    h = History([{"step": 1, "val_loss": 2.0}, {"step": 2, "val_loss": 1.0}])
    fig = plot_histories({"a": h, "b": h}, key="val_loss")
    assert len(fig.axes[0].lines) == 2


def test_storage_plot_lines_are_linear_in_tasks():
    fig = plot_storage_vs_tasks(1024 ** 3, {"adapter": 1024 ** 2}, max_tasks=10)
    full, peft = fig.axes[0].lines
    assert full.get_ydata()[-1] == pytest.approx(10.0)
    assert peft.get_ydata()[-1] == pytest.approx(1 + 10 / 1024)
    assert fig.axes[0].get_ylabel() == "storage (GB)"
    small = plot_storage_vs_tasks(1024 ** 2, {}, max_tasks=10)
    assert small.axes[0].get_ylabel() == "storage (MB)" and small.axes[0].lines[0].get_ydata()[-1] == 10
    with pytest.raises(ValueError):
        plot_storage_vs_tasks(1.0, {}, max_tasks=0)


def test_empty_inputs_fail_clearly():
    with pytest.raises(ValueError, match="empty"):
        plot_bars({})
    with pytest.raises(ValueError, match="empty"):
        plot_curves({})


def test_metrics():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="rows"):
        accuracy(logits, torch.tensor([0]))
    assert perplexity(math.log(7)) == pytest.approx(7)
    with pytest.raises(ValueError):
        perplexity(-1.0)


def test_grouped_bars_one_bar_per_cell():
    fig = plot_grouped_bars({"sentiment": {"random": 0.8, "pretrained": 0.95}, "topic": {"random": 0.6, "pretrained": 1.0}})
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [0.8, 0.6, 0.95, 1.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sentiment", "topic"]
    with pytest.raises(ValueError, match="empty"):
        plot_grouped_bars({})


def test_subset_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    assert subset_accuracy(logits, labels, torch.tensor([True, False, False])) == 1.0
    assert subset_accuracy(logits, labels, torch.tensor([False, True, True])) == 0.0
    with pytest.raises(ValueError, match="no rows"):
        subset_accuracy(logits, labels, torch.tensor([False, False, False]))


def test_subspace_similarity():
    from course_lib.metrics import subspace_similarity

    torch.manual_seed(0)
    A = torch.randn(4, 32)
    same = subspace_similarity(A, A)
    assert same.shape == (4, 4) and torch.allclose(same.diagonal(), torch.ones(4), atol=1e-5)
    wider = torch.cat([A, torch.randn(12, 32)])            # contains A's row space
    assert torch.allclose(subspace_similarity(A, wider)[:, -1], torch.ones(4), atol=1e-5)
    Q = torch.linalg.qr(torch.randn(32, 32)).Q
    orthogonal = subspace_similarity(Q[:4].contiguous(), Q[4:8].contiguous())
    assert orthogonal.max() < 1e-6
    sim = subspace_similarity(torch.randn(8, 32), torch.randn(16, 32))
    assert (sim >= 0).all() and (sim <= 1 + 1e-6).all()
    with pytest.raises(ValueError, match="same d"):
        subspace_similarity(torch.randn(2, 5), torch.randn(2, 6))


def test_tradeoff_plot_labels_every_point_and_colours_by_group():
    points = {"full": (1e6, 0.9), "lora": (1e4, 0.88), "prompt": (1e3, 0.6)}
    fig = plot_tradeoff(points, groups={"full": "full", "lora": "reparam", "prompt": "prompt"},
                        errors={"lora": 0.02})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == list(points)
    assert ax.get_xscale() == "log"
    assert len(ax.get_legend().get_texts()) == 3
    with pytest.raises(ValueError, match="do not exist"):
        plot_tradeoff(points, groups={"qlora": "quantized"})



class _PairTokenizer:
    """A stand-in Hugging Face tokenizer: one id per character, right padding with 0."""

    def __call__(self, texts, return_tensors="pt", padding=True, truncation=True, max_length=64):
        from transformers import BatchEncoding

        rows = [[1 + ord(ch) % 40 for ch in text][:max_length] for text in texts]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return BatchEncoding({"input_ids": ids, "attention_mask": mask})


def test_text_nll_is_per_text_padding_free_and_matches_the_lm_loss():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2)).eval()
    tok = _PairTokenizer()
    texts = ["a short one", "a much longer sentence here", "mid length"]
    together = text_nll(lm, tok, texts, batch_size=3)
    alone = torch.cat([text_nll(lm, tok, [t]) for t in texts])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-5)  # padding never counts
    assert together[:, 1].tolist() == [len(t) - 1 for t in texts]
    ids = tok([texts[1]])["input_ids"]
    mean_loss = float(lm(input_ids=ids, labels=ids).loss)  # HF's own shifted loss
    assert math.isclose(text_perplexity(alone[1:2]), math.exp(mean_loss), rel_tol=1e-4)
    low, high = bootstrap_ratio(together, together)
    assert low == high == 1.0
    with pytest.raises(ValueError, match="paired texts"):
        bootstrap_ratio(together, together[:2])
    with pytest.raises(ValueError, match="at least one text"):
        text_nll(lm, tok, [])
