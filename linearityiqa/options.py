"""Every command-line option of main.py, test_dataset.py, test_demo.py and export_onnx.py, defined once.

`OPTIONS` has a row per option (an `Option`) with every spelling the authors used (the paper README's `--lr`,
`--arch`, `--img` and their later release's `-lr`, `--architecture`, `--img_path`); the parsers, the run's name and
the lists below are derived from the rows. Free of PyTorch: test_demo.py --onnx builds its parser without it.
"""

from __future__ import annotations

import argparse
import builtins
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from linearityiqa.choices import COMPILE_MODES, LOSS_TYPE_ALIASES, LOSS_TYPES, OPT_LEVELS, POOLING_METHODS
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS
from linearityiqa.data.image_store import DEFAULT_CACHE_DIR

MAIN = "main.py"
TEST_DATASET = "test_dataset.py"
DEMO = "test_demo.py"
EXPORT = "export_onnx.py"
APP = "app.py"
SCRIPTS = (MAIN, TEST_DATASET, DEMO, EXPORT, APP)
# test_demo.py --window's default: images scored and written together (image_scoring.py)
SCORING_WINDOW = 1024
# The help groups, in the order --help lists them; export_onnx.py's resize options have a group of their own.
GROUPS = ("model", "loss", "data", "training schedule", "training", "run", "results", "demo", "resize", "export")


def number(
    kind: type, *, above: float | None = None, minimum: float | None = None, maximum: float | None = None
) -> Callable[[str], int | float]:
    """An argparse type: a finite `kind` (int or float) greater than `above`, at least `minimum` and
    at most `maximum`, or an argparse error that names the bounds."""
    bounds = " and ".join(
        f"{word} {bound}"
        for word, bound in (("above", above), ("at least", minimum), ("at most", maximum))
        if bound is not None
    )
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        in_bounds = (above is None or value > above) and (minimum is None or value >= minimum)
        if not (math.isfinite(value) and in_bounds and (maximum is None or value <= maximum)):
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {noun} {bounds}")
        return value

    return parse


POSITIVE_INT = number(int, minimum=1)
NON_NEGATIVE_INT = number(int, minimum=0)
POSITIVE = number(float, above=0)
NON_NEGATIVE = number(float, minimum=0)
SHARE = number(float, minimum=0, maximum=1)  # ratios of a data set, probabilities
DECAY = number(float, above=0, maximum=1)  # learning-rate factors
SEED = number(int, minimum=0, maximum=2**32 - 1)  # what numpy's and torch's generators accept


@dataclass(frozen=True)
class Option:
    """One command-line option: how argparse reads it (add_argument's keywords) and what follows from it."""

    dest: str  # its name in the parsed options, in a run's settings and in a checkpoint's
    flags: tuple[str, ...]  # every spelling accepted, in the order argparse's messages name them
    group: str
    takes: frozenset[str]  # the scripts that use it; their --help lists it
    help: str  # its line in --help, which ends in "(default: X)" unless it words its default itself
    # the scripts that parse it without using it, so that every command line that worked before still does
    accepts: frozenset[str] = frozenset()
    default: Any = None
    type: Callable[[str], Any] | None = None
    action: str = "store"
    nargs: int | str | None = None
    choices: tuple[str, ...] | None = None
    const: Any = None
    required: bool = False
    # its part of a run's name, or None: (place, label), its position among the parts in the paper's order (options
    # of one place make one part, their values joined by "x": 498x664) and the text before the value ("lr=")
    run_name: tuple[int, str] | None = None
    resumed: bool = False  # whether a run continued with --resume must have it as the run that saved the state
    # the type that a checkpoint's setting of it must have, or None: not checked (the builtin: `type` is a field)
    recorded: builtins.type | None = None
    # by script, the fields that differ there (export_onnx.py's --output is required)
    elsewhere: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _row(dest: str, flags: str, *fields: Any, name: int | tuple[int, str] | None = None, **keywords: Any) -> Option:
    """An Option from a table row: `name` is its run_name, or its place alone; a default of False makes a switch."""
    if keywords.get("default") is False:
        keywords["action"] = "store_true"
    run_name = (name, "") if isinstance(name, int) else name
    return Option(dest, tuple(flags.split()), *fields, run_name=run_name, **keywords)


_ALL = frozenset(SCRIPTS)
_MAIN = frozenset({MAIN})
# test_dataset.py takes the options that name a training run, to find the checkpoint it saved.
_NAMING = frozenset({MAIN, TEST_DATASET})
_EVALUATING = frozenset({MAIN, TEST_DATASET, DEMO, APP})
_TEST = frozenset({TEST_DATASET})
_DEMO = frozenset({DEMO})
_TEST_AND_DEMO = frozenset({TEST_DATASET, DEMO})
_MAIN_AND_DEMO = frozenset({MAIN, DEMO})
_RESIZE_GROUP = {EXPORT: {"group": "resize"}}

# The rows are in the order of the resume check (RESUMED); --help lists each group's rows in this order too.
# A table, formatted by hand: a row names the option and its help, then what follows from it, to the line's end.
# fmt: off
OPTIONS = (
    _row("arch", "--arch -arch --architecture", "model", _ALL,
         "torchvision backbone: a ResNet/ResNeXt, alexnet or vgg16", default="resnext101_32x8d", name=0, resumed=True,
         recorded=str),
    _row("pool", "-pl --pool", "model", _ALL, "SPSP pooling method", default="avg", choices=POOLING_METHODS, name=1,
         resumed=True, recorded=str),
    _row("use_bn_end", "-ubne --use_bn_end", "model", _ALL, "BatchNorm1d after each regressor", default=False,
         name=(2, "bn_end="), resumed=True, recorded=bool),
    _row("P6", "-P6 --P6", "model", _ALL, "pyramid levels of the layer3 output", default=1, type=POSITIVE_INT,
         resumed=True, recorded=int),
    _row("P7", "-P7 --P7", "model", _ALL, "pyramid levels of the layer4 output", default=1, type=POSITIVE_INT,
         resumed=True, recorded=int),
    _row("trained_model_file", "-modelfile --trained_model_file", "model", _ALL,
         "checkpoint to write (main.py) or to read (tests, demo); main.py names it after its settings in "
         "checkpoints/ when not given"),
    _row("loss_type", "-lt --loss_type", "loss", _NAMING,
         "training loss; Lp is the paper README's name for norm-in-norm", default="norm-in-norm",
         choices=LOSS_TYPES + tuple(LOSS_TYPE_ALIASES), name=(3, "loss="), resumed=True),
    _row("alpha", "-a --alpha", "loss", _NAMING, "weights of the loss l and of its variant l'", default=[1, 0],
         type=NON_NEGATIVE, nargs=2, name=(8, "alpha="), resumed=True),
    _row("beta", "-b --beta", "loss", _NAMING, "weights of the layer3 head, the layer4 head and the fused head",
         default=[0.1, 0.1, 1], type=NON_NEGATIVE, nargs=3, name=(9, "beta="), resumed=True),
    _row("p", "-p --p", "loss", _NAMING, "order of the norm of the error", default=1, type=POSITIVE, name=(4, "p="),
         resumed=True),
    _row("q", "-q --q", "loss", _NAMING, "order of the normalization norm", default=2, type=POSITIVE, name=(5, "q="),
         resumed=True),
    _row("detach", "-detach --detach", "loss", _NAMING,
         "take the statistics of the predictions as constants in the backward pass", default=False, name=(6, "detach-"),
         resumed=True),
    _row("monotonicity_regularization", "-monoreg --monotonicity_regularization", "loss", _NAMING,
         "add the monotonicity regularizer", default=False, name=(14, "monotonicity="), resumed=True),
    _row("gamma", "-g --gamma", "loss", _MAIN, "weight of the monotonicity regularizer", accepts=_TEST, default=0.1,
         type=NON_NEGATIVE, resumed=True),
    _row("dataset", "-ds --dataset", "data", _NAMING, "KonIQ-10k, CLIVE, or your own data set", accepts=_DEMO,
         default="KonIQ-10k", name=10, resumed=True),
    _row("exp_id", "-eid --exp_id", "data", _NAMING, "which split of the info file to use", accepts=_DEMO, default=0,
         type=NON_NEGATIVE_INT, name=(19, "EXP"), resumed=True),
    _row("train_ratio", "-tr --train_ratio", "data", _MAIN,
         "share of training images (KonIQ-10k uses its official split)", accepts=_TEST_AND_DEMO, default=0.6,
         type=SHARE, resumed=True),
    _row("train_and_val_ratio", "-tvr --train_and_val_ratio", "data", _MAIN,
         "share of training and validation images (KonIQ-10k uses its official split)", accepts=_TEST_AND_DEMO,
         default=0.8, type=SHARE, resumed=True),
    _row("resize", "-rs --resize", "data", _ALL, "resize images to resize_size_h x resize_size_w", default=False,
         name=(11, "res="), resumed=True, recorded=bool, elsewhere=_RESIZE_GROUP),
    _row("resize_size_h", "-rs_h --resize_size_h", "data", _ALL, "height after resizing", default=498,
         type=POSITIVE_INT, name=12, resumed=True, recorded=int, elsewhere=_RESIZE_GROUP),
    _row("resize_size_w", "-rs_w --resize_size_w", "data", _ALL, "width after resizing", default=664, type=POSITIVE_INT,
         name=12, resumed=True, recorded=int, elsewhere=_RESIZE_GROUP),
    _row("data_info", "--data_info", "data", _NAMING,
         "info file of the data set (default of KonIQ-10k and CLIVE: data/<dataset>info.mat)", accepts=_DEMO),
    _row("im_dir", "--im_dir", "data", _NAMING,
         "folder of the images (default of KonIQ-10k and CLIVE: <dataset> in the repo root)", accepts=_DEMO),
    _row("cache_dir", "--cache_dir", "data", _NAMING,
         "folder of the decoded-image cache; none keeps the images in memory only, decoded on every run", accepts=_DEMO,
         default=DEFAULT_CACHE_DIR),
    _row("max_pixels", "--max_pixels", "data", _EVALUATING, "refuse images of more pixels (width x height) than this, "
         "which may be decompression bombs (default: Pillow's threshold, a 9459 x 9459 image)",
         default=DEFAULT_MAX_PIXELS, type=POSITIVE_INT),
    _row("augmentation", "-augment --augmentation --augment", "training schedule", _NAMING,
         "random rotation, horizontal flip and crop of training images", default=False, name=(13, "aug="),
         resumed=True),
    _row("angle", "-ag --angle", "training schedule", _MAIN, "largest rotation in degrees", accepts=_TEST, default=2,
         type=NON_NEGATIVE, resumed=True),
    _row("crop_size_h", "-cs_h --crop_size_h", "training schedule", _MAIN, "height of the training crop", accepts=_TEST,
         default=498, type=POSITIVE_INT, resumed=True),
    _row("crop_size_w", "-cs_w --crop_size_w", "training schedule", _MAIN, "width of the training crop", accepts=_TEST,
         default=498, type=POSITIVE_INT, resumed=True),
    _row("hflip_p", "-hp --hflip_p", "training schedule", _MAIN, "probability of a horizontal flip", accepts=_TEST,
         default=0.5, type=SHARE, resumed=True),
    _row("batch_size", "-bs --batch_size", "training schedule", _NAMING, "training batch size", default=8,
         type=POSITIVE_INT, name=(16, "bs="), resumed=True),
    # a row of the training group among the schedule's, where the resume check has compared it
    _row("accumulation_steps", "-accum --accumulation_steps", "training", _MAIN, "batches per optimizer step",
         default=1, type=POSITIVE_INT, resumed=True),
    _row("lr", "--lr -lr --learning_rate", "training schedule", _NAMING, "learning rate of the heads", default=1e-4,
         type=POSITIVE, name=(15, "lr="), resumed=True),
    # not resumed: a resumed run may train for more epochs than it started with
    _row("epochs", "-e --epochs", "training schedule", _NAMING, "training epochs", default=30, type=POSITIVE_INT,
         name=(17, "e=")),
    _row("ft_lr_ratio", "--ft_lr_ratio -flr", "training schedule", _NAMING,
         "learning rate of the backbone relative to lr; 0 freezes it", default=0.1, type=NON_NEGATIVE,
         name=(7, "ft_lr_ratio="), resumed=True),
    _row("skip_nonfinite", "--skip_nonfinite", "training", _MAIN, "skip a step whose loss is NaN or infinite "
         "(reported at the end of its epoch) instead of stopping the run there", default=False),
    _row("weight_decay", "-wd --weight_decay", "training", _MAIN, "weight decay", default=0.0, type=NON_NEGATIVE,
         resumed=True),
    _row("lr_decay", "-lrd --lr_decay", "training", _MAIN, "learning rate factor at each step", default=0.1, type=DECAY,
         resumed=True),
    _row("overall_lr_decay", "-olrd --overall_lr_decay", "training", _MAIN,
         "learning rate factor over the whole run, which sets the step length", default=0.01, type=DECAY, resumed=True),
    _row("randomness", "-rn --randomness", "training", _MAIN, "a random seed and cuDNN benchmark mode (fastest "
         "kernels, not deterministic) instead of --seed and deterministic cuDNN", default=False),
    _row("compile", "--compile", "training", _MAIN,
         "compile the model with torch.compile in this mode (default mode when given without one; reduce-overhead "
         "adds CUDA graphs); the first steps take minutes (default: not compiled)", nargs="?", const="default",
         choices=COMPILE_MODES),
    _row("val_criterion", "-valc --val_criterion", "training", _MAIN, "validation metric that selects the best model",
         default="SROCC", choices=("SROCC", "PLCC", "RMSE"), resumed=True),
    _row("test_during_training", "-tdt --test_during_training", "training", _MAIN,
         "evaluate the train and test sets every epoch and map with k, b fitted there", default=False, resumed=True),
    _row("evaluate", "-eval --evaluate", "training", _MAIN, "only test the trained checkpoint", default=False),
    _row("log_dir", "-logd --log_dir", "training", _MAIN, "TensorBoard folder", default="runs"),
    _row("resume", "--resume", "training", _MAIN_AND_DEMO,
         "continue an interrupted run from its last epoch (same options as the run)", default=False,
         elsewhere={DEMO: {"group": "demo", "help": "continue an interrupted run from the partial output beside "
                           "--output (<output>.partial), scoring only the images it has no row of (same model, resize "
                           "and images as the run)"}}),
    _row("quickstart", "--quickstart", "training", _MAIN, "make a synthetic KonIQ-10k and CLIVE, train, test and "
         "score on them: the whole pipeline on a CPU in minutes, before downloading anything", default=False),
    _row("nproc_per_node", "--nproc_per_node", "training", _MAIN, "processes to start on this machine, one per GPU "
         "(or CPU processes with gloo); under torchrun leave it out (default: one process)", type=POSITIVE_INT),
    _row("pretrained", "--pretrained", "training", _MAIN, "backbone start: imagenet (torchvision's cache, downloaded "
         "on first use), a local weights file, or none (random, for smoke runs)", default="imagenet"),
    _row("eval_batch_size", "-ebs --eval_batch_size", "run", _EVALUATING,
         "images per forward pass in validation, testing and scoring; images of one size share a batch (default: 32 "
         "on a GPU; 1 on a CPU, which runs fastest so)", type=POSITIVE_INT),
    _row("opt_level", "-optl --opt_level", "run", _EVALUATING, "O0: float32; O1: autocast float16, with loss scaling "
         "in training (the paper); bf16: autocast bfloat16. CUDA only: on a CPU every level runs in float32",
         default="O1", choices=OPT_LEVELS, name=(18, "opt_level="), resumed=True),
    _row("device", "--device", "run", _EVALUATING, "device (default: cuda if available)", choices=("cpu", "cuda")),
    _row("num_workers", "--num_workers", "run", _EVALUATING,
         "data loading processes (default: one per core, at most 8)", type=NON_NEGATIVE_INT),
    _row("seed", "--seed", "run", _MAIN, "random seed", accepts=_TEST_AND_DEMO, default=19920517, type=SEED,
         resumed=True),
    _row("debug", "-debug --debug", "run", _MAIN, "5 training batches and 5 val/test images", accepts=_TEST_AND_DEMO,
         default=False, resumed=True),
    _row("pbar", "-pbar --pbar", "run", _MAIN_AND_DEMO, "show progress bars", accepts=_TEST, default=False),
    _row("results_dir", "--results_dir", "results", _NAMING,
         "folder of the test metrics (.npy), the per-image scores and the metrics of each epoch (CSV)",
         default="results"),
    _row("img_path", "--img --img_path", "demo", _DEMO,
         "an image, a folder, a glob pattern, or - for a list of paths on stdin", default="data/1000.JPG"),
    _row("output", "-o --output", "demo", frozenset({DEMO, EXPORT}),
         "where the scores of several images go, written as they come: a CSV file, a .parquet file, a folder (a name "
         "ending in /) of Parquet shards, or - for CSV on standard output (default: standard output)",
         elsewhere={EXPORT: {"group": "export", "required": True,
                             "help": "the ONNX file to write, e.g. model.onnx (default: none; required)"}}),
    _row("onnx", "--onnx", "demo", frozenset({DEMO, APP}), "score with this ONNX model (written by export_onnx.py) "
         "in onnxruntime, without PyTorch; it records the model and its resize (default: the PyTorch checkpoint)"),
    _row("heads", "--heads", "demo", _DEMO,
         "add the three heads' outputs before any mapping (pq6, pq7, pq) as columns of --output", default=False),
    _row("window", "--window", "demo", _DEMO,
         "images batched and written to --output together; rows are also written every 10 s (with --ray, by window), "
         "so an interrupted run loses seconds, and a resumed run batches as it began", default=SCORING_WINDOW,
         type=POSITIVE_INT),
    _row("ray", "--ray", "demo", _DEMO, "score on the Ray cluster at this address (auto, ray://head:10001, ...) with "
         "Ray Data, or, with no address, on a local one started for the run (default: in this process)", nargs="?",
         const=""),
    _row("ray_workers", "--ray_workers", "demo", _DEMO,
         "model workers with --ray (default: one per GPU of the cluster, else one per 4 CPUs)", type=POSITIVE_INT),
    _row("host", "--host", "demo", frozenset({APP}), "address the page listens on; 0.0.0.0 for every network "
         "interface (default: 127.0.0.1, or $GRADIO_SERVER_NAME where set, as a Hugging Face Space sets it)"),
    _row("port", "--port", "demo", frozenset({APP}),
         "port the page listens on (default: 7860, or $GRADIO_SERVER_PORT; the next free one when neither is given)",
         type=number(int, minimum=1, maximum=65535)),
    _row("max_files", "--max_files", "demo", frozenset({APP}), "most files scored at once", default=100,
         type=POSITIVE_INT),
    _row("max_file_size", "--max_file_size", "demo", frozenset({APP}), "largest file uploaded, in megabytes",
         default=50, type=POSITIVE_INT),
)
# fmt: on


def script_options(script: str) -> tuple[Option, ...]:
    """The rows a script (one of SCRIPTS) parses, those it takes and those it accepts unused, as it reads them."""
    return tuple(replace(row, **row.elsewhere.get(script, {})) for row in OPTIONS if script in row.takes | row.accepts)


# The parts of a run's name (run_records.run_name), in the paper's order: each its label and the options it joins.
RUN_NAME = tuple(
    (label, tuple(row.dest for row in OPTIONS if row.run_name == (place, label)))
    for place, label in sorted({row.run_name for row in OPTIONS if row.run_name is not None})
)
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
