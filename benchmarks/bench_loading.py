"""Time the data layer: decoding and caching generated KonIQ-10k-like JPEGs, and the per-item work.

    python -m benchmarks.bench_loading --count 2000     # the measurement of issue 3 (needs ~7 GB of disk)
    python -m benchmarks.bench_loading --count 40 --width 256 --height 192   # a run of seconds

It generates the images with synthetic.py, builds their info file, then times building the
training IQADataset (which decodes all images) with an empty cache and again with the cache
in place, at the stored size and resized to 498x664, and finally the time of one training
item with and without the paper's augmentation (one thread, as in a DataLoader worker).
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

from image_store import available_cores
from info_builders import koniq_info_from_csv
from info_files import write_info
from IQAdataset import IQADataset
from synthetic import write_koniq_layout


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Time image decoding, caching and per-item work.",
                                     add_help=add_help)
    parser.add_argument("--count", type=int, default=2000, help="number of generated images (default: %(default)s)")
    parser.add_argument("--width", type=int, default=1024, help="image width (default: %(default)s)")
    parser.add_argument("--height", type=int, default=768, help="image height (default: %(default)s)")
    parser.add_argument("--items", type=int, default=300, help="items timed per transform (default: %(default)s)")
    parser.add_argument("--work-dir", default=None,
                        help="folder for images and caches; kept, and its images reused by a later run "
                             "(default: a temporary folder, removed at the end)")
    return parser


def timed(action) -> tuple[object, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def prepare_images(work_dir: Path, count: int, width: int, height: int) -> tuple[Path, Path]:
    """The generated download (reused when it is there) and its info file."""
    download = work_dir / f"koniq10k-{count}-{width}x{height}"
    sets_csv = download / "koniq10k_distributions_sets.csv"
    if not sets_csv.is_file():
        _, seconds = timed(lambda: write_koniq_layout(download, count=count, width=width, height=height, seed=0))
        print(f"generated {count} images of {width}x{height} in {seconds:.1f} s")
    write_info(work_dir / "info.mat", koniq_info_from_csv(sets_csv))
    return download / "1024x768", work_dir / "info.mat"


def time_loading(im_dir: Path, info: Path, cache_dir: Path, resize: bool) -> dict[str, float]:
    """Seconds to build the training set with an empty cache, then with the cache in place."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    kwargs = dict(dataset="KonIQ-10k", data_info=str(info), im_dir=str(im_dir), status="train",
                  resize=resize, cache_dir=str(cache_dir), verbose=False)
    first, first_seconds = timed(lambda: IQADataset(**kwargs))
    cached, cached_seconds = timed(lambda: IQADataset(**kwargs))
    # Reading one byte per page pulls the whole cache into memory (from the OS page cache here).
    _, touch_seconds = timed(lambda: int(cached.image_store.pixels[::4096].sum()))
    return dict(first=first_seconds, cached=cached_seconds, touch=touch_seconds,
                gib=first.image_store.nbytes / 2**30, images=len(first.image_store))


def time_items(im_dir: Path, info: Path, cache_dir: Path, augment: bool, items: int) -> float:
    """Milliseconds per training item at 498x664, with or without the 498x498 augmentation."""
    dataset = IQADataset(dataset="KonIQ-10k", data_info=str(info), im_dir=str(im_dir), status="train",
                         resize=True, augment=augment, cache_dir=str(cache_dir), verbose=False)
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
        im_dir, info = prepare_images(work_dir, args.count, args.width, args.height)
        print(f"{available_cores()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
              f"Pillow {PIL.__version__} (libjpeg-turbo: {PIL.features.check_feature('libjpeg_turbo')})\n")
        print("| images | stored as | size | first run (decode + cache) | cached run | + read all pixels |")
        print("| --- | --- | --- | --- | --- | --- |")
        for resize, label in ((False, f"{args.height}x{args.width}"), (True, "498x664 (resize)")):
            result = time_loading(im_dir, info, work_dir / "cache", resize)
            print(f"| {result['images']:.0f} | {label} | {result['gib']:.2f} GiB | {result['first']:.1f} s "
                  f"({result['images'] / result['first']:.0f} img/s) | {result['cached']:.2f} s "
                  f"| {result['touch']:.2f} s |")
        torch.set_num_threads(1)
        plain = time_items(im_dir, info, work_dir / "cache", augment=False, items=args.items)
        augmented = time_items(im_dir, info, work_dir / "cache", augment=True, items=args.items)
        print(f"\nper training item, one thread: {plain:.2f} ms whole 498x664 image, "
              f"{augmented:.2f} ms with rotation, flip and 498x498 crop")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
