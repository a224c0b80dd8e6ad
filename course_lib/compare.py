"""Every fine-tuning method of the course on one task with one budget, measured the same way (the capstone).

A :class:`Method` says how to turn a fresh classifier into a model ready to train (the same library calls the
method notebooks use), its learning rate, and optionally how to finish it for deployment (fold the prefix MLP,
merge LoRA). :func:`compare_methods` trains each one with :func:`~course_lib.finetune.run_finetune` and
measures trainable parameters, checkpoint bytes, peak training memory, time per step, inference latency and
test accuracy; :func:`comparison_table` turns the runs into one table.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import pandas as pd
import torch
from torch import nn

from . import recipes
from .data.collate import ClassificationCollator
from .finetune import FinetuneResult, run_finetune
from .latency import compare_latency
from .memory import PeakMemory
from .params import count_parameters, trainable_bytes
from .peft.adapters import save_adapter
from .peft.freezing import bitfit, head_only
from .peft.lora import merge_and_unload
from .pretrain import PretrainedBase
from .profiles import Profile, get_device

FAMILIES = ("full", "selective", "adapter", "reparametrization", "soft prompt", "quantized")
Prepare = Callable[[nn.Module, Optional[Path]], nn.Module]


@dataclass(frozen=True)
class Method:
    """One method of the comparison.

    ``prepare(model, sources)`` receives a fresh classifier (and the directory of trained source adapters, for
    AdapterFusion) and returns the model to train with exactly the method's parameters trainable.
    ``finish(model)`` (optional) turns the trained model into the one to deploy; ``finish_in_place`` says whether
    it only folds training-time extras (the checkpoint is measured after it) or builds a separate inference
    model such as merged LoRA (the checkpoint is measured before it, on the trainable modules).
    """

    name: str
    family: str
    prepare: Prepare
    lr: Optional[float] = None  # None: the profile's PEFT rate (profile.peft_lr)
    finish: Optional[Callable[[nn.Module], nn.Module]] = None
    finish_in_place: bool = False
    needs_sources: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"Method {self.name!r}: family must be one of {FAMILIES}, got {self.family!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"Method {self.name!r}: lr must be > 0, got {self.lr}")


def _ignoring_sources(prepare: recipes.Prepare) -> Prepare:
    """A one-argument recipe as a Method.prepare (which also receives the source-adapter directory)."""
    def method_prepare(model: nn.Module, sources: Optional[Path]) -> nn.Module:
        return prepare(model)
    return method_prepare


def _fusion(model: nn.Module, sources: Optional[Path]) -> nn.Module:
    if sources is None:
        raise ValueError("AdapterFusion needs trained source adapters: pass sources=train_source_adapters(...)")
    return recipes.adapter_fusion(sources)(model)


def _merged(model: nn.Module) -> nn.Module:
    return merge_and_unload(copy.deepcopy(model))


def _fold_prefix(model: nn.Module) -> nn.Module:
    model.prefix_encoder.fold_reparametrization()
    return model


def default_methods(profile: Profile, with_fusion: bool = True) -> list[Method]:
    """The course's methods with the settings and learning rates of their notebooks (from the profile)."""
    attention = ("q_proj", "k_proj", "v_proj", "o_proj")
    peft_lr = profile.peft_lr

    def method(name: str, family: str, prepare: recipes.Prepare, lr: float = peft_lr, **kwargs: Any) -> Method:
        return Method(name, family, _ignoring_sources(prepare), lr=lr, **kwargs)

    methods = [
        method("full fine-tuning", "full", recipes.full_finetuning(), lr=profile.finetune_lr),
        method("head only", "selective", recipes.selective(head_only)),
        method("BitFit", "selective", recipes.selective(bitfit)),
        method("Houlsby adapter (rf=16)", "adapter", recipes.adapter("houlsby")),
        method("Pfeiffer adapter (rf=16)", "adapter", recipes.adapter("pfeiffer")),
        method("parallel adapter (rf=16)", "adapter", recipes.adapter("parallel")),
        Method("AdapterFusion (3 sources)", "adapter", _fusion, lr=peft_lr, needs_sources=True),
        method("LoRA r=8 (q, v)", "reparametrization", recipes.lora(("q_proj", "v_proj"), 8), finish=_merged),
        method("LoRA r=2 (q, k, v, o)", "reparametrization", recipes.lora(attention, 2), finish=_merged),
        method("LoRA r=32 (q, v)", "reparametrization", recipes.lora(("q_proj", "v_proj"), 32), finish=_merged),
        method("prompt tuning (n=8)", "soft prompt", recipes.prompt_tuning(8), lr=profile.prompt_lr),
        method("prefix tuning (n=8)", "soft prompt", recipes.prefix_tuning(8), finish=_fold_prefix,
               finish_in_place=True),
        method("QLoRA r=8 (q, v; NF4 base)", "quantized", recipes.qlora(("q_proj", "v_proj"), 8)),
    ]
    return [m for m in methods if with_fusion or not m.needs_sources]


def train_source_adapters(base: PretrainedBase, tasks: Iterable[str], directory: str | Path, profile: Profile,
                          device: Optional[torch.device] = None, placement: str = "pfeiffer",
                          steps: Optional[int] = None, show_progress: bool = False) -> Path:
    """AdapterFusion stage 1: train one adapter per source task and save each under ``directory/<task>``."""
    from .data.tasks import load_task

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        splits = load_task(task, profile.task_train, profile.task_val, profile.task_test)
        result = run_finetune(base, splits, profile, recipes.adapter(placement, name=task), name=f"source {task}",
                              lr=profile.peft_lr, steps=steps, device=device, show_progress=show_progress)
        save_adapter(result.model, task, directory / task)
    return directory


@dataclass
class MethodRun:
    """One trained method: its fine-tuning result plus the capstone's extra measurements."""

    method: Method
    seed: int
    result: FinetuneResult
    checkpoint_bytes: int
    peak_train_bytes: Optional[int]
    memory_method: str
    ms_per_step: float
    inference_model: nn.Module = field(repr=False)
    latency_ms: float = float("nan")


def run_method(method: Method, base: PretrainedBase, splits: Any, profile: Profile,
               device: Optional[torch.device] = None, seed: int = 0, sources: Optional[Path] = None,
               steps: Optional[int] = None, show_progress: bool = False) -> MethodRun:
    """Prepare, train (measuring peak memory) and finish one method; latency is filled in by compare_methods."""
    device = device or get_device()
    if method.needs_sources and sources is None:
        raise ValueError(f"{method.name!r} needs trained source adapters: pass sources=train_source_adapters(...)")
    steps = steps or profile.finetune_steps
    with PeakMemory(device) as memory:
        result = run_finetune(base, splits, profile, lambda model: method.prepare(model, sources), name=method.name,
                              lr=method.lr or profile.peft_lr, steps=steps, seed=seed, device=device,
                              show_progress=show_progress)
    model = result.model
    if method.finish is not None and method.finish_in_place:
        model = method.finish(model)
    checkpoint = trainable_bytes(model)
    inference = method.finish(model) if method.finish is not None and not method.finish_in_place else model
    return MethodRun(method=method, seed=seed, result=result, checkpoint_bytes=checkpoint,
                     peak_train_bytes=memory.peak_bytes, memory_method=memory.method,
                     ms_per_step=1000 * result.train_seconds / steps, inference_model=inference.eval())


def compare_methods(methods: list[Method], base: PretrainedBase, splits: Any, profile: Profile,
                    device: Optional[torch.device] = None, seeds: Iterable[int] = (0,),
                    sources: Optional[Path] = None, latency_batch: int = 32, steps: Optional[int] = None,
                    progress: Optional[Callable[[Iterable], Iterable]] = None) -> list[MethodRun]:
    """Run every method for every seed, then time inference of the first seed's models side by side."""
    device = device or get_device()
    seeds = list(seeds)
    if not methods or not seeds:
        raise ValueError("compare_methods needs at least one method and one seed")
    jobs = [(m, s) for s in seeds for m in methods]
    runs = [run_method(m, base, splits, profile, device, seed=s, sources=sources, steps=steps)
            for m, s in (progress(jobs) if progress else jobs)]
    collate = ClassificationCollator(base.tokenizer, max_len=profile.max_len)
    batch = collate([splits["test"][i] for i in range(min(latency_batch, len(splits["test"])))])
    first = {r.method.name: r for r in runs if r.seed == seeds[0]}
    timings = compare_latency({name: r.inference_model for name, r in first.items()}, batch)
    for r in runs:
        r.latency_ms = timings[r.method.name].median_ms
    return runs


def comparison_table(runs: list[MethodRun]) -> pd.DataFrame:
    """One row per method: the mean over seeds (± std of test accuracy), time per step from the fastest seed."""
    if not runs:
        raise ValueError("comparison_table needs at least one run")
    rows = []
    for r in runs:
        rows.append({
            "method": r.method.name, "family": r.method.family,
            "trainable params": r.result.trainable_params,
            "trainable %": 100 * r.result.trainable_params / r.result.total_params,
            "checkpoint KB": r.checkpoint_bytes / 1e3,
            "train state MB": r.result.train_state_bytes / 2**20,
            "peak train MB": float("nan") if r.peak_train_bytes is None else r.peak_train_bytes / 2**20,
            "ms / step": r.ms_per_step,
            "latency ms": r.latency_ms,
            "inference params": count_parameters(r.inference_model).total,
            "val loss": r.result.val_loss,
            "test acc": r.result.test_accuracy,
        })
    frame = pd.DataFrame(rows)
    order = list(dict.fromkeys(frame["method"]))
    table = frame.groupby("method", sort=False).mean(numeric_only=True)
    # time per step: the fastest seed, the one least disturbed by other work on the machine (like compare_latency)
    table["ms / step"] = frame.groupby("method", sort=False)["ms / step"].min()
    table.insert(0, "family", frame.groupby("method", sort=False)["family"].first())
    if frame["method"].value_counts().max() > 1:
        table["test acc ±"] = frame.groupby("method", sort=False)["test acc"].std(ddof=0)
    for column in ("trainable params", "inference params"):
        table[column] = table[column].round().astype(int)
    return table.loc[order]


README_COLUMNS = ("family", "trainable params", "trainable %", "checkpoint KB", "peak train MB", "ms / step",
                  "latency ms", "val loss", "test acc")


def markdown_table(table: pd.DataFrame, columns: Iterable[str] = README_COLUMNS, digits: int = 3) -> str:
    """The comparison table as a GitHub-markdown table (for the README), numbers rounded to ``digits``."""
    columns = list(columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the table; available: {list(table.columns)}")
    if "test acc ±" in table.columns and "test acc" in columns:
        shown = table[columns].copy()
        shown["test acc"] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(table["test acc"], table["test acc ±"])]
    else:
        shown = table[columns]

    def fmt(value: Any) -> str:
        if isinstance(value, str):
            return value
        if float(value).is_integer() and abs(value) >= 1:
            return f"{int(value):,}"
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.1f}"

    lines = ["| method | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    lines += [f"| {name} | " + " | ".join(fmt(v) for v in row) + " |" for name, row in shown.iterrows()]
    return "\n".join(lines)
