"""Time the data layer: decoding and caching generated KonIQ-10k-like JPEGs, and the per-item work.

    python -m benchmarks.bench_loading --count 10073    # all of KonIQ-10k's count (needs ~36 GB of disk)
    python -m benchmarks.bench_loading --count 40 --width 256 --height 192   # a run of seconds

On a rated data set (common.rated_source) it times building the IQADataset of all images with an
empty cache (which decodes them) and with the cache in place, at the stored size and resized to
498x664, then one training item with and without the paper's augmentation (one thread, as in a
DataLoader worker).
"""

from __future__ import annotations

import platform
import shutil
import time
from pathlib import Path

import numpy as np
import PIL
import PIL.features
import torch

from benchmarks.common import WORK_DIR, options_parser, rated_source, table, timed, work_folder
from IQAdataset import IQADataset
from linearityiqa.data.dataset_registry import ALL_FOR_TESTING, DataSource
from linearityiqa.data.image_store import ImageLoading, available_cores
from linearityiqa.data.image_transforms import TrainAugmentation

# The paper's sizes: --resize to 498x664, and the 498x498 crop of --augment.
RESIZED_HW = (498, 664)
CROP = TrainAugmentation(angle=2, hflip_p=0.5, crop_h=498, crop_w=498)
OPTIONS = {
    "--count": (2000, "number of generated images"),
    "--width": (1024, "image width"),
    "--height": (768, "image height"),
    "--items": (300, "items timed per transform"),
    **WORK_DIR,
}


def time_loading(source: DataSource, cache_dir: Path, resize: bool) -> list[str]:
    """A row: the images, their cache's size, and seconds to build the data set with an empty cache,
    then with the cache in place, then to read all its pixels."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    loading = ImageLoading(resize_hw=RESIZED_HW if resize else None, cache_dir=cache_dir, verbose=False)
    first, first_s = timed(lambda: IQADataset(source, status="test", split=ALL_FOR_TESTING, loading=loading))
    cached, cached_s = timed(lambda: IQADataset(source, status="test", split=ALL_FOR_TESTING, loading=loading))
    # Reading one byte per page pulls the whole cache into memory (from the OS page cache here).
    _, touch_s = timed(lambda: int(cached.image_store.pixels[::4096].sum()))
    images, gib = len(first.image_store), first.image_store.nbytes / 2**30
    first_run = f"{first_s:.1f} s ({images / first_s:.0f} img/s)"
    return [f"{images:.0f}", f"{gib:.2f} GiB", first_run, f"{cached_s:.2f} s", f"{touch_s:.2f} s"]


def time_items(source: DataSource, cache_dir: Path, augment: bool, items: int) -> float:
    """Milliseconds per training item at 498x664, with or without the 498x498 augmentation."""
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
    args = options_parser(__doc__, OPTIONS).parse_args(argv)
    with work_folder(args.work_dir, "bench_loading_") as work_dir:
        source, seconds = timed(lambda: rated_source(work_dir, count=args.count, width=args.width, height=args.height))
        print(f"{args.count} images of {args.width}x{args.height} ready in {seconds:.1f} s")
        print(
            f"{available_cores()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"Pillow {PIL.__version__} (libjpeg-turbo: {PIL.features.check_feature('libjpeg_turbo')})\n"
        )
        row = table("images", "stored as", "size", "first run (decode + cache)", "cached run", "+ read all pixels")
        for resize, label in ((False, f"{args.height}x{args.width}"), (True, "498x664 (resize)")):
            images, *measured = time_loading(source, work_dir / "cache", resize)
            row(images, label, *measured)
        torch.set_num_threads(1)
        plain = time_items(source, work_dir / "cache", augment=False, items=args.items)
        augmented = time_items(source, work_dir / "cache", augment=True, items=args.items)
    print(
        f"\nper training item, one thread: {plain:.2f} ms whole 498x664 image, "
        f"{augmented:.2f} ms with rotation, flip and 498x498 crop"
    )


if __name__ == "__main__":
    main()
