"""The CUDA paths of the project, each checked against the float32 (or one-process) path it
stands in for. Every test here skips without a GPU.

Where no GPU is at hand, `LINEARITYIQA_GPU_TESTS=cpu pytest tests/gpu` runs them on the CPU,
float16 autocast and its GradScaler included (choose_precision itself gives float32 there), to
try the tests themselves before a GPU's time is spent on them; `QUICK=1 bash
benchmarks/run_gpu.sh` does so.
"""

from __future__ import annotations

import contextlib
import io
import os

import pytest
import torch
from data_helpers import synthetic_koniq_options
from gpu_helpers import MODEL

import main

DRY_RUN = "LINEARITYIQA_GPU_TESTS"


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The GPU; the CPU in a dry run; else every test that asks for it is skipped."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get(DRY_RUN) == "cpu":
        return torch.device("cpu")
    pytest.skip(f"no CUDA device ({DRY_RUN}=cpu tries these tests on the CPU)")


@pytest.fixture(scope="session")
def koniq_60(tmp_path_factory) -> list[str]:
    """A 60-image synthetic KonIQ-10k of 128x96 JPEGs (12 of them in its test split): the options
    that point a script at it."""
    return synthetic_koniq_options(tmp_path_factory.mktemp("koniq60"), count=60, seed=5)


@pytest.fixture(scope="session")
def o1_run(device, koniq_60, tmp_path_factory, run_name):
    """main.py for 2 epochs with --opt_level O1 on the device, whose checkpoint the scoring tests
    score with: (its command line, its stdout, its folder, its run's name)."""
    folder = tmp_path_factory.mktemp("o1_run")
    argv = (
        MODEL
        + ["--pretrained", "none"]
        + koniq_60
        + ["-bs", "8", "-e", "2", "--opt_level", "O1", "--device", device.type]
    )
    argv += ["--trained_model_file", str(folder / "model.pth"), "--results_dir", str(folder / "results")]
    argv += ["--log_dir", str(folder / "runs")]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main.main(argv)
    assert status == 0, printed.getvalue()
    return argv, printed.getvalue(), folder, run_name(argv)
