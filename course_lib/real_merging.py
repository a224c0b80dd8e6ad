"""Merging LoRAs on the real track: one LoRA per sentiment domain, merged by each method, scored on every domain.

Stage 1 trains LoRA r=8 (q, v) on each domain (movie reviews, Amazon reviews) with the real-track budget and keeps
its files (peft's format, the domain's classification head included) next to its run record in the run cache
(``runs/<key>.lora``), once per seed. Stage 2 loads the domain LoRAs into one MiniLM and builds each merge with
:func:`~course_lib.peft.lora_merging.add_weighted_lora`. A merged adapter replaces the domain adapters, but each
domain keeps its own head, the convention of the merging papers (TIES, DARE) for classification: the question is
whether one set of adapted *encoder* weights serves both domains. The reference is a LoRA trained on both domains'
training sets together, with the same step budget.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch
from datasets import concatenate_datasets

from .benchmark import (MethodSpec, RunRecord, domain_task, load_real_model, lora_spec, real_run, real_splits,
                        run_key, runs_dir, train_real)
from .checkpoints import file_lock, write_json_atomic
from .data.collate import ClassificationCollator
from .finetune import finetune_classifier
from .peft import load_lora, save_lora, set_active_lora
from .peft.freezing import DEFAULT_HEAD_PATTERNS
from .peft.lora_merging import add_weighted_lora
from .profiles import Profile, get_device
from .train import TrainConfig, evaluate

MERGE_DOMAINS = ("movie", "amazon")
# label -> (peft combination type, weight per domain, options); the *_svd types work on the full update
# delta W = s B A and factor the result back to rank svd_rank (16: the two rank-8 updates fit without truncation)
MERGES: dict[str, tuple[str, float, dict]] = {
    "average": ("cat", 0.5, {}),
    "task arithmetic (sum)": ("cat", 1.0, {}),
    "TIES (density 0.5)": ("ties_svd", 1.0, {"density": 0.5, "svd_rank": 16}),
    "DARE (keep 0.5)": ("dare_linear_svd", 1.0, {"density": 0.5, "svd_rank": 16}),
}


def domain_lora_spec(domain: str) -> MethodSpec:
    """The course's LoRA r=8 (q, v), its adapter named after the domain (so several load into one model)."""
    spec = lora_spec()
    return MethodSpec(f"LoRA ({domain})", spec.recipe, {**spec.options, "name": domain}, grid=spec.grid)


def domain_lora(domain: str, lr: float, seed: int, profile: Profile, device: Optional[torch.device] = None,
                show_progress: bool = True) -> tuple[Path, RunRecord]:
    """Stage 1 for one domain and seed: the saved LoRA's folder (with its head) and its run record, cached."""
    device = device or get_device()
    spec, task = domain_lora_spec(domain), domain_task(domain, profile)
    key = run_key(spec, lr, seed, profile, task, device)
    folder, record_path = runs_dir() / f"{key}.lora", runs_dir() / f"{key}.json"
    with file_lock(Path(f"{folder}.lock")):
        if not (folder / "adapter_config.json").is_file() or not record_path.is_file():
            record, model = train_real(spec, lr, seed, profile, task, device=device, show_progress=show_progress)
            record.key = key
            save_lora(model, domain, folder, head_patterns=DEFAULT_HEAD_PATTERNS)
            write_json_atomic(record_path, asdict(record))
    return folder, real_run(spec, lr, seed, profile, task, device=device, show_progress=show_progress)


def _cache_path(kind: str, parts: dict) -> Path:
    """A JSON file in the run cache named by the hash of what decides its contents."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return runs_dir() / f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"


def _test_accuracy(model: torch.nn.Module, test, collate, device: torch.device) -> float:
    """Accuracy on one test split."""
    return evaluate(model, test, collate, device)["accuracy"]


def joint_lora(lr: float, seed: int, profile: Profile, domains: tuple[str, ...] = MERGE_DOMAINS,
               device: Optional[torch.device] = None, show_progress: bool = True) -> dict[str, float]:
    """The reference: one LoRA (one head) on all domains' training sets, same budget; test accuracy per domain."""
    device = device or get_device()
    keys = [run_key(domain_lora_spec(d), lr, seed, profile, domain_task(d, profile), device) for d in domains]
    path = _cache_path("joint", {"domains": list(domains), "runs": keys})
    with file_lock(path.with_suffix(".lock")):
        if path.is_file():
            return json.loads(path.read_text())
        splits = {d: real_splits(profile, domain_task(d, profile)) for d in domains}
        label_names = splits[domains[0]]["train"].features["label"].names
        joint = {part: concatenate_datasets([splits[d][part] for d in domains]) for part in ("train", "validation")}
        model, tokenizer = load_real_model(len(label_names), label_names, seed)
        model = lora_spec().prepare()(model) or model
        sizes = profile.real
        config = TrainConfig(steps=sizes.steps, batch_size=sizes.batch_size, lr=lr, eval_every=sizes.eval_every,
                             warmup_ratio=sizes.warmup_ratio, seed=seed, precision=profile.precision)
        result = finetune_classifier(model, tokenizer, {**joint, "test": splits[domains[0]]["test"]}, config,
                                     sizes.max_len, name=f"joint LoRA ({' + '.join(domains)}) seed {seed}",
                                     device=device, show_progress=show_progress)
        collate = ClassificationCollator(tokenizer, max_len=sizes.max_len)
        scores = {d: _test_accuracy(result.model, splits[d]["test"], collate, device) for d in domains}
        write_json_atomic(path, scores)
        return scores


class DomainLoRAs:
    """One MiniLM holding every domain's LoRA (and a copy of each domain's head), ready to merge and score."""

    def __init__(self, folders: dict[str, Path], profile: Profile, device: torch.device) -> None:
        self.domains = list(folders)
        self.splits = {d: real_splits(profile, domain_task(d, profile)) for d in self.domains}
        label_names = self.splits[self.domains[0]]["train"].features["label"].names
        self.model, tokenizer = load_real_model(len(label_names), label_names, seed=0)
        self.heads = {}
        for d, folder in folders.items():  # loading a LoRA also loads its head: keep a copy of each
            load_lora(self.model, folder, name=d)
            self.heads[d] = copy.deepcopy(self.model.classifier.state_dict())
        self.model.to(device).eval()
        self.device = device
        self.collate = ClassificationCollator(tokenizer, max_len=profile.real.max_len)

    def scores(self, adapter: str, head_of: Optional[str] = None) -> dict[str, float]:
        """Test accuracy on every domain with ``adapter`` active and that domain's head (or ``head_of``'s)."""
        set_active_lora(self.model, adapter)
        out = {}
        for d in self.domains:
            self.model.classifier.load_state_dict(self.heads[head_of or d])
            out[d] = _test_accuracy(self.model, self.splits[d]["test"], self.collate, self.device)
        return out

    def merge(self, name: str, combination: str, weights: list[float], seed: int = 0, **options) -> dict[str, float]:
        """Add the merge of the domain LoRAs as adapter ``name`` (``seed``: DARE's drops) and score it."""
        torch.manual_seed(seed)
        add_weighted_lora(self.model, self.domains, weights, name, combination_type=combination, **options)
        return self.scores(name)


def domain_loras(lr: float, seed: int, profile: Profile, domains: tuple[str, ...] = MERGE_DOMAINS,
                 device: Optional[torch.device] = None, show_progress: bool = True) -> DomainLoRAs:
    """The domain LoRAs of one seed (trained once, cached) loaded into one model."""
    device = device or get_device()
    return DomainLoRAs({d: domain_lora(d, lr, seed, profile, device, show_progress)[0] for d in domains}, profile,
                       device)


def merge_scores(lr: float, seed: int, profile: Profile, domains: tuple[str, ...] = MERGE_DOMAINS,
                 device: Optional[torch.device] = None, show_progress: bool = True) -> dict[str, dict[str, float]]:
    """Test accuracy per domain of each domain LoRA alone (its own head) and of each merge in :data:`MERGES`."""
    device = device or get_device()
    folders = {d: domain_lora(d, lr, seed, profile, device, show_progress)[0] for d in domains}
    path = _cache_path("merges", {"sources": [f.name for f in folders.values()], "seed": seed,
                                  "merges": MERGES, "domains": list(domains)})
    with file_lock(path.with_suffix(".lock")):
        if path.is_file():
            return json.loads(path.read_text())
        loras = DomainLoRAs(folders, profile, device)
        results = {f"{d} LoRA alone": loras.scores(d, head_of=d) for d in domains}
        for i, (label, (combination, weight, options)) in enumerate(MERGES.items()):
            results[label] = loras.merge(f"merge{i}", combination, [weight] * len(domains), seed, **options)
        write_json_atomic(path, results)
        return results
