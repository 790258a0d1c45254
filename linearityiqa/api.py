"""Score images from Python: a trained model behind one call, as test_demo.py scores them.

    import linearityiqa

    model = linearityiqa.load("checkpoints/p1q2.pth", arch="resnext101_32x8d", resize=True)
    model.score("data/1000.JPG")            # 10.43..., the line test_demo.py prints
    model.score(["a.jpg", "b.png"])         # one score per image
    model.score(pil_image)                  # a PIL image, or an H x W x 3 uint8 array
    model.score(batch)                      # an N x 3 x H x W uint8 tensor, sized already
    model.score("a.jpg", heads=True)        # Prediction(score, heads): the three raw outputs too

A score is mapped onto the scale of the training MOS (`model.scale`), not clipped, by
test_demo.py's own code: a score here equals test_demo.py's.
"""

from __future__ import annotations

import inspect
import os
import warnings

import torch

from linearityiqa.acceleration import choose_precision, resolve_device, set_memory_format, uses_channels_last
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS
from linearityiqa.options import MODEL_SETTINGS
from linearityiqa.paper import IQAmodel
from linearityiqa.scoring import Prediction, QualityModel, image_sizing, load_scorer

__all__ = ["Prediction", "QualityModel", "load"]

# The model's settings when neither the caller nor the checkpoint gives them: IQAModel's own defaults.
MODEL_DEFAULTS = {name: inspect.signature(IQAmodel.IQAModel).parameters[name].default for name in MODEL_SETTINGS}
# The paper's resize (--resize, -rs_h, -rs_w), off unless asked for or recorded.
SIZING_DEFAULTS = {"resize": False, "resize_size_h": 498, "resize_size_w": 664}


def load(
    trained_model_file: str | os.PathLike | None = None,
    *,
    arch: str | None = None,
    pool: str | None = None,
    use_bn_end: bool | None = None,
    P6: int | None = None,
    P7: int | None = None,
    resize: bool | None = None,
    resize_size_h: int | None = None,
    resize_size_w: int | None = None,
    device: str | torch.device | None = None,
    opt_level: str = "O0",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    batch_size: int = 8,
) -> QualityModel:
    """A trained model, ready to score images. A setting left as None comes from the checkpoint
    where it records it (the authors' files do not), else from test_demo.py's defaults; a setting
    given that contradicts the checkpoint's is an error.

    Args:
        trained_model_file: a checkpoint of main.py or of the authors; None builds the model with
            random weights and the identity mapping (for trying the API, not for scores).
        arch, pool, use_bn_end, P6, P7: the model (as --arch, --pool, --use_bn_end, --P6, --P7).
        resize, resize_size_h, resize_size_w: resize images before scoring (as --resize, -rs_h, -rs_w).
        device: "cpu", "cuda" or a torch.device; None takes the GPU when PyTorch sees one.
        opt_level: "O0" (float32), "O1" (float16 autocast) or "bf16" (bfloat16 autocast); CUDA only.
        max_pixels: refuse images of more pixels than this (--max_pixels).
        batch_size: most images per forward pass when a list is scored.
    """
    asked = {"arch": arch, "pool": pool, "use_bn_end": use_bn_end, "P6": P6, "P7": P7, "resize": resize}
    asked.update(resize_size_h=resize_size_h, resize_size_w=resize_size_w)
    defaults = {**MODEL_DEFAULTS, **SIZING_DEFAULTS}
    # a setting left as None is the default, which defers to the checkpoint's
    chosen = {name: defaults[name] if value is None else value for name, value in asked.items()}
    where = device if isinstance(device, torch.device) else resolve_device(device)
    if trained_model_file is None:
        return _untrained_model(chosen, where, opt_level, max_pixels=max_pixels, batch_size=batch_size)
    model = load_scorer(
        os.fspath(trained_model_file),
        requested=chosen,
        defaults=defaults,
        device=where,
        opt_level=opt_level,
        max_pixels=max_pixels,
        batch_size=batch_size,
    )
    if model.note:
        warnings.warn(model.note, stacklevel=2)
    return model


def _untrained_model(chosen: dict, device: torch.device, opt_level: str, **sizes: int) -> QualityModel:
    """The model with random weights (no download) and the identity mapping."""
    settings = {name: chosen[name] for name in MODEL_SETTINGS}
    channels_last = uses_channels_last(device)
    model = IQAmodel.IQAModel(**settings, pretrained=False).to(device).eval()
    sizing = image_sizing({}, **{name: chosen[name] for name in SIZING_DEFAULTS}, defaults=SIZING_DEFAULTS)
    return QualityModel(
        model=set_memory_format(model, channels_last=channels_last),
        k=[1.0] * 3,
        b=[0.0] * 3,
        device=device,
        recorded={},
        precision=choose_precision(opt_level, device),
        channels_last=channels_last,
        settings=settings,
        sizing=sizing,
        **sizes,
    )
