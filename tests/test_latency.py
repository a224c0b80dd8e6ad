import time

import pytest
import torch

from course_lib.latency import measure_latency, model_latency


def test_measures_a_known_delay():
    stats = measure_latency(lambda: time.sleep(0.004), repeats=5, warmup=1)
    assert 4.0 <= stats.median_ms < 40.0
    assert stats.p10_ms <= stats.median_ms <= stats.p90_ms and stats.repeats == 5


def test_bigger_model_is_slower_and_mode_is_restored():
    small = torch.nn.Sequential(torch.nn.Linear(64, 64))
    big = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(8)])

    class Wrap(torch.nn.Module):
        def __init__(self, net, d):
            super().__init__()
            self.net, self.d = net, d

        def forward(self, input_ids, attention_mask=None):
            return self.net(torch.ones(256, self.d))

    fast, slow = Wrap(small, 64).train(), Wrap(big, 512)
    batch = {"input_ids": torch.zeros(1, 4), "labels": torch.zeros(1)}
    assert model_latency(slow, batch, repeats=5).median_ms > model_latency(fast, batch, repeats=5).median_ms
    assert fast.training  # put back in the mode it came in


def test_bad_arguments():
    with pytest.raises(ValueError, match="repeats >= 3"):
        measure_latency(lambda: None, repeats=1)


def test_compare_latency_orders_models():
    class Net(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.lin = torch.nn.Linear(width, width)

        def forward(self, input_ids, attention_mask=None):
            return self.lin(torch.ones(64, self.lin.in_features))

    from course_lib.latency import compare_latency

    threads_before = torch.get_num_threads()
    stats = compare_latency({"small": Net(32), "big": Net(1024)}, {"input_ids": torch.zeros(1, 2)}, repeats=5,
                            rounds=3)
    assert stats["big"].median_ms > stats["small"].median_ms and stats["big"].repeats == 5
    assert torch.get_num_threads() == threads_before
    with pytest.raises(ValueError, match="at least one"):
        compare_latency({}, {})
