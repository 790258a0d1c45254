"""python -m reproduce EXPERIMENT ...: train the paper's runs for an experiment, then draw its figure and table.

    python -m reproduce figure1                    # on KonIQ-10k and CLIVE when set up, else synthetic
    python -m reproduce figure1 --data synthetic   # the convergence study on a CPU, about 15 minutes
    python -m reproduce table1 --report_only       # redraw from the runs finished so far
    python -m reproduce figure5 -- --opt_level O0  # options after -- go to every main.py run

See reproduce/README.md for each experiment's runs and what the paper reports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from linearityiqa.cli.scripts import exit_status, imports_checked

# How its messages start, as argparse's do (its prog): the command a user typed.
COMMAND = "python -m reproduce"

with imports_checked(COMMAND, __name__):  # a missing dependency (matplotlib, say) is one line, not a traceback
    from linearityiqa.options import POSITIVE_INT, SHARE
    from reproduce.experiments import BACKBONES, EXPERIMENTS, LOSSES, T_TEST_SPLITS, build
    from reproduce.reports import DEFAULT_THRESHOLDS, write_report
    from reproduce.runs import Runner, SyntheticSizes, check_sizes, real_data, real_data_present, synthetic_data

PAPER_EPOCHS, SYNTHETIC_EPOCHS = 30, 10


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        add_help=add_help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Reproduce the paper's figures and tables: train their runs (skipping finished ones), "
        "then write <out>/<experiment>.png and .md. Options after -- are added to every main.py run.",
    )
    parser.add_argument(
        "experiments",
        nargs="+",
        choices=list(EXPERIMENTS) + ["all"],
        metavar="EXPERIMENT",
        help=f"one or more of {', '.join(EXPERIMENTS)}, or all",
    )
    parser.add_argument(
        "--data",
        choices=("auto", "real", "synthetic"),
        default="auto",
        help="real: KonIQ-10k and CLIVE as docs/data.md sets them up; synthetic: generated "
        "stand-ins, trained from scratch; auto: real when both are set up",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="folder of checkpoints, records and reports (default: reproduced/real, or "
        "reproduced/synthetic-<count>-<clive_count>-<size>)",
    )
    parser.add_argument(
        "--epochs",
        type=POSITIVE_INT,
        default=None,
        help=f"training epochs (default: {PAPER_EPOCHS} on the real data as in the paper, "
        f"{SYNTHETIC_EPOCHS} on synthetic)",
    )
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES), help="the losses compared")
    parser.add_argument(
        "--backbones",
        nargs="+",
        choices=list(BACKBONES),
        default=list(BACKBONES),
        help="the backbones of Figures 6, 7 and Table 1",
    )
    parser.add_argument("--splits", type=POSITIVE_INT, default=T_TEST_SPLITS, help="CLIVE splits of the t-test")
    parser.add_argument(
        "--thresholds",
        nargs="+",
        type=SHARE,
        default=list(DEFAULT_THRESHOLDS),
        help="validation PLCC levels whose first epoch Figures 1 and 4 report",
    )
    parser.add_argument("--count", type=POSITIVE_INT, default=SyntheticSizes.count, help="synthetic KonIQ-10k images")
    parser.add_argument(
        "--clive_count", type=POSITIVE_INT, default=SyntheticSizes.clive_count, help="synthetic CLIVE images"
    )
    parser.add_argument(
        "--size",
        type=POSITIVE_INT,
        default=SyntheticSizes.size,
        help="side in pixels that synthetic images are trained and tested at",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="the runs' --device")
    parser.add_argument("--report_only", action="store_true", help="train nothing; report on the finished runs")
    return parser


def split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """This command's options, and the main.py options after --."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def make_runner(args: argparse.Namespace, extra: list[str]) -> tuple[Runner, str]:
    """The runner for the data asked for, and a description of that data and training."""
    synthetic = args.data == "synthetic" or (args.data == "auto" and not real_data_present())
    if synthetic:
        sizes = SyntheticSizes(count=args.count, clive_count=args.clive_count, size=args.size)
        check_sizes(sizes)
        tag = f"synthetic-{sizes.count}-{sizes.clive_count}-{sizes.size}"
        data = synthetic_data(Path("data") / "reproduce" / tag, sizes)
    else:
        tag, data = "real", real_data()
    epochs = args.epochs or (SYNTHETIC_EPOCHS if synthetic else PAPER_EPOCHS)
    out = Path(args.out or Path("reproduced") / tag)
    runner = Runner(data=data, out=out, extra=extra, device=args.device, epochs=epochs, train=not args.report_only)
    return runner, f"{data.description}, {epochs} epochs"


def main(argv: Sequence[str] | None = None) -> int:
    own, extra = split_extra(sys.argv[1:] if argv is None else argv)
    args = get_args_parser().parse_args(own)
    return exit_status(COMMAND, lambda: reproduce_experiments(args, extra))


def reproduce_experiments(args: argparse.Namespace, extra: list[str]) -> None:
    """Train the runs of each experiment asked for, then write its report."""
    names = list(EXPERIMENTS) if "all" in args.experiments else args.experiments
    runner, description = make_runner(args, extra)
    print(f"reproducing {', '.join(names)} on {description}, into {runner.out}", flush=True)
    for name in names:
        experiment = build(name, losses=args.losses, backbones=args.backbones, splits=args.splits)
        report = write_report(
            experiment, runner.results(experiment), out=runner.out, description=description, thresholds=args.thresholds
        )
        print(
            f"\n{report.table.read_text()}written: {report.table}" + (f" and {report.figure}" if report.figure else ""),
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
