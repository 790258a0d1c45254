"""IQAmodel: SPSP pooling, the checkpoint contract of names and shapes, the backbones,
ImageNet weights without network, and running on CPU in the formats the training uses."""

from __future__ import annotations

import os
from urllib.error import URLError

import pytest
import torch
import torchvision

import IQAmodel
from IQAmodel import SPSP, IQAModel
from linearityiqa.errors import BadFileError, ConfigError, MissingFileError

# A 4 x 4 map holding 0..15 row by row; its 2 x 2 cells are [0 1 4 5], [2 3 6 7], [8 9 12 13], [10 11 14 15].
RAMP = torch.arange(16.0).view(1, 1, 4, 4)
CELL_STD = 4.25**0.5  # population std of every 2 x 2 cell: E[x^2] - E[x]^2 = 10.5 - 2.5^2
MAP_STD = 21.25**0.5  # population std of 0..15: (16^2 - 1) / 12


@pytest.mark.parametrize(
    "method, expected",
    [
        ("avg", [7.5, 2.5, 4.5, 10.5, 12.5]),
        ("max", [15, 5, 7, 13, 15]),
        ("min", [0, 0, 2, 8, 10]),
        ("std", [MAP_STD] + [CELL_STD] * 4),
        # paired methods: per level all channels of the first statistic, then of the second
        ("maxmin", [15, 0, 5, 7, 13, 15, 0, 2, 8, 10]),
        ("mean-std", [7.5, MAP_STD, 2.5, 4.5, 10.5, 12.5] + [CELL_STD] * 4),
    ],
)
def test_spsp_two_levels_by_hand(method, expected):
    assert torch.allclose(SPSP(RAMP, P=2, method=method), torch.tensor([expected], dtype=torch.float32), atol=1e-5)


def test_spsp_orders_channels_before_cells_and_keeps_samples_apart():
    x = torch.stack((RAMP[0, 0], 100 + RAMP[0, 0])).unsqueeze(0)  # 1 x 2 x 4 x 4
    x = torch.cat((x, -x))  # second sample
    out = SPSP(x, P=2, method="avg")
    assert out.shape == (2, 2 * (1 + 4))
    assert out[0].tolist() == [7.5, 107.5, 2.5, 4.5, 10.5, 12.5, 102.5, 104.5, 110.5, 112.5]
    assert torch.equal(out[1], -out[0])


def test_spsp_kernel_is_int_of_size_over_level():
    # a 5 x 5 map at level 2: kernel = stride = 2, so the last row and column are left out
    x = torch.arange(25.0).view(1, 1, 5, 5)
    assert SPSP(x, P=2, method="max")[0, 1:].tolist() == [6, 8, 16, 18]


def test_spsp_refuses_a_map_it_cannot_tile():
    with pytest.raises(ConfigError, match="cannot be pooled into 3 x 3 cells"):
        SPSP(torch.zeros(1, 1, 5, 5), P=3)


def test_spsp_unknown_method_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown pooling method 'median'"):
        SPSP(RAMP, method="median")


def _bn(name, channels):
    return [
        (f"{name}.weight", (channels,)),
        (f"{name}.bias", (channels,)),
        (f"{name}.running_mean", (channels,)),
        (f"{name}.running_var", (channels,)),
        (f"{name}.num_batches_tracked", ()),
    ]


def _resnet_block(prefix, inplanes, planes, stride, bottleneck, groups, width_per_group):
    """Parameter names and shapes of one torchvision-style residual block."""
    if bottleneck:
        width = int(planes * width_per_group / 64) * groups
        out = planes * 4
        names = [(f"{prefix}.conv1.weight", (width, inplanes, 1, 1))] + _bn(f"{prefix}.bn1", width)
        names += [(f"{prefix}.conv2.weight", (width, width // groups, 3, 3))] + _bn(f"{prefix}.bn2", width)
        names += [(f"{prefix}.conv3.weight", (out, width, 1, 1))] + _bn(f"{prefix}.bn3", out)
    else:
        out = planes
        names = [(f"{prefix}.conv1.weight", (planes, inplanes, 3, 3))] + _bn(f"{prefix}.bn1", planes)
        names += [(f"{prefix}.conv2.weight", (planes, planes, 3, 3))] + _bn(f"{prefix}.bn2", planes)
    if stride != 1 or inplanes != out:
        names += [(f"{prefix}.downsample.0.weight", (out, inplanes, 1, 1))] + _bn(f"{prefix}.downsample.1", out)
    return names, out


def resnet_features(blocks, bottleneck, groups=1, width_per_group=64):
    """`features.*` of a ResNet (He et al.) without avgpool and fc, children numbered 0..7."""
    names = [("features.0.weight", (64, 3, 7, 7))] + _bn("features.1", 64)
    inplanes = 64
    for layer, (count, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
        for block in range(count):
            stride = 2 if layer > 0 and block == 0 else 1
            block_names, inplanes = _resnet_block(
                f"features.{4 + layer}.{block}", inplanes, planes, stride, bottleneck, groups, width_per_group
            )
            names += block_names
    return names


def heads(in6, in7, use_bn_end=False):
    """dr6, dr7, regr6, regr7 and regression, as in the authors' checkpoints."""
    names = []
    for dr, inputs in (("dr6", in6), ("dr7", in7)):
        names += [(f"{dr}.0.weight", (1024, inputs)), (f"{dr}.0.bias", (1024,))] + _bn(f"{dr}.1", 1024)
        names += [(f"{dr}.2.weight", (256, 1024)), (f"{dr}.2.bias", (256,))] + _bn(f"{dr}.3", 256)
        names += [(f"{dr}.4.weight", (64, 256)), (f"{dr}.4.bias", (64,))] + _bn(f"{dr}.5", 64)
    for regressor, inputs in (("regr6", 64), ("regr7", 64), ("regression", 128)):
        linear = f"{regressor}.0" if use_bn_end else regressor
        names += [(f"{linear}.weight", (1, inputs)), (f"{linear}.bias", (1,))]
        if use_bn_end:
            names += _bn(f"{regressor}.1", 1)
    return names


def state_dict_shapes(model):
    return [(name, tuple(tensor.shape)) for name, tensor in model.state_dict().items()]


def meta_model(**kwargs):
    """The model on the meta device: names, shapes and forward shapes without memory or compute."""
    with torch.device("meta"):
        return IQAModel(pretrained=False, **kwargs)


def test_resnet18_state_dict_matches_the_checkpoint_layout():
    expected = resnet_features([2, 2, 2, 2], bottleneck=False) + heads(256, 512)
    assert state_dict_shapes(meta_model(arch="resnet18")) == expected


def test_resnext101_32x8d_state_dict_matches_the_released_checkpoints():
    # p1q2.pth and p1q2plus0.1variant.pth: resnext101_32x8d, avg pooling, P6 = P7 = 1, no end BN
    expected = resnet_features([3, 4, 23, 3], bottleneck=True, groups=32, width_per_group=8) + heads(1024, 2048)
    assert state_dict_shapes(meta_model(arch="resnext101_32x8d")) == expected


def test_use_bn_end_and_pyramid_levels_change_only_the_heads():
    model = meta_model(arch="resnet18", pool="maxmin", use_bn_end=True, P6=2, P7=3)
    expected = resnet_features([2, 2, 2, 2], bottleneck=False) + heads(256 * 2 * 5, 512 * 2 * 14, use_bn_end=True)
    assert state_dict_shapes(model) == expected


@pytest.mark.parametrize(
    "arch, taps, channels",
    [
        ("resnet18", (6, 7), (256, 512)),
        ("resnet34", (6, 7), (256, 512)),
        ("resnet50", (6, 7), (1024, 2048)),
        ("resnet101", (6, 7), (1024, 2048)),
        ("resnet152", (6, 7), (1024, 2048)),
        ("resnext50_32x4d", (6, 7), (1024, 2048)),
        ("resnext101_32x8d", (6, 7), (1024, 2048)),
        ("wide_resnet50_2", (6, 7), (1024, 2048)),
        ("alexnet", (9, 12), (256, 256)),
        ("vgg16", (23, 30), (512, 512)),
    ],
)
def test_backbones_tap_the_documented_layers(arch, taps, channels):
    model = meta_model(arch=arch)
    assert (model.id1, model.id2) == taps
    assert len(model.features) == taps[1] + 1
    assert (model.dr6[0].in_features, model.dr7[0].in_features) == channels
    # the maps at the taps really have those channels: run the model through with shapes only
    seen = {}
    for index in taps:
        model.features[index].register_forward_hook(lambda m, i, out, index=index: seen.update({index: out.shape[1]}))
    scores = model(torch.empty(2, 3, 224, 224, device="meta"))
    assert [tuple(s.shape) for s in scores] == [(2, 1)] * 3
    assert (seen[taps[0]], seen[taps[1]]) == channels


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"unknown arch 'resnet19'.*resnet18"):
        IQAModel(arch="resnet19", pretrained=False)


def test_unknown_pool_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown pooling method 'median'"):
        meta_model(arch="resnet18", pool="median")


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return IQAModel(arch="resnet18", pretrained=False, P6=2, P7=2).eval()


def test_forward_returns_three_scores_per_image(resnet18):
    scores = resnet18(torch.randn(3, 3, 128, 192))
    assert [tuple(s.shape) for s in scores] == [(3, 1)] * 3
    assert all(torch.isfinite(s).all() for s in scores)


def test_fused_score_is_the_regression_of_both_side_features(resnet18):
    x = torch.randn(2, 3, 64, 64)
    features, side_scores = resnet18.extract_features(x)
    scores = resnet18(x)
    assert features.shape == (2, 128)
    assert torch.allclose(scores[2], resnet18.regression(features))
    assert torch.allclose(scores[0], side_scores[0]) and torch.allclose(scores[1], side_scores[1])


def test_channels_last_gives_the_same_scores(resnet18):
    x = torch.randn(2, 3, 64, 64)
    expected = resnet18(x)
    fast = resnet18.to(memory_format=torch.channels_last)
    try:
        got = fast(x.contiguous(memory_format=torch.channels_last))
    finally:
        resnet18.to(memory_format=torch.contiguous_format)
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("pool", IQAmodel.POOLING_METHODS)
def test_every_pooling_trains_under_autocast(pool):
    torch.manual_seed(0)
    model = IQAModel(arch="resnet18", pool=pool, pretrained=False).train()
    seen = {}
    model.features[-1].register_forward_hook(lambda module, inputs, output: seen.update(dtype=output.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = model(torch.randn(2, 3, 64, 64))
    sum(s.sum() for s in scores).backward()
    # the backbone runs in bfloat16; the pooled features and the heads in float32
    assert seen["dtype"] == torch.bfloat16
    assert [s.dtype for s in scores] == [torch.float32] * 3
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.features[0].weight.grad is not None


def _save_resnet18_weights(path, seed):
    torch.manual_seed(seed)
    weights = torchvision.models.resnet18().state_dict()
    torch.save(weights, path)
    return weights


def test_pretrained_local_file_initialises_the_backbone(tmp_path):
    weights = _save_resnet18_weights(tmp_path / "r18.pth", seed=1)
    model = IQAModel(arch="resnet18", pretrained=str(tmp_path / "r18.pth"))
    assert torch.equal(model.features[0].weight, weights["conv1.weight"])
    assert torch.equal(model.features[7][1].bn2.running_var, weights["layer4.1.bn2.running_var"])


def test_pretrained_true_reads_torchvision_cache_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)
    os.makedirs(tmp_path / "checkpoints")
    # the file name of torchvision's IMAGENET1K_V1 resnet18 weights
    weights = _save_resnet18_weights(tmp_path / "checkpoints" / "resnet18-f37072fd.pth", seed=2)
    model = IQAModel(arch="resnet18", pretrained=True)
    assert torch.equal(model.features[4][0].conv1.weight, weights["layer1.0.conv1.weight"])


def test_pretrained_weights_that_cannot_be_downloaded_say_where_to_put_them(tmp_path, monkeypatch):
    def no_network(url, dst, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    # on the meta device: the backbone's 88M weights are never filled in, and the download is tried as on a CPU
    with pytest.raises(MissingFileError) as error, torch.device("meta"):
        IQAModel(arch="resnext101_32x8d", pretrained=True)
    message = str(error.value)
    assert "resnext101_32x8d-8ba56ff5.pth" in message
    assert str(tmp_path / "checkpoints") in message
    assert "https://download.pytorch.org/models/resnext101_32x8d-8ba56ff5.pth" in message


def zero_weights(arch):
    """torchvision's state_dict of `arch`, its names and shapes, each tensor zeros of one stored element
    (a file of a few kB rather than 100 MB): a mismatch is about names and shapes, not values."""
    with torch.device("meta"):
        shapes = torchvision.models.get_model(arch).state_dict()
    return {name: torch.zeros((), dtype=value.dtype).expand(value.shape) for name, value in shapes.items()}


def test_pretrained_file_problems_are_clear_errors(tmp_path):
    with pytest.raises(MissingFileError, match=r"nowhere.pth does not exist"):
        IQAModel(arch="resnet18", pretrained=str(tmp_path / "nowhere.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(BadFileError, match=r"cannot read pretrained weights file .*junk.pth"):
        IQAModel(arch="resnet18", pretrained=str(tmp_path / "junk.pth"))
    for other in ("resnet34", "resnet50"):  # more blocks; other shapes
        torch.save(zero_weights(other), tmp_path / f"{other}.pth")
        with pytest.raises(BadFileError, match="do not fit resnet18"):
            IQAModel(arch="resnet18", pretrained=str(tmp_path / f"{other}.pth"))


def test_an_authors_style_checkpoint_loads_strictly(tmp_path, resnet18):
    # the released files are dicts of model, optimizer, amp (apex's state), k and b
    torch.save(
        {
            "model": resnet18.state_dict(),
            "optimizer": {},
            "amp": {"loss_scaler0": {"loss_scale": 1.0}},
            "k": [1.0, 1.0, 1.0],
            "b": [0.0, 0.0, 0.0],
        },
        tmp_path / "released.pth",
    )
    checkpoint = torch.load(tmp_path / "released.pth", map_location="cpu", weights_only=True)
    fresh = IQAModel(arch="resnet18", pretrained=False, P6=2, P7=2).eval()
    fresh.load_state_dict(checkpoint["model"], strict=True)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(fresh(x)[2], resnet18(x)[2])
