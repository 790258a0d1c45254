"""Every command-line option of main.py, test_dataset.py, test_demo.py and export_onnx.py, defined once.

`OPTIONS` is a table with a row per option: how argparse reads it (its flags, every spelling the
authors used: the paper README's `--lr`, `--arch`, `--img` and their later release's `-lr`,
`--architecture`, `--img_path`), its help and help group, and what follows from it: its part of a
run's name, whether --resume must match it, whether a checkpoint records it, and which scripts take
it. Everything else is derived from the rows: each script's parser (cli/options.py), the run's name
(records/paths.py), the settings that a checkpoint records and checks (records/checkpoint.py), that
--resume compares (`RESUMED`) and that build the model and the loss (cli/settings.py).

A new option is a row here and the code that reads it. Free of PyTorch, so that test_demo.py
--onnx builds its parser without loading it.
"""

from __future__ import annotations

import argparse
import builtins
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from linearityiqa.choices import COMPILE_MODES, LOSS_TYPE_ALIASES, LOSS_TYPES, OPT_LEVELS, POOLING_METHODS
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS
from linearityiqa.data.image_store import DEFAULT_CACHE_DIR

MAIN = "main.py"
TEST_DATASET = "test_dataset.py"
DEMO = "test_demo.py"
EXPORT = "export_onnx.py"
SCRIPTS = (MAIN, TEST_DATASET, DEMO, EXPORT)
# The help groups, in the order --help lists them; export_onnx.py's resize options have a group of their own.
# test_demo.py --window's default: images scored and written together (image_scoring.py)
SCORING_WINDOW = 1024
GROUPS = ("model", "loss", "data", "training schedule", "training", "run", "results", "demo", "resize", "export")


def _number(
    kind: type, *, above: float | None = None, minimum: float | None = None, maximum: float | None = None
) -> Callable[[str], int | float]:
    """An argparse type: a finite int or float within bounds, or an argparse error that names them.

    Args:
        kind: int or float.
        above: the value must be greater than this.
        minimum: the value must be at least this.
        maximum: the value must be at most this.
    """
    bounds = " and ".join(
        bound
        for bound in (
            f"above {above:g}" if above is not None else "",
            f"at least {minimum:g}" if minimum is not None else "",
            f"at most {maximum:g}" if maximum is not None else "",
        )
        if bound
    )
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if (
            not math.isfinite(value)
            or (above is not None and value <= above)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
        ):
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {noun} {bounds}")
        return value

    return parse


POSITIVE_INT = _number(int, minimum=1)
NON_NEGATIVE_INT = _number(int, minimum=0)
POSITIVE = _number(float, above=0)
NON_NEGATIVE = _number(float, minimum=0)
SHARE = _number(float, minimum=0, maximum=1)  # ratios of a data set, probabilities
DECAY = _number(float, above=0, maximum=1)  # learning-rate factors


@dataclass(frozen=True)
class NamePart:
    """Where an option's value goes in a run's name (records/paths.run_name).

    Args:
        place: its position among the name's parts, in the paper's order. Options of one place
            make one part, their values joined by "x" (the image size, 498x664).
        label: the text before the value ("lr=").
    """

    place: int
    label: str = ""


@dataclass(frozen=True)
class Option:
    """One command-line option: how argparse reads it and what follows from it.

    Args:
        dest: its name in the parsed options, in a run's settings and in a checkpoint's.
        flags: every spelling accepted, in the order argparse's messages name them.
        help: its line in --help, which ends in "(default: X)" unless it words its default itself.
        group: the help group (one of GROUPS) that lists it.
        takes: the scripts that use it; their --help lists it.
        accepts: the scripts that parse it without using it, so that every command line that
            worked before still does; their --help leaves it out.
        default, type, action, nargs, choices, const, required: as argparse.add_argument takes them.
        run_name: its part of a run's name, or None.
        resumed: whether a run continued with --resume must have it as the run that saved the state.
        recorded: the type that a checkpoint's setting of it must have (records/checkpoint.py);
            None where it is not checked.
        elsewhere: by script, the fields that differ there (export_onnx.py's --output is required).
    """

    dest: str
    flags: tuple[str, ...]
    help: str
    group: str
    takes: frozenset[str]
    accepts: frozenset[str] = frozenset()
    default: Any = None
    type: Callable[[str], Any] | None = None
    action: str = "store"
    nargs: int | str | None = None
    choices: tuple[str, ...] | None = None
    const: Any = None
    required: bool = False
    run_name: NamePart | None = None
    resumed: bool = False
    # the builtin: this class's own `type` is a field
    recorded: builtins.type | None = None
    elsewhere: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def in_script(self, script: str) -> Option:
        """The row as `script` reads it.

        Args:
            script: one of SCRIPTS.
        """
        return dataclasses.replace(self, **self.elsewhere.get(script, {}))


_ALL = frozenset(SCRIPTS)
_MAIN = frozenset({MAIN})
# test_dataset.py takes the options that name a training run, to find the checkpoint it saved.
_NAMING = frozenset({MAIN, TEST_DATASET})
_EVALUATING = frozenset({MAIN, TEST_DATASET, DEMO})
_TEST = frozenset({TEST_DATASET})
_DEMO = frozenset({DEMO})
_TEST_AND_DEMO = frozenset({TEST_DATASET, DEMO})
_RESIZE_GROUP = {EXPORT: {"group": "resize"}}

# The rows are in the order of the resume check (RESUMED); --help lists each group's rows in this order too.
OPTIONS = (
    Option(
        "arch",
        ("--arch", "-arch", "--architecture"),
        "torchvision backbone: a ResNet/ResNeXt, alexnet or vgg16",
        "model",
        _ALL,
        default="resnext101_32x8d",
        run_name=NamePart(0),
        resumed=True,
        recorded=str,
    ),
    Option(
        "pool",
        ("-pl", "--pool"),
        "SPSP pooling method",
        "model",
        _ALL,
        default="avg",
        choices=POOLING_METHODS,
        run_name=NamePart(1),
        resumed=True,
        recorded=str,
    ),
    Option(
        "use_bn_end",
        ("-ubne", "--use_bn_end"),
        "BatchNorm1d after each regressor",
        "model",
        _ALL,
        default=False,
        action="store_true",
        run_name=NamePart(2, "bn_end="),
        resumed=True,
        recorded=bool,
    ),
    Option(
        "P6",
        ("-P6", "--P6"),
        "pyramid levels of the layer3 output",
        "model",
        _ALL,
        default=1,
        type=POSITIVE_INT,
        resumed=True,
        recorded=int,
    ),
    Option(
        "P7",
        ("-P7", "--P7"),
        "pyramid levels of the layer4 output",
        "model",
        _ALL,
        default=1,
        type=POSITIVE_INT,
        resumed=True,
        recorded=int,
    ),
    Option(
        "trained_model_file",
        ("-modelfile", "--trained_model_file"),
        "checkpoint to write (main.py) or to read (tests, demo); main.py names it after its settings in "
        "checkpoints/ when not given",
        "model",
        _ALL,
    ),
    Option(
        "loss_type",
        ("-lt", "--loss_type"),
        "training loss; Lp is the paper README's name for norm-in-norm",
        "loss",
        _NAMING,
        default="norm-in-norm",
        choices=LOSS_TYPES + tuple(LOSS_TYPE_ALIASES),
        run_name=NamePart(3, "loss="),
        resumed=True,
    ),
    Option(
        "alpha",
        ("-a", "--alpha"),
        "weights of the loss l and of its variant l'",
        "loss",
        _NAMING,
        default=[1, 0],
        type=NON_NEGATIVE,
        nargs=2,
        run_name=NamePart(8, "alpha="),
        resumed=True,
    ),
    Option(
        "beta",
        ("-b", "--beta"),
        "weights of the layer3 head, the layer4 head and the fused head",
        "loss",
        _NAMING,
        default=[0.1, 0.1, 1],
        type=NON_NEGATIVE,
        nargs=3,
        run_name=NamePart(9, "beta="),
        resumed=True,
    ),
    Option(
        "p",
        ("-p", "--p"),
        "order of the norm of the error",
        "loss",
        _NAMING,
        default=1,
        type=POSITIVE,
        run_name=NamePart(4, "p="),
        resumed=True,
    ),
    Option(
        "q",
        ("-q", "--q"),
        "order of the normalization norm",
        "loss",
        _NAMING,
        default=2,
        type=POSITIVE,
        run_name=NamePart(5, "q="),
        resumed=True,
    ),
    Option(
        "detach",
        ("-detach", "--detach"),
        "take the statistics of the predictions as constants in the backward pass",
        "loss",
        _NAMING,
        default=False,
        action="store_true",
        run_name=NamePart(6, "detach-"),
        resumed=True,
    ),
    Option(
        "monotonicity_regularization",
        ("-monoreg", "--monotonicity_regularization"),
        "add the monotonicity regularizer",
        "loss",
        _NAMING,
        default=False,
        action="store_true",
        run_name=NamePart(14, "monotonicity="),
        resumed=True,
    ),
    Option(
        "gamma",
        ("-g", "--gamma"),
        "weight of the monotonicity regularizer",
        "loss",
        _MAIN,
        accepts=_TEST,
        default=0.1,
        type=NON_NEGATIVE,
        resumed=True,
    ),
    Option(
        "dataset",
        ("-ds", "--dataset"),
        "KonIQ-10k, CLIVE, or your own data set",
        "data",
        _NAMING,
        accepts=_DEMO,
        default="KonIQ-10k",
        run_name=NamePart(10),
        resumed=True,
    ),
    Option(
        "exp_id",
        ("-eid", "--exp_id"),
        "which split of the info file to use",
        "data",
        _NAMING,
        accepts=_DEMO,
        default=0,
        type=NON_NEGATIVE_INT,
        run_name=NamePart(19, "EXP"),
        resumed=True,
    ),
    Option(
        "train_ratio",
        ("-tr", "--train_ratio"),
        "share of training images (KonIQ-10k uses its official split)",
        "data",
        _MAIN,
        accepts=_TEST_AND_DEMO,
        default=0.6,
        type=SHARE,
        resumed=True,
    ),
    Option(
        "train_and_val_ratio",
        ("-tvr", "--train_and_val_ratio"),
        "share of training and validation images (KonIQ-10k uses its official split)",
        "data",
        _MAIN,
        accepts=_TEST_AND_DEMO,
        default=0.8,
        type=SHARE,
        resumed=True,
    ),
    Option(
        "resize",
        ("-rs", "--resize"),
        "resize images to resize_size_h x resize_size_w",
        "data",
        _ALL,
        default=False,
        action="store_true",
        run_name=NamePart(11, "res="),
        resumed=True,
        recorded=bool,
        elsewhere=_RESIZE_GROUP,
    ),
    Option(
        "resize_size_h",
        ("-rs_h", "--resize_size_h"),
        "height after resizing",
        "data",
        _ALL,
        default=498,
        type=POSITIVE_INT,
        run_name=NamePart(12),
        resumed=True,
        recorded=int,
        elsewhere=_RESIZE_GROUP,
    ),
    Option(
        "resize_size_w",
        ("-rs_w", "--resize_size_w"),
        "width after resizing",
        "data",
        _ALL,
        default=664,
        type=POSITIVE_INT,
        run_name=NamePart(12),
        resumed=True,
        recorded=int,
        elsewhere=_RESIZE_GROUP,
    ),
    Option(
        "data_info",
        ("--data_info",),
        "info file of the data set (default of KonIQ-10k and CLIVE: data/<dataset>info.mat)",
        "data",
        _NAMING,
        accepts=_DEMO,
    ),
    Option(
        "im_dir",
        ("--im_dir",),
        "folder of the images (default of KonIQ-10k and CLIVE: <dataset> in the repo root)",
        "data",
        _NAMING,
        accepts=_DEMO,
    ),
    Option(
        "cache_dir",
        ("--cache_dir",),
        "folder of the decoded-image cache; none keeps the images in memory only, decoded on every run",
        "data",
        _NAMING,
        accepts=_DEMO,
        default=DEFAULT_CACHE_DIR,
    ),
    Option(
        "max_pixels",
        ("--max_pixels",),
        "refuse images of more pixels (width x height) than this, which may be decompression bombs "
        "(default: Pillow's threshold, a 9459 x 9459 image)",
        "data",
        _EVALUATING,
        default=DEFAULT_MAX_PIXELS,
        type=POSITIVE_INT,
    ),
    Option(
        "augmentation",
        ("-augment", "--augmentation", "--augment"),
        "random rotation, horizontal flip and crop of training images",
        "training schedule",
        _NAMING,
        default=False,
        action="store_true",
        run_name=NamePart(13, "aug="),
        resumed=True,
    ),
    Option(
        "angle",
        ("-ag", "--angle"),
        "largest rotation in degrees",
        "training schedule",
        _MAIN,
        accepts=_TEST,
        default=2,
        type=NON_NEGATIVE,
        resumed=True,
    ),
    Option(
        "crop_size_h",
        ("-cs_h", "--crop_size_h"),
        "height of the training crop",
        "training schedule",
        _MAIN,
        accepts=_TEST,
        default=498,
        type=POSITIVE_INT,
        resumed=True,
    ),
    Option(
        "crop_size_w",
        ("-cs_w", "--crop_size_w"),
        "width of the training crop",
        "training schedule",
        _MAIN,
        accepts=_TEST,
        default=498,
        type=POSITIVE_INT,
        resumed=True,
    ),
    Option(
        "hflip_p",
        ("-hp", "--hflip_p"),
        "probability of a horizontal flip",
        "training schedule",
        _MAIN,
        accepts=_TEST,
        default=0.5,
        type=SHARE,
        resumed=True,
    ),
    Option(
        "batch_size",
        ("-bs", "--batch_size"),
        "training batch size",
        "training schedule",
        _NAMING,
        default=8,
        type=POSITIVE_INT,
        run_name=NamePart(16, "bs="),
        resumed=True,
    ),
    # a row of the training group among the schedule's, where the resume check has compared it
    Option(
        "accumulation_steps",
        ("-accum", "--accumulation_steps"),
        "batches per optimizer step",
        "training",
        _MAIN,
        default=1,
        type=POSITIVE_INT,
        resumed=True,
    ),
    Option(
        "lr",
        ("--lr", "-lr", "--learning_rate"),
        "learning rate of the heads",
        "training schedule",
        _NAMING,
        default=1e-4,
        type=POSITIVE,
        run_name=NamePart(15, "lr="),
        resumed=True,
    ),
    # not resumed: a resumed run may train for more epochs than it started with
    Option(
        "epochs",
        ("-e", "--epochs"),
        "training epochs",
        "training schedule",
        _NAMING,
        default=30,
        type=POSITIVE_INT,
        run_name=NamePart(17, "e="),
    ),
    Option(
        "ft_lr_ratio",
        ("--ft_lr_ratio", "-flr"),
        "learning rate of the backbone relative to lr; 0 freezes it",
        "training schedule",
        _NAMING,
        default=0.1,
        type=NON_NEGATIVE,
        run_name=NamePart(7, "ft_lr_ratio="),
        resumed=True,
    ),
    Option(
        "skip_nonfinite",
        ("--skip_nonfinite",),
        "skip a step whose loss is NaN or infinite (reported at the end of its epoch) instead of stopping the "
        "run there",
        "training",
        _MAIN,
        default=False,
        action="store_true",
    ),
    Option(
        "weight_decay",
        ("-wd", "--weight_decay"),
        "weight decay",
        "training",
        _MAIN,
        default=0.0,
        type=NON_NEGATIVE,
        resumed=True,
    ),
    Option(
        "lr_decay",
        ("-lrd", "--lr_decay"),
        "learning rate factor at each step",
        "training",
        _MAIN,
        default=0.1,
        type=DECAY,
        resumed=True,
    ),
    Option(
        "overall_lr_decay",
        ("-olrd", "--overall_lr_decay"),
        "learning rate factor over the whole run, which sets the step length",
        "training",
        _MAIN,
        default=0.01,
        type=DECAY,
        resumed=True,
    ),
    Option(
        "randomness",
        ("-rn", "--randomness"),
        "a random seed and cuDNN benchmark mode (fastest kernels, not deterministic) instead of --seed and "
        "deterministic cuDNN",
        "training",
        _MAIN,
        default=False,
        action="store_true",
    ),
    Option(
        "compile",
        ("--compile",),
        "compile the model with torch.compile in this mode (default mode when given without one; "
        "reduce-overhead adds CUDA graphs); the first steps take minutes (default: not compiled)",
        "training",
        _MAIN,
        nargs="?",
        const="default",
        choices=COMPILE_MODES,
    ),
    Option(
        "val_criterion",
        ("-valc", "--val_criterion"),
        "validation metric that selects the best model",
        "training",
        _MAIN,
        default="SROCC",
        choices=("SROCC", "PLCC", "RMSE"),
        resumed=True,
    ),
    Option(
        "test_during_training",
        ("-tdt", "--test_during_training"),
        "evaluate the train and test sets every epoch and map with k, b fitted there",
        "training",
        _MAIN,
        default=False,
        action="store_true",
        resumed=True,
    ),
    Option(
        "evaluate",
        ("-eval", "--evaluate"),
        "only test the trained checkpoint",
        "training",
        _MAIN,
        default=False,
        action="store_true",
    ),
    Option("log_dir", ("-logd", "--log_dir"), "TensorBoard folder", "training", _MAIN, default="runs"),
    Option(
        "resume",
        ("--resume",),
        "continue an interrupted run from its last epoch (same options as the run)",
        "training",
        frozenset({MAIN, DEMO}),
        default=False,
        action="store_true",
        elsewhere={
            DEMO: {
                "group": "demo",
                "help": "continue an interrupted run from the partial output beside --output (<output>.partial), "
                "scoring only the images it has no row of (same model, resize and images as the run)",
            }
        },
    ),
    Option(
        "quickstart",
        ("--quickstart",),
        "make a synthetic KonIQ-10k and CLIVE, train, test and score on them: the whole pipeline on a CPU in "
        "minutes, before downloading anything",
        "training",
        _MAIN,
        default=False,
        action="store_true",
    ),
    Option(
        "nproc_per_node",
        ("--nproc_per_node",),
        "processes to start on this machine, one per GPU (or CPU processes with gloo); under torchrun leave it "
        "out (default: one process)",
        "training",
        _MAIN,
        type=POSITIVE_INT,
    ),
    Option(
        "pretrained",
        ("--pretrained",),
        "backbone start: imagenet (torchvision's cache, downloaded on first use), a local weights file, or none "
        "(random, for smoke runs)",
        "training",
        _MAIN,
        default="imagenet",
    ),
    Option(
        "eval_batch_size",
        ("-ebs", "--eval_batch_size"),
        "images per forward pass in validation, testing and scoring; images of one size share a batch "
        "(default: 32 on a GPU; 1 on a CPU, which runs fastest so)",
        "run",
        _EVALUATING,
        type=POSITIVE_INT,
    ),
    Option(
        "opt_level",
        ("-optl", "--opt_level"),
        "O0: float32; O1: autocast float16, with loss scaling in training (the paper); bf16: autocast "
        "bfloat16. CUDA only: on a CPU every level runs in float32",
        "run",
        _EVALUATING,
        default="O1",
        choices=OPT_LEVELS,
        run_name=NamePart(18, "opt_level="),
        resumed=True,
    ),
    Option("device", ("--device",), "device (default: cuda if available)", "run", _EVALUATING, choices=("cpu", "cuda")),
    Option(
        "num_workers",
        ("--num_workers",),
        "data loading processes (default: one per core, at most 8)",
        "run",
        _EVALUATING,
        type=NON_NEGATIVE_INT,
    ),
    Option(
        "seed",
        ("--seed",),
        "random seed",
        "run",
        _MAIN,
        accepts=_TEST_AND_DEMO,
        default=19920517,
        type=int,
        resumed=True,
    ),
    Option(
        "debug",
        ("-debug", "--debug"),
        "5 training batches and 5 val/test images",
        "run",
        _MAIN,
        accepts=_TEST_AND_DEMO,
        default=False,
        action="store_true",
        resumed=True,
    ),
    Option(
        "pbar",
        ("-pbar", "--pbar"),
        "show progress bars",
        "run",
        frozenset({MAIN, DEMO}),
        accepts=_TEST,
        default=False,
        action="store_true",
    ),
    Option(
        "results_dir",
        ("--results_dir",),
        "folder of the test metrics (.npy), the per-image scores and the metrics of each epoch (CSV)",
        "results",
        _NAMING,
        default="results",
    ),
    Option(
        "img_path",
        ("--img", "--img_path"),
        "an image, a folder, a glob pattern, or - for a list of paths on stdin",
        "demo",
        _DEMO,
        default="data/1000.JPG",
    ),
    Option(
        "output",
        ("-o", "--output"),
        "where the scores of several images go, written as they come: a CSV file, a .parquet file, a folder "
        "(a name ending in /) of Parquet shards, or - for CSV on standard output (default: standard output)",
        "demo",
        frozenset({DEMO, EXPORT}),
        elsewhere={
            EXPORT: {
                "group": "export",
                "required": True,
                "help": "the ONNX file to write, e.g. model.onnx (default: none; required)",
            }
        },
    ),
    Option(
        "onnx",
        ("--onnx",),
        "score with this ONNX model (written by export_onnx.py) in onnxruntime, without PyTorch; it records the "
        "model and its resize (default: the PyTorch checkpoint)",
        "demo",
        _DEMO,
    ),
    Option(
        "heads",
        ("--heads",),
        "add the three heads' outputs before any mapping (pq6, pq7, pq) as columns of --output",
        "demo",
        _DEMO,
        default=False,
        action="store_true",
    ),
    Option(
        "window",
        ("--window",),
        "images scored and written to --output together: an interrupted run loses at most one window, and a "
        "resumed run keeps the window it began with",
        "demo",
        _DEMO,
        default=SCORING_WINDOW,
        type=POSITIVE_INT,
    ),
    Option(
        "ray",
        ("--ray",),
        "score on the Ray cluster at this address (auto, ray://head:10001, ...) with Ray Data, or, with no "
        "address, on a local one started for the run (default: in this process)",
        "demo",
        _DEMO,
        nargs="?",
        const="",
    ),
    Option(
        "ray_workers",
        ("--ray_workers",),
        "model workers with --ray (default: one per GPU of the cluster, else one per 4 CPUs)",
        "demo",
        _DEMO,
        type=POSITIVE_INT,
    ),
)


def script_options(script: str) -> tuple[Option, ...]:
    """The rows a script parses, those it takes and those it accepts unused, as it reads them.

    Args:
        script: one of SCRIPTS.
    """
    return tuple(row.in_script(script) for row in OPTIONS if script in row.takes | row.accepts)


def run_named(group: str) -> tuple[str, ...]:
    """The options of a help group that a run's name records.

    Args:
        group: one of GROUPS.
    """
    return tuple(row.dest for row in OPTIONS if row.group == group and row.run_name is not None)


def _run_name_parts() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A run name's parts in the paper's order, each its label and the options whose values it joins."""
    places: dict[int, tuple[str, list[str]]] = {}
    for row in OPTIONS:
        if row.run_name is not None:
            places.setdefault(row.run_name.place, (row.run_name.label, []))[1].append(row.dest)
    return tuple((label, tuple(dests)) for _, (label, dests) in sorted(places.items()))


# records/paths.run_name: (label, options) for each part of a run's name.
RUN_NAME = _run_name_parts()
# What a resumed run must share with the run that saved the state: the options that decide what
# is trained. Others may change: --epochs, --num_workers, --device, --pbar, --eval_batch_size,
# where files go, --compile, --pretrained (the saved weights replace the start), --skip_nonfinite
# (to get past a NaN) and --resume itself.
RESUMED = tuple(row.dest for row in OPTIONS if row.resumed)
# The settings a checkpoint records that rebuild a model and size its images, with their types.
RECORDED_TYPES = {row.dest: row.recorded for row in OPTIONS if row.recorded is not None}
# Settings that determine the model's architecture: IQAModel's arguments.
MODEL_SETTINGS = tuple(row.dest for row in OPTIONS if row.group == "model" and row.recorded is not None)
# IQALoss's arguments.
LOSS_SETTINGS = tuple(row.dest for row in OPTIONS if row.group == "loss")
