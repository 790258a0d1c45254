"""What a training run does besides the method, as ignite handlers of its trainer: record each
epoch's metrics, and log to TensorBoard and progress bars (training/resume.py keeps its state
for --resume).

main.py builds a run's parts once (`RunParts`) and attaches these around its own trainer and
validation; each handler takes the settings it reads from the run's settings, the options as
plain types.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar, global_step_from_engine
from ignite.handlers.tensorboard_logger import TensorboardLogger
from torch.utils.data import DataLoader

from linearityiqa.acceleration import Precision
from linearityiqa.records.paths import (
    check_name_part,
    epochs_file,
)
from linearityiqa.records.run_records import EpochLog
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
