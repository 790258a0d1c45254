"""The parsers of main.py, test_dataset.py, test_demo.py, export_onnx.py and app.py, built from the
table of options (linearityiqa/options.py), and `model_file`: the model that test_demo.py's options name."""

from __future__ import annotations

import argparse
import copy
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from linearityiqa.errors import ConfigError
from linearityiqa.options import DEMO, EXPORT, GROUPS, MAIN, TEST_DATASET, script_options

if TYPE_CHECKING:
    from linearityiqa.image_scoring import ModelFile


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help strings end in "(default: X)", taken from the option itself so they cannot drift."""

    def _get_help_string(self, action: argparse.Action) -> str:
        # a help string that words its default itself (e.g. "cuda if available") keeps it
        return action.help if "(default:" in (action.help or "") else super()._get_help_string(action)


def build_parser(script: str, description: str) -> argparse.ArgumentParser:
    """The parser of a script (one of options.SCRIPTS): the table's rows it parses, in the order of GROUPS; a row it
    accepts unused is parsed, unlisted in --help."""
    parser = argparse.ArgumentParser(prog=script, description=description, formatter_class=_Formatter)
    groups = {title: parser.add_argument_group(title) for title in GROUPS}  # --help leaves out those left empty
    for row in sorted(script_options(script), key=lambda row: GROUPS.index(row.group)):  # usage in --help's order
        # a list default copied: the parsed options of a run must not share one with the table
        keywords = {"dest": row.dest, "action": row.action, "default": copy.deepcopy(row.default)}
        keywords["help"] = row.help if script in row.takes else argparse.SUPPRESS
        optional = {"type": row.type, "nargs": row.nargs, "choices": row.choices, "const": row.const}
        optional["required"] = row.required or None
        keywords |= {name: value for name, value in optional.items() if value is not None}
        groups[row.group].add_argument(*row.flags, **keywords)
    return parser


# Each script's parser. test_dataset.py's also takes, as the authors' script did, the loss and schedule
# options that name the checkpoint of a training run.
get_args_parser = functools.partial(build_parser, MAIN, "Train the LinearityIQA model (Li et al., ACM MM 2020).")
get_test_dataset_parser = functools.partial(build_parser, TEST_DATASET, "Test a trained checkpoint on a data set.")
get_demo_parser = functools.partial(build_parser, DEMO, "Score the quality of images with a trained checkpoint.")
get_export_parser = functools.partial(
    build_parser, EXPORT, "Export a trained checkpoint to ONNX, to score images in onnxruntime."
)


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """The options (by dest) that a command line gives, as opposed to those left at their defaults."""
    unset = object()
    # argparse sets a default only where the namespace has no value yet
    namespace = argparse.Namespace(**dict.fromkeys(vars(parser.parse_args([])), unset))
    return {dest for dest, value in vars(parser.parse_args(argv, namespace)).items() if value is not unset}


def model_file(options: Mapping[str, Any], *, defaults: Mapping[str, Any], given: set[str]) -> ModelFile:
    """The model that test_demo.py's (or app.py's) parsed `options` name: --onnx's file, or the
    checkpoint (the authors' released one by default) with the settings asked for and their `defaults`."""
    # here, not at the top: `linearityiqa --help` needs neither numpy nor PyTorch
    from linearityiqa.image_scoring import CHECKPOINT, MODEL_OPTIONS, ONNX, ModelFile

    common = {"eval_batch_size": options["eval_batch_size"], "max_pixels": options["max_pixels"]}
    if options["onnx"]:
        # what an ONNX model records itself, and PyTorch's options
        clashing = [name for name in ("trained_model_file", *MODEL_OPTIONS, "device", "opt_level") if name in given]
        if clashing:
            raise ConfigError(
                f"{', '.join(f'--{name}' for name in clashing)}: an ONNX model records its model and resize, and "
                f"runs on the CPU in onnxruntime; drop them (export again with export_onnx.py to change the model "
                f"or its resize)"
            )
        return ModelFile(ONNX, options["onnx"], **common)
    from linearityiqa.records.checkpoint import RELEASED_CHECKPOINT  # loads PyTorch, which --onnx never does

    return ModelFile(
        CHECKPOINT,
        options["trained_model_file"] or RELEASED_CHECKPOINT,
        device=options["device"],
        opt_level=options["opt_level"],
        requested={name: options[name] for name in MODEL_OPTIONS},
        defaults={name: defaults[name] for name in MODEL_OPTIONS},
        **common,
    )
