"""The Python API (linearityiqa.load) and torch.hub's entry point: a score is test_demo.py's,
whatever form the image comes in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import read_scores, save_plain_images
from PIL import Image

import hubconf
import linearityiqa
import test_demo as demo
from IQAmodel import IQAModel
from linearityiqa.data.image_transforms import normalize
from linearityiqa.errors import ConfigError, MissingFileError
from linearityiqa.records.checkpoint import save_checkpoint

REPOSITORY = Path(__file__).resolve().parents[1]
# The authors' file is scored at small sizes on purpose: load's note about it is asserted once, below.
pytestmark = pytest.mark.filterwarnings("ignore:.*records no settings, as the authors' released:UserWarning")
K, B = [2.0, 0.5, -1.0], [50.0, 3.0, 7.0]
SETTINGS = {"arch": "resnet18", "pool": "avg", "use_bn_end": False, "P6": 1, "P7": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Checkpoints of one resnet18 (this project's, recording a resize, and the authors' layout)
    and images of three sizes."""
    folder = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    weights = IQAModel(arch="resnet18", pretrained=False).state_dict()
    settings = {**SETTINGS, "resize": True, "resize_size_h": 40, "resize_size_w": 56}
    save_checkpoint(str(folder / "ours.pth"), {"model": weights, "k": K, "b": B, "settings": settings})
    torch.save({"model": weights, "optimizer": {}, "amp": {}, "k": K, "b": B}, folder / "authors.pth")
    save_plain_images(folder / "images", {"a.jpg": (48, 32), "b.png": (64, 40), "c.jpg": (33, 47)})
    return folder


def demo_scores(argv, tmp_path) -> list[float]:
    assert demo.main([*argv, "-o", str(tmp_path / "scores.csv"), "-ebs", "1"]) == 0
    return [float(row["score"]) for row in read_scores((tmp_path / "scores.csv").read_text())]


@pytest.mark.parametrize(
    "checkpoint, options, settings",
    [
        ("ours.pth", [], {}),  # the checkpoint records the model and the resize
        ("authors.pth", ["--arch", "resnet18"], {"arch": "resnet18"}),  # each image at its own size
        ("authors.pth", ["--arch", "resnet18", "--resize", "-rs_h", "36", "-rs_w", "52"],
         {"arch": "resnet18", "resize": True, "resize_size_h": 36, "resize_size_w": 52}),
    ],
)  # fmt: skip
def test_scores_are_test_demos_to_the_last_digit(trained, checkpoint, options, settings, tmp_path):
    paths = [str(trained / "images" / name) for name in ("a.jpg", "b.png", "c.jpg")]
    expected = demo_scores(["--img", str(trained / "images"), "--trained_model_file", str(trained / checkpoint),
                            *options], tmp_path)  # fmt: skip
    model = linearityiqa.load(trained / checkpoint, device="cpu", batch_size=1, **settings)
    assert model.score(paths) == expected
    assert [model.score(path) for path in paths] == expected


def test_a_pil_image_an_array_and_a_tensor_score_as_their_file(trained):
    model = linearityiqa.load(trained / "ours.pth", device="cpu")
    path = trained / "images" / "b.png"
    expected = model.score(path)
    with Image.open(path) as image:
        assert model.score(image) == expected
        pixels = np.asarray(image.convert("RGB"))
    assert model.score(pixels) == expected
    resized = torch.from_numpy(np.array(Image.fromarray(pixels).resize((56, 40), Image.BILINEAR))).permute(2, 0, 1)
    assert model.score(resized) == expected  # a tensor is taken as sized already
    # normalized floats, as a user's own pipeline may give them: the same but for rounding
    assert model.score(normalize(resized[None].contiguous()))[0] == pytest.approx(expected, rel=1e-5)


def test_an_exif_rotated_pil_image_is_scored_upright_as_its_file(trained, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: a viewer turns it 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "turned.png", exif=exif)
    model = linearityiqa.load(trained / "authors.pth", arch="resnet18", device="cpu")
    with Image.open(tmp_path / "turned.png") as image:
        assert model.score(image) == model.score(tmp_path / "turned.png")
    upright = np.ascontiguousarray(np.rot90(pixels, k=-1))
    assert model.score(upright) == model.score(tmp_path / "turned.png")


def test_batches_keep_the_input_order_and_heads_give_the_raw_outputs(trained):
    model = linearityiqa.load(trained / "authors.pth", arch="resnet18", device="cpu", batch_size=8)
    paths = [trained / "images" / name for name in ("a.jpg", "b.png", "a.jpg", "c.jpg")]
    one_by_one = [model.score(path) for path in paths]
    assert model.score(paths) == pytest.approx(one_by_one, rel=1e-5)  # a and a share a batch
    predictions = model.score(paths, heads=True)
    for prediction, score in zip(predictions, one_by_one):
        assert prediction.score == pytest.approx(score, rel=1e-5)
        assert prediction.score == pytest.approx(K[0] * prediction.heads[2] + B[0], rel=1e-6)
    batch = torch.stack([torch.zeros(3, 32, 32, dtype=torch.uint8), torch.full((3, 32, 32), 255, dtype=torch.uint8)])
    assert len(model.score(batch)) == 2 and isinstance(model.score(batch[0]), float)


def test_settings_given_are_checked_against_the_checkpoint(trained):
    with pytest.raises(ConfigError, match=r"was trained with arch='resnet18', but arch='resnet34' was asked for"):
        linearityiqa.load(trained / "ours.pth", arch="resnet34", device="cpu")
    # the authors' files record nothing: the arch is read off the weights, and one given must fit them
    with pytest.warns(UserWarning, match=r"authors.pth records no settings, .* trained at 498x664 \(--resize\)"):
        assert linearityiqa.load(trained / "authors.pth", device="cpu").settings["arch"] == "resnet18"
    with pytest.raises(ConfigError, match=r"holds the weights of resnet18, but --arch resnet34 was asked for"):
        linearityiqa.load(trained / "authors.pth", arch="resnet34", device="cpu")
    with pytest.raises(MissingFileError, match=r"checkpoint .*absent.pth does not exist"):
        linearityiqa.load(trained / "absent.pth", device="cpu")


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((8, 8), dtype=np.uint8), r"an image array is H x W x 3 of uint8 \(RGB\), not \(8, 8\) of uint8"),
        (np.zeros((8, 8, 3)), r"not \(8, 8, 3\) of float64"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), r"3 x H x W or N x 3 x H x W, not \(2, 1, 8, 8\)"),
        (3.5, r"cannot score a float: pass a path, a PIL image"),
    ],
)
def test_what_is_not_an_image_is_one_clear_error(trained, image, message):
    model = linearityiqa.load(arch="resnet18", device="cpu")
    with pytest.raises(ConfigError, match=message):
        model.score(image)


def test_without_a_checkpoint_the_model_is_random_and_unmapped(trained):
    model = linearityiqa.load(arch="resnet18", device="cpu")
    prediction = model.score(trained / "images" / "a.jpg", heads=True)
    assert prediction.score == prediction.heads[2] and model.k == [1.0] * 3


def test_torch_hub_loads_the_entry_point_from_a_folder(trained):
    model = torch.hub.load(
        str(REPOSITORY), "linearityiqa", source="local", trained_model_file=str(trained / "ours.pth"), device="cpu"
    )
    path = trained / "images" / "c.jpg"
    assert model.score(path) == linearityiqa.load(trained / "ours.pth", device="cpu").score(path)
    # what torch.hub.list and torch.hub.help show: the one entry point and its docstring
    assert [name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")] == [
        "linearityiqa"
    ]
    assert "trained_model_file" in hubconf.linearityiqa.__doc__
    assert all(__import__(module) for module in hubconf.dependencies)
