"""What a run records besides its checkpoint, under names that never change: users and `python -m reproduce` find
results by them (docs/training.md, "What a run writes", says what each holds).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from linearityiqa.errors import BadFileError, ConfigError, MissingFileError
from linearityiqa.options import RUN_NAME
from linearityiqa.records.writing import cut_to_bytes, replacing

EPOCH_COLUMNS = ("epoch", "split", "metric", "value")  # one value a row: a metric added later needs no new format
SCORE_COLUMNS = ("score", "prediction", "mapped")
FINAL_TEST = "final_test"
_ADVICE = "free space, or pass another --results_dir"
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
    return os.path.join("checkpoints", name)


def results_file(results_dir: str, name: str) -> str:
    return os.path.join(results_dir, f"{name}.npy")


def epochs_file(results_dir: str, name: str) -> str:
    return os.path.join(results_dir, f"{name}-epochs.csv")


def scores_file(results: str) -> str:
    return os.path.splitext(results)[0] + "-scores.csv"


def dataset_results_file(results_dir: str, dataset: str, trained_model_file: str) -> str:
    """test_dataset.py's metrics of a checkpoint on a data set: dataset=<name>-tested_on_<checkpoint>.npy, as the
    authors named it, its end a hash where too long for a file name (main.py's names hold all settings)."""
    check_name_part("--dataset", dataset)
    name = f"dataset={dataset}-tested_on_{os.path.basename(trained_model_file)}"
    if len(os.fsencode(name)) > LONGEST_NAME:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
        name = f"{cut_to_bytes(name, LONGEST_NAME - len(digest) - 1)}-{digest}"
    return os.path.join(results_dir, f"{name}.npy")


def resume_folder(trained_model_file: str) -> str:
    return trained_model_file + ".resume"


def latest_resume_file(folder: str) -> str | None:
    """The state of the latest saved epoch in a resume folder (never a save cut short), or None."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    epochs = {int(match.group(1)): name for name in names if (match := RESUME_FILE.fullmatch(name))}
    return os.path.join(folder, epochs[max(epochs)]) if epochs else None


class Series(NamedTuple):
    """One metric of one split over the epochs, in epoch order."""

    epochs: list[int]
    values: list[float]


class EpochLog:
    """Writes a run's `-epochs.csv` as the run goes, whole again with each addition, so that an interrupt leaves the
    rows written before it. A resumed run keeps the rows of `kept_from` (default: `path`; left as it is) up to its
    last finished epoch, `resume_after`, and drops the later ones and any final test; 0 starts a new file."""

    def __init__(self, path: str, *, resume_after: int = 0, kept_from: str | None = None):
        self.path = path
        earlier = _read_rows(kept_from or path) if resume_after else []
        # the final test of a run killed before it removed its state is tested again
        self.rows = [row for row in earlier if row[0] <= resume_after and row[1] != FINAL_TEST]
        _write_table(path, EPOCH_COLUMNS, self.rows, what="the metrics of each epoch")

    def add(self, epoch: int, split: str, metrics: Mapping[str, float]) -> None:
        self.rows += [(epoch, split, name, f"{float(value):.6g}") for name, value in metrics.items()]
        _write_table(self.path, EPOCH_COLUMNS, self.rows, what="the metrics of each epoch")


class EpochMetrics:
    """A run's `-epochs.csv`, read: `series('val', 'PLCC')`, `final('SROCC')`."""

    def __init__(self, path: str):
        self._values: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        for epoch, split, metric, value in _read_rows(path):
            self._values[split, metric][epoch] = float(value)

    def series(self, split: str, metric: str) -> Series:
        values = self._values.get((split, metric), {})
        epochs = sorted(values)
        return Series(epochs, [values[epoch] for epoch in epochs])

    def final(self, metric: str) -> float:
        """The best model's test `metric`: NaN if the run did not finish."""
        values = self._values.get((FINAL_TEST, metric))
        return next(iter(values.values())) if values else math.nan

    def has(self, split: str) -> bool:
        return any(key[0] == split for key in self._values)


def first_epoch_reaching(series: Series, threshold: float) -> int:
    """The first epoch whose value is at least `threshold`; 0 if none is."""
    return next((epoch for epoch, value in zip(*series) if value >= threshold), 0)


def _read_rows(path: str) -> list[tuple[int, str, str, str]]:
    """The rows of a metrics file: epoch (an int), split, metric and value (a number, as written)."""
    if not os.path.isfile(path):
        raise MissingFileError(f"no metrics file {path}: the run has not written it (train it first)")
    rows = []
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        if tuple(reader.fieldnames or ()) != EPOCH_COLUMNS:
            raise BadFileError(
                f"{path} is not a metrics file of main.py: its header should be {','.join(EPOCH_COLUMNS)}"
            )
        for number, row in enumerate(reader, start=2):
            try:
                float(row["value"])
                rows.append((int(row["epoch"]), row["split"], row["metric"], row["value"]))
            except (TypeError, ValueError):
                raise BadFileError(
                    f"{path}, line {number}: epoch {row['epoch']!r} and value {row['value']!r} "
                    f"should be numbers; delete the file and train again to rewrite it"
                ) from None
    return rows


def save_results(path: str, performance: Mapping[str, Any]) -> None:
    """A test's metrics as the paper's code saved them (`np.save` of the dict), and `write_scores`."""
    with replacing(path, what="the test's metrics", advice=_ADVICE, binary=True) as file:
        np.save(file, dict(performance))
    write_scores(scores_file(path), performance)


def write_scores(path: str, performance: Mapping[str, np.ndarray]) -> None:
    """The per-image scores of a test: subjective score, fused prediction, and it mapped by k, b."""
    columns = [np.asarray(performance[name]).reshape(-1).tolist() for name in ("sq", "pq_before", "pq")]
    _write_table(path, SCORE_COLUMNS, zip(*columns), what="the per-image scores")


def _write_table(path: str, header: Sequence[str], rows: Iterable[Sequence[Any]], *, what: str) -> None:
    with replacing(path, what=what, advice=_ADVICE, newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def read_scores(path: str) -> dict[str, np.ndarray]:
    """A `-scores.csv` file as columns: score, prediction, mapped."""
    if not os.path.isfile(path):
        raise MissingFileError(f"no scores file {path}: test the checkpoint first")
    try:
        with open(path, newline="") as file:
            if tuple(next(csv.reader(file), [])) != SCORE_COLUMNS:
                raise ValueError(f"its header should be {','.join(SCORE_COLUMNS)}")
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except ValueError as error:
        raise BadFileError(
            f"{path} is not a scores file of this project ({error}); test the checkpoint again to rewrite it"
        ) from None
    return {name: table[:, column] for column, name in enumerate(SCORE_COLUMNS)}
