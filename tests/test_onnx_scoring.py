"""test_demo.py --onnx: an exported model scored in onnxruntime gives the PyTorch path's lines,
CSV and exit statuses, without loading PyTorch; a file that is not such a model is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from data_helpers import read_scores, save_plain_images
from onnx import TensorProto, helper

import linearityiqa
import test_demo as demo
from IQAmodel import IQAModel
from linearityiqa.onnx_export import export_onnx
from linearityiqa.onnx_scoring import external_tensors
from linearityiqa.records.checkpoint import save_checkpoint

REPOSITORY = Path(__file__).resolve().parents[1]
K, B = [2.0, 0.5, -1.0], [50.0, 3.0, 7.0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A resnet18 checkpoint of two pyramid levels on its second side output, its exports with a
    resize and without, and images of two sizes (one of them broken), large enough for the levels."""
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    settings = {"arch": "resnet18", "pool": "avg", "use_bn_end": False, "P6": 1, "P7": 2}
    weights = IQAModel(**settings, pretrained=False).state_dict()
    save_checkpoint(str(folder / "model.pth"), {"model": weights, "k": K, "b": B, "settings": settings})
    for name, sizing in (("resized", {"resize": True, "resize_size_h": 40, "resize_size_w": 56}), ("native", {})):
        export_onnx(linearityiqa.load(folder / "model.pth", device="cpu", **sizing), folder / f"{name}.onnx")
    save_plain_images(folder / "images", {"a.jpg": (48, 36), "b.jpg": (64, 40), "c.jpg": (48, 36)})
    (folder / "images" / "broken.jpg").write_bytes(b"not an image")
    return folder


def csv_rows(path: Path) -> list[dict[str, str]]:
    return read_scores(path.read_text())


@pytest.mark.parametrize("name, pytorch_options", [("resized", ["--resize", "-rs_h", "40", "-rs_w", "56"]),
                                                    ("native", [])])  # fmt: skip
def test_onnx_scores_are_pytorchs_in_the_same_csv(exported, name, pytorch_options, tmp_path, capsys):
    images = str(exported / "images")
    pytorch = ["--img", images, "--trained_model_file", str(exported / "model.pth"), *pytorch_options]
    assert demo.main([*pytorch, "-o", str(tmp_path / "pytorch.csv")]) == 3  # the broken image
    assert demo.main(["--img", images, "--onnx", str(exported / f"{name}.onnx"), "-o", str(tmp_path / "onnx.csv")]) == 3
    expected, got = csv_rows(tmp_path / "pytorch.csv"), csv_rows(tmp_path / "onnx.csv")
    assert [row["image"] for row in got] == [row["image"] for row in expected]
    assert [row["error"] for row in got] == [row["error"] for row in expected]
    scored = [(float(a["score"]), float(b["score"])) for a, b in zip(got, expected) if b["score"]]
    assert len(scored) == 3
    np.testing.assert_allclose(*zip(*scored), rtol=1e-4)
    warnings = capsys.readouterr().err.splitlines()
    assert warnings[-1] == "test_demo.py: 1 of 4 images could not be scored"


def test_one_image_prints_the_papers_line(exported, capsys):
    image = str(exported / "images" / "a.jpg")
    assert demo.main(["--img", image, "--onnx", str(exported / "resized.onnx")]) == 0
    onnx_line = capsys.readouterr().out
    resize = ["--resize", "-rs_h", "40", "-rs_w", "56"]
    assert demo.main(["--img", image, "--trained_model_file", str(exported / "model.pth"), *resize]) == 0
    pytorch_line = capsys.readouterr().out
    prefix = "The image quality score is "
    assert onnx_line.startswith(prefix) and pytorch_line.startswith(prefix)
    assert float(onnx_line[len(prefix) :]) == pytest.approx(float(pytorch_line[len(prefix) :]), rel=1e-4)


def test_the_onnx_path_never_loads_pytorch(exported, tmp_path):
    script = (
        "import sys, test_demo\n"
        f"status = test_demo.main(['--img', {str(exported / 'images' / 'a.jpg')!r}, '--onnx', "
        f"{str(exported / 'resized.onnx')!r}, '-o', {str(tmp_path / 's.csv')!r}])\n"
        "print(status, sorted(name for name in sys.modules if name.split('.')[0] in ('torch', 'torchvision')))\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True, text=True, check=True)
    assert ran.stdout == "0 []\n"
    assert float(csv_rows(tmp_path / "s.csv")[0]["score"])


def write_foreign_onnx(path: Path) -> None:
    """A valid ONNX model that export_onnx.py did not write: uint8 images to their mean."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["images"], ["floats"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["floats"], ["score"], keepdims=0)],
        "foreign",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.reliability
@pytest.mark.parametrize("kind", ["garbage", "foreign", "folder", "missing", "pytorch options", "output is the model"])
def test_what_is_not_an_exported_model_is_one_line(exported, kind, tmp_path, capsys):
    model = tmp_path / "model.onnx"
    extra = []
    if kind == "garbage":
        model.write_bytes(b"\x08\x07 not protobuf at all")
    elif kind == "foreign":
        write_foreign_onnx(model)
    elif kind == "folder":
        model.mkdir()
    elif kind == "pytorch options":
        model = exported / "resized.onnx"
        extra = ["--arch", "resnet50", "--device", "cpu"]
    elif kind == "output is the model":
        model = exported / "native.onnx"
        extra = ["-o", str(model)]
    before = model.read_bytes() if model.is_file() else None
    assert demo.main(["--img", str(exported / "images"), "--onnx", str(model), *extra]) == 1
    err = capsys.readouterr().err
    expected = {
        "garbage": f"test_demo.py: error: cannot read ONNX model {model} (",
        "foreign": f"test_demo.py: error: ONNX model {model} was not written by export_onnx.py: export it again",
        "folder": f"test_demo.py: error: ONNX model {model} is a folder, not a file: pass the file export_onnx.py",
        "missing": f"test_demo.py: error: ONNX model {model} does not exist: pass the file export_onnx.py wrote",
        "pytorch options": "test_demo.py: error: --arch, --device: an ONNX model records its model and resize",
        "output is the model": f"test_demo.py: error: --output {model} is the ONNX model {model} itself",
    }[kind]
    assert err.startswith(expected) and err.count("\n") == 1 and "Traceback" not in err
    assert (model.read_bytes() if model.is_file() else None) == before
    assert not os.path.exists(tmp_path / "scores.csv")


@pytest.mark.reliability
@pytest.mark.parametrize(
    "changed, message",
    [
        ({"resize_size_h": "0", "resize_size_w": "0"}, "records a resize to 0x0 (resize_size_w x resize_size_h), "
         "not 1 to 89,478,485 pixels"),
        ({"resize_size_h": "60000", "resize_size_w": "60000"}, "records a resize to 60000x60000 (resize_size_w x "
         "resize_size_h), not 1 to 89,478,485 pixels"),
        ({"resize_size_w": "57"}, "has the inputs and outputs {'images': ('tensor(uint8)', [None, 3, 40, 56]), "
         "'score': ('tensor(float)', [None]), 'heads': ('tensor(float)', [None, 3])}, not those of export_onnx.py's "
         "graph for its metadata's resize, {'images': ('tensor(uint8)', [None, 3, 40, 57])"),
        ({"resize": "false"}, "not those of export_onnx.py's graph for its metadata's resize, "
         "{'images': ('tensor(uint8)', [None, 3, None, None])"),
        ({"linearityiqa_format": "2"}, "is of format '2', this version reads 1"),
        ({"resize": "maybe"}, "records no valid resize in its metadata"),
        ({"scale": "[1, 2]"}, "metadata 'scale' is [1, 2], not a dict of dataset"),
    ],
)  # fmt: skip
def test_metadata_out_of_range_or_against_the_graph_is_one_line_at_load(exported, changed, message, tmp_path,
                                                                         capsys):  # fmt: skip
    proto = onnx.load(str(exported / "resized.onnx"))
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    helper.set_model_props(proto, {**metadata, **changed})
    model = tmp_path / "model.onnx"
    onnx.save(proto, str(model))
    before = model.read_bytes()
    assert demo.main(["--img", str(exported / "images"), "--onnx", str(model), "-o", str(tmp_path / "s.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"test_demo.py: error: ONNX model {model}") and message in err and err.count("\n") == 1
    assert err.endswith("export it again with export_onnx.py\n")
    assert model.read_bytes() == before and sorted(tmp_path.iterdir()) == [model]


@pytest.mark.reliability
@pytest.mark.parametrize("location", ["weights.bin", "../../etc/passwd"])
def test_weights_kept_in_another_file_are_refused_before_onnxruntime_opens_it(exported, location, tmp_path, capsys):
    proto = onnx.load(str(exported / "resized.onnx"))
    model = tmp_path / "model.onnx"
    if location == "weights.bin":  # as onnx saves a model past protobuf's 2 GB
        onnx.save_model(proto, str(model), save_as_external_data=True, location=location, size_threshold=0)
    else:  # a hand-made file that would have onnxruntime read any file as weights
        tensor = proto.graph.initializer[0]
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value=location)
        onnx.save(proto, str(model))
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert demo.main(["--img", str(exported / "images"), "--onnx", str(model), "-o", str(tmp_path / "s.csv")]) == 1
    assert capsys.readouterr().err == (
        f"test_demo.py: error: ONNX model {model} keeps the weights of tensor '{proto.graph.initializer[0].name}' in "
        f"another file ({location}), which scoring does not read: export it again with export_onnx.py, which writes "
        f"one self-contained file\n"
    )
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def a_constant_in_subgraphs(*, outside: bool) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """A model whose tensor lies in a Constant of an If's branches, and a model of that branch."""
    value = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.0])
    if outside:
        value.ClearField("float_data")
        value.data_location = TensorProto.EXTERNAL
        value.external_data.add(key="location", value="w.bin")
    output = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
    branch = helper.make_graph([helper.make_node("Constant", [], ["y"], value=value)], "branch", [], output)
    choice = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph([choice], "outer", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])], output)
    return helper.make_model(graph), helper.make_model(branch)


def test_a_tensor_outside_is_found_however_deep():
    found = [{tensor.name for tensor in external_tensors(model)} for model in a_constant_in_subgraphs(outside=True)]
    assert found == [{"value"}, {"value"}]
    assert [list(external_tensors(model)) for model in a_constant_in_subgraphs(outside=False)] == [[], []]


def test_an_image_too_small_for_the_pyramid_is_its_rows_error(exported, tmp_path, capsys):
    save_plain_images(tmp_path / "images", {"large.jpg": (128, 128), "small.jpg": (24, 24)})
    argv = ["--img", str(tmp_path / "images"), "--onnx", str(exported / "native.onnx"), "-o", str(tmp_path / "s.csv")]
    assert demo.main(argv) == 3
    large, small = csv_rows(tmp_path / "s.csv")
    assert float(large["score"]) and large["error"] == ""
    assert small["score"] == "" and small["error"] == (
        "images of 24x24 are too small for the model's pyramid levels: export it with a larger --resize "
        "(or with fewer levels, --P6 and --P7)"
    )
    assert "[E:onnxruntime" not in capsys.readouterr().err
