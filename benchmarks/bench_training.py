"""main.py's pipeline timed piece by piece: the data layer, the training step, whole epochs, evaluation.

    python -m benchmarks.bench_training step                  # GPU: resnext101_32x8d, batch 8, 498x664
    python -m benchmarks.bench_training step --arch resnet18 --height 96 --width 128 --steps 5   # CPU, seconds
    python -m benchmarks.bench_training epoch --arch resnet18 --images 64 --height 96 --width 128 --crop 80 --steps 3
    python -m benchmarks.bench_training eval --arch resnet18 --images 32 --height 96 --width 128
    python -m benchmarks.bench_training loading --count 40 --width 256 --height 192

`step`, `epoch` and `eval` run their settings side by side in one run, on models of random weights;
`epoch`, `eval` and `loading` read a generated data set (common.rated_source) through the image cache.
"""

from __future__ import annotations

import argparse
import gc
import shutil
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import PIL
import PIL.features
import torch
from ignite.engine import Engine
from torch.utils.data import DataLoader

from benchmarks import common
from IQAdataset import Batching, IQADataset, evaluation_loader, get_data_loaders
from IQAloss import IQALoss
from IQAmodel import IQAModel
from linearityiqa import load
from linearityiqa.acceleration import (
    choose_precision,
    compile_model,
    cudnn_mode,
    evaluation_batch_size,
    set_memory_format,
    uses_channels_last,
)
from linearityiqa.data.dataset_registry import ALL_FOR_TESTING, DataSource
from linearityiqa.data.image_store import ImageLoading, available_cores
from linearityiqa.data.image_transforms import TrainAugmentation
from linearityiqa.training.evaluation import Evaluation
from main import create_optimizer, create_trainer


@dataclass(frozen=True)
class Setting:
    """One way to run the model; `batch_size` None takes --batch-size."""

    label: str
    opt_level: str = "O0"
    deterministic: bool = True
    channels_last: bool = False
    compile_mode: str | None = None
    batch_size: int | None = None


RN, CL = dict(deterministic=False), dict(channels_last=True)  # --randomness, channels_last
COMPILED, GRAPHS = dict(compile_mode="default"), dict(compile_mode="reduce-overhead")  # --compile [reduce-overhead]
SETTINGS = {
    "fp32": Setting("float32, deterministic cuDNN (the paper without apex)"),
    "fp32-rn": Setting("float32, cuDNN benchmark (--randomness)", **RN),
    "fp32-cl": Setting("float32, channels_last", **CL),
    "o1": Setting("float16 autocast (O1)", "O1"),
    "o1-cl": Setting("O1, channels_last (main.py default)", "O1", **CL),
    "o1-cl-rn": Setting("O1, channels_last, --randomness", "O1", **CL, **RN),
    "bf16-cl-rn": Setting("bf16, channels_last, --randomness", "bf16", **CL, **RN),
    "o1-cl-compile": Setting("O1, channels_last, --compile", "O1", **CL, **COMPILED),
    "o1-cl-rn-compile": Setting("O1, channels_last, --randomness, --compile", "O1", **CL, **RN, **COMPILED),
    "o1-cl-rn-graphs": Setting(
        "O1, channels_last, --randomness, --compile reduce-overhead (CUDA graphs)", "O1", **CL, **RN, **GRAPHS
    ),
    "o1-cl-rn-bs32": Setting("O1, channels_last, --randomness, batch 32", "O1", **CL, **RN, batch_size=32),
    "fp32-compile": Setting("float32, --compile", **COMPILED),
}
GPU_DEFAULT = "fp32 fp32-rn o1 o1-cl o1-cl-rn bf16-cl-rn o1-cl-rn-compile o1-cl-rn-graphs o1-cl-rn-bs32".split()
CPU_DEFAULT = ["fp32", "fp32-cl"]
DEFAULT_SETTINGS = f"{' '.join(GPU_DEFAULT)} on a GPU, {' '.join(CPU_DEFAULT)} on a CPU"
CPU_NOTE = "; on a CPU every opt level runs in float32"
# The paper's KonIQ-10k run: 30 epochs of 7,058 training and 1,000 validation images; then the
# mapping is fitted on the training images and the 2,015 test images are tested. The authors'
# run took about 23 hours (with apex O1).
PAPER_EPOCHS, PAPER_TRAIN, PAPER_VAL, PAPER_TEST = 30, 7058, 1000, 2015
# The paper's sizes: --resize to 498x664, and the 498x498 crop of --augment.
RESIZED_HW = (498, 664)
CROP = TrainAugmentation(angle=2, hflip_p=0.5, crop_h=498, crop_w=498)
COMPARED = [f"{name}{head}" for head in ("", "1", "2") for name in ("SROCC", "KROCC", "PLCC")]

MODEL = {
    "--arch": ("resnext101_32x8d", "backbone"),
    "--height": (498, "height of the model's input (images are resized to it)"),
    "--width": (664, "width of the model's input (images are resized to it)"),
    "--device": ("cuda" if torch.cuda.is_available() else "cpu", "device", ("cpu", "cuda")),
}
WORK_DIR = {"--work-dir": (None, "folder for the images and their cache, kept for later runs (default: temporary)")}
DATA = {
    "--images": (1024, "generated 1024x768 JPEGs (70% for training)"),
    "--num-workers": (min(8, available_cores()), "loader processes"),
    **WORK_DIR,
}
STEPS = {"--warmup": (5, "untimed steps first (compilation, cuDNN search)"), "--steps": (20, "timed steps")}


def build_trainer(setting: Setting, *, arch: str, device: torch.device) -> Engine:
    """main.py's trainer of a fresh model (random weights), in the setting's precision and layout; run
    it in the setting's cuDNN mode."""
    torch.manual_seed(0)
    model = IQAModel(arch=arch, pretrained=False).to(device)
    set_memory_format(model, channels_last=setting.channels_last)
    return create_trainer(
        compile_model(model, setting.compile_mode),
        create_optimizer(model, lr=1e-4, ft_lr_ratio=0.1, weight_decay=0),
        IQALoss(),
        device=device,
        precision=choose_precision(setting.opt_level, device),
        accumulation_steps=1,
        channels_last=setting.channels_last,
    )


def step_throughput(
    setting: Setting, *, height: int, width: int, args: argparse.Namespace, device: torch.device
) -> tuple[float, str]:
    """(images/s, peak GPU memory) of the trainer in one setting on one batch already on the device."""
    trainer = build_trainer(setting, arch=args.arch, device=device)
    batch_size = setting.batch_size or args.batch_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, height, width), dtype=torch.uint8, generator=generator)
    mos = torch.rand(batch_size, generator=generator) * 100
    batch = images.to(device), (mos.to(device), torch.ones(batch_size, device=device))
    common.reset_peak_memory(device)
    with cudnn_mode(deterministic=setting.deterministic):
        trainer.run([batch] * args.warmup, max_epochs=1)
        _, seconds = common.timed(lambda: trainer.run([batch] * args.steps, max_epochs=1), device)
    return batch_size * args.steps / seconds, common.peak_memory(device)


def steps(args: argparse.Namespace) -> None:
    """Training step throughput on synthetic batches: the model, the loss and the optimizer alone.

    Ratios are against the first setting, in the same run (by default the paper's code without apex).
    """
    device = torch.device(args.device)
    print(
        f"training step, {args.arch}, {args.height}x{args.width}, norm-in-norm loss, Adam; "
        f"{args.warmup} warm-up and {args.steps} timed steps per setting{CPU_NOTE if device.type == 'cpu' else ''}\n"
    )
    row = common.table("setting", "batch", "images/s", "vs first", "peak memory")
    baseline = None
    for name in args.settings or (GPU_DEFAULT if device.type == "cuda" else CPU_DEFAULT):
        setting = SETTINGS[name]
        speed, memory = step_throughput(setting, height=args.height, width=args.width, args=args, device=device)
        baseline = baseline or speed
        row(setting.label, setting.batch_size or args.batch_size, f"{speed:.1f}", f"{speed / baseline:.2f}x", memory)
        torch._dynamo.reset()  # a compiled setting's graphs hold memory and would be reused
        gc.collect()


def epoch_throughput(setting: Setting, *, arch: str, train_loader: DataLoader, device: torch.device) -> float:
    """Training images per second over the second of two epochs of main.py's training loader (the first
    decodes into the cache and starts the workers)."""
    trainer = build_trainer(setting, arch=arch, device=device)
    with cudnn_mode(deterministic=setting.deterministic):
        trainer.run(train_loader, max_epochs=1)
        # ignite goes on from the epoch it stopped at: this run is the second epoch alone
        _, seconds = common.timed(lambda: trainer.run(train_loader, max_epochs=2), device)
    return len(train_loader.dataset) / seconds


def epochs(args: argparse.Namespace) -> None:
    """Whole training epochs, data included, against what the training step alone allows.

    An input pipeline that keeps up gives an epoch throughput close to the step's at the loader's size.
    """
    device = torch.device(args.device)
    setting = SETTINGS[args.setting]
    with common.work_folder(args.work_dir, "bench_epoch_") as work_dir:
        source = common.rated_source(work_dir, count=args.images)
        loading = ImageLoading(resize_hw=(args.height, args.width), cache_dir=work_dir / "cache", verbose=False)
        print(
            f"training epochs, {args.arch}, {setting.label}, batch {args.batch_size}, {args.num_workers} loader "
            f"workers; images resized to {args.height}x{args.width}{CPU_NOTE if device.type == 'cpu' else ''}\n"
        )
        row = common.table("input", "step only (images/s)", "whole epoch (images/s)", "epoch / step")
        # the evaluation batches as main.py validates: -ebs's default
        eval_batch_size = evaluation_batch_size(None, device)
        batching = Batching(batch_size=args.batch_size, eval_batch_size=eval_batch_size, num_workers=args.num_workers)
        crops = TrainAugmentation(angle=2, hflip_p=0.5, crop_h=args.crop, crop_w=args.crop)
        rates = []
        for augmentation in (None, crops):
            height, width = (args.crop, args.crop) if augmentation else (args.height, args.width)
            step, _ = step_throughput(setting, height=height, width=width, args=args, device=device)
            loaders = get_data_loaders(source, loading=loading, augmentation=augmentation, batching=batching)
            rates.append(epoch_throughput(setting, arch=args.arch, train_loader=loaders[0], device=device))
            label = f"--augment, {height}x{width} crops" if augmentation else f"whole {height}x{width} images"
            row(label, f"{step:.1f}", f"{rates[-1]:.1f}", f"{rates[-1] / step:.2f}")
        torch.manual_seed(0)
        model = IQAModel(arch=args.arch, pretrained=False).to(device)
        evaluated, _, _ = evaluation_rate(setting, model, loaders[2], device)  # the test loader: whole images
    # the paper's run at these rates: it trained on whole resized images
    epoch_s = PAPER_TRAIN / rates[0] + PAPER_VAL / evaluated
    hours = (PAPER_EPOCHS * epoch_s + (PAPER_TRAIN + PAPER_TEST) / evaluated) / 3600
    print(
        f"\nevaluation as main.py validates: {evaluated:.1f} images/s. The paper's KonIQ-10k run "
        f"({PAPER_EPOCHS} epochs of {PAPER_TRAIN:,} training and {PAPER_VAL:,} validation images, then "
        f"{PAPER_TRAIN:,} to fit the mapping and {PAPER_TEST:,} to test) at these rates: "
        f"{hours:.2f} h (the authors: about 23 h)"
    )


def evaluation_settings(opt_levels: list[str], batch_size: int, device: torch.device) -> list[Setting]:
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


def evaluations(args: argparse.Namespace) -> None:
    """Evaluation throughput, data included, and how far batched mixed precision moves the metrics.

    The model is tested on all the images as test_dataset.py does, in each setting. The last column is
    the largest change of SROCC, KROCC or PLCC of any head from the first setting, the paper's evaluation.
    """
    device = torch.device(args.device)
    torch.manual_seed(0)  # the random weights without --checkpoint
    model = load(args.checkpoint, arch=args.arch, device=device).model
    with common.work_folder(args.work_dir, "bench_eval_") as work_dir:
        loading = ImageLoading(resize_hw=(args.height, args.width), cache_dir=work_dir / "cache", verbose=False)
        source = common.rated_source(work_dir, count=args.images)
        images = IQADataset(source, status="test", split=ALL_FOR_TESTING, loading=loading)
        print(
            f"evaluation of {len(images)} images at {args.height}x{args.width}, {args.arch} "
            f"({'trained: ' + args.checkpoint if args.checkpoint else 'random weights'}), "
            f"{args.num_workers} loader workers\n"
        )
        row = common.table("setting", "images/s", "vs first", "peak memory", "largest metric change")
        first = None
        for setting in evaluation_settings(args.opt_levels, args.batch_size, device):
            loader = evaluation_loader(images, batch_size=setting.batch_size, num_workers=args.num_workers)
            speed, results, memory = evaluation_rate(setting, model, loader, device)
            first = first or (speed, results)
            change = max(abs(float(results[name]) - float(first[1][name])) for name in COMPARED)
            row(setting.label, f"{speed:.1f}", f"{speed / first[0]:.2f}x", memory, f"{change:.1e}")
    print(f"\nfirst setting: SROCC {first[1]['SROCC']:.4f}, PLCC {first[1]['PLCC']:.4f}")


def time_loading(source: DataSource, cache_dir: Path, resize: bool, label: str) -> list[str]:
    """A row: the images, `label`, their cache's size, and seconds to build the data set with an empty
    cache, then with the cache in place, then to read all its pixels."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    loading = ImageLoading(resize_hw=RESIZED_HW if resize else None, cache_dir=cache_dir, verbose=False)
    build = partial(IQADataset, source, status="test", split=ALL_FOR_TESTING, loading=loading)
    first, first_s = common.timed(build)
    cached, cached_s = common.timed(build)
    # Reading one byte per page pulls the whole cache into memory (from the OS page cache here).
    _, touch_s = common.timed(lambda: int(cached.image_store.pixels[::4096].sum()))
    images, gib = len(first.image_store), first.image_store.nbytes / 2**30
    first_run = f"{first_s:.1f} s ({images / first_s:.0f} img/s)"
    return [f"{images:.0f}", label, f"{gib:.2f} GiB", first_run, f"{cached_s:.2f} s", f"{touch_s:.2f} s"]


def time_items(source: DataSource, cache_dir: Path, augment: bool, items: int) -> float:
    """Milliseconds per training item at 498x664, with or without the 498x498 augmentation."""
    loading = ImageLoading(resize_hw=RESIZED_HW, cache_dir=cache_dir, verbose=False)
    dataset = IQADataset(source, status="train", loading=loading, augmentation=CROP if augment else None)
    order = np.random.default_rng(0).integers(0, len(dataset), size=items)
    # Each item is dropped at once (a deque of length 0), as a DataLoader drops it after collating:
    # keeping them all alive would time the allocation of fresh memory instead of the transform.
    _, seconds = common.timed(lambda: deque(map(dataset.__getitem__, order), maxlen=0))
    return 1000 * seconds / items


def loading(args: argparse.Namespace) -> None:
    """The data layer: decoding and caching generated KonIQ-10k-like JPEGs, and the per-item work."""
    with common.work_folder(args.work_dir, "bench_loading_") as work_dir:
        size = dict(count=args.count, width=args.width, height=args.height)
        source, seconds = common.timed(lambda: common.rated_source(work_dir, **size))
        print(f"{args.count} images of {args.width}x{args.height} ready in {seconds:.1f} s")
        print(f"Pillow {PIL.__version__} (libjpeg-turbo: {PIL.features.check_feature('libjpeg_turbo')})\n")
        row = common.table(
            "images", "stored as", "size", "first run (decode + cache)", "cached run", "+ read all pixels"
        )
        for resize, label in ((False, f"{args.height}x{args.width}"), (True, "498x664 (resize)")):
            row(*time_loading(source, work_dir / "cache", resize, label))
        torch.set_num_threads(1)  # as in a DataLoader worker
        plain = time_items(source, work_dir / "cache", augment=False, items=args.items)
        augmented = time_items(source, work_dir / "cache", augment=True, items=args.items)
    print(
        f"\nper training item, one thread: {plain:.2f} ms whole 498x664 image, "
        f"{augmented:.2f} ms with rotation, flip and 498x498 crop"
    )


STEP = {
    **MODEL,
    "--batch-size": (8, "images per step"),
    **STEPS,
    "--settings": (None, f"settings to run (default: {DEFAULT_SETTINGS})", sorted(SETTINGS)),
}
EPOCH = {
    **MODEL,
    **DATA,
    "--setting": ("o1-cl-rn", "trainer setting, as named in `step`", tuple(sorted(SETTINGS))),
    "--crop": (498, "side of the square crop of --augment"),
    "--batch-size": (8, "training batch size"),
    **STEPS,
}
EVAL = {
    **MODEL,
    **DATA,
    "--checkpoint": (None, "a trained checkpoint of --arch to evaluate (default: random weights)"),
    "--batch-size": (32, "batch size of the batched settings"),
    "--opt-levels": (["O0", "O1", "bf16"], "precisions of the batched settings (on a CPU all run in float32)"),
}
LOADING = {
    "--count": (2000, "number of generated images"),
    "--width": (1024, "image width"),
    "--height": (768, "image height"),
    "--items": (300, "items timed per transform"),
    **WORK_DIR,
}
COMMANDS = {"step": (steps, STEP), "epoch": (epochs, EPOCH), "eval": (evaluations, EVAL), "loading": (loading, LOADING)}


def main(argv: list[str] | None = None) -> None:
    args = common.command_parser(__doc__, COMMANDS).parse_args(argv)
    print(common.machine())
    args.measure(args)


if __name__ == "__main__":
    main()
