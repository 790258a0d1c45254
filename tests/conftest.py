"""Fixtures shared by the test files, and the compiler cache of a test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from data_helpers import (
    RESNET18_SETTINGS,
    SCORING_B,
    SCORING_K,
    built_once,
    koniq_options,
    local_ray_cluster,
    save_plain_images,
    scoring_folder,
    synthetic_koniq_options,
)

from linearityiqa.data.image_store import available_cores

# PyTorch is imported where it is used, not here: pytest-xdist's controlling process, which runs no
# test, loads this file too.

# PyTorch's compiler (inductor) caches the kernels it generates without keying them on the vector
# instructions that ATEN_CPU_CAPABILITY selects: a cache written under one setting breaks runs
# under another (C++ errors about at::vec, or NaN from vectors of the wrong width). So the suite
# run under each setting compiles into a cache of its own.
# (Importing the project may have set the variable to inductor's default: only a folder the user
# chose is kept. Inductor is imported only then: a second of every process's start otherwise.)
_CAPABILITY = os.environ.get("ATEN_CPU_CAPABILITY")
if _CAPABILITY:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = f"{default_cache_dir()}_{_CAPABILITY}"

# pytest.ini runs the suite in pytest-xdist's processes: each takes its share of the cores (one
# at least), for PyTorch here and for the scripts the tests start, whose OpenMP threads would
# otherwise outnumber the cores and spin against one another.
_PROCESSES = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _PROCESSES > 1:
    _THREADS = max(1, available_cores() // _PROCESSES)
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# The session fixtures that build files are built once for the whole run, also under pytest-xdist
# (data_helpers.built_once): tests read their files, or copy them to change them.


@pytest.fixture(scope="session")
def koniq(tmp_path_factory) -> list[str]:
    """A 30-image synthetic KonIQ-10k of 128x96 JPEGs in its official layout (21 training, 3
    validation and 6 test images), with its info file: the options that point a script at it.
    Its image cache (--cache_dir) is shared too: the scripts write it whole or not at all."""
    build = lambda folder: synthetic_koniq_options(folder, count=30, seed=1)  # noqa: E731
    return koniq_options(built_once(tmp_path_factory, "koniq", build))


@pytest.fixture
def images(tmp_path):
    """A folder of three small JPEGs, two of one size; (the folder, their names)."""
    folder = tmp_path / "images"
    sizes = {"a.jpg": (20, 10), "b.jpg": (8, 6), "c.jpg": (20, 10)}
    save_plain_images(folder, sizes)
    return folder, list(sizes)


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """The address of a local Ray cluster of two CPUs, started for the file whose tests use one and
    stopped after its last: its idle processes would otherwise take their share of the cores to the end."""
    with local_ray_cluster(tmp_path_factory.mktemp("ray"), "--num-cpus=2", "--num-gpus=0") as address:
        yield address


@pytest.fixture(scope="session")
def resnet18_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of resnet18 with random weights (seed 0), the identity mapping (k = 1, b = 0) and
    its settings, saved once for the whole test run: tests read it and never write it."""

    def build(folder: Path) -> None:
        import torch

        from IQAmodel import IQAModel
        from linearityiqa.records.checkpoint import save_checkpoint

        torch.manual_seed(0)
        weights = IQAModel(arch="resnet18", pretrained=False).state_dict()
        checkpoint = {"model": weights, "k": [1.0] * 3, "b": [0.0] * 3, "settings": RESNET18_SETTINGS}
        save_checkpoint(str(folder / "model.pth"), checkpoint)

    return built_once(tmp_path_factory, "resnet18", build) / "model.pth"


@pytest.fixture(scope="session")
def scoring(tmp_path_factory) -> Path:
    """data_helpers.scoring_folder's two checkpoints, mapped with SCORING_K and SCORING_B, and its 30
    images, with reference.csv: test_demo.py's CSV of them with --window 4 from a run never stopped,
    which runs stopped and resumed, of other formats or on Ray must give again. (A file may define a
    `scoring` fixture of its own, of other files.)"""

    def build(folder: Path) -> None:
        import test_demo

        scoring_folder(folder, k=SCORING_K, b=SCORING_B)
        argv = ["--img", str(folder / "images"), "-modelfile", str(folder / "model.pth")]
        status = test_demo.main([*argv, "-o", str(folder / "reference.csv"), "--window", "4"])
        assert status == test_demo.EXIT_SOME_FAILED  # the text file among the images gets an error row

    return built_once(tmp_path_factory, "scoring", build)


# A tiny training run of main.py on the `koniq` fixture: resnet18 from scratch on 48x64 images.
TINY_RUN = "--dataset KonIQ-10k --resize -rs_h 48 -rs_w 64 --arch resnet18 --pretrained none -bs 4 --lr 1e-3"


@pytest.fixture(scope="session")
def tiny_run_argv(koniq):
    """main.py's options of a TINY_RUN whose checkpoint (model.pth), results and logs are in a
    folder: tiny_run_argv(folder, *more_options, epochs=1)."""

    def argv(folder: Path, *options: str, epochs: int = 1) -> list[str]:
        outputs = ["--trained_model_file", str(folder / "model.pth"), "--results_dir", str(folder / "results")]
        outputs += ["--log_dir", str(folder / "runs")]
        return [*TINY_RUN.split(), "-e", str(epochs), "--num_workers", "0", *outputs, *koniq, *options]

    return argv


@pytest.fixture(scope="session")
def trained_run(tiny_run_argv, tmp_path_factory) -> Path:
    """The folder of a finished one-epoch run of `tiny_run_argv`, trained once for the whole test
    run: tests read it, or copy it to change it (tiny_run_argv of the copy runs on the copy)."""

    def build(folder: Path) -> None:
        import main

        assert main.main(tiny_run_argv(folder)) == 0

    return built_once(tmp_path_factory, "trained_run", build)


@pytest.fixture(scope="session")
def run_name():
    """The name main.py gives the run of a command line (its checkpoint's, results' and logs')."""
    from linearityiqa.cli.options import get_args_parser
    from linearityiqa.cli.settings import run_settings

    return lambda argv: run_settings(get_args_parser().parse_args(argv))["run_name"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A reliability test fails when its case left a traceback on stderr, even if its own
    assertions passed: every such case must end with one message (what the test read with
    capsys or capfd itself, it checks itself)."""
    report = yield
    if report.when == "call" and report.passed and item.get_closest_marker("reliability"):
        if "Traceback (most recent call last)" in report.capstderr:
            report.outcome = "failed"
            report.longrepr = "a traceback reached stderr in a reliability case:\n" + report.capstderr
    return report


def pytest_collection_modifyitems(items):
    """The files that hold a test marked `slow` go first, in their own order: pytest-xdist hands
    out whole files in this order (pytest.ini keeps it from sorting them by size), and a long file
    handed out last would leave the other processes idle while it runs. A process is given another
    file once two or fewer of its tests are left, so a slow test's file holds three tests or more:
    else a second file would wait behind the slow test."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


_YIELDED = False


def pytest_runtest_setup(item):
    """A process of pytest-xdist that runs a test of another file than the one marked
    `critical_path` lowers its priority for the rest of the run, and so do the scripts it starts:
    the critical file's process keeps a core to itself, and ends as early as one core allows,
    while the others share the rest. (Priorities can be lowered, not raised back.)"""
    global _YIELDED
    if not _YIELDED and _PROCESSES > 1 and hasattr(os, "nice") and not item.get_closest_marker("critical_path"):
        os.nice(10)
        _YIELDED = True


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pytest.ini's): two processes a core, as many tests wait on a script or a
    cluster while the other process of the core computes; at most eight."""
    return min(8, 2 * available_cores())
