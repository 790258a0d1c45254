"""Test a trained checkpoint on a data set.

    python test_dataset.py --dataset KonIQ-10k --resize --arch resnext101_32x8d --trained_model_file checkpoints/p1q2.pth
    python test_dataset.py --dataset CLIVE --resize --arch resnext101_32x8d \\
        --trained_model_file checkpoints/p1q2plus0.1variant.pth

A data set with a split of its own (KonIQ-10k) is tested on its test split (intra-dataset);
any other on all its images (cross-dataset). The checkpoint's k, b map the predictions.
The metrics are printed and saved to results/dataset=<name>-tested_on_<checkpoint>.npy, and
the per-image scores to results/dataset=<name>-tested_on_<checkpoint>-scores.csv.
The model is built without ImageNet weights (the checkpoint replaces them): no network.
"""

import os
import sys
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from acceleration import evaluation_batch_size, memory_error_summary, out_of_memory
from checkpoint import MODEL_SETTINGS, RELEASED_CHECKPOINT
from dataset_registry import check_linked, get_dataset_spec, has_own_split
from errors import IQAError
from image_store import limit_pixels
from IQAdataset import IQADataset, evaluation_loader
from options import get_test_dataset_parser
from run_records import scores_file, write_scores
from scoring import image_sizing, load_scorer, resolve_device
from training import METRICS_PRINTED, Evaluation, metric_lines

# Beyond the paper's nine lines: rank correlation by pairs, and PLCC after the logistic fit of VQEG.
EXTRA_METRICS = ('KROCC', 'PLCC_logistic')


def test_loader(options: Mapping[str, Any], resize_hw: Optional[Sequence[int]], device: torch.device) -> DataLoader:
    """The images to test on: the data set's own test split, or all of them."""
    spec = get_dataset_spec(options['dataset'], data_info=options['data_info'], im_dir=options['im_dir'])
    check_linked(spec)
    ratios = (None, None) if has_own_split(spec) else (0, 0)
    height, width = resize_hw or (options['resize_size_h'], options['resize_size_w'])
    images = IQADataset(dataset=options['dataset'], data_info=options['data_info'], im_dir=options['im_dir'],
                        status='test', train_ratio=ratios[0], train_and_val_ratio=ratios[1],
                        resize=resize_hw is not None, resize_size_h=height, resize_size_w=width,
                        cache_dir=options['cache_dir'])
    return evaluation_loader(images, batch_size=evaluation_batch_size(options['eval_batch_size'], device),
                             num_workers=options['num_workers'] or 0)


def result_file(results_dir: str, dataset: str, trained_model_file: str) -> str:
    return os.path.join(results_dir, f'dataset={dataset}-tested_on_{os.path.basename(trained_model_file)}.npy')


def test_checkpoint(options: Mapping[str, Any], defaults: Mapping[str, Any]) -> Dict[str, Any]:
    """Evaluate the checkpoint the options name on their data set; print and save the metrics."""
    device = resolve_device(options['device'])
    limit_pixels(options['max_pixels'])
    path = options['trained_model_file'] or RELEASED_CHECKPOINT
    scorer = load_scorer(path, requested={name: options[name] for name in MODEL_SETTINGS}, defaults=defaults,
                         device=device, opt_level=options['opt_level'])
    # The test images share one size (resized, or CLIVE's 500x500): cuDNN's timed choice of
    # kernels for it pays off, and evaluation draws nothing at random.
    torch.backends.cudnn.benchmark = True
    sizing = image_sizing(scorer.recorded, resize=options['resize'], resize_size_h=options['resize_size_h'],
                          resize_size_w=options['resize_size_w'], defaults=defaults)
    loader = test_loader(options, sizing.resize_hw, device)
    evaluation = Evaluation(scorer.model, status='test', device=device, precision=scorer.precision,
                            channels_last=scorer.channels_last, logistic=True)
    performance = evaluation.run(loader, scorer.k, scorer.b)
    print('\n'.join(metric_lines(options['dataset'], performance, METRICS_PRINTED + EXTRA_METRICS)))
    results = result_file(options['results_dir'], options['dataset'], path)
    os.makedirs(options['results_dir'], exist_ok=True)
    np.save(results, performance)
    write_scores(scores_file(results), performance)
    return performance


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_test_dataset_parser()
    args = parser.parse_args(argv)
    try:
        test_checkpoint(vars(args), defaults=vars(parser.parse_args([])))
    except IQAError as error:
        print(f'test_dataset.py: error: {error}', file=sys.stderr)
        return 1
    except RuntimeError as error:
        if not out_of_memory(error):
            raise
        print(f'test_dataset.py: error: out of memory ({memory_error_summary(error)}): lower --eval_batch_size, '
              f'or test at a smaller size (--resize)', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
