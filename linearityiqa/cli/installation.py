"""What an installation that lacks something needs, said as the pip command that mends it.

An import that fails for want of a dependency, of an extra or of a module of an installed
LinearityIQA is the user's to mend, not a bug: `import_problem` gives its one line. A clone
installs its requirements.txt; an installed wheel the requirement its metadata records, or
itself again from where it came (PEP 610). Only the standard library is imported here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import traceback
from importlib import metadata

from linearityiqa.errors import first_line

# The optional dependencies, by the module a script imports, and the extra of pyproject.toml that installs each:
# one that is missing is the user's to install, not a bug.
EXTRAS = {
    "tensorboardX": "train",
    "onnxruntime": "onnx",
    "onnx": "export",
    "onnxscript": "export",
    "pyarrow": "scale",
    "ray": "scale",
}
# The library's dependencies (pyproject.toml's), by the module the code imports: the distribution that installs it.
DEPENDENCIES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "ignite": "pytorch-ignite",
    "numpy": "numpy",
    "scipy": "scipy",
    "h5py": "h5py",
    "PIL": "pillow",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",  # a clone's only: python -m reproduce draws its figures with it
}


def import_problem(error: BaseException) -> str | None:
    """The line that says what the installation lacks when `error` is an import that failed because
    of it, with the pip command that mends it; None for any other error, and for an import that
    fails in LinearityIQA's own code (a bug: a module or name it lacks, a circular import)."""
    if not isinstance(error, ImportError):
        return None
    extra = None
    if isinstance(error, ModuleNotFoundError) and error.name is not None:
        extra = error.name if error.name in EXTRAS else None  # a module missing inside one: it is broken
    elif isinstance(error, ModuleNotFoundError):
        # an import inside another package, re-raised in its words: ignite's TensorBoard logger names tensorboardX
        extra = next((name for name in EXTRAS if re.search(rf"\b{name}\b", str(error))), None)
    if extra:
        return f"{extra} is not installed, which this needs: {_install(extra=EXTRAS[extra])}"
    module = failed_dependency(error)
    if module is None:
        return _incomplete_installation(error)
    package = DEPENDENCIES.get(module, module)
    named = package if package == module else f"{package} (import {module})"
    if isinstance(error, ModuleNotFoundError) and error.name == module:
        return f"{named} is not installed, which LinearityIQA needs: {_install(package)}"
    return (
        f"{named} is installed but an import of it fails ({first_line(error)}); reinstall it: "
        f"{shlex.join(['pip', 'install', '--force-reinstall', _requirement(package)])}"
    )


def failed_dependency(error: BaseException) -> str | None:
    """The dependency (a key of DEPENDENCIES or EXTRAS) that `error` failed to import, or None: the
    one it names as missing, or the one whose own code raised it (a library it cannot load, a
    module of it missing, versions that do not match)."""
    known = {*DEPENDENCIES, *EXTRAS}
    if isinstance(error, ModuleNotFoundError) and error.name and error.name.split(".")[0] in known:
        return error.name.split(".")[0]
    raised_in = None  # the innermost frame outside the import machinery
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if not frame.f_code.co_filename.startswith("<frozen "):
            raised_in = str(frame.f_globals.get("__name__", "")).split(".")[0]
    return raised_in if raised_in in known else None


def _incomplete_installation(error: ImportError) -> str | None:
    """The line for a module of LinearityIQA that its installed distribution records and the disk
    lacks, or None (in a clone, or for a module it never had: a bug)."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    parts = error.name.split(".")
    if parts[0] != "linearityiqa":  # the paper's modules, when a script of the wheel imports them by their names
        parts = ["linearityiqa", "paper", *parts]
    candidates = {"/".join(parts) + ".py", "/".join(parts) + "/__init__.py"}
    try:
        distribution = metadata.distribution("linearityiqa")
    except metadata.PackageNotFoundError:
        return None
    missing = next((path for path in distribution.files or () if str(path) in candidates), None)
    if missing is None:
        return None
    command = ["pip", "install", "--force-reinstall", "--no-deps", _installed_from(distribution)]
    return (
        f"the installed LinearityIQA is incomplete: {distribution.locate_file(missing)} is missing; "
        f"reinstall it: {shlex.join(command)}"
    )


def _install(package: str | None = None, *, extra: str | None = None) -> str:
    """The pip command that installs a dependency (`package`) or an extra of LinearityIQA."""
    from linearityiqa import paper

    if not paper.INSTALLED:
        path = str(paper.FOLDER / "requirements.txt")
        shown = os.path.relpath(path)
        return shlex.join(["pip", "install", "-r", path if shown.startswith("..") else shown])
    if package is not None:
        return shlex.join(["pip", "install", _requirement(package)])
    try:
        source = _installed_from(metadata.distribution("linearityiqa"), extra=extra)
    except metadata.PackageNotFoundError:  # the package without its metadata: where it came from is not known
        source = f"linearityiqa[{extra}]"
    return shlex.join(["pip", "install", source])


def _requirement(package: str) -> str:
    """A dependency's requirement with its bounds ("pytorch-ignite>=0.5,<0.6"), as the clone's
    requirements.txt or the installed wheel's metadata gives it; its name alone where neither does."""
    from linearityiqa import paper

    try:
        if paper.INSTALLED:
            lines = metadata.requires("linearityiqa") or []
        else:
            lines = (paper.FOLDER / "requirements.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, metadata.PackageNotFoundError):
        lines = []
    for line in lines:
        requirement = line.split(";")[0].split("#")[0].strip()
        name = re.split(r"[\[<>=!~ ]", requirement)[0]
        if re.sub(r"[-_.]+", "-", name).lower() == re.sub(r"[-_.]+", "-", package).lower():  # PEP 503's names
            return requirement
    return package


def _installed_from(distribution: metadata.Distribution, extra: str | None = None) -> str:
    """What pip installs this LinearityIQA again from: the URL it came from (PEP 610), else its version."""
    name = f"linearityiqa[{extra}]" if extra else "linearityiqa"
    try:
        origin = json.loads(distribution.read_text("direct_url.json") or "null")
    except ValueError:
        origin = None
    if not isinstance(origin, dict) or not isinstance(origin.get("url"), str):
        return f"{name}=={distribution.version}"
    vcs = origin.get("vcs_info")
    if isinstance(vcs, dict) and "vcs" in vcs and "commit_id" in vcs:
        return f"{name} @ {vcs['vcs']}+{origin['url']}@{vcs['commit_id']}"
    return f"{name} @ {origin['url']}"
