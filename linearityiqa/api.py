"""Score images from Python: a trained model behind one call, as test_demo.py scores them.

    import linearityiqa

    model = linearityiqa.load("checkpoints/p1q2.pth", arch="resnext101_32x8d", resize=True)
    model.score("data/1000.JPG")            # 10.43..., the line test_demo.py prints
    model.score(["a.jpg", "b.png"])         # one score per image
    model.score(pil_image)                  # a PIL image, or an H x W x 3 uint8 array
    model.score(batch)                      # an N x 3 x H x W uint8 tensor, sized already
    model.score("a.jpg", heads=True)        # Prediction(score, heads): the three raw outputs too

A score is the fused head's output mapped with the checkpoint's first linear mapping,
k[0] * y + b[0], onto the scale of its training MOS (`model.scale`), and is not clipped. Files,
PIL images and arrays are decoded, turned upright, converted to RGB and resized by the same
code as test_demo.py's (data/image_store.py), and normalized on the device as every script
does (acceleration.prepare_images): a score here equals test_demo.py's.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Union

import numpy as np
import torch
from PIL import Image

from linearityiqa.acceleration import (
    choose_precision,
    resolve_device,
    set_memory_format,
    uses_channels_last,
)
from linearityiqa.data.batches import batches_by_size
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS, ImageSizing, decode_image, sized_rgb
from linearityiqa.data.image_transforms import to_uint8_tensor
from linearityiqa.errors import ConfigError
from linearityiqa.paper import IQAmodel
from linearityiqa.records.checkpoint import MODEL_SETTINGS
from linearityiqa.records.scale import TrainingScale
from linearityiqa.scoring import Scorer, image_sizing, load_scorer, resize_note

# The model's settings when neither the caller nor the checkpoint gives them: IQAModel's own defaults.
MODEL_DEFAULTS = {name: inspect.signature(IQAmodel.IQAModel).parameters[name].default for name in MODEL_SETTINGS}
# The paper's resize (--resize, -rs_h, -rs_w), off unless asked for or recorded.
SIZING_DEFAULTS = {"resize": False, "resize_size_h": 498, "resize_size_w": 664}

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


class Prediction(NamedTuple):
    """A score with the model's three raw outputs (before any mapping): the side heads on layer3
    and layer4, and the fused head whose output the score maps."""

    score: float
    heads: tuple[float, float, float]


@dataclass(frozen=True)
class QualityModel:
    """A trained LinearityIQA model that scores images; made by `load`.

    Args:
        scorer: the model in eval mode on its device, with its mapping and precision.
        sizing: how images are resized before scoring.
        max_pixels: images of more pixels than this are refused as possible decompression bombs.
        batch_size: most images per forward pass when several are scored.
    """

    scorer: Scorer
    sizing: ImageSizing
    max_pixels: int = DEFAULT_MAX_PIXELS
    batch_size: int = 8

    @property
    def device(self) -> torch.device:
        return self.scorer.device

    @property
    def scale(self) -> TrainingScale | None:
        """What the scores are on: the training set's MOS (data set, lowest, highest, mean, higher
        is better), as the checkpoint records it; None for the authors' files, which record none."""
        return self.scorer.scale

    def score(self, images: ImageLike | Sequence[ImageLike] | torch.Tensor, *, heads: bool = False) -> Any:
        """The quality score of one image, or a list of scores for several.

        Args:
            images: an image file's path, a PIL image or an H x W x 3 uint8 array (one score);
                a list of those (a list of scores); or a uint8 tensor of 3 x H x W (one score) or
                N x 3 x H x W (a list), taken as sized already. A float tensor is taken as
                normalized with the ImageNet mean and std already.
            heads: return a Prediction (the score and the three raw outputs) for each image.
        """
        if isinstance(images, torch.Tensor):
            if images.dim() == 3:
                return self._predict(images.unsqueeze(0), heads)[0]
            if images.dim() != 4 or images.shape[1] != 3:
                raise ConfigError(f"a tensor of images is 3 x H x W or N x 3 x H x W, not {tuple(images.shape)}")
            return self._predict(images, heads)
        if isinstance(images, (list, tuple)):
            return self._score_many([self._decoded(image) for image in images], heads)
        return self._predict(self._decoded(images).unsqueeze(0), heads)[0]

    def _decoded(self, image: ImageLike) -> torch.Tensor:
        """One image as a 3 x H x W uint8 tensor, decoded and sized as test_demo.py does."""
        if isinstance(image, (str, os.PathLike)):
            return to_uint8_tensor(decode_image(image, self.sizing, max_pixels=self.max_pixels))
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ConfigError(f"an image array is H x W x 3 of uint8 (RGB), not {image.shape} of {image.dtype}")
            image = Image.fromarray(image)
        if not isinstance(image, Image.Image):
            raise ConfigError(
                f"cannot score a {type(image).__name__}: pass a path, a PIL image, an H x W x 3 uint8 array "
                f"or a uint8 tensor"
            )
        if image.width * image.height > self.max_pixels:
            raise ConfigError(
                f"the image has {image.width} x {image.height} pixels, more than the limit of {self.max_pixels:,}"
            )
        return to_uint8_tensor(sized_rgb(image, self.sizing))

    def _score_many(self, tensors: list[torch.Tensor], heads: bool) -> list[Any]:
        """Scores of decoded images, in batches of images of one size, in input order."""
        results: list[Any] = [None] * len(tensors)
        sizes = [tuple(tensor.shape[1:]) for tensor in tensors]
        for indices in batches_by_size(sizes, self.batch_size):
            predicted = self._predict(torch.stack([tensors[index] for index in indices]), heads)
            for index, result in zip(indices, predicted):
                results[index] = result
        return results

    def _predict(self, batch: torch.Tensor, heads: bool) -> list[Any]:
        """Scores (or Predictions) of an N x 3 x H x W batch."""
        columns = self.scorer.head_outputs(batch)
        k, b = self.scorer.k[0], self.scorer.b[0]
        if not heads:
            return [k * row[2] + b for row in columns]
        return [Prediction(k * row[2] + b, (row[0], row[1], row[2])) for row in columns]


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
    """A trained model, ready to score images.

    Settings left as None come from the checkpoint where it records them (this project's
    checkpoints do; the authors' do not), else from the defaults of test_demo.py's options; a
    setting given that contradicts the checkpoint's is an error.

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
    asked = {"arch": arch, "pool": pool, "use_bn_end": use_bn_end, "P6": P6, "P7": P7}
    sizing_asked = {"resize": resize, "resize_size_h": resize_size_h, "resize_size_w": resize_size_w}
    defaults = {**MODEL_DEFAULTS, **SIZING_DEFAULTS}
    # a setting left as None is the default, which defers to the checkpoint's
    chosen = {name: defaults[name] if value is None else value for name, value in {**asked, **sizing_asked}.items()}
    where = device if isinstance(device, torch.device) else resolve_device(device)
    if trained_model_file is None:
        scorer = _untrained_scorer({name: chosen[name] for name in MODEL_SETTINGS}, where, opt_level)
    else:
        requested = {name: chosen[name] for name in MODEL_SETTINGS}
        scorer = load_scorer(
            os.fspath(trained_model_file), requested=requested, defaults=defaults, device=where, opt_level=opt_level
        )
    sizing = image_sizing(
        scorer.recorded,
        resize=chosen["resize"],
        resize_size_h=chosen["resize_size_h"],
        resize_size_w=chosen["resize_size_w"],
        defaults=defaults,
        max_pixels=max_pixels,
    )
    note = resize_note(scorer, sizing, os.fspath(trained_model_file)) if trained_model_file is not None else None
    if note:
        warnings.warn(note, stacklevel=2)
    return QualityModel(scorer=scorer, sizing=sizing, max_pixels=max_pixels, batch_size=batch_size)


def _untrained_scorer(settings: Mapping[str, Any], device: torch.device, opt_level: str) -> Scorer:
    """The model with random weights (no download) and the identity mapping."""
    channels_last = uses_channels_last(device)
    model = IQAmodel.IQAModel(**settings, pretrained=False).to(device).eval()
    return Scorer(
        model=set_memory_format(model, channels_last=channels_last),
        k=[1.0] * 3,
        b=[0.0] * 3,
        device=device,
        recorded={},
        precision=choose_precision(opt_level, device),
        channels_last=channels_last,
        settings=dict(settings),
    )
