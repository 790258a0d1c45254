"""The CUDA paths of the project, each checked against the float32 (or one-process) path it
stands in for. Every test here skips without a GPU.

Where no GPU is at hand, `LINEARITYIQA_GPU_TESTS=cpu pytest tests/gpu` runs them on the CPU,
float16 autocast and its GradScaler included (choose_precision itself gives float32 there), to
try the tests themselves before a GPU's time is spent on them; `QUICK=1 bash
benchmarks/run_gpu.sh` does so.
"""

from __future__ import annotations

import os

import pytest
import torch
from data_helpers import synthetic_koniq_options

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
