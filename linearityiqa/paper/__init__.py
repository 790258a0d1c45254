"""Where the paper's files are: at a clone's root, or in this folder of an installed wheel.

In a clone, the paper's modules (IQAdataset.py, IQAloss.py, IQAmodel.py, IQAperformance.py) and scripts are the files
at the root, and import one another by the paper's names (`from IQAloss import IQALoss`). A wheel cannot install those
names at the top of site-packages without taking them from other projects (many IQA codebases have an IQAdataset.py):
its build (pyproject.toml) puts the same files here. The library imports them through this package (`from
linearityiqa.paper import IQAmodel`), which gives a process one module object: the top-level one wherever their folder
is on sys.path, else this package's submodule (the wheel as a library).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

MODULES = ("IQAdataset", "IQAloss", "IQAmodel", "IQAperformance")
SCRIPTS = ("main.py", "test_dataset.py", "test_demo.py", "export_onnx.py", "make_info.py", "app.py")
HERE = Path(__file__).resolve().parent
# Files beside this one: a wheel's build put them here; a clone keeps them at its root.
INSTALLED = (HERE / "IQAmodel.py").is_file()
FOLDER = HERE if INSTALLED else HERE.parents[1]


def __getattr__(name: str) -> ModuleType:
    if name not in MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(name if on_search_path() else f"{__name__}.{name}")
    globals()[name] = module  # found once a process
    return module


def on_search_path() -> bool:
    """Whether the paper's files are importable by their own names in this process."""
    for entry in sys.path:
        try:
            if Path(entry or ".").resolve() == FOLDER:
                return True
        except OSError:  # an entry that cannot be resolved (a removed folder) is none of them
            continue
    if INSTALLED:
        return False
    raise ImportError(
        f"the paper's modules are the files at the root of the clone, {FOLDER}, which is not on sys.path: "
        f"run the scripts there, add it to PYTHONPATH, or install the library (pip install {FOLDER})"
    )
