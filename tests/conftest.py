"""Fixtures shared by the test files, and the compiler cache of a test run."""

from __future__ import annotations

import getpass
import os
import tempfile

import pytest
from data_helpers import synthetic_koniq_options

from linearityiqa.cli.options import get_args_parser
from linearityiqa.cli.settings import run_settings

# PyTorch's compiler (inductor) caches the kernels it generates without keying them on the vector
# instructions that ATEN_CPU_CAPABILITY selects: a cache written under one setting breaks runs
# under another (C++ errors about at::vec, or NaN from vectors of the wrong width). So the suite
# run under each setting compiles into a cache of its own.
_CAPABILITY = os.environ.get("ATEN_CPU_CAPABILITY")
if _CAPABILITY and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(
        tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}_{_CAPABILITY}"
    )


@pytest.fixture(scope="session")
def koniq(tmp_path_factory) -> list[str]:
    """A 30-image synthetic KonIQ-10k of 128x96 JPEGs in its official layout (21 training, 3
    validation and 6 test images), with its info file: the options that point a script at it."""
    return synthetic_koniq_options(tmp_path_factory.mktemp("koniq"), count=30, seed=1)


@pytest.fixture(scope="session")
def run_name():
    """The name main.py gives the run of a command line (its checkpoint's, results' and logs')."""
    return lambda argv: run_settings(get_args_parser().parse_args(argv))["run_name"]
