"""Where the paper's files are: at a clone's root, or in this folder of an installed wheel.

In a clone, the paper's modules (IQAdataset.py, IQAloss.py, IQAmodel.py, IQAperformance.py) and
scripts (main.py, test_dataset.py, test_demo.py, ...) are the files at the repository's root,
where a reader looks for them, and they import one another by the names the paper gave them
(`from IQAloss import IQALoss`). A wheel cannot install those names at the top of
site-packages without taking them from every other project (many IQA codebases have an
IQAdataset.py), so its build (pyproject.toml) puts the same files, unchanged, in this folder.

The library reaches the paper's modules through this package (`from linearityiqa.paper import
IQAmodel`), which gives the one module object a process has: the top-level one wherever the
files' folder is on sys.path (a clone, whose scripts and tests put its root there; a script
that a `linearityiqa` command runs from this folder), otherwise this package's submodule (the
wheel imported as a library, e.g. `from linearityiqa import IQAModel` in a notebook).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

MODULES = ("IQAdataset", "IQAloss", "IQAmodel", "IQAperformance")
SCRIPTS = ("main.py", "test_dataset.py", "test_demo.py", "export_onnx.py", "make_info.py")
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


def script_path(script: str) -> Path:
    """The file of one of the paper's scripts (SCRIPTS), in a clone or in the wheel."""
    return FOLDER / script
