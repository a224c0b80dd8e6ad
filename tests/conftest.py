"""Test setup: the ci profile, no network, and a headless matplotlib."""

import os

# Set before anything imports course_lib; nbval's kernels inherit this environment too.
os.environ.setdefault("COURSE_PROFILE", "ci")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
