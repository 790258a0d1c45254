"""What a score means and what a checkpoint is: the training scale main.py records and the files
that carry it, and the arch of the authors' files read off their weights."""

from __future__ import annotations

import pytest
import torch

import linearityiqa
from IQAmodel import IQAModel, supported_archs
from linearityiqa.errors import BadFileError, ConfigError
from linearityiqa.records.checkpoint import load_checkpoint, save_checkpoint, training_scale
from linearityiqa.records.scale import TrainingScale, score_meaning
from linearityiqa.scoring import weights_arch

SCALE = {"dataset": "KonIQ-10k", "mos_min": 3.0, "mos_max": 90.0, "mos_mean": 55.0, "higher_is_better": True}


def meta_weights(arch: str, **heads) -> dict[str, torch.Tensor]:
    with torch.device("meta"):  # shapes only
        return IQAModel(arch=arch, pretrained=False, **heads).state_dict()


@pytest.mark.parametrize("arch", supported_archs())
def test_every_supported_arch_is_read_off_its_weights(arch):
    weights = meta_weights(arch, pool="maxmin", use_bn_end=True, P6=2, P7=3)  # the heads do not matter
    assert weights_arch(weights, "resnext101_32x8d", "resnext101_32x8d") == arch


def test_the_weights_that_tell_resnets_apart():
    # torchvision's bottleneck width: planes * base_width / 64 * groups, convolved in `groups` groups
    second_conv = "features.4.0.conv2.weight"  # layer1's first block, after conv1, bn1, relu, maxpool
    assert tuple(meta_weights("resnet50")[second_conv].shape) == (64, 64, 3, 3)
    assert tuple(meta_weights("resnext101_32x8d")[second_conv].shape) == (256, 8, 3, 3)  # 64 * 8/64 * 32, 32 groups
    assert tuple(meta_weights("wide_resnet50_2")[second_conv].shape) == (128, 128, 3, 3)  # base width 128
    assert "features.4.0.conv3.weight" not in meta_weights("resnet18")  # basic blocks: two convolutions


def test_an_arch_given_is_kept_where_it_fits_and_one_line_where_it_contradicts():
    weights = meta_weights("resnet34")
    assert weights_arch(weights, "resnet34", "resnext101_32x8d") == "resnet34"
    with pytest.raises(ConfigError, match=r"^checkpoint x.pth holds the weights of resnet34, but --arch resnet50 "):
        weights_arch(weights, "resnet50", "resnext101_32x8d", path="x.pth")
    # weights of no supported arch: the arch asked for, whose strict load then names the mismatch
    assert weights_arch({"features.0.weight": torch.empty(1)}, "resnet50", "resnext101_32x8d") == "resnet50"


def test_a_scale_is_its_training_mos_range_and_mean():
    scale = TrainingScale.of("CLIVE", torch.tensor([10.0, 40.0, 70.0]))
    assert scale == TrainingScale("CLIVE", 10.0, 70.0, 40.0, True)
    assert score_meaning(scale) == (
        "k*y+b of the fused head, on CLIVE's training MOS (10 to 70, mean 40), higher is better; "
        "not clipped to that range"
    )
    assert "does not record" in score_meaning(None)


def test_load_exposes_the_recorded_scale(tmp_path):
    weights = IQAModel(arch="resnet18", pretrained=False).state_dict()
    settings = {"arch": "resnet18", "resize": True, "resize_size_h": 32, "resize_size_w": 32}
    save_checkpoint(
        str(tmp_path / "ours.pth"),
        {"model": weights, "k": [1.0] * 3, "b": [0.0] * 3, "settings": settings, "scale": SCALE},
    )
    model = linearityiqa.load(tmp_path / "ours.pth", device="cpu")
    assert model.scale == TrainingScale("KonIQ-10k", 3.0, 90.0, 55.0, True)
    assert training_scale(load_checkpoint(str(tmp_path / "ours.pth"))) == model.scale


@pytest.mark.reliability
@pytest.mark.parametrize(
    "scale, message",
    [
        ([1, 2, 3], "[1, 2, 3]"),
        ({**SCALE, "mos_mean": None}, "'mos_mean': None"),
        ({**SCALE, "mos_max": float("nan")}, "'mos_max': nan"),
        ({**SCALE, "mos_mean": 99.0}, "'mos_mean': 99.0"),
        ({key: value for key, value in SCALE.items() if key != "dataset"}, "'mos_min': 3.0"),
        ({**SCALE, "higher_is_better": "yes"}, "'higher_is_better': 'yes'"),
    ],
    ids=["not a dict", "not a number", "NaN", "out of order", "a field missing", "not a bool"],
)
def test_a_bad_recorded_scale_is_one_line_naming_the_file(scale, message, tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"model": {}, "k": [1.0] * 3, "b": [0.0] * 3, "scale": scale}, path)
    with pytest.raises(BadFileError) as raised:
        load_checkpoint(str(path))
    message_ = str(raised.value)
    assert message_.startswith(f"checkpoint {path}: 'scale' is ") and message in message_ and "\n" not in message_
    assert "not a dict of dataset (a name), mos_min <= mos_mean <= mos_max (finite numbers)" in message_
