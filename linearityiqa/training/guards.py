"""What wraps each process of a training run, so that main.py's `training` reads as the method:
errors reported as one line, the outputs checked before the work, the run's files locked
against a second run of the same name, and cuDNN's mode. One `with` block, entered by
`distributed.launch` in every process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import ignite.distributed as idist

from linearityiqa.acceleration import cudnn_mode
from linearityiqa.cli import settings as adapt
from linearityiqa.cli.scripts import Advice, errors_reported, own_the_pixel_limit
from linearityiqa.records.paths import epochs_file, results_file, run_outputs, scores_file
from linearityiqa.records.run_lock import run_lock
from linearityiqa.records.writing import check_writable, refuse_inputs


@contextlib.contextmanager
def run_guards(settings: Mapping[str, Any], *, script: str, advice: Advice) -> Iterator[None]:
    """One process of a run, guarded: a user's mistake is one line from the first process (the
    others stay quiet) and ends the process with its exit status (SystemExit); the first process
    checks and locks the run's outputs; cuDNN is deterministic unless --randomness.

    Args:
        settings: the run's settings (cli/settings.run_settings).
        script: the script's name, which starts its error lines.
        advice: what the script tells the user about failures that are theirs.
    """
    first = idist.get_rank() == 0
    with errors_reported(script, advice, quiet=not first) as ended:
        own_the_pixel_limit()  # in every process: spawned ones start anew
        if first:
            check_outputs(settings)
            if not settings["evaluate"]:
                refuse_overwriting_inputs(settings)
        outputs = run_outputs(settings["trained_model_file"], settings["results_dir"], settings["run_name"])
        with run_lock(outputs) if first else contextlib.nullcontext():
            with cudnn_mode(deterministic=not settings["randomness"]):
                yield
    if ended.status:
        raise SystemExit(ended.status)


def check_outputs(settings: Mapping[str, Any]) -> None:
    """Before the work: every folder the run writes to takes new files (or the option to change is named)."""
    name = settings["run_name"]
    outputs = [("the run's results", results_file(settings["results_dir"], name), "--results_dir")]
    if not settings["evaluate"]:
        outputs.append(("the checkpoint", settings["trained_model_file"], "--trained_model_file"))
        outputs.append(("the TensorBoard log", os.path.join(settings["log_dir"], name), "--log_dir"))
    for what, path, option in outputs:
        check_writable(path, what=what, advice=f"free space, or pass another {option}")


def refuse_overwriting_inputs(settings: Mapping[str, Any]) -> None:
    """The files a run writes are none of the files it reads: its info file, its pretrained
    weights, its images (a stat each, and only for an output that exists already)."""
    source = adapt.data_source(settings)
    inputs = [("info file", source.spec.info_path)]
    weights = adapt.pretrained_weights(settings)
    if isinstance(weights, str):
        inputs.append(("pretrained weights file", weights))
    inputs += [("image", source.spec.im_dir / name) for name in source.info.im_names]
    results = results_file(settings["results_dir"], settings["run_name"])
    logged = epochs_file(settings["results_dir"], settings["run_name"])
    outputs = [("--trained_model_file", settings["trained_model_file"])]
    outputs += [("--results_dir", path) for path in (results, logged, scores_file(results))]
    for option, output in outputs:
        refuse_inputs(output, inputs, option=option)
