"""Images as they come from anywhere, tried on purpose: each is scored (test_demo.py's path) and
loaded into a data set (IQAdataset's path), and either gives a defined result or one message
that names the file; a data set never keeps a partial cache of a failed load."""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from IQAmodel import IQAModel
from linearityiqa.acceleration import Precision
from linearityiqa.cli.scripts import own_the_pixel_limit
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS, ImageSizing, decode_image, open_image
from linearityiqa.data.image_store import ImageLoading, load_images
from linearityiqa.errors import IQAError
from linearityiqa.image_scoring import score_files
from linearityiqa.scoring import QualityModel

pytestmark = pytest.mark.reliability


def _jpeg_bytes(image, **options):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def _pattern(width=48, height=40, mode="RGB"):
    """A left-to-right gradient over a top-to-bottom one, so any turn or mirror changes the pixels."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


def _png_declaring(width, height):
    """A valid 1x1 PNG whose header then claims width x height pixels: a decompression bomb."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


def _exif_rotated():
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    return _jpeg_bytes(_pattern(), quality=95, exif=exif)


# name, the file's bytes (None: made in the test), and what happens: a decoded H x W, or a message part
CASES = [
    ("zero_bytes.jpg", b"", "cannot identify image file"),
    ("truncated.jpg", _jpeg_bytes(_pattern(), quality=90)[:300], "cannot decode image"),
    (
        "random_bytes.jpg",
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "cannot identify image file",
    ),
    ("text.jpg", b"this is a text file\n" * 20, "cannot identify image file"),
    ("bomb.png", _png_declaring(100_000, 100_000), "decompression bomb"),
    ("alpha.png", None, (40, 48)),
    ("sixteen_bit.png", None, (40, 48)),
    ("grey.jpg", None, (40, 48)),
    ("cmyk.jpg", None, (40, 48)),
    ("palette.gif", None, (40, 48)),
    ("one_pixel.png", None, (1, 1)),
    ("exif_rotated.jpg", _exif_rotated(), (48, 40)),  # as a viewer shows it: portrait
]


def _write(folder: Path, name: str, content) -> Path:
    path = folder / name
    if content is not None:
        path.write_bytes(content)
        return path
    pattern = _pattern()
    if name == "alpha.png":
        pattern.putalpha(128)
        pattern.save(path)
    elif name == "sixteen_bit.png":
        Image.fromarray(np.asarray(pattern.convert("L"), dtype=np.uint16) * 257).save(path)
    elif name == "grey.jpg":
        pattern.convert("L").save(path)
    elif name == "cmyk.jpg":
        pattern.convert("CMYK").save(path)
    elif name == "palette.gif":
        pattern.convert("P").save(path)
    elif name == "one_pixel.png":
        Image.new("RGB", (1, 1), (10, 200, 30)).save(path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for name, content, _ in CASES:
        _write(folder, name, content)
    os.symlink("loop_b.jpg", folder / "loop_a.jpg")
    os.symlink("loop_a.jpg", folder / "loop_b.jpg")
    return folder


@pytest.fixture(scope="module")
def scorer():
    """A resnet18 IQAModel in eval mode on the CPU, its scores unmapped (k = 1, b = 0)."""
    torch.manual_seed(0)
    return QualityModel(
        model=IQAModel(arch="resnet18", pretrained=False).eval(),
        k=[1.0] * 3,
        b=[0.0] * 3,
        device=torch.device("cpu"),
        recorded={},
        precision=Precision("float32"),
        channels_last=False,
        batch_size=1,
    )


@pytest.mark.parametrize("name, content, outcome", CASES, ids=[case[0] for case in CASES])
def test_scoring_gives_a_score_or_one_message_naming_the_file(folder, scorer, name, content, outcome):
    path = str(folder / name)
    (result,) = score_files(scorer, [path])
    if isinstance(outcome, str):
        assert result.score is None and path in result.error and outcome in result.error
    else:
        assert result.error is None and np.isfinite(result.score)


@pytest.mark.parametrize("name, content, outcome", CASES, ids=[case[0] for case in CASES])
def test_loading_a_data_set_decodes_or_names_the_file_and_keeps_no_cache(folder, tmp_path, name, content, outcome):
    cache = tmp_path / "cache"
    if isinstance(outcome, str):
        with pytest.raises(IQAError, match=outcome) as error:
            load_images(folder, [name], label="cases", loading=ImageLoading(cache_dir=cache, verbose=False))
        assert str(folder / name) in str(error.value)
        assert not cache.exists() or not any(cache.iterdir())
    else:
        store = load_images(folder, [name], label="cases", loading=ImageLoading(cache_dir=cache, verbose=False))
        assert store[0].shape == (*outcome, 3) and store[0].dtype == np.uint8


def test_colour_modes_become_the_rgb_a_viewer_shows(folder):
    pattern = np.asarray(_pattern())
    assert np.array_equal(decode_image(folder / "alpha.png", ImageSizing()), pattern)  # alpha dropped, not blended
    grey = np.asarray(_pattern().convert("L"))
    assert np.array_equal(decode_image(folder / "sixteen_bit.png", ImageSizing()), np.repeat(grey[..., None], 3, -1))
    assert np.array_equal(decode_image(folder / "one_pixel.png", ImageSizing()), [[[10, 200, 30]]])


def test_an_exif_rotated_photo_is_scored_as_a_viewer_shows_it(folder):
    with Image.open(folder / "exif_rotated.jpg") as stored:
        shown = np.asarray(stored.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(decode_image(folder / "exif_rotated.jpg", ImageSizing()), shown)
    assert decode_image(folder / "exif_rotated.jpg", ImageSizing(resize_hw=(20, 10))).shape == (20, 10, 3)


def test_a_symlink_loop_is_named_as_such(folder, scorer, tmp_path):
    path = str(folder / "loop_a.jpg")
    (result,) = score_files(scorer, [path])
    assert result.score is None and path in result.error and "symbolic link" in result.error
    with pytest.raises(IQAError, match="symbolic link") as error:
        load_images(folder, ["loop_a.jpg"], label="loop", loading=ImageLoading(cache_dir=tmp_path, verbose=False))
    assert path in str(error.value)


def test_one_bad_image_among_good_ones_spoils_only_its_own_score(folder, scorer):
    names = ["grey.jpg", "truncated.jpg", "cmyk.jpg", "loop_a.jpg", "palette.gif"]
    sizing = ImageSizing(resize_hw=(32, 32))
    results = score_files(replace(scorer, sizing=sizing, batch_size=4), [str(folder / name) for name in names])
    assert [result.error is None for result in results] == [True, False, True, False, True]
    alone = score_files(replace(scorer, sizing=sizing), [str(folder / "cmyk.jpg")])
    assert results[2].score == pytest.approx(alone[0].score, abs=1e-5)


@pytest.fixture
def pillows_limit(monkeypatch):
    """Pillow's own pixel limit at its default (a script run in this process may have switched it
    off), restored after the test."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS)


def test_an_image_that_pillow_would_only_warn_about_is_refused_with_one_message(
    scorer, tmp_path, pillows_limit, recwarn
):
    path = tmp_path / "hundred_megapixels.png"
    path.write_bytes(_png_declaring(10_000, 10_000))
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow alone: a warning, then it would decode
        Image.open(path).close()
    recwarn.clear()
    own_the_pixel_limit()  # what the scripts do: --max_pixels (here its default) is the only limit
    message = f"image {path} declares 10000 x 10000 pixels, more than the limit of 89,478,485 (--max_pixels)"
    (result,) = score_files(scorer, [str(path)])
    assert result.score is None and result.error.startswith(message)
    with pytest.raises(IQAError) as error:
        load_images(tmp_path, [path.name], label="big", loading=ImageLoading(cache_dir=tmp_path / "c", verbose=False))
    assert str(error.value).startswith(message) and "raise --max_pixels" in str(error.value)
    assert not [warning for warning in recwarn if warning.category is Image.DecompressionBombWarning]


def test_the_pixel_limit_admits_its_own_size_and_can_be_raised_past_pillows(folder, tmp_path, pillows_limit):
    assert decode_image(folder / "grey.jpg", ImageSizing(), max_pixels=48 * 40).shape == (40, 48, 3)
    with pytest.raises(IQAError, match="declares 48 x 40 pixels, more than the limit of 1,919"):
        decode_image(folder / "grey.jpg", ImageSizing(), max_pixels=48 * 40 - 1)
    path = tmp_path / "huge.png"
    path.write_bytes(_png_declaring(14_000, 14_000))  # Pillow refuses above 2 x 89,478,485 pixels
    own_the_pixel_limit()
    with open_image(path, max_pixels=200_000_000) as image:
        assert image.size == (14_000, 14_000)


def test_an_image_too_big_for_the_memory_gets_a_message_and_its_batch_is_scored_one_by_one(
    scorer, tmp_path, monkeypatch
):
    paths = []
    for name, size in (("a.png", (32, 32)), ("b.png", (32, 32)), ("big.png", (64, 48))):
        _pattern(*size).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    alone = [score_files(scorer, [path])[0].score for path in paths[:2]]
    real = QualityModel.head_outputs

    def short_of_memory(self, images):
        if len(images) > 1 or images.shape[-1] > 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real(self, images)

    monkeypatch.setattr(QualityModel, "head_outputs", short_of_memory)
    results = score_files(replace(scorer, batch_size=4), paths)
    assert [result.score for result in results[:2]] == pytest.approx(alone, abs=1e-5)
    assert results[2].score is None
    assert results[2].error == (
        f"out of memory scoring image {paths[2]} at 64x48 on cpu: score it with --resize "
        f"(or on a machine with more memory)"
    )
