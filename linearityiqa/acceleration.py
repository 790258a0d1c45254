"""Where and how fast the model runs: the device, autocast, channels_last, torch.compile, cuDNN's
kernel choice, and uint8 batches normalized on the device. Every script shares these pieces, so
that a score does not depend on the script that computed it; none changes what is computed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from linearityiqa.choices import OPT_LEVELS
from linearityiqa.data.image_transforms import normalize
from linearityiqa.errors import ConfigError


@dataclass
class Precision:
    """How the model runs (`name`, in messages): float32, or autocast to float16 (with a loss `scaler`) or bfloat16."""

    name: str
    autocast_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The block in which the model runs: under autocast on `device`, or as it is in float32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)


def resolve_device(name: str | None) -> torch.device:
    """The device named by --device; None picks CUDA when PyTorch sees a GPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for, but PyTorch sees no CUDA device: "
            "pass --device cpu or install a CUDA build of PyTorch"
        )
    return torch.device(name)


@contextlib.contextmanager
def cudnn_mode(*, deterministic: bool) -> Iterator[None]:
    """cuDNN's deterministic kernels while the block runs, as in the paper's code, or else its benchmark
    mode (the fastest kernels of each new shape, timed once); the previous mode after it."""
    backend = torch.backends.cudnn
    before = backend.deterministic, backend.benchmark
    backend.deterministic, backend.benchmark = deterministic, not deterministic
    try:
        yield
    finally:
        backend.deterministic, backend.benchmark = before


def choose_precision(opt_level: str, device: torch.device) -> Precision:
    """O0: float32; O1: float16 autocast with dynamic loss scaling (the paper's apex O1); bf16.
    Autocast pays only on CUDA; on the CPU every level runs in float32."""
    if opt_level not in OPT_LEVELS:
        raise ConfigError(f"unknown opt_level {opt_level!r}: use one of {', '.join(OPT_LEVELS)}")
    if device.type != "cuda" or opt_level == "O0":
        return Precision("float32")
    if opt_level == "O1":
        return Precision("float16 autocast with loss scaling", torch.float16, torch.amp.GradScaler("cuda"))
    return Precision("bfloat16 autocast", torch.bfloat16)


def uses_channels_last(device: torch.device) -> bool:
    """channels_last on both devices: on CUDA it spares cuDNN a layout change around every
    convolution in reduced precision; on a CPU oneDNN's convolutions run faster in it too
    (measured: a resnet50 training step 1.4x, scoring at 498x664 1.1-1.2x; BENCHMARKS.md)."""
    return device.type in ("cpu", "cuda")


def evaluation_batch_size(requested: int | None, device: torch.device) -> int:
    """Images per forward pass in evaluation and scoring: `requested`, or by default 32 on a GPU
    and 1 on a CPU, where one at a time measured fastest (resnet50 at 498x664: 2.7 images/s,
    2.4 in pairs, 2.0 in batches of 32; at 249x332, 8.9 against 4.8 in batches of 32)."""
    if requested is not None:
        return requested
    return 32 if device.type == "cuda" else 1


def forward_fn(precision: Precision, device: torch.device) -> Callable[[nn.Module, torch.Tensor], Any]:
    """model(x) under the precision's autocast (IQAModel's heads run, and answer, in float32)."""

    def forward(model: nn.Module, x: torch.Tensor) -> Any:
        with precision.autocast(device):
            return model(x)

    return forward


def prepare_images(
    images: torch.Tensor, device: torch.device, *, channels_last: bool, non_blocking: bool = True
) -> torch.Tensor:
    """An N x 3 x H x W batch on `device`: uint8 images moved as they are and normalized there;
    floating-point ones taken as normalized already (e.g. tensors a user made)."""
    images = images.to(device, non_blocking=non_blocking)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return normalize(images) if images.dtype == torch.uint8 else images


def batch_preparation(channels_last: bool) -> Callable:
    """ignite's prepare_batch: (uint8 images, targets) to (normalized images, targets) on the device."""

    def prepare(
        batch: Sequence[Any], device: torch.device | None = None, non_blocking: bool = False
    ) -> tuple[torch.Tensor, Any]:
        images, targets = batch
        device = torch.device(device) if device is not None else images.device
        targets = tuple(target.to(device, non_blocking=non_blocking) for target in targets)
        return prepare_images(images, device, channels_last=channels_last, non_blocking=non_blocking), targets

    return prepare


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a failed allocation: CUDA's OutOfMemoryError, or the CPU allocator's
    RuntimeError (torch raises no subclass for it, only these words)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
    )


def set_memory_format(model: nn.Module, *, channels_last: bool) -> nn.Module:
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def compile_model(module: nn.Module, mode: str | None) -> nn.Module:
    """`module` compiled by torch.compile in `mode` (one of --compile's COMPILE_MODES), or as it is for None.
    It shares its parameters with `module`, whose state_dict (no `_orig_mod.` prefix) is the one to save."""
    if mode is None:
        return module
    return torch.compile(module, mode=None if mode == "default" else mode)
