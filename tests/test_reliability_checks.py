"""Checks before the long work, and the safety net behind them, tried on purpose: outputs that
cannot be written, names that cannot be file names, a learning-rate schedule that rounds to
nothing and the authors' own test_dataset.py options are dealt with before anything is trained
or tested; an error that is a bug is one line that names the log holding its traceback."""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import assert_one_line, save_plain_images

import main
import make_synthetic
import test_dataset
import test_demo as demo
from linearityiqa.cli.options import get_args_parser, get_test_dataset_parser
from linearityiqa.cli.settings import koniq_run_checkpoint, run_settings
from linearityiqa.errors import ConfigError
from linearityiqa.records.checkpoint import save_checkpoint
from linearityiqa.records.run_records import EpochMetrics, dataset_results_file, epochs_file, save_results, scores_file
from main import lr_step_size

pytestmark = pytest.mark.reliability

SMALL = ["--arch", "resnet18", "--pretrained", "none", "-rs", "-rs_h", "64", "-rs_w", "96", "-bs", "4"]
SMALL += ["--num_workers", "0"]


def files_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def train_argv(koniq, tmp_path, *extra) -> list[str]:
    outputs = ["--trained_model_file", str(tmp_path / "checkpoints" / "model.pth")]
    outputs += ["--results_dir", str(tmp_path / "results"), "--log_dir", str(tmp_path / "runs")]
    return SMALL + koniq + outputs + ["-e", "1", *extra]


@pytest.mark.parametrize(
    "option, what",
    [
        ("--results_dir", "the run's results"),
        ("--log_dir", "the TensorBoard log"),
        ("--trained_model_file", "the checkpoint"),
    ],
)
def test_an_output_folder_that_is_a_file_is_named_before_training(koniq, tmp_path, option, what, run_name, capsys):
    (tmp_path / "a file").write_text("kept")
    argv = train_argv(koniq, tmp_path)
    inside = str(tmp_path / "a file" / "model.pth") if option == "--trained_model_file" else str(tmp_path / "a file")
    argv[argv.index(option) + 1] = inside
    assert main.main(argv) == 1
    out, err = capsys.readouterr()
    assert err.startswith(f"main.py: error: cannot write {what} {tmp_path / 'a file'}/") and err.count("\n") == 1
    assert err.endswith(
        f": a file is in the way of its folder; free space, or pass another {option}; a file there before is kept\n"
    )
    assert "epoch" not in out and "decoding" not in err  # nothing was loaded or trained
    assert [path.name for path in files_in(tmp_path)] == ["a file"] and (tmp_path / "a file").read_text() == "kept"


@pytest.mark.parametrize("script, name", [("main.py", "mine/2024"), ("test_dataset.py", "mine/2024"),
                                          ("main.py", "My\nSet")])  # fmt: skip
def test_a_data_set_name_with_a_path_separator_is_refused(koniq, tmp_path, script, name, capsys):
    if script == "main.py":
        assert main.main(train_argv(koniq, tmp_path, "--dataset", name)) == 1
    else:
        checkpoint = ["--trained_model_file", str(tmp_path / "absent.pth"), "--results_dir", str(tmp_path / "r")]
        assert test_dataset.main(SMALL[:2] + koniq + checkpoint + ["--dataset", name]) == 1
    assert_one_line(capsys.readouterr().err, script, f"--dataset {name!r}", "cannot hold '/'", "name it without one")
    assert files_in(tmp_path) == []


def test_a_learning_rate_step_that_rounds_to_0_is_raised_to_1_and_said(koniq, tmp_path, run_name, capsys):
    notes = []
    # 3 / (1 + log 0.01 / log 0.9) = 0.07 epochs between decays; the authors' rule rounds it to 0
    assert lr_step_size(3, 0.9, 0.01, report=notes.append) == 1
    assert notes == [
        "note: 3 epochs are too few for an overall decay of 0.01 in steps of 0.9: the learning rate decays "
        "after every epoch, to 0.81 of its start in the last"
    ]
    assert lr_step_size(30, 0.1, 0.01, report=notes.append) == 10 and len(notes) == 1  # the paper's: no note
    # three epochs of 32x32 images: the schedule does not depend on the images' size
    argv = train_argv(koniq, tmp_path, "-lrd", "0.9", "-e", "3", "-rs_h", "32", "-rs_w", "32")
    assert main.main(argv) == 0
    out, err = capsys.readouterr()
    assert notes[0] in out.splitlines()
    epochs = EpochMetrics(epochs_file(str(tmp_path / "results"), run_name(argv)))
    assert epochs.series("train", "loss").epochs == [1, 2, 3] and "Traceback" not in err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, resnet18_checkpoint):
    """A folder holding, under the name main.py gives it, the checkpoint of the KonIQ-10k run that
    the authors' test_dataset.py spelling below names."""
    folder = tmp_path_factory.mktemp("authors")
    weights = torch.load(resnet18_checkpoint, weights_only=True)["model"]
    options = vars(get_test_dataset_parser().parse_args(AUTHORS_TEST))
    path = folder / koniq_run_checkpoint(options)
    save_checkpoint(str(path), {"model": weights, "k": [1.0] * 3, "b": [0.0] * 3})
    return folder, path


# The authors' later test_dataset.py: the training options name the checkpoint to test.
AUTHORS_TEST = "-lr 1e-4 -bs 8 -flr 0.1 -e 30 -arch resnet18 -lt norm-in-norm -p 1 -q 2 -ds KonIQ-10k -rs".split()
AUTHORS_TEST += ["-rs_h", "64", "-rs_w", "96"]


def test_the_authors_test_dataset_options_test_the_run_they_name(trained_run, koniq, monkeypatch, capsys):
    folder, checkpoint = trained_run
    monkeypatch.chdir(folder)
    assert checkpoint.parent.name == "checkpoints" and "-lr=0.0001-bs=8-e=30-" in checkpoint.name
    assert test_dataset.main(AUTHORS_TEST + koniq) == 0
    out = capsys.readouterr().out
    relative = os.path.relpath(checkpoint, folder)
    assert out.startswith(f"testing {relative}, the checkpoint of main.py's KonIQ-10k run with these options\n")
    assert (folder / "results" / f"dataset=KonIQ-10k-tested_on_{checkpoint.name}.npy").is_file()
    # another epoch count names another run, whose checkpoint is not there
    assert test_dataset.main(["29" if word == "30" else word for word in AUTHORS_TEST] + koniq) == 1
    assert capsys.readouterr().err.startswith(f"test_dataset.py: error: checkpoint {relative.replace('e=30', 'e=29')} ")


def test_a_bug_in_a_script_is_one_line_naming_its_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def broken(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(demo, "open_model", broken)
    save_plain_images(tmp_path / "images", {"a.jpg": (16, 16)})
    assert demo.main(["--img", str(tmp_path / "images")]) == 70
    (log,) = tmp_path.glob("linearityiqa-test_demo-*.log")
    assert capsys.readouterr().err == (
        "test_demo.py: error: a bug of LinearityIQA, not a mistake of yours (ZeroDivisionError: division by zero); "
        f"its traceback is in {log}: please report it with that file\n"
    )
    trace = log.read_text()
    assert ", in broken\n" in trace and trace.endswith("\nZeroDivisionError: division by zero\n")


def test_a_bug_while_training_is_one_line_naming_its_log(koniq, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(main, "build_trainer", lambda *args: {}["trainer"])
    assert main.main(train_argv(koniq, tmp_path)) == 70
    (log,) = tmp_path.glob("linearityiqa-main-*.log")
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "main.py: error: a bug of LinearityIQA, not a mistake of yours (KeyError: 'trainer'); "
        f"its traceback is in {log}: please report it with that file"
    )
    assert "Traceback" not in "\n".join(err) and log.read_text().endswith("KeyError: 'trainer'\n")
    assert not list((tmp_path / "results").glob("*.lock"))  # the run's lock went with it


def test_with_linearityiqa_traceback_a_bug_while_training_propagates_whole(koniq, tmp_path, monkeypatch, capsys):
    """For whoever changes the code: the bug reaches the caller (python -m pdb stops there), the lock is gone."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("LINEARITYIQA_TRACEBACK", "1")
    monkeypatch.setattr(main, "build_trainer", lambda *args: {}["trainer"])
    with pytest.raises(KeyError, match="trainer") as raised:
        main.main(train_argv(koniq, tmp_path))
    assert any(frame.name == "training" for frame in traceback.extract_tb(raised.tb))  # where it happened
    assert not list(tmp_path.glob("linearityiqa-main-*.log")) and "error" not in capsys.readouterr().err
    assert not list((tmp_path / "results").glob("*.lock"))


def test_names_too_long_for_a_file_are_cut_and_told_apart_by_a_hash(tmp_path):
    checkpoint = "checkpoints/" + "resnext101_32x8d-avg-" * 15
    results = dataset_results_file(str(tmp_path), "KonIQ-10k", checkpoint)
    twin = dataset_results_file(str(tmp_path), "KonIQ-10k", checkpoint + "2")
    assert results == dataset_results_file(str(tmp_path), "KonIQ-10k", checkpoint) and results != twin
    assert os.path.basename(results).startswith("dataset=KonIQ-10k-tested_on_resnext101_32x8d-avg-")
    assert len(os.path.basename(scores_file(results))) == 255  # written, with its temporary file beside it
    save_results(results, {"SROCC": 0.5, "pq": np.zeros(2), "sq": np.ones(2), "pq_before": np.zeros((2, 1))})
    assert np.load(results, allow_pickle=True).item()["SROCC"] == 0.5 and os.path.isfile(scores_file(results))
    # main.py refuses a run name that its own files could not take
    with pytest.raises(ConfigError, match=r"the run's name, .* would be 2\d\d bytes long, more than the 244"):
        run_settings(get_args_parser().parse_args(["--dataset", "x" * 60, "--data_info", "i", "--im_dir", "d"]))


def test_a_mistake_in_one_of_several_processes_is_its_one_line(koniq, tmp_path, capfd):
    argv = train_argv(koniq, tmp_path, "--nproc_per_node", "2", "--device", "cpu", "--arch", "resnet19")
    assert main.main(argv) == 1
    err = capfd.readouterr().err
    assert err.startswith("main.py: error: unknown arch 'resnet19': use one of ") and err.count("\n") == 1


def test_make_synthetic_into_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "a file").write_text("kept")
    assert make_synthetic.main(["--out", str(tmp_path / "a file"), "--layout", "koniq", "--count", "5"]) == 1
    err = capsys.readouterr().err
    assert_one_line(err, "make_synthetic.py", str(tmp_path / "a file" / "koniq10k"), "pass another --out")
    assert (tmp_path / "a file").read_text() == "kept"


def test_a_checkpoint_path_ending_in_a_slash_is_refused_before_training(koniq, tmp_path, capsys):
    argv = train_argv(koniq, tmp_path)
    argv[argv.index("--trained_model_file") + 1] = f"{tmp_path / 'new folder'}/"
    assert main.main(argv) == 1
    out, err = capsys.readouterr()
    folder = f"{tmp_path / 'new folder'}/"
    assert_one_line(err, "main.py", f"cannot write the checkpoint {folder}", "names a folder", "--trained_model_file")
    assert "epoch" not in out


def test_a_loss_that_turns_nan_is_one_line_on_stderr(koniq, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(main, "IQALoss", lambda **kwargs: lambda y_pred, y: y_pred[2].sum() * float("nan"))
    assert main.main(train_argv(koniq, tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("main.py: error: the loss is nan at iteration 1 (epoch 1)") and err.count("\n") == 1


def test_output_dash_is_standard_output(resnet18_checkpoint, tmp_path, monkeypatch, capsys):
    shutil.copy(resnet18_checkpoint, tmp_path / "model.pth")
    save_plain_images(tmp_path / "images", {"a.jpg": (48, 32)})
    monkeypatch.chdir(tmp_path)
    assert demo.main(["--img", "images", "--trained_model_file", "model.pth", "-o", "-"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "image,score,error"
    assert out[1].startswith(os.path.join("images", "a.jpg") + ",")
    assert not os.path.exists("-")


@pytest.mark.reliability
def test_a_master_port_that_is_no_number_is_one_line(koniq, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MASTER_PORT", "http")
    assert main.main(train_argv(koniq, tmp_path, "--nproc_per_node", "2", "--device", "cpu")) == 1
    err = capsys.readouterr().err
    assert_one_line(err, "main.py", "MASTER_PORT='http' is no port number", "set it to a free port")
