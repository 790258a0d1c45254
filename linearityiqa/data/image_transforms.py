"""Image work: the paper's training augmentation of uint8 arrays, and normalization of batches.

The paper rotates a whole image (torchvision's rotate of a PIL image: nearest neighbour, same
size, black corners), flips it and crops it; that wastes most of the work on pixels the crop
drops, so the three steps run here as one affine resampling of the crop's pixels. The geometry is
the same; Pillow steps through a row in fixed-point arithmetic, so for under 1% of the crop's
pixels it picks the neighbouring source pixel of the one the three separate steps pick (measured
against torchvision, see tests).
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS
from linearityiqa.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# normalize's (v / 255 - mean) / std as v * scale - shift. Made at import: made by a first call
# under an exporter's tracing (onnx_export.py), they would be the tracer's fake tensors.
_SCALE = torch.tensor([1.0 / (255.0 * s) for s in IMAGENET_STD]).view(3, 1, 1)
_SHIFT = torch.tensor([m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(3, 1, 1)


def checked_resize_hw(height: int, width: int, *, max_pixels: int) -> tuple[int, int]:
    """(height, width) of a resize, refused before any memory is taken for it when it is not a size
    at all, or larger than any image may be: the pixel limit of images (--max_pixels), or Pillow's
    threshold where that limit was lowered (to refuse large inputs, not to shrink what they become)."""
    if height < 1 or width < 1:
        raise ConfigError(
            f"cannot resize images to {height} x {width} pixels: pass positive --resize_size_h and --resize_size_w"
        )
    limit = max(max_pixels, DEFAULT_MAX_PIXELS)
    if height * width > limit:
        raise ConfigError(
            f"resizing images to {height} x {width} makes {height * width:,} pixels each, more than the limit of "
            f"{limit:,} (--max_pixels): pass a smaller --resize_size_h/--resize_size_w, or raise --max_pixels"
        )
    return height, width


@dataclass(frozen=True)
class TrainAugmentation:
    """Random rotation by at most `angle` degrees, horizontal flip with probability `hflip_p`, and a
    crop_h x crop_w crop of an H x W x 3 uint8 array."""

    angle: float
    hflip_p: float
    crop_h: int
    crop_w: int

    def __call__(self, pixels: np.ndarray, rng: random.Random | None = None) -> np.ndarray:
        """Augment one image; `rng` defaults to the `random` module, which DataLoader seeds per worker."""
        rng = rng or random
        height, width = pixels.shape[:2]
        return rotate_flip_crop(
            pixels,
            angle=rng.uniform(-self.angle, self.angle),
            flip=rng.random() < self.hflip_p,
            top=rng.randint(0, height - self.crop_h),
            left=rng.randint(0, width - self.crop_w),
            crop_h=self.crop_h,
            crop_w=self.crop_w,
        )


def rotate_flip_crop(
    pixels: np.ndarray, *, angle: float, flip: bool, top: int, left: int, crop_h: int, crop_w: int
) -> np.ndarray:
    """The crop_h x crop_w crop at (top, left) of the H x W x 3 uint8 image rotated counter-clockwise
    about its centre by `angle` degrees and then, if `flip`, flipped left to right."""
    height, width = pixels.shape[:2]
    # Rotation as Pillow defines it: a crop pixel centre (x, y) samples the source at
    # R (x - cx, y - cy) + (cx, cy), R rotating by -angle, (cx, cy) the image centre.
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    centre_x, centre_y = width / 2.0, height / 2.0
    # Where crop pixel centre (u, v) lies in the rotated image, before the flip.
    x_of_u = -1.0 if flip else 1.0
    x_offset = (width - left) if flip else left
    # Source x = cos * (x - cx) - sin * (y - cy) + cx, with x = x_offset + x_of_u * u, y = top + v.
    matrix = (
        cos * x_of_u,
        -sin,
        cos * (x_offset - centre_x) - sin * (top - centre_y) + centre_x,
        sin * x_of_u,
        cos,
        sin * (x_offset - centre_x) + cos * (top - centre_y) + centre_y,
    )
    image = Image.fromarray(pixels)
    cropped = image.transform((crop_w, crop_h), Image.Transform.AFFINE, matrix, resample=Image.Resampling.NEAREST)
    return np.asarray(cropped)


def to_uint8_tensor(pixels: np.ndarray) -> torch.Tensor:
    """An H x W x 3 uint8 array as a 3 x H x W uint8 tensor: what a data loader hands on. Batches
    travel to the GPU as uint8, a quarter of the bytes of float32, and are normalized there
    (`normalize`); the copy also leaves the (read-only) cached pixels untouched."""
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (... x 3 x H x W, on any device) as float32, ImageNet-normalized: the values of
    torchvision's ToTensor then Normalize(IMAGENET_MEAN, IMAGENET_STD), in one multiply and one
    subtract; the memory format (e.g. channels_last) is kept."""
    scale, shift = _constants_on(images.device)
    return images.to(torch.float32, copy=True).mul_(scale).sub_(shift)


@functools.cache
def _constants_on(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return _SCALE.to(device), _SHIFT.to(device)  # copied to a device once, not with every batch
