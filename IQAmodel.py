"""The no-reference IQA model of the paper: an ImageNet backbone with two side outputs.

Features are taken after two stages of the backbone (layer3 and layer4 for ResNets),
pooled by spatial pyramid pooling (`SPSP`), reduced to 64 dimensions each (`dr6`,
`dr7`) and regressed to three quality scores: one per stage (`regr6`, `regr7`) and one
from both stages together (`regression`), which is the model's answer.

The module and parameter names are those of the authors' released checkpoints, so
`checkpoints/p1q2.pth` loads with `load_state_dict(strict=True)`.
"""

from __future__ import annotations

import contextlib
import os
import textwrap
from urllib.error import URLError

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from linearityiqa.choices import POOLING_METHODS, RESNET_FAMILIES
from linearityiqa.errors import BadFileError, ConfigError, MissingFileError, read_torch_file

# Children after which the side outputs are taken, and their channel counts (the keys are
# choices.FEATURES_ONLY_ARCHS, which the ONNX path checks without torchvision).
# ResNets take the output of layer3 and layer4; their channels are read off the model.
_FEATURES_ONLY_ARCHS = {
    "alexnet": {"ids": (9, 12), "channels": (256, 256)},
    "vgg16": {"ids": (23, 30), "channels": (512, 512)},
}
_RESNET_IDS = (6, 7)


def supported_archs() -> list[str]:
    """Names of the torchvision backbones this model can be built on."""
    names = torchvision.models.list_models(module=torchvision.models)
    return sorted(n for n in names if n in _FEATURES_ONLY_ARCHS or n.startswith(RESNET_FAMILIES))


def _check_pooling_method(method: str) -> None:
    if method not in POOLING_METHODS:
        raise ConfigError(f"unknown pooling method {method!r}: use one of {', '.join(POOLING_METHODS)}")


def _pool_size(map_size: torch.Size, p: int) -> list[int]:
    """Kernel and stride of level p: int(size / p), which must tile the map into p x p cells."""
    size = [int(d / p) for d in map_size]
    if min(size) == 0 or any(d // s != p for d, s in zip(map_size, size)):
        raise ConfigError(
            f"a {tuple(map_size)} feature map cannot be pooled into {p} x {p} cells of "
            f"int(size / {p}): use larger input images or fewer pyramid levels (P6, P7)"
        )
    return size


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32, unless it is in float64 already."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _std_pool(x: torch.Tensor, size: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Local mean and standard deviation, as sqrt(E[x^2] - E[x]^2) clipped at 0."""
    # E[x^2] - E[x]^2 cancels catastrophically in float16, so it is taken in float32.
    x = at_least_float32(x)
    mean = F.avg_pool2d(x, size)
    std = torch.sqrt(F.relu(F.avg_pool2d(x * x, size) - mean * mean))
    return mean, std


def _pool_level(x: torch.Tensor, size: list[int], method: str) -> torch.Tensor:
    if method == "avg":
        return F.avg_pool2d(x, size)
    if method == "max":
        return F.max_pool2d(x, size)
    if method == "min":
        return -F.max_pool2d(-x, size)
    if method == "maxmin":
        return torch.cat((F.max_pool2d(x, size), -F.max_pool2d(-x, size)), dim=1)
    mean, std = _std_pool(x, size)
    return std if method == "std" else torch.cat((mean, std), dim=1)


def SPSP(x: torch.Tensor, P: int = 1, method: str = "avg") -> torch.Tensor:
    """Spatial pyramid pooling of a feature map.

    Level p (1..P) divides the map into p x p cells (kernel = stride = int(size / p)),
    pools each cell with `method`, and flattens; the levels are concatenated.

    Args:
        x: feature map, N x C x H x W (any memory format).
        P: number of pyramid levels.
        method: one of `POOLING_METHODS`; `maxmin` and `mean-std` give 2C values per cell.

    Returns:
        N x (C * c * sum(p * p for p in 1..P)) features, with c = 2 for the paired methods.
    """
    _check_pooling_method(method)
    levels = [_pool_level(x, _pool_size(x.shape[-2:], p), method) for p in range(1, P + 1)]
    # reshape, not view: pooled maps of a channels_last input are not contiguous.
    return torch.cat([level.reshape(x.size(0), -1) for level in levels], dim=1)


# The most weights a side output's first layer may have (its inputs x 1024): 4 GiB in float32,
# eleven pyramid levels of resnext101_32x8d's layer3 or eight of its layer4 with mean-std
# pooling. More is a mistake, refused before the layer is allocated.
_LARGEST_HEAD = 2**30
_HEAD_WIDTH = 1024


def _pooled_features(name: str, levels: int, channels: int) -> int:
    """The length of a side output's pooled features: each pyramid level p pools p x p bins of `channels`."""
    features = channels * sum(p * p for p in range(1, levels + 1))
    if features * _HEAD_WIDTH > _LARGEST_HEAD:
        raise ConfigError(
            f"{name}={levels} pyramid levels make {features:,} pooled features, and the head that reduces them "
            f"{features * _HEAD_WIDTH * 4 / 2**30:,.0f} GiB of weights: pass fewer levels (--{name})"
        )
    return features


def _reduction_head(in_features: int) -> nn.Sequential:
    """`dr6` / `dr7`: pooled features to 64 dimensions."""
    return nn.Sequential(
        nn.Linear(in_features, _HEAD_WIDTH),
        nn.BatchNorm1d(_HEAD_WIDTH),
        nn.Linear(_HEAD_WIDTH, 256),
        nn.BatchNorm1d(256),
        nn.Linear(256, 64),
        nn.BatchNorm1d(64),
        nn.ReLU(),
    )


def _regression_head(in_features: int, use_bn_end: bool) -> nn.Module:
    linear = nn.Linear(in_features, 1)
    return nn.Sequential(linear, nn.BatchNorm1d(1)) if use_bn_end else linear


def imagenet_state_dict(arch: str, pretrained: bool | str) -> dict:
    """The ImageNet weights the backbone starts from.

    Args:
        arch: torchvision model name.
        pretrained: True for torchvision's IMAGENET1K_V1 weights (the paper's), read
            from torchvision's cache and downloaded there on first use; or the path of
            a local file holding the torchvision model's state_dict.
    """
    if isinstance(pretrained, (str, os.PathLike)):
        return _load_local_weights(os.fspath(pretrained))
    url = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if not os.path.isfile(cached):
        try:
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            # torchvision's file names carry the start of their SHA-256, as torch.hub expects.
            hash_prefix = torch.hub.HASH_REGEX.search(os.path.basename(cached)).group(1)
            torch.hub.download_url_to_file(url, cached, hash_prefix=hash_prefix, progress=True)
        except (URLError, OSError, RuntimeError) as error:  # RuntimeError: hash mismatch
            raise MissingFileError(
                f"cannot download the ImageNet weights of {arch} ({error}): fetch {url} on a machine "
                f"with network and put {os.path.basename(cached)} into {os.path.dirname(cached)}, "
                f"or pass a local weights file"
            ) from None
    return _load_local_weights(cached)


def _load_local_weights(path: str) -> dict:
    return read_torch_file(
        path,
        what="pretrained weights file",
        option="--pretrained",
        advice="check the path (--pretrained)",
        expected="a torchvision state_dict saved with torch.save",
    )


def _build_backbone(arch: str, pretrained: bool | str) -> nn.Module:
    if arch not in supported_archs():
        raise ConfigError(f"unknown arch {arch!r}: use one of {', '.join(supported_archs())}")
    model = torchvision.models.get_model(arch, weights=None)
    if pretrained:
        try:
            model.load_state_dict(imagenet_state_dict(arch, pretrained))
        except RuntimeError as error:  # names or shapes of another model
            # torch lists every missing and unexpected name: thousands of characters for a checkpoint
            shown = textwrap.shorten(str(error), 200, placeholder=" ...")
            raise BadFileError(
                f"the pretrained weights do not fit {arch} ({shown}): --pretrained takes torchvision's ImageNet "
                f"weights of --arch (a state_dict), not a checkpoint of this project"
            ) from None
    return model


def _features_and_taps(arch: str, backbone: nn.Module) -> tuple[list[nn.Module], tuple[int, int], tuple[int, int]]:
    """The backbone's feature layers, the indices of the two taps and their channels."""
    if arch in _FEATURES_ONLY_ARCHS:
        spec = _FEATURES_ONLY_ARCHS[arch]
        return list(backbone.features), spec["ids"], spec["channels"]
    # ResNets without avgpool and fc; layer4 has twice the channels of layer3.
    channels7 = backbone.fc.in_features
    return list(backbone.children())[:-2], _RESNET_IDS, (channels7 // 2, channels7)


class IQAModel(nn.Module):
    """The paper's model: backbone, two pooled side outputs and three regressors.

    Args:
        arch: torchvision backbone: any ResNet/ResNeXt/Wide ResNet, `alexnet` or `vgg16`.
        pool: `SPSP` pooling method, one of `POOLING_METHODS`.
        use_bn_end: put a BatchNorm1d(1) after each final regressor.
        P6: pyramid levels for the first side output.
        P7: pyramid levels for the second side output.
        pretrained: True for ImageNet weights from torchvision's cache, a path to a
            local weights file, or False for random initialisation (e.g. when a trained
            checkpoint replaces all weights anyway).

    Calling the model on an N x 3 x H x W batch returns `[pq6, pq7, pq]`, each N x 1:
    the scores from the first side output, the second one and both together.
    """

    def __init__(
        self,
        arch: str = "resnext101_32x8d",
        pool: str = "avg",
        use_bn_end: bool = False,
        P6: int = 1,
        P7: int = 1,
        pretrained: bool | str = True,
    ):
        super().__init__()
        _check_pooling_method(pool)
        self.pool, self.P6, self.P7 = pool, P6, P7
        layers, (self.id1, self.id2), (channels6, channels7) = _features_and_taps(
            arch, _build_backbone(arch, pretrained)
        )
        self.features = nn.Sequential(*layers)
        c = 2 if pool in ("maxmin", "mean-std") else 1  # values per channel and cell that SPSP gives
        self.dr6 = _reduction_head(_pooled_features("P6", P6, channels6 * c))
        self.dr7 = _reduction_head(_pooled_features("P7", P7, channels7 * c))
        self.regr6 = _regression_head(64, use_bn_end)
        self.regr7 = _regression_head(64, use_bn_end)
        self.regression = _regression_head(64 * 2, use_bn_end)

    def extract_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The concatenated 64-d features of both side outputs and their two scores."""
        # The second tap is the last feature layer of every supported backbone.
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == self.id1:
                f6 = self._reduced(self.dr6, x, self.P6)
        f7 = self._reduced(self.dr7, x, self.P7)
        with _full_precision(x):
            return torch.cat((f6, f7), dim=1), [self.regr6(f6), self.regr7(f7)]

    def _reduced(self, head: nn.Module, feature_map: torch.Tensor, levels: int) -> torch.Tensor:
        # Under autocast the heads still run in float32: they cost next to nothing, and a score
        # in bfloat16 keeps only 3 significant digits, too few to rank images of close quality.
        with _full_precision(feature_map):
            return head(SPSP(at_least_float32(feature_map), P=levels, method=self.pool))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features, side_scores = self.extract_features(x)
        with _full_precision(features):
            return side_scores + [self.regression(features)]


def _full_precision(like: torch.Tensor) -> contextlib.AbstractContextManager:
    """A region where autocast, if on, is off: operations run in their inputs' own types."""
    # Devices without autocast (the meta device of shape checks) have nothing to turn off.
    if like.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(like.device.type):
        return torch.autocast(like.device.type, enabled=False)
    return contextlib.nullcontext()
