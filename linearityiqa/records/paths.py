"""The name of every file a run or a test writes: users and `python -m reproduce` find results
by these names, so they never change.

    checkpoints/<run name>                      the best model (main.py; --trained_model_file)
    checkpoints/<run name>.resume/              the whole state after the latest epoch, for --resume
    <results_dir>/<run name>.npy                the final test's metrics
    <results_dir>/<run name>-epochs.csv         every epoch's metrics (run_records.EpochLog)
    <results_dir>/<run name>-scores.csv         the final test's per-image scores
    <results_dir>/dataset=<name>-tested_on_<checkpoint>.npy   and -scores.csv: test_dataset.py's
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from typing import Any

from linearityiqa.errors import ConfigError
from linearityiqa.options import RUN_NAME
from linearityiqa.records.writing import cut_to_bytes

# Each saved state is named after its epoch, as ignite's Checkpoint named them (any other name is
# the temporary file of a save that was cut short).
RESUME_FILE = re.compile(r"checkpoint_(\d+)\.pt")
# Most file systems take names of up to 255 bytes; a run's longest files add "-scores.csv" to its name.
LONGEST_NAME = 255 - len("-scores.csv")


def run_name(settings: Mapping[str, Any]) -> str:
    """The name of a run's checkpoint, results and logs: its settings, in the paper's order (options.RUN_NAME)."""
    check_name_part("--dataset", settings["dataset"])
    name = "-".join(label + "x".join(f"{settings[dest]}" for dest in dests) for label, dests in RUN_NAME)
    if len(os.fsencode(name)) > LONGEST_NAME:
        raise ConfigError(
            f"the run's name, which its checkpoint and results files take, would be {len(os.fsencode(name))} "
            f"bytes long, more than the {LONGEST_NAME} a file name can hold with its suffixes: shorten --dataset"
        )
    return name


def check_name_part(option: str, value: str) -> None:
    """An option's value that becomes part of a file name holds no path separator (it would put the
    file in another folder) and no control character."""
    separators = {os.sep, os.altsep} - {None}
    if any(char in separators or not char.isprintable() for char in str(value)):
        raise ConfigError(
            f"{option} {value!r} becomes part of file names, so it cannot hold '/' (nor a line break, a tab or "
            f"another control character): name it without one"
        )


def default_checkpoint(name: str) -> str:
    """Where main.py saves a run's best model when --trained_model_file does not say."""
    return os.path.join("checkpoints", name)


def results_file(results_dir: str, name: str) -> str:
    """The final test's metrics of the run `name` (np.save of a dict)."""
    return os.path.join(results_dir, f"{name}.npy")


def epochs_file(results_dir: str, name: str) -> str:
    """Every epoch's metrics of the run `name` (see run_records.EpochLog)."""
    return os.path.join(results_dir, f"{name}-epochs.csv")


def scores_file(results: str) -> str:
    """The per-image scores CSV beside a results .npy file."""
    return os.path.splitext(results)[0] + "-scores.csv"


def dataset_results_file(results_dir: str, dataset: str, trained_model_file: str) -> str:
    """test_dataset.py's metrics of a checkpoint on a data set: dataset=<name>-tested_on_<checkpoint>.npy,
    as the authors named it; where that is too long for a file name (main.py's checkpoints are named
    after all their settings), its end is a hash of it."""
    check_name_part("--dataset", dataset)
    name = f"dataset={dataset}-tested_on_{os.path.basename(trained_model_file)}"
    if len(os.fsencode(name)) > LONGEST_NAME:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
        name = f"{cut_to_bytes(name, LONGEST_NAME - len(digest) - 1)}-{digest}"
    return os.path.join(results_dir, f"{name}.npy")


def resume_folder(trained_model_file: str) -> str:
    """The resume states of the run that saves its best model to `trained_model_file`."""
    return trained_model_file + ".resume"


def latest_resume_file(folder: str) -> str | None:
    """The state of the latest saved epoch in a resume folder (never a save cut short), or None."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    epochs = {int(match.group(1)): name for name in names if (match := RESUME_FILE.fullmatch(name))}
    return os.path.join(folder, epochs[max(epochs)]) if epochs else None
