"""The real track's fair-comparison protocol: one real model, real text, equal budgets, tuned rates, seeds, a cache.

Every method is a :class:`MethodSpec` -- a recipe name from :mod:`course_lib.recipes` (or a freezing function)
with its options -- so a run is fully described by plain values. The protocol, for each method:

1. the same step budget, batch and data for all (``profile.real``);
2. the learning rate picked on the **validation** split from the method's small grid (seed 0);
3. that rate re-run over ``profile.seeds`` seeds: mean ± std of test accuracy;
4. differences between methods as paired per-seed differences, called "no difference" when smaller than
   their spread.

Finished runs are cached as JSON in ``$COURSE_CACHE/runs/``, keyed by everything that determines the result
(model, data, method, options, rate, seed, budget, library versions), written atomically, so the expensive
full fine-tuning reference trains once and notebooks 02, 05, 06 and the capstone reuse it.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from . import recipes
from .checkpoints import file_lock, write_json_atomic
from .data.sentiment import load_sentiment, sentiment_report
from .data.vader import FILES
from .finetune import finetune_classifier
from .peft.freezing import DEFAULT_HEAD_PATTERNS, bitfit, head_only, top_k_layers
from .peft.prompt_tuning import PromptTuningModel
from .peft.spine import head_tensors
from .pretrain import cache_dir
from .profiles import Profile, get_device
from .train import History, TrainConfig

RUNS_VERSION = 1  # bump when the protocol changes what a cached run means
LR_GRIDS = ("full", "peft", "head", "prompt")
SELECTIVE: dict[str, Callable[..., Any]] = {"head_only": head_only, "bitfit": bitfit, "top_k_layers": top_k_layers}
RECIPES = ("full_finetuning", "selective", "lora", "dora", "ia3", "qlora", "adapter", "adapter_fusion",
           "prefix_tuning", "prompt_tuning")


@dataclass(frozen=True)
class MethodSpec:
    """A method as plain values: its label, a recipe in course_lib.recipes, the recipe's options, its lr grid."""

    name: str
    recipe: str
    options: dict = field(default_factory=dict)
    grid: str = "peft"

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"{self.name}: unknown recipe {self.recipe!r}; allowed: {', '.join(RECIPES)}.")
        if self.grid not in LR_GRIDS:
            raise ValueError(f"{self.name}: unknown lr grid {self.grid!r}; allowed: {', '.join(LR_GRIDS)}.")
        if self.recipe == "selective" and self.options.get("select") not in SELECTIVE:
            raise ValueError(f"{self.name}: a selective method needs select= one of {', '.join(SELECTIVE)}.")
        sources = self.options.get("sources")
        if self.recipe == "adapter_fusion" and (not isinstance(sources, list) or not sources
                                                or not all(isinstance(s, str) for s in sources)):
            raise ValueError(f"{self.name}: AdapterFusion needs sources= a list of cached source-adapter folder names "
                             f"(course_lib.real_fusion.fusion_spec builds it), got {sources!r}.")

    def prepare(self) -> recipes.Prepare:
        """The recipe's prepare(model) step."""
        if self.recipe == "selective":
            options = dict(self.options)
            select = SELECTIVE[options.pop("select")]
            return recipes.selective(lambda model: select(model, **options))
        if self.recipe == "adapter_fusion":  # the sources live in the run cache, named by their run keys
            return recipes.adapter_fusion(runs_dir(), self.options["sources"],
                                          uniform=self.options.get("uniform", False))
        return getattr(recipes, self.recipe)(**self.options)


def real_methods(names: Optional[list[str]] = None) -> dict[str, MethodSpec]:
    """The real track's standard methods on a Hugging Face BERT (MiniLM): full FT, selective, LoRA r=8."""
    specs = [
        MethodSpec("full fine-tuning", "full_finetuning", grid="full"),
        MethodSpec("head only", "selective", {"select": "head_only"}, grid="head"),
        MethodSpec("BitFit", "selective", {"select": "bitfit"}, grid="peft"),
        MethodSpec("top-2 layers", "selective", {"select": "top_k_layers", "k": 2}, grid="full"),
        MethodSpec("LoRA r=8 (q, v)", "lora", {"target_modules": ["query", "value"], "r": 8}, grid="peft"),
    ]
    found = {s.name: s for s in specs}
    if names is None:
        return found
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; allowed: {', '.join(found)}")
    return {n: found[n] for n in names}


def adapter_spec(placement: str, reduction_factor: int = 16, **options: Any) -> MethodSpec:
    """A bottleneck adapter preset (AdapterHub-exact, see course_lib.peft.adapters) as a real-track method.

    ``options`` are further AdapterConfig fields (e.g. ``activation="gelu"``); they are named in the label.
    """
    extra = "".join(f", {k}={v}" for k, v in sorted(options.items()))
    return MethodSpec(f"{placement.capitalize()} adapter (rf={reduction_factor}{extra})", "adapter",
                      {"placement": placement, "reduction_factor": reduction_factor, **options}, grid="peft")


def prompt_spec(n_virtual_tokens: int) -> MethodSpec:
    """Prompt tuning with ``n`` virtual tokens (initialised from vocabulary embeddings) as a real-track method."""
    return MethodSpec(f"prompt tuning (n={n_virtual_tokens})", "prompt_tuning",
                      {"n_virtual_tokens": n_virtual_tokens, "init": "vocab"}, grid="prompt")


def prefix_spec(n_prefix: int, reparametrize: bool = True) -> MethodSpec:
    """Prefix tuning with ``n`` key/value prefixes per layer (through Li & Liang's MLP by default) as a method.

    Direct prefixes are free vectors like a soft prompt and search prompt tuning's larger rates; through the MLP
    they search the PEFT grid.
    """
    how = "" if reparametrize else ", direct"
    return MethodSpec(f"prefix tuning (n={n_prefix}{how})", "prefix_tuning",
                      {"n_prefix": n_prefix, "reparametrize": reparametrize}, grid="peft" if reparametrize else "prompt")


def dora_spec(target_modules: list[str] = ("query", "value"), r: int = 8) -> MethodSpec:
    """DoRA (peft's ``use_dora=True``) on MiniLM's targets, alpha = 2r, as a real-track method (LoRA's lr grid)."""
    where = ", ".join({"query": "q", "key": "k", "value": "v"}.get(t, t) for t in target_modules)
    return MethodSpec(f"DoRA r={r} ({where})", "dora", {"target_modules": list(target_modules), "r": r}, grid="peft")


# (IA)³ as in the paper: keys, values and the FFN activation entering each block's down projection (output.dense)
IA3_TARGETS = r"bert\.encoder\.layer\.\d+\.(attention\.self\.(key|value)|output\.dense)"
IA3_FEEDFORWARD = r"bert\.encoder\.layer\.\d+\.output\.dense"


def ia3_spec() -> MethodSpec:
    """(IA)³ on MiniLM (l_k, l_v, l_ff) as a real-track method; its vectors start at 1: it searches the head grid."""
    options = {"target_modules": IA3_TARGETS, "feedforward_modules": IA3_FEEDFORWARD}
    return MethodSpec("(IA)³ (k, v, ff)", "ia3", options, grid="head")


# every linear layer inside MiniLM's transformer blocks (q, k, v, attention output, FFN in and out): QLoRA's choice
ALL_LINEAR = r"bert\.encoder\.layer\.\d+\..*(query|key|value|dense)"


def lora_spec(target_modules: str | list[str] = ("query", "value"), r: int = 8, quantized: bool = False) -> MethodSpec:
    """LoRA (or QLoRA: NF4 base, ``quantized=True``) on MiniLM's targets, alpha = 2r, as a real-track method."""
    where = "all linear" if target_modules == ALL_LINEAR else ", ".join(
        {"query": "q", "key": "k", "value": "v"}.get(t, t) for t in target_modules)
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    return MethodSpec(f"{'QLoRA' if quantized else 'LoRA'} r={r} ({where})", "qlora" if quantized else "lora",
                      {"target_modules": targets, "r": r}, grid="peft")


@dataclass
class RunRecord:
    """One finished run: what it was, what it scored, what it cost, and its learning curve."""

    method: str
    lr: float
    seed: int
    val_accuracy: float
    val_loss: float
    test_accuracy: float
    method_params: int      # trainable parameters of the method itself, head excluded (as the LoRA paper counts)
    head_params: int        # the task head's parameters (new, always trained)
    total_params: int
    train_seconds: float
    history: dict = field(default_factory=dict)  # History.to_dict(): the learning curve
    key: str = ""

    def curve(self) -> History:
        """The run's learning curve (train loss every step, validation loss and accuracy every eval_every)."""
        return History.from_dict(self.history)

    @property
    def method_percent(self) -> float:
        """The method's trainable share of the base model, head excluded, in percent."""
        return 100.0 * self.method_params / self.total_params


@dataclass(frozen=True)
class RealTask:
    """The data and model of a real-track run."""

    domain: str = "movie"
    task: str = "polarity"
    model: str = "minilm"
    n_train: Optional[int] = None  # training sentences; None: the profile's (a small target for AdapterFusion)

    def __post_init__(self) -> None:
        if self.domain not in FILES:
            raise ValueError(f"unknown domain {self.domain!r}; allowed: {', '.join(FILES)}")
        if self.model != "minilm":
            raise ValueError(f"unknown real model {self.model!r}; the offline real track uses 'minilm'")
        if self.n_train is not None and (isinstance(self.n_train, bool) or not isinstance(self.n_train, int)
                                         or self.n_train < 2):
            raise ValueError(f"n_train must be None (the profile's) or an integer >= 2, got {self.n_train!r}")

    def key_parts(self) -> dict:
        """The fields that decide a run (unset options left out, so older cache keys stay valid)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def domain_task(domain: str, profile: Profile) -> RealTask:
    """A domain's polarity task: the profile's training size, or every sentence left after validation and test
    (Amazon has fewer labelled sentences than the movie reviews)."""
    kept = sentiment_report(domain, "polarity")["kept"]
    available = kept - profile.real.n_val - profile.real.n_test
    if available < 2:
        raise ValueError(f"{domain} has {kept} labelled sentences: too few for the profile's validation and test sets.")
    return RealTask(domain) if profile.real.n_train <= available else RealTask(domain, n_train=available)


def load_real_model(num_labels: int, label_names: list[str], seed: int) -> tuple[nn.Module, Any]:
    """The packaged MiniLM with a fresh classification head drawn with ``seed``."""
    from .hub import load_minilm

    torch.manual_seed(seed)
    return load_minilm(num_labels=num_labels, label_names=label_names)


def _versions() -> dict[str, str]:
    import transformers

    from .hub.minilm import minilm_path

    weights = minilm_path() / "model.safetensors"
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "minilm_bytes": str(weights.stat().st_size), "runs_version": str(RUNS_VERSION)}


def run_key(spec: MethodSpec, lr: float, seed: int, profile: Profile, task: RealTask,
            device: Optional[torch.device] = None) -> str:
    """A stable hash of everything that determines a run's result (the device kind too, when it is not the CPU)."""
    sizes = asdict(profile.real)
    sizes.pop("lr_grids", None)  # the grid decides which runs happen, not what one run gives
    parts = {"method": [spec.recipe, spec.options], "lr": lr, "seed": seed, "sizes": sizes,
             "precision": profile.precision, "task": task.key_parts(), "versions": _versions()}
    kind = torch.device(device).type if device is not None else "cpu"
    if kind != "cpu":
        parts["device"] = kind
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def runs_dir() -> Path:
    """Where finished real-track runs are cached."""
    return cache_dir() / "runs"


def _read(path: Path) -> Optional[RunRecord]:
    try:
        return RunRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write(path: Path, record: RunRecord) -> None:
    write_json_atomic(path, asdict(record))


def real_splits(profile: Profile, task: RealTask = RealTask()):
    """The profile's real-track splits (train / validation / test) of the task."""
    sizes = profile.real
    n_train = task.n_train if task.n_train is not None else sizes.n_train
    return load_sentiment(task.domain, task.task, n_train=n_train, n_val=sizes.n_val, n_test=sizes.n_test)


def head_parameter_count(model: nn.Module) -> int:
    """Parameters of the task head (``classifier.*``), counted apart from the method (inside a prompt wrapper too)."""
    inner = model.model if isinstance(model, PromptTuningModel) else model
    return sum(t.numel() for t in head_tensors(inner, DEFAULT_HEAD_PATTERNS).values())


def train_real(spec: MethodSpec, lr: float, seed: int, profile: Profile, task: RealTask = RealTask(),
               splits: Any = None, device: Optional[torch.device] = None,
               show_progress: bool = True) -> tuple[RunRecord, nn.Module]:
    """Train one method once (no cache): (record, trained model)."""
    splits = splits if splits is not None else real_splits(profile, task)
    label_names = splits["train"].features["label"].names
    model, tokenizer = load_real_model(len(label_names), label_names, seed)
    model = spec.prepare()(model) or model
    sizes = profile.real
    config = TrainConfig(steps=sizes.steps, batch_size=sizes.batch_size, lr=lr, eval_every=sizes.eval_every,
                         warmup_ratio=sizes.warmup_ratio, seed=seed, precision=profile.precision)
    head = head_parameter_count(model)
    result = finetune_classifier(model, tokenizer, splits, config, sizes.max_len, name=f"{spec.name} lr={lr:g}",
                                 device=device or get_device(), show_progress=show_progress)
    record = RunRecord(method=spec.name, lr=lr, seed=seed, val_accuracy=result.val_accuracy,
                       val_loss=result.val_loss, test_accuracy=result.test_accuracy,
                       method_params=result.trainable_params - head, head_params=head,
                       total_params=result.total_params - head, train_seconds=result.train_seconds,
                       history=result.history.to_dict())
    return record, result.model


def real_run(spec: MethodSpec, lr: float, seed: int, profile: Profile, task: RealTask = RealTask(),
             splits: Any = None, device: Optional[torch.device] = None, show_progress: bool = True,
             use_cache: bool = True) -> RunRecord:
    """One run's record: from the cache when an identical run finished before, else trained and cached."""
    device = device or get_device()
    key = run_key(spec, lr, seed, profile, task, device)
    path = runs_dir() / f"{key}.json"
    if not use_cache:
        record, _ = train_real(spec, lr, seed, profile, task, splits, device, show_progress)
        record.key = key
        return record
    with file_lock(path.with_suffix(".lock")):
        cached = _read(path) if path.is_file() else None
        if cached is not None:
            cached.method = spec.name
            return cached
        record, _ = train_real(spec, lr, seed, profile, task, splits, device, show_progress)
        record.key = key
        _write(path, record)
        return record


@dataclass
class MethodResult:
    """A method under the protocol: every grid run (seed 0), the picked rate and the runs over seeds."""

    spec: MethodSpec
    grid_runs: list[RunRecord]
    lr: float
    runs: list[RunRecord]

    def scores(self, metric: str = "test_accuracy") -> list[float]:
        """The metric of each seed's run, in seed order."""
        return [getattr(r, metric) for r in self.runs]

    def mean(self, metric: str = "test_accuracy") -> float:
        """Mean over seeds."""
        return statistics.fmean(self.scores(metric))

    def std(self, metric: str = "test_accuracy") -> float:
        """Sample standard deviation over seeds (0 with one seed)."""
        values = self.scores(metric)
        return statistics.stdev(values) if len(values) > 1 else 0.0


def pick_lr(runs: list[RunRecord]) -> RunRecord:
    """The grid run with the best validation accuracy (ties: lower validation loss, then the smaller rate)."""
    usable = [r for r in runs if math.isfinite(r.val_loss)]
    if not usable:
        raise ValueError("every grid run diverged (non-finite validation loss)")
    return max(usable, key=lambda r: (round(r.val_accuracy, 6), -r.val_loss, -r.lr))


def evaluate_method(spec: MethodSpec, profile: Profile, task: RealTask = RealTask(), splits: Any = None,
                    device: Optional[torch.device] = None, show_progress: bool = True,
                    use_cache: bool = True) -> MethodResult:
    """The protocol for one method: tune the rate on validation (seed 0), then run every seed at that rate."""
    splits = splits if splits is not None else real_splits(profile, task)
    grid = profile.real.lr_grids[spec.grid]

    def run(lr: float, seed: int) -> RunRecord:
        return real_run(spec, lr, seed, profile, task, splits, device, show_progress, use_cache)

    grid_runs = [run(lr, 0) for lr in grid]
    best = pick_lr(grid_runs)
    runs = [best] + [run(best.lr, seed) for seed in range(1, profile.seeds)]
    return MethodResult(spec, grid_runs, best.lr, runs)


def run_at(spec: MethodSpec, lr: float, profile: Profile, task: RealTask = RealTask(), splits: Any = None,
           device: Optional[torch.device] = None, show_progress: bool = True) -> MethodResult:
    """A method at a given rate (no search) over ``profile.seeds`` seeds: for variants that share a tuned rate."""
    splits = splits if splits is not None else real_splits(profile, task)
    runs = [real_run(spec, lr, seed, profile, task, splits, device, show_progress) for seed in range(profile.seeds)]
    return MethodResult(spec, [], lr, runs)


@dataclass(frozen=True)
class PairedDifference:
    """Method a minus method b, seed by seed."""

    a: str
    b: str
    differences: list[float]

    @property
    def mean(self) -> float:
        """Mean of the per-seed differences."""
        return statistics.fmean(self.differences)

    @property
    def std(self) -> float:
        """Spread of the per-seed differences (0 with one seed)."""
        return statistics.stdev(self.differences) if len(self.differences) > 1 else 0.0

    @property
    def verdict(self) -> str:
        """'a better', 'b better', 'no difference' (inside the spread) or 'one seed' (no spread to judge)."""
        if len(self.differences) < 2:
            return "one seed: no spread to judge"
        if abs(self.mean) <= self.std:
            return "no difference (inside the seed spread)"
        return f"{self.a} better" if self.mean > 0 else f"{self.b} better"


def paired_difference(a: MethodResult, b: MethodResult, metric: str = "test_accuracy") -> PairedDifference:
    """Per-seed differences a - b (runs paired by seed)."""
    if [r.seed for r in a.runs] != [r.seed for r in b.runs]:
        raise ValueError("paired differences need the same seeds for both methods")
    return PairedDifference(a.spec.name, b.spec.name, [x - y for x, y in zip(a.scores(metric), b.scores(metric))])


def results_table(results: dict[str, MethodResult]):
    """One row per method: parameters (head apart), picked rate, validation and test accuracy as mean ± std."""
    import pandas as pd

    rows = []
    for name, res in results.items():
        first = res.runs[0]
        rows.append({"method": name, "method params": first.method_params,
                     "method % of base": round(first.method_percent, 3), "head params": first.head_params,
                     "checkpoint MB": round(4 * (first.method_params + first.head_params) / 2**20, 3),
                     "picked lr": res.lr, "seeds": len(res.runs),
                     "val acc": round(res.mean("val_accuracy"), 4),
                     "test acc": round(res.mean(), 4), "± std": round(res.std(), 4)})
    return pd.DataFrame(rows).set_index("method")


def grid_table(results: dict[str, MethodResult]):
    """Validation accuracy of every grid rate (seed 0), one row per method; the pick is the row's best."""
    import pandas as pd

    rows = {name: {f"{r.lr:g}": round(r.val_accuracy, 4) for r in res.grid_runs} for name, res in results.items()}
    rates = sorted({r.lr for res in results.values() for r in res.grid_runs})
    table = pd.DataFrame(rows).T.reindex(columns=[f"{lr:g}" for lr in rates])
    table = table.astype(object).where(table.notna(), "·")  # "·": not in that method's grid
    table["picked"] = [f"{res.lr:g}" for res in results.values()]
    table["pick at the grid's edge"] = [at_grid_edge(res) for res in results.values()]
    return table


def at_grid_edge(result: MethodResult) -> bool:
    """True when the picked rate is the grid's smallest or largest (a wider grid might do better)."""
    rates = sorted(r.lr for r in result.grid_runs)
    return len(rates) > 1 and result.lr in (rates[0], rates[-1])


def findings_markdown(results: dict[str, MethodResult], reference: str, metric: str = "test_accuracy") -> str:
    """The findings as Markdown, written from the results (so the prose cannot disagree with the table)."""
    ref = results[reference]
    n = len(ref.runs)
    lines = [f"**Measured here** ({n} seed{'s' if n > 1 else ''}, test accuracy as mean ± std; "
             f"differences are paired by seed against {reference}):", ""]
    for name, res in sorted(results.items(), key=lambda item: -item[1].mean(metric)):
        head = f"- **{name}**: {res.mean(metric):.3f} ± {res.std(metric):.3f}, training " \
               f"{res.runs[0].method_percent:.3g}% of the base's parameters (head apart)"
        if at_grid_edge(res):
            head += f" at lr {res.lr:g}, the edge of its grid (a wider grid might do better)"
        if name == reference:
            lines.append(head + " — the reference.")
            continue
        diff = paired_difference(res, ref, metric)
        lines.append(head + f"; vs {reference}: {diff.mean:+.3f} ± {diff.std:.3f} → {diff.verdict}.")
    return "\n".join(lines)
