"""Whole training epochs, data included, against what the training step alone allows.

    python -m benchmarks.bench_epoch                            # GPU: 1,024 generated 1024x768 JPEGs, --resize
    python -m benchmarks.bench_epoch --arch resnet18 --images 64 --height 96 --width 128 --crop 80 --steps 3

On a rated data set of KonIQ-10k's shape (common.rated_source), main.py's loaders and trainer
train two epochs; the second is timed (the first decodes into the cache and starts the workers).
The same setting is timed on one batch already on the device (bench_train_step) at the size the
loader gives (the whole resized image, or the crop of --augment): an input pipeline that keeps up
gives an epoch throughput close to the step's. Last, the test split is evaluated as main.py
validates, and the paper's KonIQ-10k run is projected from the two rates.
"""

from __future__ import annotations

import time

import torch
from ignite.engine import Events
from torch.utils.data import DataLoader

from benchmarks.bench_eval import evaluation_rate
from benchmarks.bench_train_step import SETTINGS, Setting, build_trainer, step_throughput
from benchmarks.common import DEVICE, WORK_DIR, machine, options_parser, rated_source, synchronize, table, work_folder
from IQAdataset import Batching, get_data_loaders
from IQAmodel import IQAModel
from linearityiqa.acceleration import cudnn_mode, evaluation_batch_size
from linearityiqa.data.image_store import ImageLoading, available_cores
from linearityiqa.data.image_transforms import TrainAugmentation

# The paper's KonIQ-10k run: 30 epochs of 7,058 training and 1,000 validation images; then the
# mapping is fitted on the training images and the 2,015 test images are tested. The authors'
# run took about 23 hours (with apex O1).
PAPER_EPOCHS, PAPER_TRAIN, PAPER_VAL, PAPER_TEST = 30, 7058, 1000, 2015
AUTHORS_HOURS = 23
OPTIONS = {
    "--arch": ("resnext101_32x8d", "backbone"),
    "--setting": ("o1-cl-rn", "trainer setting, as named in bench_train_step", sorted(SETTINGS)),
    "--images": (1024, "generated images (1024x768 JPEGs), 70% for training"),
    "--height": (498, "height images are resized to"),
    "--width": (664, "width images are resized to"),
    "--crop": (498, "side of the square crop of --augment"),
    "--batch-size": (8, "training batch size"),
    "--num-workers": (min(8, available_cores()), "loader processes"),
    "--warmup": (5, "untimed steps of the step measurement"),
    "--steps": (20, "timed steps of the step measurement"),
    **WORK_DIR,
    **DEVICE,
}


def epoch_throughput(setting: Setting, *, arch: str, train_loader: DataLoader, device: torch.device) -> float:
    """Training images per second over the second of two epochs of main.py's training loader."""
    trainer = build_trainer(setting, arch=arch, device=device)
    started = {}

    @trainer.on(Events.EPOCH_STARTED)
    def start_clock(engine) -> None:
        synchronize(device)
        started[engine.state.epoch] = time.perf_counter()

    with cudnn_mode(deterministic=setting.deterministic):
        trainer.run(train_loader, max_epochs=2)
    synchronize(device)
    return len(train_loader.dataset) / (time.perf_counter() - started[2])


def projected_hours(train_rate: float, test_rate: float) -> float:
    """The paper's KonIQ-10k run at these rates (images/s; it trained on whole resized images), in hours."""
    epoch = PAPER_TRAIN / train_rate + PAPER_VAL / test_rate
    return (PAPER_EPOCHS * epoch + (PAPER_TRAIN + PAPER_TEST) / test_rate) / 3600


def main(argv: list[str] | None = None) -> None:
    args = options_parser(__doc__, OPTIONS).parse_args(argv)
    device = torch.device(args.device)
    setting = SETTINGS[args.setting]
    with work_folder(args.work_dir, "bench_epoch_") as work_dir:
        source = rated_source(work_dir, count=args.images)
        loading = ImageLoading(resize_hw=(args.height, args.width), cache_dir=work_dir / "cache", verbose=False)
        print(
            f"{machine()}\ntraining epochs, {args.arch}, {setting.label}, batch {args.batch_size}, "
            f"{args.num_workers} loader workers; images resized to {args.height}x{args.width}"
            f"{'; on a CPU every opt level runs in float32' if device.type == 'cpu' else ''}\n"
        )
        row = table("input", "step only (images/s)", "whole epoch (images/s)", "epoch / step")
        # the evaluation batches as main.py validates: -ebs's default
        eval_batch_size = evaluation_batch_size(None, device)
        batching = Batching(batch_size=args.batch_size, eval_batch_size=eval_batch_size, num_workers=args.num_workers)
        steps = dict(batch_size=args.batch_size, warmup=args.warmup, steps=args.steps, device=device)
        crops = TrainAugmentation(angle=2, hflip_p=0.5, crop_h=args.crop, crop_w=args.crop)
        rates = []
        for augmentation in (None, crops):
            height, width = (args.crop, args.crop) if augmentation else (args.height, args.width)
            step, _ = step_throughput(setting, arch=args.arch, height=height, width=width, **steps)
            loaders = get_data_loaders(source, loading=loading, augmentation=augmentation, batching=batching)
            rates.append(epoch_throughput(setting, arch=args.arch, train_loader=loaders[0], device=device))
            label = f"--augment, {height}x{width} crops" if augmentation else f"whole {height}x{width} images"
            row(label, f"{step:.1f}", f"{rates[-1]:.1f}", f"{rates[-1] / step:.2f}")
        torch.manual_seed(0)
        model = IQAModel(arch=args.arch, pretrained=False).to(device)
        evaluated, _, _ = evaluation_rate(setting, model, loaders[2], device)  # the test loader: whole images
    print(
        f"\nevaluation as main.py validates: {evaluated:.1f} images/s. The paper's KonIQ-10k run "
        f"({PAPER_EPOCHS} epochs of {PAPER_TRAIN:,} training and {PAPER_VAL:,} validation images, then "
        f"{PAPER_TRAIN:,} to fit the mapping and {PAPER_TEST:,} to test) at these rates: "
        f"{projected_hours(rates[0], evaluated):.2f} h (the authors: about {AUTHORS_HOURS} h)"
    )


if __name__ == "__main__":
    main()
