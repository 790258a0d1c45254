"""Any name and any size, tried on purpose: file names that are not valid UTF-8 (in a folder, on
standard input), named pipes, devices and folders where a file belongs, splits too small for a
metric, and sizes too large to allocate. Each is scored, or refused in one line that names the
file or the value, before any work that it would spoil."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from data_helpers import save_plain_images

import main
import make_info
import test_dataset
import test_demo as demo
from linearityiqa.data.info_files import IQAInfo, write_info

pytestmark = pytest.mark.reliability

NOT_UTF8 = b"caf\xe9.jpg"  # Latin-1 bytes: no valid UTF-8 reads them


def files_in(folder: Path) -> list[Path]:
    """Every file under `folder` (its folder may have been made by the check that it takes files)."""
    return [path for path in folder.rglob("*") if path.is_file()]


@contextlib.contextmanager
def at_most(seconds: int):
    """Fail instead of hanging: a named pipe that is opened blocks until a writer comes."""

    def hung(signum, frame):
        raise AssertionError(f"still running after {seconds} s: something waited on a pipe")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def scoring(tmp_path_factory, resnet18_checkpoint):
    """A resnet18 checkpoint (a copy of the session's); a folder with a name that is not UTF-8 among
    good ones; a named pipe."""
    root = tmp_path_factory.mktemp("names")
    shutil.copyfile(resnet18_checkpoint, root / "model.pth")
    save_plain_images(root / "images", {"a.jpg": (48, 32), "b.jpg": (48, 32)})
    (root / "images" / "a.jpg").rename(os.fsdecode(bytes(root / "images") + b"/" + NOT_UTF8))
    os.mkfifo(root / "pipe.jpg")
    return root


def demo_argv(scoring, img, *extra) -> list[str]:
    return ["--img", str(img), "--trained_model_file", str(scoring / "model.pth"), *extra]


def strange_path(scoring) -> str:
    """The image whose name is not UTF-8, as Python names it (its bytes as surrogate escapes)."""
    return os.path.join(scoring / "images", os.fsdecode(NOT_UTF8))


def test_a_folder_with_a_name_that_is_not_utf8_is_scored_into_the_csv_as_its_bytes(scoring, tmp_path, capsys):
    output = tmp_path / "scores.csv"
    output.write_text("image,score,error\nyesterday.jpg,50.0,\n")
    assert demo.main(demo_argv(scoring, scoring / "images", "-o", str(output))) == 0
    assert capsys.readouterr().err.startswith("test_demo.py: scores are k*y+b")  # and nothing before
    raw = output.read_bytes()
    assert bytes(scoring / "images") + b"/" + NOT_UTF8 + b"," in raw  # the name's own bytes, not "?" or "\\xe9"
    rows = output.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    assert rows[0] == "image,score,error"
    assert [row.rsplit(",", 2)[0] for row in rows[1:]] == [
        str(scoring / "images" / "b.jpg"),
        strange_path(scoring),
    ]
    assert os.path.isfile(rows[2].rsplit(",", 2)[0])  # read back losslessly, the row opens its image


def test_names_on_standard_input_that_are_not_utf8_are_scored(scoring, monkeypatch, capsysbinary):
    listed = bytes(scoring / "images") + b"/" + NOT_UTF8 + b"\n" + bytes(scoring / "images" / "b.jpg") + b"\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(listed)))
    assert demo.main(demo_argv(scoring, "-")) == 0
    out, err = capsysbinary.readouterr()
    lines = out.splitlines()
    assert err.startswith(b"test_demo.py: scores are k*y+b") and err.count(b"\n") == 1
    assert lines[0] == b"image,score,error" and len(lines) == 3
    assert lines[1].startswith(bytes(scoring / "images") + b"/" + NOT_UTF8 + b",")
    assert np.isfinite(float(lines[1].split(b",")[1])) and lines[1].endswith(b",")  # a score, no error


@pytest.mark.parametrize(
    "target, problem",
    [("pipe.jpg", "is a named pipe, not a file"), ("/dev/null", "is a device, not a file")],
)
def test_a_pipe_or_a_device_as_the_image_is_named_as_such_and_never_read(scoring, target, problem, capsys):
    path = scoring / target
    with at_most(30):
        assert demo.main(demo_argv(scoring, path)) == 1
    assert capsys.readouterr().err == (
        f"test_demo.py: error: image {path} {problem}: pass an image, a folder, a glob pattern, a CSV or Parquet "
        f"list of paths or - "
        f"(for paths on standard input) as --img\n"
    )


def test_a_pipe_among_the_listed_images_spoils_only_its_own_row(scoring, tmp_path, monkeypatch, capsys):
    listed = f"{scoring / 'pipe.jpg'}\n{scoring / 'images' / 'b.jpg'}\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(listed))
    with at_most(30):
        assert demo.main(demo_argv(scoring, "-", "-o", str(tmp_path / "s.csv"))) == 3
    rows = list(csv.reader((tmp_path / "s.csv").read_text().splitlines()))
    pipe = str(scoring / "pipe.jpg")
    assert rows[1][:2] == [pipe, ""] and rows[1][2].startswith(f"image {pipe} is a named pipe, not a file: ")
    assert rows[2][0] == str(scoring / "images" / "b.jpg") and float(rows[2][1]) and rows[2][2] == ""
    assert "Traceback" not in capsys.readouterr().err


def write_user_set(root: Path, names: list[str], *, count: int | None = None) -> list[str]:
    """A data set of its own (no split of its own: tested whole) whose info file lists `names`;
    the options that point test_dataset.py and main.py at it."""
    count = len(names) if count is None else count
    save_plain_images(root / "images", dict.fromkeys(names[:count], (48, 32)))
    ids = np.arange(1, len(names) + 1)
    info = IQAInfo(
        im_names=names,
        scores=np.linspace(20, 80, len(names)),
        stds=np.ones(len(names)),
        ref_ids=ids,
        index=np.stack([ids, ids[::-1]], axis=1),
    )
    write_info(root / "info.mat", info)
    return ["--dataset", "mine", "--data_info", str(root / "info.mat"), "--im_dir", str(root / "images")]


def argv_for_testing(scoring, data, tmp_path) -> list[str]:
    return data + [
        "--trained_model_file", str(scoring / "model.pth"), "--results_dir", str(tmp_path / "results"),
        "--cache_dir", "none", "--num_workers", "0",
    ]  # fmt: skip


def test_a_pipe_in_a_data_sets_folder_is_named_before_anything_is_decoded(scoring, tmp_path, capsys):
    data = write_user_set(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "pipe.jpg"], count=3)
    os.mkfifo(tmp_path / "images" / "pipe.jpg")
    with at_most(30):
        assert test_dataset.main(argv_for_testing(scoring, data, tmp_path)) == 1
    assert capsys.readouterr().err == (
        f"test_dataset.py: error: image {tmp_path / 'images' / 'pipe.jpg'} is a named pipe, not a file: "
        f"replace it with the image file\n"
    )
    assert files_in(tmp_path / "results") == []


@pytest.mark.parametrize("option", ["--data_info", "--trained_model_file"])
def test_a_folder_given_as_a_file_is_called_a_folder(scoring, tmp_path, option, capsys):
    data = write_user_set(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    argv = argv_for_testing(scoring, data, tmp_path)
    argv[argv.index(option) + 1] = str(tmp_path / "images")
    assert test_dataset.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f" {tmp_path / 'images'} is a folder, not a file: pass " in err
    assert "does not exist" not in err and "not found" not in err


def test_a_test_too_small_for_the_logistic_fit_reports_it_as_not_available(scoring, tmp_path, capsys):
    data = write_user_set(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    assert test_dataset.main(argv_for_testing(scoring, data, tmp_path)) == 0
    out, err = capsys.readouterr()
    assert err.startswith(  # before the images are decoded (their progress bar follows)
        "test_dataset.py: note: mine has 3 test images; the logistic fit needs at least 4, "
        "so PLCC_logistic and RMSE_logistic are n/a\n\rdecoding mine:"
    )
    assert "mine, PLCC_logistic: n/a" in out.splitlines() and "mine, SROCC: n/a" not in out
    (results,) = (tmp_path / "results").glob("*.npy")
    performance = np.load(results, allow_pickle=True).item()
    assert np.isnan(performance["PLCC_logistic"]) and np.isfinite(performance["SROCC"])


def test_a_test_of_one_image_is_refused_before_it_runs(scoring, tmp_path, capsys):
    data = write_user_set(tmp_path, ["a.jpg"])
    assert test_dataset.main(argv_for_testing(scoring, data, tmp_path)) == 1
    assert capsys.readouterr().err == (
        "test_dataset.py: error: mine has 1 test image(s), but a correlation needs at least 2: "
        "test on more images, or score them with test_demo.py\n"
    )
    assert files_in(tmp_path / "results") == []


def test_a_split_too_small_for_its_metrics_is_refused_before_decoding(tmp_path, capsys):
    data = write_user_set(tmp_path, [f"{i}.jpg" for i in range(8)])
    cache = tmp_path / "cache"
    argv = data + ["--arch", "resnet18", "--pretrained", "none", "-e", "1", "-bs", "2", "--cache_dir", str(cache)]
    argv += ["-tr", "0.5", "-tvr", "0.875", "--results_dir", str(tmp_path / "r"), "--log_dir", str(tmp_path / "l")]
    argv += ["--trained_model_file", str(tmp_path / "model.pth")]
    assert main.main(argv) == 1
    assert capsys.readouterr().err == (
        "main.py: error: the test split of mine has 1 image(s) with train_ratio=0.5, train_and_val_ratio=0.875, "
        "but it needs at least 2: choose ratios (--train_ratio, --train_and_val_ratio) that leave 2 or more "
        "images in each split\n"
    )
    assert not cache.exists() and not (tmp_path / "model.pth").exists()


LIMIT = (
    "more than the limit of 89,478,485 (--max_pixels): pass a smaller --resize_size_h/--resize_size_w, "
    "or raise --max_pixels"
)


def test_an_absurd_resize_is_refused_before_memory_is_taken_for_it(scoring, tmp_path, capsys):
    huge = ["--resize", "-rs_h", "100000", "-rs_w", "100000"]
    message = f"resizing images to 100000 x 100000 makes 10,000,000,000 pixels each, {LIMIT}\n"
    assert demo.main(demo_argv(scoring, scoring / "images" / "b.jpg", *huge)) == 1
    assert capsys.readouterr().err == f"test_demo.py: error: {message}"
    data = write_user_set(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    assert test_dataset.main(argv_for_testing(scoring, data, tmp_path) + huge) == 1
    assert capsys.readouterr().err == f"test_dataset.py: error: {message}"
    train = data + ["--arch", "resnet18", "--pretrained", "none", "-e", "1", "--log_dir", str(tmp_path / "l")]
    train += ["--trained_model_file", str(tmp_path / "m.pth"), "--results_dir", str(tmp_path / "r"), *huge]
    assert main.main(train) == 1
    assert capsys.readouterr().err == f"main.py: error: {message}"
    assert files_in(tmp_path / "results") == [] and not (tmp_path / "m.pth").exists()


def test_a_score_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    (tmp_path / "scores.csv").write_bytes(b"image_name,mos\n" + NOT_UTF8 + b",3\nb.jpg,4\n")
    assert make_info.main(["csv", "--csv", str(tmp_path / "scores.csv"), "--out", str(tmp_path / "info.mat")]) == 1
    assert capsys.readouterr().err == (
        f"make_info.py: error: {tmp_path / 'scores.csv'} is not UTF-8 text (byte 0xe9 at byte 18): "
        f"save it as UTF-8 (CSV UTF-8 in a spreadsheet)\n"
    )
    assert files_in(tmp_path) == [tmp_path / "scores.csv"]


@pytest.mark.parametrize("kind", ["pipe", "folder"])
def test_pretrained_weights_that_are_a_pipe_or_a_folder_are_named_so(koniq, tmp_path, kind, capsys):
    weights = tmp_path / "weights.pth"
    os.mkfifo(weights) if kind == "pipe" else weights.mkdir()
    argv = ["--arch", "resnet18", "--pretrained", str(weights), "-e", "1", *koniq]
    argv += ["--trained_model_file", str(tmp_path / "m.pth"), "--results_dir", str(tmp_path / "r")]
    with at_most(60):
        assert main.main(argv + ["--log_dir", str(tmp_path / "l")]) == 1
    what = "a named pipe" if kind == "pipe" else "a folder"
    err = capsys.readouterr().err
    assert err.startswith(f"main.py: error: pretrained weights file {weights} is {what}, not a file: ")
    assert err.count("\n") == 1 and "(--pretrained)" in err


def test_absurd_pyramid_levels_are_refused_before_the_heads_are_allocated(koniq, tmp_path, capsys):
    argv = ["--arch", "resnet18", "--pretrained", "none", "-e", "1", "--P7", "3000", *koniq]
    argv += ["--trained_model_file", str(tmp_path / "m.pth"), "--results_dir", str(tmp_path / "r")]
    assert main.main(argv + ["--log_dir", str(tmp_path / "l")]) == 1
    # layer4 of resnet18: 512 channels x (1 + 4 + ... + 3000^2) cells; its head's first layer x 1024 in float32
    features = 512 * sum(p * p for p in range(1, 3001))
    assert capsys.readouterr().err == (
        f"main.py: error: P7=3000 pyramid levels make {features:,} pooled features, and the head that reduces "
        f"them {features * 1024 * 4 / 2**30:,.0f} GiB of weights: pass fewer levels (--P7)\n"
    )
