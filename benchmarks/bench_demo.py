"""Time test_demo.py as a user runs it: one image from process start to score, where that time
goes, and images per second for a folder.

    python -m benchmarks.bench_demo                        # resnet50 and resnext101_32x8d at 498x664
    python -m benchmarks.bench_demo --archs resnet18 --repeats 1 --images 4 --resize_size_h 96 --resize_size_w 128

Each arch gets a checkpoint of random weights in the authors' layout (model, k, b) in a
temporary folder, with JPEGs of synthetic scenes (synthetic.render_scene). The whole command
runs in a fresh process each time, as a user pays for it, and so does the breakdown: its
imports are only cold in a new interpreter. The breakdown takes the steps of
scoring.load_scorer one by one; what remains of the command's time is Python's own start and
exit. Folder scoring is timed twice: the whole command on the folder (at the default
--eval_batch_size), and image_scoring.score_files alone on a model already loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmarks.common import machine, print_header, print_row

REPO = Path(__file__).resolve().parents[1]
SECOND_FORWARD = "second forward (not in the command)"
# Seconds of the imports in a fresh interpreter, before anything else loads: torch, then
# torchvision (which test_demo needs through IQAmodel and image_store), then the rest; with the
# cycle collector paused and then frozen, as test_demo.py run as a script imports them.
_IMPORTS_CHILD = """
import gc, json, sys, time
started = time.perf_counter()
gc.disable()
import torch
after_torch = time.perf_counter()
import torchvision
after_torchvision = time.perf_counter()
import test_demo
gc.freeze()
gc.enable()
imported = time.perf_counter()
from benchmarks.bench_demo import stage_seconds
seconds = {'import torch': after_torch - started, 'import torchvision': after_torchvision - after_torch,
           'import test_demo (rest)': imported - after_torchvision}
seconds.update(stage_seconds(*sys.argv[1:]))
print(json.dumps(seconds))
"""


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Time test_demo.py on one image and on a folder.", add_help=add_help)
    parser.add_argument(
        "--archs", nargs="+", default=["resnet50", "resnext101_32x8d"], help="backbones to time (default: %(default)s)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="runs of each timed command; the median is reported (default: %(default)s)",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=32,
        help="images in the scored folder; 0 skips folder scoring (default: %(default)s)",
    )
    parser.add_argument("--resize_size_h", type=int, default=498, help="height after --resize (default: %(default)s)")
    parser.add_argument("--resize_size_w", type=int, default=664, help="width after --resize (default: %(default)s)")
    parser.add_argument("--width", type=int, default=1024, help="width of the JPEGs (default: %(default)s)")
    parser.add_argument("--height", type=int, default=768, help="height of the JPEGs (default: %(default)s)")
    return parser


def write_checkpoint(folder: Path, arch: str) -> Path:
    """A checkpoint of random weights in the authors' layout; seeded, so a score is comparable across runs."""
    from IQAmodel import IQAModel

    torch.manual_seed(0)
    model = IQAModel(arch=arch, pretrained=False)
    path = folder / f"{arch}.pth"
    torch.save({"model": model.state_dict(), "k": [1.0, 1.0, 1.0], "b": [0.0, 0.0, 0.0]}, path)
    return path


def write_images(folder: Path, *, count: int, width: int, height: int) -> list[Path]:
    """`count` JPEGs of random scenes (quality 90), as a camera's photos decode."""
    from linearityiqa.data.synthetic import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"{index:04d}.jpg" for index in range(count)]
    for path in paths:
        render_scene(rng, width, height).save(path, quality=90)
    return paths


def timed_result(action: Callable[[], object]) -> tuple[object, float]:
    """(what `action` returns, its seconds): the CPU needs no synchronizing."""
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def run_seconds(command: list[str]) -> tuple[str, float]:
    """(stdout, wall seconds) of a command run from the repository root; it must succeed."""
    done, seconds = timed_result(lambda: subprocess.run(command, cwd=REPO, capture_output=True, text=True))
    if done.returncode != 0:
        raise SystemExit(f"bench_demo: {' '.join(command)} failed:\n{done.stderr}")
    return done.stdout, seconds


def demo_command(image: Path, arch: str, checkpoint: Path, args: argparse.Namespace) -> list[str]:
    size = ["-rs_h", str(args.resize_size_h), "-rs_w", str(args.resize_size_w)]
    return [sys.executable, "test_demo.py", "--img", str(image), "--resize", "--arch", arch,
            "--trained_model_file", str(checkpoint), *size]  # fmt: skip


def stage_seconds(arch: str, checkpoint: str, image: str, height: str, width: str) -> dict[str, float]:
    """Seconds of each step of scoring one image, as scoring.load_scorer and image_scoring.score_files take them."""
    from IQAmodel import IQAModel
    from linearityiqa.acceleration import prepare_images, set_memory_format, uses_channels_last
    from linearityiqa.data.decoding import ImageSizing, decode_image
    from linearityiqa.data.image_transforms import to_uint8_tensor
    from linearityiqa.records.checkpoint import load_checkpoint, load_model_state

    cpu = torch.device("cpu")
    channels_last = uses_channels_last(cpu)
    loaded, load_s = timed_result(lambda: load_checkpoint(checkpoint, map_location="cpu", mmap=True))

    def build() -> torch.nn.Module:
        with torch.device("meta"):
            model = IQAModel(arch=arch, pretrained=False)
        return model.to_empty(device=cpu)

    model, build_s = timed_result(build)
    _, copy_s = timed_result(lambda: load_model_state(model.eval(), loaded, checkpoint))
    _, layout_s = timed_result(lambda: set_memory_format(model, channels_last=channels_last))
    sizing = ImageSizing(resize_hw=(int(height), int(width)))
    pixels, decode_s = timed_result(lambda: to_uint8_tensor(decode_image(image, sizing)))

    def forward() -> None:
        with torch.inference_mode():
            model(prepare_images(pixels[None], cpu, channels_last=channels_last))

    _, first_s = timed_result(forward)
    _, second_s = timed_result(forward)
    return {
        "checkpoint load (torch.load)": load_s,
        "model build (meta, to_empty)": build_s,
        "weight copy (load_state_dict)": copy_s,
        f"memory format (channels_last: {channels_last})": layout_s,
        "decode + resize": decode_s,
        "first forward": first_s,
        SECOND_FORWARD: second_s,
    }


def breakdown(image: Path, arch: str, checkpoint: Path, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds of each stage over `args.repeats` fresh processes."""
    runs = []
    for _ in range(args.repeats):
        stdout, _ = run_seconds(
            [
                sys.executable,
                "-c",
                _IMPORTS_CHILD,
                arch,
                str(checkpoint),
                str(image),
                str(args.resize_size_h),
                str(args.resize_size_w),
            ]
        )
        runs.append(json.loads(stdout))
    return {stage: statistics.median(run[stage] for run in runs) for stage in runs[0]}


def one_image(image: Path, arch: str, checkpoint: Path, args: argparse.Namespace) -> tuple[list[float], str]:
    """Wall seconds of each run of the README's command, and the score it printed."""
    outputs = [run_seconds(demo_command(image, arch, checkpoint, args)) for _ in range(args.repeats)]
    return [seconds for _, seconds in outputs], outputs[0][0].strip().rsplit(" ", 1)[-1]


def folder_rates(folder: Path, arch: str, checkpoint: Path, args: argparse.Namespace) -> tuple[float, float, float]:
    """(command wall seconds, its images/s, images/s of score_files alone) for the folder."""
    from linearityiqa.acceleration import evaluation_batch_size
    from linearityiqa.cli.options import get_demo_parser
    from linearityiqa.image_scoring import list_images, score_files
    from linearityiqa.records.checkpoint import MODEL_SETTINGS
    from linearityiqa.scoring import image_sizing, load_scorer

    defaults = vars(get_demo_parser().parse_args([]))
    command = demo_command(folder, arch, checkpoint, args) + ["-o", str(folder.parent / "scores.csv")]
    _, wall = run_seconds(command)
    requested = {**{name: defaults[name] for name in MODEL_SETTINGS}, "arch": arch}
    scorer = load_scorer(str(checkpoint), requested=requested, defaults=defaults, device=torch.device("cpu"))
    sizing = image_sizing(
        {}, resize=True, resize_size_h=args.resize_size_h, resize_size_w=args.resize_size_w, defaults=defaults
    )
    batch_size = evaluation_batch_size(defaults["eval_batch_size"], scorer.device)
    paths = list_images(str(folder), stdin=sys.stdin)

    def score(chosen: list[str]) -> None:
        score_files(scorer, chosen, sizing=sizing, batch_size=batch_size)

    score(paths[:1])  # oneDNN prepares its kernels on the first forward pass
    _, seconds = timed_result(lambda: score(paths))
    return wall, len(paths) / wall, len(paths) / seconds


def main(args: argparse.Namespace) -> None:
    print(machine())
    # Another process on these few cores slows every stage; the load average shows whether one ran.
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    size = f"{args.resize_size_h}x{args.resize_size_w}"
    with tempfile.TemporaryDirectory(prefix="bench_demo-") as work:
        work_dir = Path(work)
        [image] = write_images(work_dir / "one", count=1, width=args.width, height=args.height)
        folder = work_dir / "folder"
        if args.images:
            write_images(folder, count=args.images, width=args.width, height=args.height)
        checkpoints = {arch: write_checkpoint(work_dir, arch) for arch in args.archs}
        _, python_s = timed_result(lambda: run_seconds([sys.executable, "-c", "pass"]))

        print(
            f"\nOne {args.width}x{args.height} JPEG, --resize to {size}: wall time of the whole command, "
            f"median of {args.repeats}\n"
        )
        print_header("arch", "setting", "median s", "runs s", "score")
        medians = {}
        for arch, checkpoint in checkpoints.items():
            seconds, score = one_image(image, arch, checkpoint, args)
            medians[arch] = statistics.median(seconds)
            print_row(
                arch,
                f"test_demo.py --img <jpg> --resize --arch {arch}",
                f"{medians[arch]:.2f}",
                " ".join(f"{s:.2f}" for s in seconds),
                score,
            )

        print(
            f"\nWhere the time goes (fresh process each, median of {args.repeats}; Python start and exit: "
            f"`python -c pass` takes {python_s:.2f} s)\n"
        )
        stages = {arch: breakdown(image, arch, checkpoint, args) for arch, checkpoint in checkpoints.items()}
        print_header("stage", *(f"{arch} s" for arch in args.archs))
        for name in next(iter(stages.values())):
            print_row(name, *(f"{stages[arch][name]:.3f}" for arch in args.archs))
        # The second forward pass is not part of the command.
        rest = {
            arch: medians[arch] - sum(seconds for name, seconds in stages[arch].items() if name != SECOND_FORWARD)
            for arch in args.archs
        }
        print_row("rest: Python start, options, scoring loop, exit", *(f"{rest[arch]:.3f}" for arch in args.archs))

        if args.images:
            print(f"\nFolder of {args.images} JPEGs, --resize to {size}, default --eval_batch_size\n")
            print_header("arch", "setting", "command s", "command images/s", "score_files images/s")
            for arch, checkpoint in checkpoints.items():
                wall, command_rate, scoring_rate = folder_rates(folder, arch, checkpoint, args)
                print_row(arch, f"{args.images} images", f"{wall:.2f}", f"{command_rate:.2f}", f"{scoring_rate:.2f}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
