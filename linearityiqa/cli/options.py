"""Every command-line option of main.py, test_dataset.py and test_demo.py, defined once.

Each group of options is a parent parser; a script builds its parser from the groups it
needs. Option names accept both spellings the authors used: the paper README's
(`--lr`, `--arch`, `--img`) and their later release's (`-lr/--learning_rate`,
`-arch/--architecture`, `--img_path`). cli/settings.py turns parsed options into the
arguments of the library modules, which never see an argparse namespace.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Callable

from linearityiqa.choices import COMPILE_MODES, LOSS_TYPE_ALIASES, LOSS_TYPES, OPT_LEVELS, POOLING_METHODS
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS
from linearityiqa.data.image_store import DEFAULT_CACHE_DIR


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help strings end in "(default: X)", taken from the option itself so they cannot drift."""

    def _get_help_string(self, action: argparse.Action) -> str:
        # a help string that words its default itself (e.g. "cuda if available") keeps it
        return action.help if "(default:" in (action.help or "") else super()._get_help_string(action)


def _number(
    kind: type, *, above: float | None = None, minimum: float | None = None, maximum: float | None = None
) -> Callable[[str], int | float]:
    """An argparse type: a finite int or float within bounds, or an argparse error that names them."""
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


def _group(title: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False, formatter_class=_Formatter, description=title)


def model_options() -> argparse.ArgumentParser:
    parser = _group("model")
    group = parser.add_argument_group("model")
    group.add_argument(
        "--arch",
        "-arch",
        "--architecture",
        dest="arch",
        default="resnext101_32x8d",
        help="torchvision backbone: a ResNet/ResNeXt, alexnet or vgg16",
    )
    group.add_argument("-pl", "--pool", default="avg", choices=POOLING_METHODS, help="SPSP pooling method")
    group.add_argument("-ubne", "--use_bn_end", action="store_true", help="BatchNorm1d after each regressor")
    group.add_argument(
        "-P6", "--P6", dest="P6", type=POSITIVE_INT, default=1, help="pyramid levels of the layer3 output"
    )
    group.add_argument(
        "-P7", "--P7", dest="P7", type=POSITIVE_INT, default=1, help="pyramid levels of the layer4 output"
    )
    group.add_argument(
        "-modelfile",
        "--trained_model_file",
        default=None,
        help="checkpoint to write (main.py) or to read (tests, demo); main.py names it "
        "after its settings in checkpoints/ when not given",
    )
    return parser


def loss_options() -> argparse.ArgumentParser:
    parser = _group("loss")
    group = parser.add_argument_group("loss")
    group.add_argument(
        "-lt",
        "--loss_type",
        default="norm-in-norm",
        choices=LOSS_TYPES + tuple(LOSS_TYPE_ALIASES),
        help="training loss; Lp is the paper README's name for norm-in-norm",
    )
    group.add_argument(
        "-a", "--alpha", nargs=2, type=NON_NEGATIVE, default=[1, 0], help="weights of the loss l and of its variant l'"
    )
    group.add_argument(
        "-b",
        "--beta",
        nargs=3,
        type=NON_NEGATIVE,
        default=[0.1, 0.1, 1],
        help="weights of the layer3 head, the layer4 head and the fused head",
    )
    group.add_argument("-p", "--p", dest="p", type=POSITIVE, default=1, help="order of the norm of the error")
    group.add_argument("-q", "--q", dest="q", type=POSITIVE, default=2, help="order of the normalization norm")
    group.add_argument(
        "-detach",
        "--detach",
        action="store_true",
        help="take the statistics of the predictions as constants in the backward pass",
    )
    group.add_argument(
        "-monoreg", "--monotonicity_regularization", action="store_true", help="add the monotonicity regularizer"
    )
    group.add_argument("-g", "--gamma", type=NON_NEGATIVE, default=0.1, help="weight of the monotonicity regularizer")
    return parser


def data_options() -> argparse.ArgumentParser:
    parser = _group("data")
    group = parser.add_argument_group("data")
    group.add_argument("-ds", "--dataset", default="KonIQ-10k", help="KonIQ-10k, CLIVE, or your own data set")
    group.add_argument("-eid", "--exp_id", type=NON_NEGATIVE_INT, default=0, help="which split of the info file to use")
    group.add_argument(
        "-tr",
        "--train_ratio",
        type=SHARE,
        default=0.6,
        help="share of training images (KonIQ-10k uses its official split)",
    )
    group.add_argument(
        "-tvr",
        "--train_and_val_ratio",
        type=SHARE,
        default=0.8,
        help="share of training and validation images (KonIQ-10k uses its official split)",
    )
    _add_resize_options(group)
    group.add_argument(
        "--data_info",
        default=None,
        help="info file of the data set (default of KonIQ-10k and CLIVE: data/<dataset>info.mat)",
    )
    group.add_argument(
        "--im_dir",
        default=None,
        help="folder of the images (default of KonIQ-10k and CLIVE: <dataset> in the repo root)",
    )
    group.add_argument(
        "--cache_dir",
        default=DEFAULT_CACHE_DIR,
        help="folder of the decoded-image cache; none keeps the images in memory only, decoded on every run",
    )
    group.add_argument(
        "--max_pixels",
        type=POSITIVE_INT,
        default=DEFAULT_MAX_PIXELS,
        help="refuse images of more pixels (width x height) than this, which may be decompression "
        "bombs (default: Pillow's threshold, a 9459 x 9459 image)",
    )
    return parser


def _add_resize_options(group: argparse._ArgumentGroup) -> None:
    """--resize, -rs_h and -rs_w: defined once, for the data options and for export_onnx.py's resize options."""
    group.add_argument("-rs", "--resize", action="store_true", help="resize images to resize_size_h x resize_size_w")
    group.add_argument("-rs_h", "--resize_size_h", type=POSITIVE_INT, default=498, help="height after resizing")
    group.add_argument("-rs_w", "--resize_size_w", type=POSITIVE_INT, default=664, help="width after resizing")


def schedule_options() -> argparse.ArgumentParser:
    """What a run trains with and its name records (with the model and loss options). test_dataset.py
    takes them too, as the authors' did, to find the checkpoint that main.py saved for them."""
    parser = _group("training schedule")
    group = parser.add_argument_group("training schedule")
    group.add_argument("-bs", "--batch_size", type=POSITIVE_INT, default=8, help="training batch size")
    group.add_argument(
        "--lr", "-lr", "--learning_rate", dest="lr", type=POSITIVE, default=1e-4, help="learning rate of the heads"
    )
    group.add_argument("-e", "--epochs", type=POSITIVE_INT, default=30, help="training epochs")
    group.add_argument(
        "--ft_lr_ratio",
        "-flr",
        dest="ft_lr_ratio",
        type=NON_NEGATIVE,
        default=0.1,
        help="learning rate of the backbone relative to lr; 0 freezes it",
    )
    group.add_argument(
        "-augment",
        "--augmentation",
        "--augment",
        dest="augmentation",
        action="store_true",
        help="random rotation, horizontal flip and crop of training images",
    )
    group.add_argument("-ag", "--angle", type=NON_NEGATIVE, default=2, help="largest rotation in degrees")
    group.add_argument("-cs_h", "--crop_size_h", type=POSITIVE_INT, default=498, help="height of the training crop")
    group.add_argument("-cs_w", "--crop_size_w", type=POSITIVE_INT, default=498, help="width of the training crop")
    group.add_argument("-hp", "--hflip_p", type=SHARE, default=0.5, help="probability of a horizontal flip")
    return parser


def training_options() -> argparse.ArgumentParser:
    parser = _group("training")
    group = parser.add_argument_group("training")
    group.add_argument(
        "-accum", "--accumulation_steps", type=POSITIVE_INT, default=1, help="batches per optimizer step"
    )
    group.add_argument(
        "--skip_nonfinite",
        action="store_true",
        help="skip a step whose loss is NaN or infinite (reported at the end of its epoch) "
        "instead of stopping the run there",
    )
    group.add_argument("-wd", "--weight_decay", type=NON_NEGATIVE, default=0.0, help="weight decay")
    group.add_argument("-lrd", "--lr_decay", type=DECAY, default=0.1, help="learning rate factor at each step")
    group.add_argument(
        "-olrd",
        "--overall_lr_decay",
        type=DECAY,
        default=0.01,
        help="learning rate factor over the whole run, which sets the step length",
    )
    group.add_argument(
        "-rn",
        "--randomness",
        action="store_true",
        help="a random seed and cuDNN benchmark mode (fastest kernels, not deterministic) "
        "instead of --seed and deterministic cuDNN",
    )
    group.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default=None,
        choices=COMPILE_MODES,
        help="compile the model with torch.compile in this mode (default mode when given "
        "without one; reduce-overhead adds CUDA graphs); the first steps take minutes "
        "(default: not compiled)",
    )
    group.add_argument(
        "-valc",
        "--val_criterion",
        default="SROCC",
        choices=("SROCC", "PLCC", "RMSE"),
        help="validation metric that selects the best model",
    )
    group.add_argument(
        "-tdt",
        "--test_during_training",
        action="store_true",
        help="evaluate the train and test sets every epoch and map with k, b fitted there",
    )
    group.add_argument("-eval", "--evaluate", action="store_true", help="only test the trained checkpoint")
    group.add_argument("-logd", "--log_dir", default="runs", help="TensorBoard folder")
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last epoch (same options as the run)",
    )
    group.add_argument(
        "--quickstart",
        action="store_true",
        help="make a synthetic KonIQ-10k and CLIVE, train, test and score on them: the whole "
        "pipeline on a CPU in minutes, before downloading anything",
    )
    group.add_argument(
        "--nproc_per_node",
        type=POSITIVE_INT,
        default=None,
        help="processes to start on this machine, one per GPU (or CPU processes with gloo); "
        "under torchrun leave it out (default: one process)",
    )
    group.add_argument(
        "--pretrained",
        default="imagenet",
        help="backbone start: imagenet (torchvision's cache, downloaded on first use), a local "
        "weights file, or none (random, for smoke runs)",
    )
    return parser


def run_options() -> argparse.ArgumentParser:
    parser = _group("run")
    group = parser.add_argument_group("run")
    group.add_argument(
        "-ebs",
        "--eval_batch_size",
        type=POSITIVE_INT,
        default=None,
        help="images per forward pass in validation, testing and scoring; images of one "
        "size share a batch (default: 32 on a GPU; 1 on a CPU, which runs fastest so)",
    )
    group.add_argument(
        "-optl",
        "--opt_level",
        default="O1",
        choices=OPT_LEVELS,
        help="O0: float32; O1: autocast float16, with loss scaling in training (the paper); "
        "bf16: autocast bfloat16. CUDA only: on a CPU every level runs in float32",
    )
    group.add_argument("--device", default=None, choices=("cpu", "cuda"), help="device (default: cuda if available)")
    group.add_argument(
        "--num_workers",
        type=NON_NEGATIVE_INT,
        default=None,
        help="data loading processes (default: one per core, at most 8)",
    )
    group.add_argument("--seed", type=int, default=19920517, help="random seed")
    group.add_argument("-debug", "--debug", action="store_true", help="5 training batches and 5 val/test images")
    group.add_argument("-pbar", "--pbar", action="store_true", help="show progress bars")
    return parser


def results_options() -> argparse.ArgumentParser:
    parser = _group("results")
    group = parser.add_argument_group("results")
    group.add_argument(
        "--results_dir",
        default="results",
        help="folder of the test metrics (.npy), the per-image scores and the metrics of each epoch (CSV)",
    )
    return parser


def demo_options() -> argparse.ArgumentParser:
    parser = _group("demo")
    group = parser.add_argument_group("demo")
    group.add_argument(
        "--img",
        "--img_path",
        dest="img_path",
        default="data/1000.JPG",
        help="an image, a folder, a glob pattern, or - for a list of paths on stdin",
    )
    group.add_argument(
        "-o",
        "--output",
        default=None,
        help="CSV file for the scores of several images, or - for standard output (default: standard output)",
    )
    group.add_argument(
        "--onnx",
        default=None,
        help="score with this ONNX model (written by export_onnx.py) in onnxruntime, without PyTorch; "
        "it records the model and its resize (default: the PyTorch checkpoint)",
    )
    return parser


def resize_options() -> argparse.ArgumentParser:
    """The resize of the data options alone, for a script that reads no data set."""
    parser = _group("resize")
    _add_resize_options(parser.add_argument_group("resize"))
    return parser


def export_options() -> argparse.ArgumentParser:
    parser = _group("export")
    group = parser.add_argument_group("export")
    group.add_argument(
        "-o", "--output", required=True, help="the ONNX file to write, e.g. model.onnx (default: none; required)"
    )
    return parser


def build_parser(
    description: str, groups: list[argparse.ArgumentParser], add_help: bool = True
) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        description=description, parents=groups, add_help=add_help, formatter_class=_Formatter
    )


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """main.py's parser: every option."""
    groups = [
        model_options(),
        loss_options(),
        data_options(),
        schedule_options(),
        training_options(),
        run_options(),
        results_options(),
    ]
    return build_parser("Train the LinearityIQA model (Li et al., ACM MM 2020).", groups, add_help)


def get_test_dataset_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """test_dataset.py's parser: the model, its checkpoint and the data set to test on, and (as in
    the authors' script) the loss and schedule options that name the checkpoint of a training run."""
    return build_parser(
        "Test a trained checkpoint on a data set.",
        [model_options(), loss_options(), schedule_options(), data_options(), run_options(), results_options()],
        add_help,
    )


def get_demo_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """test_demo.py's parser: the model, its checkpoint and the images to score."""
    return build_parser(
        "Score the quality of images with a trained checkpoint.",
        [model_options(), data_options(), run_options(), demo_options()],
        add_help,
    )


def get_export_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """export_onnx.py's parser: the model, its checkpoint, the resize and the ONNX file to write."""
    return build_parser(
        "Export a trained checkpoint to ONNX, to score images in onnxruntime.",
        [model_options(), resize_options(), export_options()],
        add_help,
    )


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """The options (by dest) that a command line gives, as opposed to those left at their defaults."""
    unset = object()
    # argparse sets a default only where the namespace has no value yet
    namespace = argparse.Namespace(**dict.fromkeys(vars(parser.parse_args([])), unset))
    return {dest for dest, value in vars(parser.parse_args(argv, namespace)).items() if value is not unset}
