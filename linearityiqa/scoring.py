"""Score images with a trained model in PyTorch: the Python API, and the library behind
test_demo.py and test_dataset.py.

    import linearityiqa

    model = linearityiqa.load("checkpoints/p1q2.pth", arch="resnext101_32x8d", resize=True)
    model.score("data/1000.JPG")            # 10.43..., the line test_demo.py prints
    model.score(["a.jpg", "b.png"])         # one score per image
    model.score(pil_image)                  # a PIL image, or an H x W x 3 uint8 array
    model.score(batch)                      # an N x 3 x H x W uint8 tensor, sized already
    model.score("a.jpg", heads=True)        # Prediction(score, heads): the three raw outputs too

A score is the fused head's output y mapped onto the scale of the training MOS (`model.scale`)
with the checkpoint's first linear mapping, k[0] * y + b[0], not clipped: test_demo.py's score.
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Union

import numpy as np
import torch
from PIL import Image

from linearityiqa.acceleration import (
    Precision,
    choose_precision,
    forward_fn,
    out_of_memory,
    prepare_images,
    resolve_device,
    set_memory_format,
    uses_channels_last,
)
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS, ImageSizing, batches_by_size, decode_image, sized_rgb
from linearityiqa.data.image_transforms import checked_resize_hw, to_uint8_tensor
from linearityiqa.errors import BadFileError, ConfigError
from linearityiqa.image_scoring import SIZING_OPTIONS
from linearityiqa.options import MODEL_SETTINGS
from linearityiqa.paper import IQAmodel
from linearityiqa.records.checkpoint import (
    linear_mapping,
    load_checkpoint,
    load_model_state,
    model_settings,
    training_scale,
)
from linearityiqa.records.scale import TrainingScale

__all__ = ["Prediction", "QualityModel", "load"]

# The size the authors' released checkpoints were trained and tested at (--resize, -rs_h, -rs_w).
RELEASED_RESIZE_HW = (498, 664)
# `load`'s settings when neither the caller nor the checkpoint gives them: IQAModel's own
# defaults, and the paper's resize (--resize, -rs_h, -rs_w), off unless asked for or recorded.
LOAD_DEFAULTS = {name: inspect.signature(IQAmodel.IQAModel).parameters[name].default for name in MODEL_SETTINGS}
LOAD_DEFAULTS.update(resize=False, resize_size_h=498, resize_size_w=664)

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


class Prediction(NamedTuple):
    """A score with the model's three raw outputs (before any mapping): the side heads on layer3
    and layer4, and the fused head whose output the score maps."""

    score: float
    heads: tuple[float, float, float]


@dataclass(frozen=True)
class QualityModel:
    """A trained LinearityIQA model in eval mode on its device, with the mapping of its fused head;
    image_scoring's backend, and the Python API's model.

    Args:
        k, b: slopes and intercepts of the three heads' linear mappings, the fused head's first.
        recorded: the settings the checkpoint records ({} for the authors' files).
        settings: the arch, pool, use_bn_end, P6 and P7 the model was built with.
        scale: the scale of the scores (records/scale.py); None where the checkpoint records none.
        max_pixels: larger images are refused (decompression bombs).
        note: what to tell the user (scores at a size the authors' weights were not trained at).
    """

    model: torch.nn.Module
    k: list[float]
    b: list[float]
    device: torch.device
    recorded: Mapping[str, Any]
    precision: Precision
    channels_last: bool
    settings: Mapping[str, Any] = field(default_factory=dict)
    scale: TrainingScale | None = None
    sizing: ImageSizing = field(default_factory=ImageSizing)
    max_pixels: int = DEFAULT_MAX_PIXELS
    batch_size: int = 8
    note: str | None = None

    @property
    def where(self) -> str:
        return self.device.type

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
                return self.score(images.unsqueeze(0), heads=heads)[0]
            if images.dim() != 4 or images.shape[1] != 3:
                raise ConfigError(f"a tensor of images is 3 x H x W or N x 3 x H x W, not {tuple(images.shape)}")
            outputs = self.head_outputs(images)
        elif isinstance(images, (list, tuple)):
            tensors = [self._decoded(image) for image in images]
            by_index: dict[int, list[float]] = {}
            for indices in batches_by_size([tuple(tensor.shape[1:]) for tensor in tensors], self.batch_size):
                by_index.update(zip(indices, self.head_outputs(torch.stack([tensors[index] for index in indices]))))
            outputs = [by_index[index] for index in range(len(tensors))]
        else:
            return self.score([images], heads=heads)[0]
        predictions = [Prediction(self.k[0] * pq + self.b[0], (pq6, pq7, pq)) for pq6, pq7, pq in outputs]
        return predictions if heads else [prediction.score for prediction in predictions]

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

    def head_outputs(self, images: torch.Tensor) -> list[list[float]]:
        """Each image's [pq6, pq7, pq], before any mapping, of an N x 3 x H x W batch (uint8, or float normalized)."""
        with torch.inference_mode():
            batch = prepare_images(images, self.device, channels_last=self.channels_last)
            outputs = forward_fn(self.precision, self.device)(self.model, batch)
        return torch.cat([output.float().reshape(-1, 1) for output in outputs], dim=1).cpu().tolist()

    def scores_and_heads(self, images: np.ndarray) -> tuple[list[float], list[tuple[float, float, float]]]:
        batch = torch.from_numpy(images).permute(0, 3, 1, 2)  # N x H x W x 3 to N x 3 x H x W, no copy
        predictions = self.score(batch, heads=True)
        return [prediction.score for prediction in predictions], [prediction.heads for prediction in predictions]

    def too_large(self, error: Exception) -> bool:
        if not out_of_memory(error):
            return False
        if self.device.type == "cuda":  # the CUDA cache emptied, so that the next attempt starts clean
            torch.cuda.empty_cache()
        return True


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
    # a setting left as None is the default, which defers to the checkpoint's
    requested = {name: LOAD_DEFAULTS[name] if value is None else value for name, value in asked.items()}
    model = load_scorer(
        None if trained_model_file is None else os.fspath(trained_model_file),
        requested=requested,
        defaults=LOAD_DEFAULTS,
        device=device if isinstance(device, torch.device) else resolve_device(device),
        opt_level=opt_level,
        max_pixels=max_pixels,
        batch_size=batch_size,
    )
    if model.note:
        warnings.warn(model.note, stacklevel=2)
    return model


def load_scorer(
    trained_model_file: str | None,
    *,
    requested: Mapping[str, Any],
    defaults: Mapping[str, Any],
    device: torch.device,
    opt_level: str = "O0",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    batch_size: int = 8,
) -> QualityModel:
    """`load`'s model, with the settings `requested` (a value other than its default in `defaults`
    is explicit, and must agree with the checkpoint's). Without the resize options (SIZING_OPTIONS)
    in `requested`, images are scored at their own size; a file None gives random weights (no
    download) and the identity mapping.
    """
    checkpoint: dict[str, Any] = {}
    if trained_model_file is not None:
        # Mapped, the weights are copied once, into the model, instead of first into memory of their
        # own (0.2 s of resnext101_32x8d's 350 MB on a CPU); the mapping ends with this function.
        checkpoint = load_checkpoint(trained_model_file, mmap=True)
        if "arch" not in (checkpoint.get("settings") or {}):  # the authors' files: the weights tell the arch
            arch = weights_arch(checkpoint["model"], requested["arch"], defaults["arch"], path=trained_model_file)
            requested = {**requested, "arch": arch}
    settings = model_settings(checkpoint, requested, defaults, trained_model_file)
    recorded = dict(checkpoint.get("settings") or {})
    k, b = linear_mapping(checkpoint, trained_model_file) if checkpoint else ([1.0] * 3, [0.0] * 3)
    # Built on the meta device, a checkpoint's model skips a random initialisation that its weights
    # overwrite anyway (0.6 s of resnext101_32x8d on a CPU); to_empty then allocates it. Every
    # tensor of IQAModel is in its state_dict, so the strict load below fills them all.
    try:
        with torch.device("meta" if checkpoint else "cpu"):
            model = IQAmodel.IQAModel(**settings, pretrained=False)
    except ConfigError as error:
        built = {name: settings[name] for name in recorded if name in settings}
        if not built:
            raise
        raise BadFileError(
            f"checkpoint {trained_model_file} records settings this version cannot build, {built} ({error}); "
            f"it was not saved by main.py: use a checkpoint main.py saved"
        ) from None
    if checkpoint:
        model.to_empty(device=device)
        load_model_state(model, checkpoint, trained_model_file, settings)
    channels_last = uses_channels_last(device)
    scorer = QualityModel(
        model=set_memory_format(model.to(device).eval(), channels_last=channels_last),
        k=k,
        b=b,
        device=device,
        recorded=recorded,
        precision=choose_precision(opt_level, device),
        channels_last=channels_last,
        settings=settings,
        scale=training_scale(checkpoint),
        max_pixels=max_pixels,
        batch_size=batch_size,
    )
    if "resize" not in requested:
        return scorer
    sizing, note = image_sizing(recorded, requested, defaults, max_pixels), None
    if trained_model_file is not None and not recorded and sizing.resize_hw != RELEASED_RESIZE_HW:
        # an authors'-format checkpoint (one that records no settings) at another size than its release's
        note = (
            f"{trained_model_file} records no settings, as the authors' released checkpoints, which were trained at "
            f"{RELEASED_RESIZE_HW[0]}x{RELEASED_RESIZE_HW[1]} (--resize): scores of images at other sizes are not the "
            f"paper's"
        )
    return replace(scorer, sizing=sizing, note=note)


def weights_arch(state: Mapping[str, torch.Tensor], asked: str, default: str, *, path: str = "") -> str:
    """The backbone whose `features` weights (names and shapes) the checkpoint `state` holds, for one
    that records no arch (the authors' files): `asked` (--arch) where it fits them, else the one
    supported arch that does; an `asked` other than its `default` that does not fit is an error
    naming `path`. Where no arch fits, `asked` (the strict load then names the mismatch).
    """
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items() if name.startswith("features.")}
    if _backbone_shapes(asked) == shapes:
        return asked
    matches = [arch for arch in IQAmodel.supported_archs() if arch != asked and _backbone_shapes(arch) == shapes]
    if len(matches) != 1:
        return asked
    if asked != default:
        raise ConfigError(
            f"checkpoint {path} holds the weights of {matches[0]}, but --arch {asked} was asked for: "
            f"leave --arch out (the weights tell it) or pass --arch {matches[0]}"
        )
    return matches[0]


@functools.cache
def _backbone_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """The names and shapes of IQAModel's `features` weights on `arch`, as its state_dict names them."""
    with torch.device("meta"):  # shapes without memory: 0.05 s an arch, once a process
        model = IQAmodel.IQAModel(arch=arch, pretrained=False)
    return {f"features.{name}": tuple(tensor.shape) for name, tensor in model.features.state_dict().items()}


def image_sizing(
    recorded: Mapping[str, Any], requested: Mapping[str, Any], defaults: Mapping[str, Any], max_pixels: int
) -> ImageSizing:
    """How to size images: as the checkpoint's `recorded` settings say, unless the option (--resize,
    -rs_h, -rs_w) was given (differs from its default); at most `max_pixels` once resized."""
    chosen = {
        name: recorded[name] if name in recorded and requested[name] == defaults[name] else requested[name]
        for name in SIZING_OPTIONS
    }
    if not chosen["resize"]:
        return ImageSizing()
    height, width = int(chosen["resize_size_h"]), int(chosen["resize_size_w"])
    return ImageSizing(resize_hw=checked_resize_hw(height, width, max_pixels=max_pixels))
