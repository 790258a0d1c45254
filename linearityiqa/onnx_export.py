"""Export a trained model to ONNX: one file that scores images in onnxruntime, without PyTorch.

The graph takes `images`, an N x 3 x H x W uint8 batch (H and W free without a resize),
normalizes it, runs IQAModel in float32 and gives `score`, the fused head mapped by the
checkpoint's k[0] * pq + b[0] (N), and `heads`, the raw pq6, pq7, pq (N x 3). Its metadata_props
(`onnx_metadata`) record the model, the resize and the mappings for onnx_scoring.py.

The spatial pyramid pooling is rewritten for the export: ONNX's pooling takes its kernel,
int(size / p) in SPSP, as a constant, so PyTorch's exporters bake in the example image's and
score every other size wrongly (or fix H and W). Here a level is the map cut into p x p cells
by a reshape, the cell size computed in the graph; an image too small for the levels, which
the PyTorch model refuses, scores NaN (onnxruntime cannot raise an error of its own).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

import onnx
import torch
from torch import nn

from linearityiqa.data.decoding import ImageSizing
from linearityiqa.data.image_transforms import normalize
from linearityiqa.errors import ConfigError, first_line
from linearityiqa.onnx_scoring import FORMAT
from linearityiqa.paper import IQAmodel
from linearityiqa.records.scale import TrainingScale
from linearityiqa.records.writing import replacing_path
from linearityiqa.scoring import QualityModel

# Protocol buffers hold at most 2 GiB; a model above it would need its weights in a second file.
_LARGEST_MODEL_BYTES = 2**31 - 2**24  # less a margin for the graph itself


def export_onnx(model: QualityModel, path: str | os.PathLike) -> dict[str, str]:
    """Write `model` (linearityiqa.load) as an ONNX file at `path` (its folder made if needed) that
    scores uint8 images, whole or not at all (an earlier file there is kept); on the CPU in float32,
    on a copy of the model's weights, whatever device and precision `model` scores with, in the
    exporter's opset. Returns the metadata written into the file.
    """
    settings = dict(model.settings)  # arch, pool, use_bn_end, P6 and P7, as the model was built
    network = OnnxScoring(_exportable_copy(model.model, settings, model.sizing), k=model.k[0], b=model.b[0])
    proto = _exported_proto(network.eval(), settings, model.sizing)
    metadata = onnx_metadata(settings, model.sizing, k=model.k, b=model.b, scale=model.scale)
    onnx.helper.set_model_props(proto, metadata)  # replaces the exporter's own, if any
    onnx.checker.check_model(proto, full_check=True)
    with replacing_path(path, what="the ONNX model", advice="pass another --output") as partial:
        onnx.save_model(proto, partial)
    return metadata


class OnnxScoring(nn.Module):
    """IQAModel (on the CPU in float32, in eval mode) behind the normalization of uint8 images,
    with pooling that any image size exports with, and the fused head mapped by `k` * pq + `b`."""

    def __init__(self, model: IQAmodel.IQAModel, *, k: float, b: float):
        super().__init__()
        self.model, self.k, self.b = model, k, b

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        x = normalize(images)
        # IQAModel.extract_features, with the pooling of spatial_pyramid; the second tap is the last layer.
        for index, layer in enumerate(model.features):
            x = layer(x)
            if index == model.id1:
                f6 = model.dr6(spatial_pyramid(x, model.P6, model.pool))
        f7 = model.dr7(spatial_pyramid(x, model.P7, model.pool))
        heads = torch.cat((model.regr6(f6), model.regr7(f7), model.regression(torch.cat((f6, f7), dim=1))), dim=1)
        return self.k * heads[:, 2] + self.b, heads


def spatial_pyramid(x: torch.Tensor, levels: int, method: str) -> torch.Tensor:
    """IQAmodel.SPSP of an N x C x H x W map over `levels` levels, in operations whose sizes the
    ONNX graph computes from the map's.

    Level p pools as SPSP does with kernel = stride = int(size / p): it cuts the first
    p * int(size / p) rows and columns into p x p cells and reduces each. A side of size
    s = p * cell + rest tiles into exactly p cells of int(s / p) = cell when rest < cell (which
    also rules out cell = 0): IQAmodel._pool_size's test, in the graph. A map that SPSP refuses
    pools to NaN here, so that its image scores NaN, not a number.
    """
    n, c, height, width = x.shape
    pooled = []
    for p in range(1, levels + 1):
        cell_h, cell_w = height // p, width // p
        cells = x[:, :, : p * cell_h, : p * cell_w].reshape(n, c, p, cell_h, p, cell_w)
        tiles = torch.tensor([height - p * cell_h, width - p * cell_w]) < torch.tensor([cell_h, cell_w])
        level = _reduced(cells, method) + torch.where(tiles.all(), 0.0, float("nan"))
        pooled.append(level.reshape(n, -1))
    return torch.cat(pooled, dim=1)


def _reduced(cells: torch.Tensor, method: str) -> torch.Tensor:
    """N x C x p x h x p x w cells reduced over each cell's h x w values, by `method`."""
    within = (3, 5)
    if method == "avg":
        return cells.mean(dim=within)
    if method == "max":
        return cells.amax(dim=within)
    if method == "min":
        return cells.amin(dim=within)
    if method == "maxmin":
        return torch.cat((cells.amax(dim=within), cells.amin(dim=within)), dim=1)
    # std and mean-std: sqrt(E[x^2] - E[x]^2) clipped at 0, as IQAmodel._std_pool
    mean = cells.mean(dim=within)
    std = torch.sqrt(torch.relu((cells * cells).mean(dim=within) - mean * mean))
    return std if method == "std" else torch.cat((mean, std), dim=1)


def _exportable_copy(network: IQAmodel.IQAModel, settings: dict[str, Any], sizing: ImageSizing) -> IQAmodel.IQAModel:
    """A new IQAModel with the weights of `network`, on the CPU in float32 and contiguous, in eval
    mode; `network` itself (maybe on a GPU, in channels_last) is left as it is. A model too large
    for one file is refused, and so is a resize too small for its pyramid levels, whose file would
    score every image NaN."""
    size = sum(tensor.numel() * 4 for tensor in network.state_dict().values())
    if size > _LARGEST_MODEL_BYTES:
        raise ConfigError(
            f"the model has {size / 2**30:.1f} GiB of weights, more than one ONNX file holds (2 GiB): "
            f"score it with PyTorch (test_demo.py --trained_model_file)"
        )
    with torch.device("meta"):  # shapes only, no memory nor arithmetic, until to_empty allocates the copy
        copy = IQAmodel.IQAModel(**settings, pretrained=False).eval()
        try:
            if sizing.resize_hw is not None:
                copy(torch.empty(1, 3, *sizing.resize_hw))
        except (ConfigError, RuntimeError) as error:  # the pooling's refusal; a map that shrinks to nothing
            height, width = sizing.resize_hw
            raise ConfigError(
                f"images resized to {height} x {width} are too small for this model ({first_line(error)}): "
                f"pass a larger --resize_size_h and --resize_size_w"
            ) from None
    copy.to_empty(device="cpu")
    copy.load_state_dict(network.state_dict())
    return copy


def onnx_metadata(
    settings: dict[str, Any], sizing: ImageSizing, *, k: list[float], b: list[float], scale: TrainingScale | None = None
) -> dict[str, str]:
    """The metadata_props of the ONNX file, every value a string; the scale where the checkpoint records it."""
    height, width = sizing.resize_hw or (0, 0)
    recorded = {} if scale is None else {"scale": json.dumps(asdict(scale))}
    return {
        "linearityiqa_format": FORMAT,
        "arch": settings["arch"],
        "pool": settings["pool"],
        "use_bn_end": json.dumps(bool(settings["use_bn_end"])),
        "P6": str(settings["P6"]),
        "P7": str(settings["P7"]),
        "resize": json.dumps(sizing.resize_hw is not None),
        "resize_size_h": str(height),
        "resize_size_w": str(width),
        "k": json.dumps([float(value) for value in k]),
        "b": json.dumps([float(value) for value in b]),
        **recorded,
    }


def _exported_proto(network: OnnxScoring, settings: dict[str, Any], sizing: ImageSizing) -> onnx.ModelProto:
    """The ONNX graph of `network` (torch.export's exporter), with its weights, in memory; traced on
    2 images (a batch of 1 would fix N to 1) of the resize's size, else, with H and W free, of a
    size whose feature maps every pyramid level can pool."""
    axes = {0: torch.export.Dim("batch")}
    if sizing.resize_hw is not None:
        height, width = sizing.resize_hw
    else:
        # The last tap's map, 1/32 of the image, is levels^2 (+1) cells a side; H != W, so the two stay apart.
        levels = max(settings["P6"], settings["P7"], 2)
        height, width = 32 * levels**2, 32 * (levels**2 + 1)
        axes.update({2: torch.export.Dim("height"), 3: torch.export.Dim("width")})
    program = torch.onnx.export(
        network,
        (torch.zeros(2, 3, height, width, dtype=torch.uint8),),
        input_names=["images"],
        output_names=["score", "heads"],
        dynamo=True,
        dynamic_shapes={"images": axes},
        external_data=False,
        verbose=False,
    )
    return program.model_proto
