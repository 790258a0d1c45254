"""Time the data layer: decoding and caching generated KonIQ-10k-like JPEGs, and the per-item work.

    python -m benchmarks.bench_loading --count 10073    # all of KonIQ-10k's count (needs ~36 GB of disk)
    python -m benchmarks.bench_loading --count 40 --width 256 --height 192   # a run of seconds

It generates the images with synthetic.py (benchmarks/generated.py, in parallel), builds their
info file, then times building the IQADataset of all images (which decodes them) with an
empty cache and again with the cache in place, at the stored size and resized to 498x664,
and finally the time of one training item with and without the paper's augmentation (one
thread, as in a DataLoader worker).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import PIL.features
import torch

from benchmarks.generated import write_rated_images
from IQAdataset import IQADataset
from linearityiqa.data.dataset_registry import ALL_FOR_TESTING, DataSource
from linearityiqa.data.image_store import ImageLoading, available_cores
from linearityiqa.data.image_transforms import TrainAugmentation

# The paper's sizes: --resize to 498x664, and the 498x498 crop of --augment.
RESIZED_HW = (498, 664)
CROP = TrainAugmentation(angle=2, hflip_p=0.5, crop_h=498, crop_w=498)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Time image decoding, caching and per-item work.", add_help=add_help)
    parser.add_argument("--count", type=int, default=2000, help="number of generated images (default: %(default)s)")
    parser.add_argument("--width", type=int, default=1024, help="image width (default: %(default)s)")
    parser.add_argument("--height", type=int, default=768, help="image height (default: %(default)s)")
    parser.add_argument("--items", type=int, default=300, help="items timed per transform (default: %(default)s)")
    parser.add_argument(
        "--work-dir",
        default=None,
        help="folder for images and caches; kept, and its images reused by a later run "
        "(default: a temporary folder, removed at the end)",
    )
    return parser


def timed(action) -> tuple[object, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def time_loading(im_dir: Path, info: Path, cache_dir: Path, resize: bool) -> dict[str, float]:
    """Seconds to build the data set (all its images) with an empty cache, then with the cache in place."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    source = DataSource.open("generated", data_info=info, im_dir=im_dir)
    loading = ImageLoading(resize_hw=RESIZED_HW if resize else None, cache_dir=cache_dir, verbose=False)
    first, first_seconds = timed(lambda: IQADataset(source, status="test", split=ALL_FOR_TESTING, loading=loading))
    cached, cached_seconds = timed(lambda: IQADataset(source, status="test", split=ALL_FOR_TESTING, loading=loading))
    # Reading one byte per page pulls the whole cache into memory (from the OS page cache here).
    _, touch_seconds = timed(lambda: int(cached.image_store.pixels[::4096].sum()))
    return dict(
        first=first_seconds,
        cached=cached_seconds,
        touch=touch_seconds,
        gib=first.image_store.nbytes / 2**30,
        images=len(first.image_store),
    )


def time_items(im_dir: Path, info: Path, cache_dir: Path, augment: bool, items: int) -> float:
    """Milliseconds per training item at 498x664, with or without the 498x498 augmentation."""
    source = DataSource.open("generated", data_info=info, im_dir=im_dir)
    loading = ImageLoading(resize_hw=RESIZED_HW, cache_dir=cache_dir, verbose=False)
    dataset = IQADataset(source, status="train", loading=loading, augmentation=CROP if augment else None)
    order = np.random.default_rng(0).integers(0, len(dataset), size=items)
    started = time.perf_counter()
    for item in order:
        # Each item is dropped at once, as a DataLoader drops it after collating: keeping them all
        # alive would time the allocation of fresh memory instead of the transform.
        dataset[item]
    return 1000 * (time.perf_counter() - started) / items


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_loading_"))
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        im_dir, info = write_rated_images(
            work_dir / f"rated-{args.count}-{args.width}x{args.height}",
            count=args.count,
            width=args.width,
            height=args.height,
        )
        print(f"{args.count} images of {args.width}x{args.height} ready in {time.perf_counter() - started:.1f} s")
        print(
            f"{available_cores()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"Pillow {PIL.__version__} (libjpeg-turbo: {PIL.features.check_feature('libjpeg_turbo')})\n"
        )
        print("| images | stored as | size | first run (decode + cache) | cached run | + read all pixels |")
        print("| --- | --- | --- | --- | --- | --- |")
        for resize, label in ((False, f"{args.height}x{args.width}"), (True, "498x664 (resize)")):
            result = time_loading(im_dir, info, work_dir / "cache", resize)
            print(
                f"| {result['images']:.0f} | {label} | {result['gib']:.2f} GiB | {result['first']:.1f} s "
                f"({result['images'] / result['first']:.0f} img/s) | {result['cached']:.2f} s "
                f"| {result['touch']:.2f} s |"
            )
        torch.set_num_threads(1)
        plain = time_items(im_dir, info, work_dir / "cache", augment=False, items=args.items)
        augmented = time_items(im_dir, info, work_dir / "cache", augment=True, items=args.items)
        print(
            f"\nper training item, one thread: {plain:.2f} ms whole 498x664 image, "
            f"{augmented:.2f} ms with rotation, flip and 498x498 crop"
        )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
