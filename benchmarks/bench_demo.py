"""Time test_demo.py as a user runs it: one image from process start to score, where that time
goes, and images per second for a folder; with --onnx, test_demo.py --onnx beside it.

    python -m benchmarks.bench_demo                        # resnet50 and resnext101_32x8d at 498x664
    python -m benchmarks.bench_demo --archs resnet18 --repeats 1 --images 4 --resize_size_h 96 --resize_size_w 128

The command runs in a fresh process each time, as a user pays for it, at its default batch size (one
image on a CPU), and so does the breakdown of scoring.load_scorer's steps: imports are only cold in a
new interpreter.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks import common
from IQAmodel import IQAModel
from linearityiqa import load
from linearityiqa.acceleration import evaluation_batch_size, prepare_images, set_memory_format, uses_channels_last
from linearityiqa.data.decoding import ImageSizing, decode_image
from linearityiqa.data.image_transforms import to_uint8_tensor
from linearityiqa.image_scoring import list_images, score_files
from linearityiqa.records.checkpoint import load_checkpoint, load_model_state

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
    "--onnx": (False, "also export each arch with export_onnx.py and time test_demo.py --onnx on the export"),
}
PYTORCH, ONNX = "test_demo.py --trained_model_file ...", "test_demo.py --onnx ..."


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

    loaded = stage("checkpoint load (torch.load)", lambda: load_checkpoint(checkpoint, mmap=True))
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


def scoring_rate(folder: Path, arch: str, checkpoint: Path, args: argparse.Namespace) -> float:
    """Images/s of image_scoring.score_files alone on the folder, the model loaded as test_demo.py loads it."""
    cpu, size = torch.device("cpu"), dict(resize_size_h=args.resize_size_h, resize_size_w=args.resize_size_w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # that scores at this size are not the paper's: random weights here
        batch_size = evaluation_batch_size(None, cpu)  # test_demo.py's default
        scorer = load(checkpoint, arch=arch, resize=True, **size, device=cpu, batch_size=batch_size)
    paths = list_images(str(folder), stdin=sys.stdin)
    score_files(scorer, paths[:1])  # oneDNN prepares its kernels first
    _, seconds = common.timed(lambda: score_files(scorer, paths))
    return len(paths) / seconds


def main(argv: list[str] | None = None) -> None:
    args = common.options_parser(__doc__, OPTIONS).parse_args(argv)
    size = f"{args.resize_size_h}x{args.resize_size_w}"
    with common.demo_files(args, "bench_demo-") as (work_dir, image, folder):
        models = {arch: common.scored_model(work_dir, arch, args) for arch in args.archs}
        # the ways to score, as a user types them; a row each
        commands = {PYTORCH: {arch: [*common.DEMO, *options] for arch, (_, options) in models.items()}}
        if args.onnx:  # test_demo.py --onnx on each arch's export_onnx.py export
            print(f"\nExports (random weights, --resize to {size})\n")
            row = common.table("arch", "export s", "file MiB")
            commands[ONNX] = {}
            for arch, (_, options) in models.items():
                onnx = work_dir / f"{arch}.onnx"
                _, seconds = common.run_seconds([sys.executable, "export_onnx.py", *options, "--output", str(onnx)])
                row(arch, f"{seconds:.1f}", f"{onnx.stat().st_size / 2**20:.0f}")
                commands[ONNX][arch] = [*common.DEMO, "--onnx", str(onnx)]
        ways = [(arch, way, commands[way][arch]) for arch in args.archs for way in commands]
        _, python_s = common.run_seconds([sys.executable, "-c", "pass"])

        print(
            f"\nOne {args.width}x{args.height} JPEG, --resize to {size}: wall time of the whole command, "
            f"median of {args.repeats}\n"
        )
        row = common.table("arch", "way", "median s", "runs s", "score")
        medians = {}
        for arch, way, command in ways:
            outputs, seconds = zip(*[common.run_seconds([*command, "--img", str(image)]) for _ in range(args.repeats)])
            medians[arch, way] = statistics.median(seconds)
            score = outputs[0].strip().rsplit(" ", 1)[-1]
            row(arch, way, f"{medians[arch, way]:.2f}", " ".join(f"{each:.2f}" for each in seconds), score)

        print(
            f"\nWhere the time goes in PyTorch (fresh process each, median of {args.repeats}; Python start and "
            f"exit: `python -c pass` takes {python_s:.2f} s)\n"
        )
        stages = {arch: breakdown(image, arch, checkpoint, args) for arch, (checkpoint, _) in models.items()}
        for arch, seconds in stages.items():  # the second forward pass is not part of the command
            seconds["rest: Python start, options, scoring loop, exit"] = (
                medians[arch, PYTORCH] - sum(seconds.values()) + seconds[SECOND_FORWARD]
            )
        row = common.table("stage", *(f"{arch} s" for arch in args.archs))
        for name in stages[args.archs[0]]:
            row(name, *(f"{stages[arch][name]:.3f}" for arch in args.archs))

        if args.images:
            print(f"\nFolder of {args.images} JPEGs, --resize to {size}, default --eval_batch_size\n")
            row = common.table("arch", "way", "command s", "command images/s", "score_files images/s")
            for arch, way, command in ways:
                _, wall = common.run_seconds([*command, "--img", str(folder), "-o", str(work_dir / "scores.csv")])
                alone = f"{scoring_rate(folder, arch, models[arch][0], args):.2f}" if way == PYTORCH else "-"
                row(arch, way, f"{wall:.2f}", f"{args.images / wall:.2f}", alone)


if __name__ == "__main__":
    main()
