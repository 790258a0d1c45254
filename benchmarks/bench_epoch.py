"""Whole training epochs, data included, against what the training step alone allows.

    python -m benchmarks.bench_epoch                            # GPU: 1,024 generated 1024x768 JPEGs, --resize
    python -m benchmarks.bench_epoch --arch resnet18 --images 64 --height 96 --width 128 --crop 80 --steps 3

It generates a rated data set of KonIQ-10k's shape (benchmarks/generated.py), builds main.py's
loaders over it (get_data_loaders: decoded-image cache, uint8 batches, pinned memory,
persistent workers) and main.py's trainer, and trains two epochs; the second is timed (the
first decodes into the cache and starts the workers). The same trainer setting is then timed
on one synthetic batch already on the device (bench_train_step), at the size the loader gives:
the whole resized image, or the crop with --augment. An input pipeline that keeps up gives an
epoch throughput close to the step throughput.

Last, the test split is evaluated as main.py validates (batches of -ebs's default, the setting's
precision), and the paper's KonIQ-10k run is projected from the two rates.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from ignite.engine import Events

from benchmarks.bench_train_step import SETTINGS, build_trainer, run_setting
from benchmarks.common import machine, print_header, print_row, synchronize
from benchmarks.generated import write_rated_images
from IQAdataset import Batching, get_data_loaders
from IQAmodel import IQAModel
from linearityiqa.acceleration import choose_precision, cudnn_mode, evaluation_batch_size, set_memory_format
from linearityiqa.data.dataset_registry import DataSource
from linearityiqa.data.image_store import ImageLoading, available_cores
from linearityiqa.data.image_transforms import TrainAugmentation
from linearityiqa.training.evaluation import Evaluation

# The paper's KonIQ-10k run: 30 epochs of 7,058 training and 1,000 validation images; then the
# mapping is fitted on the training images and the 2,015 test images are tested. The authors'
# run took about 23 hours (with apex O1).
PAPER_EPOCHS, PAPER_TRAIN, PAPER_VAL, PAPER_TEST = 30, 7058, 1000, 2015
AUTHORS_HOURS = 23


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Time training epochs against training steps.",
        add_help=add_help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--arch", default="resnext101_32x8d", help="backbone")
    parser.add_argument(
        "--setting", default="o1-cl-rn", choices=sorted(SETTINGS), help="trainer setting, as named in bench_train_step"
    )
    parser.add_argument("--images", type=int, default=1024, help="generated images (1024x768 JPEGs), 70%% for training")
    parser.add_argument("--height", type=int, default=498, help="height images are resized to")
    parser.add_argument("--width", type=int, default=664, help="width images are resized to")
    parser.add_argument("--crop", type=int, default=498, help="side of the square crop of --augment")
    parser.add_argument("--batch-size", type=int, default=8, help="training batch size")
    parser.add_argument("--num-workers", type=int, default=min(8, available_cores()), help="loader processes")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps of the step measurement")
    parser.add_argument("--steps", type=int, default=20, help="timed steps of the step measurement")
    parser.add_argument(
        "--work-dir",
        default=None,
        help="folder for the images and their cache, kept for later runs (default: temporary)",
    )
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"), help="device (default: cuda if available)")
    return parser


def epoch_throughput(
    args: argparse.Namespace, source: DataSource, loading: ImageLoading, augment: bool, device: torch.device
) -> float:
    """Training images per second over the second of two epochs."""
    augmentation = TrainAugmentation(angle=2, hflip_p=0.5, crop_h=args.crop, crop_w=args.crop) if augment else None
    batching = Batching(batch_size=args.batch_size, num_workers=args.num_workers)
    train_loader, _, _ = get_data_loaders(source, loading=loading, augmentation=augmentation, batching=batching)
    setting = SETTINGS[args.setting]
    trainer = build_trainer(setting, arch=args.arch, device=device)
    started = {}

    @trainer.on(Events.EPOCH_STARTED)
    def start_clock(engine) -> None:
        synchronize(device)
        started[engine.state.epoch] = time.perf_counter()

    with cudnn_mode(deterministic=setting.deterministic):
        trainer.run(train_loader, max_epochs=2)
    synchronize(device)
    return len(train_loader.dataset) / (time.perf_counter() - started[2])


def evaluation_throughput(args: argparse.Namespace, source: DataSource, loading: ImageLoading, device: torch.device):
    """Test images per second as main.py validates, over the second of two passes."""
    setting = SETTINGS[args.setting]
    batching = Batching(
        batch_size=args.batch_size, eval_batch_size=evaluation_batch_size(None, device), num_workers=args.num_workers
    )
    _, _, test_loader = get_data_loaders(source, loading=loading, batching=batching)
    torch.manual_seed(0)
    model = IQAModel(arch=args.arch, pretrained=False).to(device)
    layout = setting.channels_last
    set_memory_format(model, channels_last=layout)
    precision = choose_precision(setting.opt_level, device)
    evaluation = Evaluation(model, status="test", device=device, precision=precision, channels_last=layout)
    with cudnn_mode(deterministic=setting.deterministic):
        evaluation.run(test_loader)
        synchronize(device)
        started = time.perf_counter()
        evaluation.run(test_loader)
        synchronize(device)
    return len(test_loader.dataset) / (time.perf_counter() - started)


def projected_hours(train_rate: float, evaluation_rate: float) -> float:
    """The paper's KonIQ-10k run at these rates (images/s), in hours."""
    epoch = PAPER_TRAIN / train_rate + PAPER_VAL / evaluation_rate
    return (PAPER_EPOCHS * epoch + (PAPER_TRAIN + PAPER_TEST) / evaluation_rate) / 3600


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_epoch_"))
    try:
        image_dir, info = write_rated_images(work_dir / f"rated-{args.images}", count=args.images)
        source = DataSource.open("generated", data_info=info, im_dir=image_dir)
        loading = ImageLoading(resize_hw=(args.height, args.width), cache_dir=work_dir / "cache", verbose=False)
        print(
            f"{machine()}\ntraining epochs, {args.arch}, {SETTINGS[args.setting].label}, batch {args.batch_size}, "
            f"{args.num_workers} loader workers; images resized to {args.height}x{args.width}"
            f"{'; on a CPU every opt level runs in float32' if device.type == 'cpu' else ''}\n"
        )
        print_header("input", "step only (images/s)", "whole epoch (images/s)", "epoch / step")
        for augment in (False, True):
            height, width = (args.crop, args.crop) if augment else (args.height, args.width)
            step_args = argparse.Namespace(
                arch=args.arch,
                batch_size=args.batch_size,
                height=height,
                width=width,
                warmup=args.warmup,
                steps=args.steps,
            )
            step, _ = run_setting(SETTINGS[args.setting], step_args, device)
            epoch = epoch_throughput(args, source, loading, augment, device)
            label = f"--augment, {height}x{width} crops" if augment else f"whole {height}x{width} images"
            print_row(label, f"{step:.1f}", f"{epoch:.1f}", f"{epoch / step:.2f}")
            if not augment:  # the paper trained on whole resized images
                whole_images = epoch
        evaluated = evaluation_throughput(args, source, loading, device)
        print(
            f"\nevaluation as main.py validates: {evaluated:.1f} images/s. The paper's KonIQ-10k run "
            f"({PAPER_EPOCHS} epochs of {PAPER_TRAIN:,} training and {PAPER_VAL:,} validation images, then "
            f"{PAPER_TRAIN:,} to fit the mapping and {PAPER_TEST:,} to test) at these rates: "
            f"{projected_hours(whole_images, evaluated):.2f} h (the authors: about {AUTHORS_HOURS} h)"
        )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
