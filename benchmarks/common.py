"""What every benchmark shares: the machine it ran on, honest timing, and a Markdown table.

Timing on a GPU must wait for the queued kernels (torch.cuda.synchronize) before reading the
clock; peak memory is what the CUDA caching allocator handed out, reset per setting.
"""

from __future__ import annotations

import os
import platform
import time
from datetime import date
from typing import Callable

import torch


def machine() -> str:
    """One line: device, PyTorch and CUDA versions, cores and the date."""
    if torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
    else:
        device = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{device}; torch {torch.__version__}; {cores} cores; Python {platform.python_version()}; {date.today()}"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """The most GPU memory tensors held since the last reset; None on a CPU."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def timed(action: Callable[[], object], device: torch.device) -> float:
    """Seconds `action` takes, including the GPU work it queued."""
    synchronize(device)
    started = time.perf_counter()
    action()
    synchronize(device)
    return time.perf_counter() - started


def format_memory(gib: float | None) -> str:
    return "-" if gib is None else f"{gib:.2f} GiB"


def print_header(*columns: str) -> None:
    """The head of a Markdown table; rows follow with print_row as each is measured."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns), flush=True)


def print_row(*cells: object) -> None:
    print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)
