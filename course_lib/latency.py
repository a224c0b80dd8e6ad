"""Inference latency: median wall time of repeated calls, after warm-up."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn


@dataclass(frozen=True)
class LatencyStats:
    """Summary of repeated timings, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int


def measure_latency(fn: Callable[[], Any], repeats: int = 50, warmup: int = 5, sync_cuda: bool = False) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then time ``repeats`` calls; report median and 10/90th percentiles."""
    if repeats < 3 or warmup < 0:
        raise ValueError(f"Need repeats >= 3 and warmup >= 0, got repeats={repeats}, warmup={warmup}.")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if sync_cuda:
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - start))
    deciles = statistics.quantiles(times, n=10)
    return LatencyStats(statistics.median(times), deciles[0], deciles[-1], repeats)


def model_latency(model: nn.Module, batch: dict[str, torch.Tensor], repeats: int = 50, warmup: int = 5) -> LatencyStats:
    """Latency of one no-grad forward pass of ``model`` on ``batch`` (eval mode, on the model's device)."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    was_training = model.training
    model.eval()

    @torch.no_grad()
    def forward() -> None:
        model(**batch)

    try:
        return measure_latency(forward, repeats, warmup, sync_cuda=device.type == "cuda")
    finally:
        model.train(was_training)


def compare_latency(models: dict[str, nn.Module], batch: dict[str, torch.Tensor], repeats: int = 20,
                    rounds: int = 7, warmup: int = 5, threads: int | None = 1) -> dict[str, LatencyStats]:
    """Latency of several models, timed in interleaved rounds; each keeps its fastest round's median.

    Interleaving makes machine noise hit every model alike, the fastest round is the one least disturbed,
    and one CPU thread (``threads=1``; None keeps torch's setting) avoids scheduling jitter between threads.
    """
    if not models:
        raise ValueError("Give at least one model to time.")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}.")
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        per_round: dict[str, list[LatencyStats]] = {name: [] for name in models}
        for r in range(rounds):
            for name, model in models.items():
                per_round[name].append(model_latency(model, batch, repeats, warmup if r == 0 else 1))
    finally:
        torch.set_num_threads(saved_threads)
    return {name: min(stats, key=lambda s: s.median_ms) for name, stats in per_round.items()}
