"""test_demo.py on a folder, in its own process and on Ray with 1 and 2 workers, side by side in one run.

    python -m benchmarks.bench_scale                    # resnet50 at 498x664, folders of 8 and 64 JPEGs
    python -m benchmarks.bench_scale --arch resnet18 --images 16 --resize_size_h 96 --resize_size_w 128

Each way scores two folders of the same JPEGs, a small one and a large one, each command in a
fresh process: the difference of their times is the time of the extra images, so the steady
rate (images/s) and the fixed cost of a run (start, model loading, and for Ray connecting and
starting the workers) come apart. Ray runs on a local cluster started once here with `ray
start` (its start is timed on its own), as a cluster a user has running, after the plain path is
timed alone. On a machine with GPUs, each worker holds one, as test_demo.py --ray gives it: one
GPU is timed with one worker alone. The projection for
a cluster multiplies a per-worker rate by the number of workers and by the efficiency
measured here (Ray's steady rate over the plain path's, with one worker); it is arithmetic, not
a measurement.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_demo import run_seconds, write_checkpoint, write_images
from benchmarks.common import machine, print_header, print_row

# Workers (GPUs) a projection is printed for.
CLUSTER_SIZES = (1, 8, 64, 512)
# Seconds a new cluster is left alone before it is timed: it starts idle workers of its own at first.
SETTLE = 10
# The `ray` command, also where Ray was installed into a folder of its own (pip --target), whose
# scripts are not beside the interpreter.
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Time test_demo.py in one process and on Ray.")
    parser.add_argument("--arch", default="resnet50", help="backbone (default: %(default)s)")
    parser.add_argument("--images", type=int, default=64, help="JPEGs of the large folder (default: %(default)s)")
    parser.add_argument("--small", type=int, default=8, help="JPEGs of the small folder (default: %(default)s)")
    parser.add_argument(
        "--window", type=int, default=8, help="test_demo.py --window: Ray's unit of work (default: %(default)s)"
    )
    parser.add_argument("--resize_size_h", type=int, default=498, help="height after --resize (default: %(default)s)")
    parser.add_argument("--resize_size_w", type=int, default=664, help="width after --resize (default: %(default)s)")
    parser.add_argument("--width", type=int, default=1024, help="width of the JPEGs (default: %(default)s)")
    parser.add_argument("--height", type=int, default=768, help="height of the JPEGs (default: %(default)s)")
    parser.add_argument(
        "--per_gpu_rate",
        type=float,
        default=None,
        help="images/s of one GPU, measured elsewhere, for the projection (default: the plain rate measured here)",
    )
    return parser


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_cluster(cpus: int) -> tuple[str, float]:
    """(the address of a local Ray cluster of `cpus` CPUs, seconds `ray start` took)."""
    address = f"127.0.0.1:{free_port()}"
    command = [*RAY, "start", "--head", f"--port={address.rsplit(':', 1)[1]}", f"--num-cpus={cpus}",
               "--include-dashboard=false", "--disable-usage-stats"]  # fmt: skip
    _, seconds = run_seconds(command)
    return address, seconds


def ray_workers() -> tuple[int, ...]:
    """The worker counts timed: 1 and 2, or as many as there are GPUs, up to 2 (a worker holds one)."""
    gpus = torch.cuda.device_count()
    return tuple(range(1, min(gpus, 2) + 1)) if gpus else (1, 2)


def steady(command: list[str], small: Path, large: Path, counts: tuple[int, int], work: Path) -> tuple[float, float]:
    """(steady images/s, fixed seconds of a run) of `command` from its times on the two folders."""
    times = []
    for folder in (small, large):
        output = work / "scores.csv"
        _, seconds = run_seconds([*command, "--img", str(folder), "-o", str(output)])
        output.unlink()
        times.append(seconds)
    if times[1] <= times[0]:  # a run's noise outweighs the extra images: too few of them to tell a rate
        return math.nan, math.nan
    rate = (counts[1] - counts[0]) / (times[1] - times[0])
    return rate, times[1] - counts[1] / rate


def measure(way: str, command: list[str], small: Path, large: Path, args: argparse.Namespace, work: Path) -> float:
    """The steady rate of one way, its row printed."""
    rate, fixed = steady(command, small, large, (args.small, args.images), work)
    if math.isnan(rate):
        print_row(way, "n/a (pass more --images)", "n/a", "n/a")
    else:
        print_row(way, f"{rate:.2f}", f"{fixed:.1f}", f"{fixed + args.images / rate:.1f}")
    return rate


def writer_rates(work: Path, *, images: int = 200_000, window: int = 1024) -> dict[str, float]:
    """Rows per second that the driver writes (records/score_output.py), by format: what caps a
    cluster however many workers it has, since every row passes through the driver."""
    from linearityiqa.image_scoring import ImageScore
    from linearityiqa.records.score_output import ScoringRun, paths_sha256, score_writer

    paths = [f"/photos/{index:09d}.jpg" for index in range(images)]
    results = [ImageScore(path, score=50.0 + index / images) for index, path in enumerate(paths)]
    rates = {}
    for output in ("rows.csv", "rows.parquet"):
        run = ScoringRun("checkpoint m.pth", "0" * 64, "--opt_level O0", "native", 1, images, paths_sha256(paths),
                         False, window, "# score: a benchmark")  # fmt: skip
        started = time.perf_counter()
        with score_writer(str(work / output), run, paths=paths, resume=False) as writer:
            for first in range(0, images, window):
                writer.write(results[first : first + window])
            writer.finish()
        rates[output.split(".")[1]] = images / (time.perf_counter() - started)
    return rates


def main(args: argparse.Namespace) -> None:
    print(machine())
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a cluster of this process's own, on loopback
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="bench_scale-") as folder:
        work = Path(folder)
        large = work / "large"
        write_images(large, count=args.images, width=args.width, height=args.height)
        small = work / "small"
        small.mkdir()
        for path in sorted(large.iterdir())[: args.small]:
            shutil.copy(path, small / path.name)
        checkpoint = write_checkpoint(work, args.arch)
        size = ["--resize", "-rs_h", str(args.resize_size_h), "-rs_w", str(args.resize_size_w)]
        plain = [sys.executable, "test_demo.py", "--arch", args.arch, "--trained_model_file", str(checkpoint), *size,
                 "--window", str(args.window)]  # fmt: skip
        print(
            f"\n{args.arch}, {args.width}x{args.height} JPEGs resized to {args.resize_size_h}x"
            f"{args.resize_size_w}; folders of {args.small} and {args.images} images; --window {args.window}\n"
        )
        print_header("way", "steady images/s", "fixed s per run", f"{args.images} images, s")
        # the plain path first, before the cluster's processes share the machine
        rates = {"plain (one process)": measure("plain (one process)", plain, small, large, args, work)}
        address, started = start_cluster(cores)
        try:
            time.sleep(SETTLE)
            for workers in ray_workers():
                way = f"--ray ADDRESS --ray_workers {workers}"
                command = [*plain, "--ray", address, "--ray_workers", str(workers)]
                rates[way] = measure(way, command, small, large, args, work)
        finally:
            subprocess.run([*RAY, "stop", "--force"], capture_output=True)
        print(f"\n`ray start` of a local cluster of {cores} CPUs: {started:.1f} s")
        written = writer_rates(work)
    print("\nRows the driver writes per second (200,000 rows in windows of 1024): " +
          ", ".join(f"{rate:,.0f} to {kind}" for kind, rate in written.items()))  # fmt: skip
    efficiency = rates["--ray ADDRESS --ray_workers 1"] / rates["plain (one process)"]
    print(f"\nRay's steady rate over the plain path's, one worker: {efficiency:.2f}")
    cap = min(written.values())
    projection(rates["plain (one process)"], "the plain rate measured here", efficiency, cap)
    if args.per_gpu_rate:
        projection(args.per_gpu_rate, "--per_gpu_rate, not measured here", efficiency, cap)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


def projection(per_worker: float, source: str, efficiency: float, cap: float) -> None:
    """A cluster's images/s: workers x `per_worker` x `efficiency`, at most `cap` (the driver's rows/s)."""
    if not (per_worker > 0 and efficiency > 0):
        print("\nNo projection: a steady rate was not told apart from the noise of a run (pass more --images)")
        return
    print(
        f"\nProjection (arithmetic, not a measurement): {per_worker:,.1f} images/s a worker ({source}) x workers x "
        f"{efficiency:.2f}, at most the {cap:,.0f} rows/s the driver writes\n"
    )
    print_header("workers", "images/s", "a million images", "a billion images")
    for workers in CLUSTER_SIZES:
        rate = min(per_worker * workers * efficiency, cap)
        print_row(workers, f"{rate:,.0f}", _duration(1e6 / rate), _duration(1e9 / rate))


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


if __name__ == "__main__":
    main(get_args_parser().parse_args())
