"""Evaluation throughput, data included, and how far batched mixed precision moves the metrics.

    python -m benchmarks.bench_eval                            # GPU: resnext101_32x8d, 1,024 images at 498x664
    python -m benchmarks.bench_eval --arch resnet18 --images 32 --height 96 --width 128   # CPU, seconds

It generates a rated data set of KonIQ-10k's shape (benchmarks/generated.py), then tests the
model on all of it as test_dataset.py does (IQADataset from the decoded-image cache,
evaluation_loader, training.evaluation.Evaluation) in each setting. The first setting is the paper's
evaluation, one image at a time in float32; then one image at a time in the last precision
asked for, and batches of images of one size in each precision, in the memory format the
scripts use on the device (channels_last). Each setting is run twice and the second run is timed (the
first decodes into the cache, starts the workers and lets cuDNN pick its kernels). The last
column is the largest change of SROCC, KROCC or PLCC of any head from the first setting.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import format_memory, machine, peak_memory_gib, print_header, print_row, reset_peak_memory, timed
from benchmarks.generated import write_rated_images
from IQAdataset import IQADataset, evaluation_loader
from IQAmodel import IQAModel
from linearityiqa.acceleration import choose_precision, cudnn_mode, uses_channels_last
from linearityiqa.data.dataset_registry import ALL_FOR_TESTING, DataSource
from linearityiqa.data.image_store import ImageLoading, available_cores
from linearityiqa.records.checkpoint import load_checkpoint, load_model_state
from linearityiqa.training.evaluation import Evaluation

COMPARED = [f"{name}{head}" for head in ("", "1", "2") for name in ("SROCC", "KROCC", "PLCC")]


@dataclass(frozen=True)
class Setting:
    label: str
    batch_size: int
    opt_level: str = "O0"
    channels_last: bool = False


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Time evaluation and compare its metrics across settings.",
        add_help=add_help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--arch", default="resnext101_32x8d", help="backbone")
    parser.add_argument(
        "--checkpoint", default=None, help="a trained checkpoint of --arch to evaluate (default: random weights)"
    )
    parser.add_argument("--images", type=int, default=1024, help="generated images (1024x768 JPEGs)")
    parser.add_argument("--height", type=int, default=498, help="height images are resized to")
    parser.add_argument("--width", type=int, default=664, help="width images are resized to")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of the batched settings")
    parser.add_argument(
        "--opt-levels",
        nargs="+",
        default=["O0", "O1", "bf16"],
        help="precisions of the batched settings (on a CPU all run in float32)",
    )
    parser.add_argument("--num-workers", type=int, default=min(8, available_cores()), help="loader processes")
    parser.add_argument(
        "--work-dir",
        default=None,
        help="folder for the images and their cache, kept for later runs (default: temporary)",
    )
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"), help="device (default: cuda if available)")
    return parser


def build_model(args: argparse.Namespace, device: torch.device) -> IQAModel:
    torch.manual_seed(0)
    model = IQAModel(arch=args.arch, pretrained=False)
    if args.checkpoint:
        load_model_state(model, load_checkpoint(args.checkpoint), args.checkpoint)
    return model.to(device).eval()


def run_setting(
    setting: Setting, model: IQAModel, images: IQADataset, args: argparse.Namespace, device: torch.device
) -> tuple[float, dict, float | None]:
    """(images/s, metrics, peak GiB) of one setting."""
    model.to(memory_format=torch.channels_last if setting.channels_last else torch.contiguous_format)
    evaluation = Evaluation(
        model,
        status="test",
        device=device,
        precision=choose_precision(setting.opt_level, device),
        channels_last=setting.channels_last,
    )
    loader = evaluation_loader(images, batch_size=setting.batch_size, num_workers=args.num_workers)
    evaluation.run(loader)
    reset_peak_memory(device)
    results = {}
    seconds = timed(lambda: results.update(evaluation.run(loader)), device)
    return len(images) / seconds, results, peak_memory_gib(device)


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_eval_"))
    try:
        image_dir, info = write_rated_images(work_dir / f"rated-{args.images}", count=args.images)
        source = DataSource.open("generated", data_info=info, im_dir=image_dir)
        loading = ImageLoading(resize_hw=(args.height, args.width), cache_dir=work_dir / "cache", verbose=False)
        images = IQADataset(source, status="test", split=ALL_FOR_TESTING, loading=loading)
        model = build_model(args, device)
        print(
            f"{machine()}\nevaluation of {len(images)} images at {args.height}x{args.width}, {args.arch} "
            f"({'trained: ' + args.checkpoint if args.checkpoint else 'random weights'}), "
            f"{args.num_workers} loader workers\n"
        )
        layout = "channels_last" if uses_channels_last(device) else "contiguous"
        # the paper's evaluation; then the last precision asked for one image at a time, which
        # tells the gain of batching from that of the precision; then each precision batched
        sized = [(1, args.opt_levels[-1])] + [(args.batch_size, level) for level in args.opt_levels]
        settings = [Setting("batch 1, float32, contiguous (the paper)", 1)] + [
            Setting(
                f"batch {size}, {choose_precision(level, device).name}, {layout}",
                size,
                level,
                uses_channels_last(device),
            )
            for size, level in sized
        ]
        settings = list({setting.label: setting for setting in settings}.values())  # on a CPU all levels are float32
        print_header("setting", "images/s", "vs first", "peak memory", "largest metric change")
        first = None
        for setting in settings:
            with cudnn_mode(deterministic=False):  # as test_dataset.py evaluates
                speed, results, memory = run_setting(setting, model, images, args, device)
            first = first or (speed, results)
            change = max(abs(float(results[name]) - float(first[1][name])) for name in COMPARED)
            print_row(setting.label, f"{speed:.1f}", f"{speed / first[0]:.2f}x", format_memory(memory), f"{change:.1e}")
        print(f"\nfirst setting: SROCC {first[1]['SROCC']:.4f}, PLCC {first[1]['PLCC']:.4f}")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
