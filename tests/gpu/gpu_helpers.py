"""What the GPU tests share: the precisions of a dry run, exact float32, a few training steps of
resnet18 on small batches through main.py's trainer, and test_demo.py's scores held to float32's."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from scipy import stats

import test_demo as demo_script
from IQAloss import IQALoss
from IQAmodel import IQAModel
from linearityiqa.acceleration import Precision, choose_precision, cudnn_mode, set_memory_format
from linearityiqa.errors import TrainingDiverged
from main import create_optimizer, create_trainer

HEIGHT, WIDTH = 96, 128
LR = 1e-3
# the model of the scripts' runs: resnet18 at 64x96, loaded in the main process
MODEL = ["--arch", "resnet18", "-rs", "-rs_h", "64", "-rs_w", "96", "--num_workers", "0"]


def precision_for(opt_level: str, device: torch.device) -> Precision:
    """choose_precision's answer on a GPU; in a dry run, the same autocast and loss scaler on the CPU."""
    if device.type == "cuda" or opt_level == "O0":
        return choose_precision(opt_level, device)
    if opt_level == "O1":
        return Precision("float16 autocast with loss scaling", torch.float16, torch.amp.GradScaler("cpu"))
    return Precision("bfloat16 autocast", torch.bfloat16)


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """float32 as the paper's GPUs computed it: no TF32 (PyTorch lets cuDNN's convolutions use
    it by default on Ampere and later, which rounds their inputs to 10 bits), and cuDNN's
    deterministic kernels, so that two runs of one path agree to the bit."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with cudnn_mode(deterministic=True):
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def batches(count: int, *, batch_size: int = 8, seed: int = 0, nan_at: int | None = None) -> list:
    """`count` batches of uint8 images and (MOS, std), as the loaders give them; MOS NaN in batch `nan_at`.

    Each image has a brightness and contrast of its own: on images of plain noise an untrained
    model predicts nearly the same for all, and the norm-in-norm loss, which divides by their
    spread, would magnify rounding into differences no precision could be held to.
    """
    generator = torch.Generator().manual_seed(seed)
    made = []
    for index in range(count):
        level = torch.rand(batch_size, 1, 1, 1, generator=generator) * 200
        contrast = torch.rand(batch_size, 1, 1, 1, generator=generator)
        noise = torch.rand(batch_size, 3, HEIGHT, WIDTH, generator=generator) * 255
        images = (level + contrast * (noise - level)).round().to(torch.uint8)
        mos = torch.rand(batch_size, generator=generator) * 100
        if index == nan_at:
            mos[1] = float("nan")
        made.append((images, (mos, torch.ones(batch_size))))
    return made


def fresh_model(device: torch.device, *, channels_last: bool = False, dtype: torch.dtype = torch.float32) -> IQAModel:
    """resnet18's IQAModel with the same random weights every time."""
    torch.manual_seed(0)
    model = IQAModel(arch="resnet18", pretrained=False).to(device, dtype)
    return set_memory_format(model, channels_last=channels_last)


@dataclass
class Trained:
    """What some steps left: each step's loss, the first step's gradient (flat, float64), the
    weights, the trainer's reports, and the divergence that stopped it, if one did."""

    losses: list[float] = field(default_factory=list)
    first_gradient: torch.Tensor | None = None
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    reports: list[str] = field(default_factory=list)
    stopped_by: TrainingDiverged | None = None


def train(
    model: torch.nn.Module,
    data: list,
    *,
    device: torch.device,
    precision: Precision,
    channels_last: bool = False,
    skip_nonfinite: bool = False,
    wrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda model: model,
) -> Trained:
    """One epoch over `data` with main.py's trainer (norm-in-norm loss, the paper's Adam groups);
    `wrap` turns the model into what the trainer runs (torch.compile)."""
    trained = Trained()
    optimizer = create_optimizer(model, lr=LR, ft_lr_ratio=0.1, weight_decay=0)
    trainer = create_trainer(
        wrap(model),
        optimizer,
        IQALoss(),
        device=device,
        precision=precision,
        accumulation_steps=1,
        channels_last=channels_last,
        skip_nonfinite=skip_nonfinite,
        report=trained.reports.append,
    )

    @trainer.on(Events.ITERATION_COMPLETED)
    def keep(engine):
        trained.losses.append(engine.state.output)
        if engine.state.iteration == 1:  # after the step: GradScaler has unscaled the gradients in place
            trained.first_gradient = flat_gradient(model)

    try:
        trainer.run(data, max_epochs=1)
    except TrainingDiverged as error:
        trained.stopped_by = error
    trained.weights = parameters(model)
    return trained


def flat_gradient(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.detach().flatten().double().cpu() for p in model.parameters() if p.grad is not None])


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().double().cpu().clone() for name, value in model.named_parameters()}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def updates(after: dict[str, torch.Tensor], before: dict[str, torch.Tensor]) -> torch.Tensor:
    """How far the steps moved every weight, flat."""
    return torch.cat([(after[name] - before[name]).flatten() for name in before])


def demo(argv: list[str], output: Path, *options: str) -> None:
    assert demo_script.main([*argv, *options, "-o", str(output)]) == 0


def read_demo(path: Path) -> dict[str, float]:
    """test_demo.py's scores by image."""
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert rows and not any(row["error"] for row in rows), path
    return {row["image"]: float(row["score"]) for row in rows}


def assert_close_predictions(reduced: np.ndarray, plain: np.ndarray) -> None:
    """float16 keeps 11 bits, bfloat16 8: predictions within a few parts in a thousand of their
    size, and in step with float32's."""
    noise = np.abs(reduced - plain).max()
    print(f"largest difference {noise:.3g}; size {np.abs(plain).max():.3g}, spread {plain.std():.3g}")
    assert noise < 1e-2 * np.abs(plain).max()
    assert stats.pearsonr(reduced, plain)[0] > 0.995
