"""Faults of long runs, caused on purpose: a process killed mid-epoch or mid-save, a full disk,
an output folder that cannot be written, a loss that turns NaN. Each ends with the work done
so far intact and one message, and a killed run resumes to the metrics of an unbroken one."""

from __future__ import annotations

import contextlib
import errno
import math
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import ScriptForks, sha256
from ignite.engine import Events

import main
from linearityiqa.acceleration import out_of_memory
from linearityiqa.errors import OutputError
from linearityiqa.records.checkpoint import load_checkpoint, save_checkpoint
from linearityiqa.records.run_records import FINAL_TEST, EpochMetrics, epochs_file, latest_resume_file
from linearityiqa.training.evaluation import METRICS_PRINTED, criterion_score
from linearityiqa.training.handlers import NonFiniteLosses

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]


def small_run(koniq, epochs=3):
    command = "--dataset KonIQ-10k --resize -rs_h 48 -rs_w 64 --arch resnet18 --pretrained none -bs 4 --lr 1e-3"
    return [*command.split(), "-e", str(epochs), "--num_workers", "0", *koniq]


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "best.pth")
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "epoch": 1})
    before = Path(path).read_bytes()

    def full_disk(obj, file):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputError, match=r"cannot write checkpoint .*best.pth: No space left on device; free space"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 2})
    assert Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["best.pth"]  # no partial file left behind


@pytest.mark.parametrize("option", ["--trained_model_file", "--results_dir", "--log_dir"])
def test_an_output_that_cannot_be_written_is_one_line(option, koniq, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("a_file").write_text("a file where a folder should be")
    assert main.main(small_run(koniq, epochs=1) + [option, "a_file/output"]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("main.py: error: ") and "a_file" in errors[0]
    assert ("Not a directory" in errors[0] or "a file is in the way" in errors[0]) and "Traceback" not in err


def nan_at_iteration_9(monkeypatch):
    """The loss of the 9th training batch is NaN (5 batches an epoch: epoch 2, batch 4)."""
    real_loss = main.IQALoss

    def nan_in_epoch_2(**kwargs):
        loss, calls = real_loss(**kwargs), []

        def compute(y_pred, y):
            calls.append(1)
            value = loss(y_pred, y)
            return value * float("nan") if len(calls) == 9 else value

        return compute

    monkeypatch.setattr(main, "IQALoss", nan_in_epoch_2)


def test_a_nan_loss_stops_at_its_iteration_and_keeps_the_best_finite_checkpoint(
    koniq, run_name, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = small_run(koniq)
    nan_at_iteration_9(monkeypatch)
    assert main.main(argv) == 1
    err = capsys.readouterr().err
    assert "the loss is nan at iteration 9 (epoch 2)" in err and "the best checkpoint so far is kept" in err
    checkpoint = load_checkpoint(os.path.join("checkpoints", run_name(argv)))
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values() if value.is_floating_point())


def test_with_skip_nonfinite_a_nan_step_is_skipped_counted_and_the_run_ends(
    koniq, run_name, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = small_run(koniq) + ["--skip_nonfinite"]
    nan_at_iteration_9(monkeypatch)
    assert main.main(argv) == 0
    out = capsys.readouterr().out
    assert "epoch 2: skipped 1 step(s) of a non-finite loss, at iteration(s) 9" in out
    metrics = EpochMetrics(epochs_file("results", run_name(argv)))
    assert metrics.series("train", "skipped_steps") == ([2], [1.0])  # written only for an epoch that skipped
    assert all(math.isfinite(loss) for loss in metrics.series("train", "loss").values)
    assert metrics.has(FINAL_TEST)
    checkpoint = load_checkpoint(os.path.join("checkpoints", run_name(argv)))
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values() if value.is_floating_point())


def test_the_allocators_failures_are_told_from_other_errors():
    with pytest.raises(RuntimeError) as cpu:
        torch.empty(10**14, dtype=torch.uint8)  # 100 TB: the CPU allocator refuses at once
    assert out_of_memory(cpu.value) and out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not out_of_memory(MemoryError())  # Python's own: not torch's, and no RuntimeError


def test_running_out_of_memory_while_training_is_one_line(koniq, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    def too_big(self, loss, engine):  # raised within the training step
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)\nmore")

    monkeypatch.setattr(NonFiniteLosses, "admits", too_big)
    assert main.main(small_run(koniq, epochs=1)) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    (error,) = errors  # the allocator's first line, then what to change
    assert error.startswith("main.py: error: out of memory (CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "more" not in error and all(option in error for option in ("lower -bs", "-accum", "--resume"))
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def forks():
    """Runs of main.py as processes of their own, to kill, to signal or to run beside another, each
    started without importing torch again (data_helpers.ScriptForks)."""
    with ScriptForks("main", "tensorboardX") as forks:  # and the logs' writer, which a run imports
        yield forks


def _start(forks, argv, cwd: Path, stderr: Path):
    """main.py started in a process of its own in `cwd`, its stderr written to `stderr`."""
    return forks.start([str(REPO / "main.py"), *argv], cwd=cwd, stderr=stderr)


def _resume_files(folder: Path):
    """The saved states and any temporary file of a save in progress."""
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _killed_when(forks, argv, work: Path, ready, delay: float) -> tuple[int, str]:
    """Start main.py in a process in `work`, wait until `ready()` (or its end), then `delay`
    seconds, and kill it if it still runs; its exit status and stderr."""
    stderr = work.parent / "stderr.txt"
    process = _start(forks, argv, work, stderr)
    deadline = time.monotonic() + 120
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()
    return process.returncode, stderr.read_text()


def _run_to_its_end(argv, capsys) -> tuple[int, str]:
    """main.py run in this process, in the current folder, to its end: its exit status and stderr."""
    capsys.readouterr()
    status = main.main(argv)
    return status, capsys.readouterr().err


def _saves_another(folder: Path):
    """Whether a state has been saved in `folder` (or one removed) since this was called."""
    before = _resume_files(folder)
    return lambda: _resume_files(folder) != before


@pytest.mark.slow
def test_killed_at_random_moments_resume_ends_as_an_unbroken_run(forks, koniq, run_name, tmp_path, monkeypatch, capsys):
    """A preempted job's loop: start again with --resume after each kill, and without it where
    --resume finds nothing (a kill before the first saved epoch). Whatever each kill left (no
    state, a state, a save cut short, a finished run), the run ends with an unbroken run's
    metrics, and a --resume after that has nothing to do. The runs killed are processes of their
    own; the last, which nothing stops, runs in this one."""
    argv = small_run(koniq, epochs=4)
    name = run_name(argv)
    os.makedirs(tmp_path / "unbroken")
    monkeypatch.chdir(tmp_path / "unbroken")
    assert main.main(argv) == 0
    unbroken = np.load(os.path.join("results", name + ".npy"), allow_pickle=True).item()

    work = tmp_path / "killed"
    os.makedirs(work)
    checkpoint, resume = work / "checkpoints" / name, work / "checkpoints" / (name + ".resume")
    lock = work / "checkpoints" / (name + ".lock")
    rng, options = random.Random(7), []
    # killed first once it holds its lock (mostly before its first epoch ends), then at random
    # moments after each attempt's first saved epoch: in a save, in an epoch, in the final test
    delays = [rng.uniform(0.0, 1.0)] + [rng.uniform(0.0, 0.6) for _ in range(2)]
    for attempt, delay in enumerate(delays):
        ready = lock.exists if attempt == 0 else _saves_another(resume)
        status, err = _killed_when(forks, argv + options, work, ready, delay)
        nothing_saved = status == 1 and "nothing to resume" in err
        assert status in (0, -signal.SIGKILL) or nothing_saved, err
        options = [] if nothing_saved else ["--resume"]  # start anew where no epoch was saved
        if checkpoint.exists():  # whatever moment the kill hit, the best checkpoint on disk is whole
            assert "model" in load_checkpoint(str(checkpoint))
    monkeypatch.chdir(work)
    status, err = _run_to_its_end(argv + options, capsys)
    if status == 1 and "nothing to resume" in err:
        status, err = _run_to_its_end(argv, capsys)
    assert status == 0, err
    assert not resume.exists()  # a finished run's resume state is removed
    resumed = np.load(work / "results" / (name + ".npy"), allow_pickle=True).item()
    for metric in METRICS_PRINTED:
        assert resumed[metric] == pytest.approx(unbroken[metric], rel=1e-5)

    capsys.readouterr()
    assert main.main(argv + ["--resume"]) == 0  # idempotent: the run finished, nothing is done again
    (said,) = capsys.readouterr().out.splitlines()
    assert "finished already" in said and f"checkpoints/{name}" in said and f"results/{name}.npy" in said


def _save_then_killed_while_saving_again(path: str) -> None:
    """Save a checkpoint, then begin another over it and be killed once its first bytes are written."""
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}})

    def killed_midway(obj, file):
        file.write(b"PK\x03\x04 the first bytes")
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = killed_midway  # in the process that is killed only
    save_checkpoint(path, {"model": {"w": torch.zeros(1000)}})


def test_killed_while_writing_a_checkpoint_the_previous_one_is_intact(tmp_path):
    path = tmp_path / "best.pth"
    # a process of its own, forked from this one: killed, it leaves the files as any killed process does
    fork = multiprocessing.get_context("fork")
    process = fork.Process(target=_save_then_killed_while_saving_again, args=(str(path),))
    process.start()
    process.join(timeout=120)
    assert process.exitcode == -signal.SIGKILL
    assert torch.equal(load_checkpoint(str(path))["model"]["w"], torch.ones(1000))


def test_resume_takes_the_latest_whole_state_not_a_save_cut_short(tmp_path):
    for name in ("checkpoint_9.pt", "checkpoint_10.pt", "tmpa1b2c3d4"):
        (tmp_path / name).write_bytes(b"")
    os.utime(tmp_path / "checkpoint_9.pt", (time.time() + 60, time.time() + 60))  # newer, by its clock
    assert latest_resume_file(str(tmp_path)) == str(tmp_path / "checkpoint_10.pt")
    (tmp_path / "checkpoint_9.pt").unlink()
    (tmp_path / "checkpoint_10.pt").unlink()
    assert latest_resume_file(str(tmp_path)) is None
    assert latest_resume_file(str(tmp_path / "nowhere")) is None


def test_a_data_loading_process_that_dies_stops_the_run_with_its_cause(koniq, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    import IQAdataset

    real_item = IQAdataset.IQADataset.__getitem__

    def dies_in_a_worker(self, index):
        if torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would
        return real_item(self, index)

    monkeypatch.setattr(IQAdataset.IQADataset, "__getitem__", dies_in_a_worker)
    started = time.monotonic()
    assert main.main(small_run(koniq, epochs=1) + ["--num_workers", "1"]) == 1
    assert time.monotonic() - started < 120  # no hang
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("main.py: error: a data loading process")
    assert "(DataLoader worker (pid" in errors[0] and "Traceback" not in err


def test_two_runs_with_the_same_outputs_at_once_do_not_overwrite_each_other(
    forks, koniq, run_name, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = small_run(koniq, epochs=2)
    first = _start(forks, argv, tmp_path, tmp_path / "first.txt")
    lock = Path("checkpoints") / (run_name(argv) + ".lock")
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert main.main(argv) == 1  # the second, while the first trains
    err = capsys.readouterr().err
    assert f"main.py: error: another run (process {first.pid}) is writing checkpoints/{run_name(argv)}" in err
    assert first.wait(timeout=300) == 0, (tmp_path / "first.txt").read_text()
    assert not lock.exists()  # released at the end
    assert load_checkpoint(os.path.join("checkpoints", run_name(argv)))["settings"]["epochs"] == 2


def test_a_lock_left_by_a_killed_run_is_taken_over(trained_run, tiny_run_argv, tmp_path):
    folder = Path(shutil.copytree(trained_run, tmp_path / "run"))
    ghost = subprocess.Popen([sys.executable, "-c", "pass"])
    ghost.wait()  # a process id that no longer runs
    lock = folder / "model.pth.lock"
    lock.write_text(str(ghost.pid))
    assert main.main(tiny_run_argv(folder, "--evaluate")) == 0  # which locks the run's outputs too
    assert not lock.exists()


def test_a_run_whose_validation_scores_are_all_nan_still_keeps_a_best_model(koniq, run_name, tmp_path, monkeypatch):
    # a model that predicts one constant has no correlation: SROCC and PLCC are NaN every epoch
    monkeypatch.chdir(tmp_path)
    assert criterion_score({"SROCC": float("nan")}, "SROCC") == -math.inf
    monkeypatch.setattr(main, "criterion_score", lambda performance, criterion: float("nan"))
    argv = small_run(koniq, epochs=2)
    assert main.main(argv) == 0
    assert load_checkpoint(os.path.join("checkpoints", run_name(argv)))["settings"]["epochs"] == 2


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie that nobody reaped has stopped)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table of Linux's /proc")
def test_sigterm_to_a_run_of_two_processes_stops_them_too(forks, koniq, tmp_path):
    """By default SIGTERM would end the parent alone and leave its two processes training."""
    argv, stderr = small_run(koniq, epochs=200) + ["--nproc_per_node", "2", "--device", "cpu"], tmp_path / "stderr.txt"
    process = _start(forks, argv, tmp_path, stderr)
    deadline = time.monotonic() + 120
    while not (tmp_path / "checkpoints").is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first epoch's checkpoint: both processes are training
    workers = [pid for pid in _children(process.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    (said,) = stderr.read_text().splitlines()
    assert said.startswith("main.py: interrupted;") and "--resume continues" in said
    assert not any(_running(pid) for pid in workers)


# Saves that fail inside torch.save. PyTorch's zip writer turns what its file's write raised (the
# OSError of a full disk, the KeyboardInterrupt of Ctrl-C) into its own RuntimeError: these
# fakes make the write fail inside the real torch.save, so that the error main.py sees is torch's.

ENOSPC = OSError(errno.ENOSPC, "No space left on device")
RESUME_ADVICE = (
    "free space (the states are saved beside --trained_model_file), then run again with --resume, which goes on "
    "from the last state saved; a file there before is kept"
)
WRITER_WORDS = "[enforce fail at inline_container.cc:672] . unexpected pos 25912832 vs 25912728"


class _FailingWrites:
    """A file for torch.save whose third write raises `raised`: the first bytes are written."""

    def __init__(self, file, raised: BaseException):
        self.file, self.raised, self.writes = file, raised, 0

    def write(self, data):
        self.writes += 1
        if self.writes == 3:
            raise self.raised
        return self.file.write(data)

    def flush(self):
        self.file.flush()


def writes_then(raised: BaseException):
    """A failure for fail_in_save: the real torch.save, whose file's write raises `raised` partway."""
    return lambda real_save, obj, file: real_save(obj, _FailingWrites(file, raised))


def writer_fails(real_save, obj, file):
    """A failure for fail_in_save: torch's writer in its own words, after some bytes (where it writes to a path)."""
    file.write(b"PK\x03\x04 the first bytes")
    raise RuntimeError(WRITER_WORDS)


def files(folder: Path) -> dict[str, str]:
    """Every file under `folder` (a run's lock and temporary files aside) and its sha256."""
    found = [path for path in sorted(folder.rglob("*")) if path.is_file()]
    return {str(path.relative_to(folder)): sha256(path) for path in found if path.suffix not in (".lock", ".partial")}


def said(capsys) -> list[str]:
    """main.py's lines on stderr (the decoding's progress bar aside, which a first decoding shows)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("main.py:")]


def written_into(file, folder: Path) -> bool:
    """Whether torch.save's `file` (a temporary file, records/writing.py) is in `folder`."""
    return os.path.realpath(os.path.dirname(file.name)) == os.path.realpath(folder)


def fail_in_save(monkeypatch, *, folder: Path, save: int, failure, watched: Path) -> dict[str, str]:
    """Make the `save`-th torch.save into `folder` fail as `failure` does; the files under
    `watched` at that moment (filled in then), which must all be there, unchanged, after it."""
    real_save, saves, before = torch.save, [], {}

    def save_or_fail(obj, file, *args, **kwargs):
        if written_into(file, folder):
            saves.append(file.name)
            if len(saves) == save:
                before.update(files(watched))
                return failure(real_save, obj, file)
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_or_fail)
    return before


def test_a_full_disk_at_the_first_resume_save_leaves_no_empty_folder(koniq, run_name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = small_run(koniq, epochs=1)
    checkpoints = tmp_path / "checkpoints"
    resume = checkpoints / (run_name(argv) + ".resume")
    kept = fail_in_save(monkeypatch, folder=resume, save=1, failure=writes_then(ENOSPC), watched=checkpoints)
    assert main.main(argv) == 1
    (message,) = said(capsys)
    assert message.startswith(
        f"main.py: error: cannot write the resume state checkpoints/{resume.name}/checkpoint_1.pt: No space"
    )
    assert message.endswith(RESUME_ADVICE)
    # an empty folder would read as a run that had saved states, to whoever looks at it
    assert not resume.exists() and files(checkpoints) == kept and list(kept) == [run_name(argv)]
    assert main.main([*argv, "--resume"]) == 1  # the failing save was the first only
    (message,) = said(capsys)  # it saved no epoch and did not finish: what is missing is named
    assert message.startswith(f"main.py: error: nothing to resume in checkpoints/{resume.name}: no epoch")
    assert f"results/{run_name(argv)}.npy" in message and "run without --resume" in message
    assert files(checkpoints) == kept


@pytest.mark.parametrize(("epochs", "saved", "save"), [(2, "state", 2), (1, "checkpoint", 2)])
def test_ctrl_c_inside_torch_save_is_an_interrupt_that_keeps_the_file_before(
    epochs, saved, save, koniq, run_name, tmp_path, monkeypatch, capsys
):
    """Into the state of epoch 2 (the first is kept), or into the checkpoint the final test saves
    with its fitted k and b (the best of epoch 1 is kept)."""
    monkeypatch.chdir(tmp_path)
    argv = small_run(koniq, epochs=epochs)
    checkpoints = tmp_path / "checkpoints"
    folder = checkpoints / (run_name(argv) + ".resume") if saved == "state" else checkpoints
    interrupt = writes_then(KeyboardInterrupt())
    kept = fail_in_save(monkeypatch, folder=folder, save=save, failure=interrupt, watched=checkpoints)
    assert main.main(argv) == 130
    (message,) = said(capsys)
    assert message.startswith("main.py: interrupted;") and "--resume continues" in message
    assert files(checkpoints) == kept and not list(checkpoints.rglob("*.partial"))
    assert f"{run_name(argv)}.resume/checkpoint_1.pt" in kept  # what --resume goes on from


def test_pytorchs_writer_failing_in_a_resume_save_is_one_line_and_keeps_the_state_before(
    koniq, run_name, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = small_run(koniq, epochs=2)
    checkpoints = tmp_path / "checkpoints"
    resume = checkpoints / (run_name(argv) + ".resume")
    kept = fail_in_save(monkeypatch, folder=resume, save=2, failure=writer_fails, watched=checkpoints)
    assert main.main(argv) == 1
    (message,) = said(capsys)
    assert message.startswith(
        f"main.py: error: cannot write the resume state checkpoints/{resume.name}/checkpoint_2.pt: "
    )
    assert f"PyTorch's writer failed ({WRITER_WORDS})" in message and message.endswith(RESUME_ADVICE)
    assert files(checkpoints) == kept and f"{resume.name}/checkpoint_1.pt" in kept


def test_one_resume_state_is_kept_and_the_one_before_removed_only_once_it_is_saved(
    koniq, run_name, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    argv = small_run(koniq, epochs=3)
    resume = tmp_path / "checkpoints" / (run_name(argv) + ".resume")
    while_saving, after_saving = [], []
    real_save = torch.save

    def observed_save(obj, file, *args, **kwargs):
        if written_into(file, resume):
            while_saving.append(sorted(files(resume)))
        return real_save(obj, file, *args, **kwargs)

    def observed(build_trainer):
        def build(*args, **kwargs):
            trainer, epoch_log = build_trainer(*args, **kwargs)  # after its saver: the epoch's state is saved
            trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: after_saving.append(sorted(files(resume))))
            return trainer, epoch_log

        return build

    monkeypatch.setattr(torch, "save", observed_save)
    monkeypatch.setattr(main, "build_trainer", observed(main.build_trainer))
    monkeypatch.setattr(main, "remove_resume_state", lambda settings: None)  # a finished run removes it
    assert main.main(argv) == 0
    # a kill while a state is written leaves the one before it whole
    assert while_saving == [[], ["checkpoint_1.pt"], ["checkpoint_2.pt"]]
    assert after_saving == [["checkpoint_1.pt"], ["checkpoint_2.pt"], ["checkpoint_3.pt"]]
