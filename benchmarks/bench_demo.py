"""Time test_demo.py as a user runs it: one image from process start to score, where that time
goes, and images per second for a folder.

    python -m benchmarks.bench_demo                        # resnet50 and resnext101_32x8d at 498x664
    python -m benchmarks.bench_demo --archs resnet18 --repeats 1 --images 4 --resize_size_h 96 --resize_size_w 128

Each arch gets a checkpoint of random weights (common.py). The command runs in a fresh process
each time, as a user pays for it, and so does the breakdown of scoring.load_scorer's steps: imports
are only cold in a new interpreter. Folder scoring is timed as the whole command (default
--eval_batch_size) and as image_scoring.score_files alone on a model already loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks import common
from IQAmodel import IQAModel
from linearityiqa.acceleration import evaluation_batch_size, prepare_images, set_memory_format, uses_channels_last
from linearityiqa.cli.options import get_demo_parser
from linearityiqa.data.decoding import ImageSizing, decode_image
from linearityiqa.data.image_transforms import to_uint8_tensor
from linearityiqa.image_scoring import list_images, score_files
from linearityiqa.options import MODEL_SETTINGS
from linearityiqa.records.checkpoint import load_checkpoint, load_model_state
from linearityiqa.scoring import image_sizing, load_scorer

SECOND_FORWARD = "second forward (not in the command)"
# Seconds of the imports in a fresh interpreter: torch, torchvision (test_demo needs it through
# IQAmodel and image_store), the rest; with the cycle collector paused, as test_demo.py imports them.
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
OPTIONS = {
    "--archs": (["resnet50", "resnext101_32x8d"], "backbones to time"),
    "--repeats": (5, "runs of each timed command; the median is reported"),
    "--images": (32, "images in the scored folder; 0 skips folder scoring"),
    **common.SIZES,
}


def stage_seconds(arch: str, checkpoint: str, image: str, height: str, width: str) -> dict[str, float]:
    """Seconds of each step of scoring one image, as scoring.load_scorer and image_scoring.score_files take them."""
    cpu = torch.device("cpu")
    channels_last = uses_channels_last(cpu)
    seconds = {}

    def stage(name: str, action: Callable[[], Any]) -> Any:
        result, seconds[name] = common.timed(action)
        return result

    def build() -> torch.nn.Module:
        with torch.device("meta"):
            model = IQAModel(arch=arch, pretrained=False)
        return model.to_empty(device=cpu)

    def forward() -> None:
        with torch.inference_mode():
            model(prepare_images(pixels[None], cpu, channels_last=channels_last))

    loaded = stage("checkpoint load (torch.load)", lambda: load_checkpoint(checkpoint, map_location="cpu", mmap=True))
    model = stage("model build (meta, to_empty)", build)
    stage("weight copy (load_state_dict)", lambda: load_model_state(model.eval(), loaded, checkpoint))
    stage(
        f"memory format (channels_last: {channels_last})", lambda: set_memory_format(model, channels_last=channels_last)
    )
    sizing = ImageSizing(resize_hw=(int(height), int(width)))
    pixels = stage("decode + resize", lambda: to_uint8_tensor(decode_image(image, sizing)))
    stage("first forward", forward)
    stage(SECOND_FORWARD, forward)
    return seconds


def breakdown(image: Path, arch: str, checkpoint: Path, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds of each stage over `args.repeats` fresh processes."""
    child = [sys.executable, "-c", _IMPORTS_CHILD, arch, str(checkpoint), str(image)]
    size = [str(args.resize_size_h), str(args.resize_size_w)]
    runs = [json.loads(common.run_seconds(child + size)[0]) for _ in range(args.repeats)]
    return {stage: statistics.median(run[stage] for run in runs) for stage in runs[0]}


def folder_rates(
    folder: Path, command: list[str], arch: str, checkpoint: Path, args: argparse.Namespace
) -> tuple[float, float, float]:
    """(command wall seconds, its images/s, images/s of score_files alone) for the folder."""
    defaults = vars(get_demo_parser().parse_args([]))
    _, wall = common.run_seconds([*command, "--img", str(folder), "-o", str(folder.parent / "scores.csv")])
    requested = {**{name: defaults[name] for name in MODEL_SETTINGS}, "arch": arch}
    scorer = load_scorer(str(checkpoint), requested=requested, defaults=defaults, device=torch.device("cpu"))
    sizing = image_sizing(
        {}, resize=True, resize_size_h=args.resize_size_h, resize_size_w=args.resize_size_w, defaults=defaults
    )
    batch_size = evaluation_batch_size(defaults["eval_batch_size"], scorer.device)
    paths = list_images(str(folder), stdin=sys.stdin)
    score_files(scorer, paths[:1], sizing=sizing, batch_size=batch_size)  # oneDNN prepares its kernels first
    _, seconds = common.timed(lambda: score_files(scorer, paths, sizing=sizing, batch_size=batch_size))
    return wall, len(paths) / wall, len(paths) / seconds


def main(argv: list[str] | None = None) -> None:
    args = common.options_parser(__doc__, OPTIONS).parse_args(argv)
    size = f"{args.resize_size_h}x{args.resize_size_w}"
    with common.demo_files(args, "bench_demo-") as (work_dir, image, folder):
        models = {arch: common.scored_model(work_dir, arch, args) for arch in args.archs}
        commands = {arch: [*common.DEMO, *options] for arch, (_, options) in models.items()}
        _, python_s = common.run_seconds([sys.executable, "-c", "pass"])

        print(
            f"\nOne {args.width}x{args.height} JPEG, --resize to {size}: wall time of the whole command, "
            f"median of {args.repeats}\n"
        )
        row = common.table("arch", "setting", "median s", "runs s", "score")
        medians = {}
        for arch, command in commands.items():
            seconds, score = common.one_image(command, image, args.repeats)
            medians[arch] = statistics.median(seconds)
            setting = f"test_demo.py --img <jpg> --resize --arch {arch}"
            row(arch, setting, f"{medians[arch]:.2f}", " ".join(f"{each:.2f}" for each in seconds), score)

        print(
            f"\nWhere the time goes (fresh process each, median of {args.repeats}; Python start and exit: "
            f"`python -c pass` takes {python_s:.2f} s)\n"
        )
        stages = {arch: breakdown(image, arch, checkpoint, args) for arch, (checkpoint, _) in models.items()}
        row = common.table("stage", *(f"{arch} s" for arch in args.archs))
        for name in stages[args.archs[0]]:
            row(name, *(f"{stages[arch][name]:.3f}" for arch in args.archs))
        # The second forward pass is not part of the command.
        rest = [medians[arch] - sum(stages[arch].values()) + stages[arch][SECOND_FORWARD] for arch in args.archs]
        row("rest: Python start, options, scoring loop, exit", *(f"{seconds:.3f}" for seconds in rest))

        if args.images:
            print(f"\nFolder of {args.images} JPEGs, --resize to {size}, default --eval_batch_size\n")
            row = common.table("arch", "setting", "command s", "command images/s", "score_files images/s")
            for arch, (checkpoint, _) in models.items():
                wall, command_rate, scoring_rate = folder_rates(folder, commands[arch], arch, checkpoint, args)
                row(arch, f"{args.images} images", f"{wall:.2f}", f"{command_rate:.2f}", f"{scoring_rate:.2f}")


if __name__ == "__main__":
    main()
