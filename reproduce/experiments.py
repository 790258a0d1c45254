"""The paper's experiments, each as the main.py runs it takes and the report it ends in.

The runs are the authors' commands (results_in_the_paper/README.md of their repository), each
changing one thing of the basic run, with their loss names (l1, mse, Lp) so that run names match
their checkpoints. Two slips of their list are not followed: Figure 5's ft_lr_ratio sweep is run at
the basic batch size 8 (their list mixes in 4 and 16), and the t-test uses ten splits, exp_id 0-9.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The basic run, as the authors typed it.
PAPER_BASE = tuple(
    "--dataset KonIQ-10k --resize --exp_id 0 --lr 1e-4 -bs 8 -e 30 --ft_lr_ratio 0.1 --arch resnext101_32x8d".split()
)
LOSSES: dict[str, tuple[str, ...]] = {
    "MAE": ("--loss_type", "l1"),
    "MSE": ("--loss_type", "mse"),
    "Norm-in-Norm": ("--loss_type", "Lp", "--p", "1", "--q", "2"),
}
BACKBONES = {
    "ResNet-18": "resnet18",
    "ResNet-34": "resnet34",
    "ResNet-50": "resnet50",
    "ResNeXt-101": "resnext101_32x8d",
}
# Figure 5 varies one setting of the basic ResNet-50 run at a time: its label, option and values.
SWEEPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lr": ("--lr", ("1e-3", "1e-4", "1e-5")),
    "bs": ("-bs", ("4", "8", "16")),
    "ft_lr_ratio": ("--ft_lr_ratio", ("0", "0.01", "0.1", "1")),
}
# Table 2's weights of l and l' (--alpha); l alone is the default, so that run is the basic one.
LOSS_VARIANTS: dict[str, tuple[str, ...]] = {
    "l": (),
    "l + 0.1 l'": ("--alpha", "1", "0.1"),
    "l'": ("--alpha", "0", "1"),
    "l + l'": ("--alpha", "1", "1"),
}
T_TEST_SPLITS = 10


@dataclass(frozen=True)
class Run:
    """One training run: its labels in the report (e.g. {'loss': 'MAE', 'lr': '1e-3'}), its main.py
    options after the basic ones (later options win), the data set it trains on, whether it evaluates
    the train and test sets every epoch too (--test_during_training), and whether its model is then
    tested on CLIVE across data sets."""

    labels: dict[str, str]
    options: tuple[str, ...]
    dataset: str = "KonIQ-10k"
    test_curves: bool = False
    cross_dataset: bool = False


@dataclass(frozen=True)
class Experiment:
    """An experiment of the paper: its runs, and which report (reports.REPORTS) draws its figure or table."""

    name: str
    title: str
    report: str
    runs: list[Run]


def figure1(losses: Sequence[str] = tuple(LOSSES), **_) -> Experiment:
    runs = [Run({"loss": name}, LOSSES[name], test_curves=True) for name in losses]
    return Experiment("figure1", "Figure 1: MAE, MSE and norm-in-norm during training", "curves", runs)


def figure4(losses: Sequence[str] = tuple(LOSSES), **_) -> Experiment:
    runs = [Run({"loss": name}, LOSSES[name], test_curves=True) for name in losses if name != "MAE"]
    if "MSE" in losses:
        runs.insert(1, Run({"loss": "MSE + BN"}, LOSSES["MSE"] + ("--use_bn_end",), test_curves=True))
    return Experiment("figure4", "Figure 4: MSE with BatchNorm at the end of each head", "curves", runs)


def figure5(losses: Sequence[str] = tuple(LOSSES), **_) -> Experiment:
    runs = [
        Run({"loss": name, "sweep": sweep, "value": value}, ("--arch", "resnet50", *LOSSES[name], option, value))
        for sweep, (option, values) in SWEEPS.items()
        for value in values
        for name in losses
    ]
    return Experiment("figure5", "Figure 5: learning rate, batch size and ft_lr_ratio (ResNet-50)", "sweeps", runs)


def figure6(losses: Sequence[str] = tuple(LOSSES), backbones: Sequence[str] = tuple(BACKBONES), **_) -> Experiment:
    runs = [
        Run(
            {"loss": name, "backbone": backbone},
            ("--arch", BACKBONES[backbone], "-bs", "16", *LOSSES[name]),
            cross_dataset=True,
        )
        for backbone in backbones
        for name in losses
    ]
    return Experiment("figure6", "Figure 6: backbones, on KonIQ-10k and across data sets on CLIVE", "bars", runs)


def figure7(losses: Sequence[str] = tuple(LOSSES), backbones: Sequence[str] = tuple(BACKBONES), **_) -> Experiment:
    # the largest backbone asked for: ResNeXt-101, the paper's model, unless left out
    backbone = max(backbones, key=list(BACKBONES).index)
    runs = figure6(losses, [backbone]).runs
    return Experiment("figure7", f"Figure 7: predicted against subjective scores ({backbone})", "scatter", runs)


def table1(backbones: Sequence[str] = tuple(BACKBONES), **_) -> Experiment:
    runs = [
        Run(
            {"backbone": backbone, "p": p, "q": q},
            ("--arch", BACKBONES[backbone], *LOSSES["Norm-in-Norm"], "--p", p, "--q", q),
        )
        for backbone in backbones
        for p in ("1", "2")
        for q in ("1", "2")
    ]
    return Experiment("table1", "Table 1: the norm orders p and q, for each backbone", "pq_table", runs)


def table2(**_) -> Experiment:
    runs = [
        Run({"loss": name}, LOSSES["Norm-in-Norm"] + alpha, cross_dataset=True) for name, alpha in LOSS_VARIANTS.items()
    ]
    return Experiment("table2", "Table 2: the loss l, its variant l' and their sums", "variants_table", runs)


def ttest(losses: Sequence[str] = tuple(LOSSES), splits: int = T_TEST_SPLITS, **_) -> Experiment:
    runs = [
        Run(
            {"loss": name, "split": str(split)},
            ("--arch", "resnet18", "--exp_id", str(split), *LOSSES[name]),
            dataset="CLIVE",
        )
        for split in range(splits)
        for name in losses
    ]
    return Experiment("ttest", f"Paired t-test over {splits} CLIVE splits (ResNet-18)", "ttest_table", runs)


# Each experiment by name, built over the losses, backbones and t-test splits asked for (keywords;
# each builder takes those it needs, all of them by default).
EXPERIMENTS = {
    builder.__name__: builder for builder in (figure1, figure4, figure5, figure6, figure7, table1, table2, ttest)
}
