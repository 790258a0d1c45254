"""What the benchmarks of test_demo.py share: each command runs in a fresh process, as a user pays
for it, on JPEGs of synthetic scenes and a checkpoint of random weights in the authors' layout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import REPO, load_watched, timed

# test_demo.py's benchmarks: the size a command resizes to, and the JPEGs it scores.
SIZES = {
    "--resize_size_h": (498, "height after --resize"),
    "--resize_size_w": (664, "width after --resize"),
    "--width": (1024, "width of the JPEGs"),
    "--height": (768, "height of the JPEGs"),
}


def run_seconds(command: list[str]) -> tuple[str, float]:
    """(stdout, wall seconds) of a command run from the repository root; it must succeed."""
    done, seconds = timed(lambda: subprocess.run(command, cwd=REPO, capture_output=True, text=True))
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return done.stdout, seconds


def one_image(command: list[str], image: Path, repeats: int) -> tuple[list[float], str]:
    """Wall seconds of each of `repeats` runs of test_demo.py `command` on `image`, from process start
    to score, and the score it printed (the last word of its output)."""
    runs = [run_seconds([*command, "--img", str(image)]) for _ in range(repeats)]
    return [seconds for _, seconds in runs], runs[0][0].strip().rsplit(" ", 1)[-1]


@contextmanager
def demo_files(args: argparse.Namespace, prefix: str) -> Iterator[tuple[Path, Path, Path]]:
    """(a temporary folder, one JPEG in it, a folder of --images JPEGs in it) of synthetic scenes at
    --width x --height, the machine and its load printed around."""
    with load_watched(), tempfile.TemporaryDirectory(prefix=prefix) as work:
        work_dir = Path(work)
        [image] = write_images(work_dir / "one", count=1, width=args.width, height=args.height)
        write_images(work_dir / "folder", count=args.images, width=args.width, height=args.height)
        yield work_dir, image, work_dir / "folder"


def write_images(folder: Path, *, count: int, width: int, height: int) -> list[Path]:
    """`count` JPEGs of random scenes (quality 90), as a camera's photos decode."""
    from linearityiqa.data.synthetic import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"{index:04d}.jpg" for index in range(count)]
    for path in paths:
        render_scene(rng, width, height).save(path, quality=90)
    return paths


def scored_model(folder: Path, arch: str, args: argparse.Namespace) -> tuple[Path, list[str]]:
    """(a checkpoint of `arch` written into `folder`, test_demo.py's options for it, resized as `args` say).

    Its weights are random, seeded so that a score is comparable across runs, in the authors'
    layout (model, k, b).
    """
    from IQAmodel import IQAModel

    torch.manual_seed(0)
    checkpoint = folder / f"{arch}.pth"
    torch.save(
        {"model": IQAModel(arch=arch, pretrained=False).state_dict(), "k": [1.0] * 3, "b": [0.0] * 3}, checkpoint
    )
    size = ["-rs_h", str(args.resize_size_h), "-rs_w", str(args.resize_size_w)]
    return checkpoint, ["--arch", arch, "--trained_model_file", str(checkpoint), "--resize", *size]


def demo_command(*options: str) -> list[str]:
    """test_demo.py with `options`, run by this interpreter."""
    return [sys.executable, "test_demo.py", *options]
