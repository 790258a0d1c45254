"""How the root scripts end (docs/reliability.md), and what they set for their whole process.

A user's mistake ends a script with one line `<script>: error: <message>` (EXIT_MISTAKE), never a traceback: an
IQAError, a failure the user can mend with what the script advises (`Advice`), or an import that fails for want of a
dependency, an extra or a module of an installed LinearityIQA (`import_problem`). Ctrl-C is one line; any other error
is a bug. Scripts import inside `imports_checked`, and this module imports only the standard library at its top, so
that even a missing dependency is one line.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from linearityiqa import paper
from linearityiqa.errors import IQAError, first_line

EXIT_MISTAKE = 1
EXIT_BUG = 70  # EX_SOFTWARE of BSD's sysexits.h
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command that Ctrl-C stopped
# What the file system says when an output cannot be written: full, read-only, not permitted, not a folder.
WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}

# The optional dependencies, by the module a script imports, and the extra of pyproject.toml that installs each:
# one that is missing is the user's to install, not a bug.
EXTRAS = {
    "tensorboardX": "train",
    "onnxruntime": "onnx",
    "onnx": "export",
    "onnxscript": "export",
    "pyarrow": "scale",
    "ray": "scale",
    "gradio": "app",
}
# The library's dependencies (pyproject.toml's), by the module the code imports: the distribution that installs it,
# of the same name but for two. matplotlib is a clone's only: python -m reproduce draws its figures with it.
DEPENDENCIES = {name: name for name in ("torch", "torchvision", "numpy", "scipy", "h5py", "tqdm", "matplotlib")}
DEPENDENCIES.update(ignite="pytorch-ignite", PIL="pillow")


def import_problem(error: BaseException) -> str | None:
    """The line saying what the installation lacks, with the pip command that mends it, when `error` is an import that
    failed for want of it; None otherwise, and for an import failing in LinearityIQA's own code (a bug)."""
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
    """The dependency (of DEPENDENCIES or EXTRAS) that `error` failed to import, or None: the one it names as missing,
    or the one whose own code raised it (a library it cannot load, a module of it missing, mismatched versions)."""
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


@dataclass(frozen=True)
class Advice:
    """What a script tells the user to do when a failure that is not an IQAError is theirs, after
    the words of the field's comment; where a field is None, that failure is a bug of the script."""

    out_of_memory: str | None = None  # "out of memory (<allocator's words>): "
    unwritable: str | None = None  # "<file>: <reason>; " when an output cannot be written
    loader_died: str | None = None  # "a data loading process died (<torch's words>). "
    interrupted: str | None = None  # "interrupted; what was saved before is kept; " when Ctrl-C stops it


def user_message(error: BaseException, advice: Advice = Advice()) -> str | None:
    """The line that tells the user what happened and what to do, or None for an error that is a bug."""
    if isinstance(error, IQAError):
        return str(error)
    problem = import_problem(error)
    if problem:
        return problem
    if advice.unwritable and isinstance(error, OSError) and error.errno in WRITE_FAILURES:
        where = f"{error.filename}: " if error.filename else "an output: "
        return f"{where}{error.strerror}; {advice.unwritable}"
    if advice.out_of_memory and isinstance(error, MemoryError):  # NumPy's, Python's
        return f"out of memory ({first_line(error)}): {advice.out_of_memory}"
    if advice.out_of_memory and "torch" in sys.modules:  # only PyTorch's allocators raise these
        from linearityiqa.acceleration import out_of_memory

        if out_of_memory(error):  # the first line of the allocator's words: CUDA's go on about fragmentation
            return f"out of memory ({str(error).splitlines()[0][:160]}): {advice.out_of_memory}"
    # torch's words: "DataLoader worker (pid N) is killed by signal: Killed." and the like
    if advice.loader_died and isinstance(error, RuntimeError) and str(error).startswith("DataLoader worker"):
        return f"a data loading process died ({str(error).rstrip('.')}). {advice.loader_died}"
    return None


def report_mistake(script: str, message: str) -> int:
    """Print a user's mistake as the script's one error line; the exit status that goes with it."""
    # a message may quote another program's words, which can span lines
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"{script}: error: {line}", file=sys.stderr)
    return EXIT_MISTAKE


def exit_status(script: str, body: Callable[[], int | None], advice: Advice = Advice(), *, quiet: bool = False) -> int:
    """Run a script's body; its exit status (None counts as 0), or that of its error (`errors_reported`)."""
    with errors_reported(script, advice, quiet=quiet) as ended:
        ended.status = body() or 0
    return ended.status


class errors_reported:  # lower case as contextlib.suppress is: it names a `with` block
    """A block whose errors end the script as the module's docstring says, the exit status in `status`; with `quiet`
    (every process of a run but the first) a mistake prints nothing. With LINEARITYIQA_TRACEBACK=1 a bug propagates
    instead. As a `with` block, not a call, it adds no frame to the stack of what it wraps."""

    def __init__(self, script: str, advice: Advice = Advice(), *, quiet: bool = False):
        self.script, self.advice, self.quiet = script, advice, quiet
        self.status = 0

    def __enter__(self) -> errors_reported:
        # ignite logs the exception that ends an engine's run, which this reports itself, in one line
        logging.getLogger("ignite.engine.engine.Engine").setLevel(logging.CRITICAL)
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: object) -> bool:
        if error is None:
            return False
        if isinstance(error, KeyboardInterrupt):
            if not self.quiet:
                then = f"; {self.advice.interrupted}" if self.advice.interrupted else ""
                print(f"{self.script}: interrupted; what was saved before is kept{then}", file=sys.stderr)
            self.status = EXIT_INTERRUPTED
            return True
        if not isinstance(error, Exception):  # SystemExit and the like end the script as they would
            return False
        message = user_message(error, self.advice)
        if message is None:
            if os.environ.get("LINEARITYIQA_TRACEBACK", "") not in ("", "0"):  # for whoever is changing the code
                return False
            self.status = report_bug(self.script, error)
        else:
            self.status = EXIT_MISTAKE if self.quiet else report_mistake(self.script, message)
        return True


class imports_checked(errors_reported):
    """The imports at the top of a script run as a program (`module`, its __name__, is "__main__"): one that fails
    ends the process as `errors_reported` reports it. Imported by another module (a test), they raise as usual."""

    def __init__(self, script: str, module: str):
        super().__init__(script)
        self.active = module == "__main__"

    def __exit__(self, kind: type | None, error: BaseException | None, trace: object) -> bool:
        if not self.active:
            return False
        if isinstance(error, Exception) and not isinstance(error, ImportError) and failed_dependency(error):
            # a dependency's own code failing as it is imported (torch's OSError for a library it cannot load)
            error = ImportError(first_line(error)).with_traceback(error.__traceback__)
        if super().__exit__(kind, error, trace):
            raise SystemExit(self.status)
        return False


def report_bug(script: str, error: Exception) -> int:
    """Say in one line that `error` is a bug; the exit status. Its traceback, with the command and versions
    a report needs, goes to a new temporary file, or where that cannot be written to stderr: never lost."""
    trace = "".join(traceback.format_exception(error))
    try:
        torch_version = metadata.version("torch")  # read without importing it: the ONNX path never loads it
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    details = f"command: {shlex.join(sys.argv)}\npython {sys.version.split()[0]}, torch {torch_version}\n\n"
    name = os.path.splitext(script.split()[-1])[0]  # "main" for main.py, "reproduce" for `python -m reproduce`
    try:
        handle, log = tempfile.mkstemp(prefix=f"linearityiqa-{name}-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log")
        with os.fdopen(handle, "w", encoding="utf-8", errors="backslashreplace") as file:
            file.write(details + trace)
        where = f"its traceback is in {log}: please report it with that file"
    except OSError:
        log, where = None, "please report it"
    print(
        f"{script}: error: a bug of LinearityIQA, not a mistake of yours ({type(error).__name__}: "
        f"{first_line(error)}); {where}",
        file=sys.stderr,
    )
    if log is None:
        print(trace, end="", file=sys.stderr)
    return EXIT_BUG


def own_the_pixel_limit() -> None:
    """Switch Pillow's own pixel limit off for the whole process (only scripts call this), so that --max_pixels,
    checked from each image's header (data/image_store.open_image), is the only one: Pillow would warn about, or
    refuse in its own words, images that --max_pixels lets through."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
