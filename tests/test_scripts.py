"""linearityiqa/cli/scripts.py: the one way a script ends on a user's mistake, and the command
line that runs a root script, printed as a user types it and run as printed."""

from __future__ import annotations

import errno
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pytest
import torch

from linearityiqa import paper
from linearityiqa.cli.console import command_line, run_script
from linearityiqa.cli.scripts import (
    EXIT_BUG,
    EXIT_INTERRUPTED,
    EXIT_MISTAKE,
    Advice,
    exit_status,
    imports_checked,
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
    too_large = ["--out", "synthetic", "--width", "10000", "--height", "10000"]
    assert run_script("make_synthetic.py", too_large) == 1
    assert capfd.readouterr().err.startswith("make_synthetic.py: error: --width 10000 --height 10000: images must")
    assert run_script("make_synthetic.py", ["--out", "synthetic", "--count", "0"]) == 2
    assert run_script("make_synthetic.py", "--out synthetic --count 2 --width 16 --height 12".split()) == 0
    assert len(list((tmp_path / "synthetic" / "koniq10k" / "1024x768").iterdir())) == 2  # written from here


@pytest.mark.parametrize(
    "error, module",
    [
        (ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime"), "onnxruntime"),
        # ignite's TensorBoard logger, which names no module of its own
        (ModuleNotFoundError("This contrib module requires either tensorboardX or torch >= 1.2.0."), "tensorboardX"),
    ],
)
def test_in_a_clone_a_missing_optional_dependency_is_installed_by_the_requirements(error, module, monkeypatch):
    monkeypatch.chdir(REPOSITORY)
    assert user_message(error) == f"{module} is not installed, which this needs: pip install -r requirements.txt"
    assert user_message(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None  # not ours: a bug


BLOCKER = """
import os, sys
from importlib.abc import MetaPathFinder

class Blocked(MetaPathFinder):  # what Python raises for a module that is not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == os.environ["BLOCKED_MODULE"]:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Blocked())
"""


def run_without(module: str, command: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`command` run from the clone in an environment where `module` is not installed (a sitecustomize blocks it)."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "BLOCKED_MODULE": module}
    return subprocess.run(command, cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.reliability
def test_a_dependency_missing_at_a_scripts_top_is_one_line_naming_its_pip_command(tmp_path):
    # linearityiqa test runs test_dataset.py, whose first lines import torch, then ignite.
    done = run_without("ignite", [sys.executable, "-m", "linearityiqa", "test", "--help"], tmp_path)
    assert (done.returncode, done.stderr) == (
        EXIT_MISTAKE,
        "test_dataset.py: error: pytorch-ignite (import ignite) is not installed, which LinearityIQA needs: "
        "pip install -r requirements.txt\n",
    )


@pytest.mark.reliability
@pytest.mark.parametrize("raised", ["ImportError", "OSError"])
def test_a_dependency_that_fails_to_import_is_one_line_naming_its_reinstall(raised, tmp_path):
    # h5py installed without the HDF5 library it loads: its own __init__ raises, naming no module
    # (an OSError as ctypes raises it, or an ImportError).
    (tmp_path / "h5py").mkdir()
    (tmp_path / "h5py" / "__init__.py").write_text(
        f'raise {raised}("libhdf5.so.310: cannot open shared object file: No such file or directory")\n'
    )
    out = tmp_path / "synthetic"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "make_synthetic.py", "--out", str(out), "--count", "2"]
    done = subprocess.run(command, cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (
        EXIT_MISTAKE,
        "make_synthetic.py: error: h5py is installed but an import of it fails (libhdf5.so.310: cannot open shared "
        "object file: No such file or directory); reinstall it: pip install --force-reinstall 'h5py>=3.8'\n",
    )
    assert not out.exists()


@pytest.mark.reliability
@pytest.mark.parametrize(
    "error, message",
    [
        (ModuleNotFoundError("No module named 'scipy'", name="scipy"),
         "scipy is not installed, which LinearityIQA needs: pip install -r requirements.txt"),
        (ModuleNotFoundError("No module named 'onnx.checker'", name="onnx.checker"),
         "onnx is installed but an import of it fails (No module named 'onnx.checker'); "
         "reinstall it: pip install --force-reinstall 'onnx>=1.17'"),
    ],
)  # fmt: skip
def test_in_a_clone_a_dependency_is_installed_by_its_requirements_line(error, message, monkeypatch):
    monkeypatch.chdir(REPOSITORY)
    assert user_message(error) == message


def fake_wheel(folder: Path, *, recorded: list[str], direct_url: str) -> metadata.Distribution:
    """The metadata pip writes for an installed wheel of LinearityIQA: its dependencies, files and origin."""
    info = folder / "linearityiqa-0.9.0.dist-info"
    info.mkdir(parents=True)
    requires = ["pytorch-ignite<0.6,>=0.5", 'onnxruntime>=1.20; extra == "onnx"']
    (info / "METADATA").write_text("Name: linearityiqa\nVersion: 0.9.0\n" + "".join(f"Requires-Dist: {line}\n"
                                    for line in requires))  # fmt: skip
    (info / "RECORD").write_text("".join(f"{path},sha256=x,1\n" for path in recorded))
    (info / "direct_url.json").write_text(direct_url)
    return metadata.PathDistribution(info)


GIT_ORIGIN = '{"url": "https://example.org/linearityiqa.git", "vcs_info": {"vcs": "git", "commit_id": "0123abc"}}'


@pytest.mark.reliability
def test_from_a_wheel_each_missing_part_names_the_pip_command_that_mends_it(tmp_path, monkeypatch):
    # Installed from git as the manual says: what is missing is installed again from there.
    wheel = fake_wheel(tmp_path, recorded=["linearityiqa/data/synthetic.py"], direct_url=GIT_ORIGIN)
    monkeypatch.setattr(metadata, "distribution", lambda name: wheel)
    monkeypatch.setattr(paper, "INSTALLED", True)
    source = "@ git+https://example.org/linearityiqa.git@0123abc'"
    assert user_message(ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")) == (
        f"onnxruntime is not installed, which this needs: pip install 'linearityiqa[onnx] {source}"
    )
    assert user_message(ModuleNotFoundError("No module named 'ignite'", name="ignite")) == (
        "pytorch-ignite (import ignite) is not installed, which LinearityIQA needs: "
        "pip install 'pytorch-ignite<0.6,>=0.5'"
    )
    missing = ModuleNotFoundError("No module named 'linearityiqa.data.synthetic'", name="linearityiqa.data.synthetic")
    assert user_message(missing) == (
        f"the installed LinearityIQA is incomplete: {tmp_path / 'linearityiqa/data/synthetic.py'} is missing; "
        f"reinstall it: pip install --force-reinstall --no-deps 'linearityiqa {source}"
    )
    # a module the wheel never had is imported by a bug of the code
    assert user_message(ModuleNotFoundError("No module named 'linearityiqa.nope'", name="linearityiqa.nope")) is None


@pytest.mark.reliability
def test_an_import_that_fails_in_the_projects_own_code_is_a_bug(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(SystemExit) as ended:
        with imports_checked("x.py", "__main__"):
            from linearityiqa.errors import NoSuchError
    assert ended.value.code == EXIT_BUG
    assert capsys.readouterr().err.startswith(
        "x.py: error: a bug of LinearityIQA, not a mistake of yours (ImportError: cannot import name 'NoSuchError' "
        "from 'linearityiqa.errors'"
    )
    assert user_message(ModuleNotFoundError("No module named 'linearityiqa.nope'", name="linearityiqa.nope")) is None
    # imported by another module (a test), a script's imports raise as they would
    with pytest.raises(ImportError, match="NoSuchError"):
        with imports_checked("x.py", "x"):
            from linearityiqa.errors import NoSuchError  # noqa: F401
