"""Write a synthetic quality data set in the official KonIQ-10k and/or CLIVE layout (see synthetic.py).

    python make_synthetic.py --out data/synthetic
writes data/synthetic/koniq10k (like the KonIQ-10k download) and data/synthetic/ChallengeDB_release
(like the CLIVE release); make_info.py then builds their info files as for the real data sets.
A run into the same --out replaces what an earlier one wrote there (docs/data.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from linearityiqa.cli.scripts import Advice, exit_status, imports_checked
from linearityiqa.errors import ConfigError

with imports_checked("make_synthetic.py", __name__):  # a missing dependency is one line, not a traceback
    from linearityiqa.data.dataset_registry import CLIVE_SIDE, KONIQ_HW
    from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS
    from linearityiqa.data.synthetic import earlier_files, write_clive_layout, write_koniq_layout
    from linearityiqa.options import POSITIVE_INT, SEED, number

# Far above KonIQ-10k's 10,073 images: a synthetic set is for trying things out.
MOST_IMAGES = 100_000

OFFICIAL_SIZES = {"koniq": KONIQ_HW[::-1], "clive": (CLIVE_SIDE, CLIVE_SIDE)}  # width, height
FOLDERS = {"koniq": "koniq10k", "clive": "ChallengeDB_release"}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write a synthetic IQA data set in official layouts.")
    out_help = "folder for koniq10k/ and ChallengeDB_release/ (default: %(default)s)"
    parser.add_argument("--out", default="data/synthetic", help=out_help)
    layouts = ["koniq", "clive", "both"]
    parser.add_argument(
        "--layout", choices=layouts, default="both", help="which layout(s) to write (default: %(default)s)"
    )
    parser.add_argument(
        "--count",
        type=number(int, minimum=1, maximum=MOST_IMAGES),
        default=200,
        help="rated images per layout; CLIVE adds its 7 training examples (default: %(default)s)",
    )
    for side, koniq in (("width", 1024), ("height", 768)):
        own = f"(default: the layout's own, {koniq} for koniq, 500 for clive)"
        parser.add_argument(f"--{side}", type=POSITIVE_INT, default=None, help=f"image {side} {own}")
    parser.add_argument("--seed", type=SEED, default=0, help="seed of everything random (default: %(default)s)")
    return parser


def write(args: argparse.Namespace) -> None:
    """Write each layout asked for, once every one of them has been checked (sizes, and a folder
    holding no files but an earlier run's)."""
    layouts = ["koniq", "clive"] if args.layout == "both" else [args.layout]
    plans = {}
    for layout in layouts:
        width, height = args.width or OFFICIAL_SIZES[layout][0], args.height or OFFICIAL_SIZES[layout][1]
        if width * height > DEFAULT_MAX_PIXELS:
            raise ConfigError(
                f"--width {width} --height {height}: images must be at most "
                f"{DEFAULT_MAX_PIXELS:,} pixels (--max_pixels' default); pass another size"
            )
        folder = Path(args.out) / FOLDERS[layout]
        plans[layout] = (folder, width, height, earlier_files(folder, layout))
    writers = {"koniq": write_koniq_layout, "clive": write_clive_layout}
    for layout, (folder, width, height, earlier) in plans.items():
        started = time.perf_counter()
        writers[layout](folder, count=args.count, width=width, height=height, seed=args.seed)
        removed = len(earlier - earlier_files(folder, layout))
        also = f"; removed {removed} file(s) of an earlier run that this one did not write" if removed else ""
        print(f"wrote {folder}: {args.count} images of {width}x{height} in {time.perf_counter() - started:.1f} s{also}")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    return exit_status("make_synthetic.py", lambda: write(args), Advice(unwritable="pass another --out"))


if __name__ == "__main__":
    sys.exit(main())
