"""Write an info file (see info_files.py) from an official download or from your own CSV.

python make_info.py koniq --csv /path/to/koniq10k_distributions_sets.csv
python make_info.py clive --release /path/to/ChallengeDB_release
python make_info.py csv --csv my_scores.csv --out data/MyDatainfo.mat
"""

from __future__ import annotations

import argparse
import os
import sys

from linearityiqa.cli.scripts import Advice, exit_status, imports_checked

with imports_checked("make_info.py", __name__):  # a missing dependency is one line, not a traceback
    from linearityiqa.data.info_builders import (
        CLIVE_RELEASE_FILES,
        clive_info_from_release,
        koniq_info_from_csv,
        user_info_from_csv,
    )
    from linearityiqa.data.info_files import write_info
    from linearityiqa.options import POSITIVE_INT, SEED
    from linearityiqa.records.writing import refuse_inputs


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Build an info file: koniq (KonIQ-10k score files), clive (CLIVE release), "
        "csv (your own image_name,mos[,std][,set] file)."
    )
    sources = parser.add_subparsers(dest="source", required=True, metavar="{koniq,clive,csv}")
    koniq = sources.add_parser("koniq", description="KonIQ-10k with its official split.")
    koniq.add_argument(
        "--csv",
        required=True,
        help="koniq10k_distributions_sets.csv (score: MOS, 0-100) or "
        "koniq10k_scores_and_distributions.csv (score: MOS_zscore) (default: none, required)",
    )
    koniq.add_argument(
        "--sets", help="file whose set column gives the split, needed with the scores file (default: --csv)"
    )
    koniq.add_argument("--out", default="data/KonIQ-10kinfo.mat", help="info file to write (default: %(default)s)")
    clive = sources.add_parser("clive", description="CLIVE without its 7 rater training examples.")
    release_help = "the release folder, which holds Data/ and Images/ (default: none, required)"
    clive.add_argument("--release", required=True, help=release_help)
    clive.add_argument("--out", default="data/CLIVEinfo.mat", help="info file to write (default: %(default)s)")
    own = sources.add_parser("csv", description="Your own data set; a set column fixes its split.")
    own.add_argument("--csv", required=True, help="CSV of image_name,mos[,std][,set] (default: none, required)")
    own.add_argument("--out", required=True, help="info file to write (default: none, required)")
    orderings_help = "random orderings of the images, one per experiment id (default: %(default)s)"
    for sub in (clive, own):
        sub.add_argument("--orderings", type=POSITIVE_INT, default=1000, help=orderings_help)
        sub.add_argument("--seed", type=SEED, default=0, help="seed of the orderings (default: %(default)s)")
    return parser


def write(args: argparse.Namespace) -> None:
    if args.source == "clive":
        data = os.path.join(args.release, "Data")
        inputs = [("release file", os.path.join(data, f"{name}.mat")) for name in CLIVE_RELEASE_FILES]
    else:
        inputs = [("score file", args.csv)] + ([("sets file", args.sets)] if getattr(args, "sets", None) else [])
    refuse_inputs(args.out, inputs, option="--out")
    if args.source == "koniq":
        info = koniq_info_from_csv(args.csv, sets_csv=args.sets)
    elif args.source == "clive":
        info = clive_info_from_release(args.release, num_orderings=args.orderings, seed=args.seed)
    else:
        info = user_info_from_csv(args.csv, num_orderings=args.orderings, seed=args.seed)
    write_info(args.out, info)
    if info.split_sizes is not None:
        train, val, test = info.split_sizes
        print(f"wrote {args.out}: {len(info):,} images; split {train:,} / {val:,} / {test:,} (train / val / test)")
    else:
        print(f"wrote {args.out}: {len(info):,} images; {info.index.shape[1]:,} random orderings")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    return exit_status("make_info.py", lambda: write(args), Advice(out_of_memory="lower --orderings"))


if __name__ == "__main__":
    sys.exit(main())
