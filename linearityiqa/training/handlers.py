"""What a training run does besides the method, as ignite handlers of its trainer: record each
epoch's metrics, save the whole state for --resume and restore it (read before the images are
decoded), and log to TensorBoard and progress bars.

main.py builds a run's parts once (`RunParts`) and attaches these around its own trainer and
validation; each handler takes the settings it reads from the run's settings, the options as
plain types.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, ProgressBar, global_step_from_engine
from ignite.handlers.tensorboard_logger import TensorboardLogger
from torch.utils.data import DataLoader

from linearityiqa.acceleration import Precision
from linearityiqa.errors import BadFileError, ConfigError, IQAError, MissingFileError, first_line
from linearityiqa.options import RESUMED
from linearityiqa.records.checkpoint import save_file
from linearityiqa.records.paths import (
    RESUME_FILE,
    check_name_part,
    epochs_file,
    latest_resume_file,
    results_file,
    resume_folder,
)
from linearityiqa.records.run_records import FINAL_TEST, EpochLog, EpochMetrics
from linearityiqa.training.evaluation import METRICS_PRINTED, Evaluation, Progress

# What to do when a resume state cannot be written (after "cannot write the resume state <file>: <reason>; ").
_RESUME_ADVICE = (
    "free space (the states are saved beside --trained_model_file), then run again with --resume, which goes on "
    "from the last state saved"
)
# The temporary file of a resume state's save that a kill cut short (records/writing.py names it).
_CUT_SHORT = re.compile(r"\.checkpoint_\d+\.pt\..+\.partial")


class Loaders(NamedTuple):
    """The loaders of one experiment (this process's share of them)."""

    train: DataLoader
    val: DataLoader
    test: DataLoader


@dataclass
class RunParts:
    """What a run is made of, built once.

    Args:
        model: the model whose weights are saved.
        trained: what the trainer runs: the model itself, or it wrapped by
            DistributedDataParallel or torch.compile (which share its parameters).
        optimizer: Adam over the model's parameter groups.
        scheduler: the learning-rate schedule, stepped after each epoch.
        loaders: the train, val and test loaders.
        evaluations: an Evaluation per split, by name.
        precision: the autocast and loss scaler the model trains and evaluates under.
        channels_last: whether the model and its batches are in channels_last.
        progress: the best validation score so far.
    """

    model: torch.nn.Module
    trained: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loaders: Loaders
    evaluations: dict[str, Evaluation]
    precision: Precision
    channels_last: bool
    progress: Progress = field(default_factory=Progress)


def say(*lines: str) -> None:
    """Print from the first process only."""
    if idist.get_rank() == 0:
        print(*lines, sep="\n", flush=True)


def record(epoch_log: EpochLog | None, epoch: int, split: str, performance: Mapping[str, Any]) -> None:
    """Add an evaluation's metrics to the -epochs.csv file (None in processes that write none)."""
    if epoch_log is not None:
        epoch_log.add(epoch, split, {name: performance[name] for name in METRICS_PRINTED})


def open_epoch_log(settings: Mapping[str, Any], resumed_epoch: int, saved_name: str | None = None) -> EpochLog:
    """The run's -epochs.csv file, started anew, or keeping the finished epochs of a resumed run:
    from the file of the name the run had (`saved_name`) when a longer -e renamed it."""
    path = epochs_file(settings["results_dir"], settings["run_name"])
    if not settings["resume"]:
        return EpochLog(path)
    earlier = path
    if saved_name is not None and saved_name != settings["run_name"]:
        check_name_part("the resume state's run name", saved_name)
        earlier = epochs_file(settings["results_dir"], saved_name)
        say(f"note: the state was saved by the run {saved_name}; its epochs so far are kept in {path}")
    return EpochLog(path, resume_after=resumed_epoch, kept_from=earlier)


def attach_mean_loss(trainer: Engine, epoch_log: EpochLog) -> None:
    """Add each epoch's mean training loss to the -epochs.csv file."""
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: losses.append(engine.state.output))

    @trainer.on(Events.EPOCH_COMPLETED)
    def log_mean_loss(engine: Engine) -> None:
        # the steps skipped for a non-finite loss (--skip_nonfinite) are counted, not averaged
        finite = [loss for loss in losses if math.isfinite(loss)]
        metrics = {"loss": sum(finite) / max(len(finite), 1)}
        if len(finite) < len(losses):
            metrics["skipped_steps"] = len(losses) - len(finite)
        epoch_log.add(engine.state.epoch, "train", metrics)
        losses.clear()


class RunSettings:
    """The options that decide what a run trains, saved in its resume state so that --resume can
    tell a run asked with other options (ignite's Checkpoint saves what has a state_dict), and
    the run's name, under which its files so far are (a longer run resumed takes another name).

    Args:
        settings: the run's settings; those named in RESUMED are kept.
    """

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = {name: settings[name] for name in RESUMED if name in settings}
        self.run_name = settings.get("run_name")

    def state_dict(self) -> dict[str, Any]:
        return {**self.settings, "run_name": self.run_name}


class RandomStates:
    """Python's, NumPy's and PyTorch's random generators, kept in the resume state: a run resumed
    from the state of its last epoch fits k, b on the training batches the unbroken run drew."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss)
        return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        random.setstate(state["python"])
        kind, keys, *rest = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
        torch.set_rng_state(state["torch"])


def resume_state(trainer: Engine, parts: RunParts, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The objects whose state --resume restores, and the settings it must agree with.

    Args:
        trainer: the engine, whose state holds the epoch.
        parts: the run's model, optimizer, scheduler, best score and loss scaler.
        settings: the run's settings.
    """
    state = {
        "trainer": trainer,
        "model": parts.model,
        "optimizer": parts.optimizer,
        "lr_scheduler": parts.scheduler,
        "progress": parts.progress,
        "settings": RunSettings(settings),
        "random": RandomStates(),
    }
    if parts.precision.scaler is not None:
        state["scaler"] = parts.precision.scaler
    return state


@dataclass(frozen=True)
class SavedState:
    """A resume state read from its file, saved with the run's settings.

    Args:
        path: the file.
        saved: what it holds: each object's state, by the names of `resume_state`.
        finished: the run had finished (no state was left; `path` is its test's metrics): nothing to resume.
    """

    path: str
    saved: dict[str, Any]
    finished: bool = False


def read_resume_state(settings: Mapping[str, Any]) -> SavedState:
    """The latest whole state saved beside the run's checkpoint, once it is known to be readable
    and saved with the same settings: read before the model is built and the images decoded,
    which a --resume that cannot go on would wait for. A run that finished has no state left:
    then where its results are is said, and the state returned is `finished`.

    Raises:
        MissingFileError: no epoch of the run was saved, and it has not finished.
        BadFileError: the state file is damaged.
        ConfigError: the state was saved by a run with other options (the first is named), or has
            finished more epochs than asked for (-e).
    """
    folder = resume_folder(settings["trained_model_file"])
    path = latest_resume_file(folder)
    if path is None:
        return _finished_run(settings, folder)
    saved = _read_resume_file(path)
    _check_resumed_settings(saved.get("settings", {}), RunSettings(settings).settings, path)
    finished = _finished_epochs(saved.get("trainer"))
    if finished > settings["epochs"]:
        raise ConfigError(
            f"--resume: the saved state at {path} has finished {finished} epochs, more than the "
            f"{settings['epochs']} asked for (-e): pass -e {finished} or more"
        )
    return SavedState(path, saved)


def _finished_run(settings: Mapping[str, Any], folder: str) -> SavedState:
    """A run without a resume state finished when its checkpoint, its test's metrics and the final
    test in its -epochs.csv are there (a run killed before its first saved epoch has none of the last)."""
    checkpoint, results = settings["trained_model_file"], results_file(settings["results_dir"], settings["run_name"])
    if os.path.isfile(checkpoint) and os.path.isfile(results):
        with contextlib.suppress(IQAError):  # an epochs file unreadable: not a finished run's
            if EpochMetrics(epochs_file(settings["results_dir"], settings["run_name"])).has(FINAL_TEST):
                say(f"--resume: the run finished already: its best model is {checkpoint}, its test's metrics {results}")
                return SavedState(results, {}, finished=True)
    raise MissingFileError(
        f"nothing to resume in {folder}: no epoch of the run was saved there and it has no test's metrics "
        f"({results}); run without --resume to train it from the start (a run of another -e saves under its "
        f"own name: pass its --trained_model_file to train it longer)"
    )


def _finished_epochs(trainer: object) -> int:
    """The epochs a saved trainer state has finished, as ignite's Engine.state_dict records them
    (0 where it records none: restoring it then says what is wrong)."""
    if not isinstance(trainer, dict):
        return 0
    if isinstance(trainer.get("epoch"), int):
        return trainer["epoch"]
    iteration, length = trainer.get("iteration"), trainer.get("epoch_length")
    whole = all(isinstance(value, int) and not isinstance(value, bool) for value in (iteration, length))
    return iteration // length if whole and length > 0 else 0


def load_resume_state(state: dict[str, Any], resumed: SavedState) -> str | None:
    """Restore `state` from the state `read_resume_state` read, once it fits this run's objects.
    Returns the name the run had (None in a state saved before states recorded it).

    Args:
        state: what `resume_state` returned.
        resumed: what `read_resume_state` returned.

    Raises:
        BadFileError: the state does not fit this run's objects.
    """
    path, saved = resumed.path, resumed.saved
    # a state saved before states kept the random generators restores the rest
    restored = {
        name: item for name, item in state.items() if name != "settings" and (name != "random" or name in saved)
    }
    try:
        Checkpoint.load_objects(to_load=restored, checkpoint=saved)
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        # states saved before they recorded their settings: a model of other options fails here
        raise BadFileError(
            f"--resume: the saved state at {path} does not fit this run ({first_line(error)}): pass the options "
            f"it was trained with (--arch, --pool, --P6, --P7, --use_bn_end ...), or start anew without --resume"
        ) from None
    say(f"resuming from {path} after epoch {state['trainer'].state.epoch}")
    name = saved.get("settings", {}).get("run_name")
    saved.clear()  # the states are in the run's objects now: no second copy for the whole run
    return name if isinstance(name, str) else None


def _read_resume_file(path: str) -> dict[str, Any]:
    """The saved state as a dict; a file cut short or not a state is one line that names it."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise BadFileError(_damaged(path, first_line(error))) from None
    if not isinstance(saved, dict):
        raise BadFileError(_damaged(path, f"it holds a {type(saved).__name__}, not a dict of states"))
    if not isinstance(saved.get("settings", {}), dict):
        raise BadFileError(_damaged(path, "its settings are not a dict"))
    return saved


def _damaged(path: str, cause: str) -> str:
    return (
        f"--resume: the saved state at {path} is damaged ({cause}): delete it to resume from the state "
        f"before it, if any (or delete its folder to start over), or pass the right --trained_model_file"
    )


def _check_resumed_settings(saved: Mapping[str, Any], asked: Mapping[str, Any], path: str) -> None:
    """The first setting of RESUMED that the saved state records otherwise is an error.
    A setting it does not record (a state saved before a newer option) is not compared."""
    for name, value in asked.items():
        if name in saved and saved[name] != value:
            raise ConfigError(
                f"--resume: the saved state at {path} was trained with {name}={saved[name]!r}, this run asks "
                f"for {name}={value!r}: pass the same options, or start anew without --resume"
            )


def attach_resume_saver(trainer: Engine, state: dict[str, Any], trained_model_file: str) -> None:
    """Save the whole state after each epoch, for --resume (in the first process only)."""
    folder = resume_folder(trained_model_file)
    if idist.get_rank() == 0:
        trainer.add_event_handler(
            Events.EPOCH_COMPLETED, lambda engine: save_resume_state(state, folder, epoch=engine.state.epoch)
        )


def save_resume_state(state: Mapping[str, Any], folder: str, *, epoch: int) -> None:
    """Save each object's state to <folder>/checkpoint_<epoch>.pt, whole or not at all, and only
    then remove the states of earlier epochs: at any moment one whole state is on the disk, and
    only one (each holds the model and the optimizer: 1 GB for resnext101_32x8d).

    A save that fails leaves the folder as it was: no temporary file, the state before kept,
    and no empty folder where the first one failed.
    """
    path = os.path.join(folder, f"checkpoint_{epoch}.pt")
    # ignite's Checkpoint's layout, which --resume reads with Checkpoint.load_objects
    states = {name: item.state_dict() for name, item in state.items()}
    try:
        save_file(path, states, what="the resume state", advice=_RESUME_ADVICE)
    except BaseException:
        with contextlib.suppress(OSError):  # only an empty folder can be removed so
            os.rmdir(folder)
        raise
    _remove_earlier_states(folder, kept=os.path.basename(path))


def _remove_earlier_states(folder: str, *, kept: str) -> None:
    """Remove every state in `folder` but `kept`, and the temporary files of saves a kill cut
    short: another run's states too, which a run without --resume replaces (--resume would
    otherwise take a later epoch of that run, with this run's checkpoint)."""
    for name in os.listdir(folder):
        if name != kept and (RESUME_FILE.fullmatch(name) or _CUT_SHORT.fullmatch(name)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))


def attach_logging(trainer: Engine, parts: RunParts, settings: Mapping[str, Any]) -> TensorboardLogger:
    """TensorBoard: the loss of every iteration, the learning rates of every epoch, each evaluation's metrics."""
    log_dir = os.path.join(settings["log_dir"], f"{settings['run_name']}-{datetime.now():%Y%m%d-%H%M%S}")
    logger = TensorboardLogger(log_dir=log_dir)
    logger.attach_output_handler(
        trainer, event_name=Events.ITERATION_COMPLETED, tag="train", output_transform=lambda loss: {"loss": loss}
    )
    logger.attach_opt_params_handler(trainer, event_name=Events.EPOCH_STARTED, optimizer=parts.optimizer)
    for status, evaluation in parts.evaluations.items():
        logger.attach_output_handler(
            evaluation.engine,
            event_name=Events.COMPLETED,
            tag=f"{status}/{settings['dataset']}",
            metric_names=list(METRICS_PRINTED),
            global_step_transform=global_step_from_engine(trainer),
        )
    return logger


def attach_progress_bars(trainer: Engine, evaluations: Mapping[str, Evaluation]) -> None:
    """--pbar: a bar for each epoch (with the loss) and for each evaluation."""
    ProgressBar(persist=True).attach(trainer, output_transform=lambda loss: {"loss": loss})
    for status, evaluation in evaluations.items():
        ProgressBar(persist=False, desc=status).attach(evaluation.engine)


def remove_resume_state(settings: Mapping[str, Any]) -> None:
    """A finished run needs no resume state: a whole state of the model and optimizer, which
    would take the checkpoint's space again (about 1 GB for resnext101_32x8d) for every run kept."""
    if idist.get_rank() == 0:
        shutil.rmtree(resume_folder(settings["trained_model_file"]), ignore_errors=True)
