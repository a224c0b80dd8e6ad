"""AdapterFusion on the real track: source adapters trained on other domains, then fused on a small target.

Stage 1 trains one Pfeiffer adapter per source domain (movie, Amazon and tweet sentences) with the full real-track
budget and keeps its files next to its run record in the run cache (``runs/<key>.adapter``), so the sources train
once and every target size and seed reuses them. Stage 2 is an ordinary real-track method: its options name the
sources by their run keys (stable across machines), and :meth:`MethodSpec.prepare` loads them from the cache.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Optional

import torch

from .benchmark import (MethodSpec, RunRecord, adapter_spec, domain_task, evaluate_method, real_run, run_key, runs_dir,
                        train_real)
from .checkpoints import file_lock, write_json_atomic
from .peft import save_adapter
from .profiles import Profile, get_device

SOURCE_DOMAINS = ("movie", "amazon", "tweets")
source_task = domain_task  # a source domain's task (the name notebook 04 and its tests use)
TARGET_DOMAIN = "nyt"


def source_spec(domain: str, placement: str = "pfeiffer", reduction_factor: int = 16) -> MethodSpec:
    """The adapter trained on a source domain, named after it (so several can be loaded into one model)."""
    spec = adapter_spec(placement, reduction_factor)
    return MethodSpec(f"source adapter ({domain})", spec.recipe, {**spec.options, "name": domain}, grid=spec.grid)


def source_lr(profile: Profile, device: Optional[torch.device] = None, show_progress: bool = True) -> float:
    """The rate every source trains at: the Pfeiffer adapter's pick on movie reviews (notebook 03; from the cache)."""
    return evaluate_method(adapter_spec("pfeiffer"), profile, device=device, show_progress=show_progress).lr


def source_adapter(domain: str, lr: float, profile: Profile, device: Optional[torch.device] = None,
                   show_progress: bool = True) -> tuple[Path, RunRecord]:
    """Stage 1 for one domain (seed 0): the saved adapter's folder and its run record, trained once and cached."""
    device = device or get_device()
    spec, task = source_spec(domain), domain_task(domain, profile)
    key = run_key(spec, lr, 0, profile, task, device)
    folder, record_path = runs_dir() / f"{key}.adapter", runs_dir() / f"{key}.json"
    with file_lock(Path(f"{folder}.lock")):
        if not (folder / "adapter_config.json").is_file() or not record_path.is_file():
            record, model = train_real(spec, lr, 0, profile, task, device=device, show_progress=show_progress)
            record.key = key
            save_adapter(model, domain, folder)
            write_json_atomic(record_path, asdict(record))
    return folder, real_run(spec, lr, 0, profile, task, device=device, show_progress=show_progress)


def fusion_spec(domains: Iterable[str], lr: float, profile: Profile, device: Optional[torch.device] = None,
                show_progress: bool = True, uniform: bool = False) -> MethodSpec:
    """Stage 2 as a real-track method: AdapterFusion over the cached source adapters (trained here if missing).

    ``uniform=True`` is the ablation: the same sources mixed with equal weights, only the value projection trains.
    """
    domains = list(domains)
    if not domains:
        raise ValueError(f"AdapterFusion needs at least one source domain, e.g. {list(SOURCE_DOMAINS)}")
    keys = [source_adapter(d, lr, profile, device, show_progress)[0].name for d in domains]
    label = "uniform mix" if uniform else "AdapterFusion"
    options = {"sources": keys, **({"uniform": True} if uniform else {})}
    return MethodSpec(f"{label} ({', '.join(domains)})", "adapter_fusion", options, grid="peft")


@torch.no_grad()
def fusion_weights(model: torch.nn.Module, tokenizer, texts: list[str], max_len: int, name: str = "fusion",
                   batch_size: int = 64) -> dict:
    """The fusion's mean attention per layer and source over the real tokens of ``texts`` (a JSON-able dict)."""
    from .peft.fusion import fusion_adapters, fusion_attention

    device = next(model.parameters()).device
    model.eval()
    sums, count = None, 0
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True, max_length=max_len,
                          return_tensors="pt").to(device)
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        mask = batch["attention_mask"].bool()
        per_site = torch.stack([w[mask].sum(0) for w in fusion_attention(model, name).values()])  # [sites, N]
        sums = per_site if sums is None else sums + per_site
        count += int(mask.sum())
    sites = list(fusion_attention(model, name))
    return {"sites": sites, "sources": fusion_adapters(model, name), "weights": (sums / count).cpu().tolist()}
