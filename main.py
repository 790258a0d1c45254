"""Train the LinearityIQA model (Li, Jiang, Jiang, ACM MM 2020).

    python main.py --dataset KonIQ-10k --resize --exp_id 0 --lr 1e-4 -bs 8 -e 30 --ft_lr_ratio 0.1 \\
        --arch resnext101_32x8d --loss_type Lp --p 1 --q 2

Each epoch the model is validated and the best one is saved to checkpoints/<run name>; at the
end the best model's linear mapping (k, b) is fitted on the training set, the test set is
evaluated, and its metrics are saved to results/<run name>.npy.
"""

import os
import sys
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, global_step_from_engine
from ignite.handlers.tensorboard_logger import TensorboardLogger

import training as T
from checkpoint import load_checkpoint, load_model_state, save_checkpoint
from dataset_registry import check_linked, get_dataset_spec, has_own_split
from errors import IQAError, MissingFileError
from IQAdataset import get_data_loaders
from IQAloss import IQALoss
from IQAmodel import IQAModel
from options import get_args_parser, loss_kwargs, model_kwargs, pretrained_weights


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


def data_loaders(settings: Dict[str, Any]):
    train_ratio, train_and_val_ratio = split_ratios(settings)
    return get_data_loaders(
        dataset=settings['dataset'], data_info=settings['data_info'], im_dir=settings['im_dir'],
        exp_id=settings['exp_id'], train_ratio=train_ratio, train_and_val_ratio=train_and_val_ratio,
        resize=settings['resize'], resize_size_h=settings['resize_size_h'], resize_size_w=settings['resize_size_w'],
        augment=settings['augmentation'], angle=settings['angle'], crop_size_h=settings['crop_size_h'],
        crop_size_w=settings['crop_size_w'], hflip_p=settings['hflip_p'], batch_size=settings['batch_size'],
        debug=settings['debug'], num_workers=settings['num_workers'], cache_dir=settings['cache_dir'])


def choose_device(requested: Optional[str]) -> torch.device:
    return torch.device(requested or ('cuda' if torch.cuda.is_available() else 'cpu'))


class Progress:
    """The best validation score so far, kept in the resume checkpoint."""

    def __init__(self):
        self.best_score, self.best_epoch = -float('inf'), 0

    def state_dict(self) -> Dict[str, float]:
        return {'best_score': self.best_score, 'best_epoch': self.best_epoch}

    def load_state_dict(self, state: Dict[str, float]) -> None:
        self.best_score, self.best_epoch = state['best_score'], state['best_epoch']


def criterion_score(performance: Dict[str, Any], criterion: str) -> float:
    """Larger is better: |SROCC| or |PLCC| (a head may learn a reversed scale), or -RMSE."""
    value = float(performance[criterion])
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
        score = criterion_score(evaluations['val'].run(loaders['val'], k, b), settings['val_criterion'])
        if settings['test_during_training']:
            evaluations['test'].run(loaders['test'], k, b)
        if score > progress.best_score:
            save_checkpoint(settings['trained_model_file'], best_checkpoint(
                parts['model'], parts['optimizer'], parts['precision'], k, b, settings))
            progress.best_score, progress.best_epoch = score, engine.state.epoch
            print(f"epoch {engine.state.epoch}: best model saved, val {settings['val_criterion']} {score:.3f}")
        else:
            print(f"epoch {engine.state.epoch}: val {settings['val_criterion']} {score:.3f}, "
                  f"best {progress.best_score:.3f} at epoch {progress.best_epoch}")
        parts['scheduler'].step()


def attach_resume(trainer: Engine, parts: Dict[str, Any], settings: Dict[str, Any]) -> None:
    """Save the whole state after each epoch, and load the last one with --resume."""
    to_save = {'trainer': trainer, 'model': parts['model'], 'optimizer': parts['optimizer'],
               'lr_scheduler': parts['scheduler'], 'progress': parts['progress']}
    if parts['precision'].scaler is not None:
        to_save['scaler'] = parts['precision'].scaler
    folder = settings['trained_model_file'] + '.resume'
    saver = Checkpoint(to_save, DiskSaver(folder, require_empty=False), n_saved=2,
                       global_step_transform=global_step_from_engine(trainer))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, saver)
    if settings['resume']:
        path = latest_resume_file(folder)
        Checkpoint.load_objects(to_load=to_save, checkpoint=torch.load(path, map_location='cpu', weights_only=True))
        print(f"resuming from {path} after epoch {trainer.state.epoch}")


def latest_resume_file(folder: str) -> str:
    files = os.listdir(folder) if os.path.isdir(folder) else []
    if not files:
        raise MissingFileError(f"nothing to resume in {folder}: run once without --resume, with the same options")
    return os.path.join(folder, max(files, key=lambda f: os.path.getmtime(os.path.join(folder, f))))


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


def reseed_each_epoch(trainer: Engine, seed: int) -> None:
    """Seed every epoch from its number, so a resumed run draws what an uninterrupted one would."""
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: T.seed_everything(seed + engine.state.epoch))


def final_test(parts: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """Load the best model, fit its mapping on the training set unless already fitted, and test it."""
    path = settings['trained_model_file']
    checkpoint = load_checkpoint(path)
    load_model_state(parts['model'], checkpoint, path)
    if not settings['test_during_training']:
        fitted = parts['evaluations']['train'].run(parts['loaders']['train'])
        checkpoint['k'], checkpoint['b'] = fitted['k'], fitted['b']
        save_checkpoint(path, checkpoint)
    return test_and_report(parts['evaluations']['test'], parts['loaders']['test'], checkpoint, settings)


def test_and_report(evaluation: T.Evaluation, loader, checkpoint: Dict[str, Any], settings: Dict[str, Any]):
    performance = evaluation.run(loader, checkpoint['k'], checkpoint['b'])
    print('\n'.join(T.metric_lines(settings['dataset'], performance)))
    os.makedirs('results', exist_ok=True)
    np.save(os.path.join('results', settings['run_name'] + '.npy'), performance)
    return performance


def build_parts(settings: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    loaders = dict(zip(('train', 'val', 'test'), data_loaders(settings)))
    model = IQAModel(**model_kwargs(settings), pretrained=pretrained_weights(settings)).to(device)
    optimizer = T.create_optimizer(model, lr=settings['lr'], ft_lr_ratio=settings['ft_lr_ratio'],
                                   weight_decay=settings['weight_decay'])
    step = T.lr_step_size(settings['epochs'], settings['lr_decay'], settings['overall_lr_decay'])
    evaluations = {status: T.Evaluation(model, status=status, device=device) for status in ('train', 'val', 'test')}
    return dict(loaders=loaders, model=model, optimizer=optimizer, evaluations=evaluations, progress=Progress(),
                scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=settings['lr_decay']),
                precision=T.choose_precision(settings['opt_level'], device))


def training(settings: Dict[str, Any]) -> Dict[str, Any]:
    """Train, keep the best model, and test it; returns the test metrics."""
    device = choose_device(settings['device'])
    if not settings['randomness']:
        T.seed_everything(settings['seed'])
        T.make_deterministic()
    parts = build_parts(settings, device)
    if settings['evaluate']:
        return evaluate_only(parts, settings)
    print(f"training on {device} in {parts['precision'].name}")
    trainer = T.create_trainer(parts['model'], parts['optimizer'], IQALoss(**loss_kwargs(settings)),
                               device=device, precision=parts['precision'],
                               accumulation_steps=settings['accumulation_steps'])
    if not settings['randomness']:
        reseed_each_epoch(trainer, settings['seed'])
    attach_validation(trainer, parts, settings)
    attach_resume(trainer, parts, settings)
    logger = attach_logging(trainer, parts, settings)
    try:
        trainer.run(parts['loaders']['train'], max_epochs=settings['epochs'])
        return final_test(parts, settings)
    finally:
        logger.close()


def evaluate_only(parts: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    path = settings['trained_model_file']
    checkpoint = load_checkpoint(path)
    load_model_state(parts['model'], checkpoint, path, settings=model_kwargs(settings))
    return test_and_report(parts['evaluations']['test'], parts['loaders']['test'], checkpoint, settings)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        training(run_settings(args))
    except IQAError as error:
        print(f'main.py: error: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
