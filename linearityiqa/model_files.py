"""The model test_demo.py scores with: a checkpoint in PyTorch, or an ONNX file in onnxruntime.

`ModelFile` says which file and how to load it, and is all a process needs to load the model
itself (it pickles: each of Ray's workers loads its own, ray_scoring.py). `open_model` loads it:
scoring.QualityModel or onnx_scoring.OnnxModel, each image_scoring's `Backend`, with how images
are sized for it (`sizing`), its batch size, the scale of its scores and a note for the user.
PyTorch is imported only for a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS
from linearityiqa.image_scoring import Backend
from linearityiqa.options import MODEL_SETTINGS

CHECKPOINT, ONNX = "checkpoint", "ONNX model"
# The options that build a checkpoint's model and size its images (scoring.SIZING_OPTIONS).
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


def open_model(spec: ModelFile) -> Backend:
    """Load the model `spec` names."""
    if spec.kind == ONNX:
        from linearityiqa.onnx_scoring import load_onnx

        return load_onnx(spec.path, threads=spec.threads, batch_size=spec.eval_batch_size)
    import torch

    from linearityiqa.acceleration import evaluation_batch_size, resolve_device
    from linearityiqa.scoring import load_scorer

    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = resolve_device(spec.device)
    return load_scorer(
        spec.path,
        requested=spec.requested,
        defaults=spec.defaults,
        device=device,
        opt_level=spec.opt_level,
        max_pixels=spec.max_pixels,
        batch_size=evaluation_batch_size(spec.eval_batch_size, device),
    )
