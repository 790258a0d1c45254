"""Write a synthetic quality data set in the official KonIQ-10k and/or CLIVE layout (see synthetic.py).

    python make_synthetic.py --out data/synthetic
writes data/synthetic/koniq10k (like the KonIQ-10k download) and data/synthetic/ChallengeDB_release
(like the CLIVE release); make_info.py then builds their info files as for the real data sets.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from linearityiqa.cli.scripts import Advice, exit_status
from linearityiqa.data.dataset_registry import CLIVE_SIDE, KONIQ_HW
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS
from linearityiqa.data.synthetic import write_clive_layout, write_koniq_layout
from linearityiqa.errors import ConfigError

OFFICIAL_SIZES = {"koniq": KONIQ_HW[::-1], "clive": (CLIVE_SIDE, CLIVE_SIDE)}  # width, height
FOLDERS = {"koniq": "koniq10k", "clive": "ChallengeDB_release"}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write a synthetic IQA data set in official layouts.", add_help=add_help
    )
    parser.add_argument(
        "--out", default="data/synthetic", help="folder for koniq10k/ and ChallengeDB_release/ (default: %(default)s)"
    )
    parser.add_argument(
        "--layout",
        choices=["koniq", "clive", "both"],
        default="both",
        help="which layout(s) to write (default: %(default)s)",
    )
    parser.add_argument(
        "--count",
        type=int,
        default=200,
        help="rated images per layout; CLIVE adds its 7 training examples (default: %(default)s)",
    )
    parser.add_argument(
        "--width", type=int, default=None, help="image width (default: the layout's own, 1024 for koniq, 500 for clive)"
    )
    parser.add_argument(
        "--height",
        type=int,
        default=None,
        help="image height (default: the layout's own, 768 for koniq, 500 for clive)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of everything random (default: %(default)s)")
    return parser


# Far above KonIQ-10k's 10,073 images: a synthetic set is for trying things out.
MOST_IMAGES = 100_000


def check_size(count: int, width: int, height: int) -> None:
    """Before anything is written: a size that is one, and images no larger than any image may be."""
    if width < 1 or height < 1 or width * height > DEFAULT_MAX_PIXELS:
        raise ConfigError(
            f"--width {width} --height {height}: images must be at least 1 x 1 and at most "
            f"{DEFAULT_MAX_PIXELS:,} pixels (--max_pixels' default); pass another size"
        )
    if count > MOST_IMAGES:
        raise ConfigError(f"--count {count} is more than the {MOST_IMAGES:,} images a synthetic set makes")


def write(args: argparse.Namespace) -> None:
    layouts = ["koniq", "clive"] if args.layout == "both" else [args.layout]
    writers = {"koniq": write_koniq_layout, "clive": write_clive_layout}
    for layout in layouts:
        width = OFFICIAL_SIZES[layout][0] if args.width is None else args.width
        height = OFFICIAL_SIZES[layout][1] if args.height is None else args.height
        check_size(args.count, width, height)
        folder = Path(args.out) / FOLDERS[layout]
        started = time.perf_counter()
        writers[layout](folder, count=args.count, width=width, height=height, seed=args.seed)
        print(f"wrote {folder}: {args.count} images of {width}x{height} in {time.perf_counter() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    return exit_status("make_synthetic.py", lambda: write(args), Advice(unwritable="pass another --out"))


if __name__ == "__main__":
    sys.exit(main())
