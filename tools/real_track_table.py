"""Print the README's real-track results table from the run cache (maintainers, after notebooks 02 and 05 ran).

The runs come from ``$COURSE_CACHE/runs/`` (the notebooks put them there); a run that is missing is trained, so
with a warm cache this takes seconds. Usage: ``COURSE_PROFILE=cpu python tools/real_track_table.py``.
"""

from __future__ import annotations

import os
import platform

import torch

import course_lib
from course_lib import benchmark

METHODS = ["full fine-tuning", "top-2 layers", "LoRA r=8 (q, v)", "BitFit", "head only"]


def main() -> None:
    """Run (or read) the protocol for the standard methods and print a Markdown table with its provenance."""
    profile = course_lib.get_profile()
    splits = benchmark.real_splits(profile)
    results = {name: benchmark.evaluate_method(spec, profile, splits=splits, show_progress=False)
               for name, spec in benchmark.real_methods(METHODS).items()}
    sizes = profile.real
    print(f"Measured by `notebooks/02_full_finetuning.ipynb` and `notebooks/05_lora.ipynb` (profile {profile.name}; "
          f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}): all-MiniLM-L6-v2 on "
          f"movie polarity, {sizes.n_train:,} training sentences, {sizes.steps} steps of {sizes.batch_size} for "
          f"every method, the learning rate picked on {sizes.n_val} validation sentences, test accuracy on "
          f"{sizes.n_test:,} sentences as mean ± std over {profile.seeds} seeds. Parameters exclude the "
          f"classification head ({next(iter(results.values())).runs[0].head_params:,}).\n")
    print("| method | trainable params (head apart) | % of MiniLM | picked lr | test acc |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, res in results.items():
        first = res.runs[0]
        print(f"| {name} | {first.method_params:,} | {first.method_percent:.3g} | {res.lr:g} | "
              f"{res.mean():.3f} ± {res.std():.3f} |")


if __name__ == "__main__":
    main()
