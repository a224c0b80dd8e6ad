"""Measure the peak memory a block of code adds: CUDA max-allocated on a GPU, peak resident memory (RSS) on Linux.

On CUDA the numbers come from PyTorch's caching allocator (``torch.cuda.max_memory_allocated``), which counts
exactly the tensors alive at the peak. On CPU there is no such counter, so we read the process's high-water mark
``VmHWM`` from ``/proc/self/status`` after resetting it (writing ``5`` to ``/proc/self/clear_refs``, Linux >= 4.0)
and returning freed heap memory to the OS (glibc ``malloc_trim``). That is a real measurement with some noise from
the Python and C allocators: trust differences of megabytes, not of kilobytes.
"""

from __future__ import annotations

import ctypes
import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(key: str) -> Optional[int]:
    """One ``kB`` field of /proc/self/status (None where the file or field does not exist)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_free_memory() -> None:
    """Collect garbage and hand freed C-heap pages back to the OS, so the baseline RSS counts live memory only."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_peak_supported() -> bool:
    """True where the resettable RSS high-water mark exists (Linux /proc with a writable clear_refs)."""
    if _status_kib("VmHWM") is None:
        return False
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


@dataclass
class PeakMemory:
    """Context manager: ``with PeakMemory(device) as m: ...`` then ``m.peak_bytes`` is the peak added by the block.

    ``method`` says how it was measured ("cuda max allocated", "RSS high-water mark") or, where neither works,
    "unavailable" with ``peak_bytes = None``.
    """

    device: torch.device | str = "cpu"
    peak_bytes: Optional[int] = field(default=None, init=False)
    method: str = field(default="unavailable", init=False)
    _start: int = field(default=0, init=False, repr=False)

    def __enter__(self) -> "PeakMemory":
        self.device = torch.device(self.device)
        _release_free_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            self.method = "cuda max allocated"
        elif rss_peak_supported():  # resets the high-water mark to the current RSS
            self._start = (_status_kib("VmRSS") or 0) * 1024
            self.method = "RSS high-water mark"
        return self

    def __exit__(self, *exc) -> None:
        if self.method == "cuda max allocated":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        elif self.method == "RSS high-water mark":
            self.peak_bytes = max(0, (_status_kib("VmHWM") or 0) * 1024 - self._start)

    @property
    def peak_mb(self) -> float:
        """The peak in MiB (NaN when it could not be measured)."""
        return float("nan") if self.peak_bytes is None else self.peak_bytes / 2**20
