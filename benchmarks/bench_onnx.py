"""test_demo.py with PyTorch against test_demo.py --onnx, side by side in one run: one image from
process start to score, and images per second for a folder, as a user runs each.

    python -m benchmarks.bench_onnx                       # resnet50 and resnext101_32x8d at 498x664
    python -m benchmarks.bench_onnx --archs resnet18 --repeats 1 --images 4 --resize_size_h 96 --resize_size_w 128

Each arch's checkpoint of random weights and its export_onnx.py export (same resize) are run in
a fresh process each time, on the same JPEGs, at their default batch size (one image on a CPU).
"""

from __future__ import annotations

import statistics
import sys

from benchmarks.bench_demo import OPTIONS
from benchmarks.common import DEMO, demo_files, one_image, options_parser, run_seconds, scored_model, table


def main(argv: list[str] | None = None) -> None:
    args = options_parser(__doc__, OPTIONS).parse_args(argv)
    size = f"{args.resize_size_h}x{args.resize_size_w}"
    with demo_files(args, "bench_onnx-") as (work_dir, image, folder):
        print(f"\nExports (random weights, --resize to {size})\n")
        row = table("arch", "export s", "file MiB")
        ways = {}
        for arch in args.archs:
            _, model = scored_model(work_dir, arch, args)
            onnx = work_dir / f"{arch}.onnx"
            _, seconds = run_seconds([sys.executable, "export_onnx.py", *model, "--output", str(onnx)])
            row(arch, f"{seconds:.1f}", f"{onnx.stat().st_size / 2**20:.0f}")
            # the two ways to score, as a user types them
            ways[arch] = {"PyTorch": [*DEMO, *model], "onnxruntime": [*DEMO, "--onnx", str(onnx)]}
        print(
            f"\nOne {args.width}x{args.height} JPEG, --resize to {size}: process start to score, median of "
            f"{args.repeats}; a folder of {args.images} JPEGs: images/s of the whole command\n"
        )
        row = table("arch", "path", "one image s", "score", "folder s", "folder images/s")
        for arch, commands in ways.items():
            for way, command in commands.items():
                seconds, score = one_image(command, image, args.repeats)
                _, wall = run_seconds([*command, "--img", str(folder), "-o", str(work_dir / "s.csv")])
                row(arch, way, f"{statistics.median(seconds):.2f}", score, f"{wall:.2f}", f"{args.images / wall:.2f}")


if __name__ == "__main__":
    main()
