"""The model test_demo.py scores with: a checkpoint in PyTorch, or an ONNX file in onnxruntime.

`ModelFile` says which file and how to load it, and is all a process needs to load the model
itself (it pickles: each of Ray's workers loads its own, ray_scoring.py). `open_model` loads it
as a `Model`: the backend that scores batches, how images are sized for it, its batch size and
the scale of its scores. PyTorch is imported only for a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS, ImageSizing
from linearityiqa.image_scoring import Backend
from linearityiqa.options import MODEL_SETTINGS
from linearityiqa.records.scale import TrainingScale

CHECKPOINT, ONNX = "checkpoint", "ONNX model"
# The options that build a checkpoint's model and size its images.
MODEL_OPTIONS = (*MODEL_SETTINGS, "resize", "resize_size_h", "resize_size_w")


@dataclass(frozen=True)
class ModelFile:
    """A model file and the options that load it.

    Args:
        kind: CHECKPOINT or ONNX.
        path: the file.
        device: cpu, cuda or None (cuda if available); a checkpoint's only.
        opt_level: O0, O1 or bf16; a checkpoint's only.
        requested: the model settings asked for (arch, pool, use_bn_end, P6, P7) and those that size
            images (resize, resize_size_h, resize_size_w); a checkpoint's only.
        defaults: those options' defaults, which tell an explicit value from a default one.
        eval_batch_size: images per batch (None: the device's default).
        max_pixels: the largest image decoded.
        threads: CPU threads of the model (None: PyTorch's or onnxruntime's own choice).
    """

    kind: str
    path: str
    device: str | None = None
    opt_level: str = "O0"
    requested: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    eval_batch_size: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int | None = None

    def on(self, *, device: str | None = None, threads: int | None = None) -> ModelFile:
        """The same model on another device or number of threads (a worker's share)."""
        return replace(self, device=device or self.device, threads=threads or self.threads)

    @property
    def precision(self) -> str:
        """What decides the numbers it computes in, as --resume compares it."""
        return "float32 (onnxruntime)" if self.kind == ONNX else f"--opt_level {self.opt_level}"


@dataclass(frozen=True)
class Model:
    """A loaded model: what scores batches, how images are sized for it, images per batch, the
    scale of its scores, and a note for the user (a size the authors' weights were not trained at)."""

    backend: Backend
    sizing: ImageSizing
    batch_size: int
    scale: TrainingScale | None
    note: str | None = None


def open_model(spec: ModelFile) -> Model:
    """Load the model `spec` names."""
    return _onnx_model(spec) if spec.kind == ONNX else _torch_model(spec)


def _torch_model(spec: ModelFile) -> Model:
    import torch

    from linearityiqa.acceleration import evaluation_batch_size, resolve_device
    from linearityiqa.scoring import TorchBackend, image_sizing, load_scorer, resize_note

    if spec.threads:
        torch.set_num_threads(spec.threads)
    scorer = load_scorer(
        spec.path,
        requested={name: spec.requested[name] for name in MODEL_SETTINGS},
        defaults=spec.defaults,
        device=resolve_device(spec.device),
        opt_level=spec.opt_level,
    )
    sizing = image_sizing(
        scorer.recorded,
        resize=spec.requested["resize"],
        resize_size_h=spec.requested["resize_size_h"],
        resize_size_w=spec.requested["resize_size_w"],
        defaults=spec.defaults,
        max_pixels=spec.max_pixels,
    )
    return Model(
        TorchBackend(scorer),
        sizing,
        evaluation_batch_size(spec.eval_batch_size, scorer.device),
        scorer.scale,
        resize_note(scorer, sizing, spec.path),
    )


def _onnx_model(spec: ModelFile) -> Model:
    from linearityiqa.onnx_scoring import load_onnx

    backend = load_onnx(spec.path, threads=spec.threads)
    # one image at a time by default, as on PyTorch's CPU path, where it measured fastest
    return Model(backend, backend.sizing(), spec.eval_batch_size or 1, backend.scale())
