"""What every benchmark shares: its options, the machine it ran on, honest timing and a Markdown table.

Timing on a GPU must wait for the queued kernels (torch.cuda.synchronize) before reading the
clock; peak memory is what the CUDA caching allocator gave to tensors, reset per setting.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Callable, TypeVar

import torch

REPO = Path(__file__).resolve().parents[1]
Result = TypeVar("Result")

# Options several benchmarks share, as options_parser takes them.
DEVICE = {"--device": ("cuda" if torch.cuda.is_available() else "cpu", "device", ("cpu", "cuda"))}
WORK_DIR = {"--work-dir": (None, "folder for the images and their cache, kept for later runs (default: temporary)")}


def options_parser(doc: str, options: dict[str, tuple], add_help: bool = True) -> argparse.ArgumentParser:
    """A parser described by the first line of `doc`, with an option per entry of `options`.

    Args:
        doc: the benchmark's docstring.
        options: "--name": (default, help[, type or the values allowed]); the type is otherwise
            the default's (a list takes one or more values; None is a string's, and its help says
            what leaving the option out means).
        add_help: whether -h is an option.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0], add_help=add_help)
    for name, (default, text, *kind) in options.items():
        listed = isinstance(default, list)
        example = default[0] if listed else default
        given = kind[0] if kind else None  # a type, or the values allowed
        parser.add_argument(
            name,
            default=default,
            type=given if isinstance(given, type) else str if example is None else type(example),
            nargs="+" if listed else None,
            choices=None if isinstance(given, type) else given,
            help=text.replace("%", "%%") + ("" if default is None else " (default: %(default)s)"),
        )
    return parser


@contextmanager
def work_folder(kept: str | None, prefix: str) -> Iterator[Path]:
    """The folder `kept` (made if need be and left in place), else a temporary one removed at the end."""
    folder = Path(kept or tempfile.mkdtemp(prefix=prefix))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        if kept is None:
            shutil.rmtree(folder, ignore_errors=True)


def machine() -> str:
    """One line: device, PyTorch and CUDA versions, cores and the date."""
    if torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
    else:
        device = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{device}; torch {torch.__version__}; {cores} cores; Python {platform.python_version()}; {date.today()}"


@contextmanager
def load_watched() -> Iterator[None]:
    """The machine, and the load average before and after: another process on a few cores slows
    every stage of a command, and the load average shows whether one ran."""
    print(machine())
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    yield
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


def synchronize(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    """The most GPU memory tensors held since the last reset; "-" on a CPU."""
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "-"


def timed(action: Callable[[], Result], device: torch.device | None = None) -> tuple[Result, float]:
    """(what `action` returns, the seconds it took, including the GPU work it queued)."""
    synchronize(device)
    started = time.perf_counter()
    result = action()
    synchronize(device)
    return result, time.perf_counter() - started


def table(*columns: str) -> Callable[..., None]:
    """Print the head of a Markdown table; the function returned prints a row as each is measured."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns), flush=True)
    return lambda *cells: print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)
