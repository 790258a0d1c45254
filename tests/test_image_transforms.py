"""The paper's training augmentation on uint8 arrays, and ImageNet normalization."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch._subclasses.fake_tensor import FakeTensorMode
from torchvision.transforms import functional as F

from linearityiqa.data.image_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TrainAugmentation,
    _constants_on,
    normalize,
    rotate_flip_crop,
    to_uint8_tensor,
)


@pytest.fixture
def pixels():
    image = np.random.default_rng(0).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    image.setflags(write=False)  # as the cached images are
    return image


def test_items_are_uint8_channels_first_copies(pixels):
    result = to_uint8_tensor(pixels)
    assert result.dtype == torch.uint8 and result.shape == (3, 40, 60) and result.is_contiguous()
    assert torch.equal(result, torch.from_numpy(pixels.copy()).permute(2, 0, 1))
    result[0, 0, 0] += 1  # a copy: the read-only cached pixels stay as they are
    assert pixels[0, 0, 0] + 1 == result[0, 0, 0]


def test_normalization_matches_torchvisions_to_tensor_and_normalize(pixels):
    expected = F.normalize(F.to_tensor(Image.fromarray(pixels)), IMAGENET_MEAN, IMAGENET_STD)
    batch = torch.stack([to_uint8_tensor(pixels)] * 2)
    result = normalize(batch)
    assert result.dtype == torch.float32 and result.shape == (2, 3, 40, 60) and result.is_contiguous()
    # one multiply and subtract against a subtract and divide: a few float32 ulps (rtol 1e-5 too)
    assert torch.allclose(result[1], expected, atol=1e-6)
    assert batch.dtype == torch.uint8  # the input is left as it was


def test_normalization_by_hand():
    white = torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert normalize(white).flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_a_first_normalization_under_an_exporters_tracing_leaves_real_constants():
    """The ONNX export traces normalize with fake tensors; scores in PyTorch after it stay right."""
    _constants_on.cache_clear()
    with FakeTensorMode(allow_non_fake_inputs=True) as fake:
        normalize(fake.from_tensor(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)))
    white = torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert normalize(white).flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_normalization_keeps_channels_last(pixels):
    batch = torch.stack([to_uint8_tensor(pixels)] * 2).contiguous(memory_format=torch.channels_last)
    result = normalize(batch)
    assert result.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(result, normalize(batch.contiguous()))


def test_without_rotation_it_is_a_plain_crop_and_flip(pixels):
    crop = rotate_flip_crop(pixels, angle=0.0, flip=False, top=3, left=7, crop_h=20, crop_w=30)
    assert (crop == pixels[3:23, 7:37]).all()
    flipped = rotate_flip_crop(pixels, angle=0.0, flip=True, top=3, left=7, crop_h=20, crop_w=30)
    assert (flipped == pixels[:, ::-1][3:23, 7:37]).all()


def test_half_turn_reverses_both_axes(pixels):
    turned = rotate_flip_crop(pixels, angle=180.0, flip=False, top=0, left=0, crop_h=40, crop_w=60)
    assert (turned == pixels[::-1, ::-1]).all()


@pytest.mark.parametrize(
    "angle, flip, top, left", [(2.0, False, 0, 5), (-1.3, True, 4, 0), (7.5, True, 2, 11), (-6.0, False, 9, 20)]
)
def test_matches_torchvisions_rotate_flip_crop(pixels, angle, flip, top, left):
    image = F.rotate(Image.fromarray(pixels), angle)
    if flip:
        image = F.hflip(image)
    expected = np.asarray(F.crop(image, top, left, 30, 36))
    result = rotate_flip_crop(pixels, angle=angle, flip=flip, top=top, left=left, crop_h=30, crop_w=36)
    assert result.shape == expected.shape == (30, 36, 3)
    # Pillow's fixed-point stepping may pick a neighbouring source pixel along a few boundaries.
    assert (result != expected).any(axis=2).mean() < 0.01


def test_augmentation_draws_angle_flip_and_crop_from_the_generator(pixels):
    augment = TrainAugmentation(angle=0.0, hflip_p=0.0, crop_h=32, crop_w=32)
    draws = random.Random(3)
    draws.uniform(0, 0), draws.random()
    top, left = draws.randint(0, 8), draws.randint(0, 28)
    assert (augment(pixels, random.Random(3)) == pixels[top : top + 32, left : left + 32]).all()
    always_flip = TrainAugmentation(angle=0.0, hflip_p=1.0, crop_h=40, crop_w=60)
    assert (always_flip(pixels, random.Random(0)) == pixels[:, ::-1]).all()


def test_augmentation_is_random_but_reproducible(pixels):
    augment = TrainAugmentation(angle=2.0, hflip_p=0.5, crop_h=32, crop_w=32)
    first = augment(pixels, random.Random(1))
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert (augment(pixels, random.Random(1)) == first).all()
    assert any((augment(pixels, random.Random(seed)) != first).any() for seed in range(2, 6))
