"""Train the LinearityIQA model (Li, Jiang, Jiang, ACM MM 2020).

    python main.py --dataset KonIQ-10k --resize --exp_id 0 --lr 1e-4 -bs 8 -e 30 --ft_lr_ratio 0.1 \\
        --arch resnext101_32x8d --loss_type Lp --p 1 --q 2

Each epoch the model is validated and the best one is saved to checkpoints/<run name>; at the
end the best model's linear mapping (k, b) is fitted on the training set, the test set is
evaluated, and its metrics are saved to results/<run name>.npy. The metrics of every epoch go
to results/<run name>-epochs.csv, and the test's per-image scores to <run name>-scores.csv.
"""

import contextlib
import errno
import logging
import math
import os
import re
import shutil
import sys
from typing import Any, Dict, List, Optional, Sequence

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, ProgressBar, global_step_from_engine
from ignite.handlers.tensorboard_logger import TensorboardLogger

import training as T
from acceleration import (choose_precision, compile_model, evaluation_batch_size, memory_error_summary, out_of_memory,
                          set_memory_format, uses_channels_last)
from checkpoint import load_checkpoint, load_model_state, save_checkpoint
from dataset_registry import check_linked, get_dataset_spec, has_own_split
from distributed import GlobalBatchLoss, global_batchnorm, shard_loaders
from errors import IQAError, MissingFileError
from image_store import limit_pixels
from IQAdataset import get_data_loaders
from IQAloss import IQALoss
from IQAmodel import IQAModel
from options import get_args_parser, loss_kwargs, model_kwargs, pretrained_weights
from quickstart import run_quickstart
from run_lock import run_lock
from run_records import FINAL_TEST, EpochLog, epochs_file, scores_file, write_scores
from scoring import resolve_device


def say(*lines: str) -> None:
    """Print from the first process only."""
    if idist.get_rank() == 0:
        print(*lines, sep='\n', flush=True)


def run_settings(args: Any) -> Dict[str, Any]:
    """The run's options as plain types, with what the paper's code derived from them."""
    settings = dict(vars(args))
    settings['val_criterion'] = T.val_criterion_for(args.val_criterion, args.beta)
    if args.dataset == 'KonIQ-10k' and not args.resize:  # stored size, as the run name records it
        settings['resize_size_h'], settings['resize_size_w'] = 768, 1024
    settings['run_name'] = T.run_name(settings)
    settings['trained_model_file'] = args.trained_model_file or os.path.join('checkpoints', settings['run_name'])
    return settings


def split_ratios(settings: Dict[str, Any]) -> Sequence[Optional[float]]:
    """None, None for a data set with a split of its own (KonIQ-10k's official one); else the ratios."""
    spec = get_dataset_spec(settings['dataset'], data_info=settings['data_info'], im_dir=settings['im_dir'])
    check_linked(spec)
    if has_own_split(spec):
        return None, None
    return settings['train_ratio'], settings['train_and_val_ratio']


def data_loaders(settings: Dict[str, Any], device: torch.device):
    train_ratio, train_and_val_ratio = split_ratios(settings)
    loaders = get_data_loaders(
        dataset=settings['dataset'], data_info=settings['data_info'], im_dir=settings['im_dir'],
        exp_id=settings['exp_id'], train_ratio=train_ratio, train_and_val_ratio=train_and_val_ratio,
        resize=settings['resize'], resize_size_h=settings['resize_size_h'], resize_size_w=settings['resize_size_w'],
        augment=settings['augmentation'], angle=settings['angle'], crop_size_h=settings['crop_size_h'],
        crop_size_w=settings['crop_size_w'], hflip_p=settings['hflip_p'], batch_size=settings['batch_size'],
        eval_batch_size=evaluation_batch_size(settings['eval_batch_size'], device), debug=settings['debug'], num_workers=settings['num_workers'],
        cache_dir=settings['cache_dir'], verbose=idist.get_rank() == 0)
    return shard_loaders(*loaders, batch_size=settings['batch_size'])


def choose_device(requested: Optional[str]) -> torch.device:
    """The process's GPU when several processes train, else the --device asked for."""
    return idist.device() if idist.get_world_size() > 1 else resolve_device(requested)


def run_seed(settings: Dict[str, Any]) -> int:
    """--seed, or with --randomness a random seed: one for all processes, which must draw the same batches."""
    if not settings['randomness']:
        return settings['seed']
    seed = torch.randint(0, 2 ** 31 - 1, (1,))
    return int(idist.broadcast(seed, src=0).item()) if idist.get_world_size() > 1 else int(seed.item())


class Progress:
    """The best validation score so far, kept in the resume checkpoint."""

    def __init__(self):
        self.best_score, self.best_epoch = -float('inf'), 0

    def state_dict(self) -> Dict[str, float]:
        return {'best_score': self.best_score, 'best_epoch': self.best_epoch}

    def load_state_dict(self, state: Dict[str, float]) -> None:
        self.best_score, self.best_epoch = state['best_score'], state['best_epoch']


def criterion_score(performance: Dict[str, Any], criterion: str) -> float:
    """Larger is better: |SROCC| or |PLCC| (a head may learn a reversed scale), or -RMSE.

    NaN (correlations of constant predictions) ranks below every number.
    """
    value = float(performance[criterion])
    if math.isnan(value):
        return -math.inf
    return -value if criterion.startswith('RMSE') else abs(value)


def best_checkpoint(model, optimizer, precision, k, b, settings) -> Dict[str, Any]:
    checkpoint = {'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'k': list(k), 'b': list(b),
                  'settings': settings}
    if precision.scaler is not None:
        checkpoint['scaler'] = precision.scaler.state_dict()
    return checkpoint


def attach_validation(trainer: Engine, parts: Dict[str, Any], settings: Dict[str, Any]) -> None:
    """After each epoch: validate, keep the best model, and step the learning rate."""
    loaders, evaluations, progress = parts['loaders'], parts['evaluations'], parts['progress']

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine: Engine) -> None:
        k, b = T.IDENTITY_MAPPING
        if settings['test_during_training']:
            fitted = evaluations['train'].run(loaders['train'])
            k, b = fitted['k'], fitted['b']
            record(parts, engine.state.epoch, 'train', fitted)
        validated = evaluations['val'].run(loaders['val'], k, b)
        record(parts, engine.state.epoch, 'val', validated)
        score = criterion_score(validated, settings['val_criterion'])
        if settings['test_during_training']:
            record(parts, engine.state.epoch, 'test', evaluations['test'].run(loaders['test'], k, b))
        # the first epoch is always kept, so that a run whose scores are all NaN still has a best model
        if score > progress.best_score or progress.best_epoch == 0:
            if idist.get_rank() == 0:
                save_checkpoint(settings['trained_model_file'], best_checkpoint(
                    parts['model'], parts['optimizer'], parts['precision'], k, b, settings))
            progress.best_score, progress.best_epoch = score, engine.state.epoch
            say(f"epoch {engine.state.epoch}: best model saved, val {settings['val_criterion']} {score:.3f}")
        else:
            say(f"epoch {engine.state.epoch}: val {settings['val_criterion']} {score:.3f}, "
                  f"best {progress.best_score:.3f} at epoch {progress.best_epoch}")
        parts['scheduler'].step()


def record(parts: Dict[str, Any], epoch: int, split: str, performance: Dict[str, Any]) -> None:
    """Add an evaluation's metrics to the -epochs.csv file (which the first process writes)."""
    if parts['epoch_log'] is not None:
        parts['epoch_log'].add(epoch, split, {name: performance[name] for name in T.METRICS_PRINTED})


def attach_epoch_log(trainer: Engine, parts: Dict[str, Any], settings: Dict[str, Any]) -> None:
    """Start the -epochs.csv file (a resumed run keeps its finished epochs) and add each epoch's mean loss."""
    log = EpochLog(epochs_file(settings['results_dir'], settings['run_name']),
                   resume_after=trainer.state.epoch if settings['resume'] else 0)
    parts['epoch_log'] = log
    losses: list = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: losses.append(engine.state.output))

    @trainer.on(Events.EPOCH_COMPLETED)
    def log_mean_loss(engine: Engine) -> None:
        # the steps skipped for a non-finite loss (--skip_nonfinite) are counted, not averaged
        finite = [loss for loss in losses if math.isfinite(loss)]
        metrics = {'loss': sum(finite) / max(len(finite), 1)}
        if len(finite) < len(losses):
            metrics['skipped_steps'] = len(losses) - len(finite)
        log.add(engine.state.epoch, 'train', metrics)
        losses.clear()


def attach_resume(trainer: Engine, parts: Dict[str, Any], settings: Dict[str, Any]) -> None:
    """Save the whole state after each epoch, and load the last one with --resume."""
    to_save = {'trainer': trainer, 'model': parts['model'], 'optimizer': parts['optimizer'],
               'lr_scheduler': parts['scheduler'], 'progress': parts['progress']}
    if parts['precision'].scaler is not None:
        to_save['scaler'] = parts['precision'].scaler
    folder = resume_folder(settings)
    saver = Checkpoint(to_save, DiskSaver(folder, require_empty=False), n_saved=2,
                       global_step_transform=global_step_from_engine(trainer))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, saver)
    if settings['resume']:
        path = latest_resume_file(folder)
        Checkpoint.load_objects(to_load=to_save, checkpoint=torch.load(path, map_location='cpu', weights_only=True))
        say(f"resuming from {path} after epoch {trainer.state.epoch}")


def resume_folder(settings: Dict[str, Any]) -> str:
    return settings['trained_model_file'] + '.resume'


def remove_resume_state(settings: Dict[str, Any]) -> None:
    """A finished run needs no resume state: two whole states of the model and optimizer, which
    would take twice the checkpoint's space (about 2 GB for resnext101_32x8d) for every run kept."""
    if idist.get_rank() == 0:
        shutil.rmtree(resume_folder(settings), ignore_errors=True)


# ignite's Checkpoint names each saved state after its epoch; a file of another name is the
# temporary file of a save that was cut short (ignite writes one, then renames it).
RESUME_FILE = re.compile(r'checkpoint_(\d+)\.pt')


def latest_resume_file(folder: str) -> str:
    """The state of the latest saved epoch, never a save that was interrupted."""
    epochs = {int(match.group(1)): name for name in (os.listdir(folder) if os.path.isdir(folder) else [])
              if (match := RESUME_FILE.fullmatch(name))}
    if not epochs:
        raise MissingFileError(f"nothing to resume in {folder}: the run finished (a finished run's state is removed) "
                               f"or never completed an epoch; run without --resume to train it from the start")
    return os.path.join(folder, epochs[max(epochs)])


def attach_logging(trainer: Engine, parts: Dict[str, Any], settings: Dict[str, Any]) -> TensorboardLogger:
    logger = TensorboardLogger(log_dir=os.path.join(settings['log_dir'], f"{settings['run_name']}-{T.timestamp()}"))
    logger.attach_output_handler(trainer, event_name=Events.ITERATION_COMPLETED, tag='train',
                                 output_transform=lambda loss: {'loss': loss})
    logger.attach_opt_params_handler(trainer, event_name=Events.EPOCH_STARTED, optimizer=parts['optimizer'])
    for status, evaluation in parts['evaluations'].items():
        logger.attach_output_handler(evaluation.engine, event_name=Events.COMPLETED,
                                     tag=f"{status}/{settings['dataset']}", metric_names=list(T.METRICS_PRINTED),
                                     global_step_transform=global_step_from_engine(trainer))
    return logger


def attach_progress_bars(trainer: Engine, evaluations: Dict[str, T.Evaluation]) -> None:
    """--pbar: a bar for each epoch (with the loss) and for each evaluation."""
    ProgressBar(persist=True).attach(trainer, output_transform=lambda loss: {'loss': loss})
    for status, evaluation in evaluations.items():
        ProgressBar(persist=False, desc=status).attach(evaluation.engine)


def reseed_each_epoch(trainer: Engine, seed: int) -> None:
    """Seed every epoch from its number, so a resumed run draws what an uninterrupted one would."""
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: T.seed_everything(seed + engine.state.epoch))


def final_test(parts: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """Load the best model, fit its mapping on the training set unless already fitted, and test it."""
    path = settings['trained_model_file']
    idist.barrier()  # the first process has written the best checkpoint
    checkpoint = load_checkpoint(path)
    load_model_state(parts['model'], checkpoint, path)
    if not settings['test_during_training']:
        fitted = parts['evaluations']['train'].run(parts['loaders']['train'])
        checkpoint['k'], checkpoint['b'] = fitted['k'], fitted['b']
        if idist.get_rank() == 0:
            save_checkpoint(path, checkpoint)
    performance = test_and_report(parts['evaluations']['test'], parts['loaders']['test'], checkpoint, settings)
    record(parts, parts['progress'].best_epoch, FINAL_TEST, performance)
    return performance


def test_and_report(evaluation: T.Evaluation, loader, checkpoint: Dict[str, Any], settings: Dict[str, Any]):
    performance = evaluation.run(loader, checkpoint['k'], checkpoint['b'])
    say(*T.metric_lines(settings['dataset'], performance))
    if idist.get_rank() == 0:
        results_file = os.path.join(settings['results_dir'], settings['run_name'] + '.npy')
        os.makedirs(settings['results_dir'], exist_ok=True)
        np.save(results_file, performance)
        write_scores(scores_file(results_file), performance)
    return performance


def build_parts(settings: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    # the model first: a wrong option should not wait for the images to be decoded
    model = IQAModel(**model_kwargs(settings), pretrained=pretrained_weights(settings)).to(device)
    loaders = dict(zip(('train', 'val', 'test'), data_loaders(settings, device)))
    distributed = idist.get_world_size() > 1
    if distributed:
        global_batchnorm(model, device)
    channels_last = uses_channels_last(device)
    set_memory_format(model, channels_last=channels_last)  # before DistributedDataParallel sees the parameters
    optimizer = T.create_optimizer(model, lr=settings['lr'], ft_lr_ratio=settings['ft_lr_ratio'],
                                   weight_decay=settings['weight_decay'])
    step = T.lr_step_size(settings['epochs'], settings['lr_decay'], settings['overall_lr_decay'])
    precision = choose_precision(settings['opt_level'], device)
    # DistributedDataParallel trains; evaluation runs the model itself, each process on its share.
    trained = compile_model(idist.auto_model(model) if distributed else model, settings['compile'])
    evaluated = model if distributed else trained
    evaluations = {status: T.Evaluation(evaluated, status=status, device=device, precision=precision,
                                        channels_last=channels_last) for status in ('train', 'val', 'test')}
    return dict(loaders=loaders, model=model, trained=trained, optimizer=optimizer, evaluations=evaluations,
                progress=Progress(), precision=precision, channels_last=channels_last, epoch_log=None,
                scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=settings['lr_decay']))


def training(local_rank: int, settings: Dict[str, Any]) -> Dict[str, Any]:
    """Train, keep the best model, and test it; returns the test metrics. Runs in every process."""
    device = choose_device(settings['device'])
    limit_pixels(settings['max_pixels'])
    seed = run_seed(settings)
    T.seed_everything(seed)
    T.configure_cudnn(deterministic=not settings['randomness'])
    parts = build_parts(settings, device)
    if settings['evaluate']:
        return evaluate_only(parts, settings)
    say(f"training on {idist.get_world_size()} x {device.type} in {parts['precision'].name}")
    trainer = T.create_trainer(parts['trained'], parts['optimizer'], GlobalBatchLoss(IQALoss(**loss_kwargs(settings))),
                               device=device, precision=parts['precision'], channels_last=parts['channels_last'],
                               accumulation_steps=settings['accumulation_steps'],
                               skip_nonfinite=settings['skip_nonfinite'], report=say)
    reseed_each_epoch(trainer, seed)
    attach_validation(trainer, parts, settings)
    attach_resume(trainer, parts, settings)
    if idist.get_rank() == 0:
        attach_epoch_log(trainer, parts, settings)
    logger = attach_logging(trainer, parts, settings) if idist.get_rank() == 0 else None
    if settings['pbar'] and idist.get_rank() == 0:
        attach_progress_bars(trainer, parts['evaluations'])
    try:
        trainer.run(parts['loaders']['train'], max_epochs=settings['epochs'])
        performance = final_test(parts, settings)
        remove_resume_state(settings)
        return performance
    finally:
        if logger is not None:
            logger.close()


def evaluate_only(parts: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    path = settings['trained_model_file']
    checkpoint = load_checkpoint(path)
    load_model_state(parts['model'], checkpoint, path, settings=model_kwargs(settings))
    return test_and_report(parts['evaluations']['test'], parts['loaders']['test'], checkpoint, settings)


def run_outputs(settings: Dict[str, Any]) -> List[str]:
    """The files a run writes under its name, which no other run may write at the same time."""
    return [settings['trained_model_file'], os.path.join(settings['results_dir'], settings['run_name'])]


# What the file system says when an output cannot be written: full, read-only, not permitted, not a folder.
WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def run(local_rank: int, settings: Dict[str, Any]) -> None:
    """One process: a user mistake is one line (from the first process) and exit status 1."""
    try:
        with run_lock(run_outputs(settings)) if idist.get_rank() == 0 else contextlib.nullcontext():
            training(local_rank, settings)
    except (IQAError, OSError, RuntimeError) as error:
        message = _message(error)
        if message is None:
            raise
        if idist.get_rank() == 0:
            print(f'main.py: error: {message}', file=sys.stderr)
        raise SystemExit(1) from None


def _message(error: Exception) -> Optional[str]:
    """The line that tells the user what happened, or None for an error that is a bug."""
    if isinstance(error, IQAError):
        return str(error)
    if isinstance(error, OSError) and error.errno in WRITE_FAILURES:
        return (f"{error.filename}: {error.strerror}; check the space and permissions of the output folders "
                f"(--trained_model_file, --results_dir, --log_dir); what was saved before is kept")
    if out_of_memory(error):
        return (f"out of memory ({memory_error_summary(error)}): lower -bs (-accum N keeps the batch the "
                f"optimizer sees), train on smaller images (--resize, -cs_h/-cs_w), lower -ebs, or use --opt_level O1 "
                f"on a GPU; --resume continues from the last finished epoch")
    if isinstance(error, RuntimeError) and str(error).startswith('DataLoader worker'):
        # torch's words: "DataLoader worker (pid N) is killed by signal: Killed." and the like
        return (f"a data loading process died ({str(error).rstrip('.')}). Often the memory ran out: lower "
                f"--num_workers or -bs; --resume continues from the last finished epoch")
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.quickstart:
        return run_quickstart(main)
    settings = run_settings(args)
    spawned = settings['nproc_per_node'] is not None and settings['nproc_per_node'] > 1
    backend = None
    if spawned or 'WORLD_SIZE' in os.environ:  # started with --nproc_per_node or by torchrun
        backend = 'nccl' if torch.cuda.is_available() and settings['device'] != 'cpu' else 'gloo'
    # ignite announces every launch on stderr; a user's mistake must stay the only line there
    logging.getLogger('ignite.distributed.launcher.Parallel').setLevel(logging.WARNING)
    try:
        with idist.Parallel(backend=backend, nproc_per_node=settings['nproc_per_node'] if spawned else None) as parallel:
            parallel.run(run, settings)
    except SystemExit as exit_status:
        return int(exit_status.code or 0)
    except Exception as error:  # a spawned process ended with an error it has reported
        if spawned and 'SystemExit' in str(error):
            return 1
        raise
    return 0


if __name__ == '__main__':
    sys.exit(main())
