"""More of what a careless user does, tried on purpose: outputs that are pipes or links, a
checkpoint saved over a training image, score files with repeated columns or odd values, options
that could never work together, and checkpoints that are not quite checkpoints. Each ends in one
line before the work it would spoil (or, for a link, writes where the link leads)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import assert_one_line, save_plain_images, sha256, write_csv

import main
import make_info
import make_synthetic
import test_dataset
import test_demo as demo
from linearityiqa.cli.scripts import Advice, user_message
from linearityiqa.data.decoding import _reading
from linearityiqa.data.info_files import IQAInfo, read_info, write_info
from linearityiqa.errors import BadFileError, OutputError, first_line
from linearityiqa.records import checkpoint as checkpoints
from linearityiqa.records.checkpoint import save_checkpoint

pytestmark = pytest.mark.reliability
SETTINGS = {"arch": "resnet18", "pool": "avg", "use_bn_end": False, "P6": 1, "P7": 1}


@pytest.fixture(scope="module")
def scoring(tmp_path_factory, resnet18_checkpoint):
    folder = tmp_path_factory.mktemp("careless")
    shutil.copy(resnet18_checkpoint, folder / "model.pth")
    torch.save(torch.load(resnet18_checkpoint, weights_only=True)["model"], folder / "weights.pth")
    save_plain_images(folder / "images", {"a.jpg": (48, 32)})
    return folder


def demo_argv(scoring, *extra) -> list[str]:
    return ["--img", str(scoring / "images"), "--trained_model_file", str(scoring / "model.pth"), *extra]


def test_an_output_that_is_a_named_pipe_is_refused_not_replaced(scoring, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe")
    assert demo.main(demo_argv(scoring, "-o", str(tmp_path / "pipe"))) == 1
    err = capsys.readouterr().err
    assert_one_line(err, "test_demo.py", f"cannot write the scores {tmp_path / 'pipe'}", "named pipe", "--output")
    assert (tmp_path / "pipe").is_fifo()


def test_an_output_that_is_a_link_writes_where_it_leads_and_stays_a_link(scoring, tmp_path):
    (tmp_path / "scores.csv").write_text("yesterday\n")
    os.symlink(tmp_path / "scores.csv", tmp_path / "latest.csv")
    assert demo.main(demo_argv(scoring, "-o", str(tmp_path / "latest.csv"))) == 0
    assert (tmp_path / "latest.csv").is_symlink() and os.readlink(tmp_path / "latest.csv") == str(
        tmp_path / "scores.csv"
    )
    assert (tmp_path / "scores.csv").read_text().split("\n")[0] == "image,score,error"


def test_a_checkpoint_is_never_saved_over_a_training_image(koniq, tmp_path, capsys):
    options = dict(zip(koniq[::2], koniq[1::2]))
    image = sorted(Path(options["--im_dir"]).glob("*.jpg"))[0]
    before = sha256(image)
    argv = ["--arch", "resnet18", "--pretrained", "none", "-e", "1", "-rs", "-rs_h", "64", "-rs_w", "96", *koniq]
    argv += ["--trained_model_file", str(image), "--results_dir", str(tmp_path / "r"), "--log_dir", str(tmp_path / "l")]
    assert main.main(argv) == 1
    assert capsys.readouterr().err.startswith(f"main.py: error: --trained_model_file {image} is the image {image} ")
    assert sha256(image) == before


def test_pytorchs_writer_failing_mid_checkpoint_is_one_line_and_keeps_the_earlier_file(tmp_path, monkeypatch):
    save_checkpoint(str(tmp_path / "m.pth"), {"model": {}, "k": [1.0] * 3, "b": [0.0] * 3})
    before = sha256(tmp_path / "m.pth")

    def short_write(*args, **kwargs):  # what torch.save says when a write falls short (a full disk)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 25912832 vs 25912728")

    monkeypatch.setattr(checkpoints.torch, "save", short_write)
    with pytest.raises(OutputError, match=r"cannot write checkpoint .*m.pth: PyTorch's writer failed \(\[enforce"):
        save_checkpoint(str(tmp_path / "m.pth"), {"model": {}, "k": [1.0] * 3, "b": [0.0] * 3})
    assert sha256(tmp_path / "m.pth") == before and [p.name for p in tmp_path.iterdir()] == ["m.pth"]


def test_small_messages_read_right():
    full = OSError(errno.ENOSPC, "No space left on device")  # no file named: Pillow's and h5py's writers
    assert user_message(full, Advice(unwritable="pass another --out")) == (
        "an output: No space left on device; pass another --out"
    )
    assert (
        first_line(RuntimeError("\x1b[1mWeights only load failed\x1b[0m. More:\nlines"))
        == "Weights only load failed. More:"
    )
    assert first_line(KeyError(101)) == "KeyError: 101"  # pickle's word for a file of text
    assert first_line(ValueError()) == "ValueError"
    with pytest.raises(BadFileError) as denied, _reading(Path("a.jpg")):
        raise PermissionError(13, "Permission denied")
    assert str(denied.value) == "cannot read image a.jpg (permission denied): give this user read access to it"
    memory = MemoryError("Unable to allocate 149. GiB for an array")
    assert user_message(memory, Advice(out_of_memory="lower --orderings")) == (
        "out of memory (Unable to allocate 149. GiB for an array): lower --orderings"
    )


def test_a_state_dict_saved_alone_is_told_how_to_save_a_checkpoint(scoring, capsys):
    assert demo.main(["--img", str(scoring / "images"), "--trained_model_file", str(scoring / "weights.pth")]) == 1
    err = capsys.readouterr().err
    assert_one_line(
        err, "test_demo.py", f"checkpoint {scoring / 'weights.pth'} holds no 'model' state", "save {'model'"
    )


def test_a_checkpoint_recording_an_unknown_arch_says_the_checkpoint_is_the_source(scoring, tmp_path, capsys):
    checkpoint = torch.load(scoring / "model.pth", weights_only=True)
    checkpoint["settings"] = {**SETTINGS, "arch": "resnet9000"}
    torch.save(checkpoint, tmp_path / "odd.pth")
    assert demo.main(["--img", str(scoring / "images"), "--trained_model_file", str(tmp_path / "odd.pth")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"test_demo.py: error: checkpoint {tmp_path / 'odd.pth'} records settings this version ")
    assert "'arch': 'resnet9000'" in err and err.endswith(
        "it was not saved by main.py: use a checkpoint main.py saved\n"
    )


def test_a_dangling_link_in_a_folder_gets_its_row(scoring, tmp_path, capsys):
    save_plain_images(tmp_path / "images", {"a.jpg": (48, 32)})
    os.symlink(tmp_path / "gone.jpg", tmp_path / "images" / "b.jpg")
    argv = ["--img", str(tmp_path / "images"), "--trained_model_file", str(scoring / "model.pth")]
    assert demo.main([*argv, "-o", str(tmp_path / "s.csv")]) == 3
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert len(rows) == 3 and "b.jpg,,image " in rows[2] and "is a symbolic link that leads to no file" in rows[2]


@pytest.mark.parametrize(
    "header, rows, message",
    [
        (["image_name", "mos", "MOS"], [["a.jpg", 1, 2]], "has the column mos twice (case aside): keep one"),
        (["image_name", "mos", "std"], [["a.jpg", 1, -1]], "line 2: std '-1' is negative, which no spread of"),
        (["image_name", "mos"], [["a\tb.jpg", 1]], r"line 2: image name 'a\tb.jpg' holds a control character"),
        (["image_name", "mos"], [['"' + "a" * 200_000, 1]], "is not a CSV file it can read (field larger than"),
    ],
)
def test_score_files_that_cannot_be_right_are_one_line(header, rows, message, tmp_path, capsys):
    write_csv(tmp_path / "scores.csv", header, rows)
    assert make_info.main(["csv", "--csv", str(tmp_path / "scores.csv"), "--out", str(tmp_path / "i.mat")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"make_info.py: error: {tmp_path / 'scores.csv'}") and message in err
    assert err.count("\n") == 1 and not (tmp_path / "i.mat").exists()


def test_a_score_beyond_float32_is_refused_where_the_info_file_is_read(tmp_path):
    info = IQAInfo(["a.jpg", "b.jpg"], np.array([1.0, 1e300]), np.ones(2), np.arange(1, 3), np.array([[1], [2]]))
    write_info(tmp_path / "i.mat", info)
    with pytest.raises(ValueError, match=r"subjective_scores entry 2 \(b.jpg\) is 1e\+300, not a finite number \(of"):
        read_info(tmp_path / "i.mat")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quickstart", "-e", "1"], "main.py: error: --quickstart takes no other option (given: --epochs)"),
        (["--nproc_per_node", "64", "-bs", "8"], "main.py: error: --nproc_per_node 64 processes cannot share a batch"),
    ],
)
def test_options_that_cannot_work_together_are_refused_before_anything_starts(argv, message, capsys):
    assert main.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_accumulating_more_batches_than_an_epoch_has_is_refused(koniq, tmp_path, capsys):
    argv = ["--arch", "resnet18", "--pretrained", "none", "-e", "1", "-rs", "-rs_h", "64", "-rs_w", "96", *koniq]
    argv += ["-accum", "1000", "--trained_model_file", str(tmp_path / "m.pth"), "--results_dir", str(tmp_path / "r")]
    assert main.main([*argv, "--log_dir", str(tmp_path / "l")]) == 1
    err = capsys.readouterr().err  # after the decoding's progress bar, unless the images were cached
    assert err.count("error") == 1
    assert_one_line(err.splitlines(keepends=True)[-1], "main.py", "-accum 1000 batches per step", "lower -accum")
    assert not (tmp_path / "m.pth").exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--width", "0"], "argument --width: 0 is out of range: it must be an integer at least 1"),
        (["--count", "100000000000"], "argument --count: 100000000000 is out of range"),
        (
            ["--seed", "-5"],
            "argument --seed: -5 is out of range: it must be an integer at least 0 and at most 4294967295",
        ),
        (["--seed", "4294967296"], "argument --seed: 4294967296 is out of range"),
    ],
)
def test_make_synthetic_refuses_numbers_out_of_range_as_it_parses_them(argv, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as ended:
        make_synthetic.main(["--out", str(tmp_path / "s"), *argv])
    assert ended.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_make_synthetic_refuses_images_larger_than_any_image_may_be(tmp_path, capsys):
    assert make_synthetic.main(["--out", str(tmp_path / "s"), "--width", "10000", "--height", "10000"]) == 1
    assert "--width 10000 --height 10000: images must be at most 89,478,485 pixels" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("argv", [["--seed", "-3"], ["--seed", "4294967296"], ["--orderings", "0"]])
def test_make_info_refuses_numbers_out_of_range_as_it_parses_them(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as ended:
        make_info.main(["csv", "--csv", str(tmp_path / "s.csv"), "--out", str(tmp_path / "i.mat"), *argv])
    assert ended.value.code == 2 and f"argument {argv[0]}: {argv[1]} is out of range" in capsys.readouterr().err


def save_wrong_contents(folder: Path) -> dict[str, Path]:
    """Files of the right name and the wrong content: empty, text, a tensor, a list."""
    files = {name: folder / f"{name}.pth" for name in ("empty", "text", "tensor", "list")}
    files["empty"].write_bytes(b"")
    files["text"].write_text("hello world\n")
    torch.save(torch.zeros(3), files["tensor"])
    torch.save([1, 2], files["list"])
    return files


@pytest.mark.parametrize("content", ["empty", "text", "tensor", "list"])
def test_a_pretrained_weights_file_of_the_wrong_content_is_one_line_naming_it(content, koniq, tmp_path, capsys):
    weights = save_wrong_contents(tmp_path)[content]
    argv = ["--arch", "resnet18", "--pretrained", str(weights), "-e", "1", *koniq, "--log_dir", str(tmp_path / "l")]
    argv += ["--trained_model_file", str(tmp_path / "m.pth"), "--results_dir", str(tmp_path / "r")]
    assert main.main(argv) == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert line.startswith("main.py: error: ") and f"pretrained weights file {weights}" in line
    assert "torchvision state_dict saved with torch.save" in line
    assert not (tmp_path / "m.pth").exists()


@pytest.mark.parametrize("content", ["empty", "text", "tensor", "list"])
def test_a_checkpoint_of_the_wrong_content_is_one_line_naming_it(content, scoring, tmp_path, capsys):
    checkpoint = save_wrong_contents(tmp_path)[content]
    assert demo.main(["--img", str(scoring / "images"), "--trained_model_file", str(checkpoint)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("test_demo.py: error: ") and f"checkpoint {checkpoint}" in err
    assert "a checkpoint saved by main.py or released by the authors" in err


@pytest.mark.parametrize("content", [b"", b"subjective_scores,1,2,3\n"])
def test_an_info_file_of_the_wrong_content_is_one_line_naming_it(content, koniq, resnet18_checkpoint, tmp_path, capsys):
    info = tmp_path / "info.mat"
    info.write_bytes(content)
    argv = [*koniq, "--data_info", str(info), "--trained_model_file", str(resnet18_checkpoint)]
    assert test_dataset.main([*argv, "--results_dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"test_dataset.py: error: {info} is not an HDF5 (MATLAB v7.3) file")
    assert "rebuild it with make_info.py" in err
