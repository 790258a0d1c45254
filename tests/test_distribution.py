"""The library as pip installs it: the wheel's files, its metadata against requirements.txt, and the
installed package and `linearityiqa` command used from a folder outside the repository.

The wheel is built once (pip wheel, no build isolation: hatchling comes from requirements.txt,
no network) and installed with --no-deps into a target folder, so that the PyTorch already
installed serves it; its command runs with only that folder on PYTHONPATH, from another folder.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from PIL import Image

import IQAloss
import IQAmodel
import linearityiqa
import test_demo
from linearityiqa import paper
from linearityiqa.cli import console
from linearityiqa.cli.scripts import DEPENDENCIES, EXTRAS

tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PAPER_FILES = [f"{name}.py" for name in paper.MODULES] + list(paper.SCRIPTS)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(folder)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    [built] = folder.glob("linearityiqa-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict[str, str]:
    """The environment of a process that sees the installed wheel and not the repository."""
    target = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**environment, "PYTHONPATH": str(target), "PATH": f"{target / 'bin'}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory, resnet18_checkpoint):
    """A folder outside the repository with an authors'-layout resnet18 checkpoint and one photo."""
    folder = tmp_path_factory.mktemp("elsewhere")
    weights = torch.load(resnet18_checkpoint, weights_only=True)["model"]
    torch.save({"model": weights, "optimizer": {}, "amp": {}, "k": [2.0, 1, 1], "b": [50.0, 0, 0]}, folder / "p1q2.pth")
    from data_helpers import save_plain_images

    save_plain_images(folder, {"photo.jpg": (96, 64), "other.png": (64, 48)})
    return folder


def run(command, *, cwd, env=None):
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_wheel_holds_the_library_and_the_papers_files_unchanged(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        # no tests, data, checkpoints, benchmarks or reproduce/, and no top-level module but linearityiqa
        assert {name.split("/")[0] for name in names} == {
            "linearityiqa",
            f"linearityiqa-{linearityiqa.__version__}.dist-info",
        }
        assert not [name for name in names if "__pycache__" in name or name.endswith((".pth", ".mat", ".csv"))]
        for file in PAPER_FILES:
            assert archive.read(f"linearityiqa/paper/{file}") == (REPO / file).read_bytes(), file
        copied = {f"linearityiqa/paper/{file}" for file in PAPER_FILES}
        package = {name for name in names if name.startswith("linearityiqa/")} - copied
        tracked = subprocess.run(["git", "ls-files", "linearityiqa"], cwd=REPO, capture_output=True, text=True).stdout
        assert package == set(tracked.split())  # every file of the package, and nothing else
        metadata = email.message_from_bytes(archive.read(f"linearityiqa-{linearityiqa.__version__}.dist-info/METADATA"))
        entry_points = archive.read(f"linearityiqa-{linearityiqa.__version__}.dist-info/entry_points.txt").decode()
    assert metadata["Name"] == "linearityiqa" and metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.9"
    assert "linearityiqa = linearityiqa.cli.console:main" in entry_points


def test_the_wheel_takes_every_paper_file_into_linearityiqa_paper():
    force_included = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force_included == {file: f"linearityiqa/paper/{file}" for file in PAPER_FILES}


def requirement_lines(path: Path) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {str(Requirement(line)) for line in lines if line}


def test_every_bound_of_the_distribution_is_the_clones():
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    library = [*project["dependencies"], *extras["train"], *extras["onnx"], *extras["export"]]
    assert {str(Requirement(line)) for line in library} <= requirement_lines(REPO / "requirements.txt")
    assert {str(Requirement(line)) for line in extras["docs"]} == requirement_lines(REPO / "requirements-docs.txt")
    assert "hatchling>=1.27" in requirement_lines(REPO / "requirements.txt")  # builds the wheel without network


def test_the_extras_a_missing_module_names_install_it():
    extras = PYPROJECT["project"]["optional-dependencies"]
    for module, extra in EXTRAS.items():
        assert module in {Requirement(line).name for line in extras[extra]}, module


def test_the_dependencies_a_missing_module_names_are_the_distributions():
    required = {Requirement(line).name for line in PYPROJECT["project"]["dependencies"]}
    cloned = {Requirement(line).name for line in requirement_lines(REPO / "requirements.txt")}
    assert set(DEPENDENCIES.values()) == required | {"matplotlib"}  # reproduce's figures: a clone's only
    assert set(DEPENDENCIES.values()) <= cloned


def test_in_a_clone_the_packages_names_are_the_root_files_objects():
    assert not paper.INSTALLED and paper.FOLDER == REPO
    assert linearityiqa.IQAModel is IQAmodel.IQAModel and linearityiqa.IQALoss is IQAloss.IQALoss
    assert linearityiqa.norm_loss_with_normalization is IQAloss.norm_loss_with_normalization
    assert linearityiqa.IQAPerformance is sys.modules["IQAperformance"].IQAPerformance
    assert linearityiqa.load is linearityiqa.scoring.load


INSTALLED_CHECK = """
import sys, torch, linearityiqa
from linearityiqa import IQAModel, IQALoss, norm_loss_with_normalization, IQAPerformance, load
from linearityiqa import paper
assert paper.INSTALLED and linearityiqa.__file__.startswith(sys.argv[1])
assert IQAModel is paper.IQAmodel.IQAModel and IQAPerformance is paper.IQAperformance.IQAPerformance
assert IQALoss is paper.IQAloss.IQALoss and norm_loss_with_normalization is paper.IQAloss.norm_loss_with_normalization
assert not any(name.startswith("IQA") for name in sys.modules)  # no top-level module of the paper's names
try:
    import IQAmodel
except ImportError:
    pass
else:
    raise AssertionError("the wheel installed a top-level IQAmodel")
torch.manual_seed(0)
y_pred, y = torch.randn(8, 1, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
print(repr(norm_loss_with_normalization(y_pred, y).item()))
"""


def test_the_installed_library_imports_from_another_folder(installed, tmp_path):
    done = run([sys.executable, "-c", INSTALLED_CHECK, installed["PYTHONPATH"]], cwd=tmp_path, env=installed)
    assert done.returncode == 0, done.stderr
    torch.manual_seed(0)
    y_pred, y = torch.randn(8, 1, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    assert done.stdout.strip() == repr(IQAloss.norm_loss_with_normalization(y_pred, y).item())


def test_linearityiqa_help_lists_its_commands(installed, tmp_path):
    done = run(["linearityiqa", "--help"], cwd=tmp_path, env=installed)
    assert done.returncode == 0 and "usage: linearityiqa" in done.stdout
    for name in ("score", "test", "train", "export-onnx", "make-info", "app"):
        assert f"    {name}" in done.stdout
    assert run(["linearityiqa", "bogus"], cwd=tmp_path, env=installed).returncode == 2
    version = run(["linearityiqa", "--version"], cwd=tmp_path, env=installed).stdout
    assert version == f"linearityiqa {linearityiqa.__version__}\n"


def clone_script(argv, capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the clone's test_demo.py given `argv`, run here: the process
    under test is the installed command's, and this one's options and threads are those it inherits."""
    try:
        status = test_demo.main(argv)
    except SystemExit as ended:  # argparse's end
        status = ended.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow
def test_linearityiqa_score_is_test_demos_to_the_last_digit(installed, elsewhere, monkeypatch, capsys):
    monkeypatch.chdir(elsewhere)
    # the script switches Pillow's own pixel limit off for its whole process: undone after the test
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    # argparse wraps its usage to the terminal's width: that of the installed command, whose output is a pipe
    monkeypatch.setenv("COLUMNS", installed.get("COLUMNS") or "80")
    checkpoint = ["--trained_model_file", "p1q2.pth"]
    # one image: the paper's line (and the note on an authors' file); a folder: the CSV; a missing
    # image: one error line; a bad option: argparse's status
    cases = [(["photo.jpg"], 0), (["."], 0), (["absent.jpg"], 1), (["photo.jpg", "--no_such_option"], 2)]
    for (image, *options), status in cases:
        installed_run = run(["linearityiqa", "score", image, *checkpoint, *options], cwd=elsewhere, env=installed)
        clone_run = clone_script(["--img", image, *checkpoint, *options], capsys)
        assert installed_run.returncode == clone_run[0] == status, installed_run.stderr
        assert (installed_run.stdout, installed_run.stderr) == clone_run[1:], image
        if image == ".":
            folder = installed_run.stdout.splitlines()
            assert folder[0] == "image,score,error" and len(folder) == 3


def test_score_takes_its_images_first_or_with_img():
    script = str(REPO / "test_demo.py")
    assert console.script_command("score", ["a.jpg", "-o", "s.csv"]) == [
        sys.executable,
        script,
        "--img",
        "a.jpg",
        "-o",
        "s.csv",
    ]
    assert console.script_command("score", ["-", "--onnx", "m.onnx"])[2:4] == ["--img", "-"]
    assert console.script_command("score", ["--img", "a.jpg"])[2:] == ["--img", "a.jpg"]
    assert console.script_command("train", ["--dataset", "CLIVE"]) == [
        sys.executable,
        str(REPO / "main.py"),
        "--dataset",
        "CLIVE",
    ]


@pytest.mark.reliability
def test_a_partial_installation_is_one_line_naming_the_reinstall(wheel, installed, tmp_path):
    # The wheel installed (a copy of the installation, which pip made), then a module that test_demo.py
    # imports and the script of `linearityiqa test` lost.
    target = tmp_path / "site"
    shutil.copytree(installed["PYTHONPATH"], target, symlinks=True)
    package = target / "linearityiqa"
    lost = [package / "records" / "score_output.py", package / "paper" / "test_dataset.py"]
    for path in lost:
        path.unlink()
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(PYTHONPATH=str(target), PATH=f"{target / 'bin'}{os.pathsep}{os.environ['PATH']}")
    reinstall = f"pip install --force-reinstall --no-deps 'linearityiqa @ {wheel.as_uri()}'"
    for (command, script), path in zip([("score", "test_demo.py"), ("test", "linearityiqa")], lost):
        done = run(["linearityiqa", command, "--help"], cwd=tmp_path, env=environment)
        message = f"the installed LinearityIQA is incomplete: {path} is missing; reinstall it: {reinstall}"
        assert (done.returncode, done.stderr) == (1, f"{script}: error: {message}\n")
