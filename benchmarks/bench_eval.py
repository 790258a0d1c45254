"""Evaluation throughput, data included, and how far batched mixed precision moves the metrics.

    python -m benchmarks.bench_eval                            # GPU: resnext101_32x8d, 1,024 images at 498x664
    python -m benchmarks.bench_eval --arch resnet18 --images 32 --height 96 --width 128   # CPU, seconds

It generates a rated data set of KonIQ-10k's shape (common.rated_source), then tests the
model on all of it as test_dataset.py does (IQADataset from the decoded-image cache,
evaluation_loader, training.evaluation.Evaluation) in each setting (see `settings`), in the
memory format the scripts use on the device (channels_last). The last column is the largest
change of SROCC, KROCC or PLCC of any head from the first setting, the paper's evaluation.
"""

from __future__ import annotations

import torch

from benchmarks import common
from benchmarks.bench_train_step import Setting
from IQAdataset import IQADataset, evaluation_loader
from IQAmodel import IQAModel
from linearityiqa.acceleration import choose_precision, cudnn_mode, uses_channels_last
from linearityiqa.data.dataset_registry import ALL_FOR_TESTING
from linearityiqa.data.image_store import ImageLoading, available_cores
from linearityiqa.records.checkpoint import load_checkpoint, load_model_state
from linearityiqa.training.evaluation import Evaluation

COMPARED = [f"{name}{head}" for head in ("", "1", "2") for name in ("SROCC", "KROCC", "PLCC")]
OPTIONS = {
    "--arch": ("resnext101_32x8d", "backbone"),
    "--checkpoint": (None, "a trained checkpoint of --arch to evaluate (default: random weights)"),
    "--images": (1024, "generated images (1024x768 JPEGs)"),
    "--height": (498, "height images are resized to"),
    "--width": (664, "width images are resized to"),
    "--batch-size": (32, "batch size of the batched settings"),
    "--opt-levels": (["O0", "O1", "bf16"], "precisions of the batched settings (on a CPU all run in float32)"),
    "--num-workers": (min(8, available_cores()), "loader processes"),
    **common.WORK_DIR,
    **common.DEVICE,
}


def settings(opt_levels: list[str], batch_size: int, device: torch.device) -> list[Setting]:
    """The paper's evaluation; then the last precision asked for one image at a time, which tells
    the gain of batching from that of the precision; then each precision batched. cuDNN picks its
    kernels, as test_dataset.py evaluates."""
    channels_last = uses_channels_last(device)
    layout = "channels_last" if channels_last else "contiguous"
    chosen = [Setting("batch 1, float32, contiguous (the paper)", deterministic=False, batch_size=1)]
    for size, level in [(1, opt_levels[-1])] + [(batch_size, level) for level in opt_levels]:
        label = f"batch {size}, {choose_precision(level, device).name}, {layout}"
        chosen.append(Setting(label, level, deterministic=False, channels_last=channels_last, batch_size=size))
    return list({setting.label: setting for setting in chosen}.values())  # on a CPU all levels are float32


def evaluation_rate(setting: Setting, model: IQAModel, loader, device: torch.device) -> tuple[float, dict, str]:
    """(images/s, metrics, peak GPU memory) of testing `model` on `loader` in one setting, over the second
    of two passes (the first decodes into the cache, starts the workers and lets cuDNN pick its kernels)."""
    channels_last, precision = setting.channels_last, choose_precision(setting.opt_level, device)
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    evaluation = Evaluation(model, status="test", device=device, precision=precision, channels_last=channels_last)
    with cudnn_mode(deterministic=setting.deterministic):
        evaluation.run(loader)
        common.reset_peak_memory(device)
        results, seconds = common.timed(lambda: evaluation.run(loader), device)
    return len(loader.dataset) / seconds, results, common.peak_memory(device)


def main(argv: list[str] | None = None) -> None:
    args = common.options_parser(__doc__, OPTIONS).parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = IQAModel(arch=args.arch, pretrained=False)
    if args.checkpoint:
        load_model_state(model, load_checkpoint(args.checkpoint), args.checkpoint)
    model.to(device).eval()
    with common.work_folder(args.work_dir, "bench_eval_") as work_dir:
        loading = ImageLoading(resize_hw=(args.height, args.width), cache_dir=work_dir / "cache", verbose=False)
        source = common.rated_source(work_dir, count=args.images)
        images = IQADataset(source, status="test", split=ALL_FOR_TESTING, loading=loading)
        print(
            f"{common.machine()}\nevaluation of {len(images)} images at {args.height}x{args.width}, {args.arch} "
            f"({'trained: ' + args.checkpoint if args.checkpoint else 'random weights'}), "
            f"{args.num_workers} loader workers\n"
        )
        row = common.table("setting", "images/s", "vs first", "peak memory", "largest metric change")
        first = None
        for setting in settings(args.opt_levels, args.batch_size, device):
            loader = evaluation_loader(images, batch_size=setting.batch_size, num_workers=args.num_workers)
            speed, results, memory = evaluation_rate(setting, model, loader, device)
            first = first or (speed, results)
            change = max(abs(float(results[name]) - float(first[1][name])) for name in COMPARED)
            row(setting.label, f"{speed:.1f}", f"{speed / first[0]:.2f}x", memory, f"{change:.1e}")
    print(f"\nfirst setting: SROCC {first[1]['SROCC']:.4f}, PLCC {first[1]['PLCC']:.4f}")


if __name__ == "__main__":
    main()
