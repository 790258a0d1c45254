"""Just enough of the ONNX file format to find weights kept outside the file.

An ONNX tensor may say that its data lies in another file (`data_location: EXTERNAL`, with a
`location` relative to the model). onnxruntime then opens that file itself, wherever the
location leads. export_onnx.py writes one self-contained file, so scoring refuses any model
that points elsewhere, before onnxruntime sees it. The `onnx` package would read the file, but
the scoring path does without it (onnxruntime, NumPy and Pillow only), so this module walks the
protobuf encoding itself: the graph, its nodes' attributes, subgraphs and functions, skipping
over the tensors' bytes. Field numbers are those of onnx.proto.
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
EXTERNAL = 1  # TensorProto.DataLocation
# The fields that hold messages, by the message that holds them.
MODEL = {7: "graph", 20: "training_info", 25: "function"}
TRAINING_INFO = {1: "graph", 2: "graph"}
GRAPH = {1: "node", 5: "tensor", 15: "sparse_tensor"}
FUNCTION = {7: "node"}
NODE = {5: "attribute"}
ATTRIBUTE = {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse_tensor", 23: "sparse_tensor"}
SPARSE_TENSOR = {1: "tensor", 2: "tensor"}
MESSAGES = {
    "graph": GRAPH, "training_info": TRAINING_INFO, "function": FUNCTION,
    "node": NODE, "attribute": ATTRIBUTE, "sparse_tensor": SPARSE_TENSOR,
}  # fmt: skip
TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 8, 13, 14
# Graphs nest in attributes; a file nested deeper than this is no exported model.
MAX_DEPTH = 64


class Malformed(ValueError):
    """The bytes are not a protobuf message."""


def external_tensor(model: bytes) -> tuple[str, str] | None:
    """The name and location of the first tensor whose data is outside the file, or None.

    Raises:
        Malformed: the bytes are not a protobuf encoding.
    """
    return _search(memoryview(model), MODEL, depth=0)


def _search(message: memoryview, fields: dict[int, str], *, depth: int) -> tuple[str, str] | None:
    if depth > MAX_DEPTH:
        raise Malformed(f"messages nested more than {MAX_DEPTH} deep")
    for number, wire, value in _fields(message):
        kind = fields.get(number)
        if kind is None or wire != LENGTH:
            continue
        found = _external(value) if kind == "tensor" else _search(value, MESSAGES[kind], depth=depth + 1)
        if found is not None:
            return found
    return None


def _external(tensor: memoryview) -> tuple[str, str] | None:
    name, location, external = "", "", False
    for number, wire, value in _fields(tensor):
        if number == TENSOR_NAME and wire == LENGTH:
            name = _text(value)
        elif number == TENSOR_DATA_LOCATION and wire == VARINT:
            external = external or value == EXTERNAL
        elif number == TENSOR_EXTERNAL_DATA and wire == LENGTH:
            external = True
            key, text = _entry(value)
            location = text if key == "location" else location
    return (name, location) if external else None


def _entry(entry: memoryview) -> tuple[str, str]:
    """A StringStringEntryProto: key (1) and value (2)."""
    parts = {number: _text(value) for number, wire, value in _fields(entry) if wire == LENGTH}
    return parts.get(1, ""), parts.get(2, "")


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", errors="replace")


def _fields(message: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """(field number, wire type, value) of each field: an int for varints, the bytes otherwise."""
    position, end = 0, len(message)
    while position < end:
        key, position = _varint(message, position)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise Malformed("a field numbered 0")
        if wire == VARINT:
            value, position = _varint(message, position)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            value, position = message[position : position + size], position + size
        elif wire == LENGTH:
            size, position = _varint(message, position)
            value, position = message[position : position + size], position + size
        else:  # groups (3, 4) are not in proto3, and 6, 7 are no wire type
            raise Malformed(f"wire type {wire} of field {number}")
        if position > end:
            raise Malformed("a field runs past the end of its message")
        yield number, wire, value


def _varint(message: memoryview, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while position < len(message) and shift < 64:
        byte = message[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if byte < 0x80:
            return value, position
    raise Malformed("a number runs past the end of its message")
