"""Print the README's real-track results table from the run cache (maintainers, after the notebooks ran).

Every contender of the capstone (``course_lib.real_capstone``) under the protocol; the runs come from
``$COURSE_CACHE/runs/`` (notebooks 02-09 and 12 put them there); a run that is missing is trained, so with
a warm cache this takes seconds. Usage: ``COURSE_PROFILE=cpu python tools/real_track_table.py``. Notebook 13 prints
the same rows with the measured memory and latency.
"""

from __future__ import annotations

import os
import platform

import torch

import course_lib
from course_lib import benchmark
from course_lib.real_capstone import contenders


def main() -> None:
    """Run (or read) the protocol for every contender and print a Markdown table with its provenance."""
    profile = course_lib.get_profile()
    splits = benchmark.real_splits(profile)
    results = {name: benchmark.evaluate_method(c.spec, profile, splits=splits, show_progress=False)
               for name, c in contenders(profile, show_progress=False).items()}
    sizes = profile.real
    print(f"Measured by the committed notebooks (profile {profile.name}; {platform.machine()} CPU, "
          f"{os.cpu_count()} cores, torch {torch.__version__}): all-MiniLM-L6-v2 on movie polarity, "
          f"{sizes.n_train:,} training sentences, {sizes.steps} steps of {sizes.batch_size} for every method, the "
          f"learning rate picked on {sizes.n_val} validation sentences, test accuracy on {sizes.n_test:,} sentences "
          f"as mean ± std over {profile.seeds} seeds. Parameters exclude the classification head "
          f"({next(iter(results.values())).runs[0].head_params:,}).\n")
    print("| method | trainable params (head apart) | % of MiniLM | picked lr | test acc |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, res in sorted(results.items(), key=lambda item: -item[1].mean()):
        first = res.runs[0]
        print(f"| {name} | {first.method_params:,} | {first.method_percent:.3g} | {res.lr:g} | "
              f"{res.mean():.3f} ± {res.std():.3f} |")


if __name__ == "__main__":
    main()
