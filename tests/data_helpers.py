"""Helpers shared by the tests: files in the authors' and the official layouts, and a local Ray cluster."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# the `ray` command, also where Ray was installed into a folder of its own (pip --target), whose
# scripts are not beside the interpreter
RAY = [sys.executable, "-m", "ray.scripts.scripts"]

# The real KonIQ-10k file, kept beside the repository (../shared/reference) and never committed.
KONIQ_REFERENCE_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "koniq10k_distributions_sets.csv"
# the settings a checkpoint of IQAModel(arch="resnet18") records
RESNET18_SETTINGS = {"arch": "resnet18", "pool": "avg", "use_bn_end": False, "P6": 1, "P7": 1}
# the mapping of scoring_folder's checkpoints (conftest.scoring): scores on the scale of a MOS
SCORING_K, SCORING_B = [50.0, 1.0, 1.0], [10.0, 0.0, 0.0]


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name`, filled by build(folder) once for the whole test run, as pytest-xdist's
    manual shows: its processes share a folder beside their own temporary folders, and the first
    that needs `name` builds it while the others wait on its lock. Tests read what it holds, or
    copy it to change it. A build that failed is begun again by the next process that needs it."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's own folder, which holds each process's
    folder, built = root / "built" / name, root / "built" / f"{name}.built"
    folder.parent.mkdir(exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if not built.exists():
            if folder.exists():  # what a failed build left
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            built.touch()
    return folder


def write_authors_info(path: Path, names: list[str], scores: list[float], stds: list[float], index: np.ndarray) -> None:
    """An info file laid out as MATLAB v7.3 writes the authors' files, independently of info_files.py.

    Each name is a uint16 char array of shape (length, 1) in "#refs#", referenced from a
    (1, N) im_names; numbers are float64, (1, N) vectors and an (N, M) index.
    """
    with h5py.File(path, "w", userblock_size=512) as file:
        refs_group = file.create_group("#refs#")
        refs = np.empty((1, len(names)), dtype=h5py.ref_dtype)
        for position, name in enumerate(names):
            chars = refs_group.create_dataset(
                chr(ord("a") + position % 26) + str(position), data=np.array([[ord(c)] for c in name], dtype=np.uint16)
            )
            chars.attrs["MATLAB_class"] = np.bytes_("char")
            refs[0, position] = chars.ref
        file["im_names"] = refs
        file["subjective_scores"] = np.array([scores], dtype=np.float64)
        file["subjective_scoresSTD"] = np.array([stds], dtype=np.float64)
        file["ref_ids"] = np.arange(1, len(names) + 1, dtype=np.float64).reshape(1, -1)
        file["index"] = np.asarray(index, dtype=np.float64)


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes: what the reliability tests compare before and after."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def save_plain_images(folder: Path, sizes: dict[str, tuple[int, int]], seed: int = 0) -> None:
    """Random RGB JPEGs of the given (width, height), by name."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, (width, height) in sizes.items():
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name, format="JPEG", quality=90)


def synthetic_koniq_options(root: Path, *, count: int, seed: int, width: int = 128, height: int = 96) -> list[str]:
    """A synthetic KonIQ-10k download and its info file under root; the script options that point at them."""
    from linearityiqa.data.info_builders import koniq_info_from_csv
    from linearityiqa.data.info_files import write_info
    from linearityiqa.data.synthetic import write_koniq_layout

    sets_csv = write_koniq_layout(root / "download", count=count, width=width, height=height, seed=seed)
    write_info(root / "KonIQ-10kinfo.mat", koniq_info_from_csv(sets_csv))
    return koniq_options(root)


def koniq_options(root: Path) -> list[str]:
    """The script options that point at the data set synthetic_koniq_options wrote under root."""
    return [
        "--data_info",
        str(root / "KonIQ-10kinfo.mat"),
        "--im_dir",
        str(root / "download" / "1024x768"),
        "--cache_dir",
        str(root / "cache"),
    ]


SCORE_HEADER = "image,score,error"


def read_scores(text: str) -> list[dict]:
    """The rows of test_demo.py's CSV, whose first line is its header, as csv.DictReader reads them."""
    assert text.startswith(SCORE_HEADER), text[:200]
    return list(csv.DictReader(io.StringIO(text, newline="")))


def scoring_folder(folder: Path, *, k: list[float], b: list[float]) -> Path:
    """`folder` with two resnet18 checkpoints (model.pth, other.pth, of other weights; mappings
    `k`, `b`) and images/: 30 JPEGs of two sizes, 00.jpg to 29.jpg, of which 15.jpg is a text file."""
    import torch

    from IQAmodel import IQAModel
    from linearityiqa.records.checkpoint import save_checkpoint

    for name, seed in (("model.pth", 0), ("other.pth", 1)):
        torch.manual_seed(seed)
        weights = IQAModel(arch="resnet18", pretrained=False).state_dict()
        save_checkpoint(str(folder / name), {"model": weights, "k": k, "b": b, "settings": RESNET18_SETTINGS})
    sizes = {f"{index:02d}.jpg": (96, 64) if index % 3 else (64, 48) for index in range(30)}
    save_plain_images(folder / "images", sizes, seed=4)
    (folder / "images" / "15.jpg").write_text("not a JPEG")
    return folder


@contextlib.contextmanager
def local_ray_cluster(folder: Path, *options: str) -> Iterator[str]:
    """A local Ray cluster started with `ray start` in `folder` (and `options`), stopped after the
    block: its address. RAY_AUTH_MODE=disabled, for this process and its children: the cluster's
    drivers are the tests' own processes."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    with socket.socket() as probe:  # a free port for the cluster's control store
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = [*RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", "--disable-usage-stats", *options]
    # in a process group of its own, which the cluster's daemons keep
    starter = subprocess.Popen(
        start, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder, start_new_session=True
    )
    _, err = starter.communicate(timeout=120)
    assert starter.returncode == 0, err
    try:
        yield f"127.0.0.1:{port}"
    finally:
        # Killing the daemons stops the cluster at once (its workers end with their raylet); `ray stop`
        # would wait seconds, and stop every cluster of the machine.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(starter.pid, signal.SIGKILL)


def assert_one_line(err: str, script: str, *words: str) -> None:
    """`err` is one error line of `script` that holds each of `words` (what it names, what to do)."""
    assert err.count("\n") == 1 and err.startswith(f"{script}: error: "), err
    for word in words:
        assert word in err, (word, err)


# The process of ScriptForks: it imports the modules named on its command line (with the cycle
# collector paused, their objects then frozen out of its reach, as test_demo.py imports), says
# "ready", then reads runs, one JSON line each. It forks a process for each, which runs the script as
# `python script args` runs it (as __main__, with sys.path[0] its folder, Ctrl-C a KeyboardInterrupt),
# in its own folder, its standard error into a file; and it answers the process id, then the wait
# status once that process has ended.
_FORKS = r"""
import gc, json, os, runpy, signal, sys
gc.disable()
for name in sys.argv[1:]:
    __import__(name)
gc.freeze()
gc.enable()
print("ready", flush=True)
for line in sys.stdin:
    run = json.loads(line)
    pid = os.fork()
    if pid == 0:
        files = [(os.devnull, os.O_RDONLY), (os.devnull, os.O_WRONLY)]
        files.append((run["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
        for fd, (path, flags) in enumerate(files):  # standard input, output and error
            os.dup2(os.open(path, flags, 0o644), fd)
        os.chdir(run["cwd"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.argv, sys.path[0] = run["argv"], os.path.dirname(os.path.abspath(run["argv"][0]))
        exec(run["before"])
        runpy.run_path(sys.argv[0], run_name="__main__")
        sys.exit(0)  # ends as Python ends: threads joined, streams flushed
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


class ScriptForks:
    """Runs of a script, each a process of its own that a test can signal or kill, without the
    seconds of imports that each new Python would spend before it (torch's, above all): forks of
    one process that imported `modules` once. One run at a time; a context manager, which ends
    the run still going and the process."""

    def __init__(self, *modules: str):
        command = [sys.executable, "-c", _FORKS, *modules]
        environment = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment)
        self.buffer, self.running = b"", None
        assert self.answer(timeout=300) == "ready"

    def answer(self, timeout: float | None) -> str | None:
        """The next line the process answers, or None if it answers none within `timeout` seconds."""
        while b"\n" not in self.buffer:
            if not select.select([self.process.stdout], [], [], timeout)[0]:
                return None
            read = os.read(self.process.stdout.fileno(), 4096)
            assert read, "the process of the forks ended"
            self.buffer += read
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def start(self, argv: list[str], *, cwd: Path, stderr: Path, before: str = "") -> ForkedRun:
        """A run of `python *argv` (argv[0] the script) in `cwd`, its standard output discarded and its
        standard error written to the file `stderr`; the code `before` runs before the script."""
        assert self.running is None or self.running.poll() is not None, "one run at a time"
        run = {"argv": argv, "cwd": str(cwd), "stderr": str(stderr), "before": before}
        self.process.stdin.write(json.dumps(run).encode() + b"\n")
        self.process.stdin.flush()
        self.running = ForkedRun(self, int(self.answer(timeout=60)))
        return self.running

    def __enter__(self) -> ScriptForks:
        return self

    def __exit__(self, *exception) -> None:
        if self.running is not None and self.running.poll() is None:
            self.running.kill()
            self.running.wait(timeout=60)
        self.process.stdin.close()
        self.process.wait(timeout=60)


class ForkedRun:
    """A run of ScriptForks, with what the tests use of subprocess.Popen: pid, poll(), wait(),
    send_signal(), kill() and returncode (minus the signal's number, when a signal ended it)."""

    def __init__(self, forks: ScriptForks, pid: int):
        self.forks, self.pid, self.returncode = forks, pid, None

    def poll(self) -> int | None:
        return self._ended(timeout=0)

    def wait(self, timeout: float | None = None) -> int:
        if self._ended(timeout) is None:
            raise subprocess.TimeoutExpired(f"run {self.pid}", timeout)
        return self.returncode

    def send_signal(self, number: int) -> None:
        if self.poll() is None:  # not a process id that another process may have taken since
            os.kill(self.pid, number)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _ended(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            status = self.forks.answer(timeout)
            if status is not None:
                self.returncode = os.waitstatus_to_exitcode(int(status))
        return self.returncode
