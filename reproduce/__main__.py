"""python -m reproduce EXPERIMENT ...: train the paper's runs for an experiment, then draw its figure and table.

reproduce/README.md gives the commands, each experiment's runs and what the paper reports.
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
    from reproduce.experiments import BACKBONES, EXPERIMENTS, LOSSES, T_TEST_SPLITS
    from reproduce.reports import DEFAULT_THRESHOLDS, write_report
    from reproduce.runs import SYNTHETIC_SIZES, Runner, real_data, real_data_present, synthetic_data

PAPER_EPOCHS, SYNTHETIC_EPOCHS = 30, 10


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Reproduce the paper's figures and tables: train their runs (skipping finished ones), "
        "then write <out>/<experiment>.png and .md. Options after -- are added to every main.py run.",
    )
    parser.add_argument(
        "experiments",
        nargs="+",
        choices=[*EXPERIMENTS, "all"],
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
        help="folder of checkpoints, records and reports (default: reproduced/real, or "
        "reproduced/synthetic-<count>-<clive_count>-<size>)",
    )
    parser.add_argument(
        "--epochs",
        type=POSITIVE_INT,
        help=f"training epochs (default: {PAPER_EPOCHS} on the real data as in the paper, "
        f"{SYNTHETIC_EPOCHS} on synthetic)",
    )
    for name, table, text in (("losses", LOSSES, "compared"), ("backbones", BACKBONES, "of Figures 6, 7 and Table 1")):
        parser.add_argument(f"--{name}", nargs="+", choices=list(table), default=list(table), help=f"the {name} {text}")
    parser.add_argument("--splits", type=POSITIVE_INT, default=T_TEST_SPLITS, help="CLIVE splits of the t-test")
    parser.add_argument(
        "--thresholds",
        nargs="+",
        type=SHARE,
        default=list(DEFAULT_THRESHOLDS),
        help="validation PLCC levels whose first epoch Figures 1 and 4 report",
    )
    for name, (default, text, _, _) in SYNTHETIC_SIZES.items():
        parser.add_argument(f"--{name}", type=POSITIVE_INT, default=default, help=text)
    parser.add_argument("--device", choices=("cpu", "cuda"), help="the runs' --device")
    parser.add_argument("--report_only", action="store_true", help="train nothing; report on the finished runs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # the main.py options after --
    args = get_args_parser().parse_args(argv[:cut])
    return exit_status(COMMAND, lambda: reproduce_experiments(args, argv[cut + 1 :]))


def reproduce_experiments(args: argparse.Namespace, extra: list[str]) -> None:
    """Train the runs of each experiment asked for on the data asked for, then write its report."""
    if args.data == "synthetic" or (args.data == "auto" and not real_data_present()):
        sizes = {name: getattr(args, name) for name in SYNTHETIC_SIZES}
        tag = "synthetic-{count}-{clive_count}-{size}".format(**sizes)
        data, epochs = synthetic_data(Path("data") / "reproduce" / tag, **sizes), args.epochs or SYNTHETIC_EPOCHS
    else:
        tag, data, epochs = "real", real_data(), args.epochs or PAPER_EPOCHS
    out = Path(args.out or Path("reproduced") / tag)
    runner = Runner(data=data, out=out, extra=extra, device=args.device, epochs=epochs, train=not args.report_only)
    description = f"{data.description}, {epochs} epochs"
    names = list(EXPERIMENTS) if "all" in args.experiments else args.experiments
    print(f"reproducing {', '.join(names)} on {description}, into {out}", flush=True)
    for name in names:
        experiment = EXPERIMENTS[name](losses=args.losses, backbones=args.backbones, splits=args.splits)
        table, figure = write_report(
            experiment, runner.results(experiment), out=out, description=description, thresholds=args.thresholds
        )
        print(f"\n{table.read_text()}written: {table}" + (f" and {figure}" if figure else ""), flush=True)


if __name__ == "__main__":
    sys.exit(main())
