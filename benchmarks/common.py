"""The harness every benchmark goes through: options, the machine, timing, a Markdown table, the
data it times (synthetic JPEGs, a rated data set, a checkpoint of random weights), test_demo.py run.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

from IQAmodel import IQAModel
from linearityiqa.data.dataset_registry import DataSource
from linearityiqa.data.image_store import available_cores
from linearityiqa.data.info_builders import user_info_from_csv
from linearityiqa.data.info_files import write_info
from linearityiqa.data.synthetic import degrade, draw_degradation, quality_of, render_scene

REPO = Path(__file__).resolve().parents[1]
Result = TypeVar("Result")

# test_demo.py run by this interpreter; its benchmarks' size to resize to, and the JPEGs it scores.
DEMO = [sys.executable, "test_demo.py"]
SIZES = {
    "--resize_size_h": (498, "height after --resize"),
    "--resize_size_w": (664, "width after --resize"),
    "--width": (1024, "width of the JPEGs"),
    "--height": (768, "height of the JPEGs"),
}


def options_parser(doc: str, options: dict[str, tuple]) -> argparse.ArgumentParser:
    return add_options(argparse.ArgumentParser(description=doc.splitlines()[0]), options)


def command_parser(doc: str, commands: dict[str, tuple[Callable, dict[str, tuple]]]) -> argparse.ArgumentParser:
    """A parser described by the first line of `doc`, a sub-command per entry "name": (function, its
    options as `add_options` takes them), described by its docstring's first line; `measure` holds it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    chosen = parser.add_subparsers(dest="command", required=True)
    for name, (measure, options) in commands.items():
        line = measure.__doc__.splitlines()[0]
        add_options(chosen.add_parser(name, help=line, description=line), options).set_defaults(measure=measure)
    return parser


def add_options(parser: argparse.ArgumentParser, options: dict[str, tuple]) -> argparse.ArgumentParser:
    """`parser`, an option added per entry "--name": (default, help[, type or the values allowed]); the
    type is otherwise the default's (None is a string's, and its help says what leaving the option out
    means; False makes a flag). A list, of defaults or of the values allowed, takes one or more values."""
    for name, (default, text, *kind) in options.items():
        if default is False:
            parser.add_argument(name, action="store_true", help=text)
            continue
        listed = isinstance(default, list)
        example = default[0] if listed else default
        given = kind[0] if kind else None  # a type, or the values allowed
        parser.add_argument(
            name,
            default=default,
            type=given if isinstance(given, type) else str if example is None else type(example),
            nargs="+" if listed or isinstance(given, list) else None,
            choices=None if isinstance(given, type) else given,
            help=text.replace("%", "%%") + ("" if default is None else " (default: %(default)s)"),
        )
    return parser


@contextmanager
def work_folder(kept: str | None, prefix: str) -> Iterator[Path]:
    """The folder `kept` (made if need be and left in place), else a temporary one removed at the end."""
    if kept is None:
        with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
            yield Path(temporary)
    else:
        Path(kept).mkdir(parents=True, exist_ok=True)
        yield Path(kept)


def machine() -> str:
    if torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
    else:
        device = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return (
        f"{device}; torch {torch.__version__}; {available_cores()} cores; Python {platform.python_version()}; "
        f"{date.today()}"
    )


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    """The most GPU memory the CUDA caching allocator gave to tensors since the last reset; "-" on a CPU."""
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "-"


def timed(action: Callable[[], Result], device: torch.device | None = None) -> tuple[Result, float]:
    """(what `action` returns, its seconds, including the GPU work it queued: torch.cuda.synchronize)."""
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    result = action()
    if cuda:
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - started


def table(*columns: str) -> Callable[..., None]:
    """Print the head of a Markdown table; the function returned prints a row as each is measured."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns), flush=True)
    return lambda *cells: print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)


def _write_rated_image(path: str, seed: int, width: int, height: int) -> float:
    rng = np.random.default_rng(seed)
    degradation = draw_degradation(rng)
    degrade(render_scene(rng, width, height), degradation, rng).save(path, format="JPEG", quality=95)
    return quality_of(degradation)


def rated_source(work_dir: Path, *, count: int, width: int = 1024, height: int = 768) -> DataSource:
    """A data set of KonIQ-10k's shape: `count` JPEGs scored with their generating quality, split
    70 : 10 : 20 in a `set` column as KonIQ-10k is, written into `work_dir` unless a run left it
    there, by a pool of processes (an image takes about 70 ms on one core)."""
    folder = work_dir / f"rated-{count}-{width}x{height}"
    image_dir, info_path = folder / "images", folder / "info.mat"
    if not info_path.is_file():  # the info file is written last, whole or not at all
        image_dir.mkdir(parents=True, exist_ok=True)
        names = [f"{number:05d}.jpg" for number in range(count)]
        paths = [str(image_dir / name) for name in names]
        with ProcessPoolExecutor(max_workers=available_cores()) as pool:
            qualities = list(
                pool.map(_write_rated_image, paths, range(count), [width] * count, [height] * count, chunksize=8)
            )
        shares = {"training": 0.7, "validation": 0.1, "test": 0.2}
        sets = np.random.default_rng(count).choice([*shares], size=count, p=[*shares.values()])
        with open(folder / "scores.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["image_name", "mos", "set"])
            writer.writerows(zip(names, (f"{100 * quality:.3f}" for quality in qualities), sets))
        write_info(info_path, user_info_from_csv(folder / "scores.csv"))
    return DataSource.open("generated", data_info=info_path, im_dir=image_dir)


def write_images(folder: Path, *, count: int, width: int, height: int) -> list[Path]:
    """`count` JPEGs of random scenes (quality 90), as a camera's photos decode."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"{index:04d}.jpg" for index in range(count)]
    for path in paths:
        render_scene(rng, width, height).save(path, quality=90)
    return paths


@contextmanager
def demo_files(args: argparse.Namespace, prefix: str) -> Iterator[tuple[Path, Path, Path]]:
    """(a temporary folder, one JPEG in it, a folder of --images JPEGs in it) at --width x --height,
    the load average printed before and after: it shows whether another process slowed the command."""
    print(machine())
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with work_folder(None, prefix) as work_dir:
        [image] = write_images(work_dir / "one", count=1, width=args.width, height=args.height)
        write_images(work_dir / "folder", count=args.images, width=args.width, height=args.height)
        yield work_dir, image, work_dir / "folder"
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


def scored_model(folder: Path, arch: str, args: argparse.Namespace) -> tuple[Path, list[str]]:
    """(a checkpoint of `arch` in the authors' layout (model, k, b) written into `folder`, test_demo.py's
    options for it, resized as `args` say); its random weights are seeded, so scores compare across runs."""
    torch.manual_seed(0)
    checkpoint, model = folder / f"{arch}.pth", IQAModel(arch=arch, pretrained=False)
    torch.save({"model": model.state_dict(), "k": [1.0] * 3, "b": [0.0] * 3}, checkpoint)
    size = ["-rs_h", str(args.resize_size_h), "-rs_w", str(args.resize_size_w)]
    return checkpoint, ["--arch", arch, "--trained_model_file", str(checkpoint), "--resize", *size]


def run_seconds(command: list[str]) -> tuple[str, float]:
    """(stdout, wall seconds) of a command that must succeed, run from the repository root."""
    done, seconds = timed(lambda: subprocess.run(command, cwd=REPO, capture_output=True, text=True))
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return done.stdout, seconds
