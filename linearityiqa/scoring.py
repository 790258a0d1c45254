"""Score images with a trained checkpoint in PyTorch: the library behind test_demo.py.

A score is the fused head's output mapped onto the training data's scale with the
checkpoint's first linear mapping: k[0] * y + b[0]. `load_scorer` builds the model a checkpoint
was trained as; `image_scoring.score_files(TorchBackend(scorer), ...)` scores files with it, decoding
them as the data sets do, batches images of one size and keeps the input order. Images go to
the device as uint8, to be normalized there (acceleration.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from IQAmodel import IQAModel
from linearityiqa.acceleration import (
    Precision,
    choose_precision,
    forward_fn,
    out_of_memory,
    prepare_images,
    release_cached_memory,
    set_memory_format,
    uses_channels_last,
)
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS, ImageSizing
from linearityiqa.data.image_transforms import checked_resize_hw
from linearityiqa.errors import BadFileError, ConfigError
from linearityiqa.records.checkpoint import linear_mapping, load_checkpoint, load_model_state, model_settings


@dataclass(frozen=True)
class Scorer:
    """A trained model in eval mode on its device, with the mapping of its fused head.

    Args:
        model: the IQAModel with the checkpoint's weights.
        k: slopes of the three heads' linear mappings, the fused head's first.
        b: intercepts of the three mappings.
        device: where the model runs.
        recorded: the settings the checkpoint records ({} for the authors' files).
        precision: the autocast the model runs under.
        channels_last: whether the model (and so its input) is in channels_last.
    """

    model: torch.nn.Module
    k: list[float]
    b: list[float]
    device: torch.device
    recorded: Mapping[str, Any]
    precision: Precision
    channels_last: bool

    def head_outputs(self, images: torch.Tensor) -> list[list[float]]:
        """[pq6, pq7, pq], the three heads' outputs before any mapping, of each image of an
        N x 3 x H x W batch (uint8, or float normalized already)."""
        with torch.inference_mode():
            batch = prepare_images(images, self.device, channels_last=self.channels_last)
            outputs = forward_fn(self.precision, self.device)(self.model, batch)
        return torch.cat([output.float().reshape(-1, 1) for output in outputs], dim=1).cpu().tolist()

    def fused_predictions(self, images: torch.Tensor) -> list[float]:
        """The fused head's outputs (before the mapping) for an N x 3 x H x W uint8 batch."""
        return [row[2] for row in self.head_outputs(images)]


def load_scorer(
    trained_model_file: str,
    *,
    requested: Mapping[str, Any],
    defaults: Mapping[str, Any],
    device: torch.device,
    opt_level: str = "O0",
) -> Scorer:
    """Build the model a checkpoint was trained as and load its weights.

    Args:
        trained_model_file: the checkpoint (this project's or the authors' layout).
        requested: the model settings asked for (arch, pool, use_bn_end, P6, P7).
        defaults: those settings' defaults; a requested value that differs from its default
            is explicit and must agree with a setting the checkpoint records.
        device: where the model runs.
        opt_level: O0 (float32), O1 (float16 autocast) or bf16 (bfloat16 autocast); CUDA only.
    """
    # Mapped, the weights are copied once, into the model, instead of first into memory of their
    # own (0.2 s of resnext101_32x8d's 350 MB on a CPU); the mapping ends with this function.
    checkpoint = load_checkpoint(trained_model_file, map_location="cpu", mmap=True)
    settings = model_settings(checkpoint, requested, defaults, trained_model_file)
    k, b = linear_mapping(checkpoint, trained_model_file)
    # Built on the meta device, the model skips a random initialisation that the checkpoint
    # overwrites anyway (0.6 s of resnext101_32x8d on a CPU); to_empty then allocates it. Every
    # tensor of IQAModel is in its state_dict, so the strict load below fills them all.
    try:
        with torch.device("meta"):
            model = IQAModel(**settings, pretrained=False)
    except ConfigError as error:
        recorded = {name: settings[name] for name in checkpoint.get("settings") or {} if name in settings}
        if not recorded:
            raise
        raise BadFileError(
            f"checkpoint {trained_model_file} records settings this version cannot build, {recorded} ({error}); "
            f"it was not saved by main.py: use a checkpoint main.py saved"
        ) from None
    model.to_empty(device=device)
    load_model_state(model, checkpoint, trained_model_file, settings)
    channels_last = uses_channels_last(device)
    return Scorer(
        model=set_memory_format(model.eval(), channels_last=channels_last),
        k=k,
        b=b,
        device=device,
        recorded=dict(checkpoint.get("settings") or {}),
        precision=choose_precision(opt_level, device),
        channels_last=channels_last,
    )


def image_sizing(
    recorded: Mapping[str, Any],
    *,
    resize: bool,
    resize_size_h: int,
    resize_size_w: int,
    defaults: Mapping[str, Any],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageSizing:
    """How to size images: as the checkpoint records, unless an option says otherwise.

    Args:
        recorded: the checkpoint's settings; resize, resize_size_h and resize_size_w are used
            when present and the matching option is left at its default.
        resize: --resize.
        resize_size_h: --resize_size_h.
        resize_size_w: --resize_size_w.
        defaults: the three options' defaults.
        max_pixels: the most pixels a resized image may have (--max_pixels).
    """
    asked = {"resize": resize, "resize_size_h": resize_size_h, "resize_size_w": resize_size_w}
    # An option left at its default defers to the checkpoint; an option that was given wins.
    chosen = {
        name: recorded[name] if name in recorded and value == defaults[name] else value for name, value in asked.items()
    }
    if not chosen["resize"]:
        return ImageSizing()
    height, width = int(chosen["resize_size_h"]), int(chosen["resize_size_w"])
    return ImageSizing(resize_hw=checked_resize_hw(height, width, max_pixels=max_pixels))


@dataclass(frozen=True)
class TorchBackend:
    """The PyTorch model as image_scoring's backend: batches of decoded images to mapped scores."""

    scorer: Scorer

    @property
    def where(self) -> str:
        return self.scorer.device.type

    def scores(self, images: np.ndarray) -> list[float]:
        batch = torch.from_numpy(images).permute(0, 3, 1, 2)  # N x H x W x 3 to N x 3 x H x W, no copy
        k, b = self.scorer.k[0], self.scorer.b[0]
        return [k * y + b for y in self.scorer.fused_predictions(batch)]

    def too_large(self, error: Exception) -> bool:
        if not out_of_memory(error):
            return False
        release_cached_memory(self.scorer.device)
        return True
