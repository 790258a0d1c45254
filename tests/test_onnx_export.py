"""export_onnx.py and linearityiqa/onnx_export.py: the ONNX file scores as the PyTorch model does,
for any batch and (without a resize) any image size, and records what its scoring side reads."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

import export_onnx
import linearityiqa
from IQAmodel import POOLING_METHODS, SPSP
from linearityiqa.errors import ConfigError
from linearityiqa.onnx_export import export_onnx as export
from linearityiqa.onnx_export import spatial_pyramid
from linearityiqa.scoring import QualityModel

K, B = [2.0, 0.5, -1.0], [50.0, 3.0, 7.0]
# Each model with the size of its test images: resnet18 with two pyramid levels on both taps, whose
# cells of int(size / 2) leave a row and a column over at 208 x 272 (maps of 13 x 17 and 7 x 9); and
# ResNeXt's bottleneck blocks (ResNet-50's, grouped) in the smallest ResNeXt, whose blocks are those
# of the released resnext101_32x8d (fewer, narrower), with the heads' BatchNorm at the end.
# Whole models pool by avg and mean-std (twice the channels, the standard deviation's arithmetic);
# test_every_pooling_method_exports_as_spsp exports the pyramid of every method on its own.
CASES = {
    "resnet18-avg": ({"arch": "resnet18", "P6": 2, "P7": 2, "pool": "avg"}, (208, 272)),
    "resnext50_32x4d-mean-std-use_bn_end": (
        {"arch": "resnext50_32x4d", "pool": "mean-std", "use_bn_end": True}, (64, 96),
    ),
}  # fmt: skip


class Exported(NamedTuple):
    model: QualityModel
    path: str
    session: onnxruntime.InferenceSession


def random_model(**settings) -> QualityModel:
    """A model of random weights (seeded), mapped with K and B.

    Random heads answer close to 0, where a relative tolerance would measure float32 rounding
    rather than the export; their biases are moved to 1, 2 and 3, as trained heads answer away from 0.
    """
    torch.manual_seed(0)
    model = linearityiqa.load(None, **settings, device="cpu")
    network = model.model
    with torch.no_grad():
        for head, offset in zip((network.regr6, network.regr7, network.regression), (1.0, 2.0, 3.0)):
            (head[0] if isinstance(head, nn.Sequential) else head).bias.add_(offset)
    return dataclasses.replace(model, k=K, b=B)


def images(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=generator)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each case of CASES exported once, on first use: its model, file and onnxruntime session."""
    folder = tmp_path_factory.mktemp("onnx")
    done: dict[str, Exported] = {}

    def get(case: str) -> Exported:
        if case not in done:
            model = random_model(**CASES[case][0])
            path = str(folder / f"{case}.onnx")
            export(model, path)
            done[case] = Exported(model, path, onnxruntime.InferenceSession(path))
        return done[case]

    return get


def assert_scores_as_pytorch(session: onnxruntime.InferenceSession, model: QualityModel, batch: torch.Tensor) -> None:
    """onnxruntime's `score` and `heads` of a uint8 batch are the PyTorch model's, to 1e-4 relative."""
    score, heads = session.run(["score", "heads"], {"images": batch.numpy()})
    expected = model.score(batch, heads=True)
    assert score.dtype == heads.dtype == np.float32
    assert score.shape == (len(batch),) and heads.shape == (len(batch), 3)
    assert score.tolist() == pytest.approx([prediction.score for prediction in expected], rel=1e-4)
    assert heads.ravel().tolist() == pytest.approx([y for prediction in expected for y in prediction.heads], rel=1e-4)


@pytest.mark.parametrize("case", list(CASES))
def test_onnxruntime_gives_pytorchs_score_and_heads(exported, case):
    entry = exported(case)
    assert_scores_as_pytorch(entry.session, entry.model, images(2, *CASES[case][1]))


class EveryPyramid(nn.Module):
    """The export's two-level spatial pyramid of a feature map by every pooling method, side by side."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return torch.cat([spatial_pyramid(maps, 2, method) for method in POOLING_METHODS], dim=1)


def test_every_pooling_method_exports_as_spsp(tmp_path):
    """Exported with free N, H and W as export_onnx exports them, each method pools as IQAmodel.SPSP,
    also on maps whose cells leave rows and columns over."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(2, 8, 13, 17), (1, 8, 7, 9), (3, 8, 10, 15)]
    maps = [torch.randn(shape, generator=generator) for shape in shapes]
    axes = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    program = torch.onnx.export(EveryPyramid().eval(), (maps[0],), dynamo=True, dynamic_shapes={"maps": axes})
    program.save(str(tmp_path / "pyramids.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "pyramids.onnx"))
    for batch in maps:
        (pooled,) = session.run(None, {session.get_inputs()[0].name: batch.numpy()})
        expected = torch.cat([SPSP(batch, 2, method) for method in POOLING_METHODS], dim=1)
        np.testing.assert_allclose(pooled, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_one_file_scores_any_batch_and_any_image_size(exported):
    entry = exported("resnet18-avg")
    assert [item.shape for item in entry.session.get_inputs()] == [["batch", 3, "height", "width"]]
    assert_scores_as_pytorch(entry.session, entry.model, images(1, 208, 272, seed=1))
    assert_scores_as_pytorch(entry.session, entry.model, images(3, 208, 272, seed=2))
    assert_scores_as_pytorch(entry.session, entry.model, images(2, 160, 230, seed=3))  # maps of 10 x 15, 5 x 8


def test_an_image_too_small_for_the_pyramid_scores_nan(exported):
    entry = exported("resnet18-avg")
    small = images(1, 64, 96)  # layer4's map of 2 x 3 does not tile into 2 x 2 cells of int(size / 2)
    with pytest.raises(ConfigError, match=r"a \(2, 3\) feature map cannot be pooled into 2 x 2 cells"):
        entry.model.score(small)
    assert np.isnan(entry.session.run(["score"], {"images": small.numpy()})[0]).all()


def test_the_metadata_is_what_the_scoring_side_reads(exported):
    entry = exported("resnext50_32x4d-mean-std-use_bn_end")
    proto = onnx.load(entry.path)
    assert [(item.key, item.value) for item in proto.metadata_props] == [
        ("linearityiqa_format", "1"),
        ("arch", "resnext50_32x4d"),
        ("pool", "mean-std"),
        ("use_bn_end", "true"),
        ("P6", "1"),
        ("P7", "1"),
        ("resize", "false"),
        ("resize_size_h", "0"),
        ("resize_size_w", "0"),
        ("k", "[2.0, 0.5, -1.0]"),
        ("b", "[50.0, 3.0, 7.0]"),
    ]
    assert [(item.name, item.type) for item in entry.session.get_inputs()] == [("images", "tensor(uint8)")]
    outputs = [(item.name, item.type, item.shape) for item in entry.session.get_outputs()]
    assert outputs == [("score", "tensor(float)", ["batch"]), ("heads", "tensor(float)", ["batch", 3])]


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory):
    """A resnet18 checkpoint in the authors' layout: model, optimizer, amp, k and b; no settings."""
    path = tmp_path_factory.mktemp("authors") / "p1q2.pth"
    weights = random_model(arch="resnet18").model.state_dict()
    torch.save({"model": weights, "optimizer": {}, "amp": {}, "k": K, "b": B}, path)
    return path


def test_the_authors_checkpoint_exports_with_its_resize_through_main(authors_checkpoint, tmp_path, capsys):
    output = tmp_path / "model.onnx"
    argv = ["--trained_model_file", str(authors_checkpoint), "--arch", "resnet18", "--resize", "-rs_h", "64", "-rs_w"]
    assert export_onnx.main([*argv, "96", "-o", str(output)]) == 0
    use = f"score with python test_demo.py --onnx {output} --img ..."
    captured = capsys.readouterr()
    assert captured.out == f"wrote {output} (resnet18, images resized to 64x96): {use}\n"
    assert captured.err == (
        f"export_onnx.py: note: {authors_checkpoint} records no settings, as the authors' released checkpoints, "
        f"which were trained at 498x664 (--resize): scores of images at other sizes are not the paper's\n"
    )
    metadata = onnxruntime.InferenceSession(str(output)).get_modelmeta().custom_metadata_map
    assert (metadata["arch"], metadata["resize"], metadata["resize_size_h"], metadata["resize_size_w"]) == (
        "resnet18", "true", "64", "96",
    )  # fmt: skip
    assert (json.loads(metadata["k"]), json.loads(metadata["b"])) == (K, B)
    session = onnxruntime.InferenceSession(str(output))
    assert [item.shape for item in session.get_inputs()] == [["batch", 3, 64, 96]]
    with pytest.warns(UserWarning, match=r"records no settings, as the authors' released checkpoints"):  # at 64x96
        model = linearityiqa.load(authors_checkpoint, arch="resnet18", resize=True, resize_size_h=64, resize_size_w=96)
    assert_scores_as_pytorch(session, model, images(1, 64, 96))
    assert_scores_as_pytorch(session, model, images(3, 64, 96, seed=1))
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument, match="Got invalid dimensions"):
        session.run(["score"], {"images": images(1, 96, 128).numpy()})


def folder_state(folder) -> dict[str, tuple[int, int]]:
    """Each file of a folder with its size and modification time: what a refused run must leave as it was."""
    return {entry.name: (entry.stat().st_size, entry.stat().st_mtime_ns) for entry in os.scandir(folder)}


@pytest.mark.reliability
@pytest.mark.parametrize(
    "case, message",
    [
        ("damaged checkpoint", r"cannot read checkpoint .*bad\.pth \(.*\): the file is damaged"),
        ("output is the checkpoint", r"--output .*p1q2\.pth is the checkpoint .*p1q2\.pth itself"),
        ("output under a file", r"cannot write the ONNX model .*: a file is in the way of its folder"),
        ("no released checkpoint here", r"checkpoint checkpoints/p1q2\.pth does not exist"),
    ],
)
def test_a_mistake_is_one_line_and_writes_nothing(authors_checkpoint, tmp_path, monkeypatch, capsys, case, message):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    checkpoint = {"damaged checkpoint": tmp_path / "bad.pth"}.get(case, authors_checkpoint)
    output = {
        "output is the checkpoint": authors_checkpoint,
        "output under a file": tmp_path / "bad.pth" / "model.onnx",
    }.get(case, tmp_path / "model.onnx")
    argv = ["-o", str(output), "--arch", "resnet18"]
    if case == "no released checkpoint here":
        monkeypatch.chdir(tmp_path)
    else:
        argv += ["--trained_model_file", str(checkpoint)]
    before = (folder_state(tmp_path), folder_state(authors_checkpoint.parent))
    assert export_onnx.main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert re.match(f"export_onnx.py: error: {message}", err), err
    assert (folder_state(tmp_path), folder_state(authors_checkpoint.parent)) == before


@pytest.mark.reliability
def test_an_unsupported_option_value_is_argparses_error_and_writes_nothing(authors_checkpoint, tmp_path, capsys):
    argv = ["--trained_model_file", str(authors_checkpoint), "--arch", "resnet18", "--pool", "nonsense"]
    with pytest.raises(SystemExit) as exit_:
        export_onnx.main([*argv, "-o", str(tmp_path / "model.onnx")])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if "error:" in line]  # after argparse's usage message
    assert out == "" and len(errors) == 1 and "argument -pl/--pool: invalid choice: 'nonsense'" in errors[0]
    assert os.listdir(tmp_path) == []


@pytest.mark.reliability
def test_a_resize_too_small_for_the_pyramid_is_refused_before_the_export(tmp_path):
    model = random_model(arch="resnet18", P7=2, resize=True, resize_size_h=64, resize_size_w=96)
    with pytest.raises(ConfigError, match=r"images resized to 64 x 96 are too small for this model \(a \(2, 3\) "):
        export(model, tmp_path / "model.onnx")
    assert os.listdir(tmp_path) == []
