"""test_demo.py with PyTorch against test_demo.py --onnx, side by side in one run: one image from
process start to score, and images per second for a folder, as a user runs each.

    python -m benchmarks.bench_onnx                       # resnet50 and resnext101_32x8d at 498x664
    python -m benchmarks.bench_onnx --archs resnet18 --repeats 1 --images 4 --resize_size_h 96 --resize_size_w 128

Each arch gets a checkpoint of random weights (bench_demo.write_checkpoint) and its export by
export_onnx.py with the same resize; both commands run in a fresh process each time, on the
same JPEGs of synthetic scenes, at their default batch size (one image at a time on a CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_demo import get_args_parser, run_seconds, write_checkpoint, write_images
from benchmarks.common import machine, print_header, print_row


def commands(arch: str, checkpoint: Path, onnx: Path, args: argparse.Namespace) -> dict[str, list[str]]:
    """The two ways to score, as a user types them (the image or folder and -o come after)."""
    size = ["--resize", "-rs_h", str(args.resize_size_h), "-rs_w", str(args.resize_size_w)]
    return {
        "PyTorch": [sys.executable, "test_demo.py", "--arch", arch, "--trained_model_file", str(checkpoint), *size],
        "onnxruntime": [sys.executable, "test_demo.py", "--onnx", str(onnx)],
    }


def export(arch: str, checkpoint: Path, args: argparse.Namespace) -> tuple[Path, float, float]:
    """(the .onnx file, seconds export_onnx.py took, its size in MiB)."""
    onnx = checkpoint.with_suffix(".onnx")
    size = ["--resize", "-rs_h", str(args.resize_size_h), "-rs_w", str(args.resize_size_w)]
    command = [sys.executable, "export_onnx.py", "--trained_model_file", str(checkpoint), "--arch", arch, *size]
    _, seconds = run_seconds([*command, "--output", str(onnx)])
    return onnx, seconds, onnx.stat().st_size / 2**20


def one_image(command: list[str], image: Path, repeats: int) -> tuple[float, str]:
    """(median wall seconds from process start to the printed score, the score)."""
    runs = [run_seconds([*command, "--img", str(image)]) for _ in range(repeats)]
    return statistics.median(seconds for _, seconds in runs), runs[0][0].strip().rsplit(" ", 1)[-1]


def main(args: argparse.Namespace) -> None:
    print(machine())
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    size = f"{args.resize_size_h}x{args.resize_size_w}"
    with tempfile.TemporaryDirectory(prefix="bench_onnx-") as work:
        work_dir = Path(work)
        [image] = write_images(work_dir / "one", count=1, width=args.width, height=args.height)
        folder = work_dir / "folder"
        write_images(folder, count=args.images, width=args.width, height=args.height)
        print(f"\nExports (random weights, --resize to {size})\n")
        print_header("arch", "export s", "file MiB")
        runs = {}
        for arch in args.archs:
            checkpoint = write_checkpoint(work_dir, arch)
            onnx, seconds, mebibytes = export(arch, checkpoint, args)
            print_row(arch, f"{seconds:.1f}", f"{mebibytes:.0f}")
            runs[arch] = commands(arch, checkpoint, onnx, args)
        print(
            f"\nOne {args.width}x{args.height} JPEG, --resize to {size}: process start to score, median of "
            f"{args.repeats}; a folder of {args.images} JPEGs: images/s of the whole command\n"
        )
        print_header("arch", "path", "one image s", "score", "folder s", "folder images/s")
        for arch, ways in runs.items():
            for way, command in ways.items():
                seconds, score = one_image(command, image, args.repeats)
                _, wall = run_seconds([*command, "--img", str(folder), "-o", str(work_dir / "s.csv")])
                print_row(arch, way, f"{seconds:.2f}", score, f"{wall:.2f}", f"{args.images / wall:.2f}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
