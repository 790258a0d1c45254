"""The model test_demo.py scores with, a checkpoint in PyTorch or an ONNX file in onnxruntime:
`ModelFile` pickles, so that each of Ray's workers loads its own. PyTorch is imported only for a
checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS
from linearityiqa.image_scoring import Backend
from linearityiqa.options import MODEL_SETTINGS

CHECKPOINT, ONNX = "checkpoint", "ONNX model"
# The options that build a checkpoint's model and size its images (scoring.SIZING_OPTIONS).
MODEL_OPTIONS = (*MODEL_SETTINGS, "resize", "resize_size_h", "resize_size_w")


@dataclass(frozen=True)
class ModelFile:
    """A model file and the options that load it. A checkpoint's only: `device` (cpu, cuda, or
    None for cuda where there is one), `opt_level` (O0, O1, bf16), the MODEL_OPTIONS `requested`
    and their `defaults` (an explicit value differs from its default). `eval_batch_size` None is
    the device's default; `threads` None PyTorch's or onnxruntime's own choice.
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


def open_model(spec: ModelFile) -> Backend:
    """The model `spec` names, loaded."""
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
