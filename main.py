"""Train the LinearityIQA model (Li, Jiang, Jiang, ACM MM 2020).

    python main.py --dataset KonIQ-10k --resize --exp_id 0 --lr 1e-4 -bs 8 -e 30 --ft_lr_ratio 0.1 \\
        --arch resnext101_32x8d --loss_type Lp --p 1 --q 2

Each epoch the model is validated and the best one is saved to checkpoints/<run name>; at the
end the best model's linear mapping (k, b) is fitted on the training set, the test set is
evaluated, and its metrics are saved to results/<run name>.npy. The metrics of every epoch go
to results/<run name>-epochs.csv, and the test's per-image scores to <run name>-scores.csv.

In the shape of ignite's examples: `main` launches `training` in each process, which builds the
model (IQAmodel.py), the loaders, Adam's parameter groups and the loss (IQAloss.py) and runs the
trainer, whose `train_step` is forward, loss, backward, step; `attach_validation` keeps the best
model; `final_test` fits k, b and tests. What only guards the run (errors, locks, resume states,
logs, several processes) is attached around this path from linearityiqa/training/.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from functools import partial
from typing import Any, Callable

from linearityiqa.cli.scripts import Advice, errors_reported, exit_status, imports_checked, report_mistake

with imports_checked("main.py", __name__):  # a missing dependency is one line, not a traceback
    import ignite.distributed as idist
    import numpy as np
    import torch
    from ignite.engine import Engine, Events

    from IQAdataset import get_data_loaders
    from IQAloss import IQALoss
    from IQAmodel import IQAModel
    from linearityiqa import acceleration
    from linearityiqa.cli import settings as adapt
    from linearityiqa.cli.options import get_args_parser, given_options
    from linearityiqa.cli.quickstart import run_quickstart
    from linearityiqa.data.info_files import SPLITS
    from linearityiqa.errors import ConfigError
    from linearityiqa.records.checkpoint import load_checkpoint, load_model_state, save_checkpoint, training_checkpoint
    from linearityiqa.records.run_records import FINAL_TEST, EpochLog, results_file, save_results
    from linearityiqa.records.scale import TrainingScale
    from linearityiqa.training import handlers, resume
    from linearityiqa.training.distributed import global_batch_loss, global_batchnorm, launch, shard_loaders
    from linearityiqa.training.evaluation import IDENTITY_MAPPING, Evaluation, criterion_score, metric_lines
    from linearityiqa.training.handlers import Loaders, NonFiniteLosses, RunParts, has_gradients, record, say
    from linearityiqa.training.resume import remove_resume_state

ADVICE = Advice(
    out_of_memory="lower -bs (-accum N keeps the batch the optimizer sees), train on smaller images (--resize, "
    "-cs_h/-cs_w), lower -ebs, or use --opt_level O1 on a GPU; --resume continues from the last finished epoch",
    unwritable="check the space and permissions of the output folders (--trained_model_file, --results_dir, "
    "--log_dir); what was saved before is kept",
    loader_died="Often the memory ran out: lower --num_workers or -bs; --resume continues from the last finished epoch",
    interrupted="--resume continues from the last finished epoch",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run `training` in each of the run's processes; the exit status."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.quickstart:
        others = sorted(given_options(parser, argv) - {"quickstart"})
        if others:  # the quick start runs its own commands: options for them would be ignored
            return report_mistake("main.py", f"--quickstart takes no other option (given: --{', --'.join(others)})")
        return exit_status("main.py", run_quickstart, ADVICE)
    with errors_reported("main.py", ADVICE) as ended:
        settings = adapt.run_settings(args)
        ended.status = launch(
            training,
            settings,
            around=partial(handlers.run_guards, script="main.py", advice=ADVICE),
            processes=settings["nproc_per_node"],
            device_name=settings["device"],
            batch_size=settings["batch_size"],
        )
    return ended.status


def training(local_rank: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Train, keep the best model, and test it; returns the test metrics. Runs in every process."""
    # each of several processes has its GPU (or the CPU); one process has the --device asked for
    device = idist.device() if idist.get_world_size() > 1 else acceleration.resolve_device(settings["device"])
    seed = run_seed(settings)
    seed_everything(seed)
    # before the model and the images: a --resume that cannot go on is refused at once
    resumed = resume.read_resume_state(settings) if settings["resume"] and not settings["evaluate"] else None
    if resumed is not None and resumed.finished:
        return {}  # nothing to resume: it said where the run's results are
    parts = build_parts(settings, device)
    if settings["evaluate"]:
        return evaluate_only(parts, settings)
    say(f"training on {idist.get_world_size()} x {device.type} in {parts.precision.name}")
    trainer, epoch_log = build_trainer(parts, settings, device, seed, resumed)
    logger = handlers.attach_logging(trainer, parts, settings) if idist.get_rank() == 0 else nullcontext()
    with logger:  # closed, its last events written, however the run ends
        if trainer.state.epoch < settings["epochs"]:  # a state of the last epoch has only the test to run
            trainer.run(parts.loaders.train, max_epochs=settings["epochs"])
        performance = final_test(parts, settings, epoch_log)
        remove_resume_state(settings)
        return performance


def build_parts(settings: Mapping[str, Any], device: torch.device) -> RunParts:
    """The model, its loaders, optimizer, learning-rate schedule and evaluators, built once."""
    # the model first: a wrong option should not wait for the images to be decoded
    model = IQAModel(**adapt.model_kwargs(settings), pretrained=adapt.pretrained_weights(settings)).to(device)
    loaders = get_dataflow(settings, device)
    distributed = idist.get_world_size() > 1
    if distributed:
        global_batchnorm(model, device)
    channels_last = acceleration.uses_channels_last(device)
    # before DistributedDataParallel sees the parameters
    acceleration.set_memory_format(model, channels_last=channels_last)
    optimizer = create_optimizer(
        model, lr=settings["lr"], ft_lr_ratio=settings["ft_lr_ratio"], weight_decay=settings["weight_decay"]
    )
    step = lr_step_size(settings["epochs"], settings["lr_decay"], settings["overall_lr_decay"], report=say)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=settings["lr_decay"])
    precision = acceleration.choose_precision(settings["opt_level"], device)
    # DistributedDataParallel trains; evaluation runs the model itself, each process on its share.
    trained = acceleration.compile_model(idist.auto_model(model) if distributed else model, settings["compile"])
    evaluated = model if distributed else trained
    evaluations = {
        status: Evaluation(evaluated, status=status, device=device, precision=precision, channels_last=channels_last)
        for status in SPLITS
    }
    return RunParts(model, trained, optimizer, scheduler, loaders, evaluations, precision, channels_last)


def get_dataflow(settings: Mapping[str, Any], device: torch.device) -> Loaders:
    """This process's train, val and test loaders of the experiment the settings describe."""
    source = adapt.data_source(settings)
    loaders = get_data_loaders(
        source,
        split=adapt.training_split(settings, source),
        loading=adapt.image_loading(settings, resize_hw=adapt.resize_hw(settings), verbose=idist.get_rank() == 0),
        augmentation=adapt.train_augmentation(settings),
        batching=adapt.batching(settings, device),
    )
    train = loaders[0]
    if settings["accumulation_steps"] > len(train):
        raise ConfigError(
            f"-accum {settings['accumulation_steps']} batches per step is more than the {len(train)} "
            f"batches of an epoch: no step would ever be taken; lower -accum (or -bs)"
        )
    return Loaders(*shard_loaders(*loaders, batch_size=settings["batch_size"]))


def create_optimizer(model: IQAModel, *, lr: float, ft_lr_ratio: float, weight_decay: float) -> torch.optim.Adam:
    """Adam with the paper's parameter groups: the five heads at lr, the backbone at lr * ft_lr_ratio.
    With ft_lr_ratio 0 the backbone is frozen; its BatchNorm statistics still follow the data, as in
    the paper's code."""
    if ft_lr_ratio == 0:
        model.features.requires_grad_(False)
    heads = (model.regression, model.dr6, model.dr7, model.regr6, model.regr7)
    groups = [{"params": list(head.parameters())} for head in heads]
    groups.append({"params": list(model.features.parameters()), "lr": lr * ft_lr_ratio})
    # On CUDA one fused kernel updates all parameters: the same Adam, without a launch per tensor.
    fused = next(model.parameters()).is_cuda
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, fused=fused or None)


def lr_step_size(epochs: int, lr_decay: float, overall_lr_decay: float, *, report: Callable[[str], None]) -> int:
    """Epochs between learning-rate decays, so that the run decays by about overall_lr_decay in all
    (the defaults drop it at epochs 10 and 20 of 30). A step that rounds to 0 epochs (lr_decay 0.9
    over 3 epochs) is raised to 1, and `report` says so."""
    if lr_decay == 1 or epochs < 3:
        return epochs
    step = int(epochs / (1 + math.log(overall_lr_decay) / math.log(lr_decay)))
    if step < 1:
        report(
            f"note: {epochs} epochs are too few for an overall decay of {overall_lr_decay:g} in steps of "
            f"{lr_decay:g}: the learning rate decays after every epoch, to {lr_decay ** (epochs - 1):.3g} "
            f"of its start in the last"
        )
    return max(step, 1)


def create_trainer(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    *,
    device: torch.device,
    precision: acceleration.Precision,
    accumulation_steps: int,
    channels_last: bool = False,
    skip_nonfinite: bool = False,
    report: Callable[[str], None] = print,
) -> Engine:
    """The trainer: each iteration is `train_step`, ignite's supervised step (float16 loss scaling,
    gradient accumulation over `accumulation_steps` batches), whose output is the batch's loss.
    Batches arrive as uint8 and are normalized on `device`. A NaN or infinite loss stops the run
    before any weight changes, or with `skip_nonfinite` gives no gradient (handlers.NonFiniteLosses).
    """
    prepare = acceleration.batch_preparation(channels_last)
    scaler = precision.scaler or torch.amp.GradScaler(enabled=False)  # float32: no loss scaling
    nonfinite = NonFiniteLosses(model, skip=skip_nonfinite, report=report)

    def train_step(engine: Engine, batch: Sequence[Any]) -> float:
        if (engine.state.iteration - 1) % accumulation_steps == 0:
            optimizer.zero_grad()
        model.train()
        images, targets = prepare(batch, device, non_blocking=True)
        with precision.autocast(device):
            y_pred = model(images)
        loss = loss_fn(y_pred, targets)
        value = loss.item()
        if nonfinite.admits(value, engine):
            scaler.scale(loss / accumulation_steps).backward()
        if engine.state.iteration % accumulation_steps == 0 and has_gradients(optimizer):
            scaler.step(optimizer)
            scaler.update()
        return value

    trainer = Engine(train_step)
    nonfinite.attach(trainer)
    return trainer


def build_trainer(
    parts: RunParts,
    settings: Mapping[str, Any],
    device: torch.device,
    seed: int,
    resumed: resume.SavedState | None = None,
) -> tuple[Engine, EpochLog | None]:
    """The trainer of the paper's loss, resumed from `resumed` (the state --resume read), and what
    it does after each epoch; the run's -epochs.csv log (in the first process only)."""
    loss = global_batch_loss(IQALoss(**adapt.loss_kwargs(settings)))
    trainer = create_trainer(
        parts.trained,
        parts.optimizer,
        loss,
        device=device,
        precision=parts.precision,
        accumulation_steps=settings["accumulation_steps"],
        channels_last=parts.channels_last,
        skip_nonfinite=settings["skip_nonfinite"],
        report=say,
    )
    state = resume.resume_state(trainer, parts, settings)
    saved_name = resume.load_resume_state(state, resumed) if resumed is not None else None
    first = idist.get_rank() == 0
    epoch_log = handlers.open_epoch_log(settings, trainer.state.epoch, saved_name) if first else None
    # each epoch seeded from its number, so that a resumed run draws what an uninterrupted one would
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: seed_everything(seed + engine.state.epoch))
    # after each epoch: validate first, so that the saved resume state holds the best model so far
    attach_validation(trainer, parts, settings, epoch_log)
    resume.attach_resume_saver(trainer, state, settings["trained_model_file"])
    if first:
        handlers.attach_mean_loss(trainer, epoch_log)
    if settings["pbar"] and first:
        handlers.attach_progress_bars(trainer, parts.evaluations)
    return trainer, epoch_log


def attach_validation(
    trainer: Engine, parts: RunParts, settings: Mapping[str, Any], epoch_log: EpochLog | None
) -> None:
    """After each epoch: validate (with --test_during_training also fit k, b on the training set, and
    test), keep the best model by --val_criterion, and step the learning rate."""

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine: Engine) -> None:
        epoch, criterion = engine.state.epoch, settings["val_criterion"]
        k, b = IDENTITY_MAPPING  # without --test_during_training, the final test fits them
        if settings["test_during_training"]:
            fitted = parts.evaluations["train"].run(parts.loaders.train)
            record(epoch_log, epoch, "train", fitted)
            k, b = fitted["k"], fitted["b"]
        validated = parts.evaluations["val"].run(parts.loaders.val, k, b)
        record(epoch_log, epoch, "val", validated)
        score = criterion_score(validated, criterion)
        if settings["test_during_training"]:
            record(epoch_log, epoch, "test", parts.evaluations["test"].run(parts.loaders.test, k, b))
        progress = parts.progress
        if progress.improved_by(score):
            if idist.get_rank() == 0:
                scaler, train_set = parts.precision.scaler, parts.loaders.train.dataset
                scale = TrainingScale.of(train_set.source.name, train_set.mos)  # the scale k, b map scores onto
                best = training_checkpoint(parts.model, parts.optimizer, scaler, k, b, settings, scale=scale)
                save_checkpoint(settings["trained_model_file"], best)
            progress.best_score, progress.best_epoch = score, epoch
            say(f"epoch {epoch}: best model saved, val {criterion} {validated[criterion]:.3f}")
        else:
            # the criterion's score is |SROCC|, |PLCC| or -RMSE: its size is the metric's value
            best = f"best {abs(progress.best_score):.3f} at epoch {progress.best_epoch}"
            say(f"epoch {epoch}: val {criterion} {validated[criterion]:.3f}, {best}")
        parts.scheduler.step()


def final_test(parts: RunParts, settings: Mapping[str, Any], epoch_log: EpochLog | None) -> dict[str, Any]:
    """Load the best model, fit its mapping on the training set unless already fitted, and test it."""
    path = settings["trained_model_file"]
    idist.barrier()  # the first process has written the best checkpoint
    checkpoint = load_checkpoint(path)
    load_model_state(parts.model, checkpoint, path)
    if not settings["test_during_training"]:
        fitted = parts.evaluations["train"].run(parts.loaders.train)
        checkpoint["k"], checkpoint["b"] = fitted["k"], fitted["b"]
        if idist.get_rank() == 0:
            save_checkpoint(path, checkpoint)
    performance = test_and_report(parts, checkpoint, settings)
    record(epoch_log, parts.progress.best_epoch, FINAL_TEST, performance)
    return performance


def evaluate_only(parts: RunParts, settings: Mapping[str, Any]) -> dict[str, Any]:
    """--evaluate: test the checkpoint the run saved, with its own k, b."""
    path = settings["trained_model_file"]
    checkpoint = load_checkpoint(path)
    load_model_state(parts.model, checkpoint, path, settings=adapt.model_kwargs(settings))
    return test_and_report(parts, checkpoint, settings)


def test_and_report(parts: RunParts, checkpoint: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Test the checkpoint's mapping on the test split; print the paper's lines and save the metrics and scores."""
    performance = parts.evaluations["test"].run(parts.loaders.test, checkpoint["k"], checkpoint["b"])
    say(*metric_lines(settings["dataset"], performance))
    if idist.get_rank() == 0:
        save_results(results_file(settings["results_dir"], settings["run_name"]), performance)
    return performance


def run_seed(settings: Mapping[str, Any]) -> int:
    """--seed, or with --randomness a random seed: one for all processes, which must draw the same batches."""
    if not settings["randomness"]:
        return settings["seed"]
    seed = torch.randint(0, 2**31 - 1, (1,))
    return int(idist.broadcast(seed, src=0).item()) if idist.get_world_size() > 1 else int(seed.item())


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


if __name__ == "__main__":
    sys.exit(main())
