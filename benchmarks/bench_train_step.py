"""Training step throughput on synthetic batches: the model, the loss and the optimizer alone.

    python -m benchmarks.bench_train_step                      # GPU: resnext101_32x8d, batch 8, 498x664
    python -m benchmarks.bench_train_step --arch resnet18 --height 96 --width 128 --steps 5   # CPU, seconds

Each setting runs main.create_trainer on a fresh model and one uint8 batch already on the device,
so the input pipeline plays no part (bench_epoch times it). The first setting, float32 with
deterministic cuDNN, is the paper's code without apex; every ratio is against it, in the same run.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import torch
from ignite.engine import Engine

from benchmarks.common import DEVICE, machine, options_parser, peak_memory, reset_peak_memory, table, timed
from IQAloss import IQALoss
from IQAmodel import IQAModel
from linearityiqa.acceleration import choose_precision, compile_model, cudnn_mode, set_memory_format
from main import create_optimizer, create_trainer


@dataclass(frozen=True)
class Setting:
    """One way to run the step; `batch_size` None takes --batch-size."""

    label: str
    opt_level: str = "O0"
    deterministic: bool = True
    channels_last: bool = False
    compile_mode: str | None = None
    batch_size: int | None = None


RN, CL = dict(deterministic=False), dict(channels_last=True)  # --randomness, channels_last
SETTINGS = {
    "fp32": Setting("float32, deterministic cuDNN (the paper without apex)"),
    "fp32-rn": Setting("float32, cuDNN benchmark (--randomness)", **RN),
    "fp32-cl": Setting("float32, channels_last", **CL),
    "o1": Setting("float16 autocast (O1)", "O1"),
    "o1-cl": Setting("O1, channels_last (main.py default)", "O1", **CL),
    "o1-cl-rn": Setting("O1, channels_last, --randomness", "O1", **CL, **RN),
    "bf16-cl-rn": Setting("bf16, channels_last, --randomness", "bf16", **CL, **RN),
    "o1-cl-compile": Setting("O1, channels_last, --compile", "O1", **CL, compile_mode="default"),
    "o1-cl-rn-compile": Setting("O1, channels_last, --randomness, --compile", "O1", **CL, **RN, compile_mode="default"),
    "o1-cl-rn-graphs": Setting(
        "O1, channels_last, --randomness, --compile reduce-overhead (CUDA graphs)",
        "O1",
        **CL,
        **RN,
        compile_mode="reduce-overhead",
    ),
    "o1-cl-rn-bs32": Setting("O1, channels_last, --randomness, batch 32", "O1", **CL, **RN, batch_size=32),
    "fp32-compile": Setting("float32, --compile", compile_mode="default"),
}
GPU_DEFAULT = "fp32 fp32-rn o1 o1-cl o1-cl-rn bf16-cl-rn o1-cl-rn-compile o1-cl-rn-graphs o1-cl-rn-bs32".split()
CPU_DEFAULT = ["fp32", "fp32-cl"]
OPTIONS = {
    "--arch": ("resnext101_32x8d", "backbone"),
    "--batch-size": (8, "images per step"),
    "--height": (498, "image height"),
    "--width": (664, "image width"),
    "--warmup": (5, "untimed steps first (compilation, cuDNN search)"),
    "--steps": (20, "timed steps"),
    **DEVICE,
}


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
    setting: Setting,
    *,
    arch: str,
    batch_size: int,
    height: int,
    width: int,
    warmup: int,
    steps: int,
    device: torch.device,
) -> tuple[float, str]:
    """(images/s, peak GPU memory) of the trainer in one setting on one batch already on the device,
    as a data loader gives it; the setting's batch size, if it has one, wins."""
    trainer = build_trainer(setting, arch=arch, device=device)
    batch_size = setting.batch_size or batch_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, height, width), dtype=torch.uint8, generator=generator)
    mos = torch.rand(batch_size, generator=generator) * 100
    batch = images.to(device), (mos.to(device), torch.ones(batch_size, device=device))
    reset_peak_memory(device)
    with cudnn_mode(deterministic=setting.deterministic):
        trainer.run([batch] * warmup, max_epochs=1)
        _, seconds = timed(lambda: trainer.run([batch] * steps, max_epochs=1), device)
    return batch_size * steps / seconds, peak_memory(device)


def main(argv: list[str] | None = None) -> None:
    parser = options_parser(__doc__, OPTIONS)
    defaults = f"{' '.join(GPU_DEFAULT)} on a GPU, {' '.join(CPU_DEFAULT)} on a CPU"
    parser.add_argument(
        "--settings", nargs="+", choices=sorted(SETTINGS), help=f"settings to run (default: {defaults})"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cpu_note = "; on a CPU every opt level runs in float32" if device.type == "cpu" else ""
    print(
        f"{machine()}\ntraining step, {args.arch}, {args.height}x{args.width}, norm-in-norm loss, Adam; "
        f"{args.warmup} warm-up and {args.steps} timed steps per setting{cpu_note}\n"
    )
    sizes = dict(arch=args.arch, batch_size=args.batch_size, height=args.height, width=args.width)
    row = table("setting", "batch", "images/s", "vs first", "peak memory")
    baseline = None
    for name in args.settings or (GPU_DEFAULT if device.type == "cuda" else CPU_DEFAULT):
        setting = SETTINGS[name]
        speed, memory = step_throughput(setting, **sizes, warmup=args.warmup, steps=args.steps, device=device)
        baseline = baseline or speed
        row(setting.label, setting.batch_size or args.batch_size, f"{speed:.1f}", f"{speed / baseline:.2f}x", memory)
        torch._dynamo.reset()  # a compiled setting's graphs hold memory and would be reused
        gc.collect()


if __name__ == "__main__":
    main()
