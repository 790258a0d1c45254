"""checkpoint.py: atomic saves, safe loads of this project's and the authors' files, and
the model settings a checkpoint brings with it."""

from __future__ import annotations

import os

import pytest
import torch

from IQAmodel import IQAModel
from linearityiqa.errors import BadFileError, ConfigError, MissingFileError
from linearityiqa.records.checkpoint import load_checkpoint, load_model_state, model_settings, save_checkpoint

DEFAULTS = {"arch": "resnext101_32x8d", "pool": "avg", "use_bn_end": False, "P6": 1, "P7": 1}


@pytest.fixture(scope="module")
def model(resnet18_checkpoint):
    model = IQAModel(arch="resnet18", pretrained=False).eval()
    model.load_state_dict(torch.load(resnet18_checkpoint, weights_only=True)["model"])
    return model


def test_saves_and_loads_with_settings(tmp_path, model):
    path = str(tmp_path / "run.pth")
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "k": [2.0, 1.0, 1.0],
            "b": [3.0, 0.0, 0.0],
            "settings": {**DEFAULTS, "arch": "resnet18", "alpha": [1.0, 0.1]},
        },
    )
    checkpoint = load_checkpoint(path)
    assert checkpoint["k"] == [2.0, 1.0, 1.0] and checkpoint["settings"]["alpha"] == [1.0, 0.1]
    assert torch.equal(checkpoint["model"]["regression.weight"], model.state_dict()["regression.weight"])
    assert os.listdir(tmp_path) == ["run.pth"]  # no temporary file left behind


@pytest.mark.reliability
def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, model):
    path = str(tmp_path / "best.pth")
    save_checkpoint(path, {"model": model.state_dict(), "k": [1.0] * 3, "b": [0.0] * 3})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"model": model.state_dict(), "broken": Unpicklable()})
    assert load_checkpoint(path)["k"] == [1.0] * 3
    assert os.listdir(tmp_path) == ["best.pth"]


def test_the_authors_released_layout_loads_unchanged(tmp_path, model):
    # their files: model, optimizer, apex amp state, k, b; no settings
    optimizer = torch.optim.Adam(model.parameters())
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "amp": {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 0}},
            "k": [0.9, 1.1, 1.0],
            "b": [10.0, -1.0, 0.0],
        },
        tmp_path / "p1q2.pth",
    )
    checkpoint = load_checkpoint(str(tmp_path / "p1q2.pth"))
    fresh = IQAModel(arch="resnet18", pretrained=False).eval()
    load_model_state(fresh, checkpoint, "p1q2.pth")
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(fresh(x)[2], model(x)[2])
    assert model_settings(checkpoint, {**DEFAULTS, "arch": "resnet18"}, DEFAULTS, "p1q2.pth")["arch"] == "resnet18"


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy format"])
def test_a_mapped_checkpoint_holds_what_a_read_one_holds(tmp_path, model, zip_format):
    path = str(tmp_path / "run.pth")
    torch.save(
        {"model": model.state_dict(), "k": [2.0, 1.0, 1.0], "b": [3.0, 0.0, 0.0]},
        path,
        _use_new_zipfile_serialization=zip_format,
    )
    mapped, read = load_checkpoint(path, mmap=True), load_checkpoint(path)
    assert (mapped["k"], mapped["b"]) == (read["k"], read["b"]) and mapped["model"].keys() == read["model"].keys()
    assert all(torch.equal(mapped["model"][name], tensor) for name, tensor in read["model"].items())


@pytest.mark.reliability
def test_a_damaged_file_is_a_clear_error_when_mapped_too(tmp_path):
    (tmp_path / "half.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(BadFileError, match="damaged or not a checkpoint saved by main"):
        load_checkpoint(str(tmp_path / "half.pth"), mmap=True)


def test_wrapper_prefixes_are_removed(tmp_path, model):
    wrapped = {"module." + name: value for name, value in model.state_dict().items()}
    torch.save({"model": wrapped}, tmp_path / "ddp.pth")
    assert set(load_checkpoint(str(tmp_path / "ddp.pth"))["model"]) == set(model.state_dict())


@pytest.mark.reliability
def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "the payload ran"

    class Payload:
        def __reduce__(self):  # unpickling calls os.mkdir(marker)
            return (os.mkdir, (str(marker),))

    torch.save({"model": {}, "payload": Payload()}, tmp_path / "evil.pth")
    for mmap in (False, True):
        with pytest.raises(BadFileError, match=r"cannot read checkpoint .*evil.pth"):
            load_checkpoint(str(tmp_path / "evil.pth"), mmap=mmap)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.99])
@pytest.mark.reliability
def test_a_truncated_checkpoint_is_a_clear_error(tmp_path, model, keep):
    save_checkpoint(str(tmp_path / "whole.pth"), {"model": model.state_dict(), "k": [1.0] * 3, "b": [0.0] * 3})
    data = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: int(len(data) * keep)])
    for mmap in (False, True):
        with pytest.raises(BadFileError, match=r"cut.pth"):
            load_checkpoint(str(tmp_path / "cut.pth"), mmap=mmap)


@pytest.mark.reliability
def test_missing_corrupt_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(MissingFileError, match=r"checkpoint .*none.pth does not exist"):
        load_checkpoint(str(tmp_path / "none.pth"))
    (tmp_path / "half.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(BadFileError, match="damaged or not a checkpoint saved by main"):
        load_checkpoint(str(tmp_path / "half.pth"))
    torch.save({"weights": {}}, tmp_path / "other.pth")
    with pytest.raises(BadFileError, match="holds no 'model' state"):
        load_checkpoint(str(tmp_path / "other.pth"))


@pytest.mark.reliability
def test_a_checkpoint_of_another_arch_names_the_options(tmp_path, model):
    torch.save({"model": model.state_dict()}, tmp_path / "r18.pth")
    checkpoint = load_checkpoint(str(tmp_path / "r18.pth"))
    other = IQAModel(arch="resnet34", pretrained=False)
    with pytest.raises(BadFileError, match=r"does not fit the model built with arch=resnet34.*--arch"):
        load_model_state(other, checkpoint, "r18.pth", settings={"arch": "resnet34"})


def test_recorded_settings_win_over_defaults_and_clash_with_explicit_options():
    checkpoint = {"model": {}, "settings": {**DEFAULTS, "arch": "resnet18", "P7": 2}}
    assert model_settings(checkpoint, DEFAULTS, DEFAULTS, "x.pth") == {**DEFAULTS, "arch": "resnet18", "P7": 2}
    agreeing = {**DEFAULTS, "arch": "resnet18"}
    assert model_settings(checkpoint, agreeing, DEFAULTS, "x.pth")["arch"] == "resnet18"
    with pytest.raises(ConfigError, match=r"x.pth was trained with arch='resnet18', but arch='resnet50' was asked"):
        model_settings(checkpoint, {**DEFAULTS, "arch": "resnet50"}, DEFAULTS, "x.pth")
