"""Outputs never destroy inputs or earlier results, tried on purpose: an output that names a file
the run reads is refused before anything is written, and an interrupt, a crash or a full disk
while writing leaves the earlier file byte for byte as it was, with no temporary file beside it."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import save_plain_images, sha256, write_csv

import main
import make_info
import test_demo as demo
from linearityiqa.data.info_builders import user_info_from_csv
from linearityiqa.data.info_files import read_info, write_info
from linearityiqa.errors import OutputError
from linearityiqa.records import score_output
from linearityiqa.records.checkpoint import save_checkpoint
from linearityiqa.records.run_records import EpochLog, EpochMetrics, save_results
from linearityiqa.records.writing import replacing

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.reliability


def folder_state(folder) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) and its hash."""
    return {str(path.relative_to(folder)): sha256(path) for path in sorted(Path(folder).rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def scoring(tmp_path_factory, resnet18_checkpoint):
    """A checkpoint of resnet18 (a copy of the session's) and a folder of three images."""
    folder = tmp_path_factory.mktemp("scoring")
    shutil.copyfile(resnet18_checkpoint, folder / "model.pth")
    save_plain_images(folder / "images", {"a.jpg": (48, 32), "b.jpg": (48, 32), "c.jpg": (48, 32)})
    return folder


def demo_argv(scoring, output) -> list[str]:
    return ["--img", str(scoring / "images"), "--trained_model_file", str(scoring / "model.pth"), "-o", str(output)]


@pytest.mark.parametrize("output", ["model.pth", "images/b.jpg", "link to the model"])
def test_scores_are_never_written_over_the_checkpoint_or_an_image(output, scoring, capsys):
    link = scoring / "link to the model"
    if not link.exists():
        os.symlink(scoring / "model.pth", link)
    before = folder_state(scoring)
    assert demo.main(demo_argv(scoring, scoring / output)) == 1
    err = capsys.readouterr().err
    what = "image" if output.endswith(".jpg") else "checkpoint"
    assert err.count("\n") == 1 and err.startswith(f"test_demo.py: error: --output {scoring / output} is the {what} ")
    assert "choose another --output; nothing was written" in err
    assert folder_state(scoring) == before


def test_an_interrupt_while_scoring_leaves_the_earlier_scores_whole(scoring, tmp_path, monkeypatch, capsys):
    scores = tmp_path / "scores.csv"
    assert demo.main(demo_argv(scoring, scores)) == 0
    earlier = scores.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
        yield

    with monkeypatch.context() as patch:
        patch.setattr(demo, "score_windows", interrupted)
        capsys.readouterr()
        assert demo.main(demo_argv(scoring, scores)) == 130
    assert capsys.readouterr().err == (
        "test_demo.py: interrupted; what was saved before is kept; pass --resume to go on from the rows written\n"
    )
    assert scores.read_bytes() == earlier
    partial = tmp_path / "scores.csv.partial"
    assert sorted(path.name for path in partial.iterdir()) == ["_run.json", "scores.csv"]
    assert (partial / "scores.csv").read_bytes() == earlier.splitlines(keepends=True)[0]  # the header, no rows yet
    assert demo.main([*demo_argv(scoring, scores), "--resume"]) == 0
    assert scores.read_bytes() == earlier and not partial.exists()


def test_a_full_disk_under_the_scores_is_one_line_and_keeps_them(scoring, tmp_path, monkeypatch, capsys):
    scores = tmp_path / "scores.csv"
    assert demo.main(demo_argv(scoring, scores)) == 0
    earlier = scores.read_bytes()

    def full_disk(file):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(score_output, "_sync", full_disk)
        capsys.readouterr()
        assert demo.main(demo_argv(scoring, scores)) == 1
    rows = tmp_path / "scores.csv.partial" / "scores.csv"
    assert capsys.readouterr().err == (
        f"test_demo.py: error: cannot write the scores {rows}: No space left on device; the rows of 0 images are "
        f"kept there: make room, then pass --resume to go on\n"
    )
    assert scores.read_bytes() == earlier


def test_make_info_refuses_to_write_over_its_score_file(tmp_path, capsys):
    scores = write_csv(tmp_path / "scores.csv", ["image_name", "mos"], [["a.jpg", 1], ["b.jpg", 2]])
    before = folder_state(tmp_path)
    assert make_info.main(["csv", "--csv", str(scores), "--out", str(scores)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"make_info.py: error: --out {scores} is the score file {scores} itself") and "\n" == err[-1]
    assert folder_state(tmp_path) == before


def test_main_refuses_a_checkpoint_over_its_info_file_before_training(koniq, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    info = koniq[koniq.index("--data_info") + 1]
    before = sha256(info)
    argv = ["--arch", "resnet18", "--pretrained", "none", "-e", "1", "--num_workers", "0", *koniq]
    assert main.main([*argv, "--trained_model_file", info]) == 1
    err = capsys.readouterr().err
    assert f"main.py: error: --trained_model_file {info} is the info file {info} itself" in err
    assert "training on" not in capsys.readouterr().out and sha256(info) == before


def test_an_interrupted_save_leaves_each_record_as_it_was(tmp_path, monkeypatch):
    """The test's metrics and scores, the epochs' metrics, an info file and a checkpoint, each
    interrupted halfway through its write."""
    results = str(tmp_path / "run.npy")
    save_results(results, {"sq": np.arange(3.0), "pq_before": np.ones((3, 1)), "pq": np.ones(3), "SROCC": 0.5})
    log = EpochLog(str(tmp_path / "run-epochs.csv"))
    log.add(1, "val", {"PLCC": 0.5})
    scores = write_csv(tmp_path / "scores.csv", ["image_name", "mos"], [["a.jpg", 1], ["b.jpg", 2]])
    write_info(tmp_path / "info.mat", user_info_from_csv(scores, num_orderings=2))
    save_checkpoint(str(tmp_path / "model.pth"), {"model": {"w": torch.ones(2)}})
    before = folder_state(tmp_path)

    def halfway(file):
        file.write(b"half" if "b" in file.mode else "half")
        raise KeyboardInterrupt

    def interrupt():
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", lambda file, *args, **kwargs: halfway(file))
    with pytest.raises(KeyboardInterrupt):
        save_results(results, {"sq": np.zeros(3), "pq_before": np.zeros((3, 1)), "pq": np.zeros(3)})
    monkeypatch.setattr(torch, "save", lambda checkpoint, file: halfway(file))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(str(tmp_path / "model.pth"), {"model": {"w": torch.zeros(2)}})
    monkeypatch.setattr("linearityiqa.data.info_files._matlab_header", interrupt)  # its temporary file just made
    with pytest.raises(KeyboardInterrupt):
        write_info(tmp_path / "info.mat", user_info_from_csv(scores, num_orderings=3))
    monkeypatch.setattr("csv.writer", halfway)
    with pytest.raises(KeyboardInterrupt):
        log.add(2, "val", {"PLCC": 0.6})
    assert folder_state(tmp_path) == before
    assert read_info(tmp_path / "info.mat").index.shape == (2, 2)
    assert EpochMetrics(log.path).series("val", "PLCC").epochs == [1]


def past_a_size_of(limit: int):
    """A child process's files cannot grow past `limit` bytes: a write beyond fails with EFBIG, as
    one on a full disk fails with ENOSPC, whichever library makes it."""

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the error, not the signal that kills by default
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limited


def test_an_info_file_that_cannot_be_written_whole_is_one_line_and_keeps_the_earlier(tmp_path):
    names = [[f"{number:05d}.jpg", number] for number in range(3000)]  # an info file of about 1.2 MB
    scores = write_csv(tmp_path / "scores.csv", ["image_name", "mos"], names)
    out = tmp_path / "info.mat"
    write_info(out, user_info_from_csv(write_csv(tmp_path / "two.csv", ["image_name", "mos"], names[:2])))
    before = folder_state(tmp_path)
    command = [sys.executable, str(REPO / "make_info.py"), "csv", "--csv", str(scores), "--out", str(out)]
    # HDF5 writing to the file itself crashed here (status -11), leaving its temporary file behind.
    result = subprocess.run(command, capture_output=True, text=True, preexec_fn=past_a_size_of(200_000))
    assert (result.returncode, result.stderr) == (
        1,
        f"make_info.py: error: cannot write info file {out}: File too large; free space, or pass another --out; "
        f"a file there before is kept\n",
    )
    assert folder_state(tmp_path) == before and len(read_info(out).im_names) == 2


def test_a_write_that_fails_names_the_file_and_keeps_it(tmp_path):
    kept = tmp_path / "kept.csv"
    kept.write_text("earlier\n")
    with pytest.raises(OutputError) as error, replacing(kept, what="the table", advice="retry") as file:
        file.write("new")
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert str(error.value) == f"cannot write the table {kept}: Disk quota exceeded; retry; a file there before is kept"
    assert os.listdir(tmp_path) == ["kept.csv"] and kept.read_text() == "earlier\n"


def test_a_written_file_gets_the_permissions_of_a_new_file_or_of_the_one_it_replaces(tmp_path):
    mask = os.umask(0o022)
    try:
        with replacing(tmp_path / "new.csv", what="the scores", advice="-") as file:
            file.write("a\n")
        assert os.stat(tmp_path / "new.csv").st_mode & 0o777 == 0o644  # not mkstemp's 0o600
        os.chmod(tmp_path / "new.csv", 0o640)
        with replacing(tmp_path / "new.csv", what="the scores", advice="-") as file:
            file.write("b\n")
        assert os.stat(tmp_path / "new.csv").st_mode & 0o777 == 0o640
    finally:
        os.umask(mask)
