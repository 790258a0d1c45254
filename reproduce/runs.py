"""Running an experiment's runs with main.py and test_dataset.py, on the paper's data or a synthetic stand-in.

Every run is the command a user would type, and it writes what any run writes
(linearityiqa/records/run_records.py) under one output folder (reproduce/README.md lists it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from linearityiqa.choices import LEAST_FOR_CORRELATION
from linearityiqa.cli.console import command_line, run_script
from linearityiqa.cli.options import get_args_parser
from linearityiqa.cli.quickstart import synthetic_clive, synthetic_koniq
from linearityiqa.cli.settings import run_settings
from linearityiqa.data.dataset_registry import check_linked, get_dataset_spec
from linearityiqa.errors import ConfigError, MissingFileError, RunFailed
from linearityiqa.records.run_records import (
    FINAL_TEST,
    EpochMetrics,
    dataset_results_file,
    epochs_file,
    latest_resume_file,
    results_file,
    resume_folder,
    scores_file,
)
from reproduce.experiments import PAPER_BASE, Experiment, Run

CROSS_DATASET = "CLIVE"
# The synthetic stand-in's sizes, by option: the default, its help, and the smallest value the runs
# work on and why (tests/test_reproduce.py checks the fewest images).
SYNTHETIC_SIZES = {
    "count": (2500, "synthetic KonIQ-10k images", 16, f"synthetic KonIQ-10k images, the fewest whose 70:10:20 "
              f"split leaves {LEAST_FOR_CORRELATION} images in each of training, validation and test (11, 2, 3), "
              "as main.py needs"),
    "clive_count": (200, "synthetic CLIVE images", 8, f"synthetic CLIVE images, the fewest whose 60:20:20 split "
                    f"(the t-test's) leaves {LEAST_FOR_CORRELATION} images in each (4, 2, 2), as main.py needs"),
    "size": (40, "side in pixels that synthetic images are trained and tested at", 32,
             "pixels a side, ResNet-18's stride: smaller images leave its last layers feature maps of padding"),
}  # fmt: skip


@dataclass(frozen=True)
class Data:
    """The data an experiment runs on: its `description` for the reports; per data set (KonIQ-10k,
    CLIVE), a function that returns the main.py options selecting it, making the data set first
    unless it is there or its keyword `make` is False (only the data sets a run uses are made);
    and the options that replace the paper's for this data (none for the real sets)."""

    description: str
    makers: dict[str, Callable[..., list[str]]]
    substitutions: list[str]


def real_data() -> Data:
    """KonIQ-10k and CLIVE where the manual's Data page (docs/data.md) sets them up."""
    names = ("KonIQ-10k", CROSS_DATASET)
    for name in names:
        check_linked(get_dataset_spec(name))
    # a real data set is set up already: `make` changes nothing
    return Data("KonIQ-10k and CLIVE", {name: lambda name=name, make=True: ["--dataset", name] for name in names}, [])


def real_data_present() -> bool:
    try:
        real_data()
    except MissingFileError:
        return False
    return True


def synthetic_data(root: Path, *, count: int, clive_count: int, size: int) -> Data:
    """A synthetic KonIQ-10k of `count` images and CLIVE of `clive_count` under root (made when a run
    first needs them), trained and tested at `size` x `size`; ResNet-18 from scratch, sized for a CPU.

    Without ImageNet weights the backbone learns at the heads' pace (lr 1e-3, ft_lr_ratio 1), and the
    rate drops once, at mid-run (-olrd 0.1): dropped at each third, ten epochs leave too little time
    at the first rate. -ebs 32 changes no score. A run that sets one of these itself keeps its own.
    """
    sizes = {"count": count, "clive_count": clive_count, "size": size}
    small = [
        f"--{option} {sizes[option]} is too small: use at least {least} {why}"
        for option, (_, _, least, why) in SYNTHETIC_SIZES.items()
        if sizes[option] < least
    ]
    if small:
        raise ConfigError("; ".join(small))
    koniq = partial(synthetic_koniq, root, count=count, width=size, height=size, seed=0)
    clive = partial(synthetic_clive, root, count=clive_count, width=500, height=500, seed=1)
    substitutions = (
        f"--arch resnet18 --pretrained none -rs_h {size} -rs_w {size} --lr 1e-3 --ft_lr_ratio 1 "
        "-olrd 0.1 -ebs 32 --num_workers 0"
    ).split()
    description = (
        f"synthetic KonIQ-10k ({count} images) and CLIVE ({clive_count} images), "
        f"ResNet-18 from scratch at {size}x{size}"
    )
    return Data(description, {"KonIQ-10k": koniq, CROSS_DATASET: clive}, substitutions)


@dataclass
class RunResult:
    """A finished run: its per-epoch metrics and its per-image scores' files by data set (the one it
    trained on, then CLIVE where it was tested across data sets)."""

    run: Run
    metrics: EpochMetrics
    scores: dict[str, str]


@dataclass
class Runner:
    """Runs experiments' runs into the folder `out`, skipping those already complete: `extra` main.py
    options are added to every run (an experiment's own win), `epochs` replace the paper's 30 and
    `device` is the scripts' --device (None: keep them); `train` False reports on the runs done only."""

    data: Data
    out: Path
    extra: Sequence[str] = ()
    device: str | None = None
    epochs: int | None = None
    train: bool = True

    def __post_init__(self):
        self.results_dir = str(self.out / "results")
        self.device_options = ["--device", self.device] if self.device else []

    def results(self, experiment: Experiment) -> list[RunResult]:
        """Each run of the experiment, trained (and tested on CLIVE) unless its records are complete."""
        runs = experiment.runs
        results = [self._run(run, f"{experiment.name} {number}/{len(runs)}") for number, run in enumerate(runs, 1)]
        return [result for result in results if result is not None]

    def main_argv(self, run: Run) -> list[str]:
        epochs = ["-e", str(self.epochs)] if self.epochs else []
        argv = [*PAPER_BASE, *self.data.substitutions, *epochs, *self.data.makers[run.dataset](make=self.train)]
        argv += [*self.extra, *run.options, *self.device_options]
        argv = fold_options(argv + (["--test_during_training"] if run.test_curves else []))
        checkpoint = self.out / "checkpoints" / run_settings(get_args_parser().parse_args(argv))["run_name"]
        outputs = ["--results_dir", self.results_dir, "--log_dir", str(self.out / "runs")]
        return argv + ["--trained_model_file", str(checkpoint), *outputs]

    def _run(self, run: Run, progress: str) -> RunResult | None:
        argv = self.main_argv(run)
        checkpoint = argv[argv.index("--trained_model_file") + 1]
        name, results_dir = Path(checkpoint).name, self.results_dir
        records = epochs_file(results_dir, name)
        metrics = EpochMetrics(records) if Path(records).is_file() else None
        # complete: the final test, and the test curves the run asks for
        if not (metrics is not None and metrics.has(FINAL_TEST) and (metrics.has("test") or not run.test_curves)):
            if not self.train:
                print(f"{progress}: not run yet ({_describe(run)})")
                return None
            _call("main.py", argv + _resumed(checkpoint, records), progress, run)
            metrics = EpochMetrics(records)
        scores = {run.dataset: scores_file(results_file(results_dir, name))}
        if run.cross_dataset:
            cross = scores_file(dataset_results_file(results_dir, CROSS_DATASET, checkpoint))
            if not Path(cross).is_file():
                if not self.train:
                    print(f"{progress}: not tested on {CROSS_DATASET} yet ({_describe(run)})")
                    return None
                paths = ["--trained_model_file", checkpoint, "--results_dir", results_dir]
                argv = self.data.makers[CROSS_DATASET]() + self.device_options + ["--resize", *paths]
                _call("test_dataset.py", argv, progress, run)
            scores[CROSS_DATASET] = cross
        return RunResult(run, metrics, scores)


def _resumed(checkpoint: str, records: str) -> list[str]:
    """--resume for a run interrupted after an epoch: main.py keeps its state beside the checkpoint,
    and its records have epochs but no final test (a finished run asked for again starts afresh)."""
    started = latest_resume_file(resume_folder(checkpoint)) is not None and Path(records).is_file()
    return ["--resume"] if started and not EpochMetrics(records).has(FINAL_TEST) else []


def fold_options(argv: Sequence[str]) -> list[str]:
    """main.py options, each once, in the place it first appears with the value it last has.

    argparse keeps the last value of an option given twice: the folded command means the same
    and reads like one a person would type. Spellings of one option (-lr, --lr) fold together.
    """
    # argparse has no public table of option strings; this one is stable since Python 3.2
    actions = get_args_parser()._option_string_actions
    folded: dict[str, list[str]] = {}
    dest = None
    # --lr=1e-3 as --lr 1e-3
    for token in [part for given in argv for part in (given.split("=", 1) if given.startswith("--") else [given])]:
        if dest is not None and not _is_flag(token):
            folded[dest].append(token)  # a value of the option before it
            continue
        if token not in actions:
            raise ConfigError(f"{token!r} is not a main.py option (python main.py -h lists them)")
        dest = actions[token].dest
        folded[dest] = [folded[dest][0] if dest in folded else token]
    return [token for tokens in folded.values() for token in tokens]


def _is_flag(token: str) -> bool:
    """-bs or --lr, not a value such as -1 or -1e-3."""
    try:
        float(token)
    except ValueError:
        return token.startswith("-")
    return False


def _describe(run: Run) -> str:
    return ", ".join(f"{key} {value}" for key, value in run.labels.items())


def _call(script: str, argv: list[str], progress: str, run: Run) -> None:
    """Run a script's command as a user would, in a process of its own, after printing it."""
    print(f"\n== {progress}: {_describe(run)}\n   {command_line(script, argv)}", flush=True)
    if run_script(script, argv) != 0:
        raise RunFailed(f"{script} stopped on the run above ({_describe(run)}); its message says why")
