"""Test a trained checkpoint on a data set: print its metrics and save them, with the per-image scores, to
--results_dir (docs/testing.md says which images are tested and which checkpoint without --trained_model_file).

    python test_dataset.py --dataset KonIQ-10k --resize --arch resnext101_32x8d \\
        --trained_model_file checkpoints/p1q2.pth
    python test_dataset.py --dataset CLIVE --resize --arch resnext101_32x8d \\
        --trained_model_file checkpoints/p1q2plus0.1variant.pth
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence, Set
from typing import Any

from linearityiqa.cli.scripts import Advice, exit_status, imports_checked, own_the_pixel_limit

with imports_checked("test_dataset.py", __name__):  # a missing dependency is one line, not a traceback
    import torch
    from torch.utils.data import DataLoader

    from IQAdataset import IQADataset, evaluation_loader
    from linearityiqa.acceleration import cudnn_mode, evaluation_batch_size, resolve_device
    from linearityiqa.choices import LEAST_FOR_CORRELATION, LEAST_FOR_LOGISTIC
    from linearityiqa.cli import settings as adapt
    from linearityiqa.cli.options import get_test_dataset_parser, given_options
    from linearityiqa.data.dataset_registry import ALL_FOR_TESTING, DataSource, Split
    from linearityiqa.errors import ConfigError
    from linearityiqa.image_scoring import MODEL_OPTIONS
    from linearityiqa.options import OPTIONS
    from linearityiqa.records.checkpoint import RELEASED_CHECKPOINT
    from linearityiqa.records.run_records import dataset_results_file, save_results, scores_file
    from linearityiqa.records.writing import check_writable, refuse_inputs
    from linearityiqa.scoring import load_scorer
    from linearityiqa.training.evaluation import METRICS_PRINTED, Evaluation, metric_lines

# Beyond the paper's nine lines: rank correlation by pairs, and PLCC after the logistic fit of VQEG.
EXTRA_METRICS = ("KROCC", "PLCC_logistic")
# Options of a training run that name its checkpoint (records/run_records.run_name), the model's aside.
RUN_OPTIONS = frozenset(row.dest for row in OPTIONS if row.group in ("loss", "training schedule") and row.run_name)
ADVICE = Advice(out_of_memory="lower --eval_batch_size, or test at a smaller size (--resize)")


def test_loader(
    options: Mapping[str, Any], source: DataSource, resize_hw: tuple[int, int] | None, device: torch.device
) -> DataLoader:
    """The images to test on: the data set's own test split, or all of them. Before a single image is
    decoded: enough of them for a correlation, and a note when too few for the logistic fit."""
    split = Split() if source.has_own_split else ALL_FOR_TESTING
    count = len(source.positions("test", split))
    if count < LEAST_FOR_CORRELATION:
        raise ConfigError(
            f"{source.name} has {count} test image(s), but a correlation needs at least {LEAST_FOR_CORRELATION}: "
            f"test on more images, or score them with test_demo.py"
        )
    if count < LEAST_FOR_LOGISTIC:
        print(
            f"test_dataset.py: note: {source.name} has {count} test images; the logistic fit needs at least "
            f"{LEAST_FOR_LOGISTIC}, so PLCC_logistic and RMSE_logistic are n/a",
            file=sys.stderr,
        )
    images = IQADataset(source, status="test", split=split, loading=adapt.image_loading(options, resize_hw=resize_hw))
    batch_size = evaluation_batch_size(options["eval_batch_size"], device)
    return evaluation_loader(images, batch_size=batch_size, num_workers=options["num_workers"] or 0)


def results_file(options: Mapping[str, Any], checkpoint: str, source: DataSource) -> str:
    """Where the metrics go, checked before the test: neither they nor the scores beside them may
    be a file the test reads, and their folder must take new files."""
    results = dataset_results_file(options["results_dir"], options["dataset"], checkpoint)
    inputs = [("checkpoint", checkpoint), ("info file", source.spec.info_path)]
    for output in (results, scores_file(results)):
        refuse_inputs(output, inputs, option="--results_dir")
    check_writable(results, what="the test's metrics", advice="free space, or pass another --results_dir")
    return results


def checkpoint_to_test(options: Mapping[str, Any], given: Set[str]) -> str:
    """--trained_model_file; else, when a training option is given (the authors' spelling), the
    checkpoint main.py saved for a KonIQ-10k run with those options; else the released one."""
    if options["trained_model_file"]:
        return options["trained_model_file"]
    if not given & RUN_OPTIONS:
        return RELEASED_CHECKPOINT
    path = adapt.koniq_run_checkpoint(options)
    print(f"testing {path}, the checkpoint of main.py's KonIQ-10k run with these options")
    return path


def test_checkpoint(options: Mapping[str, Any], defaults: Mapping[str, Any], given: Set[str]) -> None:
    """Evaluate the checkpoint the options name on their data set; print and save the metrics."""
    device = resolve_device(options["device"])
    path = checkpoint_to_test(options, given)
    source = adapt.data_source(options)
    results = results_file(options, path, source)
    scorer = load_scorer(
        path,
        requested={name: options[name] for name in MODEL_OPTIONS},
        defaults=defaults,
        device=device,
        opt_level=options["opt_level"],
        max_pixels=options["max_pixels"],
    )
    if scorer.note:
        print(f"test_dataset.py: note: {scorer.note}", file=sys.stderr)
    loader = test_loader(options, source, scorer.sizing.resize_hw, device)
    evaluation = Evaluation(
        scorer.model,
        status="test",
        device=device,
        precision=scorer.precision,
        channels_last=scorer.channels_last,
        logistic=True,
    )
    # The test images share one size (resized, or CLIVE's 500x500): cuDNN's timed choice of
    # kernels for it pays off, and evaluation draws nothing at random.
    with cudnn_mode(deterministic=False):
        performance = evaluation.run(loader, scorer.k, scorer.b)
    print("\n".join(metric_lines(options["dataset"], performance, METRICS_PRINTED + EXTRA_METRICS)))
    save_results(results, performance)


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_test_dataset_parser()
    options = vars(parser.parse_args(argv))
    defaults = vars(parser.parse_args([]))
    given = given_options(parser, argv)
    own_the_pixel_limit()
    return exit_status("test_dataset.py", lambda: test_checkpoint(options, defaults, given), ADVICE)


if __name__ == "__main__":
    sys.exit(main())
