"""More of what a careless user does, tried on purpose: outputs that are pipes or links, a
checkpoint saved over a training image, score files with repeated columns or odd values, options
that could never work together, and checkpoints that are not quite checkpoints. Each ends in one
line before the work it would spoil (or, for a link, writes where the link leads)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import save_plain_images, sha256, write_csv

import main
import make_info
import make_synthetic
import test_demo as demo
from IQAmodel import IQAModel
from linearityiqa.cli.scripts import Advice, user_message
from linearityiqa.data.decoding import _undecodable
from linearityiqa.data.info_files import IQAInfo, read_info, write_info
from linearityiqa.errors import OutputError, first_line
from linearityiqa.records import checkpoint as checkpoints
from linearityiqa.records.checkpoint import save_checkpoint

pytestmark = pytest.mark.reliability
SETTINGS = {"arch": "resnet18", "pool": "avg", "use_bn_end": False, "P6": 1, "P7": 1}


@pytest.fixture(scope="module")
def scoring(tmp_path_factory):
    folder = tmp_path_factory.mktemp("careless")
    torch.manual_seed(0)
    weights = IQAModel(arch="resnet18", pretrained=False).state_dict()
    save_checkpoint(str(folder / "model.pth"), {"model": weights, "k": [1.0] * 3, "b": [0.0] * 3, "settings": SETTINGS})
    torch.save(weights, folder / "weights.pth")
    save_plain_images(folder / "images", {"a.jpg": (48, 32)})
    return folder


def demo_argv(scoring, *extra) -> list[str]:
    return ["--img", str(scoring / "images"), "--trained_model_file", str(scoring / "model.pth"), *extra]


def test_an_output_that_is_a_named_pipe_is_refused_not_replaced(scoring, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe")
    assert demo.main(demo_argv(scoring, "-o", str(tmp_path / "pipe"))) == 1
    assert capsys.readouterr().err == (
        f"test_demo.py: error: cannot write the scores {tmp_path / 'pipe'}: it is a named pipe, not a file; "
        f"pass another --output; a file there before is kept\n"
    )
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
    assert str(_undecodable(Path("a.jpg"), PermissionError(13, "Permission denied"))) == (
        "cannot read image a.jpg (permission denied): give this user read access to it"
    )
    memory = MemoryError("Unable to allocate 149. GiB for an array")
    assert user_message(memory, Advice(out_of_memory="lower --orderings")) == (
        "out of memory (Unable to allocate 149. GiB for an array): lower --orderings"
    )


def test_a_state_dict_saved_alone_is_told_how_to_save_a_checkpoint(scoring, capsys):
    assert demo.main(["--img", str(scoring / "images"), "--trained_model_file", str(scoring / "weights.pth")]) == 1
    assert capsys.readouterr().err == (
        f"test_demo.py: error: checkpoint {scoring / 'weights.pth'} holds no 'model' state: it holds weights "
        f"alone (a state_dict): save {{'model': state_dict, 'k': k, 'b': b}}, as main.py does\n"
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
    assert err.count("error") == 1 and err.endswith(
        "main.py: error: -accum 1000 batches per step is more than the 3 batches of an epoch: no step would ever "
        "be taken; lower -accum (or -bs)\n"
    )
    assert not (tmp_path / "m.pth").exists()


def test_make_synthetic_refuses_sizes_it_cannot_make(tmp_path, capsys):
    assert make_synthetic.main(["--out", str(tmp_path / "s"), "--width", "0", "--count", "3"]) == 1
    assert "--width 0 --height 768: images must be at least 1 x 1" in capsys.readouterr().err
    assert make_synthetic.main(["--out", str(tmp_path / "s"), "--count", "100000000000"]) == 1
    assert "--count 100000000000 is more than the 100,000 images" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
