"""Train the LinearityIQA model (Li, Jiang, Jiang, ACM MM 2020).

    python main.py --dataset KonIQ-10k --resize --exp_id 0 --lr 1e-4 -bs 8 -e 30 --ft_lr_ratio 0.1 \\
        --arch resnext101_32x8d --loss_type Lp --p 1 --q 2

Each epoch the model is validated and the best one is saved to checkpoints/<run name>; at the
end the best model's linear mapping (k, b) is fitted on the training set, the test set is
evaluated, and its metrics are saved to results/<run name>.npy. The metrics of every epoch go
to results/<run name>-epochs.csv, and the test's per-image scores to <run name>-scores.csv.

The shape is that of ignite's examples: `main` starts the processes, `run` is one process,
`training` builds the run's parts once and attaches its handlers (linearityiqa/training/).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine
from torch.multiprocessing import ProcessExitedException

from IQAdataset import get_data_loaders
from IQAloss import IQALoss
from IQAmodel import IQAModel
from linearityiqa.acceleration import (
    choose_precision,
    compile_model,
    cudnn_mode,
    resolve_device,
    set_memory_format,
    uses_channels_last,
)
from linearityiqa.cli import settings as adapt
from linearityiqa.cli.options import get_args_parser, given_options
from linearityiqa.cli.quickstart import run_quickstart
from linearityiqa.cli.scripts import Advice, exit_status, own_the_pixel_limit, report_mistake
from linearityiqa.data.dataset_registry import DataSource
from linearityiqa.data.info_files import SPLITS
from linearityiqa.errors import ConfigError, RunFailed
from linearityiqa.records.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from linearityiqa.records.paths import epochs_file, results_file, resume_folder, run_outputs, scores_file
from linearityiqa.records.run_lock import run_lock
from linearityiqa.records.run_records import FINAL_TEST, EpochLog, save_results
from linearityiqa.records.writing import check_writable, refuse_inputs
from linearityiqa.training import handlers
from linearityiqa.training.distributed import (
    GlobalBatchLoss,
    global_batchnorm,
    plan_processes,
    shard_loaders,
    start_processes,
)
from linearityiqa.training.evaluation import Evaluation, metric_lines
from linearityiqa.training.handlers import Loaders, RunParts, say
from linearityiqa.training.step import create_optimizer, create_trainer, lr_step_size, seed_everything

ADVICE = Advice(
    out_of_memory="lower -bs (-accum N keeps the batch the optimizer sees), train on smaller images (--resize, "
    "-cs_h/-cs_w), lower -ebs, or use --opt_level O1 on a GPU; --resume continues from the last finished epoch",
    unwritable="check the space and permissions of the output folders (--trained_model_file, --results_dir, "
    "--log_dir); what was saved before is kept",
    loader_died="Often the memory ran out: lower --num_workers or -bs; --resume continues from the last finished epoch",
    interrupted="--resume continues from the last finished epoch",
)


def choose_device(requested: str | None) -> torch.device:
    """The process's GPU when several processes train, else the --device asked for."""
    return idist.device() if idist.get_world_size() > 1 else resolve_device(requested)


def run_seed(settings: Mapping[str, Any]) -> int:
    """--seed, or with --randomness a random seed: one for all processes, which must draw the same batches."""
    if not settings["randomness"]:
        return settings["seed"]
    seed = torch.randint(0, 2**31 - 1, (1,))
    return int(idist.broadcast(seed, src=0).item()) if idist.get_world_size() > 1 else int(seed.item())


def refuse_overwriting_inputs(settings: Mapping[str, Any], source: DataSource) -> None:
    """The files a run writes are none of the files it reads: its info file, its pretrained
    weights, its images (a stat each, and only for an output that exists already)."""
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


def data_loaders(settings: Mapping[str, Any], source: DataSource, device: torch.device) -> Loaders:
    """This process's train, val and test loaders of the experiment the settings describe."""
    loaders = get_data_loaders(
        source,
        split=adapt.training_split(settings, source),
        loading=adapt.image_loading(settings, resize_hw=adapt.resize_hw(settings), verbose=idist.get_rank() == 0),
        augmentation=adapt.train_augmentation(settings),
        batching=adapt.batching(settings, device),
    )
    return Loaders(*shard_loaders(*loaders, batch_size=settings["batch_size"]))


def build_parts(settings: Mapping[str, Any], device: torch.device) -> RunParts:
    # the model first: a wrong option should not wait for the images to be decoded
    model = IQAModel(**adapt.model_kwargs(settings), pretrained=adapt.pretrained_weights(settings)).to(device)
    source = adapt.data_source(settings)
    if not settings["evaluate"]:
        refuse_overwriting_inputs(settings, source)
    loaders = data_loaders(settings, source, device)
    if settings["accumulation_steps"] > len(loaders.train):
        raise ConfigError(
            f"-accum {settings['accumulation_steps']} batches per step is more than the {len(loaders.train)} "
            f"batches of an epoch: no step would ever be taken; lower -accum (or -bs)"
        )
    distributed = idist.get_world_size() > 1
    if distributed:
        global_batchnorm(model, device)
    channels_last = uses_channels_last(device)
    set_memory_format(model, channels_last=channels_last)  # before DistributedDataParallel sees the parameters
    optimizer = create_optimizer(
        model, lr=settings["lr"], ft_lr_ratio=settings["ft_lr_ratio"], weight_decay=settings["weight_decay"]
    )
    step = lr_step_size(settings["epochs"], settings["lr_decay"], settings["overall_lr_decay"], report=say)
    precision = choose_precision(settings["opt_level"], device)
    # DistributedDataParallel trains; evaluation runs the model itself, each process on its share.
    trained = compile_model(idist.auto_model(model) if distributed else model, settings["compile"])
    evaluated = model if distributed else trained
    evaluations = {
        status: Evaluation(evaluated, status=status, device=device, precision=precision, channels_last=channels_last)
        for status in SPLITS
    }
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=settings["lr_decay"])
    return RunParts(model, trained, optimizer, scheduler, loaders, evaluations, precision, channels_last)


def training(local_rank: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Train, keep the best model, and test it; returns the test metrics. Runs in every process."""
    device = choose_device(settings["device"])
    seed = run_seed(settings)
    seed_everything(seed)
    parts = build_parts(settings, device)
    if settings["evaluate"]:
        return evaluate_only(parts, settings)
    say(f"training on {idist.get_world_size()} x {device.type} in {parts.precision.name}")
    trainer, epoch_log = build_trainer(parts, settings, device, seed)
    logger = handlers.attach_logging(trainer, parts, settings) if idist.get_rank() == 0 else None
    try:
        trainer.run(parts.loaders.train, max_epochs=settings["epochs"])
        performance = final_test(parts, settings, epoch_log)
        remove_resume_state(settings)
        return performance
    finally:
        if logger is not None:
            logger.close()


def build_trainer(
    parts: RunParts, settings: Mapping[str, Any], device: torch.device, seed: int
) -> tuple[Engine, EpochLog | None]:
    """The trainer, resumed with --resume, and what it does after each epoch; the run's -epochs.csv
    log (in the first process only)."""
    loss = GlobalBatchLoss(IQALoss(**adapt.loss_kwargs(settings)))
    trainer = create_trainer(
        parts.trained,
        parts.optimizer,
        loss,
        device=device,
        precision=parts.precision,
        channels_last=parts.channels_last,
        accumulation_steps=settings["accumulation_steps"],
        skip_nonfinite=settings["skip_nonfinite"],
        report=say,
    )
    state = handlers.resume_state(trainer, parts, settings)
    saved_name = None
    if settings["resume"]:
        saved_name = handlers.load_resume_state(state, settings["trained_model_file"], epochs=settings["epochs"])
    first = idist.get_rank() == 0
    epoch_log = handlers.open_epoch_log(settings, trainer.state.epoch, saved_name) if first else None
    handlers.reseed_each_epoch(trainer, seed)
    # after each epoch: validate first, so that the saved resume state holds the best model so far
    handlers.attach_validation(trainer, parts, settings, epoch_log)
    handlers.attach_resume_saver(trainer, state, settings["trained_model_file"])
    if first:
        handlers.attach_mean_loss(trainer, epoch_log)
    if settings["pbar"] and first:
        handlers.attach_progress_bars(trainer, parts.evaluations)
    return trainer, epoch_log


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
    handlers.record(epoch_log, parts.progress.best_epoch, FINAL_TEST, performance)
    return performance


def evaluate_only(parts: RunParts, settings: Mapping[str, Any]) -> dict[str, Any]:
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


def check_outputs(settings: Mapping[str, Any]) -> None:
    """Before the work: every folder the run writes to takes new files (or the option to change is named)."""
    name = settings["run_name"]
    outputs = [("the run's results", results_file(settings["results_dir"], name), "--results_dir")]
    if not settings["evaluate"]:
        outputs.append(("the checkpoint", settings["trained_model_file"], "--trained_model_file"))
        outputs.append(("the TensorBoard log", os.path.join(settings["log_dir"], name), "--log_dir"))
    for what, path, option in outputs:
        check_writable(path, what=what, advice=f"free space, or pass another {option}")


def remove_resume_state(settings: Mapping[str, Any]) -> None:
    """A finished run needs no resume state: two whole states of the model and optimizer, which
    would take twice the checkpoint's space (about 2 GB for resnext101_32x8d) for every run kept."""
    if idist.get_rank() == 0:
        shutil.rmtree(resume_folder(settings["trained_model_file"]), ignore_errors=True)


def run(local_rank: int, settings: Mapping[str, Any]) -> None:
    """One process: a user's mistake is one line (from the first process) and exit status 1."""
    first = idist.get_rank() == 0
    own_the_pixel_limit()  # in every process: spawned ones start anew

    def locked_training() -> None:
        outputs = run_outputs(settings["trained_model_file"], settings["results_dir"], settings["run_name"])
        if first:
            check_outputs(settings)
        lock = run_lock(outputs) if first else contextlib.nullcontext()
        with lock, cudnn_mode(deterministic=not settings["randomness"]):
            training(local_rank, settings)

    status = exit_status("main.py", locked_training, ADVICE, quiet=not first)
    if status:
        raise SystemExit(status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.quickstart:
        others = sorted(given_options(parser, argv) - {"quickstart"})
        if others:  # the quick start runs its own commands: options for them would be ignored
            return report_mistake("main.py", f"--quickstart takes no other option (given: --{', --'.join(others)})")
        return exit_status("main.py", run_quickstart, ADVICE)
    return exit_status("main.py", lambda: launch(args), ADVICE)


def launch(args: argparse.Namespace) -> int:
    """Start the run's processes (one unless --nproc_per_node or torchrun asks for more); the exit status."""
    settings = adapt.run_settings(args)
    spawned = settings["nproc_per_node"] is not None and settings["nproc_per_node"] > 1
    if spawned and settings["nproc_per_node"] > settings["batch_size"]:  # before starting them all
        raise ConfigError(
            f"--nproc_per_node {settings['nproc_per_node']} processes cannot share a batch of {settings['batch_size']} "
            f"images (-bs): use at most {settings['batch_size']} processes, or a larger batch"
        )
    # ignite announces every launch on stderr, and torch each process it stops after another
    # ended: a user's mistake must stay the only line there
    logging.getLogger("ignite.distributed.launcher.Parallel").setLevel(logging.WARNING)
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    try:
        if spawned:
            plan = plan_processes(settings["nproc_per_node"], device_name=settings["device"])
            if plan.shared_gpus:
                say(
                    f"note: {plan.processes} processes share {plan.gpus} GPU(s), so gloo carries their "
                    f"exchanges (NCCL takes one process per GPU); one process per GPU trains faster"
                )
            start_processes(run, (settings,), plan)
        else:
            backend = None
            if "WORLD_SIZE" in os.environ:  # started by torchrun: one process per GPU
                backend = "nccl" if torch.cuda.is_available() and settings["device"] != "cpu" else "gloo"
            with idist.Parallel(backend=backend) as parallel:
                parallel.run(run, settings)
    except SystemExit as ended:
        return int(ended.code or 0)
    except ProcessExitedException as ended:
        if ended.exit_code:  # the process said why before it ended (run)
            return ended.exit_code
        raise RunFailed(
            f"a training process was killed ({ended.signal_name or 'no exit status'}); often the memory ran out: "
            f"lower -bs or --num_workers; --resume continues from the last finished epoch"
        ) from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
