"""test_demo.py on a folder, in its own process and on Ray with 1 and 2 workers, side by side in one run.

    python -m benchmarks.bench_scale                    # resnet50 at 498x664, folders of 8 and 64 JPEGs
    python -m benchmarks.bench_scale --arch resnet18 --images 16 --resize_size_h 96 --resize_size_w 128

Each way scores a small and a large folder of the same JPEGs, each command in a fresh process:
the difference of their times is that of the extra images, so the steady rate (images/s) and the
fixed cost of a run come apart. Ray runs on a local cluster started once with `ray start`.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from benchmarks import common
from linearityiqa.data.image_store import available_cores
from linearityiqa.image_scoring import ImageScore
from linearityiqa.records.score_output import ScoringRun, paths_sha256, score_writer

# The `ray` command, also where Ray was installed into a folder of its own (pip --target), whose
# scripts are not beside the interpreter.
RAY = [sys.executable, "-m", "ray.scripts.scripts"]
PLAIN = "plain (one process)"
OPTIONS = {
    "--arch": ("resnet50", "backbone"),
    "--images": (64, "JPEGs of the large folder"),
    "--small": (8, "JPEGs of the small folder"),
    "--window": (8, "test_demo.py --window: Ray's unit of work"),
    **common.SIZES,
    "--per_gpu_rate": (None, "images/s of one GPU, measured elsewhere, for the projection (default: the plain rate "
                       "measured here)", float),
}  # fmt: skip


def start_cluster(cpus: int) -> tuple[str, float]:
    """(the address of a local Ray cluster of `cpus` CPUs, seconds `ray start` took)."""
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [*RAY, "start", "--head", f"--port={port}", f"--num-cpus={cpus}", "--include-dashboard=false",
               "--disable-usage-stats"]  # fmt: skip
    _, seconds = common.run_seconds(command)
    return f"127.0.0.1:{port}", seconds


def measure(way: str, command: list[str], folders: dict[Path, int], output: Path, row: Callable) -> float:
    """The steady images/s of one way, from its times on the small and the large folder (each with its
    count of images), its row printed by `row` with the fixed seconds of a run (start, model, workers)."""
    seconds = []
    for folder in folders:
        seconds.append(common.run_seconds([*command, "--img", str(folder), "-o", str(output)])[1])
        output.unlink()
    (small_s, large_s), (small, large) = seconds, folders.values()
    if large_s <= small_s:  # a run's noise outweighs the extra images: too few of them to tell a rate
        row(way, "n/a (pass more --images)", "n/a", "n/a")
        return math.nan
    rate = (large - small) / (large_s - small_s)
    row(way, f"{rate:.2f}", f"{large_s - large / rate:.1f}", f"{large_s:.1f}")
    return rate


def writer_rates(work: Path, *, images: int = 200_000, window: int = 1024) -> dict[str, float]:
    """Rows per second that the driver writes (records/score_output.py), by format: what caps a
    cluster however many workers it has, since every row passes through the driver."""
    paths = [f"/photos/{index:09d}.jpg" for index in range(images)]
    results = [ImageScore(path, score=50.0 + index / images) for index, path in enumerate(paths)]
    run = ScoringRun(
        model="checkpoint m.pth",
        model_sha256="0" * 64,
        precision="--opt_level O0",
        resize="native",
        max_pixels=1,
        images=images,
        images_sha256=paths_sha256(paths),
        heads=False,
        window=window,
        scale="a benchmark",
    )

    def write(output: Path) -> None:
        with score_writer(str(output), run, paths=paths, resume=False) as writer:
            for first in range(0, images, window):
                writer.write(results[first : first + window])
            writer.finish()

    return {kind: images / common.timed(partial(write, work / f"rows.{kind}"))[1] for kind in ("csv", "parquet")}


def projection(per_worker: float, source: str, efficiency: float, cap: float) -> None:
    """A cluster's images/s: workers x `per_worker` x `efficiency`, at most `cap` (the driver's rows/s)."""
    if not (per_worker > 0 and efficiency > 0):
        print("\nNo projection: a steady rate was not told apart from the noise of a run (pass more --images)")
        return
    print(
        f"\nProjection (arithmetic, not a measurement): {per_worker:,.1f} images/s a worker ({source}) x workers x "
        f"{efficiency:.2f}, at most the {cap:,.0f} rows/s the driver writes\n"
    )
    row = common.table("workers", "images/s", "a million images", "a billion images")
    for workers in (1, 8, 64, 512):
        rate = min(per_worker * workers * efficiency, cap)
        row(workers, f"{rate:,.0f}", _duration(1e6 / rate), _duration(1e9 / rate))


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def main(argv: list[str] | None = None) -> None:
    args = common.options_parser(__doc__, OPTIONS).parse_args(argv)
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a cluster of this process's own, on loopback
    cores = available_cores()
    with common.demo_files(args, "bench_scale-") as (work, _, large):
        # the first JPEGs of the large folder: the same seed draws the same scenes
        small = work / "small"
        common.write_images(small, count=args.small, width=args.width, height=args.height)
        folders, output = {small: args.small, large: args.images}, work / "scores.csv"
        _, model = common.scored_model(work, args.arch, args)
        plain = [*common.DEMO, *model, "--window", str(args.window)]
        print(
            f"\n{args.arch}, {args.width}x{args.height} JPEGs resized to {args.resize_size_h}x"
            f"{args.resize_size_w}; folders of {args.small} and {args.images} images; --window {args.window}\n"
        )
        row = common.table("way", "steady images/s", "fixed s per run", f"{args.images} images, s")
        # the plain path first, before the cluster's processes share the machine
        rates = {PLAIN: measure(PLAIN, plain, folders, output, row)}
        address, started = start_cluster(cores)
        try:
            time.sleep(10)  # a new cluster starts idle workers of its own at first: leave it alone before timing
            # 1 and 2 workers, or as many as there are GPUs, up to 2 (a worker holds one)
            gpus = torch.cuda.device_count()
            for workers in range(1, min(gpus, 2) + 1) if gpus else (1, 2):
                way = f"--ray ADDRESS --ray_workers {workers}"
                on_ray = [*plain, "--ray", address, "--ray_workers", str(workers)]
                rates[way] = measure(way, on_ray, folders, output, row)
        finally:
            subprocess.run([*RAY, "stop", "--force"], capture_output=True)
        print(f"\n`ray start` of a local cluster of {cores} CPUs: {started:.1f} s")
        written = writer_rates(work)
        print("\nRows the driver writes per second (200,000 rows in windows of 1024): " +
              ", ".join(f"{rate:,.0f} to {kind}" for kind, rate in written.items()))  # fmt: skip
        efficiency = rates["--ray ADDRESS --ray_workers 1"] / rates[PLAIN]
        print(f"\nRay's steady rate over the plain path's, one worker: {efficiency:.2f}")
        projection(rates[PLAIN], "the plain rate measured here", efficiency, min(written.values()))
        if args.per_gpu_rate:
            projection(args.per_gpu_rate, "--per_gpu_rate, not measured here", efficiency, min(written.values()))


if __name__ == "__main__":
    main()
