"""What a training run does besides the method, attached around main.py's trainer: the guards
each process runs in, the policy for a non-finite loss, each epoch's metrics in -epochs.csv,
TensorBoard and progress bars (training/resume.py keeps the state for --resume).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, NamedTuple

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar, global_step_from_engine
from ignite.handlers.tensorboard_logger import TensorboardLogger
from torch.utils.data import DataLoader

from linearityiqa.acceleration import Precision, cudnn_mode
from linearityiqa.cli import settings as adapt
from linearityiqa.cli.scripts import Advice, errors_reported, own_the_pixel_limit
from linearityiqa.errors import TrainingDiverged
from linearityiqa.records.run_lock import run_lock
from linearityiqa.records.run_records import EpochLog, check_name_part, epochs_file, results_file, scores_file
from linearityiqa.records.writing import check_writable, refuse_inputs
from linearityiqa.training.evaluation import METRICS_PRINTED, Evaluation, Progress


class Loaders(NamedTuple):
    """The loaders of one experiment (this process's share of them)."""

    train: DataLoader
    val: DataLoader
    test: DataLoader


@dataclass
class RunParts:
    """A run's parts, built once: `model` is what is saved; `trained` what the trainer runs, the model or it wrapped
    by DistributedDataParallel or torch.compile (sharing its parameters); `evaluations` an Evaluation per split."""

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


@contextlib.contextmanager
def run_guards(settings: Mapping[str, Any], *, script: str, advice: Advice) -> Iterator[None]:
    """One process of a run, guarded (`distributed.launch` enters it in every process): a user's mistake is one line
    (`script`: ..., `advice`) from the first process alone and exits with its status (SystemExit); the first process
    checks and locks the run's outputs; cuDNN is deterministic unless --randomness."""
    first = idist.get_rank() == 0
    with errors_reported(script, advice, quiet=not first) as ended:
        own_the_pixel_limit()  # in every process: spawned ones start anew
        if first:
            check_outputs(settings)
            if not settings["evaluate"]:
                refuse_overwriting_inputs(settings)
        # what the run writes under its name, which no other run may write at the same time
        outputs = [settings["trained_model_file"], os.path.join(settings["results_dir"], settings["run_name"])]
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


class NonFiniteLosses:
    """What a training step does with a NaN or infinite loss (it asks `admits` before its backward). By default such a
    loss stops the run (TrainingDiverged) before any weight changes. With --skip_nonfinite its batch gives no gradient
    (if `model`'s BatchNorm statistics stay finite) and `report` says it at the end of its epoch; an epoch whose every
    step was skipped stops the run, which learns nothing more. Under GlobalBatchLoss the loss is the same in every
    process, so all of them skip the same steps and DistributedDataParallel stays in step."""

    def __init__(self, model: torch.nn.Module, *, skip: bool, report: Callable[[str], None]):
        self.model, self.skip, self.report = model, skip, report
        self.skipped: list[int] = []

    def admits(self, loss: float, engine: Engine) -> bool:
        """Whether the step may go backward from `loss` (False: skip it); TrainingDiverged stops the run."""
        if math.isfinite(loss):
            return True
        # the forward pass of a skipped step updated BatchNorm's running statistics: NaN there cannot be skipped
        buffers = (buffer for buffer in self.model.buffers() if buffer.is_floating_point())
        if self.skip and all(torch.isfinite(buffer).all() for buffer in buffers):
            self.skipped.append(engine.state.iteration)
            return False
        where = f"the loss is {loss} at iteration {engine.state.iteration} (epoch {engine.state.epoch})"
        if self.skip:
            raise TrainingDiverged(
                f"{where} and it made the BatchNorm statistics NaN, so the step cannot be skipped: lower the "
                f"learning rate or use --opt_level O0; the best checkpoint so far is kept"
            )
        raise TrainingDiverged(
            f"{where}: lower the learning rate, use --opt_level O0, or skip such steps with --skip_nonfinite; "
            f"the best checkpoint so far is kept"
        )

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._report_epoch)

    def _report_epoch(self, engine: Engine) -> None:
        """Say the epoch's skipped steps, and stop a run whose whole epoch was skipped."""
        skipped, epoch = list(self.skipped), engine.state.epoch
        self.skipped.clear()
        if not skipped:
            return
        if len(skipped) == engine.state.epoch_length:
            raise TrainingDiverged(
                f"the loss was not finite at any step of epoch {epoch}: lower the learning "
                f"rate or use --opt_level O0; the best checkpoint so far is kept"
            )
        self.report(
            f"epoch {epoch}: skipped {len(skipped)} step(s) of a non-finite loss, at iteration(s) "
            f"{', '.join(map(str, skipped))}"
        )


def has_gradients(optimizer: torch.optim.Optimizer) -> bool:
    """Whether any parameter holds a gradient: an accumulation whose batches were all skipped
    has none (zero_grad made them None), so there is nothing to step, and GradScaler refuses such a step."""
    return any(p.grad is not None for group in optimizer.param_groups for p in group["params"])


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
