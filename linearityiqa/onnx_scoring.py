"""Score images with an exported ONNX model in onnxruntime, without PyTorch (Pillow, NumPy, onnx
and onnxruntime only). The graph (onnx_export.py) takes uint8 images and answers `score` and
`heads`; its metadata records the resize, so scoring needs no flags.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS, ImageSizing
from linearityiqa.errors import BadFileError, ConfigError, MissingFileError, file_problem, first_line
from linearityiqa.records.scale import TrainingScale, recorded_scale

FORMAT = "1"
_REEXPORT = "export it again with export_onnx.py"


@dataclass(frozen=True)
class OnnxModel:
    """An onnxruntime InferenceSession as image_scoring's backend, with the sizing and scale it was exported with."""

    session: object
    sizing: ImageSizing
    scale: TrainingScale | None
    batch_size: int
    max_pixels: int = DEFAULT_MAX_PIXELS
    where: str = "onnxruntime"
    note: str | None = None

    def scores_and_heads(self, images: np.ndarray) -> tuple[list[float], list[tuple[float, float, float]]]:
        batch = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        scores, heads = self.session.run(["score", "heads"], {"images": batch})
        if np.isnan(scores).any():  # the graph's answer where PyTorch refuses images too small to pool
            height, width = images.shape[1:3]
            raise ConfigError(
                f"images of {width}x{height} are too small for the model's pyramid levels: export it with a "
                f"larger --resize (or with fewer levels, --P6 and --P7)"
            )
        return [float(score) for score in scores.reshape(-1)], [tuple(map(float, row)) for row in heads]

    def too_large(self, error: Exception) -> bool:
        # onnxruntime's words when an allocation fails: "Failed to allocate memory for requested buffer ..."
        return isinstance(error, MemoryError) or "Failed to allocate memory" in str(error)


def load_onnx(
    path: str, *, threads: int | None = None, batch_size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> OnnxModel:
    """The .onnx file `path`: MissingFileError where there is none, BadFileError where export_onnx.py
    did not write it. `threads` within an operator (None: one per core); `batch_size` None: one image
    at a time, as PyTorch on a CPU."""
    import onnxruntime  # here: the PyTorch path never needs it

    problem = file_problem(path)
    if problem is not None:
        error = MissingFileError if problem == "does not exist" else BadFileError
        raise error(f"ONNX model {path} {problem}: pass the file export_onnx.py wrote (--onnx)")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors reach the user as one line of ours, not also in onnxruntime's log
    options.intra_op_num_threads = threads or 0  # 0: onnxruntime's own choice
    try:
        model = _self_contained(path)
        session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except (BadFileError, OSError):
        raise
    except Exception as error:  # protobuf's and onnxruntime's own exception types, for a file they cannot read
        raise BadFileError(f"cannot read ONNX model {path} ({first_line(error)}): {_REEXPORT}") from None
    sizing, scale = _sizing_and_scale(session.get_modelmeta().custom_metadata_map, path)
    _check_signature(session, path, sizing)
    return OnnxModel(session=session, sizing=sizing, scale=scale, batch_size=batch_size or 1, max_pixels=max_pixels)


def _self_contained(path: str) -> bytes:
    """The file's bytes, refused where a tensor's data lies in another file: onnxruntime would open
    its `location` wherever it leads. It gets these bytes, not the path, so it opens no file beside
    the model and scores the very bytes that were checked."""
    import onnx  # here: the PyTorch path never needs it

    with open(path, "rb") as file:
        model = file.read()
    tensor = next(external_tensors(onnx.ModelProto.FromString(model)), None)
    if tensor is not None:
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        raise BadFileError(
            f"ONNX model {path} keeps the weights of tensor {tensor.name!r} in another file ({location or 'unnamed'}), "
            f"which scoring does not read: {_REEXPORT}, which writes one self-contained file"
        )
    return model


def external_tensors(message: Any) -> Iterator[Any]:
    """The TensorProtos within an ONNX message whose data lies in another file, found in every
    field that holds messages: graphs, nodes' attributes and their subgraphs, functions, sparse tensors."""
    from onnx import TensorProto

    if isinstance(message, TensorProto):
        if message.data_location == TensorProto.EXTERNAL or message.external_data:
            yield message
        return
    for field, value in message.ListFields():
        if field.message_type is not None:  # a message, or a repeated field of them
            for item in [value] if hasattr(value, "ListFields") else value:
                yield from external_tensors(item)


def _sizing_and_scale(metadata: Mapping[str, str], path: str) -> tuple[ImageSizing, TrainingScale | None]:
    """How images are sized for the model and the scale of its scores, as export_onnx.py recorded
    them (the settings and mappings it records are for people: the graph holds them)."""
    found = metadata.get("linearityiqa_format")
    if found != FORMAT:
        what = f"is of format {found!r}, this version reads {FORMAT}" if found else "was not written by export_onnx.py"
        raise BadFileError(f"ONNX model {path} {what}: {_REEXPORT}")
    try:
        resize = {"true": True, "false": False}[metadata["resize"]]
        height, width = int(metadata["resize_size_h"]), int(metadata["resize_size_w"])
    except (KeyError, ValueError):
        raise BadFileError(f"ONNX model {path} records no valid resize in its metadata: {_REEXPORT}") from None
    if resize and not (height >= 1 and width >= 1 and height * width <= DEFAULT_MAX_PIXELS):
        raise BadFileError(
            f"ONNX model {path} records a resize to {width}x{height} (resize_size_w x resize_size_h), not 1 to "
            f"{DEFAULT_MAX_PIXELS:,} pixels: {_REEXPORT}"
        )
    scale = None
    if "scale" in metadata:  # optional: files of the authors' checkpoints have none
        try:
            fields = json.loads(metadata["scale"])
        except ValueError:
            fields = metadata["scale"]
        scale = recorded_scale(fields, f"ONNX model {path}: metadata 'scale'", _REEXPORT)
    return ImageSizing(resize_hw=(height, width) if resize else None), scale


def _check_signature(session: Any, path: str, sizing: ImageSizing) -> None:
    """The graph takes N x 3 x H x W uint8 `images` (H x W the recorded resize, else free) and
    answers N float `score` and N x 3 float `heads`, as export_onnx.py builds it."""
    height, width = sizing.resize_hw or (None, None)
    images = ("tensor(uint8)", [None, 3, height, width])
    expected = {"images": images, "score": ("tensor(float)", [None]), "heads": ("tensor(float)", [None, 3])}
    found = {  # a free dimension (the batch's, or a side without a resize) as None
        item.name: (item.type, [dim if isinstance(dim, int) else None for dim in item.shape])
        for item in [*session.get_inputs(), *session.get_outputs()]
    }
    if found != expected:
        raise BadFileError(
            f"ONNX model {path} has the inputs and outputs {found}, not those of export_onnx.py's graph for its "
            f"metadata's resize, {expected}: {_REEXPORT}"
        )
