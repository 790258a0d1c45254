"""linearityiqa/cli/scripts.py: the one way a script ends on a user's mistake, and the command
line that runs a root script, printed as a user types it and run as printed."""

from __future__ import annotations

import errno
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pytest
import torch

from linearityiqa.cli.scripts import (
    EXIT_BUG,
    EXIT_INTERRUPTED,
    EXIT_MISTAKE,
    Advice,
    command_line,
    exit_status,
    run_script,
    user_message,
)
from linearityiqa.errors import ConfigError, MissingFileError

REPOSITORY = Path(__file__).resolve().parents[1]

ADVICE = Advice(out_of_memory="lower -bs", unwritable="free space", loader_died="lower --num_workers")


def raising(error):
    def body():
        raise error

    return body


def test_a_body_that_ends_well_gives_its_own_status_or_0(capsys):
    assert exit_status("x.py", lambda: None) == 0
    assert exit_status("x.py", lambda: 3) == 3
    assert capsys.readouterr().err == ""


def test_a_users_mistake_is_one_line_and_status_1(capsys):
    assert exit_status("x.py", raising(MissingFileError("image a.jpg does not exist"))) == EXIT_MISTAKE == 1
    assert capsys.readouterr().err == "x.py: error: image a.jpg does not exist\n"


@pytest.mark.parametrize("setting", ["1", "yes"])
def test_with_linearityiqa_traceback_a_bug_propagates_and_writes_no_log(setting, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("LINEARITYIQA_TRACEBACK", setting)
    with pytest.raises(KeyError, match="settings"):
        exit_status("x.py", raising(KeyError("settings")))
    assert capsys.readouterr().err == "" and not list(tmp_path.iterdir())
    # a user's mistake is still one line: the variable is for bugs only
    assert exit_status("x.py", raising(ConfigError("bad"))) == EXIT_MISTAKE
    assert capsys.readouterr().err == "x.py: error: bad\n"


def test_linearityiqa_traceback_of_0_or_empty_keeps_the_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for setting in ("0", ""):
        monkeypatch.setenv("LINEARITYIQA_TRACEBACK", setting)
        assert exit_status("x.py", raising(KeyError("settings"))) == EXIT_BUG
        assert "a bug of LinearityIQA" in capsys.readouterr().err


def test_in_all_processes_but_the_first_a_mistake_is_silent(capsys):
    assert exit_status("main.py", raising(ConfigError("bad")), quiet=True) == 1
    assert capsys.readouterr().err == ""


@pytest.mark.reliability
def test_a_bug_is_one_line_naming_the_log_of_its_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["x.py", "--img", "a.jpg"])
    assert exit_status("x.py", raising(KeyError("settings"))) == EXIT_BUG == 70
    (log,) = tmp_path.glob("linearityiqa-x-*.log")
    err = capsys.readouterr().err
    assert err == (
        "x.py: error: a bug of LinearityIQA, not a mistake of yours (KeyError: 'settings'); "
        f"its traceback is in {log}: please report it with that file\n"
    )
    text = log.read_text()
    torch_version = metadata.version("torch")  # as installed, read without importing it
    assert text.startswith(f"command: x.py --img a.jpg\npython {platform.python_version()}, torch {torch_version}")
    assert "Traceback (most recent call last)" in text and "in body" in text and text.endswith("KeyError: 'settings'\n")
    # a full disk is a bug where the script gives no advice for it
    assert exit_status("x.py", raising(OSError(errno.ENOSPC, "No space left on device", "out.csv"))) == EXIT_BUG


@pytest.mark.reliability
def test_a_bug_whose_log_cannot_be_written_shows_its_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "not a folder"))
    (tmp_path / "not a folder").write_text("")
    assert exit_status("x.py", raising(ZeroDivisionError("division by zero"))) == EXIT_BUG
    first, *trace = capsys.readouterr().err.splitlines()
    assert first == (
        "x.py: error: a bug of LinearityIQA, not a mistake of yours (ZeroDivisionError: division by zero); "
        "please report it"
    )
    assert trace[0] == "Traceback (most recent call last):" and trace[-1] == "ZeroDivisionError: division by zero"


@pytest.mark.reliability
def test_ctrl_c_is_one_line_and_status_130(capsys):
    advice = Advice(interrupted="--resume continues from the last finished epoch")
    assert exit_status("main.py", raising(KeyboardInterrupt()), advice) == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == (
        "main.py: interrupted; what was saved before is kept; --resume continues from the last finished epoch\n"
    )
    assert exit_status("main.py", raising(KeyboardInterrupt()), quiet=True) == 130
    assert capsys.readouterr().err == ""


@pytest.mark.reliability
def test_a_message_of_several_lines_is_printed_as_one(capsys):
    assert exit_status("x.py", raising(ConfigError("cannot read a.mat:\n  unable to open\n"))) == 1
    assert capsys.readouterr().err == "x.py: error: cannot read a.mat: unable to open\n"


def test_failures_of_the_machine_get_the_scripts_advice():
    full = OSError(errno.ENOSPC, "No space left on device", "checkpoints/run")
    assert user_message(full, ADVICE) == "checkpoints/run: No space left on device; free space"
    memory = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore words")
    assert user_message(memory, ADVICE) == "out of memory (CUDA out of memory. Tried to allocate 2.00 GiB): lower -bs"
    died = RuntimeError("DataLoader worker (pid 7) is killed by signal: Killed.")
    assert user_message(died, ADVICE) == (
        "a data loading process died (DataLoader worker (pid 7) is killed by signal: Killed). lower --num_workers"
    )
    assert user_message(RuntimeError("shapes do not match"), ADVICE) is None
    assert user_message(memory, Advice()) is None


def test_a_root_script_is_printed_as_typed_from_here(monkeypatch, tmp_path):
    monkeypatch.chdir(REPOSITORY)
    assert command_line("main.py", ["--arch", "resnet18", "--img", "my photo.jpg"]) == (
        "python main.py --arch resnet18 --img 'my photo.jpg'"
    )
    monkeypatch.chdir(tmp_path)  # outside the repository its path is whole
    assert command_line("test_demo.py", ["-o", "s.csv"]) == f"python {REPOSITORY / 'test_demo.py'} -o s.csv"


def test_a_root_script_runs_in_a_process_of_its_own_and_gives_its_status(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert run_script("make_synthetic.py", ["--out", "synthetic", "--layout", "koniq", "--count", "0"]) == 1
    assert capfd.readouterr().err.startswith("make_synthetic.py: error: cannot make 0 images")
    assert run_script("make_synthetic.py", "--out synthetic --count 2 --width 16 --height 12".split()) == 0
    assert len(list((tmp_path / "synthetic" / "koniq10k" / "1024x768").iterdir())) == 2  # written from here


@pytest.mark.parametrize(
    "error, extra",
    [
        (ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime"), "onnx"),
        (ModuleNotFoundError("No module named 'onnx.checker'", name="onnx.checker"), "export"),
        # ignite's TensorBoard logger, which names no module of its own
        (ModuleNotFoundError("This contrib module requires either tensorboardX or torch >= 1.2.0."), "train"),
    ],
)
def test_a_missing_optional_dependency_names_the_extra_that_installs_it(error, extra):
    module = "tensorboardX" if extra == "train" else error.name.split(".")[0]
    assert user_message(error) == (
        f"{module} is not installed, which this needs: pip install 'linearityiqa[{extra}]' "
        f"(in a clone: pip install -r requirements.txt)"
    )
    assert user_message(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None  # not ours: a bug
